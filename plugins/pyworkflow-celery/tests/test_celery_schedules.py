"""Schedules and queues on Celery (issue 16): the beat sweep fires ticks and admits queued runs.

Real processes: two Celery workers and beat (``sweep_interval`` 1 s) on one
SQLite storage; this process creates the schedule and starts the runs. The
checks read what storage recorded (:mod:`pyworkflow.testing.flowchecks`).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from celery_support import FAST, HERE, client_settings
from pyworkflow_celery.testing import CeleryCluster, RedisServer

from pyworkflow import get_result, runtime, start_workflow
from pyworkflow.schedules import create_schedule, pause_schedule
from pyworkflow.testing import flowflows
from pyworkflow.testing.flowchecks import (
    FLOW_MODULE,
    max_overlap,
    run_intervals,
    schedule_runs,
    settle,
    tick_problems,
    tick_run_problems,
)

QUEUE = "celeryq"
#: Runs of QUEUE executing at once, across both workers.
CONCURRENCY = 2


@pytest.fixture
def flow_cluster(redis_server: RedisServer, tmp_path: Path) -> Iterator[CeleryCluster]:
    """Two workers (4 slots each) and beat importing the flow checks' workflows."""
    redis_server.client().flushall()
    storage_url = f"sqlite:///{tmp_path / 'pw.db'}"
    queue_env = {f"PYWORKFLOW_QUEUES__{QUEUE.upper()}__CONCURRENCY": str(CONCURRENCY)}
    cluster = CeleryCluster(
        tmp_path,
        redis_server.url,
        storage_url,
        modules=FLOW_MODULE,
        pythonpath=HERE,
        settings={**FAST, **queue_env},
    )
    runtime.configure(
        **client_settings(redis_server.url, storage_url),
        queues={QUEUE: {"concurrency": CONCURRENCY}},
    )
    cluster.worker("w1", concurrency=4)
    cluster.worker("w2", concurrency=4)
    cluster.beat()
    yield cluster
    runtime.reset()
    cluster.stop_all()


def test_a_one_second_cron_fires_through_the_sweep_once_per_tick(
    flow_cluster: CeleryCluster,
) -> None:
    name = "celery-every-second"
    create_schedule(name, flowflows.flow_tick, "* * * * * *", overlap="allow")
    time.sleep(6.0)
    pause_schedule(name)
    pairs = schedule_runs(name, settle(flowflows.FLOW_TICK))
    ticks = [tick for tick, _ in pairs]
    print(f"celery: {len(ticks)} ticks from {ticks[0]} to {ticks[-1]}")
    assert tick_problems(ticks) == []  # no duplicate, no gap
    assert tick_run_problems(name, pairs) == []  # each completed, scheduled_at() is its tick
    assert len(ticks) >= 3
    # fired by the sweep: beat sends nothing else (no beat entry per user schedule)
    beat_log = flow_cluster.logs["beat"].read_text().splitlines()
    sent = [line for line in beat_log if "Sending due task" in line]
    assert sent and all("pyworkflow-sweep" in line for line in sent), sent


def test_a_queue_of_concurrency_2_never_runs_more_on_celery(flow_cluster: CeleryCluster) -> None:
    run_ids = [start_workflow(flowflows.flow_short, (i, 0.2), queue=QUEUE) for i in range(20)]
    assert [get_result(run_id, timeout=180) for run_id in run_ids] == list(range(20))
    intervals, problems = run_intervals(run_ids)
    assert problems == []
    most = max_overlap(intervals.values())
    print(f"celery: at most {most} runs of the queue at once (concurrency {CONCURRENCY})")
    assert most <= CONCURRENCY
