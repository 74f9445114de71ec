"""The SDK and the command over schedules, the cache listing and batch, conditional writes,
notification cancel and preferences, and the scrape options, against the real platform."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from clientkit import Platform, cli_env, run_cli

import smartapp
from smartapp import AsyncClient, Client

TARGET_BODY = {"task_type": "data_processing", "data": {"input": "x"}}


def test_schedule_lifecycle_via_the_sdk(platform: Platform, new_user) -> None:
    with Client(platform.url, token=new_user().token) as client:
        created = client.create_schedule(
            "sdk every 5", "background-task", TARGET_BODY, every_seconds=5, paused=True
        )
        assert created.paused is True and created.next_run_at is None
        assert created.every_seconds == 5 and created.cron is None
        assert created.target.path == "background-task" and created.target.body == TARGET_BODY
        assert client.get_schedule(created.schedule_id).name == "sdk every 5"
        assert [s.schedule_id for s in client.list_schedules()] == [created.schedule_id]
        resumed = client.update_schedule(created.schedule_id, paused=False)
        assert resumed.paused is False and resumed.next_run_at is not None
        client.delete_schedule(created.schedule_id)
        with pytest.raises(smartapp.NotFound):
            client.get_schedule(created.schedule_id)
        assert client.list_schedules() == []
        with pytest.raises(smartapp.ValidationError):
            client.create_schedule("both", "background-task", TARGET_BODY, every_seconds=5, cron="* * * * *")


async def test_async_schedule_create_and_delete(platform: Platform, new_user) -> None:
    async with AsyncClient(platform.url, token=new_user().token) as client:
        created = await client.create_schedule(
            "nightly", "background-task", TARGET_BODY, cron="30 2 * * *", timezone="Europe/Paris", paused=True
        )
        assert (created.cron, created.timezone) == ("30 2 * * *", "Europe/Paris")
        assert (await client.get_schedule(created.schedule_id)).paused is True
        await client.delete_schedule(created.schedule_id)
        assert await client.list_schedules() == []


def test_schedules_cli_create_get_resume_pause_list_rm(platform: Platform, new_user, tmp_path) -> None:
    user = new_user()
    env = cli_env(platform, user.token, tmp_path)
    made = run_cli(
        ["schedules", "create", "--name", "cli", "--every", "5", "--target", "background-task",
         "--body", json.dumps(TARGET_BODY), "--paused"],
        env,
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    sid = made.stdout.strip()
    got = run_cli(["schedules", "get", sid, "--json"], env)
    assert got.returncode == 0, got.stderr
    assert json.loads(got.stdout)["paused"] is True
    resumed = run_cli(["schedules", "resume", sid, "--json"], env)
    assert resumed.returncode == 0 and json.loads(resumed.stdout)["paused"] is False
    paused = run_cli(["schedules", "pause", sid, "--json"], env)
    assert paused.returncode == 0 and json.loads(paused.stdout)["paused"] is True
    listed = run_cli(["schedules", "list", "--json"], env)
    assert [s["schedule_id"] for s in json.loads(listed.stdout)] == [sid]
    assert run_cli(["schedules", "rm", sid], env).returncode == 0
    with Client(platform.url, token=user.token) as client:
        assert client.list_schedules() == []
    too_often = run_cli(
        ["schedules", "create", "--name", "x", "--every", "1", "--target", "background-task"], env
    )
    assert too_often.returncode == 2, too_often.stderr  # 422 from the platform


def test_cache_listing_follows_the_cursor_across_pages_and_the_cli_lists_them(
    platform: Platform, new_user, tmp_path
) -> None:
    user = new_user()
    with Client(platform.url, token=user.token) as client:
        result = client.cache_batch(set={f"k:{i:02d}": i for i in range(7)} | {"other": 1}, ttl=600)
        assert result.set == 8
        first = client.cache_list("k:", limit=3)
        assert len(first.items) <= 3 and first.next_cursor is not None
        keys = [i.key for i in client.iter_cache("k:", page_size=3)]
        assert keys == [f"k:{i:02d}" for i in range(7)]
        assert all(0 < i.ttl <= 600 and i.size >= 1 for i in client.iter_cache("k:", page_size=3))
    env = cli_env(platform, user.token, tmp_path)
    listed = run_cli(["cache", "ls", "--prefix", "k:", "--json"], env)
    assert listed.returncode == 0, listed.stderr
    assert [i["key"] for i in json.loads(listed.stdout)] == keys
    table = run_cli(["cache", "ls"], env)
    assert table.returncode == 0 and "other" in table.stdout and "k:06" in table.stdout


def test_cache_batch_reads_before_its_writes_and_deletes(platform: Platform, new_user) -> None:
    with Client(platform.url, token=new_user().token) as client:
        client.cache_put("a", {"v": 1})
        client.cache_put("gone", 2)
        result = client.cache_batch(
            get=["a", "missing"], set={"a": {"v": 2}, "b": [1]}, delete=["gone", "nope"]
        )
        assert result.values == {"a": {"v": 1}, "missing": None}
        assert (result.set, result.deleted) == (2, 1)
        assert client.cache_get("a").value == {"v": 2}
        with pytest.raises(smartapp.NotFound):
            client.cache_get("gone")


def test_conditional_put_with_a_stale_etag_raises_precondition_failed(platform: Platform, new_user) -> None:
    with Client(platform.url, token=new_user().token) as client:
        first = client.cache_put("doc", {"rev": 1})
        read = client.cache_get("doc")
        assert read.etag is not None and read.etag == first.etag
        second = client.cache_put("doc", {"rev": 2}, if_match=read.etag)
        assert second.etag != read.etag
        with pytest.raises(smartapp.PreconditionFailed) as stale:
            client.cache_put("doc", {"rev": 3}, if_match=read.etag)
        assert stale.value.status_code == 412 and stale.value.code == "precondition_failed"
        with pytest.raises(smartapp.PreconditionFailed):
            client.cache_put("doc", {"rev": 3}, if_none_match="*")
        assert client.cache_put("fresh", 1, if_none_match="*").value == 1
        assert client.cache_get("doc").value == {"rev": 2}


def test_a_scheduled_notification_is_cancelled_via_sdk_and_cli(
    platform: Platform, new_user, tmp_path
) -> None:
    user = new_user()
    later = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    with Client(platform.url, token=user.token) as client:
        sent = client.send_notification(user.sub, "later", "hi", send_at=later)
        assert sent.status == "scheduled" and sent.task_id is None
        cancelled = client.cancel_notification(sent.notification_id)
        assert (cancelled.notification_id, cancelled.status) == (sent.notification_id, "cancelled")
        assert client.notification_status(sent.notification_id).status == "cancelled"
        other = client.send_notification(
            user.sub, "later too", send_at=datetime.now(UTC) + timedelta(hours=1)
        )
    env = cli_env(platform, user.token, tmp_path)
    done = run_cli(["notify", "cancel", other.notification_id, "--json"], env)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["status"] == "cancelled"
    assert run_cli(["notify", "cancel", "no-such-id"], env).returncode == 1


def test_preferences_round_trip_via_sdk_and_cli(platform: Platform, new_user, tmp_path) -> None:
    user = new_user()
    with Client(platform.url, token=user.token) as client:
        defaults = client.get_preferences()
        assert defaults.channels.webpush and defaults.channels.webhook and defaults.quiet_hours is None
        wanted = smartapp.Preferences(
            channels=smartapp.ChannelPreferences(webhook=False),
            quiet_hours=smartapp.QuietHours(start="22:00", end="07:00", timezone="Europe/Paris"),
        )
        assert client.set_preferences(wanted) == wanted
        assert client.get_preferences() == wanted
    env = cli_env(platform, user.token, tmp_path)
    shown = run_cli(["notify", "prefs", "--json"], env)
    assert json.loads(shown.stdout)["quiet_hours"]["start"] == "22:00"
    cleared = run_cli(["notify", "prefs", "--set", '{"quiet_hours": null}', "--json"], env)
    assert cleared.returncode == 0, cleared.stderr
    assert json.loads(cleared.stdout) == {"channels": {"webpush": True, "webhook": True}, "quiet_hours": None}
    bad = run_cli(["notify", "prefs", "--set", '{"quiet_hours": {"start": "25:00"}}'], env)
    assert bad.returncode == 2


def test_scrape_sends_its_selectors_and_headers_options(platform: Platform, new_user) -> None:
    with Client(platform.url, token=new_user().token) as client:
        with pytest.raises(smartapp.ValidationError):
            client.scrape(f"{platform.pages.base}/article", headers={"Host": "evil"})  # refused header: sent
        with pytest.raises(smartapp.ValidationError):
            client.scrape(f"{platform.pages.base}/article", include_selectors=[""])
