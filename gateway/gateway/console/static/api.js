// The one place that talks to the gateway: the token, the error envelope, event streams.
import { SSEParser, readEvents } from "/console/sse.js";

export const API = "/smart_application/tasks";
const TOKEN_KEY = "smartapp.token";

// sessionStorage: the token lives as long as the tab, and is never sent by the browser on
// its own (no cookie), so no other site can make requests with it.
export const token = {
  get: () => sessionStorage.getItem(TOKEN_KEY),
  set: (value) => sessionStorage.setItem(TOKEN_KEY, value),
  clear: () => sessionStorage.removeItem(TOKEN_KEY),
};

// What the token says about itself, for display only: the gateway verifies it on every call.
export function claims(jwt) {
  try {
    const part = jwt.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
    const json = new TextDecoder().decode(Uint8Array.from(atob(part), (c) => c.charCodeAt(0)));
    const body = JSON.parse(json);
    return typeof body === "object" && body !== null ? body : null;
  } catch {
    return null;
  }
}

export class ApiError extends Error {
  constructor(status, code, message, requestId, detail) {
    super(message);
    this.name = "ApiError";
    this.status = status;
    this.code = code;
    this.requestId = requestId;
    this.detail = detail;
  }
}

async function errorFrom(response) {
  let envelope = null;
  try {
    envelope = (await response.json()).error;
  } catch {
    envelope = null;
  }
  const ok = envelope && typeof envelope === "object";
  return new ApiError(
    response.status,
    ok && envelope.code ? String(envelope.code) : `http_${response.status}`,
    ok && envelope.message ? String(envelope.message) : response.statusText || "The request failed.",
    (ok && envelope.request_id) || response.headers.get("X-Request-ID"),
    ok ? envelope.detail : undefined,
  );
}

// Listeners told when the gateway refuses the token (401): the app signs out.
const onUnauthorized = new Set();
export function whenUnauthorized(fn) {
  onUnauthorized.add(fn);
}

async function send(method, path, { body, headers = {}, signal } = {}) {
  const h = { ...headers };
  const jwt = token.get();
  if (jwt) h.Authorization = `Bearer ${jwt}`;
  let payload;
  if (body !== undefined) {
    h["Content-Type"] = "application/json";
    payload = JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(path, {
      method,
      headers: h,
      body: payload,
      signal,
      cache: "no-store",
      credentials: "omit",
      redirect: "error",
    });
  } catch (err) {
    if (err.name === "AbortError") throw err;
    throw new ApiError(0, "network_error", `The gateway did not answer (${err.message}).`, null);
  }
  if (!response.ok) {
    const err = await errorFrom(response);
    if (response.status === 401) for (const fn of onUnauthorized) fn(err);
    throw err;
  }
  return response;
}

export async function api(method, path, options = {}) {
  const response = await send(method, API + path, {
    ...options,
    headers: { Accept: "application/json", ...options.headers },
  });
  if (response.status === 204) return null;
  const type = response.headers.get("Content-Type") || "";
  return type.includes("json") ? response.json() : response.text();
}

// A submission: a fresh Idempotency-Key, so a resend after a network error starts no twin.
export function submit(path, body, options = {}) {
  return api("POST", path, {
    ...options,
    body,
    headers: { "Idempotency-Key": crypto.randomUUID(), ...options.headers },
  });
}

// Follow an event stream: onEvent({type, data, id}) for each event. Returns when the server
// ends the stream, or throws an ApiError. `lastEventId` resumes a stream that supports it.
export async function stream(path, { onEvent, signal, lastEventId } = {}) {
  const headers = { Accept: "text/event-stream" };
  if (lastEventId != null) headers["Last-Event-ID"] = String(lastEventId);
  const response = await send("GET", API + path, { headers, signal });
  const parser = new SSEParser(onEvent);
  await readEvents(response, parser, signal);
  return parser;
}

// Follow a stream for good: reconnect after it ends or drops, resuming from the last event
// id, waiting the server's `retry` (or a growing delay after an error) between attempts.
// Stops when `signal` aborts, or when onEvent returns "stop".
export async function follow(path, { onEvent, onError, onOpen, signal, lastEventId = null }) {
  let resume = lastEventId;
  let delay = 1000;
  let stopped = false;
  const handler = (event) => {
    if (stopped) return;
    delay = 1000;
    if (onEvent(event) === "stop") stopped = true;
  };
  while (!signal?.aborted && !stopped) {
    let wait = delay;
    try {
      onOpen?.();
      const parser = await stream(path, { onEvent: handler, signal, lastEventId: resume });
      resume = parser.lastEventId ?? resume;
      if (parser.retry != null) wait = parser.retry;
    } catch (err) {
      if (err.name === "AbortError" || signal?.aborted) return;
      onError?.(err);
      if (err.status && err.status < 500 && err.status !== 429) return; // refused: retrying will not help
      delay = Math.min(delay * 2, 30000);
    }
    if (stopped || signal?.aborted) return;
    await new Promise((resolve) => setTimeout(resolve, wait));
  }
}

// Which endpoints this gateway has, from its merged OpenAPI document: a button for an
// endpoint that is not deployed yet (task-retry) is shown only once the API answers for it.
let pathsPromise = null;
export function hasEndpoint(method, path) {
  pathsPromise ??= fetch("/openapi.json", { credentials: "omit", cache: "no-store" })
    .then((r) => (r.ok ? r.json() : { paths: {} }))
    .then((doc) => doc.paths || {})
    .catch(() => ({}));
  return pathsPromise.then((paths) => Boolean(paths[API + path]?.[method.toLowerCase()]));
}
