"""Tracing on Ray: a step body in a Ray worker runs in its attempt's span context.

This process's embedded worker (executor ``ray``, tracing on) sends the
activation to a Ray worker, where its lone step runs. The body finds the
attempt's span (deterministic ids, docs/observability.md) as its current
OpenTelemetry context, so spans a user opens there nest under the attempt.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import ray_flows as flows
from ray_cluster import RayCluster
from ray_support import ray_driver

from pyworkflow import EventType, get_events, get_result, start
from pyworkflow.tracing import span_id_for, trace_id_for

pytest.importorskip("opentelemetry.sdk")


@pytest.fixture
def traced(
    ray_cluster: RayCluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[None]:
    tracing = {"enabled": True, "exporter": "none"}
    with ray_driver(ray_cluster, tmp_path, monkeypatch, tracing=tracing):
        yield


def test_a_ray_step_body_runs_in_its_attempt_span(traced: None) -> None:
    run_id = start(flows.trace_flow)
    trace_id, span_id, pid = get_result(run_id, timeout=90)
    assert int(pid) != os.getpid()  # the body ran in a Ray worker process
    step = next(e for e in get_events(run_id) if e.type == EventType.STEP_STARTED)
    assert trace_id == format(trace_id_for(run_id), "032x")
    assert span_id == format(span_id_for(run_id, step.correlation_id, 1), "016x")


def test_a_dispatched_ray_step_body_runs_in_its_attempt_span(traced: None) -> None:
    """A step with resources goes through the dispatch protocol: its body sees its span too."""
    run_id = start(flows.trace_dispatched_flow)
    trace_id, span_id, pid = get_result(run_id, timeout=90)
    assert int(pid) != os.getpid()
    events = get_events(run_id)
    assert any(e.type == EventType.STEP_SCHEDULED for e in events)  # dispatched, not inline
    step = next(e for e in events if e.type == EventType.STEP_STARTED)
    attempt = int(step.payload["attempt"])
    assert trace_id == format(trace_id_for(run_id), "032x")
    assert span_id == format(span_id_for(run_id, step.correlation_id, attempt), "016x")
