// A safe subset of Markdown rendered to DOM nodes: headings, paragraphs, lists, block quotes,
// fenced and inline code, emphasis, rules, and links to http(s) URLs only. The source is never
// turned into an HTML string: every piece of text becomes a text node, so raw HTML in the
// markdown (a scraped page's <script>, an <img onerror>) shows as the literal text it is.
import { h, safeLink } from "/console/dom.js";

const INLINE =
  /(`+)([\s\S]*?[^`])\1(?!`)|!?\[([^\]\n]*)\]\(\s*<?([^\s)>]+)>?(?:\s+"[^"]*")?\s*\)|(\*\*|__)(?=\S)([\s\S]*?\S)\5|(\*|_)(?=\S)([\s\S]*?\S)\7|<(https?:\/\/[^\s>]+)>/;

export function inline(text) {
  const out = [];
  let rest = text;
  while (rest) {
    const m = INLINE.exec(rest);
    if (!m) {
      out.push(rest);
      break;
    }
    if (m.index > 0) out.push(rest.slice(0, m.index));
    if (m[1] !== undefined) out.push(h("code", {}, m[2].replace(/^ (.*) $/, "$1")));
    else if (m[4] !== undefined) {
      // An image becomes a link to it: img-src 'self' would block it, and a tracking pixel should.
      const label = m[0].startsWith("!") ? m[3] || "image" : m[3];
      const link = safeLink(m[4], "");
      if (link.nodeType === Node.ELEMENT_NODE) {
        link.replaceChildren(...inline(label));
        out.push(link);
      } else out.push(...inline(label));
    } else if (m[5] !== undefined) out.push(h("strong", {}, ...inline(m[6])));
    else if (m[7] !== undefined) out.push(h("em", {}, ...inline(m[8])));
    else out.push(safeLink(m[9]));
    rest = rest.slice(m.index + m[0].length);
  }
  return out;
}

const LIST = /^(\s*)([-*+]|\d{1,9}[.)])\s+(.*)$/;

export function render(source) {
  const root = document.createDocumentFragment();
  const lines = String(source ?? "").replace(/\r\n?/g, "\n").split("\n");
  let i = 0;
  const paragraph = [];
  const flush = () => {
    if (paragraph.length) root.append(h("p", {}, ...inline(paragraph.join(" "))));
    paragraph.length = 0;
  };
  while (i < lines.length) {
    const line = lines[i];
    const fence = /^\s*(```+|~~~+)\s*([\w+-]*)/.exec(line);
    if (fence) {
      flush();
      const body = [];
      i += 1;
      while (i < lines.length && !lines[i].trim().startsWith(fence[1])) body.push(lines[i++]);
      i += 1;
      const code = h("code", {}, body.join("\n"));
      if (fence[2]) code.dataset.lang = fence[2];
      root.append(h("pre", {}, code));
      continue;
    }
    const heading = /^\s{0,3}(#{1,6})\s+(.*?)\s*#*\s*$/.exec(line);
    if (heading) {
      flush();
      root.append(h(`h${Math.min(6, heading[1].length + 2)}`, {}, ...inline(heading[2])));
      i += 1;
      continue;
    }
    if (/^\s{0,3}([-*_])(\s*\1){2,}\s*$/.test(line)) {
      flush();
      root.append(h("hr"));
      i += 1;
      continue;
    }
    if (/^\s{0,3}>/.test(line)) {
      flush();
      const quoted = [];
      while (i < lines.length && /^\s{0,3}>/.test(lines[i])) quoted.push(lines[i++].replace(/^\s{0,3}>\s?/, ""));
      root.append(h("blockquote", {}, render(quoted.join("\n"))));
      continue;
    }
    if (LIST.test(line)) {
      flush();
      const ordered = /\d/.test(LIST.exec(line)[2]);
      const list = h(ordered ? "ol" : "ul");
      while (i < lines.length && LIST.test(lines[i])) {
        const [, , marker, text] = LIST.exec(lines[i]);
        if (/\d/.test(marker) !== ordered) break;
        const item = [text];
        i += 1;
        // Continuation lines (indented, not a new item) belong to this item.
        while (i < lines.length && /^\s{2,}\S/.test(lines[i]) && !LIST.test(lines[i])) item.push(lines[i++].trim());
        list.append(h("li", {}, ...inline(item.join(" "))));
      }
      root.append(list);
      continue;
    }
    if (line.trim() === "") flush();
    else paragraph.push(line.trim());
    i += 1;
  }
  flush();
  return root;
}
