"""Timing logic under the test harness's virtual clock: back-offs, sleeps, wake order.

These tests use realistic durations (minutes to weeks) and assert from the
recorded events and virtual time, so they take no real time waiting. The
backend-level checks of the same features (a timer really wakes a run on each
storage) stay in the engine tests with short real waits.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

import pyworkflow
from pyworkflow import (
    EventType,
    HookNotFoundError,
    RetryableError,
    RunStatus,
    create_hook,
    first,
    get_step_context,
    sleep,
    step,
    workflow,
)
from pyworkflow.models import Event
from pyworkflow.testing.environment import WorkflowEnvironment

pytestmark = pytest.mark.anyio

START = datetime(2031, 3, 1, 9, 0, tzinfo=UTC)

#: (label, virtual time) of each wake-up recorded by ``ht_note``, in the order the steps ran.
woke: list[tuple[str, datetime]] = []
#: Failures still to raise, per step key.
failures: dict[str, int] = {}


@pytest.fixture
def workflow_env_options() -> dict[str, Any]:
    """Every environment of this module starts at START."""
    return {"start": START}


@pytest.fixture(autouse=True)
def _reset() -> Iterator[None]:
    woke.clear()
    failures.clear()
    yield
    woke.clear()
    failures.clear()


def of_type(events: list[Event], kind: EventType) -> list[Event]:
    return [e for e in events if e.type == kind]


def started_gaps(events: list[Event]) -> list[float]:
    """Seconds between successive ``step_started`` events (one step's attempts)."""
    stamps = [e.timestamp for e in of_type(events, EventType.STEP_STARTED)]
    return [(b - a).total_seconds() for a, b in itertools.pairwise(stamps)]


def delays(events: list[Event]) -> list[float]:
    return [e.payload["delay"] for e in of_type(events, EventType.STEP_RETRYING)]


# ----- retry back-off -----


def _fail_first(key: str) -> None:
    if failures.get(key, 0) > 0:
        failures[key] -= 1
        raise RetryableError(f"{key} failed at attempt {get_step_context().attempt}")


@step(max_retries=6, retry_delay="exponential", retry_base="30s", max_retry_delay="5m", jitter=0)
async def ht_exponential() -> int:
    _fail_first("exp")
    return get_step_context().attempt


@step(max_retries=3, retry_delay="fixed", retry_base="10m", jitter=0)
async def ht_fixed() -> int:
    _fail_first("fixed")
    return get_step_context().attempt


@step(max_retries=2, retry_delay="2h", max_retry_delay="1d", jitter=0)
async def ht_duration() -> int:
    _fail_first("duration")
    return get_step_context().attempt


@step(max_retries=1, retry_delay="2h", jitter=0)
async def ht_capped() -> int:
    _fail_first("capped")
    return get_step_context().attempt


@step(max_retries=4, retry_delay="exponential", retry_base="1h", max_retry_delay="1d", jitter=0.5)
async def ht_jittered() -> int:
    _fail_first("jitter")
    return get_step_context().attempt


@step(max_retries=2, retry_base="1s", jitter=0)
async def ht_rate_limited() -> str:
    if get_step_context().attempt == 1:
        raise RetryableError("slow down", retry_after="15m")
    return "done"


@step(max_retries=2, retry_base="1m", jitter=0)
async def ht_always_down() -> None:
    raise ConnectionError(f"down at attempt {get_step_context().attempt}")


@workflow
async def ht_call(which: str) -> Any:
    steps = {
        "exp": ht_exponential,
        "fixed": ht_fixed,
        "duration": ht_duration,
        "capped": ht_capped,
        "jitter": ht_jittered,
        "rate": ht_rate_limited,
        "down": ht_always_down,
    }
    began = pyworkflow.now()
    value = await steps[which]()
    return [value, (pyworkflow.now() - began).total_seconds()]


async def test_exponential_back_off_grows_and_caps_as_the_retry_policy_says(
    workflow_env: WorkflowEnvironment,
) -> None:
    failures["exp"] = 6
    run_id = await workflow_env.start(ht_call, "exp")
    attempt, elapsed = await workflow_env.result(run_id)
    events = await workflow_env.events(run_id)

    # 30 s doubling, capped at 5 min: what the step's own policy computes
    policy = ht_exponential.definition.retry
    error = RetryableError("x")
    expected = [policy.delay_for(error, n).total_seconds() for n in range(1, 7)]
    assert expected == [30.0, 60.0, 120.0, 240.0, 300.0, 300.0]
    assert attempt == 7
    assert delays(events) == expected
    # each attempt started exactly when its back-off was over, in virtual time
    assert started_gaps(events) == expected
    assert elapsed == sum(expected)
    assert workflow_env.now() == START + timedelta(seconds=sum(expected))
    for retry in of_type(events, EventType.STEP_RETRYING):
        due = datetime.fromisoformat(retry.payload["due_at"])
        assert due == retry.timestamp + timedelta(seconds=retry.payload["delay"])


async def test_fixed_and_duration_retry_delays(workflow_env: WorkflowEnvironment) -> None:
    failures.update(fixed=3, duration=2)
    fixed_run = await workflow_env.start(ht_call, "fixed")
    assert await workflow_env.result(fixed_run) == [4, 3 * 600.0]
    fixed_events = await workflow_env.events(fixed_run)
    assert delays(fixed_events) == started_gaps(fixed_events) == [600.0, 600.0, 600.0]

    duration_run = await workflow_env.start(ht_call, "duration")
    assert await workflow_env.result(duration_run) == [3, 2 * 7200.0]
    duration_events = await workflow_env.events(duration_run)
    assert delays(duration_events) == started_gaps(duration_events) == [7200.0, 7200.0]


async def test_a_retry_delay_above_max_retry_delay_is_capped(
    workflow_env: WorkflowEnvironment,
) -> None:
    """``retry_delay="2h"`` with the default ``max_retry_delay`` (1h) waits 1h."""
    failures["capped"] = 1
    run_id = await workflow_env.start(ht_call, "capped")
    assert await workflow_env.result(run_id) == [2, 3600.0]
    events = await workflow_env.events(run_id)
    assert delays(events) == started_gaps(events) == [3600.0]


async def test_jittered_back_off_stays_in_its_band_and_is_waited_exactly(
    workflow_env: WorkflowEnvironment,
) -> None:
    failures["jitter"] = 4
    run_id = await workflow_env.start(ht_call, "jitter")
    attempt, elapsed = await workflow_env.result(run_id)
    events = await workflow_env.events(run_id)
    assert attempt == 5
    recorded = delays(events)
    for n, delay in enumerate(recorded):
        nominal = 3600.0 * 2**n
        assert nominal * 0.5 <= delay <= nominal * 1.5, (n, delay)
    # whatever the jitter drew, the retry ran at the recorded due time, no sooner or later
    assert started_gaps(events) == pytest.approx(recorded, abs=1e-6)
    assert elapsed == pytest.approx(sum(recorded), abs=1e-6)


async def test_retry_after_overrides_the_policy_delay(workflow_env: WorkflowEnvironment) -> None:
    run_id = await workflow_env.start(ht_call, "rate")
    assert await workflow_env.result(run_id) == ["done", 900.0]
    events = await workflow_env.events(run_id)
    (retry,) = of_type(events, EventType.STEP_RETRYING)
    assert retry.payload["delay"] == 900.0  # the error's 15 min, not the policy's 1 s
    assert started_gaps(events) == [900.0]


async def test_a_step_failing_every_attempt_fails_the_run_after_its_back_offs(
    workflow_env: WorkflowEnvironment,
) -> None:
    run_id = await workflow_env.start(ht_call, "down")
    with pytest.raises(ConnectionError, match="down at attempt 3"):
        await workflow_env.result(run_id)
    events = await workflow_env.events(run_id)
    assert delays(events) == started_gaps(events) == [60.0, 120.0]
    assert len(of_type(events, EventType.STEP_FAILED)) == 1
    assert (await workflow_env.get_run(run_id)).status == RunStatus.FAILED
    assert workflow_env.now() == START + timedelta(minutes=3)


async def test_a_back_off_not_yet_over_does_not_retry(workflow_env: WorkflowEnvironment) -> None:
    failures["fixed"] = 1
    run_id = await workflow_env.start(ht_call, "fixed")
    await workflow_env.advance("9m59s")
    events = await workflow_env.events(run_id)
    assert len(of_type(events, EventType.STEP_STARTED)) == 1
    assert (await workflow_env.get_run(run_id)).status == RunStatus.SUSPENDED
    await workflow_env.advance("1s")  # due exactly now: it runs
    info = await workflow_env.get_run(run_id)
    assert info.status == RunStatus.COMPLETED and info.result == [2, 600.0]


async def test_a_run_cancelled_during_its_back_off_never_retries(
    workflow_env: WorkflowEnvironment,
) -> None:
    failures["fixed"] = 3
    run_id = await workflow_env.start(ht_call, "fixed")
    await workflow_env.advance("5m")  # halfway through the first 10 min back-off
    assert await workflow_env.cancel(run_id, "no longer needed") is True
    await workflow_env.advance("1d")
    events = await workflow_env.events(run_id)
    assert len(of_type(events, EventType.STEP_STARTED)) == 1
    assert events[-1].type == EventType.WORKFLOW_CANCELLED
    assert events[-1].timestamp == START + timedelta(minutes=5)


# ----- sleeps -----


@workflow
async def ht_sleep_until(until: datetime) -> str:
    await sleep(until)
    return pyworkflow.now().isoformat()


@workflow
async def ht_sleep_for(duration: Any) -> float:
    began = pyworkflow.now()
    await sleep(duration)
    return (pyworkflow.now() - began).total_seconds()


async def test_sleep_until_a_datetime_wakes_at_that_instant(
    workflow_env: WorkflowEnvironment,
) -> None:
    due = START + timedelta(days=10, hours=3, minutes=7)
    run_id = await workflow_env.start(ht_sleep_until, due)
    assert await workflow_env.result(run_id) == due.isoformat()
    assert workflow_env.now() == due
    events = await workflow_env.events(run_id)
    (created,) = of_type(events, EventType.WAIT_CREATED)
    assert datetime.fromisoformat(created.payload["due_at"]) == due
    (completed,) = of_type(events, EventType.WAIT_COMPLETED)
    assert completed.timestamp == due


async def test_sleep_until_an_aware_datetime_in_another_zone(
    workflow_env: WorkflowEnvironment,
) -> None:
    zone = timezone(timedelta(hours=-5))
    due = datetime(2031, 3, 2, 4, 0, tzinfo=zone)  # 09:00 UTC, one day after START
    woke_at = datetime.fromisoformat(await workflow_env.run(ht_sleep_until, due))
    assert woke_at == START + timedelta(days=1)  # the same instant
    assert workflow_env.now() == START + timedelta(days=1)


async def test_virtual_time_stays_utc_after_a_sleep_until_another_zone(
    workflow_env: WorkflowEnvironment,
) -> None:
    due = datetime(2031, 3, 2, 4, 0, tzinfo=timezone(timedelta(hours=-5)))
    woke_at = datetime.fromisoformat(await workflow_env.run(ht_sleep_until, due))
    assert woke_at.utcoffset() == timedelta(0)
    assert workflow_env.now().utcoffset() == timedelta(0)


async def test_sleep_until_a_past_datetime_returns_at_once(
    workflow_env: WorkflowEnvironment,
) -> None:
    past = START - timedelta(days=1)
    assert await workflow_env.run(ht_sleep_until, past) == START.isoformat()
    assert workflow_env.now() == START  # no time passed


@pytest.mark.parametrize(
    ("duration", "seconds"),
    [("45s", 45.0), (90, 90.0), (2.5, 2.5), (timedelta(weeks=2), 14 * 86400.0), ("1h30m", 5400.0)],
    ids=["string", "int", "float", "timedelta", "compound"],
)
async def test_every_duration_form_sleeps_exactly_that_long(
    workflow_env: WorkflowEnvironment, duration: Any, seconds: float
) -> None:
    assert await workflow_env.run(ht_sleep_for, duration) == seconds
    assert workflow_env.now() == START + timedelta(seconds=seconds)


@workflow
async def ht_two_sleeps_at_once() -> list[float]:
    began = pyworkflow.now()

    async def nap(duration: str) -> float:
        await sleep(duration)
        return (pyworkflow.now() - began).total_seconds()

    return list(await asyncio.gather(nap("2h"), nap("1h")))


async def test_sleeps_under_gather_each_wake_at_their_own_time(
    workflow_env: WorkflowEnvironment,
) -> None:
    run_id = await workflow_env.start(ht_two_sleeps_at_once)
    assert await workflow_env.result(run_id) == [7200.0, 3600.0]
    events = await workflow_env.events(run_id)
    completed = sorted(e.timestamp for e in of_type(events, EventType.WAIT_COMPLETED))
    assert completed == [START + timedelta(hours=1), START + timedelta(hours=2)]
    assert workflow_env.now() == START + timedelta(hours=2)


# ----- wake order across runs -----


@step()
async def ht_note(label: str) -> None:
    woke.append((label, pyworkflow.now()))


@workflow
async def ht_wake_after(label: str, duration: str) -> str:
    await sleep(duration)
    await ht_note(label)
    return label


async def test_timers_of_several_runs_fire_in_due_order(
    workflow_env: WorkflowEnvironment,
) -> None:
    plan = {"late": "3d", "early": "1h", "middle": "1d", "tie-a": "2d", "tie-b": "2d"}
    runs = {
        label: await workflow_env.start(ht_wake_after, label, due) for label, due in plan.items()
    }
    assert woke == [] and workflow_env.now() == START
    await workflow_env.advance("7d")
    assert [label for label, _ in woke][:2] == ["early", "middle"]
    assert sorted(label for label, _ in woke[2:4]) == ["tie-a", "tie-b"]
    assert woke[-1][0] == "late"
    # each woke at its own due time, not at the end of the advance
    expected = {
        "early": timedelta(hours=1),
        "middle": timedelta(days=1),
        "tie-a": timedelta(days=2),
        "tie-b": timedelta(days=2),
        "late": timedelta(days=3),
    }
    assert dict(woke) == {label: START + delta for label, delta in expected.items()}
    for label, run_id in runs.items():
        info = await workflow_env.get_run(run_id)
        assert info.status == RunStatus.COMPLETED and info.result == label
    assert workflow_env.now() == START + timedelta(days=7)


async def test_advance_stops_between_timers_and_fires_only_those_due(
    workflow_env: WorkflowEnvironment,
) -> None:
    for label, due in (("a", "10m"), ("b", "20m"), ("c", "30m")):
        await workflow_env.start(ht_wake_after, label, due)
    await workflow_env.advance("15m")
    assert woke == [("a", START + timedelta(minutes=10))]
    await workflow_env.advance("5m")  # exactly b's due time
    assert woke[-1] == ("b", START + timedelta(minutes=20))
    await workflow_env.advance("9m59s")
    assert len(woke) == 2
    await workflow_env.advance("1s")
    assert woke[-1] == ("c", START + timedelta(minutes=30))


async def test_a_run_started_after_the_clock_moved_sleeps_from_then(
    workflow_env: WorkflowEnvironment,
) -> None:
    await workflow_env.start(ht_wake_after, "first", "1h")
    await workflow_env.advance("30m")
    await workflow_env.start(ht_wake_after, "second", "1h")  # due at 1h30m
    await workflow_env.advance("2h")
    assert woke == [
        ("first", START + timedelta(hours=1)),
        ("second", START + timedelta(hours=1, minutes=30)),
    ]


async def test_awaiting_one_result_fires_earlier_timers_of_other_runs_first(
    workflow_env: WorkflowEnvironment,
) -> None:
    early = await workflow_env.start(ht_wake_after, "early", "1h")
    late = await workflow_env.start(ht_wake_after, "late", "1d")
    assert await workflow_env.result(late) == "late"
    assert woke == [("early", START + timedelta(hours=1)), ("late", START + timedelta(days=1))]
    assert (await workflow_env.get_run(early)).status == RunStatus.COMPLETED


# ----- a hook with a timeout -----


@workflow
async def ht_deadline(token: str, timeout: str) -> list[Any]:
    hook = create_hook(token=token)
    index, payload = await first(hook, sleep(timeout))
    return ["answered", payload] if index == 0 else ["timed out", None]


async def test_a_hook_timeout_fires_at_its_due_time_and_not_before(
    workflow_env: WorkflowEnvironment,
) -> None:
    run_id = await workflow_env.start(ht_deadline, "ht:ack", "2d")
    await workflow_env.advance(timedelta(days=2) - timedelta(seconds=1))
    assert (await workflow_env.get_run(run_id)).status == RunStatus.SUSPENDED
    await workflow_env.advance("1s")
    info = await workflow_env.get_run(run_id)
    assert info.status == RunStatus.COMPLETED and info.result == ["timed out", None]
    events = await workflow_env.events(run_id)
    (completed,) = of_type(events, EventType.WAIT_COMPLETED)
    assert completed.timestamp == START + timedelta(days=2)
    assert of_type(events, EventType.HOOK_RECEIVED) == []
    with pytest.raises(HookNotFoundError):  # too late: the hook went with the run
        await workflow_env.resume_hook("ht:ack", {"late": True})


async def test_a_hook_answered_a_second_before_its_timeout_wins(
    workflow_env: WorkflowEnvironment,
) -> None:
    run_id = await workflow_env.start(ht_deadline, "ht:quick", "1h")
    await workflow_env.advance("59m59s")
    await workflow_env.resume_hook("ht:quick", {"by": "ana"})
    info = await workflow_env.get_run(run_id)
    assert info.result == ["answered", {"by": "ana"}]
    assert of_type(await workflow_env.events(run_id), EventType.WAIT_COMPLETED) == []
    await workflow_env.advance("1d")  # the cancelled timer never fires later
    events = await workflow_env.events(run_id)
    assert of_type(events, EventType.WAIT_COMPLETED) == []
    assert events[-1].type in (EventType.WORKFLOW_COMPLETED, EventType.HOOK_DISPOSED)


# ----- back-offs and sleeps of different runs share one timeline -----


@step(max_retries=2, retry_delay="fixed", retry_base="10m", jitter=0)
async def ht_noting_flaky(label: str) -> None:
    woke.append((f"{label}#{get_step_context().attempt}", pyworkflow.now()))
    _fail_first(label)


@workflow
async def ht_retrying(label: str) -> str:
    await ht_noting_flaky(label)
    return label


async def test_back_off_timers_and_sleeps_of_other_runs_interleave_in_due_order(
    workflow_env: WorkflowEnvironment,
) -> None:
    failures["flaky"] = 2  # attempts at 0, 10 and 20 minutes
    await workflow_env.start(ht_retrying, "flaky")
    await workflow_env.start(ht_wake_after, "sleeper-5", "5m")
    await workflow_env.start(ht_wake_after, "sleeper-15", "15m")
    await workflow_env.advance("1h")
    minutes = [(label, (at - START).total_seconds() / 60) for label, at in woke]
    assert minutes == [
        ("flaky#1", 0.0),
        ("sleeper-5", 5.0),
        ("flaky#2", 10.0),
        ("sleeper-15", 15.0),
        ("flaky#3", 20.0),
    ]


@workflow
async def ht_daily(days: int) -> list[str]:
    stamps = []
    for _ in range(days):
        await sleep("1d")
        stamps.append(pyworkflow.now().date().isoformat())
    return stamps


async def test_a_quarter_of_daily_sleeps_is_skipped_day_by_day(
    workflow_env: WorkflowEnvironment,
) -> None:
    stamps = await workflow_env.run(ht_daily, 92)
    assert len(stamps) == len(set(stamps)) == 92
    assert stamps[0] == "2031-03-02" and stamps[-1] == "2031-06-01"
    assert workflow_env.now() == START + timedelta(days=92)


def test_the_sync_twin_advances_and_fires_timers_in_order(
    workflow_env: WorkflowEnvironment,
) -> None:
    for label, due in (("two", "2h"), ("one", "1h")):
        workflow_env.sync.start(ht_wake_after, label, due)
    workflow_env.sync.advance("90m")
    assert woke == [("one", START + timedelta(hours=1))]
    workflow_env.sync.advance("30m")
    assert woke[-1] == ("two", START + timedelta(hours=2))
    assert workflow_env.sync.now() == START + timedelta(hours=2)
