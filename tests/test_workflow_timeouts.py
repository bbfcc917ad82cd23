"""Workflow timeouts at realistic durations, on the test harness's virtual clock.

A 1 h timeout against a 2 h sleep, a step retrying with back-off, a hook, and
a step that is still running; a run that ends in time; which timeout wins;
bad values. Assertions come from the recorded events and virtual time. The
backend-level checks (a real timer ends a run on each storage and executor)
are in ``pyworkflow.testing.suite_timeouts``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import anyio
import pytest

import pyworkflow
from pyworkflow import (
    EventType,
    HookNotFoundError,
    RunStatus,
    WorkflowTimeoutError,
    create_hook,
    get_step_context,
    sleep,
    step,
    workflow,
)
from pyworkflow import client as pw_client
from pyworkflow.durations import Duration
from pyworkflow.models import Event
from pyworkflow.testing import WorkflowEnvironment

pytestmark = pytest.mark.anyio

START = datetime(2032, 6, 1, 8, 0, tzinfo=UTC)
HOUR = timedelta(hours=1)

#: What the workflows and steps of this module did, by key.
seen: dict[str, list[Any]] = {}


@pytest.fixture
def workflow_env_options() -> dict[str, Any]:
    return {"start": START}


@pytest.fixture(autouse=True)
def _reset() -> Iterator[None]:
    seen.clear()
    yield
    seen.clear()


def note(key: str, value: Any = None) -> None:
    seen.setdefault(key, []).append(value)


def of_type(events: list[Event], kind: EventType) -> list[Event]:
    return [e for e in events if e.type == kind]


async def start_with(
    env: WorkflowEnvironment, wf: Any, *args: Any, timeout: Duration | None = None
) -> str:
    """``start_workflow(wf, args, timeout=...)`` in the environment."""
    return await env.start_workflow(wf, args, timeout=timeout)


def timed_out_event(events: list[Event]) -> Event:
    (event,) = of_type(events, EventType.WORKFLOW_TIMED_OUT)
    return event


# ----- workflows -----


@workflow(timeout="1h")
async def tmo_sleeper(nap: str = "2h") -> str:
    note("sleeper-ran")
    await sleep(nap)
    return "woke"


@step(max_retries=10, retry_delay="fixed", retry_base="25m", jitter=0)
async def tmo_unreachable() -> None:
    raise ConnectionError(f"down at attempt {get_step_context().attempt}")


@workflow(timeout="1h")
async def tmo_retrier() -> None:
    await tmo_unreachable()


@workflow(timeout="1h")
async def tmo_approval() -> Any:
    async with create_hook(token="tmo-approval") as hook:
        return await hook


@step()
async def tmo_work(n: int) -> int:
    return n * 2


@workflow(timeout="1h")
async def tmo_quick(n: int) -> int:
    await sleep("30m")
    return await tmo_work(n)


@step()
async def tmo_report() -> str:
    return "report"


@workflow(timeout="1h")
async def tmo_reporting() -> str:
    return await tmo_report()


class TmoNightly(pyworkflow.Workflow):
    name = "tmo_nightly"
    timeout = "45m"

    async def run(self) -> str:
        await sleep("1h")
        return "done"


@workflow
async def tmo_plain() -> str:
    await sleep("2h")
    return "woke"


# ----- a timeout ends the run -----


async def test_a_1h_timeout_ends_a_2h_sleep_at_the_deadline(
    workflow_env: WorkflowEnvironment,
) -> None:
    run_id = await workflow_env.start(tmo_sleeper)
    with pytest.raises(WorkflowTimeoutError) as info:
        await workflow_env.result(run_id)
    assert workflow_env.now() == START + HOUR  # not a second later, nor at the sleep's 2 h
    error = info.value
    assert error.run_id == run_id
    assert error.timeout == 3600.0
    assert error.deadline == START + HOUR
    assert "timed out" in str(error) and "1h" in str(error)
    events = await workflow_env.events(run_id)
    kinds = [e.type for e in events]
    assert kinds[-2:] == [EventType.WORKFLOW_TIMED_OUT, EventType.WORKFLOW_FAILED]
    assert EventType.WAIT_COMPLETED not in kinds
    started = events[0]
    assert started.payload["timeout"] == 3600.0
    assert datetime.fromisoformat(started.payload["deadline"]) == START + HOUR
    (suspended,) = of_type(events, EventType.WORKFLOW_SUSPENDED)
    # the durable timer: the run wakes at its deadline, before the sleep's due time
    assert datetime.fromisoformat(suspended.payload["wake_at"]) == START + HOUR
    timed_out = timed_out_event(events)
    assert timed_out.timestamp == START + HOUR
    assert timed_out.payload["cancelled"] == [] and timed_out.payload["dispatched"] == []
    info_run = await workflow_env.get_run(run_id)
    assert info_run.status == RunStatus.FAILED
    assert info_run.completed_at == START + HOUR
    assert (info_run.error_message or "").startswith("WorkflowTimeoutError: ")
    assert isinstance(info_run.error, WorkflowTimeoutError)
    # the activation at the deadline ended the run without running workflow code again
    assert seen["sleeper-ran"] == [None]


async def test_a_run_first_activated_after_its_deadline_runs_no_workflow_code(
    workflow_env: WorkflowEnvironment,
) -> None:
    env = workflow_env

    async def start_while_workers_are_down() -> str:
        run_id = await pw_client._create(env.runtime, tmo_sleeper, (), {}, None, None)
        env.clock.set(env.now() + 3 * HOUR)  # before the environment's worker claims it
        return run_id

    run_id = await env.runtime.acall(start_while_workers_are_down)
    with pytest.raises(WorkflowTimeoutError):
        await env.result(run_id)
    assert "sleeper-ran" not in seen
    events = await env.events(run_id)
    assert [e.type for e in events] == [
        EventType.WORKFLOW_STARTED,
        EventType.WORKFLOW_TIMED_OUT,
        EventType.WORKFLOW_FAILED,
    ]
    assert events[1].timestamp == START + 3 * HOUR
    assert datetime.fromisoformat(events[1].payload["deadline"]) == START + HOUR


async def test_a_step_retrying_with_back_off_is_stopped_by_the_timeout(
    workflow_env: WorkflowEnvironment,
) -> None:
    run_id = await workflow_env.start(tmo_retrier)
    with pytest.raises(WorkflowTimeoutError):
        await workflow_env.result(run_id)
    events = await workflow_env.events(run_id)
    started = of_type(events, EventType.STEP_STARTED)
    # attempts at 0, 25 and 50 min; the fourth, due at 75 min, never starts
    assert [e.timestamp - START for e in started] == [timedelta(minutes=m) for m in (0, 25, 50)]
    retrying = of_type(events, EventType.STEP_RETRYING)
    assert retrying[-1].payload["due_at"] == (START + timedelta(minutes=75)).isoformat()
    assert timed_out_event(events).timestamp == START + HOUR
    assert EventType.STEP_FAILED not in [e.type for e in events]
    assert workflow_env.now() == START + HOUR


async def test_a_run_waiting_on_a_hook_times_out_and_its_hook_is_disposed(
    workflow_env: WorkflowEnvironment,
) -> None:
    run_id = await workflow_env.start(tmo_approval)
    # no timer but the deadline: awaiting the result skips to it (no WorkflowBlockedError)
    with pytest.raises(WorkflowTimeoutError):
        await workflow_env.result(run_id)
    assert workflow_env.now() == START + HOUR
    events = await workflow_env.events(run_id)
    kinds = [e.type for e in events]
    assert kinds.index(EventType.HOOK_DISPOSED) < kinds.index(EventType.WORKFLOW_TIMED_OUT)
    (disposed,) = of_type(events, EventType.HOOK_DISPOSED)
    assert disposed.payload["token"] == "tmo-approval"
    with pytest.raises(HookNotFoundError):
        await workflow_env.resume_hook("tmo-approval", {"ok": True})


async def test_a_hook_answered_in_time_wins(workflow_env: WorkflowEnvironment) -> None:
    run_id = await workflow_env.start(tmo_approval)
    await workflow_env.advance("59m")
    await workflow_env.resume_hook("tmo-approval", {"ok": True})
    assert await workflow_env.result(run_id) == {"ok": True}
    events = await workflow_env.events(run_id)
    assert EventType.WORKFLOW_TIMED_OUT not in [e.type for e in events]
    # once the run ended, its deadline wakes nothing
    await workflow_env.advance("2h")
    assert (await workflow_env.get_run(run_id)).status == RunStatus.COMPLETED


async def test_a_run_that_ends_in_time_is_unaffected(workflow_env: WorkflowEnvironment) -> None:
    run_id = await workflow_env.start(tmo_quick, 21)
    assert await workflow_env.result(run_id) == 42
    assert workflow_env.now() == START + timedelta(minutes=30)
    events = await workflow_env.events(run_id)
    kinds = [e.type for e in events]
    assert EventType.WORKFLOW_TIMED_OUT not in kinds and kinds[-1] == EventType.WORKFLOW_COMPLETED
    (suspended,) = of_type(events, EventType.WORKFLOW_SUSPENDED)
    assert datetime.fromisoformat(suspended.payload["wake_at"]) == START + timedelta(minutes=30)


async def test_a_run_without_a_timeout_records_none(workflow_env: WorkflowEnvironment) -> None:
    assert await workflow_env.run(tmo_plain) == "woke"
    (run,) = (await workflow_env.runtime.acall(workflow_env.runtime.storage.list_runs)).runs
    events = await workflow_env.events(run.run_id)
    assert "deadline" not in events[0].payload and "timeout" not in events[0].payload


async def test_a_running_step_is_cancelled_at_the_deadline(
    workflow_env: WorkflowEnvironment,
) -> None:
    async def two_hours_of_work() -> str:
        # the step runs for two hours of (virtual) time, and would go on
        workflow_env.clock.set(workflow_env.now() + 2 * HOUR)
        try:
            await anyio.sleep_forever()
        except BaseException:
            note("report-cancelled", get_step_context().attempt)
            raise
        return "never"

    workflow_env.override_step(tmo_report, two_hours_of_work)
    run_id = await workflow_env.start(tmo_reporting)
    with pytest.raises(WorkflowTimeoutError):
        await workflow_env.result(run_id)
    assert seen["report-cancelled"] == [1]
    events = await workflow_env.events(run_id)
    (started,) = of_type(events, EventType.STEP_STARTED)
    assert started.payload["name"] == "tmo_report"
    timed_out = timed_out_event(events)
    assert timed_out.payload["cancelled"] == [
        {"step_id": started.correlation_id, "name": "tmo_report", "attempt": 1}
    ]
    kinds = [e.type for e in events]
    assert EventType.STEP_COMPLETED not in kinds and EventType.STEP_FAILED not in kinds
    assert kinds[-2:] == [EventType.WORKFLOW_TIMED_OUT, EventType.WORKFLOW_FAILED]


@workflow(timeout="1h")
async def tmo_chain(rounds: int, nap: str) -> str:
    await sleep(nap)
    if rounds > 1:
        pyworkflow.continue_as_new(rounds - 1, nap)
    return "done"


async def test_each_run_of_a_continue_as_new_chain_gets_the_timeout_from_its_start(
    workflow_env: WorkflowEnvironment,
) -> None:
    # three runs of 40 min each: 2 h in all, but each run is within its hour
    first = await workflow_env.start(tmo_chain, 3, "40m")
    assert await workflow_env.result(first) == "done"
    assert workflow_env.now() == START + timedelta(minutes=120)


async def test_a_continued_run_keeps_the_start_time_timeout(
    workflow_env: WorkflowEnvironment,
) -> None:
    first = await start_with(workflow_env, tmo_chain, 2, "40m", timeout="30m")
    with pytest.raises(WorkflowTimeoutError):
        await workflow_env.result(first)
    assert workflow_env.now() == START + timedelta(minutes=30)
    began = workflow_env.now()
    longer = await start_with(workflow_env, tmo_chain, 2, "90m", timeout="2h")
    assert await workflow_env.result(longer) == "done"  # two runs of 90 min, 2 h each
    assert workflow_env.now() == began + timedelta(minutes=180)
    runs = (await workflow_env.runtime.acall(workflow_env.runtime.storage.list_runs)).runs
    second = next(r for r in runs if r.run_id not in (first, longer))
    started = (await workflow_env.events(second.run_id))[0]
    assert started.payload["continued_from"] == longer
    assert started.payload["timeout"] == 7200.0
    assert datetime.fromisoformat(started.payload["deadline"]) == began + timedelta(minutes=210)


# ----- which timeout, and bad values -----


async def test_the_start_time_timeout_wins_over_the_decorators(
    workflow_env: WorkflowEnvironment,
) -> None:
    longer = await start_with(workflow_env, tmo_sleeper, "2h", timeout="3h")
    assert await workflow_env.result(longer) == "woke"
    assert workflow_env.now() == START + 2 * HOUR
    began = workflow_env.now()
    shorter = await start_with(workflow_env, tmo_sleeper, "2h", timeout=timedelta(minutes=10))
    with pytest.raises(WorkflowTimeoutError) as info:
        await workflow_env.result(shorter)
    assert workflow_env.now() == began + timedelta(minutes=10)
    assert info.value.timeout == 600.0
    started = (await workflow_env.events(shorter))[0]
    assert started.payload["timeout"] == 600.0


async def test_a_start_time_timeout_on_a_workflow_without_one(
    workflow_env: WorkflowEnvironment,
) -> None:
    run_id = await start_with(workflow_env, tmo_plain, timeout=1800)
    with pytest.raises(WorkflowTimeoutError):
        await workflow_env.result(run_id)
    assert workflow_env.now() == START + timedelta(minutes=30)


async def test_a_workflow_class_timeout_attribute(workflow_env: WorkflowEnvironment) -> None:
    assert TmoNightly.definition.timeout == timedelta(minutes=45)
    with pytest.raises(WorkflowTimeoutError):
        await workflow_env.run(TmoNightly)
    assert workflow_env.now() == START + timedelta(minutes=45)


async def test_retrying_a_timed_out_run_gives_it_its_timeout_again(
    workflow_env: WorkflowEnvironment,
) -> None:
    run_id = await workflow_env.start(tmo_sleeper, "90m")
    with pytest.raises(WorkflowTimeoutError):
        await workflow_env.result(run_id)
    runtime = workflow_env.runtime
    assert await runtime.acall(pw_client._retry, runtime, run_id) is RunStatus.PENDING
    # from the retry at 1 h: a new deadline at 2 h, after the sleep's due time (1 h 30)
    assert await workflow_env.result(run_id) == "woke"
    assert workflow_env.now() == START + timedelta(minutes=90)


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("soon", "not a duration"),
        (0, "must be positive"),
        ("0s", "must be positive"),
        (-5, "must not be negative"),
        (timedelta(days=-1), "must not be negative"),
        (float("nan"), "not a number"),
        (10**12, "longer than 100 years"),
        (True, "not a bool"),
        ([1], "unsupported type"),
    ],
)
async def test_bad_timeouts_are_refused_at_the_call(value: Any, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        pyworkflow.start_workflow(tmo_plain, timeout=value)
    with pytest.raises(ValueError, match=reason):
        await pyworkflow.astart_workflow(tmo_plain, timeout=value)
    with pytest.raises(ValueError, match=f"timeout of workflow 'tmo_bad'.*{reason}"):
        workflow(name="tmo_bad", timeout=value)(_body)
    with pytest.raises(ValueError, match=reason):

        class TmoBadClass(pyworkflow.Workflow):
            name = "tmo_bad_class"
            timeout = value


async def _body() -> None:
    await asyncio.sleep(0)


async def test_a_bad_start_time_timeout_writes_nothing(workflow_env: WorkflowEnvironment) -> None:
    with pytest.raises(ValueError, match="must be positive"):
        await start_with(workflow_env, tmo_plain, timeout="0ms")
    page = await workflow_env.runtime.acall(workflow_env.runtime.storage.list_runs)
    assert page.runs == []
