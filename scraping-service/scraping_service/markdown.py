"""HTML to markdown for the model: headings, paragraphs, lists, links, emphasis, code, tables.

Block elements become blank-line separated paragraphs, inline elements one line each; links
and images are made absolute (http and https only); `<pre>` becomes a fenced block that keeps
its language class. Anything else renders as its text.
"""

from __future__ import annotations

import re

from selectolax.lexbor import LexborNode

from .metadata import abs_http, clean

__all__ = ["code_languages", "html_to_markdown"]


_BLOCK_TAGS = frozenset(
    [
        "address",
        "article",
        "aside",
        "blockquote",
        "body",
        "center",
        "dd",
        "details",
        "div",
        "dl",
        "dt",
        "fieldset",
        "figcaption",
        "figure",
        "footer",
        "h1",
        "h2",
        "h3",
        "h4",
        "h5",
        "h6",
        "header",
        "hgroup",
        "hr",
        "li",
        "main",
        "ol",
        "p",
        "pre",
        "section",
        "summary",
        "table",
        "tbody",
        "td",
        "tfoot",
        "th",
        "thead",
        "tr",
        "ul",
    ]
)
_WS_RE = re.compile(r"[ \t\r\n\f\v]+")


class _Renderer:
    def __init__(self, base_url: str, code_languages: dict[str, str] | None = None) -> None:
        self.base_url = base_url
        self.code_languages = code_languages or {}

    # Inline content: returns a single line of text (no newlines except from <br>).
    def inline(self, node: LexborNode) -> str:
        parts: list[str] = []
        child = node.first_child
        while child is not None:
            parts.append(self.inline_node(child))
            child = child.next
        return "".join(parts)

    def inline_node(self, node: LexborNode) -> str:
        if node.is_text_node:
            return _WS_RE.sub(" ", node.text_content or "")
        if not node.is_element_node:
            return ""
        tag = node.tag
        if tag == "br":
            return "  \n"
        if tag == "a":
            text = self.inline(node).strip()
            href = abs_http(self.base_url, node.attributes.get("href"))
            if not text:
                return ""
            return f"[{text}]({href})" if href else text
        if tag in ("strong", "b"):
            text = self.inline(node).strip()
            return f"**{text}**" if text else ""
        if tag in ("em", "i"):
            text = self.inline(node).strip()
            return f"*{text}*" if text else ""
        if tag == "code":
            text = node.text(deep=True)
            return f"`{text}`" if text else ""
        if tag == "img":
            alt = clean(node.attributes.get("alt"))
            src = abs_http(self.base_url, node.attributes.get("src"))
            return f"![{alt}]({src})" if alt and src else ""
        if tag in _BLOCK_TAGS:
            # Block inside inline context (e.g. <div> in <a>): flatten to a space-separated run.
            return " " + self.inline(node) + " "
        return self.inline(node)

    # Block content: returns markdown paragraphs separated by blank lines.
    def blocks(self, node: LexborNode) -> str:
        out: list[str] = []
        run: list[str] = []

        def flush() -> None:
            text = "".join(run).strip()
            run.clear()
            if text:
                out.append(_tidy_inline(text))

        child = node.first_child
        while child is not None:
            if child.is_element_node and child.tag in _BLOCK_TAGS:
                flush()
                rendered = self.block(child)
                if rendered.strip():
                    out.append(rendered.strip("\n"))
            else:
                run.append(self.inline_node(child))
            child = child.next
        flush()
        return "\n\n".join(out)

    def block(self, node: LexborNode) -> str:
        tag = node.tag
        if tag in ("h1", "h2", "h3", "h4", "h5", "h6"):
            text = _tidy_inline(self.inline(node)).replace("\n", " ")
            return f"{'#' * int(tag[1])} {text}" if text else ""
        if tag == "p":
            return _tidy_inline(self.inline(node))
        if tag == "hr":
            return "---"
        if tag == "pre":
            code = node.text(deep=True).strip("\n")
            lang = _code_language(node) or self.code_languages.get(code.strip(), "")
            fence = "````" if "```" in code else "```"
            return f"{fence}{lang}\n{code}\n{fence}"
        if tag in ("ul", "ol"):
            return self.list_block(node, ordered=tag == "ol")
        if tag == "blockquote":
            inner = self.blocks(node)
            return "\n".join(f"> {line}" if line else ">" for line in inner.splitlines())
        if tag == "table":
            return self.table(node)
        if tag == "dl":
            return self.blocks(node)
        if tag == "dt":
            text = _tidy_inline(self.inline(node))
            return f"**{text}**" if text else ""
        return self.blocks(node)

    def list_block(self, node: LexborNode, *, ordered: bool) -> str:
        lines: list[str] = []
        number = 1
        start = node.attributes.get("start")
        if ordered and start and start.isdigit():
            number = int(start)
        child = node.first_child
        while child is not None:
            if child.is_element_node and child.tag == "li":
                marker = f"{number}. " if ordered else "- "
                number += 1
                body = self.blocks(child).strip()
                if not body:
                    child = child.next
                    continue
                indent = " " * len(marker)
                body_lines = body.splitlines()
                lines.append(marker + body_lines[0])
                lines.extend((indent + line) if line else "" for line in body_lines[1:])
            child = child.next
        return "\n".join(lines)

    def table(self, node: LexborNode) -> str:
        rows: list[list[str]] = []
        header_rows = 0
        for tr in node.css("tr"):
            # Skip rows of nested tables; they are rendered flat into their cell.
            parent = tr.parent
            while parent is not None and parent.tag != "table":
                parent = parent.parent
            if parent is None or parent.mem_id != node.mem_id:
                continue
            cells = [c for c in _children(tr) if c.tag in ("td", "th")]
            if not cells:
                continue
            row: list[str] = []
            for cell in cells:
                text = _tidy_inline(self.inline(cell)).replace("\n", " ").replace("|", "\\|")
                row.append(text)
                span = cell.attributes.get("colspan")
                if span and span.isdigit():
                    row.extend([""] * (min(int(span), 50) - 1))
            if all(c.tag == "th" for c in cells) and len(rows) == header_rows:
                header_rows += 1
            rows.append(row)
        if not rows:
            return ""
        width = max(len(r) for r in rows)
        rows = [r + [""] * (width - len(r)) for r in rows]
        if len(rows) == 1 and width == 1:
            return rows[0][0]
        head, body = rows[0], rows[1:]
        lines = [
            "| " + " | ".join(head) + " |",
            "| " + " | ".join("---" for _ in head) + " |",
        ]
        lines.extend("| " + " | ".join(r) + " |" for r in body)
        return "\n".join(lines)


def _children(node: LexborNode) -> list[LexborNode]:
    out = []
    child = node.first_child
    while child is not None:
        if child.is_element_node:
            out.append(child)
        child = child.next
    return out


def _tidy_inline(text: str) -> str:
    lines = [" ".join(line.split()) for line in text.split("  \n")]
    return "  \n".join(line for line in lines if line).strip()


def _code_language(pre: LexborNode) -> str:
    """The language a <pre> (or its <code>) declares with a language-* or lang-* class."""
    lang = ""
    for source in (pre, pre.css_first("code")):
        if source is None:
            continue
        for cls in (source.attributes.get("class") or "").split():
            if cls.startswith(("language-", "lang-")):
                lang = cls.split("-", 1)[1]
    return lang


def code_languages(root: LexborNode) -> dict[str, str]:
    """Code text to its declared language, for every <pre> under root that declares one.

    Main-content extraction may drop class attributes; this lets the renderer put the
    language back on the fence of the same code.
    """
    found: dict[str, str] = {}
    for pre in root.css("pre"):
        lang = _code_language(pre)
        if lang:
            found.setdefault(pre.text(deep=True).strip(), lang)
    return found


def html_to_markdown(
    container: LexborNode, base_url: str, code_languages: dict[str, str] | None = None
) -> str:
    """Render a node's content as markdown.

    The page title is not added: it travels as metadata and every model prompt carries it.
    """
    markdown = _Renderer(base_url, code_languages).blocks(container)
    markdown = re.sub(r"\n{3,}", "\n\n", markdown).strip()
    return markdown
