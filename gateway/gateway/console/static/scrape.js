// Scraping: submit a page, follow the task, then show its markdown (rendered safely) and
// the summary or the extraction (as JSON).
import { api, follow, submit } from "/console/api.js";
import { append, clear, errorBox, h, json, safeLink } from "/console/dom.js";
import { render } from "/console/markdown.js";
import { TERMINAL, progressPercent } from "/console/tasks.js";

const $ = (id) => document.getElementById(id);
let session = null;
let current = null; // the AbortController of the scrape being followed

export function showResult(out, task) {
  clear(out);
  if (task.status !== "SUCCESS") {
    out.append(errorBox({ message: task.error ? `${task.error.type}: ${task.error.message}` : task.status }));
    return;
  }
  const r = task.result ?? {};
  const markdown = h("article", { class: "markdown" }, render(r.markdown ?? ""));
  const source = h("pre", { class: "markdown-source", hidden: true }, r.markdown ?? "");
  append(out, [
    h("h3", { class: "scrape-title" }, r.title || "(untitled)"),
    h(
      "p",
      { class: "meta" },
      safeLink(r.final_url ?? r.url),
      ` · HTTP ${r.status_code} · ${r.model}`,
      r.from_cache ? " · from cache" : "",
      r.usage ? ` · ${r.usage.prompt_tokens}+${r.usage.completion_tokens} tokens` : "",
    ),
    r.summary != null ? h("section", { class: "summary" }, h("h4", {}, "Summary"), render(r.summary)) : null,
    r.extraction != null ? h("section", { class: "extraction" }, h("h4", {}, "Extraction"), json(r.extraction)) : null,
    h(
      "div",
      { class: "row between" },
      h("h4", {}, "Page"),
      h(
        "button",
        {
          type: "button",
          class: "secondary",
          onclick: () => {
            source.hidden = !source.hidden;
            markdown.hidden = !source.hidden;
          },
        },
        "Rendered / source",
      ),
    ),
    markdown,
    source,
  ]);
}

async function run(event) {
  event.preventDefault();
  const form = event.target;
  const errors = clear(form.querySelector(".form-error"));
  const out = clear($("scrape-result"));
  const body = { url: $("scrape-url").value.trim(), model: $("scrape-model").value.trim() || "gpt-4o" };
  if ($("scrape-prompt").value.trim()) body.prompt = $("scrape-prompt").value.trim();
  if ($("scrape-schema").value.trim()) {
    try {
      body.schema = JSON.parse($("scrape-schema").value);
    } catch (err) {
      errors.append(errorBox({ message: `The schema is not JSON: ${err.message}` }));
      return;
    }
  }
  // The key goes in this one request and is never stored by the console.
  if ($("scrape-key").value) body.openai_key = $("scrape-key").value;
  current?.abort();
  current = new AbortController();
  const signal = AbortSignal.any([current.signal, session.controller.signal]);
  let accepted;
  try {
    accepted = await submit("/background-scraping/", body, { signal });
  } catch (err) {
    if (err.name !== "AbortError") errors.append(errorBox(err));
    return;
  }
  const bar = h("progress", { class: "bar", max: 100 });
  const status = h("span", { class: "status" }, accepted.status);
  out.append(h("div", { class: "card", "data-task-id": accepted.task_id }, h("code", {}, accepted.task_id), " ", status, bar));
  const id = encodeURIComponent(accepted.task_id);
  await follow(`/task-events/${id}`, {
    signal,
    onEvent: (e) => {
      const data = JSON.parse(e.data);
      status.textContent = data.status ?? status.textContent;
      const percent = progressPercent(data);
      if (percent !== null && data.total > 0) bar.value = percent;
      return e.type === "status" && TERMINAL.has(data.status) ? "stop" : undefined;
    },
    onError: (err) => out.append(errorBox(err)),
  });
  if (signal.aborted) return;
  try {
    showResult(out, await api("GET", `/task-status/${id}`, { signal }));
  } catch (err) {
    if (err.name !== "AbortError") out.append(errorBox(err));
  }
}

export function start(s) {
  session = s;
}

export function stop() {
  current?.abort();
  current = null;
  $("scrape-key").value = "";
  clear($("scrape-result"));
}

$("scrape-form").addEventListener("submit", run);
