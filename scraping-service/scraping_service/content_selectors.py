"""`include_selectors` and `exclude_selectors`: the user's say in what counts as content.

The HTML is rewritten before main-content extraction (extract.py) sees it: excluded nodes are
removed; with include selectors, the body is replaced by the matching nodes, in document order,
inside one <article> so that extraction takes all of them as the main content. The <head> is
kept, so the title and metadata still come from the page. selectolax (lexbor) parses both the
page and the selectors, as extract.py does: one CSS engine, the same answers.
"""

from __future__ import annotations

from collections.abc import Sequence

from selectolax.lexbor import LexborHTMLParser, LexborNode, SelectolaxError

__all__ = [
    "MAX_SELECTORS",
    "MAX_SELECTOR_CHARS",
    "NoSelectorMatch",
    "SelectorError",
    "apply_selectors",
    "check_selectors",
    "is_html",
]

MAX_SELECTORS = 20
MAX_SELECTOR_CHARS = 256

# Containers extract() drops as site chrome; inside a selection they are just containers.
_CHROME_TAGS = "nav, aside, footer, header, dialog"

_PROBE = LexborHTMLParser("<html><body><p>probe</p></body></html>")


class SelectorError(ValueError):
    """A selector lexbor cannot parse, or one too long."""


class NoSelectorMatch(Exception):
    """No include selector matched anything on the page."""


def check_selectors(field: str, selectors: Sequence[str]) -> list[str]:
    """Validate selectors by parsing them; return them stripped. Raise SelectorError."""
    if len(selectors) > MAX_SELECTORS:
        raise SelectorError(f"{field} may hold at most {MAX_SELECTORS} selectors.")
    out: list[str] = []
    for raw in selectors:
        selector = raw.strip()
        if not selector or len(selector) > MAX_SELECTOR_CHARS:
            raise SelectorError(f"{field}: each selector must be 1 to {MAX_SELECTOR_CHARS} characters.")
        try:
            _PROBE.css(selector)
        except SelectolaxError:
            raise SelectorError(f"{field}: {selector[:80]!r} is not a valid CSS selector.") from None
        out.append(selector)
    return out


def is_html(content_type: str | None, body: bytes) -> bool:
    mime = (content_type or "").split(";", 1)[0].strip().lower()
    if "html" in mime:
        return True
    if mime in ("", "application/octet-stream"):
        head = body[:1024].lstrip().lower()
        return head.startswith((b"<!doctype html", b"<html", b"<head", b"<body"))
    return False


def _outermost(nodes: list[LexborNode]) -> list[LexborNode]:
    """Drop nodes inside another matched node: the outer one already carries them."""
    matched = {n.mem_id for n in nodes}
    kept: list[LexborNode] = []
    for node in nodes:
        parent = node.parent
        inside = False
        while parent is not None:
            if parent.mem_id in matched:
                inside = True
                break
            parent = parent.parent
        if not inside:
            kept.append(node)
    return kept


def _inner(node: LexborNode) -> str:
    return "".join(child.html or "" for child in node.iter(include_text=True))


def apply_selectors(html: str, include: Sequence[str], exclude: Sequence[str]) -> str:
    """Return the page rewritten: excluded nodes removed, then only included nodes kept."""
    tree = LexborHTMLParser(html)
    for selector in exclude:
        for node in tree.css(selector):
            node.decompose()
    if not include:
        return tree.html or ""
    # One selector list: lexbor answers it in document order, each node once.
    nodes = _outermost(tree.css(", ".join(include)))
    nodes = [n for n in nodes if n.tag not in ("html", "head")]
    if not nodes:
        raise NoSelectorMatch("include_selectors matched nothing on the page.")
    content = "".join(_inner(n) if n.tag == "body" else n.html or "" for n in nodes)
    head = "<head></head>"
    if tree.head is not None:
        # The head's scripts would make a short selection look like a JavaScript shell to
        # extract()'s non-content checks; the user chose the content, so they go.
        for script in tree.head.css("script, noscript, template"):
            script.decompose()
        head = tree.head.html or head
    doc = LexborHTMLParser(f"<!doctype html><html>{head}<body><article>{content}</article></body></html>")
    article = doc.css_first("body > article")
    if article is not None:
        _as_content(article)
    return doc.html or ""


def _as_content(root: LexborNode) -> None:
    """Make what the user chose look like content to extract()'s boilerplate heuristics.

    A selected `<aside>`, `<nav>` or `.comments` block would otherwise be dropped as chrome by
    tag, ARIA role or class name, and the page would come out empty. Their containers are
    unwrapped and their class/id/role removed; `language-*` classes stay for code fences.
    """
    for node in root.css("[class], [id], [role]"):
        attrs = node.attrs
        for name in ("id", "role"):
            if name in attrs:
                del attrs[name]
        if "class" in attrs:
            keep = [c for c in (attrs["class"] or "").split() if c.startswith(("language-", "lang-"))]
            if keep:
                attrs["class"] = " ".join(keep)
            else:
                del attrs["class"]
    for node in root.css(_CHROME_TAGS):
        node.unwrap()
