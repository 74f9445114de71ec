"""Helpers for tests and benchmarks: real processes (APIs, Celery workers) on loopback.

A workspace member of its own that only the dev dependency group installs: no service imports
it, and neither the shared wheel nor any image carries it. Processes run in their own process group so a test can
SIGKILL a worker with all its pool children, and teardown leaves no orphans.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[2]
TEST_VHOST = "smartapp_test"
TEST_REDIS_DB = 9


_HANDED_OUT: set[int] = set()


def free_port() -> int:
    """A loopback port free now, and never one this process handed out before: the kernel may
    give the same ephemeral port to two binds in a row, and a gateway whose metrics server got
    its API's port answered the API's health check with metrics, then failed to bind (seen in CI)."""
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        if port not in _HANDED_OUT:
            _HANDED_OUT.add(port)
            return port


def test_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment of the test platform: its own Redis db and RabbitMQ vhost."""
    env = {
        "ENVIRONMENT": "test",
        "JWT_SECRET": "test-secret-for-the-test-suite-only-0123456789",
        "SECRET_KEY": "test-server-secret-key-0123456789abcdef",
        "REDIS_URL": f"redis://127.0.0.1:6379/{TEST_REDIS_DB}",
        "BROKER_URL": f"amqp://guest:guest@127.0.0.1:5672/{TEST_VHOST}",
        "HOST": "127.0.0.1",
        "LOG_LEVEL": "INFO",
    }
    env.update(extra or {})
    return env


LOCK_KEY = "smartapp:test-session"
_SKIP_DBS = {0, 10, 15}  # 0: a local `make run`; 10 and 15: `make bench`


def claim_redis_db(host: str = "127.0.0.1", port: int = 6379) -> int:
    """A Redis database of this test session's own, so concurrent sessions never share state."""
    import redis

    for db in [TEST_REDIS_DB, *(d for d in range(1, 16) if d not in _SKIP_DBS | {TEST_REDIS_DB})]:
        with redis.Redis(host=host, port=port, db=db) as client:
            holder = client.get(LOCK_KEY)
            if holder is not None and _pid_alive(int(holder)):
                continue
            client.flushdb()
            if client.set(LOCK_KEY, os.getpid(), nx=True, ex=6 * 3600):
                return db
    raise RuntimeError("every test Redis database is taken by a running session")


def release_redis_db(db: int, host: str = "127.0.0.1", port: int = 6379) -> None:
    import redis

    with redis.Redis(host=host, port=port, db=db) as client:
        if client.get(LOCK_KEY) == str(os.getpid()).encode():
            client.delete(LOCK_KEY)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def delete_vhost(vhost: str) -> None:
    subprocess.run(["rabbitmqctl", "-q", "delete_vhost", vhost], check=False, capture_output=True, timeout=60)


def reap_stale_vhosts(prefix: str = TEST_VHOST + "_") -> None:
    """Remove per-session vhosts whose session died without cleaning up."""
    out = subprocess.run(
        ["rabbitmqctl", "-q", "list_vhosts", "name"], check=False, capture_output=True, text=True, timeout=60
    ).stdout
    for name in out.split():
        pid = name.removeprefix(prefix).split("_", 1)[0]
        if name.startswith(prefix) and pid.isdigit() and not _pid_alive(int(pid)):
            delete_vhost(name)


def ensure_vhost(vhost: str = TEST_VHOST) -> None:
    """Create the vhost (idempotent) and let guest use it; retried while RabbitMQ restarts."""
    for attempt in range(30):
        subprocess.run(
            ["rabbitmqctl", "-q", "add_vhost", vhost], check=False, capture_output=True, timeout=60
        )
        done = subprocess.run(
            ["rabbitmqctl", "-q", "set_permissions", "-p", vhost, "guest", ".*", ".*", ".*"],
            check=False,
            capture_output=True,
            timeout=60,
        )
        if done.returncode == 0:
            return
        if attempt == 29:
            raise RuntimeError(f"could not prepare vhost {vhost}: {done.stderr.decode(errors='replace')}")
        time.sleep(1)


# Debian's /usr/sbin/rabbitmq-* wrappers switch to the `rabbitmq` user (as root) or refuse
# (anyone else); the scripts behind them run as whoever calls them, with our environment.
RABBITMQ_SCRIPT_DIRS = ("/usr/lib/rabbitmq/bin", "/usr/local/lib/rabbitmq/bin")


def rabbitmq_script(name: str) -> str:
    for folder in RABBITMQ_SCRIPT_DIRS:
        path = Path(folder) / name
        if path.is_file():
            return str(path)
    found = shutil.which(name)
    if found is None:
        raise RuntimeError(f"{name} is not installed (Debian: apt-get install -y rabbitmq-server)")
    return found


@dataclass
class PrivateRabbit:
    """A RabbitMQ node of the caller's own, so a drill may stop it and disturb nothing else.

    Its own node name, AMQP and distribution ports (loopback only), data, logs and Erlang
    cookie under `base`; no plugins (so no management listener); none of the machine's
    /etc/rabbitmq files. It registers with the machine's epmd, as every local node does.
    """

    base: Path
    node: str = ""
    port: int = 0
    dist_port: int = 0
    popen: subprocess.Popen[bytes] | None = None
    app_stopped: bool = False

    def __post_init__(self) -> None:
        self.node = self.node or f"drill_{os.getpid()}_{time.monotonic_ns() % 10**6}@localhost"
        self.port = self.port or free_port()
        self.dist_port = self.dist_port or free_port()

    @property
    def url(self) -> str:
        return f"amqp://guest:guest@127.0.0.1:{self.port}//"

    @property
    def log_path(self) -> Path:
        return self.base / "server.out"

    def env(self) -> dict[str, str]:
        b = self.base
        return {
            **os.environ,
            "HOME": str(b / "home"),  # the Erlang cookie the node and its CLI calls share
            "RABBITMQ_NODENAME": self.node,
            "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
            "RABBITMQ_NODE_PORT": str(self.port),
            "RABBITMQ_DIST_PORT": str(self.dist_port),
            "RABBITMQ_MNESIA_BASE": str(b / "mnesia"),
            "RABBITMQ_LOG_BASE": str(b / "log"),
            "RABBITMQ_PID_FILE": str(b / "rabbit.pid"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(b / "enabled_plugins"),
            "RABBITMQ_CONF_ENV_FILE": str(b / "rabbitmq-env.conf"),
            "RABBITMQ_CONFIG_FILE": str(b / "rabbitmq.conf"),
            "RABBITMQ_ADVANCED_CONFIG_FILE": str(b / "advanced.config"),
            "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS": "-kernel inet_dist_use_interface {127,0,0,1}",
            "ERL_EPMD_ADDRESS": "127.0.0.1",
        }

    def start(self, timeout: float = 120.0) -> PrivateRabbit:
        b = self.base
        for sub in ("home", "mnesia", "log"):
            (b / sub).mkdir(parents=True, exist_ok=True)
        cookie = b / "home" / ".erlang.cookie"
        if not cookie.exists():
            cookie.write_text(secrets.token_hex(20))
            cookie.chmod(0o400)
        (b / "enabled_plugins").write_text("[].\n")
        (b / "rabbitmq-env.conf").write_text("")
        (b / "rabbitmq.conf").write_text(
            f"listeners.tcp.default = 127.0.0.1:{self.port}\nloopback_users.guest = true\n"
        )
        log = self.log_path.open("ab")
        try:
            self.popen = subprocess.Popen(
                [rabbitmq_script("rabbitmq-server")],
                env=self.env(),
                cwd=b,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        finally:
            log.close()
        try:
            self.wait_ready(timeout)
        except BaseException:
            self.close()
            raise
        return self

    def wait_ready(self, timeout: float = 120.0) -> None:
        """Until the node accepts AMQP connections (after start or start_app)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.popen is not None and self.popen.poll() is not None:
                raise RuntimeError(f"rabbitmq-server exited:\n{self.log_tail()}")
            with socket.socket() as s:
                s.settimeout(1.0)
                if s.connect_ex(("127.0.0.1", self.port)) == 0:
                    self.ctl("await_startup")
                    return
            time.sleep(0.2)
        raise TimeoutError(f"private RabbitMQ did not start in {timeout}s:\n{self.log_tail()}")

    def log_tail(self) -> str:
        return self.log_path.read_text(errors="replace")[-3000:] if self.log_path.exists() else ""

    def ctl(self, *args: str, timeout: float = 120.0) -> str:
        done = subprocess.run(
            [rabbitmq_script("rabbitmqctl"), "-q", "-n", self.node, *args],
            env=self.env(),
            cwd=self.base,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if done.returncode != 0:
            raise RuntimeError(f"rabbitmqctl {' '.join(args)}: {done.stdout}{done.stderr}")
        return done.stdout

    def add_vhost(self, vhost: str) -> str:
        """A vhost guest may use; its broker URL."""
        self.ctl("add_vhost", vhost)
        self.ctl("set_permissions", "-p", vhost, "guest", ".*", ".*", ".*")
        return f"amqp://guest:guest@127.0.0.1:{self.port}/{vhost}"

    def stop_app(self) -> None:
        """The broker goes away (every connection closed); the Erlang node stays up."""
        self.app_stopped = True
        self.ctl("stop_app")

    def start_app(self) -> None:
        """The broker is back (a no-op when it was not stopped)."""
        if self.app_stopped:
            self.ctl("start_app")
            self.wait_ready()
            self.app_stopped = False

    def close(self) -> None:
        """Stop the node; kill it if it does not go. Safe to call more than once."""
        if self.popen is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.popen.pid, signal.SIGTERM)  # the node stops cleanly on SIGTERM
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.popen.wait(20)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.popen.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.popen.wait(10)
        self.popen = None


@contextlib.contextmanager
def private_rabbitmq(base: Path) -> Iterator[PrivateRabbit]:
    """A started PrivateRabbit under `base`, always stopped on the way out."""
    rabbit = PrivateRabbit(base)
    rabbit.start()
    try:
        yield rabbit
    finally:
        rabbit.close()


@dataclass
class Proc:
    name: str
    argv: list[str]
    env: dict[str, str]
    log_path: Path
    popen: subprocess.Popen[bytes] | None = None
    _log: object = field(default=None, repr=False)

    def start(self) -> Proc:
        full_env = {**os.environ, **self.env}
        log = self.log_path.open("ab")
        self._log = log
        self.popen = subprocess.Popen(
            self.argv, env=full_env, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT, start_new_session=True
        )
        return self

    @property
    def pid(self) -> int:
        assert self.popen is not None
        return self.popen.pid

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.popen is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.popen.pid, sig)

    def stop(self, timeout: float = 10.0) -> None:
        if self.popen is None:
            return
        if self.alive():
            self.kill(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.popen.wait(timeout)
        self.kill(signal.SIGKILL)  # the whole group: pool children too
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.popen.wait(5)
        if self._log is not None:
            self._log.close()  # type: ignore[attr-defined]

    def wait_for_log(self, needle: str, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if needle in self.log_text():
                return
            if not self.alive():
                raise RuntimeError(f"{self.name} exited early:\n{self.log_text()[-4000:]}")
            time.sleep(0.1)
        raise TimeoutError(f"{self.name}: no {needle!r} after {timeout}s:\n{self.log_text()[-4000:]}")

    def wait_http(self, url: str, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.alive():
                raise RuntimeError(f"{self.name} exited early:\n{self.log_text()[-4000:]}")
            try:
                if httpx.get(url, timeout=1.0).status_code < 500:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise TimeoutError(f"{self.name}: {url} did not answer in {timeout}s:\n{self.log_text()[-4000:]}")


def start_api(module: str, port: int, env: dict[str, str], log_dir: Path) -> Proc:
    extra = {"PORT": str(port)}
    if module == "gateway" and "GATEWAY_METRICS_PORT" not in env:
        # Its default (9100) is the local stack's: a test gateway takes a free port instead.
        extra["GATEWAY_METRICS_PORT"] = str(free_port())
    proc = Proc(
        module,
        [sys.executable, "-m", module],
        {**env, **extra},
        log_dir / f"{module}-{port}.log",
    ).start()
    try:
        proc.wait_http(f"http://127.0.0.1:{port}/health")
    except BaseException:
        proc.stop()  # never leave a half-started process behind
        raise
    return proc


def start_worker(
    app: str,
    queue: str,
    env: dict[str, str],
    log_dir: Path,
    *,
    concurrency: int = 2,
    metrics_port: int | None = None,
    name: str | None = None,
    pool: str = "prefork",
) -> Proc:
    node = name or f"{queue}-{os.getpid()}-{time.monotonic_ns()}@localhost"
    metrics = {"WORKER_METRICS_PORT": str(metrics_port or free_port())}
    proc = Proc(
        f"worker-{queue}",
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            app,
            "worker",
            "-Q",
            queue,
            "-n",
            node,
            "--concurrency",
            str(concurrency),
            "--pool",
            pool,
            "--without-gossip",
            "--without-mingle",
            "--loglevel",
            "INFO",
        ],
        {**env, **metrics},
        log_dir / f"worker-{queue}-{time.monotonic_ns()}.log",
    ).start()
    try:
        proc.wait_for_log(" ready.", timeout=60)
    except BaseException:
        proc.stop()
        raise
    return proc


@contextlib.contextmanager
def running(*procs: Proc) -> Iterator[tuple[Proc, ...]]:
    try:
        yield procs
    finally:
        for p in procs:
            p.stop()


@dataclass
class Stack:
    """A running set of APIs and workers; base URLs by service name."""

    env: dict[str, str]
    log_dir: Path
    urls: dict[str, str] = field(default_factory=dict)
    procs: list[Proc] = field(default_factory=list)

    def api(self, module: str, name: str, extra_env: dict[str, str] | None = None) -> str:
        port = free_port()
        proc = start_api(module, port, {**self.env, **(extra_env or {})}, self.log_dir)
        self.procs.append(proc)
        self.urls[name] = f"http://127.0.0.1:{port}"
        return self.urls[name]

    def worker(self, app: str, queue: str, **kw: object) -> Proc:
        proc = start_worker(app, queue, self.env, self.log_dir, **kw)  # type: ignore[arg-type]
        self.procs.append(proc)
        return proc

    def stop(self) -> None:
        for proc in reversed(self.procs):
            proc.stop()


def metric_value(url: str, name: str, labels: Mapping[str, str] | None = None) -> float:
    """The value of a counter or gauge at a /metrics URL (see `sample_value`)."""
    return sample_value(httpx.get(url, timeout=10).text, name, labels)


def sample_value(text: str, name: str, labels: Mapping[str, str] | None = None) -> float:
    """A sample's value in Prometheus text, summed over the series whose labels include
    `labels`; 0.0 when there is none yet. `name` is the sample name (`..._total`, `..._count`)."""
    from prometheus_client.parser import text_string_to_metric_families

    want = dict(labels or {})
    total = 0.0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in want.items()):
                total += sample.value
    return total
