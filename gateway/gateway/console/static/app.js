// The console's entry point: sign-in, navigation between views, sign-out.
import { api, claims, token, whenUnauthorized } from "/console/api.js";
import { clear, errorBox } from "/console/dom.js";
import * as cache from "/console/cache.js";
import * as devices from "/console/devices.js";
import * as inbox from "/console/inbox.js";
import * as newTask from "/console/new-task.js";
import * as schedules from "/console/schedules.js";
import * as scrape from "/console/scrape.js";
import * as tasks from "/console/tasks.js";

const $ = (id) => document.getElementById(id);
const VIEWS = { tasks, new: newTask, scrape, inbox, schedules, cache, devices };
let session = null; // {sub, controller}: what the signed-in views share

function show(name) {
  for (const section of document.querySelectorAll("main > section")) section.hidden = true;
  if (!session) {
    $("view-signin").hidden = false;
    return;
  }
  const view = VIEWS[name] ? name : "tasks";
  $(`view-${view}`).hidden = false;
  for (const a of document.querySelectorAll("#nav a")) {
    if (a.dataset.view === view) a.setAttribute("aria-current", "page");
    else a.removeAttribute("aria-current");
  }
  VIEWS[view].shown?.(session);
}

function start(jwt) {
  const who = claims(jwt) ?? {};
  session = { sub: String(who.sub ?? "?"), scopes: String(who.scope ?? ""), controller: new AbortController() };
  $("who-name").textContent = `${session.sub}`;
  $("who-name").title = session.scopes ? `scopes: ${session.scopes}` : "";
  $("nav").hidden = false;
  $("who").hidden = false;
  for (const view of Object.values(VIEWS)) view.start?.(session);
  show(location.hash.slice(1));
}

function stop() {
  session?.controller.abort(); // every open stream and pending request of the session
  for (const view of Object.values(VIEWS)) view.stop?.();
  session = null;
  token.clear();
  $("nav").hidden = true;
  $("who").hidden = true;
  show("signin");
}

async function signIn(event) {
  event.preventDefault();
  const out = clear($("signin-error"));
  const jwt = $("signin-token").value.trim().replace(/^Bearer\s+/i, "");
  token.set(jwt);
  try {
    await api("GET", "/devices/"); // needs a valid token and no particular scope
  } catch (err) {
    token.clear();
    out.append(errorBox(err));
    return;
  }
  $("signin-token").value = "";
  start(jwt);
}

// /console (no slash) serves the page too; moving the address to /console/ in place keeps
// the service worker's scope and relative links right, with no request and nothing lost.
if (location.pathname === "/console") {
  history.replaceState(null, "", `/console/${location.search}${location.hash}`);
}
$("signin-form").addEventListener("submit", signIn);
$("sign-out").addEventListener("click", stop);
window.addEventListener("hashchange", () => show(location.hash.slice(1)));
whenUnauthorized((err) => {
  if (!session) return;
  stop();
  $("signin-error").append(errorBox(err));
});
if (token.get()) start(token.get());
else show("signin");
