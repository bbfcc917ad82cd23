"""Step checkpoints through the public API (issue 20): get_step_context().checkpoint(...)
saves a step attempt's progress; the next attempt reads it as last_checkpoint.

The SIGKILL case (a worker process killed mid-step) is in test_checkpoint_processes.py.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import anyio
import pytest

from pyworkflow import (
    FatalError,
    PayloadTooLargeError,
    get_events,
    get_result,
    get_step_context,
    runtime,
    start,
    step,
    workflow,
)
from pyworkflow import checkpoints as ckpt
from pyworkflow.models import EventType, StepCheckpoint
from pyworkflow.testing import WorkflowEnvironment

from .conftest import FAST
from .dispatching import dispatching_executor  # noqa: F401  # fixture

#: What step bodies saw, by test: ``(attempt, what)`` entries.
SEEN: list[tuple[int, Any]] = []


@pytest.fixture(autouse=True)
def _clear() -> None:
    SEEN.clear()


# ----- a retry after an exception resumes from the checkpoint -----


@step(max_retries=3, retry_delay=0.01)
async def ckpt_batch(total: int, fail_at: int) -> int:
    ctx = get_step_context()
    last = ctx.last_checkpoint
    SEEN.append((ctx.attempt, ("resumed from", last)))
    start_at = 0 if last is None else last["next"]
    done = 0 if last is None else last["done"]
    for item in range(start_at, total):
        if ctx.attempt == 1 and item == fail_at:
            raise RuntimeError(f"attempt 1 breaks at item {item}")
        SEEN.append((ctx.attempt, item))
        done += item
        await ctx.checkpoint({"next": item + 1, "done": done})
    return done


@workflow
async def ckpt_batch_flow(total: int, fail_at: int) -> int:
    return await ckpt_batch(total, fail_at)


def test_a_retry_after_an_exception_resumes_after_the_last_checkpoint(pw: str) -> None:
    runtime.configure(storage=pw, checkpoint_interval=0, **FAST)
    run_id = start(ckpt_batch_flow, 20, 12)
    assert get_result(run_id, timeout=30) == sum(range(20))
    first = [item for attempt, item in SEEN if attempt == 1 and isinstance(item, int)]
    second = [item for attempt, item in SEEN if attempt == 2 and isinstance(item, int)]
    assert first == list(range(12))
    assert second == list(range(12, 20))  # nothing before the checkpoint is redone
    assert (1, ("resumed from", None)) in SEEN
    assert (2, ("resumed from", {"next": 12, "done": sum(range(12))})) in SEEN


@step(max_retries=2, retry_delay=0.01)
async def ckpt_throttled_batch(total: int) -> int:
    ctx = get_step_context()
    last = ctx.last_checkpoint
    SEEN.append((ctx.attempt, last))
    position = 0 if last is None else last
    for item in range(position, total):
        await ctx.checkpoint(item + 1)
        if ctx.attempt == 1 and item == 6:
            raise RuntimeError("breaks after checkpointing item 6")
    return total


@workflow
async def ckpt_throttled_flow(total: int) -> int:
    return await ckpt_throttled_batch(total)


def test_the_last_state_before_an_exception_is_kept_though_throttled(pw: str) -> None:
    # an hour between writes: only the first checkpoint is written during attempt 1;
    # the latest one (7) is written when the attempt ends with its exception
    runtime.configure(storage=pw, checkpoint_interval=3600, **FAST)
    run_id = start(ckpt_throttled_flow, 10)
    assert get_result(run_id, timeout=30) == 10
    assert SEEN == [(1, None), (2, 7)]


# ----- the state keeps its types (the run's serializer) -----


@step(max_retries=2, retry_delay=0.01)
async def ckpt_typed_state() -> str:
    ctx = get_step_context()
    if ctx.attempt == 1:
        state = (datetime(2030, 1, 2, tzinfo=UTC), Decimal("1.50"), {"a", "b"}, b"\x00\x01")
        await ctx.checkpoint(state)
        raise RuntimeError("retry")
    SEEN.append((ctx.attempt, ctx.last_checkpoint))
    return "ok"


@workflow
async def ckpt_typed_flow() -> str:
    return await ckpt_typed_state()


def test_the_state_round_trips_with_its_types(pw: str) -> None:
    run_id = start(ckpt_typed_flow)
    assert get_result(run_id, timeout=30) == "ok"
    ((attempt, state),) = SEEN
    assert attempt == 2
    assert state == (datetime(2030, 1, 2, tzinfo=UTC), Decimal("1.50"), {"a", "b"}, b"\x00\x01")
    assert type(state) is tuple and type(state[1]) is Decimal and type(state[2]) is set


# ----- sync step bodies -----


@step(max_retries=2, retry_delay=0.01)
def ckpt_sync_batch(total: int) -> int:
    ctx = get_step_context()
    last = ctx.last_checkpoint
    SEEN.append((ctx.attempt, ("resumed from", last)))
    for item in range(last or 0, total):
        SEEN.append((ctx.attempt, item))
        ctx.checkpoint_sync(item + 1)
        if ctx.attempt == 1 and item == 3:
            raise RuntimeError("breaks after item 3")
    return total


@workflow
async def ckpt_sync_flow(total: int) -> int:
    return await ckpt_sync_batch(total)


def test_a_sync_step_body_checkpoints_and_resumes(pw: str) -> None:
    runtime.configure(storage=pw, checkpoint_interval=0, **FAST)
    run_id = start(ckpt_sync_flow, 6)
    assert get_result(run_id, timeout=30) == 6
    assert SEEN == [
        (1, ("resumed from", None)),
        (1, 0),
        (1, 1),
        (1, 2),
        (1, 3),
        (2, ("resumed from", 4)),
        (2, 4),
        (2, 5),
    ]


@step
async def ckpt_async_calls_sync_spelling() -> str:
    try:
        get_step_context().checkpoint_sync(1)
    except RuntimeError as exc:
        return str(exc)
    return "no error"


@workflow
async def ckpt_wrong_spelling_flow() -> str:
    return await ckpt_async_calls_sync_spelling()


def test_checkpoint_sync_on_the_event_loop_says_what_to_use(pw: str) -> None:
    run_id = start(ckpt_wrong_spelling_flow)
    assert "await get_step_context().checkpoint(state)" in get_result(run_id, timeout=30)


# ----- size limit -----


@step(max_retries=0)
async def ckpt_big_state() -> str:
    ctx = get_step_context()
    await ctx.checkpoint("x" * 10)
    try:
        await ctx.checkpoint("x" * 200)
    except PayloadTooLargeError as exc:
        return str(exc)
    return "no error"


@workflow
async def ckpt_big_flow() -> str:
    return await ckpt_big_state()


def test_a_checkpoint_over_the_limit_fails_naming_the_step(pw: str) -> None:
    runtime.configure(storage=pw, checkpoint_max_bytes=100, **FAST)
    run_id = start(ckpt_big_flow)
    message = get_result(run_id, timeout=30)
    assert "checkpoint of step 'ckpt_big_state'" in message
    assert "over the checkpoint limit of 100 bytes" in message
    assert "'checkpoint_max_bytes'" in message


# ----- a stale attempt cannot overwrite a newer attempt's checkpoint -----


@step(max_retries=2, retry_delay=0.01)
async def ckpt_superseded() -> str:
    ctx = get_step_context()
    if ctx.attempt == 1:
        await ctx.checkpoint("from attempt 1")
        raise RuntimeError("retry")
    await ctx.checkpoint("from attempt 2")
    return "ok"


@workflow
async def ckpt_superseded_flow() -> str:
    return await ckpt_superseded()


def _step_id(run_id: str, kind: EventType = EventType.STEP_COMPLETED) -> str:
    return next(str(e.correlation_id) for e in get_events(run_id) if e.type == kind)


def test_a_stale_attempt_cannot_overwrite_a_newer_attempts_checkpoint(pw: str) -> None:
    run_id = start(ckpt_superseded_flow)
    assert get_result(run_id, timeout=30) == "ok"
    step_id = _step_id(run_id)
    rt = runtime.get_runtime()
    stored = rt.call(rt.storage.get_step_checkpoint, run_id, step_id)
    assert stored is not None and stored.attempt == 2
    # attempt 1 comes back to life (a zombie whose lease was taken over) and saves
    zombie = (run_id, step_id, "ckpt_superseded", 1)
    writes: list[int] = []
    save = rt.storage.save_step_checkpoint

    async def counting(*args: Any) -> bool:
        writes.append(args[2])
        return await save(*args)

    rt.storage.save_step_checkpoint = counting  # type: ignore[method-assign]  # a spy
    try:
        rt.call(ckpt.save_checkpoint, zombie, "from the zombie")
        rt.call(ckpt.save_checkpoint, zombie, "again")  # refused once: not even sent
    finally:
        rt.storage.save_step_checkpoint = save  # type: ignore[method-assign]
        ckpt.discard(zombie)
    assert writes == [1]
    after = rt.call(rt.storage.get_step_checkpoint, run_id, step_id)
    assert isinstance(after, StepCheckpoint)
    assert (after.attempt, after.data) == (2, stored.data)


# ----- throttling, on the test harness's virtual clock -----


@step(max_retries=0)
async def ckpt_ticking(clock_name: str) -> str:
    env_clock = CLOCKS[clock_name]
    ctx = get_step_context()
    for state in (1, 2, 3):
        await ctx.checkpoint(state)  # 1 is written; 2 and 3 wait
    env_clock.set(env_clock.now() + timedelta(seconds=1))
    await ctx.checkpoint(4)  # an interval later: written (the latest state)
    await ctx.checkpoint(5)  # waits; written when the attempt ends
    return "done"


@workflow
async def ckpt_ticking_flow(clock_name: str) -> str:
    return await ckpt_ticking(clock_name)


#: The environment's clock by name (a step's argument must be serializable).
CLOCKS: dict[str, Any] = {}


@pytest.mark.anyio
async def test_checkpoints_are_written_at_most_once_per_interval(tmp_path: Path) -> None:
    async with WorkflowEnvironment(checkpoint_interval=1.0) as env:
        written: list[tuple[int, str]] = []
        storage = env.runtime.storage
        save = storage.save_step_checkpoint

        async def spy(run_id: str, step_id: str, attempt: int, data: str) -> bool:
            written.append((attempt, data))
            return await save(run_id, step_id, attempt, data)

        storage.save_step_checkpoint = spy  # type: ignore[method-assign]  # a spy
        CLOCKS["env"] = env.clock
        try:
            assert await env.run(ckpt_ticking_flow, "env") == "done"
        finally:
            CLOCKS.clear()
        serializer = env.runtime.serializer
        assert [(a, serializer.loads(d)) for a, d in written] == [(1, 1), (1, 4), (1, 5)]


# ----- the dispatched path (what Celery and Ray workers run) -----


@pytest.mark.usefixtures("dispatching_executor")
@pytest.mark.parametrize("executor", ["inprocess-dispatch", "inprocess-inline"])
def test_a_dispatched_step_resumes_from_its_checkpoint(tmp_path: Path, executor: str) -> None:
    runtime.configure(
        storage=f"sqlite:///{tmp_path / 'pw.db'}",
        executor=executor,
        checkpoint_interval=0,
        **FAST,
    )
    run_id = start(ckpt_batch_flow, 10, 4)
    assert get_result(run_id, timeout=30) == sum(range(10))
    second = [item for attempt, item in SEEN if attempt == 2 and isinstance(item, int)]
    assert second == list(range(4, 10))


# ----- outside a step; a first attempt -----


@step
async def ckpt_first_attempt() -> Any:
    return get_step_context().last_checkpoint


@workflow
async def ckpt_first_flow() -> Any:
    return await ckpt_first_attempt()


def test_a_first_attempt_has_no_checkpoint(pw: str) -> None:
    assert get_result(start(ckpt_first_flow), timeout=30) is None


@step(max_retries=1, retry_delay=0.01)
async def ckpt_fatal_then_nothing() -> str:
    ctx = get_step_context()
    await ctx.checkpoint({"at": ctx.attempt})
    raise FatalError("no retry")


@workflow
async def ckpt_fatal_flow() -> str:
    try:
        return await ckpt_fatal_then_nothing()
    except FatalError:
        return "caught"


def test_the_checkpoint_of_a_failed_step_stays_stored(pw: str) -> None:
    run_id = start(ckpt_fatal_flow)
    assert get_result(run_id, timeout=30) == "caught"
    rt = runtime.get_runtime()
    step_id = _step_id(run_id, EventType.STEP_FAILED)
    stored = rt.call(rt.storage.get_step_checkpoint, run_id, step_id)
    assert stored is not None and stored.attempt == 1
    assert rt.serializer.loads(stored.data) == {"at": 1}
    assert ckpt.open_attempts == {}  # every attempt's state was dropped at its end


def test_outside_a_step_there_is_no_step_context() -> None:
    with pytest.raises(RuntimeError, match="outside a step body"):
        get_step_context()


@pytest.mark.anyio
async def test_checkpoints_module_imports_cheaply() -> None:
    await anyio.sleep(0)
    assert ckpt.last_checkpoint(("r", "s", "n", 1)) is None  # a first attempt reads nothing


# ----- transient runs: checkpoints kept in the process -----


@step(max_retries=2, retry_delay=0.01)
async def ckpt_transient_batch(total: int) -> int:
    ctx = get_step_context()
    last = ctx.last_checkpoint
    SEEN.append((ctx.attempt, ("resumed from", last)))
    for item in range(last or 0, total):
        await ctx.checkpoint(item + 1)
        SEEN.append((ctx.attempt, ("after own checkpoint", ctx.last_checkpoint)))
        if ctx.attempt == 1 and item == 2:
            raise RuntimeError("breaks after item 2")
    return total


@workflow(durable=False)
async def ckpt_transient_flow(total: int) -> int:
    return await ckpt_transient_batch(total)


def test_a_transient_run_resumes_from_checkpoints_kept_in_the_process(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import pyworkflow

    monkeypatch.chdir(tmp_path)
    runtime.reset()
    assert pyworkflow.execute(ckpt_transient_flow, 5) == 5
    assert [entry for entry in SEEN if entry[1][0] == "resumed from"] == [
        (1, ("resumed from", None)),
        (2, ("resumed from", 3)),
    ]
    # an attempt's own checkpoints do not change what it resumed from
    assert {entry for entry in SEEN if entry[1][0] == "after own checkpoint"} == {
        (1, ("after own checkpoint", None)),
        (2, ("after own checkpoint", 3)),
    }
    assert not (tmp_path / ".pyworkflow").exists()  # no storage was opened


# ----- runs retry: a failed run retried resumes its step from the checkpoint -----


@step(max_retries=0)
async def ckpt_fails_until_retried(total: int) -> int:
    ctx = get_step_context()
    last = ctx.last_checkpoint
    SEEN.append((ctx.attempt, ("resumed from", last)))
    for item in range(last or 0, total):
        if ctx.attempt == 1 and item == 4:
            raise FatalError("the upstream is down: the run fails")
        await ctx.checkpoint(item + 1)
    return total


@workflow
async def ckpt_retried_run_flow(total: int) -> int:
    return await ckpt_fails_until_retried(total)


def test_a_retried_run_resumes_its_step_from_the_checkpoint(pw: str) -> None:
    from pyworkflow.client import retry_run

    run_id = start(ckpt_retried_run_flow, 8)
    with pytest.raises(FatalError):
        get_result(run_id, timeout=30)
    assert retry_run(run_id)
    assert get_result(run_id, timeout=30) == 8
    assert SEEN == [(1, ("resumed from", None)), (2, ("resumed from", 4))]


# ----- a step run alone by the test harness (run_step): checkpoints kept in the process -----


@step(max_retries=2)
async def ckpt_alone(total: int) -> list[int]:
    ctx = get_step_context()
    begin = ctx.last_checkpoint or 0
    done = []
    for item in range(begin, total):
        if ctx.attempt == 1 and item == 3:
            raise RuntimeError("breaks at 3")
        done.append(item)
        await ctx.checkpoint(item + 1)
    return done


@step(max_retries=2)
def ckpt_alone_sync(total: int) -> list[int]:
    ctx = get_step_context()
    begin = ctx.last_checkpoint or 0
    for item in range(begin, total):
        if ctx.attempt == 1 and item == 2:
            raise RuntimeError("breaks at 2")
        ctx.checkpoint_sync(item + 1)
    return [begin]


def test_run_step_keeps_checkpoints_for_the_next_attempt(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pyworkflow.testing import run_step

    monkeypatch.chdir(tmp_path)
    runtime.reset()
    with pytest.raises(RuntimeError, match="breaks at 3"):
        run_step(ckpt_alone, 6)
    assert run_step(ckpt_alone, 6, attempt=2) == [3, 4, 5]
    with pytest.raises(RuntimeError, match="breaks at 2"):
        run_step(ckpt_alone_sync, 5, run_id="other")
    assert run_step(ckpt_alone_sync, 5, run_id="other", attempt=2) == [2]
    # a first attempt starts from nothing, whatever an earlier test left
    with pytest.raises(RuntimeError):
        run_step(ckpt_alone, 6)
    assert not (tmp_path / ".pyworkflow").exists()  # no runtime, no storage
    assert ckpt.open_attempts == {}
