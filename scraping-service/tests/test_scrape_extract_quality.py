"""Main-content quality on real pages: a 10-page slice of the bench/bench_extract.py evaluation.

The full set (130 pages, compared with trafilatura) runs in `make bench`; this keeps a
regression in the extractor from reaching main unnoticed, in a few seconds.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))

import bench_extract

# Measured 0.921 (macro F1) on these 10 pages on 2026-11-30; a little room for library updates.
F1_FLOOR = 0.90
PAGES = 10


@pytest.fixture(scope="module")
def pages() -> list[bench_extract.Page]:
    return bench_extract.load_pages(PAGES)


def test_scorer_counts_shared_tokens_and_strips_markdown_syntax() -> None:
    expected = bench_extract.tokens("The tide rises; the tide falls.")
    got = bench_extract.tokens(bench_extract.markdown_text("## The [tide](https://x.example/t) **rises**"))
    precision, recall, f1, overlap = bench_extract.prf(expected, got)
    assert sorted(got.elements()) == ["rises", "the", "tide"]
    assert (overlap, precision, recall) == (3, 1.0, 0.5)
    assert f1 == pytest.approx(2 / 3)


def test_production_extractor_f1_on_real_pages_stays_above_the_floor(
    pages: list[bench_extract.Page],
) -> None:
    assert len(pages) == PAGES
    score = bench_extract.evaluate(bench_extract.production, pages)
    assert score.f1 >= F1_FLOOR, score
    assert score.precision >= 0.9 and score.recall >= 0.8, score


def test_real_articles_are_not_refused_as_non_content(pages: list[bench_extract.Page]) -> None:
    assert bench_extract.refused_articles(pages) == []
