"""Step dispatch (the protocol distributed executors use), driven in-process.

The whole engine test set runs with steps dispatched instead of run inline;
the checks below cover what only dispatch has: lost and duplicated
messages, lease takeover, the worker's name on ``step_started``.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from pyworkflow import EventType, get_events, get_result, runtime, start
from pyworkflow.testing import EngineConformance
from pyworkflow.testing.engine_suite import FAST, flaky_flow, gather_flow

from .dispatching import InProcessDispatch, dispatching_executor  # noqa: F401  # fixture

pytestmark = pytest.mark.usefixtures("dispatching_executor")


class TestEngineWithDispatchOnMemory(EngineConformance):
    extra_settings = {"executor": "inprocess-dispatch"}

    def make_storage_url(self, tmp_path: Path) -> str:
        return "memory://"


class TestEngineWithDispatchOnSQLite(EngineConformance):
    extra_settings = {"executor": "inprocess-dispatch"}

    def make_storage_url(self, tmp_path: Path) -> str:
        return f"sqlite:///{tmp_path / 'pw.db'}"


def test_steps_are_scheduled_then_started_by_the_worker() -> None:
    runtime.configure(storage="memory://", executor="inprocess-dispatch", **FAST)
    run_id = start(gather_flow)
    assert get_result(run_id, timeout=20).startswith("a+b")
    events = get_events(run_id)
    scheduled = [e for e in events if e.type == EventType.STEP_SCHEDULED]
    started = [e for e in events if e.type == EventType.STEP_STARTED]
    assert [e.payload["name"] for e in scheduled] == ["slow_a", "slow_b", "after_gather"]
    assert all(e.payload["worker"] == "inproc" and e.payload["dispatched"] for e in started)
    # both gather steps were scheduled in one append, before either started
    first_start = min(e.seq for e in started)
    assert scheduled[1].seq < first_start


def test_a_lost_step_message_is_dispatched_again_after_the_timeout() -> None:
    runtime.configure(storage="memory://", executor="inprocess-dispatch", **FAST)
    InProcessDispatch.drop_steps = 1
    run_id = start(gather_flow)
    assert get_result(run_id, timeout=30).startswith("a+b")
    events = get_events(run_id)
    attempts = [
        (e.payload["name"], e.payload["attempt"])
        for e in events
        if e.type == EventType.STEP_SCHEDULED
    ]
    # the message no worker took was sent again as the same attempt: nothing of the
    # retry budget is spent on a step that never started
    assert [a for name, a in attempts if name == "slow_a"] == [1]
    started = [e.payload["attempt"] for e in events if e.type == EventType.STEP_STARTED]
    assert started == [1, 1, 1]
    completed = [e.payload["name"] for e in events if e.type == EventType.STEP_COMPLETED]
    assert sorted(completed) == ["after_gather", "slow_a", "slow_b"]


def test_a_lost_retry_message_is_sent_again_as_the_same_attempt() -> None:
    runtime.configure(storage="memory://", executor="inprocess-dispatch", **FAST)
    InProcessDispatch.drop_once = {("1", 2)}  # attempt 2 of the flaky step never arrives
    try:
        run_id = start(flaky_flow)
        assert get_result(run_id, timeout=30) == "ok after 3"
    finally:
        InProcessDispatch.drop_once = set()
    events = get_events(run_id)
    scheduled = [e.payload["attempt"] for e in events if e.type == EventType.STEP_SCHEDULED]
    started = [e.payload["attempt"] for e in events if e.type == EventType.STEP_STARTED]
    assert scheduled == [1, 2, 3]
    assert started == [1, 2, 3]  # attempt 2 ran (late), none was skipped
    assert [e.type for e in events].count(EventType.STEP_RETRYING) == 2
    executor = runtime.get_runtime().executor
    assert isinstance(executor, InProcessDispatch)
    assert [a for _, _, a in executor.messages] == [1, 2, 3]  # the dropped one not counted


class TestEngineWithLoneStepsInlineOnMemory(EngineConformance):
    extra_settings = {"executor": "inprocess-inline"}

    def make_storage_url(self, tmp_path: Path) -> str:
        return "memory://"


class TestEngineWithLoneStepsInlineOnSQLite(EngineConformance):
    extra_settings = {"executor": "inprocess-inline"}

    def make_storage_url(self, tmp_path: Path) -> str:
        return f"sqlite:///{tmp_path / 'pw.db'}"


def test_a_lone_step_runs_in_its_activation_and_a_gather_is_dispatched() -> None:
    runtime.configure(storage="memory://", executor="inprocess-inline", **FAST)
    run_id = start(gather_flow)
    assert get_result(run_id, timeout=20).startswith("a+b")
    events = get_events(run_id)
    scheduled = [e.payload["name"] for e in events if e.type == EventType.STEP_SCHEDULED]
    started = {e.payload["name"]: e.payload for e in events if e.type == EventType.STEP_STARTED}
    # the two steps awaited together still go to workers, at once
    assert scheduled == ["slow_a", "slow_b"]
    assert started["slow_a"]["dispatched"] and started["slow_a"]["worker"] == "inproc"
    # the step awaited alone ran in the activation, named by the executor's worker_name
    assert "dispatched" not in started["after_gather"]
    assert started["after_gather"]["worker"] == "inproc-activation"
    completed = [e.payload["name"] for e in events if e.type == EventType.STEP_COMPLETED]
    assert sorted(completed) == ["after_gather", "slow_a", "slow_b"]


def test_lone_steps_in_sequence_are_never_dispatched() -> None:
    runtime.configure(storage="memory://", executor="inprocess-inline", **FAST)
    run_id = start(flaky_flow)
    assert get_result(run_id, timeout=20) == "ok after 3"
    events = get_events(run_id)
    assert not [e for e in events if e.type == EventType.STEP_SCHEDULED]
    # its retries are durable timers, each next attempt run inline by an activation
    attempts = [e.payload["attempt"] for e in events if e.type == EventType.STEP_STARTED]
    assert attempts == [1, 2, 3]
    assert [e.type for e in events].count(EventType.STEP_RETRYING) == 2
