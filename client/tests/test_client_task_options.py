"""Submission options (retry, queue and run time limits) and the task list's filters and
pages, through the SDK and the command, against the real platform."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta

from clientkit import Platform, cli_env, run_cli

from smartapp import AsyncClient, Client, TaskRetry


def test_the_retry_option_runs_a_failing_task_again_and_one_attempt_does_not(
    platform: Platform, new_user
) -> None:
    with Client(platform.url, token=new_user().token) as client:
        retried = client.submit_task(
            "fail",
            {"message": "flaky", "succeed_after": 1},
            retry=TaskRetry(max_attempts=2, initial_seconds=0, jitter=False),
        ).wait(timeout=60)
        once = client.submit_task(
            "fail", {"message": "flaky", "succeed_after": 1}, retry={"max_attempts": 1}
        ).wait(timeout=60)
    assert retried.status == "SUCCESS" and retried.attempts == 2, retried
    assert once.status == "FAILURE" and once.attempts == 1, once
    assert once.error is not None and "flaky" in once.error.message


async def test_run_and_queue_timeouts_end_tasks_failed_and_expired(platform: Platform, new_user) -> None:
    async with AsyncClient(platform.url, token=new_user().token) as client:
        slow = await client.submit_task("sleep", {"seconds": 10}, run_timeout_seconds=1)
        late = await client.submit_long_running(steps=1, step_seconds=0, countdown=3, queue_timeout_seconds=1)
        stopped = await slow.wait(timeout=30)
        expired = await late.wait(timeout=30)
    assert stopped.status == "FAILURE" and stopped.error is not None
    assert stopped.error.type == "TimeLimitExceeded"
    assert expired.status == "EXPIRED" and expired.started_at is None and expired.attempts == 0
    assert expired.error is not None and expired.error.type == "QueueTimeout"


async def test_scrape_carries_the_submission_options(platform: Platform, new_user) -> None:
    # async: the page server runs on the test's event loop, which a blocking client would stall
    async with AsyncClient(platform.url, token=new_user().token) as client:
        task = await client.scrape(
            f"{platform.pages.base}/article",
            openai_key=platform.openai_key,
            retry=TaskRetry(max_attempts=1),
            queue_timeout_seconds=60,
            run_timeout_seconds=60,
        )
        final = await task.wait(timeout=60)
    # The scraping service refuses a field it does not know (422): these reached it by name.
    assert final.status == "SUCCESS", final
    assert final.attempts == 1


async def test_task_list_filters_by_type_and_time_and_iterates_across_pages(
    platform: Platform, new_user
) -> None:
    token = new_user().token
    with Client(platform.url, token=token) as client:
        first = client.submit_task("noop", {}).wait(timeout=60)
        failed = client.submit_task("fail", {"message": "x"}).wait(timeout=60)
        time.sleep(0.05)
        middle = datetime.now(UTC)
        time.sleep(0.05)
        last = client.submit_task("noop", {}).wait(timeout=60)
        newest_first = [last.task_id, failed.task_id, first.task_id]

        assert [t.task_id for t in client.list_tasks(task_type="fail")] == [failed.task_id]
        assert [t.task_id for t in client.list_tasks(since=middle)] == [last.task_id]
        assert [t.task_id for t in client.list_tasks(until=middle.isoformat())] == newest_first[1:]
        page = client.list_tasks_page(limit=1)
        assert [t.task_id for t in page.tasks] == newest_first[:1] and page.next_cursor
        second = client.list_tasks_page(limit=1, cursor=page.next_cursor)
        assert [t.task_id for t in second.tasks] == newest_first[1:2]
        assert [t.task_id for t in client.iter_tasks(page_size=1)] == newest_first
        assert [t.task_id for t in client.iter_tasks("SUCCESS", page_size=1)] == [
            last.task_id,
            first.task_id,
        ]
    async with AsyncClient(platform.url, token=token) as aclient:
        assert [t.task_id async for t in aclient.iter_tasks(page_size=2)] == newest_first
        assert [t.task_id for t in await aclient.list_tasks(task_type="noop", since=middle)] == [last.task_id]


def test_cli_submission_options_and_list_filters(platform: Platform, new_user, tmp_path) -> None:
    env = cli_env(platform, new_user().token, tmp_path)
    retried = run_cli(
        ["task", "run", "fail", "--data", '{"succeed_after": 1}', "--max-attempts", "2", "--wait", "--json"],
        env,
    )
    assert retried.returncode == 0, retried.stderr
    assert json.loads(retried.stdout)["attempts"] == 2
    stopped = run_cli(
        ["task", "run", "sleep", "--data", '{"seconds": 10}', "--run-timeout", "1", "--wait", "--json"], env
    )
    assert stopped.returncode == 1, stopped.stderr
    assert json.loads(stopped.stdout)["error"]["type"] == "TimeLimitExceeded"
    refused = run_cli(["task", "run", "noop", "--queue-timeout", "0"], env)
    assert refused.returncode == 2 and "--queue-timeout" in refused.stderr

    by_type = run_cli(["task", "list", "--type", "sleep", "--json"], env)
    assert by_type.returncode == 0, by_type.stderr
    assert [t["status"] for t in json.loads(by_type.stdout)] == ["FAILURE"]
    capped = run_cli(["task", "list", "--limit", "1", "--json"], env)
    assert [t["task_type"] for t in json.loads(capped.stdout)] == ["sleep"]  # the newest only
    tomorrow = (datetime.now(UTC) + timedelta(days=1)).isoformat()
    future = run_cli(["task", "list", "--since", tomorrow, "--json"], env)
    assert future.returncode == 0 and json.loads(future.stdout) == []
    everything = run_cli(["task", "list", "--until", tomorrow, "--json"], env)
    assert [t["task_type"] for t in json.loads(everything.stdout)] == ["sleep", "fail"]
    bad = run_cli(["task", "list", "--since", "yesterday"], env)
    assert bad.returncode == 2 and "ISO 8601" in bad.stderr
