// Forms for new tasks: the long-running task, and one per task type from GET /task-types/,
// each prefilled from the type's input JSON Schema.
import { api, submit } from "/console/api.js";
import { clear, errorBox, flash, h } from "/console/dom.js";
import { added } from "/console/tasks.js";

const $ = (id) => document.getElementById(id);
let loaded = false;

// A starting value for a schema: its default, else the simplest value of its type.
function sample(schema) {
  if (!schema || typeof schema !== "object") return null;
  if ("default" in schema) return schema.default;
  if (Array.isArray(schema.examples) && schema.examples.length) return schema.examples[0];
  const type = Array.isArray(schema.type) ? schema.type[0] : schema.type;
  if (!type && Array.isArray(schema.anyOf)) return sample(schema.anyOf[0]);
  switch (type) {
    case "string":
      return "";
    case "integer":
    case "number":
      return schema.minimum ?? 0;
    case "boolean":
      return false;
    case "array":
      return [];
    case "object":
      return skeleton(schema);
    default:
      return null;
  }
}

export function skeleton(schema) {
  const out = {};
  const required = new Set(schema?.required ?? []);
  for (const [name, prop] of Object.entries(schema?.properties ?? {})) {
    if (required.has(name) || "default" in prop) out[name] = sample(prop);
  }
  return out;
}

function typeOf(prop) {
  if (prop.type) return [prop.type].flat().join(" | ");
  if (prop.anyOf) return prop.anyOf.map(typeOf).join(" | ");
  return "any";
}

function hints(schema) {
  const required = new Set(schema?.required ?? []);
  const props = Object.entries(schema?.properties ?? {});
  if (!props.length) return h("p", { class: "note" }, "Any JSON object.");
  return h(
    "ul",
    { class: "hints" },
    props.map(([name, prop]) =>
      h(
        "li",
        {},
        h("code", {}, name),
        ` ${typeOf(prop)}`,
        required.has(name) ? h("strong", {}, " required") : "",
        prop.description ? ` — ${prop.description}` : "",
      ),
    ),
    schema.additionalProperties === false ? null : h("li", { class: "note" }, "other fields allowed"),
  );
}

async function started(form, promise) {
  const out = clear(form.querySelector(".form-error"));
  const button = form.querySelector("button[type=submit]");
  button.disabled = true;
  try {
    const accepted = await promise;
    added({ created_at: new Date().toISOString(), ...accepted });
    flash(h("span", {}, "Started ", h("code", {}, accepted.task_id)));
    location.hash = "#tasks";
  } catch (err) {
    out.append(errorBox(err));
  } finally {
    button.disabled = false;
  }
}

function typeForm(type) {
  const data = h("textarea", { rows: 5, spellcheck: "false", class: "data", name: "data" });
  data.value = JSON.stringify(skeleton(type.input_schema), null, 2);
  const priority = h("input", { type: "number", min: 0, max: 9, placeholder: "5", class: "priority" });
  const countdown = h("input", { type: "number", min: 0, max: 900, step: "any", placeholder: "0", class: "countdown" });
  const form = h(
    "form",
    { class: "card stack", "data-task-type": type.name },
    h("h3", {}, type.name),
    h("p", { class: "note" }, type.description),
    hints(type.input_schema),
    h("label", {}, "Data (JSON)", data),
    h("div", { class: "row" }, h("label", {}, "Priority", priority), h("label", {}, "Countdown s", countdown)),
    h("button", { type: "submit" }, `Start ${type.name}`),
    h("div", { class: "form-error" }),
  );
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    let parsed;
    try {
      parsed = JSON.parse(data.value || "{}");
    } catch (err) {
      clear(form.querySelector(".form-error")).append(errorBox({ message: `Data is not JSON: ${err.message}` }));
      return;
    }
    const body = { task_type: type.name, data: parsed };
    if (priority.value !== "") body.priority = Number(priority.value);
    if (countdown.value !== "") body.countdown = Number(countdown.value);
    started(form, submit("/background-task/", body));
  });
  return form;
}

async function load() {
  const out = clear($("type-forms"));
  try {
    const { task_types: types } = await api("GET", "/task-types/");
    out.append(...types.map(typeForm));
    loaded = true;
  } catch (err) {
    out.append(errorBox(err));
  }
}

export function shown() {
  if (!loaded) load();
}

export function stop() {
  loaded = false;
  clear($("type-forms"));
}

$("long-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const body = { steps: Number($("long-steps").value), step_seconds: Number($("long-step-seconds").value) };
  started(event.target, submit("/long-running-task/", body));
});
