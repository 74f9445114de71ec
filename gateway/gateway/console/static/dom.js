// Building the page from nodes and text only: nothing the API returns is ever parsed as HTML
// (no innerHTML anywhere in the console), so a task result or a page's markdown cannot inject.

export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs ?? {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key.startsWith("on")) el.addEventListener(key.slice(2), value);
    else if (key === "class") el.className = value;
    else if (key === "style" || key === "href" || key === "src") {
      throw new Error(`h(): set ${key} through safeLink or CSS, never from a string`);
    } else if (key in el && typeof value !== "string") el[key] = value;
    else el.setAttribute(key, value === true ? "" : String(value));
  }
  append(el, children);
  return el;
}

export function append(el, children) {
  for (const child of [children].flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : String(child));
  }
  return el;
}

export function clear(el) {
  el.replaceChildren();
  return el;
}

// A link only to an absolute http(s) URL; anything else (javascript:, data:, relative) is text.
export function safeUrl(raw) {
  try {
    const url = new URL(String(raw));
    return url.protocol === "http:" || url.protocol === "https:" ? url.href : null;
  } catch {
    return null;
  }
}

export function safeLink(raw, text) {
  const href = safeUrl(raw);
  if (href === null) return document.createTextNode(text ?? String(raw));
  const a = document.createElement("a");
  a.href = href;
  a.rel = "noopener noreferrer nofollow";
  a.target = "_blank";
  a.textContent = text ?? href;
  return a;
}

export function json(value) {
  return h("pre", { class: "json" }, JSON.stringify(value, null, 2));
}

// An error with what a person needs to report it: the message, the code and the request id.
export function errorBox(err) {
  const rid = err?.requestId;
  return h(
    "div",
    { class: "error", role: "alert", "data-code": err?.code ?? "error", "data-request-id": rid ?? "" },
    h("strong", {}, err?.message ?? String(err)),
    err?.code ? h("span", { class: "code" }, ` (${err.code})`) : null,
    rid ? h("div", { class: "request-id" }, "request id: ", h("code", {}, rid)) : null,
  );
}

export function when(iso) {
  if (!iso) return "";
  const d = new Date(iso);
  return Number.isNaN(d.getTime()) ? String(iso) : d.toLocaleString();
}

// A short-lived message at the top of the page (an element, so it may hold a link).
export function flash(node, ms = 6000) {
  const box = document.getElementById("flash");
  const item = h("div", { class: "flash-item" }, node);
  box.append(item);
  setTimeout(() => item.remove(), ms);
}
