"""beat: every entry reaches its own queue, through the router, from a real beat process.

The defect this guards against: beat's app declared only `default`, so each entry naming
`notifications` failed with SchedulingError every minute while beat looked healthy.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import pytest
from celery.beat import ScheduleEntry
from kombu import Connection

import testkit
from shared import MAX_PRIORITY
from task_service import beat, beat_health


def test_every_beat_entry_routes_to_the_queue_of_its_service() -> None:
    assert beat.app.conf.beat_schedule, "beat has entries"
    declared = beat.app.amqp.queues
    for name, entry in beat.app.conf.beat_schedule.items():
        service = entry["task"].split(".", 1)[0]
        queue = beat.entry_queue(entry["task"], entry.get("options"))
        assert queue == beat.SERVICE_QUEUES[service].value, name
        # Declared as its worker declares it: other arguments would be a channel error.
        assert declared[queue].durable and declared[queue].exchange.name == queue, name
        assert declared[queue].queue_arguments == {"x-max-priority": MAX_PRIORITY}, name


def test_beat_refuses_an_entry_that_routes_nowhere() -> None:
    with pytest.raises(LookupError, match="no service prefix"):
        beat.entry_queue("billing.charge")
    # The original defect: a queue beat's app does not declare.
    with pytest.raises(Exception, match="missing from task_queues"):
        beat.app.amqp.router.route({"queue": "reports"}, "notifications.sweep_stuck")


def test_beat_health_file_says_unhealthy_after_a_failed_send(tmp_path: Path) -> None:
    schedule = str(tmp_path / "celerybeat-schedule")
    scheduler = beat.CheckedScheduler(app=beat.app, schedule_filename=schedule, lazy=False)
    try:
        entry = ScheduleEntry(
            name="broken",
            task="notifications.sweep_stuck",
            schedule=timedelta(seconds=60),
            options={"queue": "nowhere"},
            app=beat.app,
        )
        with pytest.raises(Exception, match="Couldn't apply scheduled task broken"):
            scheduler.apply_async(entry)
    finally:
        scheduler.close()
    healthy, why = beat_health.read_health(beat_health.health_path(schedule))
    assert (healthy, why.split(":")[0]) == (False, "beat cannot send")
    assert beat_health.main([schedule]) == 1


def test_beat_health_goes_stale_without_ticks(tmp_path: Path) -> None:
    path = tmp_path / "s.health"
    beat_health.write_health(path, True)
    assert beat_health.read_health(path) == (True, "ok")
    later = time.time() + beat_health.HEALTH_STALE_SECONDS + 5
    healthy, why = beat_health.read_health(path, now=later)
    assert not healthy and why.startswith("beat has not ticked")
    assert beat_health.read_health(tmp_path / "absent.health")[0] is False
    # A live beat ticks often enough never to look stale.
    assert beat.MAX_LOOP_INTERVAL * 3 < beat_health.HEALTH_STALE_SECONDS


def _aged_schedule(path: Path) -> None:
    """A schedule file whose entries last ran two hours ago, so beat sends each at once."""
    scheduler = beat.CheckedScheduler(app=beat.app, schedule_filename=str(path), lazy=False)
    try:
        for entry in scheduler.schedule.values():
            entry.last_run_at = entry.last_run_at - timedelta(hours=2)
        scheduler.sync()
    finally:
        scheduler.close()


def test_beat_process_sends_each_entry_to_its_queue_logs_json_and_reports_healthy(
    infra: Path, tmp_path: Path
) -> None:
    vhost = os.environ["TEST_SESSION_VHOST"] + "_beat"  # no worker consumes here
    testkit.ensure_vhost(vhost)
    broker = f"amqp://guest:guest@127.0.0.1:5672/{vhost}"
    schedule = tmp_path / "celerybeat-schedule"
    _aged_schedule(schedule)
    expected = {
        e["task"]: beat.entry_queue(e["task"], e.get("options")) for e in beat.app.conf.beat_schedule.values()
    }
    env = {**os.environ, "BROKER_URL": broker, "PYTHONUNBUFFERED": "1"}
    stdout, stderr = (tmp_path / "beat.out").open("wb"), (tmp_path / "beat.err").open("wb")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "task_service.beat",
            "beat",
            "--loglevel=INFO",
            "-s",
            str(schedule),
        ],
        env=env,
        stdout=stdout,
        stderr=stderr,
        cwd=testkit.ROOT,
        start_new_session=True,
    )
    arrived: dict[str, str] = {}
    try:
        with Connection(broker, connect_timeout=5) as conn:
            channel = conn.channel()
            deadline = time.monotonic() + 60
            while len(arrived) < len(expected):
                assert proc.poll() is None, (tmp_path / "beat.err").read_text()[-3000:]
                assert time.monotonic() < deadline, (
                    f"arrived {arrived}: {(tmp_path / 'beat.err').read_text()[-3000:]}"
                )
                for queue in set(expected.values()):
                    try:
                        message = channel.basic_get(queue, no_ack=True)
                    except conn.channel_errors:  # not declared yet: beat has not reached it
                        channel = conn.channel()
                        message = None
                    if message is not None:
                        assert message.delivery_info["routing_key"] == queue
                        arrived[message.headers["task"]] = queue
                time.sleep(0.2)
        assert arrived == expected
        assert set(arrived.values()) == {"notifications"}
        check = subprocess.run(
            [sys.executable, "-m", "task_service.beat_health", str(schedule)],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert (check.returncode, check.stdout.strip()) == (0, "ok"), check.stderr
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(30)
        stdout.close()
        stderr.close()
        testkit.delete_vhost(vhost)
    lines = [line for line in (tmp_path / "beat.err").read_text().splitlines() if line.strip()]
    records = [json.loads(line) for line in lines]  # every line on stderr is JSON
    assert {r["service"] for r in records} == {"beat"}
    sent = {r["msg"] for r in records if r["msg"].startswith("Scheduler: Sending due task")}
    assert len(sent) == len(expected), sent
    assert not [r for r in records if r["level"] in ("error", "critical")], records
