// Your schedules: list them, create one, pause/resume and delete.
import { api } from "/console/api.js";
import { clear, errorBox, h, when } from "/console/dom.js";

const $ = (id) => document.getElementById(id);

// A starting body for each target path; the API checks it exactly as the endpoint would.
export const EXAMPLES = {
  "background-task": { task_type: "data_processing", data: { input: "tick" } },
  "long-running-task": { steps: 10, step_seconds: 1 },
  "background-scraping": { url: "https://example.com/" },
  "send-notification": { user_id: "", title: "Reminder", message: "" },
};

let sub = "";

function prefill() {
  const path = $("schedule-path").value;
  const body = { ...EXAMPLES[path] };
  if (path === "send-notification") body.user_id = sub;
  $("schedule-body").value = JSON.stringify(body, null, 2);
}

function row(s) {
  const errors = h("div", { class: "row-error" });
  const act = async (fn) => {
    clear(errors);
    try {
      await fn();
      await list();
    } catch (err) {
      errors.append(errorBox(err));
    }
  };
  const path = `/schedules/${encodeURIComponent(s.schedule_id)}`;
  return h(
    "li",
    { class: "card schedule", "data-schedule-id": s.schedule_id, "data-paused": String(s.paused) },
    h(
      "div",
      { class: "row between" },
      h("strong", { class: "name" }, s.name),
      h("span", { class: `status ${s.paused ? "s-REVOKED" : "s-active"}` }, s.paused ? "paused" : "active"),
    ),
    h(
      "div",
      { class: "meta when" },
      s.cron ? `cron ${s.cron}` : `every ${s.every_seconds} s`,
      ` · ${s.timezone} · ${s.target.path}`,
    ),
    h(
      "div",
      { class: "meta" },
      `next: ${s.next_run_at ? when(s.next_run_at) : "—"} · last: ${s.last_run_at ? when(s.last_run_at) : "—"} · runs: `,
      h("span", { class: "runs" }, String(s.runs)),
    ),
    h(
      "div",
      { class: "actions row" },
      h(
        "button",
        { type: "button", class: "secondary toggle", onclick: () => act(() => api("PATCH", path, { body: { paused: !s.paused } })) },
        s.paused ? "Resume" : "Pause",
      ),
      h("button", { type: "button", class: "danger delete", onclick: () => act(() => api("DELETE", path)) }, "Delete"),
    ),
    errors,
  );
}

export async function list() {
  const errors = clear($("schedules-error"));
  try {
    const { schedules } = await api("GET", "/schedules/");
    $("schedule-list").replaceChildren(...schedules.map(row));
    $("schedules-empty").hidden = schedules.length > 0;
  } catch (err) {
    errors.append(errorBox(err));
  }
}

async function create(event) {
  event.preventDefault();
  const errors = clear($("schedule-form").querySelector(".form-error"));
  let body;
  try {
    body = JSON.parse($("schedule-body").value || "{}");
  } catch (err) {
    errors.append(errorBox({ message: `The body is not JSON: ${err.message}` }));
    return;
  }
  const doc = {
    name: $("schedule-name").value.trim(),
    target: { path: $("schedule-path").value, body },
    timezone: $("schedule-timezone").value.trim() || "UTC",
    paused: $("schedule-paused").checked,
  };
  const cron = $("schedule-cron").value.trim();
  const every = $("schedule-every").value.trim();
  if (cron) doc.cron = cron;
  if (every) doc.every_seconds = Number(every);
  try {
    await api("POST", "/schedules/", { body: doc });
    $("schedule-name").value = "";
    await list();
  } catch (err) {
    errors.append(errorBox(err));
  }
}

export function start(session) {
  sub = session.sub;
  prefill();
}

export function shown() {
  list();
}

export function stop() {
  clear($("schedule-list"));
  clear($("schedules-error"));
}

$("schedule-form").addEventListener("submit", create);
$("schedule-path").addEventListener("change", prefill);
$("schedules-refresh").addEventListener("click", () => list());
