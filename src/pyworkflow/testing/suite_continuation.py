"""EngineConformance cases for continue-as-new (issue 15).

Mixed into :class:`~pyworkflow.testing.engine_suite.EngineConformance`: every
backend and executor plugin runs them. Tests use the class's fixtures
(``pw`` configures a fast runtime on the backend under test).
"""

from __future__ import annotations

import asyncio
import itertools

import anyio
import pytest

from pyworkflow import (
    EventType,
    RunStatus,
    SerializationError,
    aget_result,
    continue_as_new,
    create_hook,
    get_events,
    get_result,
    get_run,
    sleep,
    start,
    step,
    workflow,
)
from pyworkflow.engine.continuation import next_run_id
from pyworkflow.errors import RunNotFoundError

__all__ = ["ContinueAsNewCases", "chain_of"]


@step()
async def can_add(total: int, value: int) -> int:
    return total + value


@workflow(name="can_counter")
async def can_counter(i: int, last: int, per_run: int, total: int = 0) -> dict[str, int]:
    """Adds ``i`` for ``i`` up to ``last``, one step each, continuing every ``per_run``."""
    for _ in range(per_run):
        if i > last:
            return {"i": i, "total": total}
        total = await can_add(total, i)
        i += 1
    continue_as_new(i, last, per_run, total=total)


@workflow(name="can_napper")
async def can_napper(rounds: int) -> int:
    """Sleeps between continuations: each run suspends before it continues."""
    await sleep("10ms")
    if rounds > 0:
        continue_as_new(rounds - 1)
    return rounds


@workflow(name="can_stubborn")
async def can_stubborn(rounds: int) -> str:
    """``except Exception`` (and ``finally``) do not stop the continuation."""
    if rounds == 0:
        return "done"
    try:
        continue_as_new(rounds - 1)
    except Exception:  # must not catch it
        return "swallowed"
    finally:
        pass
    return "unreachable"


@workflow(name="can_bad_input")
async def can_bad_input(kind: str) -> str:
    """Continues with an input the serializer cannot write, or that does not fit."""
    if kind == "caught":
        try:
            continue_as_new(object())
        except SerializationError as exc:
            return f"caught: {type(exc).__name__}"
    if kind == "unserializable":
        continue_as_new(object())
    continue_as_new("a", "b", "c")  # can_bad_input takes one argument
    return "unreachable"


@workflow(name="can_with_hook")
async def can_with_hook(round_: int) -> int:
    """Creates the same hook token in each run: the ended run's hook is disposed first."""
    create_hook(token="can-hook-token")
    if round_ < 2:
        continue_as_new(round_ + 1)
    return round_


@workflow(name="can_gathered")
async def can_gathered(rounds: int) -> str:
    """Continues from one branch of ``asyncio.gather`` or of an anyio task group."""
    if rounds == 0:
        return "done"

    async def branch(n: int) -> int:
        await can_add(0, n)
        if n == 2:
            continue_as_new(rounds - 1)
        return n

    if rounds % 2:
        await asyncio.gather(branch(1), branch(2))
    else:
        async with anyio.create_task_group() as group:
            group.start_soon(branch, 1)
            group.start_soon(branch, 2)
    return "unreachable"


@step(max_retries=0)
async def can_in_step() -> None:
    continue_as_new()


@workflow(name="can_from_step")
async def can_from_step() -> None:
    await can_in_step()


def chain_of(run_id: str) -> list[str]:
    """The run ids of the chain that starts at ``run_id``, in order (through the links)."""
    chain = [run_id]
    while True:
        info = get_run(chain[-1])
        if info.continued_to is None:
            return chain
        chain.append(info.continued_to)


class ContinueAsNewCases:
    """The continue-as-new checks of the engine conformance suite."""

    def test_chain_ends_with_the_last_runs_result(self, pw: str) -> None:
        first = start(can_counter, 1, 25, 10)
        assert get_result(first, timeout=30) == {"i": 26, "total": 325}
        chain = chain_of(first)
        assert len(chain) == 3
        assert chain[1] == next_run_id(first) and chain[2] == next_run_id(chain[1])
        for previous, run_id in itertools.pairwise(chain):
            before, info = get_run(previous), get_run(run_id)
            assert before.status == RunStatus.CONTINUED
            assert before.continued_to == run_id and info.continued_from == previous
            assert before.completed_at is not None and before.result is None
            end = get_events(previous)[-1]
            assert end.type == EventType.WORKFLOW_CONTINUED_AS_NEW
            assert end.payload["next_run_id"] == run_id
            started = get_events(run_id)[0]
            assert started.type == EventType.WORKFLOW_STARTED
            assert started.payload["continued_from"] == previous
        last = get_run(chain[-1])
        assert last.status == RunStatus.COMPLETED and last.continued_to is None
        assert get_run(first).continued_from is None
        # each log holds its own run's steps only (10 steps: 20 step events)
        for run_id in chain:
            kinds = [e.type for e in get_events(run_id)]
            assert kinds.count(EventType.STEP_COMPLETED) <= 10
            assert kinds.count(EventType.WORKFLOW_STARTED) == 1
        # a later run of the chain gives the same result
        assert get_result(chain[1], timeout=10) == {"i": 26, "total": 325}

    @pytest.mark.anyio
    async def test_async_result_follows_the_chain(self, pw: str) -> None:
        from pyworkflow import astart

        first = await astart(can_counter, 1, 5, 2)
        assert await aget_result(first, timeout=30) == {"i": 6, "total": 15}

    def test_continuing_after_a_suspension(self, pw: str) -> None:
        first = start(can_napper, 3)
        assert get_result(first, timeout=30) == 0
        chain = chain_of(first)
        assert len(chain) == 4
        for run_id in chain[:-1]:
            kinds = [e.type for e in get_events(run_id)]
            assert EventType.WAIT_COMPLETED in kinds
            assert kinds[-1] == EventType.WORKFLOW_CONTINUED_AS_NEW
            assert get_run(run_id).status == RunStatus.CONTINUED

    def test_except_exception_does_not_swallow_it(self, pw: str) -> None:
        first = start(can_stubborn, 2)
        assert get_result(first, timeout=30) == "done"
        assert len(chain_of(first)) == 3

    def test_from_a_gather_branch_or_a_task_group(self, pw: str) -> None:
        first = start(can_gathered, 2)
        assert get_result(first, timeout=30) == "done"
        assert [get_run(r).status for r in chain_of(first)] == [
            RunStatus.CONTINUED,
            RunStatus.CONTINUED,
            RunStatus.COMPLETED,
        ]

    def test_unserializable_input_fails_the_run(self, pw: str) -> None:
        run_id = start(can_bad_input, "unserializable")
        with pytest.raises(SerializationError, match="continued as new"):
            get_result(run_id, timeout=30)
        info = get_run(run_id)
        assert info.status == RunStatus.FAILED and info.continued_to is None
        assert get_events(run_id)[-1].type == EventType.WORKFLOW_FAILED
        with pytest.raises(RunNotFoundError):
            get_run(next_run_id(run_id))

    def test_input_that_does_not_fit_fails_the_run(self, pw: str) -> None:
        run_id = start(can_bad_input, "wrong arity")
        with pytest.raises(TypeError, match="can_bad_input"):
            get_result(run_id, timeout=30)
        assert get_run(run_id).status == RunStatus.FAILED
        with pytest.raises(RunNotFoundError):
            get_run(next_run_id(run_id))

    def test_workflow_can_catch_a_bad_input(self, pw: str) -> None:
        run_id = start(can_bad_input, "caught")
        assert get_result(run_id, timeout=30) == "caught: SerializationError"

    def test_hooks_are_disposed_before_the_next_run_starts(self, pw: str) -> None:
        first = start(can_with_hook, 0)
        assert get_result(first, timeout=30) == 2
        chain = chain_of(first)
        assert len(chain) == 3
        for run_id in chain[:-1]:
            kinds = [e.type for e in get_events(run_id)]
            assert kinds.index(EventType.HOOK_DISPOSED) < kinds.index(
                EventType.WORKFLOW_CONTINUED_AS_NEW
            )

    def test_inside_a_step_it_errors(self, pw: str) -> None:
        run_id = start(can_from_step)
        with pytest.raises(RuntimeError, match="inside a step body"):
            get_result(run_id, timeout=30)
        assert get_run(run_id).status == RunStatus.FAILED
        assert get_run(run_id).continued_to is None
