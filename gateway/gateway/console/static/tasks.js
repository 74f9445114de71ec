// Your tasks, with live progress from task-events, cancel, and retry where the API has it.
import { api, follow, hasEndpoint } from "/console/api.js";
import { append, clear, errorBox, h, json, when } from "/console/dom.js";

const $ = (id) => document.getElementById(id);
export const TERMINAL = new Set(["SUCCESS", "FAILURE", "REVOKED", "EXPIRED"]);
const RETRYABLE = new Set(["FAILURE", "REVOKED", "EXPIRED"]);
// Streams are counted per user across every tab and client (MAX_STREAMS_PER_USER, 20), and the
// inbox holds one: follow a few tasks at a time, the others wait for a free stream.
const MAX_FOLLOWED = 8;

// The snapshot has `percent`; the live events carry only `current` and `total`.
export function progressPercent(p) {
  if (typeof p.percent === "number") return p.percent;
  if (typeof p.current === "number" && typeof p.total === "number" && p.total > 0) {
    return Math.min(100, (100 * p.current) / p.total);
  }
  return null;
}

const rows = new Map(); // task_id -> Row
const waiting = [];
let followed = 0;
let session = null;
let retryAvailable = false;

class Row {
  constructor(task) {
    this.task = { ...task };
    this.controller = null;
    this.bar = h("progress", { class: "bar", max: 100, value: 0 });
    this.label = h("span", { class: "progress-label" });
    this.message = h("span", { class: "progress-message" });
    this.status = h("span", { class: "status" });
    this.cancelButton = h("button", { type: "button", class: "cancel danger", onclick: () => this.cancel() }, "Cancel");
    this.retryButton = h("button", { type: "button", class: "retry secondary", onclick: () => this.retry() }, "Retry");
    this.details = h("div", { class: "details", hidden: true });
    this.error = h("div", { class: "row-error" });
    this.el = h(
      "li",
      { class: "card task", "data-task-id": task.task_id },
      h("div", { class: "row between" }, h("strong", { class: "type" }, task.task_type ?? "task"), this.status),
      h("div", { class: "meta" }, h("code", { class: "id" }, task.task_id), " · ", when(task.created_at)),
      h("div", { class: "progress" }, this.bar, this.label),
      this.message,
      h(
        "div",
        { class: "actions" },
        this.cancelButton,
        this.retryButton,
        h("button", { type: "button", class: "secondary", onclick: () => this.toggleDetails() }, "Details"),
      ),
      this.details,
      this.error,
    );
    this.setStatus(task);
  }

  setStatus(task) {
    Object.assign(this.task, task);
    const status = this.task.status;
    this.el.dataset.status = status;
    this.status.textContent = status;
    this.status.className = `status s-${status}`;
    const done = TERMINAL.has(status);
    this.cancelButton.hidden = done;
    this.retryButton.hidden = !(done && retryAvailable && RETRYABLE.has(status));
    if (status === "SUCCESS") this.setProgress({ percent: 100 });
    if (done) {
      this.unwatch();
      if (!this.details.hidden) this.renderDetails();
    }
  }

  setProgress(p) {
    const percent = progressPercent(p);
    if (percent !== null) this.bar.value = percent;
    if (typeof p.total === "number" && p.total > 0) {
      this.label.textContent = `${p.current} / ${p.total} · ${Math.round(percent)}%`;
    } else if (percent !== null) this.label.textContent = `${Math.round(percent)}%`;
    if (p.message) this.message.textContent = p.message;
  }

  watch() {
    if (this.controller || TERMINAL.has(this.task.status) || !session) return;
    if (followed >= MAX_FOLLOWED) {
      if (!waiting.includes(this)) waiting.push(this);
      return;
    }
    followed += 1;
    this.controller = new AbortController();
    const signal = AbortSignal.any([this.controller.signal, session.controller.signal]);
    follow(`/task-events/${encodeURIComponent(this.task.task_id)}`, {
      signal,
      onEvent: (event) => {
        const data = JSON.parse(event.data);
        if (event.type === "progress") {
          this.setProgress(data);
          if (data.status && !TERMINAL.has(data.status)) this.setStatus({ status: data.status });
        } else if (event.type === "status") {
          this.setStatus(data);
          if (TERMINAL.has(data.status)) return "stop";
        }
        return undefined;
      },
      onError: (err) => clear(this.error).append(errorBox(err)),
      onOpen: () => clear(this.error),
    }).finally(() => {
      if (this.controller) this.release();
    });
  }

  release() {
    this.controller = null;
    followed -= 1;
    const next = waiting.shift();
    next?.watch();
  }

  unwatch() {
    const idx = waiting.indexOf(this);
    if (idx >= 0) waiting.splice(idx, 1);
    if (this.controller) {
      const c = this.controller;
      this.release();
      c.abort();
    }
  }

  async cancel() {
    clear(this.error);
    this.cancelButton.disabled = true;
    try {
      const answer = await api("POST", `/task-cancel/${encodeURIComponent(this.task.task_id)}`);
      this.message.textContent = "cancel requested";
      if (TERMINAL.has(answer.status)) this.setStatus({ status: answer.status });
    } catch (err) {
      this.error.append(errorBox(err));
    } finally {
      this.cancelButton.disabled = false;
    }
  }

  async retry() {
    clear(this.error);
    try {
      const answer = await api("POST", `/task-retry/${encodeURIComponent(this.task.task_id)}`);
      added({ task_type: this.task.task_type, status: "PENDING", created_at: new Date().toISOString(), ...answer });
    } catch (err) {
      this.error.append(errorBox(err));
    }
  }

  toggleDetails() {
    this.details.hidden = !this.details.hidden;
    if (!this.details.hidden) this.renderDetails();
  }

  async renderDetails() {
    if (TERMINAL.has(this.task.status) && !("result" in this.task)) {
      try {
        Object.assign(this.task, await api("GET", `/task-status/${encodeURIComponent(this.task.task_id)}`));
      } catch (err) {
        clear(this.details).append(errorBox(err));
        return;
      }
    }
    const t = this.task;
    clear(this.details);
    append(this.details, [
      h("div", { class: "meta" }, `started ${when(t.started_at) || "—"} · finished ${when(t.finished_at) || "—"}`),
      t.error ? h("div", { class: "error" }, `${t.error.type}: ${t.error.message}`) : null,
      t.result !== undefined && t.result !== null ? json(t.result) : null,
    ]);
  }
}

function rowFor(task) {
  let row = rows.get(task.task_id);
  if (!row) {
    row = new Row(task);
    rows.set(task.task_id, row);
  } else if (!row.controller || TERMINAL.has(task.status)) row.setStatus(task);
  row.watch();
  return row;
}

// A task just submitted (by a form, or a retry): at the top, followed at once.
export function added(task) {
  const row = rowFor(task);
  $("task-list").prepend(row.el);
  $("tasks-empty").hidden = true;
  return row;
}

export async function refresh() {
  const out = clear($("tasks-error"));
  try {
    const { tasks } = await api("GET", "/tasks/?limit=50", { signal: session?.controller.signal });
    const keep = new Set(tasks.map((t) => t.task_id));
    for (const [id, row] of rows) {
      if (!keep.has(id) && !row.controller) rows.delete(id);
    }
    const fresh = tasks.map((t) => rowFor(t).el);
    const extra = [...rows.values()].filter((r) => !keep.has(r.task.task_id)).map((r) => r.el);
    $("task-list").replaceChildren(...extra, ...fresh);
    $("tasks-empty").hidden = rows.size > 0;
  } catch (err) {
    if (err.name !== "AbortError") out.append(errorBox(err));
  }
}

export function start(s) {
  session = s;
  hasEndpoint("POST", "/task-retry/{task_id}").then((ok) => {
    retryAvailable = ok;
    $("retry-note").hidden = ok;
    for (const row of rows.values()) row.setStatus({});
  });
}

export function shown() {
  refresh();
}

export function stop() {
  for (const row of rows.values()) row.unwatch();
  rows.clear();
  waiting.length = 0;
  followed = 0;
  session = null;
  $("task-list").replaceChildren();
}

$("tasks-refresh").addEventListener("click", () => refresh());
// Tasks started elsewhere (the CLI, a schedule) appear while the list is on screen.
setInterval(() => {
  if (session && !$("view-tasks").hidden && document.visibilityState === "visible") refresh();
}, 15000);
