"""Hooks through the Python API: suspension, ordering, races with timers, schemas, disposal."""

from __future__ import annotations

import time
from datetime import datetime, timedelta
from typing import Any

import attrs
import pytest

import pyworkflow
from pyworkflow import (
    EventType,
    HookNotFoundError,
    PayloadValidationError,
    RunStatus,
    create_hook,
    first,
    get_events,
    get_result,
    get_run,
    resume_hook,
    sleep,
    start,
    step,
    workflow,
)
from pyworkflow.testing.environment import WorkflowEnvironment

seen: list[Any] = []


@pytest.fixture(autouse=True)
def _clear() -> None:
    seen.clear()


def wait_status(run_id: str, status: RunStatus, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while get_run(run_id).status != status:
        assert time.monotonic() < deadline, f"run {run_id} is {get_run(run_id).status}"
        time.sleep(0.02)


def hook_received(run_id: str) -> list[Any]:
    return [e for e in get_events(run_id) if e.type == EventType.HOOK_RECEIVED]


@step()
async def process(payload: Any) -> Any:
    seen.append(payload)
    return payload


@workflow
async def wait_once(token: str) -> Any:
    hook = create_hook(token=token)
    return await hook


def test_await_hook_suspends_until_resumed(pw: str) -> None:
    run_id = start(wait_once, "order:1")
    wait_status(run_id, RunStatus.SUSPENDED)
    assert get_run(run_id).wake_at is None  # nothing timed: only the hook can wake it
    assert resume_hook("order:1", {"paid": True}) == run_id
    assert get_result(run_id, timeout=10) == {"paid": True}
    kinds = [e.type for e in get_events(run_id)]
    assert kinds.index(EventType.HOOK_CREATED) < kinds.index(EventType.HOOK_RECEIVED)
    assert kinds.count(EventType.HOOK_DISPOSED) == 1  # disposed when the run ended
    with pytest.raises(HookNotFoundError):
        resume_hook("order:1", {"late": True})


@workflow
async def consume_three(token: str) -> list[Any]:
    out = []
    async with create_hook(token=token) as hook:
        async for payload in hook:
            out.append(await process(payload))
            if len(out) == 3:
                break
    return out


def test_async_for_gets_three_payloads_in_order_across_suspensions(pw: str) -> None:
    run_id = start(consume_three, "feed")
    wait_status(run_id, RunStatus.SUSPENDED)
    resume_hook("feed", 1)
    deadline = time.monotonic() + 10
    while len(seen) < 1 or get_run(run_id).status != RunStatus.SUSPENDED:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    resume_hook("feed", 2)  # the run is not in memory when these arrive
    resume_hook("feed", 3)
    assert get_result(run_id, timeout=10) == [1, 2, 3]
    assert seen == [1, 2, 3]
    assert [e.correlation_id for e in hook_received(run_id)] == ["1", "1", "1"]
    with pytest.raises(HookNotFoundError):  # the async with block disposed it
        resume_hook("feed", 4)


@workflow
async def approval(order_id: str, timeout: str) -> tuple[str, Any]:
    hook = create_hook(token=f"approval:{order_id}")
    index, value = await first(hook, sleep(timeout))
    return ("approved", value) if index == 0 else ("timed out", None)


def test_race_timer_wins_without_payload(pw: str) -> None:
    """On each storage the timer really wakes the run; when it does is the harness test's."""
    run_id = start(approval, "o-1", "50ms")
    assert get_result(run_id, timeout=10) == ("timed out", None)
    assert hook_received(run_id) == []
    kinds = [e.type for e in get_events(run_id)]
    assert kinds.count(EventType.WAIT_COMPLETED) == 1
    assert kinds.count(EventType.HOOK_DISPOSED) == 1
    with pytest.raises(HookNotFoundError):  # the timer won: the hook went with the run
        resume_hook("approval:o-1", {"late": True})


@pytest.mark.anyio
async def test_race_timer_wins_at_its_due_time_in_virtual_time(
    workflow_env: WorkflowEnvironment,
) -> None:
    began = workflow_env.now()
    run_id = await workflow_env.start(approval, "o-3", "1d")
    await workflow_env.advance(timedelta(days=1) - timedelta(milliseconds=1))
    assert (await workflow_env.get_run(run_id)).status == RunStatus.SUSPENDED  # not yet
    assert await workflow_env.result(run_id) == ("timed out", None)
    assert workflow_env.now() == began + timedelta(days=1)
    events = await workflow_env.events(run_id)
    (created,) = [e for e in events if e.type == EventType.WAIT_CREATED]
    (completed,) = [e for e in events if e.type == EventType.WAIT_COMPLETED]
    assert datetime.fromisoformat(created.payload["due_at"]) == began + timedelta(days=1)
    assert completed.timestamp == began + timedelta(days=1)
    assert [e for e in events if e.type == EventType.HOOK_RECEIVED] == []


def test_race_hook_wins_with_payload(pw: str) -> None:
    run_id = start(approval, "o-2", "30s")
    wait_status(run_id, RunStatus.SUSPENDED)
    resume_hook("approval:o-2", {"by": "ana"})
    assert get_result(run_id, timeout=10) == ("approved", {"by": "ana"})
    assert [e.type for e in get_events(run_id)].count(EventType.WAIT_COMPLETED) == 0


@attrs.frozen
class Approval:
    approved: bool
    by: str


@workflow
async def typed_approval() -> str:
    decision = await create_hook(token="typed", schema=Approval)
    assert isinstance(decision, Approval)
    return f"{decision.by}:{decision.approved}"


def test_schema_validation_rejects_and_structures(pw: str) -> None:
    run_id = start(typed_approval)
    wait_status(run_id, RunStatus.SUSPENDED)
    before = get_events(run_id)
    with pytest.raises(PayloadValidationError) as info:
        resume_hook("typed", {"approved": "not-a-bool-or-int", "extra": 1})
    assert info.value.errors
    with pytest.raises(PayloadValidationError):
        resume_hook("typed", {"by": "x"})  # missing field
    assert get_events(run_id) == before
    resume_hook("typed", {"approved": True, "by": "ana"})
    assert get_result(run_id, timeout=10) == "ana:True"


@workflow
async def hold_token(token: str) -> Any:
    return await create_hook(token=token)


def test_duplicate_live_token_fails_the_second_run(pw: str) -> None:
    first_run = start(hold_token, "shared")
    wait_status(first_run, RunStatus.SUSPENDED)
    second = start(hold_token, "shared")
    with pytest.raises(pyworkflow.PyWorkflowError, match="shared"):
        get_result(second, timeout=10)
    resume_hook("shared", "for the first")  # still belongs to the first run
    assert get_result(first_run, timeout=10) == "for the first"


def test_unknown_token_is_not_found(pw: str) -> None:
    with pytest.raises(HookNotFoundError, match="nope"):
        resume_hook("nope", {})


@workflow
async def default_token() -> tuple[str, str | None, Any]:
    hook = create_hook()
    await process(hook.token)  # a step "sends" the token / URL out
    return hook.token, hook.url, await hook


def test_default_tokens_are_unguessable_and_stable_across_replays(storage_url: str) -> None:
    pyworkflow.configure(storage=storage_url, poll_interval=0.05, public_url="https://x.test/")
    run_id = start(default_token)
    wait_status(run_id, RunStatus.SUSPENDED)
    (token,) = seen
    assert len(token) >= 24
    resume_hook(token, "hello")
    assert get_result(run_id, timeout=10) == (token, f"https://x.test/hooks/{token}", "hello")
