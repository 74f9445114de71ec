"""Turn a fetched body into clean markdown, metadata and links: the extraction pipeline.

Stages, one module each:
1. decode.py: media type and charset, bytes to text;
2. metadata.py: title, description, language, canonical URL, Open Graph and links, read from
   the whole lexbor-parsed document;
3. detect.py: is this real content (not a bot challenge, JavaScript shell, soft 404 or empty
   page)? Judged on the parsed tree *before* the main-content extraction or any model call;
4. content.py: the main content: our heuristics pick the region, trafilatura cleans it;
5. markdown.py: the main content rendered to markdown (headings, lists, links, code, tables).

Stage 4 was chosen by measurement on mozilla/readability's 130 real test pages
(bench/bench_extract.py, token F1 against the expected content): see content.py and
`make bench`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson
from selectolax.lexbor import LexborHTMLParser, LexborNode

from .content import (
    focus_html,
    main_content_html,
    readable_container,
    strip_invisible,
    text_len,
    too_deep,
)
from .decode import ContentKind, UnsupportedContentError, classify_content_type, decode_body
from .detect import NonContentError, NonContentReason, Signals, detect_non_content
from .markdown import code_languages, html_to_markdown
from .metadata import MAX_LINKS, links, metadata

__all__ = [
    "MAX_LINKS",
    "ContentKind",
    "ExtractedPage",
    "NonContentError",
    "NonContentReason",
    "UnsupportedContentError",
    "classify_content_type",
    "decode_body",
    "extract",
]


@dataclass(slots=True)
class ExtractedPage:
    kind: ContentKind
    markdown: str
    title: str | None = None
    description: str | None = None
    lang: str | None = None
    canonical_url: str | None = None
    og: dict[str, str] = field(default_factory=dict)
    links: list[dict[str, str]] = field(default_factory=list)
    encoding: str = "utf-8"

    def metadata(self) -> dict[str, Any]:
        return {
            "title": self.title,
            "description": self.description,
            "lang": self.lang,
            "canonical_url": self.canonical_url,
            "og": dict(self.og),
        }


def _extract_json(text: str, encoding: str, check_content: bool) -> ExtractedPage:
    try:
        parsed = orjson.loads(text)
    except orjson.JSONDecodeError:
        markdown = text.strip()
    else:
        pretty = orjson.dumps(parsed, option=orjson.OPT_INDENT_2).decode()
        markdown = f"```json\n{pretty}\n```"
    if check_content and not markdown.strip("`json\n {}[]"):
        raise NonContentError(NonContentReason.EMPTY)
    return ExtractedPage(kind=ContentKind.JSON, markdown=markdown, encoding=encoding)


def _extract_text(text: str, encoding: str, check_content: bool) -> ExtractedPage:
    markdown = text.replace("\r\n", "\n").strip()
    if check_content and len(markdown) < 20:
        raise NonContentError(NonContentReason.EMPTY)
    first_line = markdown.split("\n", 1)[0].lstrip("# ").strip() if markdown else ""
    return ExtractedPage(
        kind=ContentKind.TEXT, markdown=markdown, title=first_line[:200] or None, encoding=encoding
    )


def _main_markdown(html: str, url: str, fallback: LexborNode | None, languages: dict[str, str]) -> str:
    """trafilatura's main content through our renderer; our own container when it finds none."""
    content = main_content_html(html, url) if html else None
    if content:
        node = LexborHTMLParser(content).body
        markdown = html_to_markdown(node, url, languages) if node is not None else ""
        if markdown:
            return markdown
    return html_to_markdown(fallback, url, languages) if fallback is not None else ""


def extract(
    body: bytes | str,
    content_type: str | None,
    url: str,
    *,
    check_content: bool = True,
) -> ExtractedPage:
    """Extract markdown, metadata and links from a fetched body.

    Raises UnsupportedContentError for media types we do not handle and, when check_content is
    set, NonContentError for bot challenges, JavaScript shells, soft 404s and empty pages.
    """
    raw = body if isinstance(body, bytes) else body.encode("utf-8")
    kind = classify_content_type(content_type, raw)
    text, encoding = (body, "utf-8") if isinstance(body, str) else decode_body(raw, content_type)
    if kind is ContentKind.JSON:
        return _extract_json(text, encoding, check_content)
    if kind is ContentKind.TEXT:
        return _extract_text(text, encoding, check_content)

    tree = LexborHTMLParser(text)
    meta = metadata(tree, url)
    page_links = links(tree, url)
    signals = Signals.read(tree, text, meta["title"]) if check_content else None
    languages = code_languages(tree.root) if tree.root is not None else {}
    # Everything above reads the whole page; from here on the tree is stripped in place.
    if tree.body is not None:
        strip_invisible(tree.body)
    visible_len = text_len(tree.body) if tree.body is not None else 0
    # A pathologically deep page skips our heuristics; detection then judges all visible text.
    container = None if too_deep(tree) else readable_container(tree)
    if signals is not None:
        # Before trafilatura runs: a refused page costs no more than this parse.
        detect_non_content(signals, text_len(container) if container is not None else visible_len)
    focus = focus_html(text, container, visible_len)
    markdown = _main_markdown(focus, url, container, languages)
    if not markdown and container is None and tree.body is not None:
        # Too deep for our heuristics and for trafilatura (lxml stops at 255 levels): the
        # visible text, without structure, is still better than nothing.
        markdown = " ".join(tree.body.text(deep=True, separator=" ").split())
    return ExtractedPage(
        kind=kind,
        markdown=markdown,
        title=meta["title"],
        description=meta["description"],
        lang=meta["lang"],
        canonical_url=meta["canonical_url"],
        og=meta["og"],
        links=page_links,
        encoding=encoding,
    )
