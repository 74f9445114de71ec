from __future__ import annotations

import scrape_pages as pages

from scraping_service.extract import extract
from scraping_service.tokens import EstimatingCounter, get_counter, split_markdown


def test_the_real_tokenizer_is_available_offline() -> None:
    counter = get_counter()
    assert counter.name == "tiktoken:cl100k_base"
    assert counter.count("hello world") == 2
    assert counter.count("Tidal power turns the rise and fall of the sea into electricity.") == 14


def test_estimator_is_deterministic_and_errs_high() -> None:
    est = EstimatingCounter()
    text = extract(pages.article_page(), "text/html", "https://x.example/").markdown
    assert est.count(text) == est.count(text)
    assert est.count(text) >= get_counter().count(text)


def test_chunks_respect_the_budget_and_keep_all_text() -> None:
    counter = get_counter()
    md = extract(pages.long_page(120), "text/html", "https://x.example/").markdown
    chunks = split_markdown(md, 1500, counter)
    assert len(chunks) > 5
    assert all(counter.count(c) <= 1500 for c in chunks)
    for i in range(120):
        assert sum(f"W{i:03d}" in c for c in chunks) == 1
    assert chunks == split_markdown(md, 1500, counter)


def test_chunks_repeat_the_current_heading() -> None:
    counter = get_counter()
    md = "# Title\n\n" + "\n\n".join(f"Paragraph {i} " + "word " * 80 for i in range(20))
    chunks = split_markdown(md, 300, counter)
    assert len(chunks) > 3
    assert all(c.startswith("# Title") for c in chunks)


def test_code_fences_stay_whole_when_they_fit() -> None:
    counter = get_counter()
    code = "```python\n" + "\n\n".join(f"x{i} = {i}" for i in range(30)) + "\n```"
    md = "intro " * 200 + "\n\n" + code + "\n\n" + "outro " * 200
    chunks = split_markdown(md, 400, counter)
    assert any(code in c for c in chunks)


def test_a_single_huge_line_is_cut_inside() -> None:
    counter = get_counter()
    chunks = split_markdown("word " * 5000, 1000, counter)
    assert len(chunks) >= 5
    assert all(counter.count(c) <= 1000 for c in chunks)
    assert split_markdown("short", 100, EstimatingCounter()) == ["short"]
    est_chunks = split_markdown("word " * 5000, 500, EstimatingCounter())
    assert all(EstimatingCounter().count(c) <= 500 for c in est_chunks)
