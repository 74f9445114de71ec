from __future__ import annotations

import codecs

import pytest
import scrape_pages as pages
from selectolax.lexbor import LexborHTMLParser

from scraping_service.content import too_deep
from scraping_service.extract import (
    ContentKind,
    NonContentError,
    NonContentReason,
    UnsupportedContentError,
    classify_content_type,
    decode_body,
    extract,
)

URL = "https://news.example.com/science/tidal"


@pytest.fixture(scope="module")
def article() -> str:
    return extract(pages.article_page().encode(), "text/html; charset=utf-8", URL).markdown


def test_article_keeps_the_content_and_its_structure(article: str) -> None:
    f = pages.ARTICLE_FACTS
    assert article.startswith(f"# {f['title']}")
    assert f"## {f['heading']}" in article
    assert "### Advantages" in article
    for item in f["list_items"]:
        assert f"- {item}" in article
    assert "1. Survey the tidal range" in article
    assert "| Plant | Country | Capacity (MW) |" in article
    assert "| --- | --- | --- |" in article
    assert "| La Rance | France | 240 |" in article
    assert f"[{f['link_text']}](https://news.example.com{f['link_href']})" in article
    assert "```python\ncapacity_mw = 240\nenergy = capacity_mw * hours\n```" in article
    assert "> The tide is the most reliable renewable we have." in article
    assert "**large civil works**" in article and "*pulses*" in article


@pytest.mark.parametrize(
    "boilerplate",
    [
        pages.AD_TEXT,
        pages.COOKIE_TEXT,
        pages.FOOTER_TEXT,
        pages.SIDEBAR_TEXT,
        pages.RELATED_TEXT,
        "Pricing",
        "Careers",
        "dataLayer",
        "ad-slot",
    ],
)
def test_article_drops_boilerplate(article: str, boilerplate: str) -> None:
    assert boilerplate not in article


def test_metadata_and_links() -> None:
    page = extract(pages.article_page().encode(), "text/html", URL)
    assert page.title == "How Tidal Power Plants Work | Example News"
    assert page.description == "A plain guide to tidal barrages and lagoons."
    assert page.lang == "en-GB"
    assert page.canonical_url == "https://news.example.com/science/tidal-power"
    assert page.og["og:type"] == "article"
    assert page.og["og:image"] == "https://cdn.example.com/tidal.jpg"
    urls = [link["url"] for link in page.links]
    assert "https://news.example.com/reports/la-rance-1966" in urls
    assert "https://news.example.com/pricing" in urls  # links come from the whole page
    assert len(urls) == len(set(urls))
    assert all(u.startswith(("http://", "https://")) for u in urls)


def test_page_without_semantic_container_picks_the_text_block() -> None:
    html = (
        "<html><head><title>Recipe</title></head><body>"
        "<div class='menu'><a href='/a'>A</a> <a href='/b'>B</a></div>"
        "<div id='wrap'><div class='col'><p>"
        + "Whisk the eggs with sugar until pale and thick. " * 8
        + "</p><p>"
        + "Fold in the flour gently and bake for forty minutes. " * 8
        + "</p></div><div class='links'><a href='/x'>More</a> <a href='/y'>Other</a></div></div>"
        "</body></html>"
    )
    md = extract(html, "text/html", "https://r.example/").markdown
    assert "Whisk the eggs" in md and "Fold in the flour" in md
    assert "[More]" not in md and "[A]" not in md


_PARAGRAPH = "The tidal range sets how much energy a barrage can take from each tide. " * 6


def test_article_inside_a_layout_wrapper_named_sidebar_is_kept() -> None:
    # Drupal-style layouts name the wrapper of article and sidebar after the sidebar.
    html = (
        "<html><head><title>Tides</title></head><body>"
        "<div class='panel-two-col-sidebar-right'><main><article><h1>Tides</h1>"
        f"<p>{_PARAGRAPH}</p><p>{_PARAGRAPH}</p></article></main>"
        "<div class='sidebar'>Most read today</div></div>"
        "<script src='/a.js'></script><script src='/b.js'></script></body></html>"
    )
    md = extract(html, "text/html", "https://t.example/").markdown
    assert "The tidal range sets" in md
    assert "Most read today" not in md


def test_formulas_survive_main_content_extraction() -> None:
    html = (
        "<html><head><title>Roots</title></head><body><article><h1>Roots</h1>"
        f"<p>{_PARAGRAPH}</p><p>When <math><mi>a</mi><mo>≠</mo><mn>0</mn></math>, there are two "
        f"solutions.</p><p>{_PARAGRAPH}</p></article></body></html>"
    )
    md = extract(html, "text/html", "https://t.example/").markdown
    assert "When a ≠ 0 , there are two solutions." in md


def test_pathologically_nested_page_skips_our_heuristics_and_still_extracts() -> None:
    depth = 3000  # over content.MAX_DEPTH; our tree walks would be quadratic in it
    html = f"<html><body>{'<div>' * depth}<p>{_PARAGRAPH}</p>{'</div>' * depth}</body></html>"
    tree = LexborHTMLParser(html)
    assert too_deep(tree)
    assert not too_deep(LexborHTMLParser(pages.article_page()))
    assert "The tidal range sets" in extract(html, "text/html", "https://t.example/").markdown


@pytest.mark.parametrize(
    ("html", "reason"),
    [
        (pages.CLOUDFLARE_CHALLENGE, NonContentReason.BOT_CHALLENGE),
        (pages.CLOUDFLARE_BLOCK, NonContentReason.BOT_CHALLENGE),
        (pages.CAPTCHA_PAGE, NonContentReason.BOT_CHALLENGE),
        (pages.JS_SHELL, NonContentReason.JS_SHELL),
        (pages.ENABLE_JS_SHELL, NonContentReason.JS_SHELL),
        (pages.SOFT_404, NonContentReason.SOFT_404),
        ("<html><body>   </body></html>", NonContentReason.EMPTY),
    ],
)
def test_non_content_pages_are_refused_with_a_reason(html: str, reason: NonContentReason) -> None:
    with pytest.raises(NonContentError) as info:
        extract(html, "text/html", "https://x.example/")
    assert info.value.reason is reason
    assert str(info.value)  # a sentence for a person


def test_real_articles_that_mention_javascript_or_captcha_are_content() -> None:
    page = extract(pages.ARTICLE_WITH_COMMENTS_NOSCRIPT, "text/html", URL)
    assert "Barrages and lagoons" in page.markdown
    with_captcha = pages.article_page().replace("</article>", "<div class='g-recaptcha'></div></article>")
    assert "La Rance" in extract(with_captcha, "text/html", URL).markdown
    about_404 = pages.article_page().replace(
        "How Tidal Power Plants Work</h1>", "Why a 404 page should still help</h1>"
    )
    assert extract(about_404, "text/html", URL).markdown


def test_check_content_off_returns_the_page_anyway() -> None:
    page = extract(pages.CLOUDFLARE_CHALLENGE, "text/html", URL, check_content=False)
    assert page.title == "Just a moment..."


def test_charsets() -> None:
    text, enc = decode_body(pages.LATIN1_PAGE, "text/html")
    assert enc == "cp1252" and "Café crème" in text
    text, enc = decode_body("Grüße, schöne Welt".encode("utf-16-le"), None)
    assert isinstance(text, str)  # no BOM, no declaration: detection decides, never a crash
    text, enc = decode_body(codecs.BOM_UTF16_LE + "Grüße".encode("utf-16-le"), None)
    assert (text, enc) == ("Grüße", "utf-16-le")
    text, enc = decode_body(codecs.BOM_UTF8 + "Grüße".encode(), "text/html; charset=latin-1")
    assert text == "Grüße"
    # A header that lies is overridden when the bytes cannot be that charset.
    text, _ = decode_body("naïve café".encode(), "text/html; charset=ascii")
    assert "caf" in text
    text, enc = decode_body("Привет, мир! Это тест.".encode("cp1251"), "text/html; charset=windows-1251")
    assert text == "Привет, мир! Это тест." and enc == "cp1251"
    text, enc = decode_body(("Съешь же ещё этих мягких французских булок. " * 20).encode("cp1251"))
    assert "французских" in text


def test_latin1_page_end_to_end() -> None:
    page = extract(pages.LATIN1_PAGE, None, "https://x.example/")
    assert page.title == "Café crème"
    assert "mousse épaisse" in page.markdown


def test_xhtml_text_and_json() -> None:
    page = extract(pages.XHTML_PAGE.encode(), "application/xhtml+xml", "https://x.example/")
    assert page.kind is ContentKind.XHTML and page.lang == "de"
    assert "# Grüße" in page.markdown
    page = extract(pages.PLAIN_TEXT.encode(), "text/plain", "https://x.example/")
    assert page.kind is ContentKind.TEXT and page.title == "Release notes"
    assert "tidal forecasts" in page.markdown
    page = extract(pages.JSON_BODY, "application/json", "https://x.example/")
    assert page.kind is ContentKind.JSON
    assert page.markdown.startswith("```json\n{") and '"price": 9.5' in page.markdown
    page = extract(b'{"a": 1}', "application/ld+json", "https://x.example/")
    assert page.kind is ContentKind.JSON


@pytest.mark.parametrize("ctype", ["image/png", "application/pdf", "video/mp4", "application/zip"])
def test_unsupported_types(ctype: str) -> None:
    with pytest.raises(UnsupportedContentError, match="not supported"):
        extract(b"\x89PNG\r\n", ctype, "https://x.example/")


def test_sniffing_without_content_type() -> None:
    assert classify_content_type(None, b"<!DOCTYPE html><html>") is ContentKind.HTML
    assert classify_content_type("", b'  {"a": 1}') is ContentKind.JSON
    with pytest.raises(UnsupportedContentError):
        classify_content_type(None, b"\x00\x01\x02binary")


def test_extraction_is_deterministic() -> None:
    html = pages.long_page(30)
    assert extract(html, "text/html", URL).markdown == extract(html, "text/html", URL).markdown
