"""Real servers for the Celery tests: a redis-server and Celery worker/beat processes.

Every server listens on 127.0.0.1 on a free port and is stopped afterwards.
With ``CI=true`` a missing ``redis-server`` fails the tests instead of skipping.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from pyworkflow import runtime

HERE = Path(__file__).parent
QUEUES = "pyworkflow.workflows,pyworkflow.steps"


def wait_for(check: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class RedisServer:
    """One redis-server process; ``restart()`` keeps its port and data dir."""

    def __init__(self, directory: Path, *, aof: bool = False) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            message = "redis-server is not installed (apt-get install -y redis-server)"
            if os.environ.get("CI"):
                pytest.fail(message)
            pytest.skip(message)
        self.binary = binary
        self.directory = directory
        self.directory.mkdir(parents=True, exist_ok=True)
        self.aof = aof
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.start()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def client(self) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=self.port)

    def start(self) -> None:
        args = [self.binary, "--port", str(self.port), "--bind", "127.0.0.1"]
        args += ["--dir", str(self.directory), "--save", ""]
        if self.aof:
            args += ["--appendonly", "yes", "--appendfsync", "always"]
        else:
            args += ["--appendonly", "no"]
        log = open(self.directory / "redis.log", "ab")  # noqa: SIM115  # closed with the process
        self.proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)

        def pong() -> bool:
            try:
                return bool(self.client().ping())
            except redis.RedisError:
                return False

        wait_for(pong, 20, "redis-server to answer PING")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=20)
        self.proc = None

    def restart(self, pause: float = 0.0) -> None:
        self.stop()
        time.sleep(pause)
        self.start()


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    yield server
    server.stop()


class Cluster:
    """Celery worker and beat processes on one broker and one storage."""

    def __init__(self, tmp_path: Path, broker_url: str, storage_url: str) -> None:
        self.tmp_path = tmp_path
        self.broker_url = broker_url
        self.storage_url = storage_url
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.logs: dict[str, Path] = {}

    def env(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("PYWORKFLOW_")}
        env.update(
            PYTHONPATH=os.pathsep.join([str(HERE), env.get("PYTHONPATH", "")]),
            PYWORKFLOW_STORAGE=self.storage_url,
            PYWORKFLOW_EXECUTOR="celery",
            PYWORKFLOW_MODULES="celery_flows",
            PYWORKFLOW_LEASE_SECONDS="2",
            PYWORKFLOW_POLL_INTERVAL="0.1",
            PYWORKFLOW_CELERY__BROKER_URL=self.broker_url,
            PYWORKFLOW_CELERY__SWEEP_INTERVAL="1",
            PYWORKFLOW_CELERY__DISPATCH_TIMEOUT="10",
        )
        env.update(extra)
        return env

    def _spawn(self, name: str, args: list[str], ready: str) -> subprocess.Popen[bytes]:
        log = self.tmp_path / f"{name}.log"
        log.write_text("")
        proc = subprocess.Popen(
            [sys.executable, "-m", "celery", *args, "--logfile", str(log), "-l", "INFO"],
            env=self.env(),
            cwd=self.tmp_path,
            stdout=subprocess.DEVNULL,
            stderr=open(self.tmp_path / f"{name}.err", "wb"),  # noqa: SIM115
            start_new_session=True,
        )
        self.procs[name] = proc
        self.logs[name] = log

        def started() -> bool:
            if proc.poll() is not None:
                err = (self.tmp_path / f"{name}.err").read_text()
                raise AssertionError(f"{name} exited with {proc.returncode}: {err[-2000:]}")
            return ready in log.read_text()

        wait_for(started, 60, f"celery {name} to start")
        return proc

    def worker(
        self, name: str, *, concurrency: int = 1, app: str = "pyworkflow_celery.app"
    ) -> subprocess.Popen[bytes]:
        """Start worker ``name@<host>`` on both queues; returns once it consumes."""
        args = ["-A", app, "worker", "-Q", QUEUES, "-n", f"{name}@%h", "-P", "threads"]
        args += ["-c", str(concurrency), "--without-gossip", "--without-mingle"]
        args += ["--without-heartbeat"]
        return self._spawn(name, args, "ready.")

    def beat(self) -> subprocess.Popen[bytes]:
        schedule = self.tmp_path / "beat-schedule"
        args = ["-A", "pyworkflow_celery.app", "beat", "-s", str(schedule)]
        return self._spawn("beat", args, "beat: Starting")

    def kill(self, name: str) -> None:
        """SIGKILL the process group of ``name`` (the worker and any children)."""
        proc = self.procs.pop(name)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)

    def hostname_of(self, name: str) -> str:
        return f"{name}@{socket.gethostname()}"

    def stop_all(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in self.procs.values():
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)
        self.procs.clear()


@pytest.fixture(autouse=True)
def _isolated_runtime(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    for name in list(os.environ):
        if name.startswith("PYWORKFLOW_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    runtime.reset()
    yield
    runtime.reset()


def client_settings(broker_url: str, storage_url: str) -> dict[str, Any]:
    """configure() arguments of a test process that starts runs on the cluster."""
    return {
        "storage": storage_url,
        "executor": "celery",
        "lease_seconds": 2,
        "poll_interval": 0.1,
        "celery": {"broker_url": broker_url, "sweep_interval": 1, "dispatch_timeout": 10},
    }


@pytest.fixture
def cluster(redis_server: RedisServer, tmp_path: Path) -> Iterator[Cluster]:
    """A fresh broker database and storage; workers and beat are started by each test."""
    redis_server.client().flushall()
    storage_url = f"sqlite:///{tmp_path / 'pw.db'}"
    c = Cluster(tmp_path, redis_server.url, storage_url)
    runtime.configure(**client_settings(redis_server.url, storage_url))
    yield c
    runtime.reset()
    c.stop_all()
