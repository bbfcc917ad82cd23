"""Workflow timeouts on real Celery workers: steps on other workers, steps run inline.

The run's deadline arrives as an ``eta`` activation; a step already running
on a worker cannot be stopped from there, so its late outcome must be dropped.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest
import timeout_flows as flows
from celery_support import FAST, HERE, client_settings
from pyworkflow_celery.testing import CeleryCluster, RedisServer, wait_for

from pyworkflow import (
    EventType,
    RunStatus,
    WorkflowTimeoutError,
    get_events,
    get_result,
    get_run,
    runtime,
    start,
)
from pyworkflow.runtime import get_runtime


@pytest.fixture
def timeout_cluster(redis_server: RedisServer, tmp_path: Path) -> Iterator[CeleryCluster]:
    """A cluster whose workers import this test's workflows."""
    redis_server.client().flushall()
    storage_url = f"sqlite:///{tmp_path / 'pw.db'}"
    cluster = CeleryCluster(
        tmp_path,
        redis_server.url,
        storage_url,
        modules="timeout_flows",
        pythonpath=HERE,
        settings=FAST,
    )
    runtime.configure(**client_settings(redis_server.url, storage_url))
    yield cluster
    runtime.reset()
    cluster.stop_all()


def _timed_out(run_id: str) -> dict[str, list[dict[str, object]]]:
    with pytest.raises(WorkflowTimeoutError):
        get_result(run_id, timeout=60)
    events = get_events(run_id)
    kinds = [e.type for e in events]
    assert kinds[-2:] == [EventType.WORKFLOW_TIMED_OUT, EventType.WORKFLOW_FAILED]
    timed_out = events[-2]
    assert timed_out.timestamp >= datetime.fromisoformat(events[0].payload["deadline"])
    return dict(timed_out.payload)


def test_steps_running_on_workers_finish_but_their_outcomes_are_dropped(
    timeout_cluster: CeleryCluster, tmp_path: Path
) -> None:
    # a free slot for the activation at the deadline while both steps run
    timeout_cluster.worker("w1", concurrency=2)
    timeout_cluster.worker("w2", concurrency=2)
    log = str(tmp_path / "steps.log")
    run_id = start(flows.timeout_gathered, log)
    payload = _timed_out(run_id)
    assert payload["cancelled"] == []
    assert sorted(str(s["name"]) for s in payload["dispatched"]) == ["timeout_slow"] * 2
    ended = len(get_events(run_id))
    # the workers run the bodies to their end, then offer the outcomes to the ended run
    wait_for(
        lambda: {"finished a", "finished b"} <= set(flows.notes(log)),
        30,
        "both step bodies to finish",
    )
    rt = get_runtime()
    # a worker releases its step lease once it has offered the outcome to the log
    wait_for(
        lambda: not rt.call(rt.storage.get_step_leases, run_id),
        30,
        "the workers to be done with the late outcomes",
    )
    events = get_events(run_id)
    assert len(events) == ended
    assert EventType.STEP_COMPLETED not in [e.type for e in events]
    assert get_run(run_id).status == RunStatus.FAILED


def test_a_lone_step_run_inline_is_cancelled(
    timeout_cluster: CeleryCluster, tmp_path: Path
) -> None:
    timeout_cluster.worker("w1")
    log = str(tmp_path / "steps.log")
    run_id = start(flows.timeout_lone, log)
    payload = _timed_out(run_id)
    (cancelled,) = payload["cancelled"]
    assert cancelled["name"] == "timeout_slow" and cancelled["attempt"] == 1
    wait_for(lambda: "cancelled lone" in flows.notes(log), 10, "the step's cancellation")
    assert "finished lone" not in flows.notes(log)
    events = get_events(run_id)
    assert EventType.STEP_COMPLETED not in [e.type for e in events]
