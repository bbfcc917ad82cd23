"""Must-show 1: the seed's Celery examples across 2 worker processes and a beat process."""

from __future__ import annotations

from pathlib import Path

import celery_flows as flows
from pyworkflow_celery.testing import CeleryCluster as Cluster

from pyworkflow import EventType, RunStatus, get_events, get_result, get_run, start


def test_seed_examples_complete_on_two_workers_with_beat(cluster: Cluster, tmp_path: Path) -> None:
    cluster.worker("w1")
    cluster.worker("w2")
    cluster.beat()
    log = str(tmp_path / "calls.log")

    basic = start(flows.my_workflow, item_id=123, pause="1s")
    greet = start(flows.GreetWorkflow, "Alice")
    onboarding = start(flows.onboarding_flow, "user_123", first="1s", second="2s")
    api = start(flows.fetch_flow, "https://api.example/items", log)
    missing = start(flows.fetch_flow, "https://api.example/missing", log)

    assert get_result(basic, timeout=60) == "Processed 123"
    assert get_result(greet, timeout=60) == "Hello, Alice!"
    assert get_result(onboarding, timeout=60) == "onboarded user_123"
    assert get_result(api, timeout=60) == {"url": "https://api.example/items", "attempt": "3"}
    try:
        get_result(missing, timeout=60)
    except Exception as exc:
        assert "Resource not found" in str(exc)
    else:
        raise AssertionError("a FatalError step must fail its run")
    assert get_run(missing).status == RunStatus.FAILED

    # steps ran on the workers (not in this process), each start naming its worker
    workers = {
        e.payload["worker"]
        for run_id in (basic, greet, onboarding, api)
        for e in get_events(run_id)
        if e.type == EventType.STEP_STARTED
    }
    assert workers <= {cluster.hostname_of("w1"), cluster.hostname_of("w2")}
    assert workers, "no step_started recorded a worker"
    # retryable errors were retried as durable timers; the fatal one never
    api_events = [e.type for e in get_events(api)]
    assert api_events.count(EventType.STEP_RETRYING) == 2
    missing_events = [e.type for e in get_events(missing)]
    assert EventType.STEP_RETRYING not in missing_events
    # sleeps suspended the runs and they resumed
    assert [e.type for e in get_events(onboarding)].count(EventType.WAIT_COMPLETED) == 2


def test_seed_spelling_of_the_app_runs_workflows(cluster: Cluster) -> None:
    cluster.worker("seed", app="pyworkflow.celery.app")
    assert get_result(start(flows.my_workflow, item_id=7, pause="0.5s"), timeout=60) == (
        "Processed 7"
    )
