"""The LLM client and the map-reduce over a page, against a local OpenAI-compatible server,
through the real openai client."""

from __future__ import annotations

import re
import time
from typing import Any

import pytest
import scrape_pages as pages
from scrape_fakes import FakeOpenAI

from scraping_service.extract import extract
from scraping_service.llm import (
    ModelAuthError,
    ModelConfig,
    ModelOutputError,
    ModelRequestError,
    ModelUnavailableError,
)
from scraping_service.mapreduce import DEFAULT_SUMMARY_PROMPT, PageInput, run_model

KEY = "sk-test-valid-key-0123456789abcdef"


def config(server: FakeOpenAI, **kw: Any) -> ModelConfig:
    base: dict[str, Any] = {
        "base_url": server.base_url,
        "timeout_s": 5.0,
        "backoff_base_s": 0.05,
        "backoff_max_s": 0.2,
        "max_attempts": 3,
    }
    base.update(kw)
    return ModelConfig(**base)


def article() -> PageInput:
    page = extract(pages.article_page(), "text/html", "https://news.example.com/tidal")
    return PageInput(url="https://news.example.com/tidal", title=page.title, markdown=page.markdown)


def long_page() -> PageInput:
    page = extract(pages.long_page(120), "text/html", "https://shop.example.com/widgets")
    return PageInput(url="https://shop.example.com/widgets", title=page.title, markdown=page.markdown)


def user_content(request: dict[str, Any]) -> str:
    return str(next(m["content"] for m in request["messages"] if m["role"] == "user"))


async def test_summary_by_default(fake_openai: FakeOpenAI) -> None:
    progress: list[tuple[int, int]] = []

    async def on_progress(k: int, n: int) -> None:
        progress.append((k, n))

    result = await run_model(
        api_key=KEY, model="gpt-4o", page=article(), config=config(fake_openai), on_progress=on_progress
    )
    assert result.summary == "Summary of: # How Tidal Power Plants Work"
    assert result.extraction is None
    assert len(fake_openai.requests) == 1
    request = fake_openai.requests[0]
    assert request["model"] == "gpt-4o"
    assert request["_auth"] == f"Bearer {KEY}"
    assert "response_format" not in request
    assert DEFAULT_SUMMARY_PROMPT in user_content(request)
    assert "La Rance" in user_content(request)
    assert result.usage.prompt_tokens > 0 and result.usage.completion_tokens > 0
    assert progress == [(1, 1)]


async def test_prompt_steers(fake_openai: FakeOpenAI) -> None:
    await run_model(
        api_key=KEY,
        model="gpt-4o-mini",
        page=article(),
        config=config(fake_openai),
        prompt="List the tidal plants and their capacity.",
    )
    content = user_content(fake_openai.requests[0])
    assert content.count("List the tidal plants and their capacity.") == 2
    assert DEFAULT_SUMMARY_PROMPT not in content


async def test_long_page_is_chunked_with_the_prompt_in_every_chunk_and_reduced(
    fake_openai: FakeOpenAI,
) -> None:
    progress: list[tuple[int, int]] = []

    async def on_progress(k: int, n: int) -> None:
        progress.append((k, n))

    prompt = "Which widget is the heaviest?"
    result = await run_model(
        api_key=KEY,
        model="gpt-4o",
        page=long_page(),
        config=config(fake_openai, chunk_tokens=2000),
        prompt=prompt,
        on_progress=on_progress,
    )
    maps = [r for r in fake_openai.requests if "[Part 1]" not in user_content(r)]
    reduces = [r for r in fake_openai.requests if "[Part 1]" in user_content(r)]
    assert len(maps) >= 5 and len(reduces) >= 1

    def part_no(request: dict[str, Any]) -> int:
        match = re.search(r"Part (\d+) of", user_content(request))
        assert match is not None
        return int(match.group(1))

    for k, request in enumerate(sorted(maps, key=part_no), 1):
        content = user_content(request)
        assert content.count(prompt) == 2
        assert f"Part {k} of {len(maps)}" in content
    assert result.summary is not None and result.summary.startswith("COMBINED: ")
    # The parts are combined in page order.
    numbers = [int(n) for n in re.findall(r"Section (\d+)", result.summary)]
    assert len(numbers) >= 4 and numbers == sorted(numbers)
    assert result.summary.index("Widget catalogue") < result.summary.index("Section")
    assert result.calls == len(fake_openai.requests)
    assert progress[-1][0] == progress[-1][1] == len(fake_openai.requests)
    assert [k for k, _ in progress] == list(range(1, len(progress) + 1))


async def test_usage_is_summed_over_every_call(fake_openai: FakeOpenAI) -> None:
    result = await run_model(
        api_key=KEY, model="gpt-4o", page=long_page(), config=config(fake_openai, chunk_tokens=3000)
    )
    expected_prompt = sum(sum(len(m["content"]) for m in r["messages"]) // 4 for r in fake_openai.requests)
    assert result.usage.prompt_tokens == expected_prompt
    assert result.usage.completion_tokens >= len(fake_openai.requests)


WIDGETS = {
    "type": "object",
    "properties": {
        "catalogue": {"type": "string"},
        "widgets": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {"model": {"type": "string"}, "kg": {"type": "integer"}},
                "required": ["model", "kg"],
            },
        },
        "heaviest": {"type": "string"},
    },
    "required": ["widgets"],
}


def widget_answer(request: dict[str, Any]) -> Any:
    """Extract widgets from the part of the page the request carries, like a model would."""
    content = user_content(request)
    page = content.split("<<<PAGE\n", 1)[1].split("\nPAGE>>>", 1)[0]
    found = [{"model": m, "kg": int(kg)} for m, kg in re.findall(r"model (W\d{3}) weighs (\d+)", page)]
    first = "Part 1 of" in content
    # Overlap on purpose: each part repeats the first widget it saw, to prove de-duplication.
    return {
        "catalogue": "Widget catalogue" if first else None,
        "widgets": found + found[:1],
        "heaviest": None,
    }


async def test_schema_extraction_over_chunks_merges_deterministically(fake_openai: FakeOpenAI) -> None:
    fake_openai.schema_answer = widget_answer
    result = await run_model(
        api_key=KEY,
        model="gpt-4o",
        page=long_page(),
        config=config(fake_openai, chunk_tokens=2500),
        schema=WIDGETS,
        prompt="List every widget with its weight.",
    )
    assert len(fake_openai.requests) > 3
    for request in fake_openai.requests:
        fmt = request["response_format"]
        assert fmt["type"] == "json_schema"
        assert fmt["json_schema"]["strict"] is True
        assert fmt["json_schema"]["schema"]["additionalProperties"] is False
        assert "List every widget with its weight." in user_content(request)
    extraction = result.extraction
    assert result.summary is None
    assert extraction["catalogue"] == "Widget catalogue"
    assert "heaviest" not in extraction  # optional and never found: dropped, not null
    assert [w["model"] for w in extraction["widgets"]] == [f"W{i:03d}" for i in range(120)]
    assert extraction["widgets"][5] == {"model": "W005", "kg": 15}


async def test_schema_with_non_object_root(fake_openai: FakeOpenAI) -> None:
    fake_openai.schema_answer = lambda _: {"value": ["La Rance", "Sihwa Lake"]}
    result = await run_model(
        api_key=KEY,
        model="gpt-4o",
        page=article(),
        config=config(fake_openai),
        schema={"type": "array", "items": {"type": "string"}},
    )
    assert result.extraction == ["La Rance", "Sihwa Lake"]


async def test_a_rejected_key_fails_at_once_and_the_message_has_no_key(fake_openai: FakeOpenAI) -> None:
    bad_key = "sk-wrong-key-ABCDEFGHIJKLMNOP0123456789"
    with pytest.raises(ModelAuthError) as info:
        await run_model(api_key=bad_key, model="gpt-4o", page=article(), config=config(fake_openai))
    assert len(fake_openai.requests) == 1  # never retried
    assert "401" in str(info.value)
    assert bad_key not in str(info.value) and "ABCDEFGHIJKLMNOP" not in str(info.value)
    assert info.value.retryable is False
    assert info.value.__cause__ is None and info.value.__suppress_context__


async def test_429_is_retried_after_retry_after(fake_openai: FakeOpenAI) -> None:
    fake_openai.fail(429, "Rate limit reached", retry_after="1")
    t0 = time.monotonic()
    result = await run_model(api_key=KEY, model="gpt-4o", page=article(), config=config(fake_openai))
    assert result.summary
    assert len(fake_openai.requests) == 2
    gap = fake_openai.request_times[1] - fake_openai.request_times[0]
    assert gap >= 0.95, gap  # Retry-After honoured, not the 0.05 s backoff
    assert time.monotonic() - t0 < 4


async def test_insufficient_quota_is_not_retried(fake_openai: FakeOpenAI) -> None:
    fake_openai.fail(429, "You exceeded your current quota", code="insufficient_quota")
    with pytest.raises(ModelAuthError, match="quota"):
        await run_model(api_key=KEY, model="gpt-4o", page=article(), config=config(fake_openai))
    assert len(fake_openai.requests) == 1


async def test_5xx_is_retried_then_gives_a_retryable_error(fake_openai: FakeOpenAI) -> None:
    fake_openai.fail(500, "internal", times=1)
    fake_openai.fail(503, "overloaded", times=1)
    result = await run_model(api_key=KEY, model="gpt-4o", page=article(), config=config(fake_openai))
    assert result.summary and len(fake_openai.requests) == 3
    fake_openai.requests.clear()
    fake_openai.fail(500, f"internal error for key {KEY}", times=5)
    with pytest.raises(ModelUnavailableError) as info:
        await run_model(api_key=KEY, model="gpt-4o", page=article(), config=config(fake_openai))
    assert len(fake_openai.requests) == 3  # max_attempts
    assert info.value.retryable is True
    assert KEY not in str(info.value)


async def test_long_retry_after_is_handed_back_not_slept(fake_openai: FakeOpenAI) -> None:
    fake_openai.fail(429, "slow down", retry_after="120")
    t0 = time.monotonic()
    with pytest.raises(ModelUnavailableError) as info:
        await run_model(api_key=KEY, model="gpt-4o", page=article(), config=config(fake_openai))
    assert info.value.retry_after == 120
    assert time.monotonic() - t0 < 2


async def test_timeouts_are_retried(fake_openai: FakeOpenAI) -> None:
    fake_openai.stall(3.0)
    result = await run_model(
        api_key=KEY, model="gpt-4o", page=article(), config=config(fake_openai, timeout_s=0.5)
    )
    assert result.summary and len(fake_openai.requests) == 2


async def test_bad_request_is_permanent_and_scrubbed(fake_openai: FakeOpenAI) -> None:
    fake_openai.fail(400, f"model 'gpt-9' does not exist (key {KEY})", code="model_not_found")
    with pytest.raises(ModelRequestError) as info:
        await run_model(api_key=KEY, model="gpt-9", page=article(), config=config(fake_openai))
    assert "gpt-9" in str(info.value) and KEY not in str(info.value)
    assert len(fake_openai.requests) == 1


async def test_length_in_structured_mode_halves_the_part(fake_openai: FakeOpenAI) -> None:
    fake_openai.schema_answer = widget_answer
    # The first answer is cut off; the pipeline splits that part in two and asks again.
    fake_openai.finish_reason = lambda _: "length" if len(fake_openai.requests) == 1 else "stop"
    result = await run_model(
        api_key=KEY,
        model="gpt-4o",
        page=long_page(),
        config=config(fake_openai, chunk_tokens=20000, max_chunks=1),
        schema=WIDGETS,
    )
    assert len(fake_openai.requests) >= 3
    assert [w["model"] for w in result.extraction["widgets"]] == [f"W{i:03d}" for i in range(120)]
    # The cut-off call was billed, so its usage counts.
    assert result.usage.prompt_tokens > sum(len(user_content(r)) // 4 for r in fake_openai.requests[1:])


async def test_length_in_summary_mode_retries_with_more_room(fake_openai: FakeOpenAI) -> None:
    fake_openai.finish_reason = lambda r: "length" if r["max_completion_tokens"] < 3000 else "stop"
    result = await run_model(api_key=KEY, model="gpt-4o", page=article(), config=config(fake_openai))
    assert [r["max_completion_tokens"] for r in fake_openai.requests] == [1500, 3000]
    assert result.warnings == []
    fake_openai.requests.clear()
    fake_openai.finish_reason = lambda _: "length"
    result = await run_model(api_key=KEY, model="gpt-4o", page=article(), config=config(fake_openai))
    assert result.summary and result.warnings == ["A summary was cut off at the model's token limit."]


async def test_invalid_json_is_asked_again_then_refused(fake_openai: FakeOpenAI) -> None:
    calls = {"n": 0}

    def flaky(_: dict[str, Any]) -> Any:
        calls["n"] += 1
        return (
            {"widgets": "not-a-list"}
            if calls["n"] == 1
            else {"widgets": [], "catalogue": None, "heaviest": None}
        )

    fake_openai.schema_answer = flaky
    result = await run_model(
        api_key=KEY, model="gpt-4o", page=article(), config=config(fake_openai), schema=WIDGETS
    )
    assert result.extraction == {"widgets": []}
    assert len(fake_openai.requests) == 2
    fake_openai.requests.clear()
    fake_openai.schema_answer = lambda _: {"widgets": 5}
    with pytest.raises(ModelOutputError, match="did not match the schema"):
        await run_model(
            api_key=KEY, model="gpt-4o", page=article(), config=config(fake_openai), schema=WIDGETS
        )


async def test_merged_result_is_validated_against_the_users_schema(fake_openai: FakeOpenAI) -> None:
    schema = {
        "type": "object",
        "properties": {"tags": {"type": "array", "items": {"type": "string"}, "maxItems": 1}},
        "required": ["tags"],
    }
    fake_openai.schema_answer = lambda _: {"tags": [f"tag {len(fake_openai.requests)}"]}
    with pytest.raises(ModelOutputError, match="does not conform"):
        await run_model(
            api_key=KEY,
            model="gpt-4o",
            page=long_page(),
            config=config(fake_openai, chunk_tokens=3000),
            schema=schema,
        )
