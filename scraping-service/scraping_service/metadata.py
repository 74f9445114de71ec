"""Page metadata (title, description, language, canonical URL, Open Graph) and links.

Both are read from the whole document, not only the main content: a page's links include
its navigation, which a caller may want to follow.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urljoin, urlsplit

from selectolax.lexbor import LexborHTMLParser

__all__ = ["MAX_LINKS", "abs_http", "clean", "links", "metadata"]

MAX_LINKS = 500


def clean(s: str | None) -> str | None:
    if s is None:
        return None
    s = " ".join(s.split())
    return s or None


def abs_http(base: str, href: str | None) -> str | None:
    if not href:
        return None
    href = href.strip()
    if href.startswith(("javascript:", "mailto:", "tel:", "data:", "#")):
        return None
    try:
        url = urljoin(base, href)
        parts = urlsplit(url)
    except ValueError:
        return None
    if parts.scheme not in ("http", "https") or not parts.netloc:
        return None
    return parts._replace(fragment="").geturl()


def metadata(tree: LexborHTMLParser, base_url: str) -> dict[str, Any]:
    og: dict[str, str] = {}
    description = None
    lang = None
    for meta in tree.css("meta"):
        attrs = meta.attributes
        key = (attrs.get("property") or attrs.get("name") or "").strip().lower()
        content = clean(attrs.get("content"))
        if not key or content is None:
            http_equiv = (attrs.get("http-equiv") or "").lower()
            if http_equiv == "content-language" and content:
                lang = lang or content.split(",")[0].strip()
            continue
        if key.startswith("og:") and key not in og:
            og[key] = content
        elif key == "description" and description is None:
            description = content
    title_node = tree.css_first("title")
    title = clean(title_node.text(deep=True)) if title_node is not None else None
    if not title:
        title = og.get("og:title")
    if not title:
        h1 = tree.css_first("h1")
        title = clean(h1.text(deep=True)) if h1 is not None else None
    html = tree.css_first("html")
    if html is not None:
        lang = clean(html.attributes.get("lang") or html.attributes.get("xml:lang")) or lang
    canonical = None
    for link in tree.css("link[rel]"):
        rels = (link.attributes.get("rel") or "").lower().split()
        if "canonical" in rels:
            canonical = abs_http(base_url, link.attributes.get("href"))
            if canonical:
                break
    return {
        "title": title,
        "description": description or og.get("og:description"),
        "lang": lang,
        "canonical_url": canonical,
        "og": og,
    }


def links(tree: LexborHTMLParser, base_url: str) -> list[dict[str, str]]:
    seen: set[str] = set()
    out: list[dict[str, str]] = []
    for a in tree.css("a[href]"):
        url = abs_http(base_url, a.attributes.get("href"))
        if url is None or url in seen:
            continue
        seen.add(url)
        out.append({"url": url, "text": clean(a.text(deep=True)) or ""})
        if len(out) >= MAX_LINKS:
            break
    return out
