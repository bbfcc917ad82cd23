"""EngineConformance cases for child workflows (issue 15).

Mixed into :class:`~pyworkflow.testing.engine_suite.EngineConformance`: every
backend and executor plugin runs them. Tests use the class's fixtures
(``pw`` configures a fast runtime on the backend under test). Workflows here
have names of their own (``conformance_child_*``); assertions read the logs.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from pyworkflow.children import start_child
from pyworkflow.client import (
    cancel,
    get_events,
    get_result,
    get_run,
    list_runs,
    resume_hook,
    start,
)
from pyworkflow.context import continue_as_new, create_hook
from pyworkflow.engine.children import child_run_id
from pyworkflow.errors import ChildWorkflowError, WorkflowCancelledError
from pyworkflow.models import Event, EventType, NewEvent, Run, RunStatus, utcnow
from pyworkflow.runtime import get_runtime
from pyworkflow.serialization import dumps_call_limited
from pyworkflow.step import step
from pyworkflow.workflow import Workflow, workflow

__all__ = ["ChildrenCases"]


@step()
async def conformance_child_double(n: int) -> int:
    return 2 * n


#: The events by which a child's end reaches its parent.
_CHILD_OUTCOMES = frozenset({EventType.CHILD_WORKFLOW_COMPLETED, EventType.CHILD_WORKFLOW_FAILED})


@workflow(name="conformance_child_double_flow")
async def conformance_child_double_flow(n: int) -> int:
    if n < 0:
        raise ValueError(f"no negative numbers: {n}")
    return await conformance_child_double(n)


class ConformanceChildClass(Workflow):
    name = "conformance_child_class"

    async def run(self, n: int) -> int:
        return n + 1000


@workflow(name="conformance_child_parent")
async def conformance_child_parent(n: int) -> dict[str, Any]:
    one = await conformance_child_double_flow(n)
    other = await ConformanceChildClass().run_child(n)
    by_name = await start_child("conformance_child_double_flow", n + 1)
    return {"one": one, "class": other, "by_name": by_name}


@workflow(name="conformance_child_fanout")
async def conformance_child_fanout(count: int) -> list[int]:
    return list(await asyncio.gather(*(conformance_child_double_flow(i) for i in range(count))))


@workflow(name="conformance_child_catches")
async def conformance_child_catches() -> list[Any]:
    try:
        await conformance_child_double_flow(-1)
    except ChildWorkflowError as error:
        cause = error.__cause__
        return [error.run_id, error.workflow, error.status, type(cause).__name__, str(cause)]
    return []


@workflow(name="conformance_child_uncaught")
async def conformance_child_uncaught() -> int:
    return await conformance_child_double_flow(-2)


@workflow(name="conformance_child_waiter")
async def conformance_child_waiter(token: str) -> Any:
    async with create_hook(token=token) as hook:
        return await hook


@workflow(name="conformance_child_waiting_parent")
async def conformance_child_waiting_parent(token: str) -> Any:
    return await conformance_child_waiter(token)


@workflow(name="conformance_child_closing_parent")
async def conformance_child_closing_parent(prefix: str) -> list[str]:
    ended = start_child(conformance_child_waiter, f"{prefix}-t", parent_close_policy="terminate")
    left = start_child(conformance_child_waiter, f"{prefix}-a", parent_close_policy="abandon")
    return [ended.run_id, left.run_id]


@workflow(name="conformance_child_handle_cancel")
async def conformance_child_handle_cancel(token: str) -> list[str]:
    handle = start_child(conformance_child_waiter, token)
    await handle.cancel()
    try:
        await handle
    except ChildWorkflowError as error:
        return [handle.run_id, error.status, type(error.__cause__).__name__]
    return []


@workflow(name="conformance_child_continuing")
async def conformance_child_continuing(rounds: int) -> int:
    if rounds > 0:
        continue_as_new(rounds - 1)
    return 7


@workflow(name="conformance_child_chain_parent")
async def conformance_child_chain_parent() -> int:
    return await conformance_child_continuing(2)


def _kinds(events: list[Event]) -> list[EventType]:
    return [e.type for e in events]


def _wait_for(predicate: Any, what: str, limit: float = 20.0) -> None:
    give_up = time.monotonic() + limit
    while not predicate():
        assert time.monotonic() < give_up, f"still waiting for {what}"
        time.sleep(0.02)


def _children(run_id: str) -> list[Any]:
    return list(list_runs(parent=run_id, limit=500).runs)


class ChildrenCases:
    """The child-workflow checks of the engine conformance suite."""

    def test_child_runs_are_started_awaited_and_linked(self, pw: str) -> None:
        run_id = start(conformance_child_parent, 4)
        assert get_result(run_id, timeout=30) == {"one": 8, "class": 1004, "by_name": 10}
        events = get_events(run_id)
        started = [e for e in events if e.type is EventType.CHILD_WORKFLOW_STARTED]
        completed = [e for e in events if e.type is EventType.CHILD_WORKFLOW_COMPLETED]
        assert [e.payload["name"] for e in started] == [
            "conformance_child_double_flow",
            "conformance_child_class",
            "conformance_child_double_flow",
        ]
        assert [e.correlation_id for e in completed] == [e.correlation_id for e in started]
        for event in started:
            child = event.payload["child_run_id"]
            assert child == child_run_id(run_id, str(event.correlation_id))
            info = get_run(child)
            assert info.parent_run_id == run_id and info.status is RunStatus.COMPLETED
        assert sorted(r.run_id for r in _children(run_id)) == sorted(
            e.payload["child_run_id"] for e in started
        )

    def test_gather_over_a_hundred_children(self, pw: str) -> None:
        run_id = start(conformance_child_fanout, 100)
        assert get_result(run_id, timeout=120) == [2 * i for i in range(100)]
        kinds = _kinds(get_events(run_id))
        assert kinds.count(EventType.CHILD_WORKFLOW_STARTED) == 100
        assert kinds.count(EventType.CHILD_WORKFLOW_COMPLETED) >= 100  # a repair may repeat one
        children = _children(run_id)
        assert len(children) == 100
        assert {c.status for c in children} == {RunStatus.COMPLETED}

    def test_child_failure_is_a_child_workflow_error_caused_by_the_childs(self, pw: str) -> None:
        run_id = start(conformance_child_catches)
        child, name, status, cause, message = get_result(run_id, timeout=30)
        assert (name, status, cause) == ("conformance_child_double_flow", "failed", "ValueError")
        assert message == "no negative numbers: -1"
        assert get_run(child).parent_run_id == run_id
        failed = [e for e in get_events(run_id) if e.type is EventType.CHILD_WORKFLOW_FAILED]
        assert [e.payload["child_run_id"] for e in failed] == [child]
        uncaught = start(conformance_child_uncaught)
        with pytest.raises(ChildWorkflowError) as info:
            get_result(uncaught, timeout=30)
        assert isinstance(info.value.__cause__, ValueError)
        assert get_run(uncaught).status is RunStatus.FAILED

    def test_cancelling_the_parent_cancels_its_child(self, pw: str) -> None:
        token = f"conformance-child-{time.monotonic_ns()}"
        run_id = start(conformance_child_waiting_parent, token)
        child = child_run_id(run_id, "1")
        _wait_for(
            lambda: EventType.HOOK_CREATED in _kinds(get_events(child)) if _children(run_id) else 0,
            "the child's hook",
        )
        assert cancel(run_id, reason="stop")
        with pytest.raises(WorkflowCancelledError):
            get_result(run_id, timeout=30)
        _wait_for(lambda: get_run(child).status is RunStatus.CANCELLED, "the child's cancel")
        child_kinds = _kinds(get_events(child))
        assert EventType.CANCEL_REQUESTED in child_kinds
        assert child_kinds[-1] is EventType.WORKFLOW_CANCELLED
        events = get_events(run_id)
        ending = events[-1]
        assert ending.type is EventType.WORKFLOW_CANCELLED
        # the parent closes its open children before its end is stored: its end lists the
        # child, or, when the child's cancellation ended it first, the child's outcome is in
        # the parent's log before the end (the end then replayed with it)
        listed = ending.payload.get("children")
        told = [e.payload["child_run_id"] for e in events if e.type in _CHILD_OUTCOMES]
        assert told == [child] or listed == [
            {"run_id": child, "name": "conformance_child_waiter", "policy": "request_cancel"}
        ]

    def test_parent_close_policies_terminate_and_abandon(self, pw: str) -> None:
        prefix = f"conformance-close-{time.monotonic_ns()}"
        run_id = start(conformance_child_closing_parent, prefix)
        terminated, abandoned = get_result(run_id, timeout=30)
        _wait_for(lambda: get_run(terminated).status is RunStatus.CANCELLED, "the termination")
        ending = get_events(terminated)[-1]
        assert ending.type is EventType.WORKFLOW_CANCELLED and ending.payload["terminated"]
        assert EventType.CANCEL_REQUESTED not in _kinds(get_events(terminated))
        _wait_for(
            lambda: EventType.HOOK_CREATED in _kinds(get_events(abandoned)), "the abandoned hook"
        )
        resume_hook(f"{prefix}-a", "still here")
        assert get_result(abandoned, timeout=30) == "still here"
        assert get_run(abandoned).parent_run_id == run_id

    def test_a_handle_cancels_its_child(self, pw: str) -> None:
        token = f"conformance-handle-{time.monotonic_ns()}"
        run_id = start(conformance_child_handle_cancel, token)
        child, status, cause = get_result(run_id, timeout=30)
        assert (status, cause) == ("cancelled", "WorkflowCancelledError")
        assert get_run(child).status is RunStatus.CANCELLED
        assert EventType.CANCEL_REQUESTED in _kinds(get_events(child))

    def test_a_child_continued_as_new_tells_its_parent_at_the_chains_end(self, pw: str) -> None:
        run_id = start(conformance_child_chain_parent)
        assert get_result(run_id, timeout=30) == 7
        children = _children(run_id)
        assert len(children) == 3  # the child and the two runs it continued as
        completed = [e for e in get_events(run_id) if e.type is EventType.CHILD_WORKFLOW_COMPLETED]
        last = completed[0].payload["child_run_id"]
        assert get_run(last).status is RunStatus.COMPLETED
        assert {c.status for c in children} == {RunStatus.CONTINUED, RunStatus.COMPLETED}

    def test_a_crash_between_recording_and_creating_a_child(self, pw: str) -> None:
        """The log holds ``child_workflow_started`` but the child was never created."""
        runtime = get_runtime()
        parent_id = f"conformance-crash-{time.monotonic_ns()}"
        child_id = child_run_id(parent_id, "1")
        token = f"conformance-crash-token-{time.monotonic_ns()}"
        serializer = runtime.serializer
        limit = runtime.settings.max_payload_bytes
        data = dumps_call_limited(serializer, (token,), {}, limit=limit, what="input")
        now = utcnow()
        parent = Run(
            run_id=parent_id,
            workflow_name="conformance_child_waiting_parent",
            status=RunStatus.RUNNING,
            input=data,
            serializer=serializer.name,
            created_at=now,
            updated_at=now,
            wake_at=now,
        )
        started = {
            "name": "conformance_child_waiter",
            "child_run_id": child_id,
            "policy": "request_cancel",
            "version": None,
            "input": data,
        }
        events = [
            NewEvent(EventType.WORKFLOW_STARTED, None, {"workflow": parent.workflow_name}),
            NewEvent(EventType.CHILD_WORKFLOW_STARTED, "1", started),
        ]
        runtime.call(runtime.journal.create, parent, events)
        _wait_for(lambda: bool(_children(parent_id)), "the child, created by the replay")
        _wait_for(lambda: EventType.HOOK_CREATED in _kinds(get_events(child_id)), "its hook")
        resume_hook(token, "made once")
        assert get_result(parent_id, timeout=30) == "made once"
        assert [c.run_id for c in _children(parent_id)] == [child_id]
        kinds = _kinds(get_events(parent_id))
        assert kinds.count(EventType.CHILD_WORKFLOW_STARTED) == 1
