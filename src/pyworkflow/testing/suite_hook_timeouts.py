"""EngineConformance cases for hook timeouts, ``create_hook(timeout=...)`` (issue 20).

Mixed into :class:`~pyworkflow.testing.engine_suite.EngineConformance`: every
backend and executor plugin runs them, with short real timeouts (0.3 s); the
exact timing is tested at realistic durations on the harness's virtual clock
(``tests/test_hook_timeouts.py``).
"""

from __future__ import annotations

import time
from datetime import datetime
from typing import Any

import pytest

from pyworkflow.client import check_replay, get_events, get_result, get_run, resume_hook, start
from pyworkflow.context import create_hook, get_step_context
from pyworkflow.errors import HookNotFoundError, HookTimeoutError, RetryableError
from pyworkflow.models import Event, EventType, RunStatus
from pyworkflow.step import step
from pyworkflow.workflow import workflow

__all__ = ["HookTimeoutCases"]


@step(max_retries=2, retry_base="50ms", jitter=0)
async def conformance_hook_after_timeout(what: str) -> str:
    if get_step_context().attempt == 1:  # a second activation replays the timeout from the log
        raise RetryableError("once more")
    return f"after {what}"


@workflow
async def conformance_hook_with_timeout(token: str, timeout: float) -> dict[str, Any]:
    hook = create_hook(token=token, timeout=timeout)
    try:
        payload = await hook
    except HookTimeoutError as exc:
        return {
            "timed_out": exc.token,
            "timeout": exc.timeout,
            "next": await conformance_hook_after_timeout("timeout"),
        }
    return {"payload": payload, "next": await conformance_hook_after_timeout("payload")}


@workflow
async def conformance_hook_iterated(token: str) -> list[Any]:
    received = []
    async for payload in create_hook(token=token, timeout=1.0):
        received.append(payload)
    return received


def _token() -> str:
    return f"conformance-hook-timeout-{time.monotonic_ns()}"


def _wait_suspended(run_id: str, limit: float = 10.0) -> None:
    give_up = time.monotonic() + limit
    while get_run(run_id).status != RunStatus.SUSPENDED:
        assert time.monotonic() < give_up, "the run never suspended"
        time.sleep(0.02)


def _timer_events(events: list[Event]) -> list[Event]:
    return [
        e
        for e in events
        if e.type in (EventType.WAIT_CREATED, EventType.WAIT_COMPLETED)
        and e.payload.get("name") == "hook_timeout"
    ]


class HookTimeoutCases:
    """The hook timeout checks of the engine conformance suite."""

    def test_hook_timeout_raises_in_the_workflow_which_goes_on(self, pw: str) -> None:
        token = _token()
        run_id = start(conformance_hook_with_timeout, token, 0.3)
        result = get_result(run_id, timeout=20)
        assert result == {"timed_out": token, "timeout": 0.3, "next": "after timeout"}
        events = get_events(run_id)
        created, fired = _timer_events(events)
        hook = next(e for e in events if e.type == EventType.HOOK_CREATED)
        # the due time is recorded with the hook, in the same append, at creation + timeout
        assert created.type == EventType.WAIT_CREATED and fired.type == EventType.WAIT_COMPLETED
        assert created.payload["token"] == token and created.payload["hook"] == hook.correlation_id
        due = datetime.fromisoformat(created.payload["due_at"])
        assert abs((due - hook.timestamp).total_seconds() - 0.3) < 0.05
        assert fired.timestamp >= due
        disposed = [e for e in events if e.type == EventType.HOOK_DISPOSED]
        assert [(e.payload["token"], e.payload.get("reason")) for e in disposed] == [
            (token, "timeout")
        ]
        assert disposed[0].seq == fired.seq + 1  # disposed with the timer's firing
        # the step after it retried: a later activation replayed the timeout from the log
        assert EventType.STEP_RETRYING in [e.type for e in events]
        assert check_replay(run_id).deterministic
        with pytest.raises(HookNotFoundError):  # a payload after the timeout: the hook is gone
            resume_hook(token, {"late": True})
        assert len(get_events(run_id)) == len(events)

    def test_a_payload_before_the_timeout_is_received(self, pw: str) -> None:
        token = _token()
        run_id = start(conformance_hook_with_timeout, token, 30.0)
        _wait_suspended(run_id)
        resume_hook(token, {"ok": 1})
        assert get_result(run_id, timeout=20) == {"payload": {"ok": 1}, "next": "after payload"}
        events = get_events(run_id)
        assert [e.type for e in _timer_events(events)] == [EventType.WAIT_CREATED]
        disposed = [e for e in events if e.type == EventType.HOOK_DISPOSED]
        assert [e.payload.get("reason") for e in disposed] == [None]  # at the run's end
        assert check_replay(run_id).deterministic

    def test_async_for_over_a_hook_ends_at_its_timeout(self, pw: str) -> None:
        token = _token()
        run_id = start(conformance_hook_iterated, token)
        _wait_suspended(run_id)
        resume_hook(token, "a")
        resume_hook(token, "b")
        assert get_result(run_id, timeout=20) == ["a", "b"]
        kinds = [e.type for e in _timer_events(get_events(run_id))]
        assert kinds == [EventType.WAIT_CREATED, EventType.WAIT_COMPLETED]
        assert check_replay(run_id).deterministic
