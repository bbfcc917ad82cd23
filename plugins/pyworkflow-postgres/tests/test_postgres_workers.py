"""Worker processes on one PostgreSQL database: many runs, a server restart, push wake-ups."""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path

import pytest

import pyworkflow
from pyworkflow import EventType, RunStatus, get_events, get_result, get_run
from pyworkflow.testing.servers import PostgresServer, wait_for
from pyworkflow.testing.workers import WorkerProcesses, drain

pytestmark = pytest.mark.slow
HERE = Path(__file__).parent


def test_four_worker_processes_drain_1000_runs(schema_url: str, tmp_path: Path) -> None:
    report = drain(schema_url, tmp_path, workers=4, runs=1000)
    assert report.problems == []
    assert len(report.steps_by_worker) == 4, report.steps_by_worker
    assert sum(report.steps_by_worker.values()) == 5000
    print(f"postgres: 4 workers drained 1000 runs x 5 steps in {report.seconds:.1f}s")


def test_run_survives_a_server_restart(durable_server: PostgresServer, tmp_path: Path) -> None:
    pool = WorkerProcesses(durable_server.url, tmp_path, modules="pg_flows", pythonpath=HERE)
    pool.start("w1")
    try:
        pyworkflow.configure(storage=durable_server.url, embedded_worker=False)
        import pg_flows

        run_id = pyworkflow.start(pg_flows.pg_step_sleep_step, 3, "2s")
        wait_for(lambda: get_run(run_id).status == RunStatus.SUSPENDED, 30, "the run to sleep")
        durable_server.restart(pause=1.0)  # the sleep comes due while the server is down
        assert get_result(run_id, timeout=60) == 12
    finally:
        pool.stop_all()
    events = get_events(run_id)
    assert [e.seq for e in events] == list(range(1, len(events) + 1))
    done = Counter(e.correlation_id for e in events if e.type == EventType.STEP_COMPLETED)
    assert sorted(done.values()) == [1, 1], done
    assert "LISTEN connection restored" in pool.log_text()


def test_an_idle_worker_is_woken_by_notify(schema_url: str, tmp_path: Path) -> None:
    pool = WorkerProcesses(
        schema_url,
        tmp_path,
        modules="pg_flows",
        pythonpath=HERE,
        settings={"PYWORKFLOW_POLL_INTERVAL": "600"},
    )
    pool.start("w1")
    try:
        pyworkflow.configure(storage=schema_url, embedded_worker=False)
        import pg_flows

        time.sleep(1.0)  # the worker's first poll is over; its next is 10 minutes away
        run_id = pyworkflow.start(pg_flows.pg_step_sleep_step, 1, "0s")
        # finishing well before the next poll can only be NOTIFY's doing (no tight bound)
        assert get_result(run_id, timeout=120) == 4
    finally:
        pool.stop_all()
