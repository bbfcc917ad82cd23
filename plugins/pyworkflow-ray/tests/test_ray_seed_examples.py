"""The seed README's examples complete on Ray: activations in ``pyworkflow worker``
processes (executor ``ray``), every step body a Ray task on the two-node cluster."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import ray_flows as flows
from ray_cluster import RayCluster
from ray_support import parse_worker

from pyworkflow import EventType, FatalError, RunStatus, get_events, get_result, get_run, start
from pyworkflow.testing.workers import WorkerProcesses


def test_seed_examples_complete_on_ray(
    ray_cluster: RayCluster, workers: WorkerProcesses, tmp_path: Path
) -> None:
    workers.start("w1")
    workers.start("w2")
    log = str(tmp_path / "calls.log")

    basic = start(flows.my_workflow, item_id=123, pause="1s")
    greet = start(flows.GreetWorkflow, "Alice")
    onboarding = start(flows.onboarding_flow, "user_123", first="1s", second="1s")
    api = start(flows.fetch_flow, "https://api.example/items", log)
    missing = start(flows.fetch_flow, "https://api.example/missing", log)

    assert get_result(basic, timeout=90) == "Processed 123"
    assert get_result(greet, timeout=90) == "Hello, Alice!"
    assert get_result(onboarding, timeout=90) == "onboarded user_123"
    assert get_result(api, timeout=90) == {"url": "https://api.example/items", "attempt": "3"}
    with pytest.raises(FatalError, match="Resource not found"):
        get_result(missing, timeout=90)
    assert get_run(missing).status == RunStatus.FAILED

    # every step attempt ran in a Ray worker process on a node of the cluster, neither here
    # nor in a `pyworkflow worker` process: its step_started names the Ray worker (lone
    # steps in their activation's Ray task, dispatched steps in their own, alike)
    worker_pids = {p.pid for p in workers.procs.values()}
    for run_id in (basic, greet, onboarding, api, missing):
        attempts = [e for e in get_events(run_id) if e.type == EventType.STEP_STARTED]
        assert attempts
        for event in attempts:
            node, pid = parse_worker(event.payload["worker"])
            assert node in ray_cluster.nodes.values(), event.payload
            assert pid != os.getpid() and pid not in worker_pids
    # the step bodies themselves saw a Ray node
    recorded = flows.lines(log)
    assert recorded and all(fields[3] in ray_cluster.nodes.values() for fields in recorded)
    # retryable errors were retried as durable timers; the fatal one never
    api_log = [(e.seq, e.type.value, e.payload.get("attempt")) for e in get_events(api)]
    api_events = [e.type for e in get_events(api)]
    assert api_events.count(EventType.STEP_RETRYING) == 2, (api_log, recorded)
    assert [e.type for e in get_events(missing)].count(EventType.STEP_RETRYING) == 0
    assert [fields[0] for fields in recorded].count("call_external_api") == 4
    # sleeps suspended the runs and they resumed
    assert [e.type for e in get_events(onboarding)].count(EventType.WAIT_COMPLETED) == 2
    assert [e.type for e in get_events(basic)].count(EventType.WAIT_COMPLETED) == 1
