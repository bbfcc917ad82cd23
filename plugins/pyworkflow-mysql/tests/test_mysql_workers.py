"""Worker processes on one MariaDB database: many runs, and a server restart mid-run."""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path

import pytest

import pyworkflow
from pyworkflow import EventType, RunStatus, get_events, get_result, get_run
from pyworkflow.models import utcnow
from pyworkflow.testing import loadflows
from pyworkflow.testing.servers import MariaDBServer, wait_for
from pyworkflow.testing.workers import WorkerProcesses, check_runs, drain

pytestmark = pytest.mark.slow
HERE = Path(__file__).parent


def test_four_worker_processes_drain_1000_runs(database_url: str, tmp_path: Path) -> None:
    report = drain(database_url, tmp_path, workers=4, runs=1000)
    assert report.problems == []
    assert len(report.steps_by_worker) == 4, report.steps_by_worker
    assert sum(report.steps_by_worker.values()) == 5000
    print(f"mysql: 4 workers drained 1000 runs x 5 steps in {report.seconds:.1f}s")


@pytest.mark.parametrize("how", ["stop", "kill"])
def test_runs_in_flight_survive_a_server_restart(
    durable_server: MariaDBServer, tmp_path: Path, how: str
) -> None:
    """mariadbd stops (SIGTERM) or crashes (SIGKILL) while two workers run 200 runs, and starts
    again on its port and data dir: every run completes, each step recorded once."""
    pool = WorkerProcesses(
        durable_server.url,
        tmp_path,
        settings={"PYWORKFLOW_WORKER_CONCURRENCY": "8"},
    )
    pool.start("w1")
    pool.start("w2")
    try:
        pyworkflow.configure(storage=durable_server.url, embedded_worker=False)
        run_ids = [pyworkflow.start(loadflows.load_five_steps, i) for i in range(200)]

        def some_done() -> bool:
            return get_run(run_ids[5]).status == RunStatus.COMPLETED

        wait_for(some_done, 120, "the first runs to complete")
        if how == "stop":
            durable_server.stop()  # clients are cut off mid-transaction
        else:
            durable_server.kill()  # a crash: InnoDB recovers what was committed at restart
        stopped_at = utcnow()
        time.sleep(1.0)
        durable_server.start()  # same port, same data dir
        results = [get_result(r, timeout=180) for r in run_ids]
        ended = [get_run(r).completed_at for r in run_ids]
    finally:
        pool.stop_all()
    # every run was started before the stop; these were still running and ended after it
    in_flight = [at for at in ended if at is not None and at > stopped_at]
    assert len(in_flight) > 0
    assert results == [i + loadflows.STEPS for i in range(200)]
    by_worker, problems = check_runs(run_ids, loadflows.STEPS)
    assert problems == []
    assert sum(by_worker.values()) >= 1000
    logs = "".join(path.read_text() for path in pool.logs.values())
    assert "database unreachable or busy" in logs  # the workers did see the server go away


def test_a_sleeping_run_survives_a_server_restart(
    durable_server: MariaDBServer, tmp_path: Path
) -> None:
    pool = WorkerProcesses(durable_server.url, tmp_path, modules="mysql_flows", pythonpath=HERE)
    pool.start("w1")
    try:
        pyworkflow.configure(storage=durable_server.url, embedded_worker=False)
        import mysql_flows

        run_id = pyworkflow.start(mysql_flows.mysql_step_sleep_step, 3, "2s")
        wait_for(lambda: get_run(run_id).status == RunStatus.SUSPENDED, 30, "the run to sleep")
        durable_server.restart(pause=1.0)  # the sleep comes due while the server is down
        assert get_result(run_id, timeout=60) == 12
    finally:
        pool.stop_all()
    events = get_events(run_id)
    assert [e.seq for e in events] == list(range(1, len(events) + 1))
    done = Counter(e.correlation_id for e in events if e.type == EventType.STEP_COMPLETED)
    assert sorted(done.values()) == [1, 1], done
