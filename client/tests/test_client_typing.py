"""The endpoints are written once and bound to both clients by descriptors (`_bind.py`):
this checks, with mypy itself, that a user still sees each method typed for their client,
and that the methods are real functions and coroutine functions at run time."""

from __future__ import annotations

import asyncio
import inspect
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import pytest

from smartapp import AsyncClient, Client

USER_CODE = """
from smartapp import AsyncClient, Client


async def use(client: Client, aclient: AsyncClient) -> None:
    reveal_type(client.get_task("t"))
    reveal_type(await aclient.get_task("t"))
    reveal_type(client.submit_task("noop", {}, retry={"max_attempts": 2}))
    reveal_type(await aclient.scrape("https://example.com", run_timeout_seconds=5))
    reveal_type(client.iter_tasks("FAILURE", page_size=10))
    reveal_type(aclient.iter_cache("report:"))
    reveal_type(client.list_devices())
    client.get_task(42)
    client.submit_task("noop", countdown="soon")
    aclient.list_tasks(no_such_filter=1)
"""


def _mypy_on(folder: Path, code: str) -> subprocess.CompletedProcess[str]:
    source = folder / "user.py"
    source.write_text(code)
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "mypy",
            "--strict",
            "--no-incremental",
            "--cache-dir",
            str(folder / ".mypy"),
            str(source),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_a_users_code_sees_each_method_typed_for_its_client() -> None:
    # A folder of its own, outside pytest's: mypy walks up from the file looking for packages,
    # and another test may leave an __init__.py in pytest's base folder. A process of its own
    # too: mypy's in-process API shares the test session's interpreter state.
    with tempfile.TemporaryDirectory(prefix="smartapp_typing_") as folder:
        done = _mypy_on(Path(folder), textwrap.dedent(USER_CODE))
    report, status = done.stdout, done.returncode
    lines = [
        line.split(": ", 2)[-1].replace("builtins.", "") for line in report.splitlines() if "user.py:" in line
    ]
    assert status == 1, report + done.stderr
    assert lines[:7] == [
        'Revealed type is "smartapp._models.TaskStatus"',
        'Revealed type is "smartapp._models.TaskStatus"',
        'Revealed type is "smartapp._tasks.TaskHandle"',
        'Revealed type is "smartapp._tasks.AsyncTaskHandle"',
        'Revealed type is "typing.Generator[smartapp._models.TaskStatus, None, None]"',
        'Revealed type is "typing.AsyncGenerator[smartapp._models.CacheItem, None]"',
        'Revealed type is "list[smartapp._models.Device]"',
    ], report
    errors = [line for line in lines[7:] if "[" in line]
    assert len(errors) == 4, report
    assert '"int"; expected "str"' in errors[0]
    assert '"str"; expected "float | None"' in errors[1]
    assert 'Unexpected keyword argument "no_such_filter"' in errors[2]
    assert '"Coroutine[Any, Any, list[TaskStatus]]" must be used' in errors[3]  # not awaited


def test_methods_are_functions_with_the_endpoints_signature_and_docs() -> None:
    client, aclient = Client(), AsyncClient()
    try:
        assert list(inspect.signature(client.get_task).parameters) == ["task_id"]
        assert inspect.signature(aclient.list_tasks) == inspect.signature(client.list_tasks)
        assert "task-status" in (client.get_task.__doc__ or "")
        assert not inspect.iscoroutinefunction(client.get_task)
        assert inspect.iscoroutinefunction(aclient.get_task)
        assert inspect.iscoroutinefunction(aclient.submit_task)
        assert inspect.isasyncgenfunction(aclient.iter_tasks)
        assert inspect.isgeneratorfunction(client.iter_cache)
    finally:
        client.close()
        asyncio.run(aclient.aclose())


def test_submission_options_show_as_keywords_and_an_unknown_one_is_refused_before_sending() -> None:
    # No server behind this client: the refusal comes before any request.
    with Client("http://127.0.0.1:9") as client:
        scrape = inspect.signature(client.scrape).parameters
        submit = inspect.signature(client.submit_task).parameters
        assert list(scrape) == [
            "url",
            *("retry", "queue_timeout_seconds", "run_timeout_seconds", "idempotency_key"),
            *("openai_key", "model", "prompt", "schema", "max_age"),
            *("include_selectors", "exclude_selectors", "headers"),
        ]
        assert list(submit)[:2] == ["task_type", "data"]
        assert {"countdown", "priority", "callback_url", "run_timeout_seconds"} <= set(submit)
        for name in ("openai_key", "retry"):
            assert scrape[name].kind is inspect.Parameter.KEYWORD_ONLY and scrape[name].default is None
        with pytest.raises(TypeError, match="no_such_option"):
            client.submit_task("noop", no_such_option=1)  # type: ignore[call-arg]
        with pytest.raises(TypeError, match="countdown"):
            client.scrape("https://example.com", countdown=1)  # type: ignore[call-arg]
