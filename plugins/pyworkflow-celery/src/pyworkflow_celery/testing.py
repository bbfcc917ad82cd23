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
from pathlib import Path

from pyworkflow.testing.servers import RedisServer, ServerMissingError, free_port, wait_for

#: Raised when ``redis-server`` is missing (the core's ServerMissingError).
RedisMissingError = ServerMissingError

__all__ = ["CeleryCluster", "RedisMissingError", "RedisServer", "free_port", "wait_for"]

QUEUES = "pyworkflow.workflows,pyworkflow.steps"


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

    def command(self, name: str, argv: list[str], ready: str) -> subprocess.Popen[bytes]:
        """Run ``argv`` exactly as a user types it (``celery`` resolved next to this Python).

        Only the environment is prepared (storage, broker, modules); stdout and
        stderr go to ``<name>.log``. Returns once ``ready`` appears there.
        """
        program = shutil.which(argv[0], path=str(Path(sys.executable).parent)) or argv[0]
        log = self.tmp_path / f"{name}.log"
        with open(log, "wb") as out:
            proc = subprocess.Popen(
                [program, *argv[1:]],
                env=self.env(),
                cwd=self.tmp_path,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.procs[name] = proc
        self.logs[name] = log

        def started() -> bool:
            if proc.poll() is not None:
                raise AssertionError(
                    f"{name} exited with {proc.returncode}: {log.read_text()[-2000:]}"
                )
            return ready in log.read_text()

        wait_for(started, 60, f"{' '.join(argv)} to start")
        return proc

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
