// "Enable browser notifications": a service worker, a push subscription made with the
// platform's VAPID key, and the subscription registered as a webpush device.
import { api } from "/console/api.js";
import { clear, errorBox, h, when } from "/console/dom.js";

const $ = (id) => document.getElementById(id);

function keyBytes(base64url) {
  const b64 = base64url.replace(/-/g, "+").replace(/_/g, "/");
  return Uint8Array.from(atob(b64 + "=".repeat((4 - (b64.length % 4)) % 4)), (c) => c.charCodeAt(0));
}

function activated(registration) {
  const worker = registration.active ?? registration.waiting ?? registration.installing;
  if (!worker || worker.state === "activated") return Promise.resolve(registration);
  return new Promise((resolve, reject) => {
    worker.addEventListener("statechange", () => {
      if (worker.state === "activated") resolve(registration);
      else if (worker.state === "redundant") reject(new Error("the service worker failed to start"));
    });
  });
}

export async function enable() {
  const out = clear($("push-state"));
  const say = (text) => out.replaceChildren(h("p", { class: "note" }, text));
  if (!("serviceWorker" in navigator) || !("PushManager" in window) || !("Notification" in window)) {
    say("This browser cannot receive push notifications here (they need https, or localhost).");
    return null;
  }
  try {
    say("Asking for permission…");
    if ((await Notification.requestPermission()) !== "granted") {
      say("Notifications are blocked for this site; allow them in the browser's site settings.");
      return null;
    }
    const registration = await activated(
      await navigator.serviceWorker.register("/console/sw.js", { scope: "/console/" }),
    );
    const { public_key: publicKey } = await api("GET", "/webpush/vapid-public-key");
    say("Subscribing…");
    let subscription = await registration.pushManager.getSubscription();
    subscription ??= await registration.pushManager.subscribe({
      userVisibleOnly: true,
      applicationServerKey: keyBytes(publicKey),
    });
    const device = await api("POST", "/devices/", {
      body: { channel: "webpush", subscription: subscription.toJSON(), name: browserName() },
    });
    out.replaceChildren(
      h("p", { class: "ok", "data-device-id": device.device_id }, "Browser notifications are on for this browser."),
    );
    list();
    return device;
  } catch (err) {
    out.replaceChildren(errorBox(err.code ? err : { message: `Could not subscribe: ${err.message}` }));
    return null;
  }
}

function browserName() {
  const ua = navigator.userAgent;
  const name = /Firefox\//.test(ua) ? "Firefox" : /Edg\//.test(ua) ? "Edge" : /Chrom/.test(ua) ? "Chromium" : "Browser";
  return `${name} (console)`;
}

export async function list() {
  const errors = clear($("devices-error"));
  try {
    const { devices } = await api("GET", "/devices/");
    $("device-list").replaceChildren(
      ...devices.map((d) =>
        h(
          "li",
          { class: "card device", "data-device-id": d.device_id },
          h("div", { class: "row between" }, h("strong", {}, d.name || d.channel), h("span", { class: `status s-${d.status}` }, d.status)),
          h("div", { class: "meta" }, `${d.channel} · since ${when(d.created_at)}`),
          h("div", { class: "meta endpoint" }, d.endpoint ?? d.url ?? ""),
          h(
            "button",
            {
              type: "button",
              class: "danger",
              onclick: async () => {
                try {
                  await api("DELETE", `/devices/${encodeURIComponent(d.device_id)}`);
                  list();
                } catch (err) {
                  errors.append(errorBox(err));
                }
              },
            },
            "Remove",
          ),
        ),
      ),
    );
  } catch (err) {
    errors.append(errorBox(err));
  }
}

export function shown() {
  list();
}

export function stop() {
  clear($("push-state"));
  clear($("device-list"));
}

$("push-enable").addEventListener("click", enable);
