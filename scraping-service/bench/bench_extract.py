"""Extraction quality and speed on the fixture pages: ours vs trafilatura/markdownify when present.

Run: uv run python scraping-service/bench/bench_extract.py
(trafilatura and markdownify are not dependencies; they are measured only when importable.)
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

import scrape_pages as pages

from scraping_service.extract import extract

URL = "https://news.example.com/science/tidal"
MUST_KEEP: list[str] = [
    str(pages.ARTICLE_FACTS["heading"]),
    "Predictable output",
    "La Rance",
    "Sihwa Lake",
    str(pages.ARTICLE_FACTS["link_text"]),
    "capacity_mw = 240",
]
MUST_DROP: list[str] = [
    pages.NAV_TEXT.split()[2],
    pages.AD_TEXT,
    pages.COOKIE_TEXT,
    pages.FOOTER_TEXT,
    pages.SIDEBAR_TEXT,
    pages.RELATED_TEXT,
]
STRUCTURE: list[str] = ["## ", "- Predictable", "| La Rance |", "](https://news.example.com/reports/"]


def ours(html: str) -> str:
    return extract(html.encode(), "text/html; charset=utf-8", URL).markdown


def candidates() -> dict[str, Callable[[str], str]]:
    found: dict[str, Callable[[str], str]] = {"selectolax+own renderer": ours}
    try:
        import trafilatura

        def traf(html: str) -> str:
            out = trafilatura.extract(
                html, url=URL, output_format="markdown", include_links=True, include_tables=True
            )
            return out or ""

        found["trafilatura"] = traf
    except ImportError:
        pass
    try:
        import markdownify

        found["markdownify (whole page)"] = lambda html: markdownify.markdownify(html)
    except ImportError:
        pass
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=30, help="timed runs on the article page")
    samples = parser.parse_args().samples
    article = pages.article_page()
    long = pages.long_page(60)
    for name, fn in candidates().items():
        md = fn(article)
        kept = sum(s in md for s in MUST_KEEP)
        dropped = sum(s not in md for s in MUST_DROP)
        structure = sum(s in md for s in STRUCTURE)
        times = []
        for html in [article] * samples + [long] * max(1, samples // 3):
            t0 = time.perf_counter()
            fn(html)
            times.append((time.perf_counter() - t0) * 1000)
        print(
            f"{name:28s} kept {kept}/{len(MUST_KEEP)}  dropped {dropped}/{len(MUST_DROP)}  "
            f"structure {structure}/{len(STRUCTURE)}  median {statistics.median(times):.2f} ms"
            f"  p95 {sorted(times)[int(len(times) * 0.95)]:.2f} ms"
        )


if __name__ == "__main__":
    main()
