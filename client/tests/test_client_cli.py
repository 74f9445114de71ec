"""The `smartapp` command, as installed (console script), against the real platform."""

from __future__ import annotations

import asyncio
import fcntl
import json
import os
import pty
import select
import stat
import struct
import subprocess
import termios
import time
from pathlib import Path

import pytest
from clientkit import SMARTAPP, Platform, cli_env, run_cli
from scrape_pages import ARTICLE_FACTS

import smartapp
from smartapp import Client


def test_task_run_wait_json_exits_0_and_prints_the_final_status(
    platform: Platform, new_user, tmp_path
) -> None:
    env = cli_env(platform, new_user().token, tmp_path)
    done = run_cli(
        ["task", "run", "data_processing", "--data", '{"input": "  a   b "}', "--wait", "--json"], env
    )
    assert done.returncode == 0, done.stderr
    status = json.loads(done.stdout)
    assert status["status"] == "SUCCESS"
    assert status["result"]["processed"] == {"input": "a b"}


def test_a_failing_task_exits_1_and_shows_its_error_with_the_request_id(
    platform: Platform, new_user, tmp_path
) -> None:
    env = cli_env(platform, new_user().token, tmp_path)
    failing = ["task", "run", "data_processing", "--data", '{"operations": ["bogus"]}', "--wait"]
    done = run_cli(failing, env)
    assert done.returncode == 1, (done.stdout, done.stderr)
    assert "FAILURE" in done.stderr and "Unknown operations ['bogus']" in done.stderr
    assert "request_id: " in done.stderr
    as_json = run_cli([*failing, "--json"], env)
    assert as_json.returncode == 1
    status = json.loads(as_json.stdout)
    assert status["status"] == "FAILURE" and "bogus" in status["error"]["message"]


def test_bad_usage_exits_2(platform: Platform, new_user, tmp_path) -> None:
    env = cli_env(platform, new_user().token, tmp_path)
    bad_json = run_cli(["task", "run", "noop", "--data", "{not json"], env)
    assert bad_json.returncode == 2 and "not valid JSON" in bad_json.stderr
    unknown_type = run_cli(["--json", "task", "run", "no_such_type"], env)
    assert unknown_type.returncode == 2
    assert json.loads(unknown_type.stderr)["error"]["code"] == "unknown_task_type"
    no_command = run_cli(["task", "frobnicate"], env)
    assert no_command.returncode == 2 and "No such command" in no_command.stderr


def test_a_refused_token_exits_3(platform: Platform, new_user, tmp_path) -> None:
    refused = run_cli(["task", "list"], cli_env(platform, "not-a-valid-token", tmp_path))
    assert refused.returncode == 3, refused.stderr
    assert "unauthorized" in refused.stderr.lower() and "request_id: " in refused.stderr
    no_scope = run_cli(["task", "run", "noop"], cli_env(platform, new_user("cache").token, tmp_path))
    assert no_scope.returncode == 3


def test_login_stores_url_and_token_with_mode_0600_and_commands_then_use_them(
    platform: Platform, new_user, tmp_path: Path
) -> None:
    env = cli_env(platform, None, tmp_path)
    env.pop("SMARTAPP_URL")
    token = new_user().token
    login = run_cli(["login", "--url", platform.url, "--token", token], env)
    assert login.returncode == 0, login.stderr
    path = tmp_path / "smartapp" / "config.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert json.loads(path.read_text()) == {"url": platform.url, "token": token}
    assert token not in login.stdout + login.stderr  # never echoed
    assert [p.name for p in path.parent.iterdir()] == ["config.json"]  # no temporary file left

    put = run_cli(["cache", "put", "colour", '{"name": "blue"}', "--ttl", "60", "--json"], env)
    assert put.returncode == 0, put.stderr
    assert json.loads(put.stdout) == {"key": "colour", "value": {"name": "blue"}, "ttl": 60}
    assert run_cli(["cache", "rm", "colour"], env).returncode == 0
    gone = run_cli(["cache", "get", "colour"], env)
    assert gone.returncode == 1 and "cache_key_not_found" in gone.stderr  # an error, not a task failure


def test_task_list_status_and_cancel_with_json(platform: Platform, new_user, tmp_path) -> None:
    env = cli_env(platform, new_user().token, tmp_path)
    started = run_cli(
        ["task", "run", "long-running", "--data", '{"steps": 100, "step_seconds": 0.2}', "--json"], env
    )
    assert started.returncode == 0, started.stderr
    accepted = json.loads(started.stdout)
    task_id = accepted["task_id"]
    assert accepted["task_type"] == "long_running" and accepted["request_id"]
    listed = json.loads(run_cli(["task", "list", "--json"], env).stdout)
    assert [t["task_id"] for t in listed] == [task_id]
    cancelled = run_cli(["task", "cancel", task_id, "--json"], env)
    assert cancelled.returncode == 0 and json.loads(cancelled.stdout)["cancel_requested"] is True
    watched = run_cli(["task", "watch", task_id, "--json", "--timeout", "60"], env)
    assert watched.returncode == 1  # the task did not succeed: it was cancelled
    assert json.loads(watched.stdout)["status"] == "REVOKED"


def test_task_retry_replays_a_failed_task_through_sdk_and_command(
    platform: Platform, new_user, tmp_path
) -> None:
    user = new_user()
    with Client(platform.url, token=user.token) as client:
        failed = client.submit_task("fail", {"message": "boom"}).wait(timeout=60)
        assert failed.status == "FAILURE"
        replay = client.retry_task(failed.task_id)
        assert replay.retry_of == failed.task_id and replay.task_id != failed.task_id
        with pytest.raises(smartapp.Conflict):
            client.retry_task(client.submit_task("noop", {}).wait(timeout=60).task_id)  # it succeeded
        bulk = client.retry_tasks("FAILURE", task_type="fail")
        assert bulk.count >= 1 and len(bulk.task_ids) == bulk.count
    env = cli_env(platform, user.token, tmp_path)
    done = run_cli(["task", "retry", failed.task_id, "--json"], env)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["retry_of"] == failed.task_id
    # Every failed `fail` task of this user again, from the command line: the one above (its
    # replays failed too, so they are replayed as well) and a new task each.
    replayed = run_cli(["task", "retry-all", "--status", "FAILURE", "--type", "fail", "--json"], env)
    assert replayed.returncode == 0, replayed.stderr
    bulk_cli = json.loads(replayed.stdout)
    assert bulk_cli["count"] == len(bulk_cli["task_ids"]) >= 1
    with Client(platform.url, token=user.token) as client:
        again = client.get_task(bulk_cli["task_ids"][0])
    assert again.retry_of is not None and again.task_type == "fail"
    as_text = run_cli(["task", "retry-all", "--type", "no_such_type"], env)
    assert as_text.returncode == 0 and as_text.stdout.strip() == "0 started again"


def _run_on_terminal(args: list[str], env: dict[str, str], timeout: float = 90) -> tuple[int, str]:
    """Run the command with a pseudo-terminal as its stdin, stdout and stderr; all it drew."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 140, 0, 0))
    proc = subprocess.Popen([SMARTAPP, *args], stdin=slave, stdout=slave, stderr=slave, env=env)
    os.close(slave)
    chunks: list[bytes] = []
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.5)
            if not ready:
                if proc.poll() is not None:
                    break
                continue
            try:
                data = os.read(master, 65536)
            except OSError:  # EIO: the command exited and closed the terminal
                break
            if not data:
                break
            chunks.append(data)
        else:
            raise AssertionError(f"still running after {timeout}s: {b''.join(chunks)[-2000:]!r}")
        return proc.wait(timeout=10), b"".join(chunks).decode(errors="replace")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(master)


def test_task_run_wait_on_a_terminal_shows_a_live_progress_bar_then_the_result(
    platform: Platform, new_user, tmp_path
) -> None:
    env = cli_env(platform, new_user().token, tmp_path, TERM="xterm-256color", COLUMNS="140")
    env.pop("NO_COLOR")
    code, screen = _run_on_terminal(
        ["task", "run", "long-running", "--data", '{"steps": 5, "step_seconds": 0.2}', "--wait"], env
    )
    assert code == 0, screen
    assert "\x1b[" in screen  # drawn live, with terminal control sequences
    assert "━" in screen  # the bar
    assert "5/5" in screen and "100%" in screen and "steps/s" in screen and "ETA" in screen
    assert "step 5 of 5" in screen or "done" in screen
    result_at = screen.rindex('"completed_steps"')
    assert result_at > screen.rindex("100%")  # the result follows the bar
    assert (
        "\x1b["
        not in run_cli(
            ["task", "run", "long-running", "--data", '{"steps": 1, "step_seconds": 0}', "--wait"],
            cli_env(platform, new_user().token, tmp_path),
        ).stdout
    )  # not a terminal: no bar, no control sequences


async def test_scrape_wait_prints_the_markdown_and_the_extraction(
    platform: Platform, new_user, tmp_path
) -> None:
    # Async: the page server and the OpenAI stand-in answer from this test's event loop.
    env = cli_env(platform, new_user().token, tmp_path, SMARTAPP_OPENAI_KEY=platform.openai_key)

    async def run(*args: str) -> tuple[int, str, str]:
        proc = await asyncio.create_subprocess_exec(
            SMARTAPP, *args, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
        )
        out, err = await asyncio.wait_for(proc.communicate(), 90)
        assert proc.returncode is not None
        return proc.returncode, out.decode(), err.decode()

    code, out, err = await run("scrape", f"{platform.pages.base}/article", "--wait")
    assert code == 0, err
    markdown, _, summary = out.partition("\n---\n")  # the page's markdown, then the summary
    assert ARTICLE_FACTS["title"] in markdown and "<script" not in markdown and summary.strip()
    schema = '{"type": "object", "properties": {"title": {"type": "string"}}, "required": ["title"]}'
    code, out, err = await run("scrape", f"{platform.pages.base}/article", "--schema", schema, "--wait")
    assert code == 0, err
    assert set(json.loads(out)) == {"title"}
    # The submission options, by names the scraping service knows (it refuses others: exit 2).
    options = ("--max-attempts", "1", "--queue-timeout", "60", "--run-timeout", "60")
    code, out, err = await run("scrape", f"{platform.pages.base}/article", *options, "--wait", "--json")
    assert code == 0, err
    assert json.loads(out)["attempts"] == 1


def test_notify_send_and_inbox_follow_streams_new_notifications(
    platform: Platform, new_user, tmp_path
) -> None:
    user = new_user("tasks")
    env = cli_env(platform, user.token, tmp_path)
    with subprocess.Popen(
        [SMARTAPP, "inbox", "--follow", "--json"], env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL
    ) as follow:
        try:
            time.sleep(1.5)  # let it connect; the stream resumes from the page's last seq anyway
            sent = run_cli(["notify", "send", "--to", user.sub, "--title", "Deploy finished", "--json"], env)
            assert sent.returncode == 0, sent.stderr
            notification_id = json.loads(sent.stdout)["notification_id"]
            assert follow.stdout is not None
            ready, _, _ = select.select([follow.stdout], [], [], 60)
            assert ready, "no notification streamed in 60 s"
            item = json.loads(follow.stdout.readline())
            assert item["notification_id"] == notification_id and item["title"] == "Deploy finished"
            assert follow.poll() is None  # still following
        finally:
            follow.terminate()
            follow.wait(timeout=10)
    with Client(platform.url, token=user.token) as client:
        assert client.inbox().items[0].notification_id == notification_id


def test_shell_completion_offers_the_platforms_task_types(platform: Platform, new_user, tmp_path) -> None:
    env = cli_env(platform, new_user().token, tmp_path)
    script = run_cli(["completion", "bash"], env)
    assert script.returncode == 0 and "_SMARTAPP_COMPLETE=bash_complete" in script.stdout
    env.update({"_SMARTAPP_COMPLETE": "bash_complete", "COMP_WORDS": "smartapp task run ", "COMP_CWORD": "3"})
    offered = run_cli([], env)
    assert offered.returncode == 0, offered.stderr
    names = {line.split(",", 1)[1] for line in offered.stdout.splitlines()}
    assert {"data_processing", "noop", "long-running"} <= names
