// The console's service worker (scope /console/): shows a notification for each push.
// The payload is the notification-service's JSON: {notification_id, title, message, data}.

self.addEventListener("install", () => self.skipWaiting());
self.addEventListener("activate", (event) => event.waitUntil(self.clients.claim()));

self.addEventListener("push", (event) => {
  let payload = {};
  try {
    payload = event.data ? event.data.json() : {};
  } catch {
    payload = { message: event.data ? event.data.text() : "" };
  }
  const title = typeof payload.title === "string" && payload.title ? payload.title : "smart_application";
  event.waitUntil(
    self.registration.showNotification(title, {
      body: typeof payload.message === "string" ? payload.message : "",
      tag: typeof payload.notification_id === "string" ? payload.notification_id : undefined,
      data: { notification_id: payload.notification_id ?? null },
    }),
  );
});

self.addEventListener("notificationclick", (event) => {
  event.notification.close();
  event.waitUntil(
    self.clients.matchAll({ type: "window", includeUncontrolled: true }).then((windows) => {
      const open = windows.find((w) => new URL(w.url).pathname.startsWith("/console"));
      if (open) {
        open.navigate("/console/#inbox").catch(() => {});
        return open.focus();
      }
      return self.clients.openWindow("/console/#inbox");
    }),
  );
});
