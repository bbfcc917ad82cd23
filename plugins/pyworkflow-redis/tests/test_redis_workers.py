"""Worker processes on one Redis: many runs, Redis restarts mid-run, push wake-ups."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest

import pyworkflow
from pyworkflow import EventType, RunStatus, get_events, get_result, get_run
from pyworkflow.testing.servers import RedisServer, wait_for
from pyworkflow.testing.workers import WorkerProcesses, drain

HERE = Path(__file__).parent


@pytest.mark.slow
def test_four_worker_processes_drain_1000_runs(redis_url: str, tmp_path: Path) -> None:
    report = drain(redis_url, tmp_path, workers=4, runs=1000)
    assert report.problems == []
    assert len(report.steps_by_worker) >= 2, report.steps_by_worker
    assert sum(report.steps_by_worker.values()) == 5000
    print(
        f"redis: 4 workers drained 1000 runs x 5 steps in {report.seconds:.1f}s "
        f"({5000 / report.seconds:.0f} steps/s); steps by worker {report.steps_by_worker}"
    )


@pytest.mark.slow
def test_a_run_survives_redis_restarts_mid_step_and_mid_sleep(
    own_redis: Callable[..., RedisServer], tmp_path: Path
) -> None:
    server = own_redis(aof=True)  # appendfsync always: the restarts lose nothing
    pool = WorkerProcesses(server.url, tmp_path, modules="redis_flows", pythonpath=HERE)
    pool.start("w1")
    try:
        pyworkflow.configure(storage=server.url, embedded_worker=False)
        import redis_flows

        run_id = pyworkflow.start(redis_flows.redis_restart_flow)
        wait_for(
            lambda: EventType.STEP_STARTED in [e.type for e in get_events(run_id)],
            30,
            "the first step to start",
        )
        server.restart(pause=1.0)  # the step finishes while Redis is down
        wait_for(lambda: get_run(run_id).status == RunStatus.SUSPENDED, 30, "the run to sleep")
        server.restart(pause=1.0)  # and now while the run sleeps
        assert get_result(run_id, timeout=60) == ["first", "second"]
    finally:
        pool.stop_all()
    events = get_events(run_id)
    assert [e.seq for e in events] == list(range(1, len(events) + 1))
    done = Counter(e.correlation_id for e in events if e.type == EventType.STEP_COMPLETED)
    assert sorted(done.values()) == [1, 1], done
    assert "wake-up subscription restored" in pool.log_text()


def test_an_idle_worker_is_woken_by_pub_sub(redis_url: str, tmp_path: Path) -> None:
    pool = WorkerProcesses(
        redis_url,
        tmp_path,
        modules="redis_flows",
        pythonpath=HERE,
        settings={"PYWORKFLOW_POLL_INTERVAL": "600"},
    )
    pool.start("w1")
    try:
        pyworkflow.configure(storage=redis_url, embedded_worker=False)
        import redis_flows

        time.sleep(1.0)  # the worker's first poll is over; its next is 10 minutes away
        # finishing well before the next poll can only be pub/sub's doing (no tight bound)
        run_id = pyworkflow.start(redis_flows.redis_quick_flow, "hi")
        assert get_result(run_id, timeout=120) == "hi!"
        token = f"redis-wake-{run_id}"
        hooked = pyworkflow.start(redis_flows.redis_hook_flow, token)
        wait_for(lambda: get_run(hooked).status == RunStatus.SUSPENDED, 120, "the hook wait")
        pyworkflow.resume_hook(token, "payload")
        assert get_result(hooked, timeout=120) == "payload!"
    finally:
        pool.stop_all()
