"""Must-show 5: 500 runs of a 5-step workflow over 2 worker processes all complete."""

from __future__ import annotations

import time
from collections import Counter

import celery_flows as flows
import pytest
from pyworkflow_celery.testing import CeleryCluster, wait_for

from pyworkflow import EventType, RunStatus, get_events, get_result, get_run, start

pytestmark = pytest.mark.slow


def test_500_runs_of_five_steps_on_two_workers(cluster: CeleryCluster) -> None:
    cluster.worker("w1", concurrency=4)
    cluster.worker("w2", concurrency=4)
    cluster.beat()
    began = time.perf_counter()
    run_ids = [start(flows.celery_five_steps, i) for i in range(500)]
    pending = list(run_ids)

    def all_done() -> bool:
        while pending and get_run(pending[-1]).status == RunStatus.COMPLETED:
            pending.pop()
        time.sleep(0.2)
        return not pending

    wait_for(all_done, 300, "500 runs to complete")
    elapsed = time.perf_counter() - began
    print(f"\n500 runs x 5 steps on 2 workers: {elapsed:.1f}s, {500 / elapsed:.1f} runs/s")
    workers: Counter[str] = Counter()
    for run_id in run_ids:
        run = get_run(run_id)
        assert run.status == RunStatus.COMPLETED
        events = get_events(run_id)
        completed = [e.correlation_id for e in events if e.type == EventType.STEP_COMPLETED]
        assert len(completed) == 5 and len(set(completed)) == 5, run_id
        workers.update(e.payload["worker"] for e in events if e.type == EventType.STEP_STARTED)
    # both workers took part
    assert set(workers) == {cluster.hostname_of("w1"), cluster.hostname_of("w2")}
    assert [get_result(r) for r in run_ids[:50]] == [i + 5 for i in range(50)]
