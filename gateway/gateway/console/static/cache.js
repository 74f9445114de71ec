// Your cache namespace: get, put and delete one key; list your keys by prefix, a page at a time.
import { api } from "/console/api.js";
import { clear, errorBox, h, json } from "/console/dom.js";

const $ = (id) => document.getElementById(id);

async function act(method) {
  const form = $("cache-form");
  const errors = clear(form.querySelector(".form-error"));
  const out = clear($("cache-result"));
  const key = $("cache-key").value.trim();
  if (!key) {
    errors.append(errorBox({ message: "A key is needed." }));
    return;
  }
  const path = `/cache/${encodeURIComponent(key)}`;
  try {
    if (method === "PUT") {
      let value;
      try {
        value = JSON.parse($("cache-value").value);
      } catch (err) {
        errors.append(errorBox({ message: `The value is not JSON: ${err.message}` }));
        return;
      }
      const body = { value };
      if ($("cache-ttl").value) body.ttl = Number($("cache-ttl").value);
      out.append(h("p", { class: "ok" }, "Stored."), json(await api("PUT", path, { body })));
      listKeys(false);
    } else if (method === "DELETE") {
      await api("DELETE", path);
      out.append(h("p", { class: "ok" }, `Deleted ${key}.`));
      listKeys(false);
    } else {
      const entry = await api("GET", path);
      $("cache-value").value = JSON.stringify(entry.value, null, 2);
      out.append(json(entry));
    }
  } catch (err) {
    errors.append(errorBox(err));
  }
}

let listing = { prefix: "", cursor: null, pages: 0 };

function item(entry) {
  return h(
    "li",
    { class: "card cache-item", "data-key": entry.key },
    h("button", { type: "button", class: "key", onclick: () => load(entry.key) }, entry.key),
    h("span", { class: "meta" }, `ttl ${entry.ttl} s · ${entry.size} bytes`),
  );
}

function load(key) {
  $("cache-key").value = key;
  act("GET");
}

async function listKeys(more) {
  const errors = clear($("cache-list-error"));
  if (!more) {
    listing = { prefix: $("cache-prefix").value, cursor: null, pages: 0 };
    clear($("cache-list"));
    delete $("cache-list").dataset.pages;
  }
  const limit = $("cache-list-form").dataset.pageSize || "50";
  const query = new URLSearchParams({ prefix: listing.prefix, limit });
  if (listing.cursor) query.set("cursor", listing.cursor);
  try {
    const page = await api("GET", `/cache/?${query}`);
    $("cache-list").append(...page.items.map(item));
    listing.cursor = page.next_cursor;
    listing.pages = more ? listing.pages + 1 : 1;
    $("cache-list").dataset.pages = String(listing.pages); // pages shown so far
    $("cache-more").hidden = !page.next_cursor;
  } catch (err) {
    errors.append(errorBox(err));
  }
}

export function shown() {
  listKeys(false);
}

export function stop() {
  clear($("cache-result"));
  clear($("cache-list"));
  $("cache-more").hidden = true;
}

$("cache-form").addEventListener("submit", (event) => event.preventDefault());
$("cache-get").addEventListener("click", () => act("GET"));
$("cache-put").addEventListener("click", () => act("PUT"));
$("cache-delete").addEventListener("click", () => act("DELETE"));
$("cache-list-form").addEventListener("submit", (event) => {
  event.preventDefault();
  listKeys(false);
});
$("cache-more").addEventListener("click", () => listKeys(true));
