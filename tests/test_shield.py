"""``shield()``: a cancellation waits for shielded cleanup, on the virtual clock.

The backend-level checks (real cancels while a shielded step runs) are in
``pyworkflow.testing.suite_shield``; a worker killed inside a shielded block is in
``tests/test_shield_processes.py``.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from pyworkflow import (
    EventType,
    WorkflowCancelledError,
    create_hook,
    shield,
    sleep,
    step,
    workflow,
)
from pyworkflow.models import Event, RunStatus
from pyworkflow.testing import WorkflowEnvironment

pytestmark = pytest.mark.anyio

START = datetime(2032, 6, 1, 8, 0, tzinfo=UTC)


@pytest.fixture
def workflow_env_options() -> dict[str, Any]:
    return {"start": START}


def steps_done(events: list[Event]) -> list[str]:
    return [str(e.payload["name"]) for e in events if e.type == EventType.STEP_COMPLETED]


@step()
async def sh_do(what: str) -> str:
    return what


@workflow
async def sh_cleanup(shielded: bool) -> str:
    """Cleanup with a sleep in it (a durable wait the cancel would otherwise cut)."""
    await sh_do("book")
    try:
        await sleep("1d")
    except asyncio.CancelledError:
        if shielded:
            async with shield():
                await sh_do("refund")
                await sleep("1h")  # e.g. wait for the provider before the second call
                await sh_do("release")
        else:
            await sh_do("refund")
            await sleep("1h")
            await sh_do("release")
        raise
    return "kept"


@workflow
async def sh_nested() -> list[str]:
    done = []
    async with shield():
        done.append(await sh_do("outer-1"))
        async with shield():
            await sleep("1h")
            done.append(await sh_do("inner"))
        await sleep("1h")  # still shielded: the inner exit does not deliver
        done.append(await sh_do("outer-2"))
    done.append(await sh_do("after"))  # not reached when cancelled meanwhile
    return done


@workflow
async def sh_catches_at_exit() -> str:
    try:
        async with shield():
            await sleep("1h")
            await sh_do("inside")
    except asyncio.CancelledError:
        return await sh_do("caught at the block's exit")
    return "not cancelled"


@workflow
async def sh_hook_in_shield() -> Any:
    async with shield():
        payload = await create_hook(token="sh-hook", timeout="1d")
    return payload


@workflow
async def sh_concurrent() -> list[str]:
    async def shielded() -> str:
        async with shield():
            await sleep("2h")
            return await sh_do("shielded branch")

    async def plain() -> str:
        await sleep("1h")
        return await sh_do("plain branch")

    return list(await asyncio.gather(shielded(), plain()))


async def cancelled(env: WorkflowEnvironment, run_id: str) -> list[Event]:
    with pytest.raises(WorkflowCancelledError):
        await env.result(run_id)
    assert (await env.get_run(run_id)).status == RunStatus.CANCELLED
    events = await env.events(run_id)
    assert events[-1].type == EventType.WORKFLOW_CANCELLED
    return events


async def test_shielded_cleanup_with_a_sleep_survives_a_second_cancel(
    workflow_env: WorkflowEnvironment,
) -> None:
    env = workflow_env
    run_id = await env.start(sh_cleanup, True)
    await env.cancel(run_id)  # the cleanup begins: refund, then a 1 h sleep
    await env.advance("10m")
    await env.cancel(run_id, reason="again")
    events = await cancelled(env, run_id)
    assert steps_done(events) == ["sh_do"] * 3  # book, refund, release
    assert [e.type for e in events].count(EventType.CANCEL_REQUESTED) == 2
    assert env.now() - START >= timedelta(hours=1)  # the cleanup's sleep was slept


async def test_without_shield_the_second_cancel_cuts_the_cleanup(
    workflow_env: WorkflowEnvironment,
) -> None:
    env = workflow_env
    run_id = await env.start(sh_cleanup, False)
    await env.cancel(run_id)
    await env.advance("10m")
    await env.cancel(run_id)
    events = await cancelled(env, run_id)
    assert steps_done(events) == ["sh_do"] * 2  # book, refund: release never ran


async def test_nested_shields_deliver_at_the_outermost_exit(
    workflow_env: WorkflowEnvironment,
) -> None:
    env = workflow_env
    run_id = await env.start(sh_nested)
    await env.cancel(run_id)  # during the inner sleep
    events = await cancelled(env, run_id)
    results = [e for e in events if e.type == EventType.STEP_COMPLETED]
    assert len(results) == 3  # outer-1, inner, outer-2; never "after"


async def test_the_cancellation_is_raised_by_the_block_as_it_exits(
    workflow_env: WorkflowEnvironment,
) -> None:
    env = workflow_env
    run_id = await env.start(sh_catches_at_exit)
    await env.cancel(run_id)
    assert await env.result(run_id) == "caught at the block's exit"
    assert len(steps_done(await env.events(run_id))) == 2


async def test_a_hook_awaited_in_a_shield_is_still_received(
    workflow_env: WorkflowEnvironment,
) -> None:
    env = workflow_env
    run_id = await env.start(sh_hook_in_shield)
    await env.cancel(run_id)
    await env.advance("1h")
    await env.resume_hook("sh-hook", "late but wanted")
    events = await cancelled(env, run_id)
    assert any(e.type == EventType.HOOK_RECEIVED for e in events)


async def test_a_shield_in_one_branch_defers_the_cancel_for_the_whole_workflow(
    workflow_env: WorkflowEnvironment,
) -> None:
    env = workflow_env
    run_id = await env.start(sh_concurrent)
    await env.cancel(run_id)
    events = await cancelled(env, run_id)
    assert len(steps_done(events)) == 2  # both branches finished before the delivery


async def test_a_run_never_cancelled_is_unaffected(workflow_env: WorkflowEnvironment) -> None:
    assert await workflow_env.run(sh_nested) == ["outer-1", "inner", "outer-2", "after"]


async def test_a_workflow_timeout_is_not_deferred(workflow_env: WorkflowEnvironment) -> None:
    from pyworkflow import WorkflowTimeoutError

    env = workflow_env
    run_id = await env.start_workflow(sh_nested, (), timeout="30m")
    with pytest.raises(WorkflowTimeoutError):
        await env.result(run_id)


async def test_shield_outside_a_workflow_does_nothing() -> None:
    async with shield():
        value = 1
    assert value == 1


@workflow
async def sh_child(n: int) -> int:
    await sleep("2h")
    return await sh_do(f"child {n}") and n


@workflow
async def sh_parent() -> Any:
    async with shield():
        first_child = await sh_child(1)  # awaited inside the shield: it runs to its end
    second = await sh_child(2)  # never reached: the cancel is delivered as the block exits
    return [first_child, second]


async def test_a_child_awaited_in_a_shield_completes_then_the_parent_is_cancelled(
    workflow_env: WorkflowEnvironment,
) -> None:
    env = workflow_env
    run_id = await env.start(sh_parent)
    await env.cancel(run_id)
    events = await cancelled(env, run_id)
    kinds = [e.type for e in events]
    assert kinds.count(EventType.CHILD_WORKFLOW_STARTED) == 1
    assert EventType.CHILD_WORKFLOW_COMPLETED in kinds
    (started,) = [e for e in events if e.type == EventType.CHILD_WORKFLOW_STARTED]
    child = await env.get_run(started.payload["child_run_id"])
    assert child.status == RunStatus.COMPLETED and child.result == 1
