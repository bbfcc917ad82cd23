"""A workflow timeout on Ray: the activation runs in a Ray worker, the deadline is kept by
the `pyworkflow worker` process that claims the run when it comes."""

from __future__ import annotations

from pathlib import Path

import pytest
import ray_flows as flows
from ray_cluster import RayCluster

from pyworkflow import EventType, WorkflowTimeoutError, get_events, get_result, start
from pyworkflow.testing.workers import WorkerProcesses


def test_a_workflow_timeout_ends_a_run_sleeping_on_ray(
    ray_cluster: RayCluster, workers: WorkerProcesses, tmp_path: Path
) -> None:
    workers.start("w1")
    # a first run brings up the Ray worker processes of this test's runtime_env, so the
    # timed run's first activation comes well inside its 8 s
    assert get_result(start(flows.GreetWorkflow, "warm"), timeout=120) == "Hello, warm!"
    run_id = start(flows.timed_sleeper)
    with pytest.raises(WorkflowTimeoutError) as info:
        get_result(run_id, timeout=120)
    assert info.value.run_id == run_id
    kinds = [e.type for e in get_events(run_id)]
    # it slept (the activation on Ray suspended it), and its deadline, not the sleep, ended it
    assert EventType.WAIT_CREATED in kinds
    assert EventType.WAIT_COMPLETED not in kinds
    assert kinds[-2:] == [EventType.WORKFLOW_TIMED_OUT, EventType.WORKFLOW_FAILED]
