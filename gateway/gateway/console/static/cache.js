// Your cache namespace: get, put and delete one key.
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
    } else if (method === "DELETE") {
      await api("DELETE", path);
      out.append(h("p", { class: "ok" }, `Deleted ${key}.`));
    } else {
      const entry = await api("GET", path);
      $("cache-value").value = JSON.stringify(entry.value, null, 2);
      out.append(json(entry));
    }
  } catch (err) {
    errors.append(errorBox(err));
  }
}

export function stop() {
  clear($("cache-result"));
}

$("cache-form").addEventListener("submit", (event) => event.preventDefault());
$("cache-get").addEventListener("click", () => act("GET"));
$("cache-put").addEventListener("click", () => act("PUT"));
$("cache-delete").addEventListener("click", () => act("DELETE"));
