"""Crash, exit and multi-process behaviour with real subprocesses on one SQLite file."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections import Counter
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import psutil
import pytest

import pyworkflow
from pyworkflow import EventType, RunStatus, get_events, get_result, get_run

pytestmark = pytest.mark.slow

HERE = Path(__file__).parent


def env_for(db: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYWORKFLOW_")}
    env.update(
        PYTHONPATH=str(HERE),
        PYWORKFLOW_STORAGE=f"sqlite:///{db}",
        PYWORKFLOW_LEASE_SECONDS="2",
        PYWORKFLOW_POLL_INTERVAL="0.1",
        PYWORKFLOW_MODULES="procflows",
    )
    env.update(extra)
    return env


class Procs:
    def __init__(self) -> None:
        self.procs: list[subprocess.Popen[bytes]] = []

    def spawn(self, args: list[str], env: dict[str, str], **kw: object) -> subprocess.Popen[bytes]:
        proc = subprocess.Popen(args, env=env, **kw)  # type: ignore[call-overload]
        self.procs.append(proc)
        return proc

    def worker(self, db: Path, **extra: str) -> subprocess.Popen[bytes]:
        """Start a worker process and return once it is claiming runs."""
        log = db.parent / f"worker-{len(self.procs)}.log"
        with open(log, "w") as sink:
            proc = self.spawn(
                [sys.executable, "-m", "pyworkflow", "--log-level", "INFO", "worker"],
                env_for(db, **extra),
                stderr=sink,
            )
        wait_for(lambda: "worker started" in log.read_text(), 60, "the worker to start")
        return proc

    def stop_all(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()


@pytest.fixture
def procs() -> Iterator[Procs]:
    p = Procs()
    yield p
    p.stop_all()


def client(db: Path) -> None:
    """Configure this test process as a pure client of the shared SQLite file."""
    pyworkflow.configure(storage=f"sqlite:///{db}", embedded_worker=False)


def marks(path: Path) -> list[dict[str, object]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def wait_for(predicate: object, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def test_sigkill_mid_step_is_recovered_by_a_new_worker(tmp_path: Path, procs: Procs) -> None:
    db, marker = tmp_path / "pw.db", tmp_path / "marks.jsonl"
    script = textwrap.dedent(
        f"""
        import time, pyworkflow, procflows
        run_id = pyworkflow.start(procflows.three_steps, {str(marker)!r})
        print(run_id, flush=True)
        time.sleep(120)
        """
    )
    first = procs.spawn([sys.executable, "-c", script], env_for(db), stdout=subprocess.PIPE)
    assert first.stdout is not None
    run_id = first.stdout.readline().decode().strip()
    wait_for(lambda: any(m["step"] == "second" for m in marks(marker)), 20, "step 2 to start")
    first.send_signal(signal.SIGKILL)
    first.wait()

    procs.worker(db)
    client(db)
    assert get_result(run_id, timeout=60) == 3

    seen = marks(marker)
    assert [m["step"] for m in seen].count("first") == 1
    assert [m["attempt"] for m in seen if m["step"] == "second"] == [1, 2]
    assert [m["step"] for m in seen].count("third") == 1
    completed = Counter(
        e.payload["name"] for e in get_events(run_id) if e.type == EventType.STEP_COMPLETED
    )
    assert completed == {"first": 1, "second": 1, "third": 1}


def test_exit_while_sleeping_leaves_run_suspended(tmp_path: Path, procs: Procs) -> None:
    db, marker = tmp_path / "pw.db", tmp_path / "marks.jsonl"
    script = textwrap.dedent(
        f"""
        import pyworkflow, procflows
        print(pyworkflow.start(procflows.step_then_sleep, {str(marker)!r}), flush=True)
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", script], env=env_for(db), capture_output=True, timeout=60
    )
    assert out.returncode == 0, out.stderr.decode()
    run_id = out.stdout.decode().strip()
    client(db)
    run = get_run(run_id)
    assert run.status == RunStatus.SUSPENDED
    assert run.wake_at is not None
    due = run.wake_at

    procs.worker(db)
    assert get_result(run_id, timeout=30) == "woke"
    events = get_events(run_id)
    (created,) = [e for e in events if e.type == EventType.WAIT_CREATED]
    assert datetime.fromisoformat(created.payload["due_at"]) == due
    (done,) = [e for e in events if e.type == EventType.WAIT_COMPLETED]
    assert done.timestamp >= due
    assert [m["step"] for m in marks(marker)] == ["first"]


def test_two_worker_processes_drain_200_runs(tmp_path: Path, procs: Procs) -> None:
    db = tmp_path / "pw.db"
    client(db)
    sys.path.insert(0, str(HERE))
    import procflows

    procs.worker(db, PYWORKFLOW_WORKER_CONCURRENCY="4")
    procs.worker(db, PYWORKFLOW_WORKER_CONCURRENCY="4")
    # small concurrency: neither worker can drain every run before the other polls
    run_ids = [pyworkflow.start(procflows.five_steps, i) for i in range(200)]
    for i, run_id in enumerate(run_ids):
        assert get_result(run_id, timeout=180) == i + 5
    owners = set()
    for run_id in run_ids:
        events = get_events(run_id)
        per_step = Counter(e.correlation_id for e in events if e.type == EventType.STEP_COMPLETED)
        assert len(per_step) == 5 and set(per_step.values()) == {1}, (run_id, per_step)
        owners.update(
            str(e.payload["worker"]).rsplit(":", 1)[0]
            for e in events
            if e.type == EventType.STEP_STARTED
        )
    assert len(owners) == 2, f"both worker processes should have done work: {owners}"


def test_sleeping_runs_cost_no_worker_memory(tmp_path: Path, procs: Procs) -> None:
    db = tmp_path / "pw.db"
    client(db)
    sys.path.insert(0, str(HERE))
    import procflows

    worker = procs.worker(db)
    warmup = [pyworkflow.start(procflows.sleep_an_hour, i) for i in range(50)]
    wait_for(lambda: all(get_run(r).status == RunStatus.SUSPENDED for r in warmup), 60, "warmup")
    time.sleep(0.5)
    before = psutil.Process(worker.pid).memory_info().rss

    runs = [pyworkflow.start(procflows.sleep_an_hour, i) for i in range(1000)]
    wait_for(
        lambda: all(get_run(r).status == RunStatus.SUSPENDED for r in runs[-20:]),
        120,
        "1,000 runs to suspend",
    )
    wait_for(
        lambda: all(get_run(r).status == RunStatus.SUSPENDED for r in runs), 120, "all suspended"
    )
    time.sleep(0.5)
    after = psutil.Process(worker.pid).memory_info().rss
    growth_mb = (after - before) / 2**20
    print(
        f"worker RSS before {before / 2**20:.1f} MiB, after 1,000 sleeping runs "
        f"{after / 2**20:.1f} MiB (growth {growth_mb:.1f} MiB)"
    )
    assert growth_mb < 10, f"worker memory grew by {growth_mb:.1f} MiB for 1,000 sleeping runs"


def test_sigterm_stops_a_worker_cleanly_and_another_recovers(tmp_path: Path, procs: Procs) -> None:
    db, marker = tmp_path / "pw.db", tmp_path / "marks.jsonl"
    client(db)
    sys.path.insert(0, str(HERE))
    import procflows

    run_id = pyworkflow.start(procflows.three_steps, str(marker))
    first = procs.worker(db, PYWORKFLOW_DRAIN_TIMEOUT="1", PYWORKFLOW_LEASE_SECONDS="60")
    wait_for(lambda: any(m["step"] == "second" for m in marks(marker)), 20, "step 2 to start")
    first.send_signal(signal.SIGTERM)
    assert first.wait(timeout=60) == 0  # exits by itself after the 1 s drain (no wall-time bound)
    # the interrupted step is left started, never half-recorded, and its lease released
    events = get_events(run_id)
    assert [e.payload["name"] for e in events if e.type == EventType.STEP_COMPLETED] == ["first"]
    assert get_run(run_id).status == RunStatus.RUNNING
    procs.worker(db, PYWORKFLOW_LEASE_SECONDS="60")  # no lease expiry needed to recover it
    assert get_result(run_id, timeout=30) == 3
    assert [m["attempt"] for m in marks(marker) if m["step"] == "second"] == [1, 2]
