"""Hook timeouts, ``create_hook(timeout=...)``, at realistic durations on the virtual clock.

The backend-level checks (a real timer on each storage and executor) are in
``pyworkflow.testing.suite_hook_timeouts``.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

import pyworkflow
from pyworkflow import (
    EventType,
    HookNotFoundError,
    HookTimeoutError,
    create_hook,
    first,
    sleep,
    step,
    workflow,
)
from pyworkflow.models import Event
from pyworkflow.testing import WorkflowEnvironment

pytestmark = pytest.mark.anyio

START = datetime(2032, 6, 1, 8, 0, tzinfo=UTC)
DAY = timedelta(days=1)


@pytest.fixture
def workflow_env_options() -> dict[str, Any]:
    return {"start": START}


def of_type(events: list[Event], kind: EventType) -> list[Event]:
    return [e for e in events if e.type == kind]


@step()
async def ht_notify(what: str) -> str:
    return f"notified {what}"


@workflow
async def ht_approval(order: str) -> str:
    hook = create_hook(token=f"ht:{order}", timeout="2d")
    try:
        answer = await hook
    except HookTimeoutError as exc:
        return await ht_notify(f"no answer for {exc.token} by {exc.deadline:%Y-%m-%d %H:%M}")
    return await ht_notify(f"answer {answer}")


@workflow
async def ht_votes(poll: str) -> dict[str, Any]:
    votes = []
    hook = create_hook(token=f"votes:{poll}", timeout=timedelta(hours=6))
    async for vote in hook:
        votes.append(vote)
    late: Any = None
    try:
        late = await hook
    except HookTimeoutError:
        late = "timed out"
    return {"votes": votes, "then": late}


@workflow
async def ht_busy(order: str) -> Any:
    """The hook times out while the workflow sleeps; payloads before the deadline stay."""
    hook = create_hook(token=f"busy:{order}", timeout="1h")
    await sleep("3h")
    got = []
    while True:
        try:
            got.append(await hook)
        except HookTimeoutError:
            return got


@workflow
async def ht_retry_same_token(order: str) -> str:
    for attempt in range(3):
        try:
            async with create_hook(token=f"ask:{order}", timeout="1d") as hook:
                return f"answer {await hook} at attempt {attempt + 1}"
        except HookTimeoutError:
            await ht_notify(f"reminder {attempt + 1}")
    return "gave up"


@workflow
async def ht_disposed_early(order: str) -> str:
    async with create_hook(token=f"early:{order}", timeout="1d") as hook:
        answer = await hook
    await sleep("3d")  # the hook's timer was cancelled with it: nothing fires at 1 d
    return f"answer {answer}"


@workflow
async def ht_raced(order: str) -> Any:
    """``first(hook, sleep(...))`` still works, next to a hook timeout."""
    hook = create_hook(token=f"race:{order}", timeout="2d")
    index, value = await first(hook, sleep("1d"))
    return [index, value]


@workflow
async def ht_uncaught(order: str) -> Any:
    return await create_hook(token=f"uncaught:{order}", timeout="30m")


class HtApproval(pyworkflow.Workflow):
    name = "ht_class_approval"

    async def run(self, order: str) -> str:
        try:
            return str(await create_hook(token=f"cls:{order}", timeout="1h"))
        except HookTimeoutError:
            return "timed out"


async def test_no_answer_in_time_raises_in_the_workflow_which_goes_on(
    workflow_env: WorkflowEnvironment,
) -> None:
    env = workflow_env
    result = await env.run(ht_approval, "o-1")
    assert result == "notified no answer for ht:o-1 by 2032-06-03 08:00"
    assert env.now() - START == 2 * DAY  # the clock skipped to the hook's deadline


async def test_the_timeout_is_recorded_at_creation_and_fires_once(
    workflow_env: WorkflowEnvironment,
) -> None:
    env = workflow_env
    run_id = await env.start(ht_approval, "o-2")
    events = await env.events(run_id)
    (created,) = of_type(events, EventType.HOOK_CREATED)
    (timer,) = of_type(events, EventType.WAIT_CREATED)
    assert timer.payload["name"] == "hook_timeout" and timer.payload["token"] == "ht:o-2"
    assert datetime.fromisoformat(timer.payload["due_at"]) == START + 2 * DAY
    assert timer.payload["timeout"] == 2 * DAY.total_seconds()
    assert timer.seq == created.seq + 1
    assert (await env.get_run(run_id)).wake_at == START + 2 * DAY  # the run's wake time
    await env.advance("47h")
    assert of_type(await env.events(run_id), EventType.WAIT_COMPLETED) == []
    await env.advance("1h")
    events = await env.events(run_id)
    (fired,) = of_type(events, EventType.WAIT_COMPLETED)
    assert fired.timestamp == START + 2 * DAY
    (disposed,) = of_type(events, EventType.HOOK_DISPOSED)
    assert disposed.seq == fired.seq + 1 and disposed.payload["reason"] == "timeout"
    assert await env.result(run_id) == "notified no answer for ht:o-2 by 2032-06-03 08:00"


async def test_an_answer_before_the_deadline_is_received(
    workflow_env: WorkflowEnvironment,
) -> None:
    env = workflow_env
    run_id = await env.start(ht_approval, "o-3")
    await env.advance("47h")
    await env.resume_hook("ht:o-3", "yes")
    assert await env.result(run_id) == "notified answer yes"
    events = await env.events(run_id)
    assert of_type(events, EventType.WAIT_COMPLETED) == []
    assert env.now() - START == timedelta(hours=47)


async def test_a_payload_after_the_deadline_is_refused_as_for_a_disposed_hook(
    workflow_env: WorkflowEnvironment,
) -> None:
    env = workflow_env
    run_id = await env.start(ht_busy, "o-4")
    await env.advance("30m")
    await env.resume_hook("busy:o-4", 1)
    await env.resume_hook("busy:o-4", 2)
    await env.advance("30m")  # the deadline: disposed, though the workflow still sleeps
    with pytest.raises(HookNotFoundError):
        await env.resume_hook("busy:o-4", 3)
    # the payloads recorded before the deadline are handed out, then the timeout
    assert await env.result(run_id) == [1, 2]


async def test_async_for_ends_at_the_deadline_and_await_then_raises(
    workflow_env: WorkflowEnvironment,
) -> None:
    env = workflow_env
    run_id = await env.start(ht_votes, "p")
    for vote in ("a", "b", "c"):
        await env.advance("1h")
        await env.resume_hook("votes:p", vote)
    assert await env.result(run_id) == {"votes": ["a", "b", "c"], "then": "timed out"}
    assert env.now() - START == timedelta(hours=6)


async def test_a_timed_out_token_can_be_created_again(workflow_env: WorkflowEnvironment) -> None:
    env = workflow_env
    run_id = await env.start(ht_retry_same_token, "o-5")
    await env.advance("1d")  # first hook times out: a reminder, a new hook with the same token
    await env.advance("12h")
    await env.resume_hook("ask:o-5", "ok")
    assert await env.result(run_id) == "answer ok at attempt 2"
    events = await env.events(run_id)
    reasons = [e.payload.get("reason") for e in of_type(events, EventType.HOOK_DISPOSED)]
    assert reasons == ["timeout", None]


async def test_disposing_the_hook_cancels_its_timer(workflow_env: WorkflowEnvironment) -> None:
    env = workflow_env
    run_id = await env.start(ht_disposed_early, "o-6")
    await env.resume_hook("early:o-6", "fast")
    assert await env.result(run_id) == "answer fast"
    events = await env.events(run_id)
    completed = of_type(events, EventType.WAIT_COMPLETED)
    assert [e.payload["name"] for e in completed] == ["sleep"]  # not the hook's timer
    assert [e.payload.get("reason") for e in of_type(events, EventType.HOOK_DISPOSED)] == [None]


async def test_first_with_a_sleep_still_works_next_to_a_timeout(
    workflow_env: WorkflowEnvironment,
) -> None:
    env = workflow_env
    assert await env.run(ht_raced, "o-7") == [1, None]
    run_id = await env.start(ht_raced, "o-8")
    await env.resume_hook("race:o-8", "x")
    assert await env.result(run_id) == [0, "x"]


async def test_an_uncaught_timeout_fails_the_run_with_hook_timeout_error(
    workflow_env: WorkflowEnvironment,
) -> None:
    env = workflow_env
    with pytest.raises(HookTimeoutError) as info:
        await env.run(ht_uncaught, "o-9")
    assert info.value.token == "uncaught:o-9"
    assert info.value.timeout == 1800.0
    assert info.value.deadline == START + timedelta(minutes=30)
    assert "30m" in str(info.value)


async def test_class_based_workflows_get_hook_timeouts(
    workflow_env: WorkflowEnvironment,
) -> None:
    assert await workflow_env.run(HtApproval, "o-10") == "timed out"


@pytest.mark.parametrize("bad", ["-1h", "soon", float("nan")])
async def test_a_bad_timeout_fails_at_create_hook(
    workflow_env: WorkflowEnvironment, bad: Any
) -> None:
    @workflow(name=f"ht_bad_{abs(hash(str(bad)))}")
    async def ht_bad() -> Any:
        return await create_hook(timeout=bad)

    with pytest.raises(ValueError, match="hook timeout"):
        await workflow_env.run(ht_bad)


@step(max_retries=3, retry_base="1h", jitter=0)
async def ht_flaky_notify(what: str) -> str:
    from pyworkflow import RetryableError, get_step_context

    if get_step_context().attempt < 3:
        raise RetryableError("mail server down")
    return f"notified {what}"


@workflow
async def ht_then_flaky(order: str) -> str:
    try:
        return str(await create_hook(token=f"flaky:{order}", timeout="2d"))
    except HookTimeoutError:
        return await ht_flaky_notify("timeout")


async def test_later_activations_replay_the_timeout_from_the_log(
    workflow_env: WorkflowEnvironment,
) -> None:
    """Two retries of the step after the timeout: each later activation replays the timeout
    (recorded due time, then its firing, in log order) and takes the same branch."""
    from pyworkflow import engine

    env = workflow_env
    run_id = await env.start(ht_then_flaky, "o-11")
    await env.advance("2d")
    events = await env.events(run_id)
    assert of_type(events, EventType.STEP_RETRYING)  # the step after the timeout is retrying
    assert await env.result(run_id) == "notified timeout"
    events = await env.events(run_id)
    assert len(of_type(events, EventType.WAIT_COMPLETED)) == 1  # fired once, replayed after
    assert len(of_type(events, EventType.STEP_RETRYING)) == 2
    report = await env.runtime.acall(engine.check_replay, env.runtime, run_id)
    assert report.deterministic, report.message


async def test_the_ui_timeline_shows_the_timeout(workflow_env: WorkflowEnvironment) -> None:
    from pyworkflow.ui.timeline import build_timeline

    env = workflow_env
    run_id = await env.start(ht_approval, "o-12")
    await env.result(run_id)
    bars = build_timeline(await env.events(run_id), env.now()).bars
    hook = next(b for b in bars if b.kind == "hook")
    timer = next(b for b in bars if b.name == "hook_timeout")
    assert (hook.outcome, hook.detail) == ("cancelled", "timed out without a payload")
    assert timer.end == START + 2 * DAY and timer.outcome == "completed"
