"""EngineConformance cases for workflow timeouts (issue 15).

Mixed into :class:`~pyworkflow.testing.engine_suite.EngineConformance`: every
backend and executor plugin runs them. Tests use the class's fixtures
(``pw`` configures a fast runtime on the backend under test).

Each case gives a run a short real timeout (0.3 s) against something much
longer (a 30 s sleep, a hook, a 1 s step) and checks what the log and the run
say; the exact timing is tested at realistic durations on the harness's
virtual clock (``tests/test_workflow_timeouts.py``).
"""

from __future__ import annotations

import time
from datetime import datetime
from typing import Any

import anyio
import pytest

from pyworkflow.client import get_events, get_result, get_run, resume_hook, start, start_workflow
from pyworkflow.context import create_hook, sleep
from pyworkflow.errors import HookNotFoundError, WorkflowTimeoutError
from pyworkflow.models import Event, EventType, RunStatus
from pyworkflow.step import step
from pyworkflow.workflow import workflow

__all__ = ["TimeoutCases"]

#: What the steps of these cases did, by key (cleared by each case).
seen: dict[str, list[Any]] = {}


@workflow(timeout=0.3)
async def conformance_timeout_sleeper() -> str:
    await sleep("30s")
    return "woke"


@workflow
async def conformance_timeout_waiter(token: str) -> Any:
    async with create_hook(token=token) as hook:
        return await hook


@step(max_retries=0)
async def conformance_timeout_slow_step(key: str) -> str:
    seen.setdefault(key, []).append("started")
    try:
        await anyio.sleep(3.0)
    except BaseException:
        seen[key].append("cancelled")
        raise
    seen[key].append("finished")
    return "finished"


#: Long enough for the step to start on a busy machine, shorter than the step.
BUSY_TIMEOUT = 1.0


@workflow(timeout=BUSY_TIMEOUT)
async def conformance_timeout_busy(key: str) -> str:
    return await conformance_timeout_slow_step(key)


@step()
async def conformance_timeout_quick(n: int) -> int:
    return n + 1


@workflow(timeout="30s")
async def conformance_timeout_in_time(n: int) -> int:
    await sleep("20ms")
    return await conformance_timeout_quick(n)


def _kinds(events: list[Event]) -> list[EventType]:
    return [e.type for e in events]


def _check_timed_out(run_id: str, timeout: float = 0.3) -> Event:
    """The run ended ``failed`` by its timeout, after its deadline; its timeout event."""
    info = get_run(run_id)
    assert info.status == RunStatus.FAILED
    assert isinstance(info.error, WorkflowTimeoutError)
    assert (info.error_message or "").startswith("WorkflowTimeoutError: ")
    events = get_events(run_id)
    kinds = _kinds(events)
    assert kinds[-2:] == [EventType.WORKFLOW_TIMED_OUT, EventType.WORKFLOW_FAILED]
    deadline = datetime.fromisoformat(events[0].payload["deadline"])
    timed_out = events[-2]
    assert timed_out.timestamp >= deadline
    assert datetime.fromisoformat(timed_out.payload["deadline"]) == deadline
    assert timed_out.payload["timeout"] == pytest.approx(timeout)
    return timed_out


def _wait_for(predicate: Any, what: str, limit: float = 10.0) -> None:
    give_up = time.monotonic() + limit
    while not predicate():
        assert time.monotonic() < give_up, f"still waiting for {what}"
        time.sleep(0.02)


class TimeoutCases:
    """The workflow timeouts checks of the engine conformance suite."""

    def test_timeout_ends_a_long_sleep(self, pw: str) -> None:
        run_id = start(conformance_timeout_sleeper)
        with pytest.raises(WorkflowTimeoutError) as info:
            get_result(run_id, timeout=20)
        assert info.value.run_id == run_id
        assert info.value.timeout == pytest.approx(0.3)
        timed_out = _check_timed_out(run_id)
        assert timed_out.payload["cancelled"] == []
        kinds = _kinds(get_events(run_id))
        assert EventType.WAIT_CREATED in kinds and EventType.WAIT_COMPLETED not in kinds

    def test_start_time_timeout_ends_a_run_waiting_on_a_hook(self, pw: str) -> None:
        token = f"conformance-timeout-{time.monotonic_ns()}"
        run_id = start_workflow(conformance_timeout_waiter, [token], timeout="300ms")
        with pytest.raises(WorkflowTimeoutError):
            get_result(run_id, timeout=20)
        _check_timed_out(run_id)
        events = get_events(run_id)
        disposed = [e for e in events if e.type == EventType.HOOK_DISPOSED]
        assert [e.payload["token"] for e in disposed] == [token]
        with pytest.raises(HookNotFoundError):
            resume_hook(token, {"late": True})
        assert len(get_events(run_id)) == len(events)

    def test_timeout_stops_a_running_step_and_ignores_its_late_outcome(self, pw: str) -> None:
        key = f"busy-{time.monotonic_ns()}"
        run_id = start(conformance_timeout_busy, key)
        with pytest.raises(WorkflowTimeoutError):
            get_result(run_id, timeout=20)
        timed_out = _check_timed_out(run_id, BUSY_TIMEOUT)
        # run here: cancelled with the activation; dispatched: left to its worker. The step
        # is listed if it had begun (started or dispatched) by the deadline, as it has unless
        # the machine is so busy that the run's first activation came after it
        began = {
            str(e.payload.get("name"))
            for e in get_events(run_id)
            if e.seq < timed_out.seq
            and e.type in (EventType.STEP_STARTED, EventType.STEP_SCHEDULED)
        }
        stopped = [*timed_out.payload["cancelled"], *timed_out.payload["dispatched"]]
        assert [s["name"] for s in stopped] == sorted(began)
        ended = len(get_events(run_id))
        if timed_out.payload["cancelled"] and key in seen:  # its body ran in this process
            _wait_for(lambda: "cancelled" in seen[key], "the step's cancellation")
        elif key in seen:  # a worker of this process runs it: wait for its late outcome
            _wait_for(lambda: len(seen[key]) > 1, "the dispatched step's end")
            time.sleep(0.3)  # the worker offers the outcome to the log right after
        events = get_events(run_id)
        assert len(events) == ended  # a late outcome is dropped: the run has ended
        kinds = _kinds(events)
        assert EventType.STEP_COMPLETED not in kinds and EventType.STEP_FAILED not in kinds
        assert get_run(run_id).status == RunStatus.FAILED

    def test_a_run_that_ends_in_time_is_unaffected(self, pw: str) -> None:
        run_id = start(conformance_timeout_in_time, 41)
        assert get_result(run_id, timeout=20) == 42
        events = get_events(run_id)
        assert events[0].payload["timeout"] == 30.0
        kinds = _kinds(events)
        assert EventType.WORKFLOW_TIMED_OUT not in kinds
        assert kinds[-1] == EventType.WORKFLOW_COMPLETED
        assert get_run(run_id).status == RunStatus.COMPLETED
