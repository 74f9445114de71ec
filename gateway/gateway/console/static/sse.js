// Server-sent events over fetch(): EventSource cannot send an Authorization header, and a
// token in the query string would end up in logs. The parser follows the WHATWG
// "event stream interpretation" rules (fields, comments, CR/LF/CRLF line ends, the id).

export class SSEParser {
  constructor(onEvent) {
    this.onEvent = onEvent;
    this.buffer = "";
    this.reset();
    this.lastEventId = null;
    this.retry = null;
  }

  reset() {
    this.data = [];
    this.type = "";
  }

  push(text) {
    this.buffer += text;
    for (;;) {
      const m = /\r\n|\r|\n/.exec(this.buffer);
      if (!m) return;
      // A lone CR at the end may be the first half of a CRLF split across chunks.
      if (m[0] === "\r" && m.index === this.buffer.length - 1) return;
      const line = this.buffer.slice(0, m.index);
      this.buffer = this.buffer.slice(m.index + m[0].length);
      this.line(line);
    }
  }

  line(line) {
    if (line === "") {
      this.dispatch();
      return;
    }
    if (line.startsWith(":")) return; // a comment: keep-alive
    const colon = line.indexOf(":");
    const field = colon < 0 ? line : line.slice(0, colon);
    let value = colon < 0 ? "" : line.slice(colon + 1);
    if (value.startsWith(" ")) value = value.slice(1);
    if (field === "data") this.data.push(value);
    else if (field === "event") this.type = value;
    else if (field === "id" && !value.includes("\0")) this.lastEventId = value;
    else if (field === "retry" && /^\d+$/.test(value)) this.retry = Number(value);
  }

  dispatch() {
    if (this.data.length === 0) {
      this.reset();
      return;
    }
    const event = { type: this.type || "message", data: this.data.join("\n"), id: this.lastEventId };
    this.reset();
    this.onEvent(event);
  }
}

// Read one response body as an event stream until it ends (or `signal` aborts it).
export async function readEvents(response, parser, signal) {
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  const stop = () => reader.cancel().catch(() => {});
  signal?.addEventListener("abort", stop, { once: true });
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      parser.push(value);
    }
  } finally {
    signal?.removeEventListener("abort", stop);
  }
}
