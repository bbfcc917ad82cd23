"""pyworkflow.testing.WorkflowEnvironment: virtual time, hooks, fakes, isolation."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from pathlib import Path
from unittest.mock import AsyncMock

import anyio
import pytest

import pyworkflow
from pyworkflow import Step, create_hook, first, runtime, sleep, step, workflow
from pyworkflow.errors import RunNotFoundError, WorkflowFailedError
from pyworkflow.models import EventType, utcnow
from pyworkflow.testing import (
    VirtualClock,
    WorkflowBlockedError,
    WorkflowEnvironment,
)

pytestmark = pytest.mark.anyio

START = datetime(2030, 1, 1, tzinfo=UTC)


@step(max_retries=5, retry_delay="exponential", jitter=0.0)
async def env_charge(amount: int) -> str:
    raise ConnectionError("the real payment API must not be called in these tests")


class SendEmail(Step):
    async def execute(self, to: str) -> str:
        raise ConnectionError("the real mail server must not be called in these tests")


@step
def stamp() -> str:
    """A sync step (runs in a worker thread): the time it sees, by its runtime's clock."""
    return pyworkflow.now().isoformat()


@workflow
async def env_trial(amount: int) -> dict[str, object]:
    began = pyworkflow.now()
    await sleep("30d")
    receipt = await env_charge(amount)
    mail = await SendEmail()("ana@example.com")
    return {
        "receipt": receipt,
        "mail": mail,
        "elapsed": (pyworkflow.now() - began).total_seconds(),
        "step_time": await stamp(),
    }


@workflow
async def env_approval(order: str) -> str:
    hook = create_hook(f"approve:{order}")
    index, payload = await first(hook, sleep("3d"))
    return f"approved by {payload['by']}" if index == 0 else "timed out"


@workflow
async def env_waits_forever() -> object:
    return await create_hook("forgotten-hook")


@workflow
async def env_naps() -> list[str]:
    seen = []
    for nap in ("1h", "2h", "3h"):
        await sleep(nap)
        seen.append(pyworkflow.now().isoformat())
    return seen


# ----- virtual time -----


async def test_run_skips_a_month_of_sleep_and_every_back_off() -> None:
    failures = 0

    async def flaky(amount: int) -> str:
        nonlocal failures
        if failures < 4:
            failures += 1
            raise ConnectionError(f"declined {failures}")
        return f"charged {amount}"

    async with WorkflowEnvironment(start=START) as env:
        charged = env.override_step(env_charge, flaky)
        mailed = env.override_step(SendEmail, AsyncMock(return_value="sent"))
        run_id = await env.start(env_trial, 30)
        assert (await env.get_run(run_id)).status == pyworkflow.RunStatus.SUSPENDED
        assert env.now() == START  # nothing awaited the result: time stood still
        result = await env.result(run_id)
        events = await env.events(run_id)

    # 30 days, then back-offs of 1 + 2 + 4 + 8 s (exponential, no jitter)
    assert result["elapsed"] == timedelta(days=30, seconds=15).total_seconds()
    assert result["receipt"] == "charged 30" and result["mail"] == "sent"
    assert [c.attempt for c in charged.calls] == [1, 2, 3, 4, 5]
    assert {c.args for c in charged.calls} == {(30,)}
    assert mailed.calls[0].args == ("ana@example.com",)
    delays = [e.payload["delay"] for e in events if e.type == EventType.STEP_RETRYING]
    assert delays == [1.0, 2.0, 4.0, 8.0]
    started = [e.timestamp for e in events if e.type == EventType.STEP_STARTED]
    gaps = [(b - a).total_seconds() for a, b in itertools.pairwise(started)]
    assert gaps[:4] == [1.0, 2.0, 4.0, 8.0]  # each retry ran exactly when it was due
    assert events[0].timestamp == START  # event timestamps are virtual too
    # a sync step's thread reads the environment's clock as well
    assert result["step_time"] == (START + timedelta(days=30, seconds=15)).isoformat()


async def test_advance_fires_the_timers_on_the_way_in_order() -> None:
    async with WorkflowEnvironment(start=START) as env:
        run_id = await env.start(env_naps)
        await env.advance("2h59m")
        info = await env.get_run(run_id)
        assert info.status == pyworkflow.RunStatus.SUSPENDED
        assert env.now() == START + timedelta(hours=2, minutes=59)
        naps = [e for e in await env.events(run_id) if e.type == EventType.WAIT_COMPLETED]
        assert len(naps) == 1  # woke at 1h; the second nap ends at 3h, one minute on
        await env.advance("3h1m")
        info = await env.get_run(run_id)
    assert info.status == pyworkflow.RunStatus.COMPLETED
    assert info.result == [
        (START + timedelta(hours=1)).isoformat(),
        (START + timedelta(hours=3)).isoformat(),
        (START + timedelta(hours=6)).isoformat(),
    ]


async def test_advance_refuses_bad_durations() -> None:
    async with WorkflowEnvironment() as env:
        with pytest.raises(ValueError, match="negative"):
            await env.advance(timedelta(seconds=-1))
        with pytest.raises(ValueError, match="advance duration"):
            await env.advance("soon")


def test_a_naive_start_time_is_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        WorkflowEnvironment(start=datetime(2030, 1, 1))
    with pytest.raises(ValueError, match="own memory storage"):
        WorkflowEnvironment(storage="memory://")


async def test_virtual_clock_cuts_a_wait_short_when_moved() -> None:
    clock = VirtualClock(START)
    ended = []

    async def waiter() -> None:
        with clock.move_on_until(START + timedelta(hours=1), cap=60) as scope:
            await anyio.sleep_forever()
        ended.append(scope.cancelled_caught)

    async with anyio.create_task_group() as tg:
        tg.start_soon(waiter)
        await anyio.wait_all_tasks_blocked()
        clock.set(START + timedelta(minutes=59))
        await anyio.wait_all_tasks_blocked()
        assert ended == []  # not due yet
        clock.set(START + timedelta(hours=1))
    assert ended == [True]
    with pytest.raises(ValueError, match="only moves forward"):
        clock.set(START)


# ----- hooks -----


async def test_a_hook_answered_in_time_wins_the_race() -> None:
    async with WorkflowEnvironment(start=START) as env:
        run_id = await env.start(env_approval, "o-1")
        await env.advance("2d")
        assert await env.resume_hook("approve:o-1", {"by": "ana"}) == run_id
        info = await env.get_run(run_id)
        assert info.result == "approved by ana"
        assert env.now() == START + timedelta(days=2)


async def test_a_hook_left_unanswered_times_out() -> None:
    async with WorkflowEnvironment(start=START) as env:
        assert await env.run(env_approval, "o-2") == "timed out"
        assert env.now() == START + timedelta(days=3)


async def test_a_forgotten_hook_fails_naming_it_instead_of_hanging() -> None:
    async with WorkflowEnvironment() as env:
        with pytest.raises(WorkflowBlockedError, match="'forgotten-hook'") as caught:
            await env.run(env_waits_forever)
        assert caught.value.hooks == ("forgotten-hook",)
        assert "resume_hook('forgotten-hook'" in str(caught.value)
        # the run is still there, waiting; answering it lets it end
        await env.resume_hook("forgotten-hook", 7)
        assert (await env.get_run(caught.value.run_id)).result == 7


def test_the_sync_twin_works_in_a_sync_test() -> None:
    with WorkflowEnvironment(start=START) as env:
        run_id = env.sync.start(env_approval, "o-3")
        env.sync.resume_hook("approve:o-3", {"by": "bo"})
        assert env.sync.result(run_id) == "approved by bo"
        assert env.sync.run(env_approval, "o-4") == "timed out"
        assert env.sync.now() == START + timedelta(days=3)
        with pytest.raises(WorkflowBlockedError, match="forgotten-hook"):
            env.sync.run(env_waits_forever)
        kinds = [e.type for e in env.sync.events(run_id)]
        assert EventType.HOOK_RECEIVED in kinds


# ----- fakes -----


async def test_a_step_overridden_by_name_and_a_failing_fake() -> None:
    def declined(amount: int) -> str:  # a sync fake runs like a sync step
        raise ValueError(f"card declined for {amount}")

    async with WorkflowEnvironment(start=START) as env:
        fake = env.override_step("env_charge", declined)
        env.override_step(SendEmail, AsyncMock(return_value="sent"))
        with pytest.raises((ValueError, WorkflowFailedError), match="declined for 5"):
            await env.run(env_trial, 5)
    assert fake.call_count == 6  # the first attempt and max_retries=5 retries
    assert [c.attempt for c in fake.calls] == [1, 2, 3, 4, 5, 6]


def test_override_step_refuses_what_is_not_a_step_or_not_callable() -> None:
    with WorkflowEnvironment() as env:
        with pytest.raises(TypeError, match="a @step function, a Step subclass or a step name"):
            env.override_step(42, lambda: None)
        with pytest.raises(TypeError, match="must be callable"):
            env.override_step(env_charge, "not a function")  # type: ignore[arg-type]


# ----- isolation -----


async def test_two_environments_are_independent() -> None:
    async with WorkflowEnvironment(start=START) as one, WorkflowEnvironment(start=START) as two:
        one.override_step(env_charge, AsyncMock(return_value="fake one"))
        one.override_step(SendEmail, AsyncMock(return_value="sent"))
        first_run = await one.start(env_trial, 1)
        second_run = await two.start(env_approval, "o-5")
        await one.advance("40d")
        assert one.now() == START + timedelta(days=40)
        assert two.now() == START  # the other clock did not move
        assert (await one.get_run(first_run)).result["receipt"] == "fake one"
        assert (await two.get_run(second_run)).status == pyworkflow.RunStatus.SUSPENDED
        with pytest.raises(RunNotFoundError):
            await two.get_run(first_run)
        with pytest.raises(RunNotFoundError):
            await one.get_run(second_run)
        # the second has no override: its env_charge step would call the real body
        assert two.runtime.step_overrides == {}


async def test_virtual_time_never_reaches_real_storage(tmp_path: Path) -> None:
    runtime.configure(storage=f"sqlite:///{tmp_path / 'real.db'}", poll_interval=0.05)
    before = datetime.now(UTC)

    async def start_a_real_run(amount: int) -> str:
        # a step of an environment's run that talks to the process's real runtime
        return await pyworkflow.astart(env_approval, f"real-{amount}")

    async with WorkflowEnvironment(start=START) as env:
        env.override_step(env_charge, start_a_real_run)
        env.override_step(SendEmail, AsyncMock(return_value="sent"))
        result = await env.run(env_trial, 9)
    real_run = result["receipt"]
    assert abs((utcnow() - before).total_seconds()) < 60  # this thread reads the wall clock
    events = await pyworkflow.aget_events(real_run)
    assert events, "the real run was written to the real storage"
    for event in events:
        # written in 2026 by the wall clock, not in 2030 by the environment's
        assert abs((event.timestamp - before).total_seconds()) < 3600, event
    created = next(e for e in events if e.type == EventType.WAIT_CREATED)
    due = datetime.fromisoformat(created.payload["due_at"])
    assert timedelta(days=3) <= due - before < timedelta(days=3, hours=1)
    assert not (tmp_path / "memory").exists()


async def test_cancel_ends_a_sleeping_run() -> None:
    async with WorkflowEnvironment(start=START) as env:
        run_id = await env.start(env_naps)
        assert await env.cancel(run_id, "changed my mind") is True
        info = await env.get_run(run_id)
        assert info.status == pyworkflow.RunStatus.CANCELLED
        with pytest.raises(pyworkflow.WorkflowCancelledError):
            await env.result(run_id)
        assert await env.cancel(run_id) is False
        assert env.now() == START


def test_an_environment_that_is_not_open_says_so() -> None:
    env = WorkflowEnvironment()
    with pytest.raises(RuntimeError, match="not open"):
        env.sync.start(env_naps)
    with env:
        assert env.sync.run(env_naps)[0] == (env.now() - timedelta(hours=5)).isoformat()
    with pytest.raises(RuntimeError, match="not open"):
        env.sync.get_run("x")


async def test_start_workflow_takes_the_client_options() -> None:
    async with WorkflowEnvironment(start=START) as env:
        run_id = await env.start_workflow(env_naps, run_id="my-run", idempotency_key="k-1")
        assert run_id == "my-run"
        again = await env.start_workflow(env_naps, idempotency_key="k-1")
        assert again == "my-run"  # the same key finds the same run
        with pytest.raises(ValueError, match="workflow timeout"):
            await env.start_workflow(env_naps, timeout="-1h")
        timed = await env.start_workflow(env_naps, timeout="2h")
        with pytest.raises(pyworkflow.WorkflowTimeoutError):
            await env.result(timed)
        assert env.now() == START + timedelta(hours=2)


def test_start_workflow_in_a_sync_test() -> None:
    with WorkflowEnvironment(start=START) as env:
        run_id = env.sync.start_workflow(env_naps, (), {}, run_id="sync-run", timeout="1h")
        assert run_id == "sync-run"
        with pytest.raises(pyworkflow.WorkflowTimeoutError):
            env.sync.result(run_id)
