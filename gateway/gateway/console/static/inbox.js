// The inbox, live: the latest page, then every new notification from the inbox stream.
import { api, follow, submit } from "/console/api.js";
import { clear, errorBox, h, json, when } from "/console/dom.js";

const $ = (id) => document.getElementById(id);
let session = null;
let lastSeq = null;
const items = new Map(); // notification_id -> element

function setUnread(n) {
  $("unread").textContent = String(n);
  $("unread").hidden = !n;
}

function item(n) {
  const el = h(
    "li",
    { class: `card notification${n.read ? "" : " unread"}`, "data-notification-id": n.notification_id },
    h("div", { class: "row between" }, h("strong", { class: "title" }, n.title), h("span", { class: "meta" }, when(n.created_at))),
    n.message ? h("p", { class: "message" }, n.message) : null,
    h("div", { class: "meta" }, `from ${n.sender}`),
    n.data && Object.keys(n.data).length ? json(n.data) : null,
  );
  if (!n.read) {
    el.append(
      h(
        "button",
        {
          type: "button",
          class: "secondary",
          onclick: async (event) => {
            try {
              const r = await api("POST", `/inbox/${encodeURIComponent(n.notification_id)}/read`);
              el.classList.remove("unread");
              event.target.remove();
              setUnread(r.unread_count);
            } catch (err) {
              el.append(errorBox(err));
            }
          },
        },
        "Mark read",
      ),
    );
  }
  return el;
}

function add(n, atTop) {
  if (items.has(n.notification_id)) return false;
  const el = item(n);
  items.set(n.notification_id, el);
  if (atTop) $("inbox-list").prepend(el);
  else $("inbox-list").append(el);
  lastSeq = Math.max(lastSeq ?? 0, Number(n.seq) || 0);
  return true;
}

async function load(signal) {
  const page = await api("GET", "/inbox/?limit=50", { signal });
  setUnread(page.unread_count);
  for (const n of page.items) add(n, false);
}

export async function start(s) {
  session = s;
  const signal = s.controller.signal;
  const out = clear($("inbox-error"));
  try {
    await load(signal);
  } catch (err) {
    if (err.name !== "AbortError") out.append(errorBox(err));
    return;
  }
  // Resume after the newest seq we hold, so nothing between the page and the stream is lost.
  follow("/inbox/stream", {
    signal,
    lastEventId: lastSeq ?? 0,
    onOpen: () => {
      $("inbox-live").textContent = "live";
    },
    onEvent: (event) => {
      if (event.type !== "notification") return;
      const n = JSON.parse(event.data);
      if (add(n, true) && !n.read) setUnread(Number($("unread").textContent || 0) + 1);
    },
    onError: (err) => {
      $("inbox-live").textContent = "reconnecting";
      clear($("inbox-error")).append(errorBox(err));
    },
  }).finally(() => {
    $("inbox-live").textContent = "offline";
  });
}

export function stop() {
  session = null;
  lastSeq = null;
  items.clear();
  clear($("inbox-list"));
  setUnread(0);
}

$("notify-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const out = clear(event.target.querySelector(".form-error"));
  try {
    await submit("/send-notification/", {
      user_id: session.sub,
      title: $("notify-title").value,
      message: $("notify-message").value,
    });
    $("notify-title").value = "";
    $("notify-message").value = "";
  } catch (err) {
    out.append(errorBox(err));
  }
});

$("inbox-read-all").addEventListener("click", async () => {
  const out = clear($("inbox-error"));
  try {
    await api("POST", "/inbox/read-all");
    for (const el of items.values()) {
      el.classList.remove("unread");
      el.querySelector("button")?.remove();
    }
    setUnread(0);
  } catch (err) {
    out.append(errorBox(err));
  }
});
