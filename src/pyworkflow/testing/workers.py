"""``pyworkflow worker`` subprocesses on one storage, and the many-runs drain check.

A storage plugin's tests show that several worker processes share its
database safely with one call::

    report = drain(storage_url, tmp_path, workers=4, runs=1000)
    assert report.problems == []
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import attrs

from pyworkflow.testing.servers import wait_for

__all__ = ["DrainReport", "WorkerProcesses", "check_runs", "drain"]

LOAD_MODULE = "pyworkflow.testing.loadflows"


class WorkerProcesses:
    """Starts ``python -m pyworkflow worker`` processes on ``storage_url``.

    ``settings`` are extra ``PYWORKFLOW_*`` variables (short leases and
    polls by default, so recovery takes seconds).
    """

    def __init__(
        self,
        storage_url: str,
        directory: Path,
        *,
        modules: str = LOAD_MODULE,
        pythonpath: Path | None = None,
        settings: dict[str, str] | None = None,
    ) -> None:
        self.storage_url = storage_url
        self.directory = directory
        self.modules = modules
        self.pythonpath = pythonpath
        self.settings = {
            "PYWORKFLOW_LEASE_SECONDS": "3",
            "PYWORKFLOW_POLL_INTERVAL": "0.5",
            **(settings or {}),
        }
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.logs: dict[str, Path] = {}

    def env(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("PYWORKFLOW_")}
        if self.pythonpath is not None:
            env["PYTHONPATH"] = os.pathsep.join([str(self.pythonpath), env.get("PYTHONPATH", "")])
        env.update(PYWORKFLOW_STORAGE=self.storage_url, PYWORKFLOW_MODULES=self.modules)
        env.update(self.settings)
        env.update(extra)
        return env

    def command(self) -> list[str]:
        """The command line of one worker process (override to start something else)."""
        return [sys.executable, "-m", "pyworkflow", "--log-level", "INFO", "worker"]

    def start(self, name: str, **extra: str) -> subprocess.Popen[bytes]:
        """Start worker ``name``; returns once its log says ``worker started``."""
        log = self.directory / f"{name}.log"
        with open(log, "w") as sink:
            proc = subprocess.Popen(
                self.command(),
                env=self.env(**extra),
                stderr=sink,
                stdout=subprocess.DEVNULL,
                cwd=self.directory,
            )
        self.procs[name] = proc
        self.logs[name] = log

        def started() -> bool:
            if proc.poll() is not None:
                raise AssertionError(f"worker {name} exited: {log.read_text()[-3000:]}")
            return "worker started" in log.read_text()

        wait_for(started, 60, f"worker {name} to start")
        return proc

    def kill(self, name: str) -> None:
        """SIGKILL worker ``name`` (a crash: no cleanup, no lease release)."""
        proc = self.procs.pop(name)
        proc.kill()
        proc.wait(timeout=10)

    def stop_all(self) -> None:
        """SIGTERM every worker (they drain), SIGKILL any that hang."""
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs.values():
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
        self.procs.clear()

    def log_text(self) -> str:
        """All worker logs, for failure messages."""
        return "\n".join(f"--- {n}\n{p.read_text()[-4000:]}" for n, p in self.logs.items())


@attrs.frozen
class DrainReport:
    """What :func:`drain` saw: wall time, steps per worker, and anything wrong."""

    runs: int
    seconds: float
    steps_by_worker: dict[str, int]
    problems: list[str]


def check_runs(run_ids: list[str], steps: int) -> tuple[Counter[str], list[str]]:
    """Check each run's log: ``steps`` distinct steps, each completed exactly once.

    Returns step starts per worker process and the problems found.
    """
    from pyworkflow.client import get_events
    from pyworkflow.models import EventType

    by_worker: Counter[str] = Counter()
    problems: list[str] = []
    for run_id in run_ids:
        events = get_events(run_id)
        done = Counter(e.correlation_id for e in events if e.type == EventType.STEP_COMPLETED)
        twice = {cid: n for cid, n in done.items() if n != 1}
        if len(done) != steps or twice:
            problems.append(f"run {run_id}: completed steps {dict(done)}")
        for event in events:
            if event.type == EventType.STEP_STARTED:
                by_worker[str(event.payload.get("worker", "?")).rsplit(":", 1)[0]] += 1
    return by_worker, problems


def drain(
    storage_url: str,
    directory: Path,
    *,
    workers: int = 4,
    runs: int = 1000,
    concurrency: int = 8,
    timeout: float = 600.0,
) -> DrainReport:
    """Start ``workers`` worker processes, ``runs`` 5-step runs, wait for all results.

    This process is a pure client (no embedded worker). The report lists
    every run whose log does not hold 5 steps completed exactly once, or
    whose result is wrong.
    """
    import pyworkflow
    from pyworkflow.testing import loadflows

    pool = WorkerProcesses(
        storage_url, directory, settings={"PYWORKFLOW_WORKER_CONCURRENCY": str(concurrency)}
    )
    try:
        for i in range(workers):
            pool.start(f"w{i + 1}")
        pyworkflow.configure(storage=storage_url, embedded_worker=False)
        began = time.monotonic()
        run_ids = [pyworkflow.start(loadflows.load_five_steps, i) for i in range(runs)]
        problems = []
        for i, run_id in enumerate(run_ids):
            left = max(1.0, timeout - (time.monotonic() - began))
            result = pyworkflow.get_result(run_id, timeout=left)
            if result != i + loadflows.STEPS:
                problems.append(f"run {run_id}: result {result!r}, expected {i + loadflows.STEPS}")
        seconds = time.monotonic() - began
        by_worker, found = check_runs(run_ids, loadflows.STEPS)
        return DrainReport(runs, seconds, dict(by_worker), problems + found)
    finally:
        pool.stop_all()
