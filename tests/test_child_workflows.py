"""Child workflows (issue 15) beyond the conformance cases: the test harness, repair, policies.

The conformance cases (``pyworkflow.testing.suite_children``) run on every
backend; these use the harness's virtual clock, or memory storage.
"""

from __future__ import annotations

import json
import pickle
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

import pyworkflow
from pyworkflow import (
    ChildWorkflowError,
    EventType,
    RunStatus,
    WorkflowTimeoutError,
    create_hook,
    get_events,
    get_result,
    runtime,
    sleep,
    start,
    start_child,
    step,
    workflow,
)
from pyworkflow.engine import children as engine_children
from pyworkflow.engine.children import child_run_id
from pyworkflow.serialization import JsonSerializer
from pyworkflow.testing import WorkflowEnvironment
from pyworkflow.testing.environment import WorkflowBlockedError

START = datetime(2030, 1, 1, tzinfo=UTC)


@pytest.fixture
def memory() -> Iterator[None]:
    runtime.reset()
    runtime.configure(storage="memory://", poll_interval=0.05)
    yield
    runtime.reset()


@step()
async def cw_add(a: int, b: int) -> int:
    return a + b


@workflow(name="cw_sleepy_child")
async def cw_sleepy_child(n: int) -> int:
    await sleep("2d")
    return await cw_add(n, 1)


@workflow(name="cw_middle")
async def cw_middle(n: int) -> int:
    return await cw_sleepy_child(n) * 10


@workflow(name="cw_grandparent")
async def cw_grandparent(n: int) -> list[int]:
    return [await cw_middle(n), await cw_sleepy_child(n)]


@workflow(name="cw_hook_child")
async def cw_hook_child(token: str) -> Any:
    async with create_hook(token=token) as hook:
        return await hook


@workflow(name="cw_hook_parent")
async def cw_hook_parent(token: str) -> Any:
    return await cw_hook_child(token)


@workflow(name="cw_timed_parent", timeout="1h")
async def cw_timed_parent(n: int) -> int:
    return await cw_sleepy_child(n)


@workflow(name="cw_by_name_parent")
async def cw_by_name_parent(n: int) -> Any:
    return await start_child("cw_registered_later", n)


@workflow(name="cw_bad_policy")
async def cw_bad_policy() -> None:
    start_child(cw_sleepy_child, 1, parent_close_policy="explode")  # type: ignore[arg-type]  # on purpose


@workflow(name="cw_bad_args")
async def cw_bad_args() -> None:
    await cw_sleepy_child(1, 2, 3)  # type: ignore[call-arg]  # on purpose


@step()
async def cw_step_calling_a_workflow(n: int) -> int:
    return await cw_plain(n)  # in a step body the workflow function runs plainly


@workflow(name="cw_plain")
async def cw_plain(n: int) -> int:
    return n * 3


@workflow(name="cw_step_parent")
async def cw_step_parent(n: int) -> int:
    return await cw_step_calling_a_workflow(n)


def test_children_and_grandchildren_on_the_virtual_clock() -> None:
    with WorkflowEnvironment(start=START) as env:
        run_id = env.sync.start(cw_grandparent, 4)
        assert env.sync.result(run_id) == [50, 5]
        # the child's two days, then the second child's two: the periodic look at
        # open children did not move the clock
        assert env.sync.now() - START == timedelta(days=4)
        middle = child_run_id(run_id, "1")
        assert env.sync.get_run(middle).parent_run_id == run_id
        grandchild = child_run_id(middle, "1")
        assert env.sync.get_run(grandchild).parent_run_id == middle
        kinds = [e.type for e in env.sync.events(run_id)]
        assert kinds.count(EventType.CHILD_WORKFLOW_COMPLETED) == 2


def test_a_parent_blocked_on_a_child_names_the_child_and_its_hook() -> None:
    with WorkflowEnvironment(start=START) as env:
        run_id = env.sync.start(cw_hook_parent, "cw-token")
        with pytest.raises(WorkflowBlockedError) as info:
            env.sync.result(run_id)
        child = child_run_id(run_id, "1")
        message = str(info.value)
        assert f"child run {child} (cw_hook_child, suspended)" in message
        assert "env.resume_hook('cw-token', payload)" in message
        assert info.value.hooks == ("cw-token",)
        env.sync.resume_hook("cw-token", {"ok": True})
        assert env.sync.result(run_id) == {"ok": True}


def test_a_lost_notification_is_repaired_by_the_parents_look(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async def lose(*args: Any) -> bool:
        return False

    monkeypatch.setattr(engine_children, "notify_parent", lose)
    with WorkflowEnvironment(start=START) as env:
        run_id = env.sync.start(cw_hook_parent, "cw-lost")
        env.sync.resume_hook("cw-lost", "payload")
        child = child_run_id(run_id, "1")
        assert env.sync.get_run(child).status is RunStatus.COMPLETED
        assert env.sync.get_run(run_id).status is RunStatus.SUSPENDED  # never told
        suspended = [e for e in env.sync.events(run_id) if e.type is EventType.WORKFLOW_SUSPENDED]
        check_at = datetime.fromisoformat(suspended[-1].payload["check_children_at"])
        assert suspended[-1].payload["timer_at"] is None
        env.sync.advance(check_at - env.sync.now())
        assert env.sync.get_run(run_id).status is RunStatus.COMPLETED
        assert env.sync.result(run_id) == "payload"
        events = env.sync.events(run_id)
        completed = [e for e in events if e.type is EventType.CHILD_WORKFLOW_COMPLETED]
        assert [e.payload["child_run_id"] for e in completed] == [child]
        assert completed[0].timestamp >= check_at


def test_a_parents_timeout_applies_the_childs_policy() -> None:
    with WorkflowEnvironment(start=START) as env:
        run_id = env.sync.start(cw_timed_parent, 1)
        with pytest.raises(WorkflowTimeoutError):
            env.sync.result(run_id)
        child = child_run_id(run_id, "1")
        assert env.sync.get_run(child).status is RunStatus.CANCELLED
        events = env.sync.events(run_id)
        ending = events[-1]
        assert ending.type is EventType.WORKFLOW_FAILED
        # the end lists the child it closed, or the child's outcome reached the log first
        outcomes = {EventType.CHILD_WORKFLOW_COMPLETED, EventType.CHILD_WORKFLOW_FAILED}
        told = [e.payload["child_run_id"] for e in events if e.type in outcomes]
        assert told == [child] or ending.payload.get("children") == [
            {"run_id": child, "name": "cw_sleepy_child", "policy": "request_cancel"}
        ]
        assert EventType.CANCEL_REQUESTED in [e.type for e in env.sync.events(child)]
        assert env.sync.now() - START == timedelta(hours=1)


def test_a_child_this_worker_does_not_import_is_started_by_name() -> None:
    with WorkflowEnvironment(start=START) as env:
        run_id = env.sync.start(cw_by_name_parent, 20)
        child = child_run_id(run_id, "1")
        info = env.sync.get_run(child)
        assert info.workflow == "cw_registered_later" and info.parent_run_id == run_id
        assert EventType.WORKFLOW_UNKNOWN in [e.type for e in env.sync.events(child)]

        @workflow(name="cw_registered_later")  # a deploy brings a worker that knows it
        async def later(n: int) -> int:
            return n + 2

        assert env.sync.result(run_id) == 22


def test_misuse_is_reported_where_it_happens(memory: None) -> None:
    with pytest.raises(RuntimeError, match="only be called inside a workflow"):
        start_child(cw_sleepy_child, 1)
    with pytest.raises(ValueError, match="unknown parent_close_policy 'explode'"):
        get_result(start(cw_bad_policy), timeout=10)
    with pytest.raises(TypeError, match="arguments do not fit workflow cw_sleepy_child"):
        get_result(start(cw_bad_args), timeout=10)
    # in a step body, a workflow function runs its body plainly, as it always did
    run_id = start(cw_step_parent, 5)
    assert get_result(run_id, timeout=10) == 15
    assert EventType.CHILD_WORKFLOW_STARTED not in [e.type for e in get_events(run_id)]


def test_a_child_workflow_error_keeps_its_cause_when_stored() -> None:
    error = ChildWorkflowError(
        "child run x failed", run_id="x", workflow="w", status="failed", child_error=KeyError("k")
    )
    assert isinstance(error.__cause__, KeyError)
    again = pickle.loads(pickle.dumps(error))
    assert (again.run_id, again.workflow, again.status) == ("x", "w", "failed")
    assert isinstance(again.__cause__, KeyError)
    serializer = JsonSerializer()
    loaded = serializer.loads(serializer.dumps(error))
    assert isinstance(loaded, ChildWorkflowError) and isinstance(loaded.__cause__, KeyError)


def test_runs_replay_accepts_a_parents_history(memory: None) -> None:
    run_id = start(cw_hook_parent, f"cw-replay-{time.monotonic_ns()}")
    child = child_run_id(run_id, "1")
    deadline = time.monotonic() + 10
    while EventType.HOOK_CREATED not in [e.type for e in get_events(child)]:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    token = next(e for e in get_events(child) if e.type is EventType.HOOK_CREATED)
    pyworkflow.resume_hook(token.payload["token"], 1)
    assert get_result(run_id, timeout=10) == 1
    from pyworkflow.client import check_replay

    assert check_replay(run_id).deterministic
    assert check_replay(child).deterministic


def test_runs_show_and_runs_cancel_report_children(tmp_path: Path) -> None:
    """On a worker process: ``runs show`` lists children and parent, ``runs cancel`` reports."""
    from pyworkflow.cli.app import app
    from pyworkflow.testing.suite_children import conformance_child_waiting_parent
    from pyworkflow.testing.workers import WorkerProcesses

    url = f"sqlite:///{tmp_path / 'runs.db'}"
    workers = WorkerProcesses(
        url,
        tmp_path,
        modules="pyworkflow.testing.suite_children",
        settings={"PYWORKFLOW_POLL_INTERVAL": "0.05"},
    )
    runtime.reset()
    try:
        runtime.configure(storage=url, embedded_worker=False, poll_interval=0.05)
        workers.start("w1")
        run_id = start(conformance_child_waiting_parent, "cw-cli-token")
        child = child_run_id(run_id, "1")
        deadline = time.monotonic() + 20
        while not pyworkflow.list_runs(parent=run_id).runs or EventType.HOOK_CREATED not in [
            e.type for e in get_events(child)
        ]:
            assert time.monotonic() < deadline, "the child's hook"
            time.sleep(0.05)
        shown = CliRunner().invoke(app, ["--storage", url, "runs", "show", run_id])
        assert shown.exit_code == 0, shown.output
        assert f"child run {child}  conformance_child_waiter  suspended" in shown.output
        assert "(parent-close policy: request_cancel)" in shown.output
        assert f"child_workflow_started conformance_child_waiter run {child}" in shown.output
        raw = CliRunner().invoke(app, ["--storage", url, "runs", "show", child, "--json"])
        as_json = json.loads(raw.output)
        assert as_json["parent_run_id"] == run_id and as_json["children"] == []
        child_shown = CliRunner().invoke(app, ["--storage", url, "runs", "show", child])
        assert f"child of run {run_id}" in child_shown.output
        cancelled = CliRunner().invoke(app, ["--storage", url, "runs", "cancel", run_id])
        assert cancelled.exit_code == 0, cancelled.output
        assert f"cancellation requested for {run_id}" in cancelled.output
        expected = f"child run {child} (conformance_child_waiter): cancellation requested, "
        assert expected in cancelled.output
        deadline = time.monotonic() + 20
        while pyworkflow.get_run(child).status is not RunStatus.CANCELLED:
            assert time.monotonic() < deadline, "the child's cancellation"
            time.sleep(0.05)
    finally:
        runtime.reset()
        workers.stop_all()


@workflow
async def cw_orphan_child() -> str:
    return str(await create_hook("cw-orphan-hook"))


@workflow
async def cw_orphan_parent() -> str:
    handle = start_child(cw_orphan_child)
    return handle.run_id  # ends with its child still open: the default policy cancels it


@pytest.mark.anyio
async def test_a_crash_while_closing_children_leaves_no_orphan(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The parent's first attempt to close its children crashes: they are closed all the same."""
    real = engine_children.close_child
    crashes: list[str] = []

    async def crash_once(runtime: Any, run_id: str, policy: str, reason: str) -> str:
        if not crashes:
            crashes.append(run_id)
            raise RuntimeError("the worker dies while closing the children")
        return await real(runtime, run_id, policy, reason)

    monkeypatch.setattr(engine_children, "close_child", crash_once)
    async with WorkflowEnvironment() as env:
        parent = await env.start(cw_orphan_parent)
        child = await env.result(parent)  # the retried activation ends the parent
        assert crashes == [child]
        with pytest.raises(pyworkflow.WorkflowCancelledError):
            await env.result(child)
        kinds = [e.type for e in await env.events(child)]
        assert EventType.CANCEL_REQUESTED in kinds
        parent_kinds = [e.type for e in await env.events(parent)]
        assert parent_kinds.count(EventType.WORKFLOW_COMPLETED) == 1


@workflow
async def cw_cancelled_by_handle() -> list[str]:
    handle = start_child(cw_orphan_child)
    await handle.cancel()
    try:
        await handle
    except ChildWorkflowError as error:
        return [handle.run_id, error.status]
    return []


@pytest.mark.anyio
async def test_a_cancel_lost_between_its_record_and_its_request_is_requested_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    real = engine_children.close_child
    crashes: list[str] = []

    async def crash_once(runtime: Any, run_id: str, policy: str, reason: str) -> str:
        if not crashes:
            crashes.append(run_id)
            raise RuntimeError("the worker dies after recording the cancel")
        return await real(runtime, run_id, policy, reason)

    monkeypatch.setattr(engine_children, "close_child", crash_once)
    async with WorkflowEnvironment() as env:
        parent = await env.start(cw_cancelled_by_handle)
        child, status = await env.result(parent)
        assert crashes == [child] and status == "cancelled"
        kinds = [e.type for e in await env.events(child)]
        assert kinds.count(EventType.CANCEL_REQUESTED) == 1
        recorded = [e for e in await env.events(parent) if e.type is EventType.VALUE_RECORDED]
        assert [e.payload["kind"] for e in recorded] == ["cancel_child"]
