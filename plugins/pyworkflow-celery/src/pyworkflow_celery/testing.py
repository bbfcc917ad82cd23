"""Real Redis and Celery processes for tests and benchmarks of the Celery executor.

Each server listens on 127.0.0.1 on a free port; stop what you start
(``RedisServer.stop()``, ``CeleryCluster.stop_all()``).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import redis

__all__ = ["CeleryCluster", "RedisMissingError", "RedisServer", "free_port", "wait_for"]

QUEUES = "pyworkflow.workflows,pyworkflow.steps"


class RedisMissingError(RuntimeError):
    """No ``redis-server`` binary on PATH."""


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
            raise RedisMissingError(
                "redis-server is not installed (Debian: apt-get install -y redis-server)"
            )
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
        log = open(self.directory / "redis.log", "ab")  # closed with the process
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


class CeleryCluster:
    """Celery worker and beat processes on one broker and one storage."""

    def __init__(
        self,
        tmp_path: Path,
        broker_url: str,
        storage_url: str,
        *,
        modules: str,
        pythonpath: Path,
        settings: dict[str, str] | None = None,
    ) -> None:
        self.tmp_path = tmp_path
        self.broker_url = broker_url
        self.storage_url = storage_url
        self.modules = modules
        self.pythonpath = pythonpath
        self.settings = settings or {}
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.logs: dict[str, Path] = {}

    def env(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("PYWORKFLOW_")}
        env.update(
            PYTHONPATH=os.pathsep.join([str(self.pythonpath), env.get("PYTHONPATH", "")]),
            PYWORKFLOW_STORAGE=self.storage_url,
            PYWORKFLOW_EXECUTOR="celery",
            PYWORKFLOW_MODULES=self.modules,
            PYWORKFLOW_CELERY__BROKER_URL=self.broker_url,
        )
        env.update(self.settings)
        env.update(extra)
        return env

    def _spawn(
        self, name: str, args: list[str], ready: str, env: dict[str, str] | None = None
    ) -> subprocess.Popen[bytes]:
        log = self.tmp_path / f"{name}.log"
        log.write_text("")
        proc = subprocess.Popen(
            [sys.executable, "-m", "celery", *args, "--logfile", str(log), "-l", "INFO"],
            env=self.env(**(env or {})),
            cwd=self.tmp_path,
            stdout=subprocess.DEVNULL,
            stderr=open(self.tmp_path / f"{name}.err", "wb"),
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
        self,
        name: str,
        *,
        concurrency: int = 1,
        app: str = "pyworkflow_celery.app",
        queues: str = QUEUES,
        env: dict[str, str] | None = None,
    ) -> subprocess.Popen[bytes]:
        """Start worker ``name@<host>`` (thread pool); returns once it consumes."""
        args = ["-A", app, "worker", "-Q", queues, "-n", f"{name}@%h", "-P", "threads"]
        args += ["-c", str(concurrency), "--without-gossip", "--without-mingle"]
        args += ["--without-heartbeat"]
        return self._spawn(name, args, "ready.", env)

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
