"""EngineConformance cases for ``shield()`` (issue 20).

Mixed into :class:`~pyworkflow.testing.engine_suite.EngineConformance`: every
backend and executor plugin runs them. A cancellation requested while a
shielded step runs waits for the block to end; the same cancellation without
the shield cancels the step's wait and skips what follows.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import anyio
import pytest

from pyworkflow.client import cancel, check_replay, get_events, get_result, get_run, start
from pyworkflow.context import sleep
from pyworkflow.errors import WorkflowCancelledError
from pyworkflow.models import Event, EventType, RunStatus
from pyworkflow.shielding import shield
from pyworkflow.step import step
from pyworkflow.workflow import workflow

__all__ = ["ShieldCases"]

#: How long the slow steps take: long enough to cancel while one runs.
SLOW = 0.8


@step()
async def conformance_shield_book(key: str) -> str:
    return f"booked {key}"


async def _slow(what: str, key: str) -> str:
    await anyio.sleep(SLOW)
    return f"{what} {key}"


@step()
async def conformance_shield_charge(key: str) -> str:
    return await _slow("charge", key)


@step()
async def conformance_shield_receipt(key: str) -> str:
    return f"receipt {key}"


@step()
async def conformance_shield_refund(key: str) -> str:
    return await _slow("refund", key)


@step()
async def conformance_shield_release(key: str) -> str:
    return f"release {key}"


@workflow
async def conformance_shield_critical(key: str, shielded: bool) -> str:
    """Two steps that belong together, in a shield (or not); then a long sleep."""
    if shielded:
        async with shield():
            await conformance_shield_charge(key)
            await conformance_shield_receipt(key)
    else:
        await conformance_shield_charge(key)
        await conformance_shield_receipt(key)
    await sleep("30s")
    return "done"


@workflow
async def conformance_shield_saga(key: str, shielded: bool) -> str:
    """A saga: on cancellation, two compensation steps (shielded or not) before it ends."""
    await conformance_shield_book(key)
    try:
        await sleep("30s")
    except asyncio.CancelledError:
        if shielded:
            async with shield():
                await conformance_shield_refund(key)
                await conformance_shield_release(key)
        else:
            await conformance_shield_refund(key)
            await conformance_shield_release(key)
        raise
    return "kept"


def _wait(predicate: Callable[[], bool], what: str, limit: float = 15.0) -> None:
    give_up = time.monotonic() + limit
    while not predicate():
        assert time.monotonic() < give_up, f"still waiting for {what}"
        time.sleep(0.02)


def _started(run_id: str, what: str) -> bool:
    name = f"conformance_shield_{what}"
    return any(
        e.type in (EventType.STEP_STARTED, EventType.STEP_SCHEDULED)
        and e.payload.get("name") == name
        for e in get_events(run_id)
    )


def _sleeping(run_id: str) -> bool:
    """The saga sleeps: its booking is done and its sleep recorded (a cancel is caught)."""
    return get_run(run_id).status == RunStatus.SUSPENDED and any(
        e.type == EventType.WAIT_CREATED for e in get_events(run_id)
    )


def _completed(events: list[Event]) -> list[str]:
    """The steps completed, in log order (without the ``conformance_shield_`` prefix)."""
    prefix = "conformance_shield_"
    return [
        str(e.payload.get("name")).removeprefix(prefix)
        for e in events
        if e.type == EventType.STEP_COMPLETED
    ]


def _cancelled(run_id: str) -> list[Event]:
    """Wait for the run to end cancelled; its log."""
    with pytest.raises(WorkflowCancelledError):
        get_result(run_id, timeout=20)
    assert get_run(run_id).status == RunStatus.CANCELLED
    events = get_events(run_id)
    assert events[-1].type == EventType.WORKFLOW_CANCELLED
    return events


class ShieldCases:
    """The ``shield()`` checks of the engine conformance suite."""

    def test_a_cancel_during_a_shielded_block_waits_for_its_end(self, pw: str) -> None:
        key = f"critical-{time.monotonic_ns()}"
        run_id = start(conformance_shield_critical, key, True)
        _wait(lambda: _started(run_id, "charge"), "the shielded step to start")
        assert cancel(run_id, reason="user asked") is True
        events = _cancelled(run_id)
        assert _completed(events) == ["charge", "receipt"]  # both ran, and are recorded
        kinds = [e.type for e in events]
        assert EventType.WAIT_CREATED not in kinds  # cancelled as the block exited
        assert check_replay(run_id).deterministic

    def test_without_shield_the_cancel_skips_the_rest(self, pw: str) -> None:
        key = f"bare-{time.monotonic_ns()}"
        run_id = start(conformance_shield_critical, key, False)
        _wait(lambda: _started(run_id, "charge"), "the step to start")
        assert cancel(run_id) is True
        events = _cancelled(run_id)
        assert "receipt" not in _completed(events)  # cancelled at the first step's wait
        assert not _started(run_id, "receipt")

    def test_shielded_compensation_survives_a_second_cancel(self, pw: str) -> None:
        key = f"saga-{time.monotonic_ns()}"
        run_id = start(conformance_shield_saga, key, True)
        _wait(lambda: _sleeping(run_id), "the saga to sleep")
        assert cancel(run_id) is True
        _wait(lambda: _started(run_id, "refund"), "the first compensation")
        assert cancel(run_id, reason="impatient") is True  # again, while it compensates
        events = _cancelled(run_id)
        assert _completed(events) == ["book", "refund", "release"]
        assert [e.type for e in events].count(EventType.CANCEL_REQUESTED) == 2
        assert check_replay(run_id).deterministic

    def test_unshielded_compensation_is_cut_by_a_second_cancel(self, pw: str) -> None:
        key = f"saga-bare-{time.monotonic_ns()}"
        run_id = start(conformance_shield_saga, key, False)
        _wait(lambda: _sleeping(run_id), "the saga to sleep")
        assert cancel(run_id) is True
        _wait(lambda: _started(run_id, "refund"), "the first compensation")
        assert cancel(run_id) is True
        _cancelled(run_id)
        assert not _started(run_id, "release")  # the second compensation never ran
