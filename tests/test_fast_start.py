"""Start to result with no more commits than the log needs (issue 13, Speed).

A run started in a process whose embedded worker has room is created already
leased to that worker and handed to it (no claim); ``get_result`` is woken by
the journal when an append of this process ends the run, and polls storage
only for runs that end elsewhere; an activation that ends costs the worker no
claim pass unless a due run may be waiting for its slot.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import Any

import anyio
import pytest

from pyworkflow import (
    EventType,
    RunStatus,
    cancel,
    create_hook,
    get_events,
    get_result,
    get_run,
    runtime,
    start,
    start_workflow,
    step,
    workflow,
)
from pyworkflow.client import aget_result
from pyworkflow.executors import local
from pyworkflow.executors.local import LocalExecutor, Worker
from pyworkflow.leases import LeaseKeeper
from pyworkflow.models import Event, NewEvent, Run, RunPatch
from pyworkflow.runtime import Runtime, get_runtime
from pyworkflow.storage.base import Storage

HERE = Path(__file__).parent
FAST: dict[str, Any] = {"poll_interval": 0.05, "lease_seconds": 2.0, "drain_timeout": 2.0}

executed: list[str] = []


@step()
async def add(value: int, more: int) -> int:
    return value + more


@workflow
async def empty_flow() -> None:
    return None


@workflow
async def ten_steps() -> int:
    total = 0
    for i in range(10):
        total = await add(total, i)
    return total


@step()
async def slow_step(seconds: float) -> str:
    await anyio.sleep(seconds)
    return "slept"


@workflow
async def slow_flow(seconds: float) -> str:
    return await slow_step(seconds)


@workflow
async def counted_flow(tag: str) -> str:
    executed.append(tag)
    return tag


@workflow
async def hook_flow() -> Any:
    hook = create_hook(token="fast-start-hook")
    return await hook


gate = threading.Event()


@step()
async def wait_for_gate() -> str:
    await anyio.to_thread.run_sync(gate.wait, 30)
    return "open"


@workflow
async def gated_flow() -> str:
    return await wait_for_gate()


def _worker() -> Worker:
    executor = get_runtime().executor
    assert isinstance(executor, LocalExecutor) and executor.worker is not None
    return executor.worker


def _row(run_id: str) -> Run:
    """The run's stored row (leases included)."""
    rt = get_runtime()
    return rt.call(rt.storage.get_run, run_id)


def _wrap(storage: Storage, name: str, calls: list[Any]) -> None:
    """Record every call of ``storage.name`` (its arguments, then its result) in ``calls``."""
    real = getattr(storage, name)

    async def recorded(*args: Any, **kwargs: Any) -> Any:
        result = await real(*args, **kwargs)
        calls.append((args, result))
        return result

    setattr(storage, name, recorded)


# ----- commits per workflow: start and finish -----


@pytest.mark.parametrize(("flow", "commits"), [(empty_flow, 2), (ten_steps, 12)])
def test_a_workflow_costs_one_commit_to_start_and_one_to_finish(
    tmp_path: Path, flow: Any, commits: int
) -> None:
    runtime.configure(storage=f"sqlite:///{tmp_path / 'pw.db'}", **FAST)
    storage = get_runtime().storage
    get_result(start(flow), timeout=30)  # the first run warms up (imports, statements)
    for _ in range(5):
        before = storage.commit_count  # type: ignore[attr-defined]  # SQLiteStorage's
        get_result(start(flow), timeout=30)
        assert storage.commit_count - before == commits  # type: ignore[attr-defined]  # as above


# ----- a run started here goes straight to this process's worker -----


def test_a_started_run_is_created_leased_to_the_worker_and_never_claimed() -> None:
    runtime.configure(storage="memory://", **{**FAST, "poll_interval": 30.0})
    storage = get_runtime().storage
    created: list[Any] = []
    claimed: list[Any] = []
    _wrap(storage, "create_run", created)
    _wrap(storage, "claim_runs", claimed)
    worker = _worker()
    gate.clear()
    run_id = start(gated_flow)
    (((new, events), (stored, was_created)),) = created
    assert was_created and new.lease_owner == worker.owner and stored.lease_owner == worker.owner
    assert new.lease_expires_at is not None and new.wake_at is not None  # recoverable
    assert [e.type for e in events] == [EventType.WORKFLOW_STARTED]
    assert run_id in worker.active  # handed over by start() itself
    gate.set()
    assert get_result(run_id, timeout=30) == "open"
    assert all(run_id not in [r.run_id for r in result] for _, result in claimed)
    assert worker._reserved == 0
    run = get_run(run_id)
    assert run.status == RunStatus.COMPLETED


def test_an_idempotent_start_of_an_existing_run_hands_nothing_over() -> None:
    runtime.configure(storage="memory://", **FAST)
    executed.clear()
    first = start_workflow(counted_flow, ("a",), idempotency_key="once")
    assert get_result(first, timeout=30) == "a"
    again = start_workflow(counted_flow, ("b",), idempotency_key="once")
    assert again == first and get_result(again, timeout=30) == "a"
    worker = _worker()
    assert executed == ["a"] and worker._reserved == 0 and worker.active == {}
    assert _row(first).lease_owner is None


def test_a_start_that_fails_gives_its_slot_back() -> None:
    runtime.configure(storage="memory://", **FAST)
    storage = get_runtime().storage

    async def refused(run: Run, events: list[NewEvent]) -> Any:
        raise RuntimeError("storage refused the run")

    real, storage.create_run = storage.create_run, refused  # type: ignore[method-assign]
    with pytest.raises(RuntimeError, match="refused"):
        start(counted_flow, "x")
    storage.create_run = real  # type: ignore[method-assign]  # as above
    assert _worker()._reserved == 0
    assert get_result(start(counted_flow, "y"), timeout=30) == "y"


def test_starts_beyond_the_workers_capacity_are_claimed_when_a_slot_frees() -> None:
    # poll_interval is long: only the pass after an activation ends can pick the next run
    runtime.configure(storage="memory://", worker_concurrency=1, **{**FAST, "poll_interval": 60.0})
    storage = get_runtime().storage
    created: list[Any] = []
    _wrap(storage, "create_run", created)
    gate.clear()
    first = start(gated_flow)
    queued = [start(slow_flow, 0) for _ in range(3)]
    owners = [args[0].lease_owner for args, _ in created]
    assert owners == [_worker().owner, None, None, None]  # no room: created free, claimed later
    gate.set()
    assert get_result(first, timeout=30) == "open"
    for run_id in queued:
        assert get_result(run_id, timeout=30) == "slept"


def test_a_start_racing_the_workers_stop_is_still_activated() -> None:
    """A slot reserved before the worker stopped keeps the drain waiting for its run."""
    runtime.configure(storage="memory://", **FAST)
    storage = get_runtime().storage
    worker = _worker()
    real = storage.create_run

    async def racing(run: Run, events: list[NewEvent]) -> Any:
        worker.stop()
        await anyio.sleep(0.2)  # the worker makes its last pass (nothing due) and drains
        return await real(run, events)

    storage.create_run = racing  # type: ignore[method-assign]  # the race, made certain
    try:
        run_id = start(counted_flow, "late")
    finally:
        storage.create_run = real  # type: ignore[method-assign]  # as above
    assert get_result(run_id, timeout=10) == "late"  # no claim left: only the handover ran it
    assert worker._reserved == 0


def test_a_run_whose_handover_is_lost_is_recovered_when_its_lease_expires(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The process 'dies' between the create's commit and the activation: nothing runs it."""
    runtime.configure(storage="memory://", **{**FAST, "lease_seconds": 0.5})
    lost: list[str] = []

    def drop(self: local._Slot, run: Run, history: list[Event]) -> None:
        lost.append(run.run_id)
        self._worker._reserved -= 1  # the slot is gone with the 'dead' activation

    monkeypatch.setattr(local._Slot, "take", drop)
    run_id = start(ten_steps)
    monkeypatch.undo()
    assert lost == [run_id]
    run = _row(run_id)
    assert run.status == RunStatus.PENDING and run.lease_owner == _worker().owner
    assert get_result(run_id, timeout=30) == 45  # the lease expired: claimed and run


@pytest.mark.slow
def test_a_process_killed_right_after_start_leaves_a_run_another_worker_recovers(
    tmp_path: Path,
) -> None:
    db = tmp_path / "pw.db"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYWORKFLOW_")}
    env.update(
        PYTHONPATH=str(HERE),
        PYWORKFLOW_STORAGE=f"sqlite:///{db}",
        PYWORKFLOW_LEASE_SECONDS="1",
        PYWORKFLOW_MODULES="faststartflows",
    )
    script = textwrap.dedent(
        """
        import os, pyworkflow, faststartflows
        os.environ["FASTSTART_HANG_PID"] = str(os.getpid())
        print(pyworkflow.start(faststartflows.one_step, 1), flush=True)
        os._exit(0)  # no shutdown, no drain: as if killed
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr[-3000:]
    run_id = out.stdout.strip()
    sys.path.insert(0, str(HERE))
    try:
        runtime.configure(storage=f"sqlite:///{db}", embedded_worker=False)
        run = _row(run_id)
        assert run.status in (RunStatus.PENDING, RunStatus.RUNNING)
        assert run.lease_owner is not None and f":{_pid_of(run.lease_owner)}:" in run.lease_owner
        assert run.lease_expires_at is not None
        import faststartflows  # noqa: F401  # the workflow, for this process's worker

        runtime.configure(embedded_worker=True, poll_interval=0.05, lease_seconds=2.0)
        assert get_result(run_id, timeout=60) == 2
    finally:
        sys.path.remove(str(HERE))
    kinds = [e.type for e in get_events(run_id)]
    assert kinds.count(EventType.WORKFLOW_STARTED) == 1
    assert kinds.count(EventType.STEP_COMPLETED) == 1


def _pid_of(owner: str) -> str:
    return owner.split(":")[1]


# ----- get_result: woken in-process, polls only for runs ending elsewhere -----


def test_get_result_is_woken_by_the_end_without_polling_storage() -> None:
    runtime.configure(storage="memory://", **FAST)
    storage = get_runtime().storage
    looks: list[Any] = []
    _wrap(storage, "get_run", looks)
    run_id = start(slow_flow, 0.5)
    assert get_result(run_id, timeout=30) == "slept"
    # the run was being activated here: the end's signal carried its outcome, and
    # the waiting thread never looked at storage (no look before, no poll, none after)
    assert [args for args, _ in looks if args == (run_id,)] == []


def test_async_get_result_is_woken_by_the_end_without_polling_storage() -> None:
    runtime.configure(storage="memory://", **FAST)
    rt = get_runtime()
    looks: list[Any] = []
    _wrap(rt.storage, "get_run", looks)
    run_id = start(slow_flow, 0.5)
    assert rt.call(aget_result, run_id, 30) == "slept"
    # one look before waiting, one after the signal: no poll while the run ran here
    assert len([args for args, _ in looks if args == (run_id,)]) == 2


def test_sync_get_result_enters_the_runtime_loop_once(monkeypatch: pytest.MonkeyPatch) -> None:
    runtime.configure(storage="memory://", **FAST)
    rt = get_runtime()
    run_id = start(slow_flow, 0.3)
    hops: list[Any] = []
    real = rt._start_call

    def counted(*args: Any) -> None:
        hops.append(args[0])
        real(*args)

    monkeypatch.setattr(rt, "_start_call", counted)  # what the calling thread schedules
    # activated here: the end wakes the waiting thread with the outcome; no hop at all
    assert get_result(run_id, timeout=30) == "slept"
    assert hops == []
    assert rt.journal._thread_watched == {}
    # ended already: one hop, the look at storage
    assert get_result(run_id, timeout=30) == "slept"
    assert len(hops) == 1
    assert rt.journal._thread_watched == {}


class Refused(Exception):
    """An error a workflow raises, rebuilt by the json serializer on the waiting side."""


@workflow
async def refusing_flow(seconds: float) -> str:
    await slow_step(seconds)
    raise Refused("no")


@workflow
async def cancelled_flow(seconds: float) -> str:
    return await slow_step(seconds)


def _outcome_of(call: Any) -> tuple[str, Any]:
    try:
        return ("result", call())
    except Exception as exc:
        return (type(exc).__name__, str(exc))


@pytest.mark.parametrize("storage", ["memory://", "sqlite"])
def test_the_signalled_outcome_is_the_stored_one(storage: str, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'runs.db'}" if storage == "sqlite" else storage
    runtime.configure(storage=url, **FAST)
    rt = get_runtime()
    looks: list[Any] = []
    _wrap(rt.storage, "get_run", looks)
    runs = [
        start(cancelled_flow, 0.4),  # the cancellation reaches it once its step is done
        start(slow_flow, 0.8),
        start(refusing_flow, 1.2),
        start(empty_flow),
    ]
    time.sleep(0.1)
    cancel(runs[0])
    signalled = [_outcome_of(lambda r=r: get_result(r, timeout=30)) for r in runs]
    assert signalled == [
        ("WorkflowCancelledError", f"run {runs[0]} was cancelled"),
        ("result", "slept"),
        ("Refused", "no"),
        ("result", None),
    ]
    # the second and third were being activated here: their ends told the waiting
    # thread (the cancelled run is read by cancel() and by its activation's replay)
    assert [args for args, _ in looks if args[0] in runs[1:3]] == []
    # the same outcomes once more from storage (the runs ended: each is looked at)
    looks.clear()
    stored = [_outcome_of(lambda r=r: get_result(r, timeout=30)) for r in runs]
    assert stored == signalled
    assert sorted(args[0] for args, _ in looks) == sorted(runs)
    assert rt.journal._thread_watched == {}


def test_a_sync_wait_for_a_run_activated_here_times_out_naming_its_status() -> None:
    runtime.configure(storage="memory://", **FAST)
    gate.clear()
    run_id = start(gated_flow)
    try:
        with pytest.raises(TimeoutError, match=f"run {run_id} is still running after 0.1s"):
            get_result(run_id, timeout=0.1)
    finally:
        gate.set()
    assert get_result(run_id, timeout=30) == "open"
    assert get_runtime().journal._thread_watched == {}


meet_a, meet_b = threading.Event(), threading.Event()


@step()
async def meet(mine: str) -> str:
    """Waits for the other step of the pair: both must run at the same time."""
    (meet_a if mine == "a" else meet_b).set()
    other = meet_b if mine == "a" else meet_a
    met = await anyio.to_thread.run_sync(other.wait, 10)
    return mine if met else "alone"


@workflow
async def meeting() -> list[str]:
    first = await add(0, 1)  # a lone step (no task), then two at once (tasks)
    pair = await asyncio.gather(meet("a"), meet("b"))
    return [str(first), *pair, str(await add(first, 1))]


def test_an_activation_runs_gathered_steps_at_once_after_lone_ones() -> None:
    runtime.configure(storage="memory://", **FAST)
    meet_a.clear()
    meet_b.clear()
    assert get_result(start(meeting), timeout=30) == ["1", "a", "b", "2"]


def test_a_started_run_in_flight_at_shutdown_is_cancelled_and_let_go(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'runs.db'}"
    runtime.configure(storage=url, **{**FAST, "drain_timeout": 0.2})
    run_id = start(slow_flow, 60)  # handed straight to the worker: a task of its own
    time.sleep(0.1)
    worker = _worker()
    assert run_id in worker.active and len(worker._handed) == 1
    runtime.shutdown()  # drains 0.2 s, cancels the activation, awaits it
    assert worker._handed == {} and worker.active == {}
    runtime.configure(storage=url, embedded_worker=False, **FAST)
    row = _row(run_id)
    assert row.lease_owner is None  # released as it was cancelled: recoverable at once
    assert row.status == RunStatus.RUNNING


def test_sync_calls_fail_cleanly_once_the_runtime_has_stopped() -> None:
    runtime.configure(storage="memory://", **FAST)
    rt = get_runtime()
    run_id = start(slow_flow, 0)
    assert get_result(run_id, timeout=30) == "slept"
    rt.shutdown()
    with pytest.raises(RuntimeError, match="not running"):
        rt.call(rt.storage.get_run, run_id)
    with pytest.raises(RuntimeError, match="not running"):
        rt._call_from_thread(rt.storage.get_run, (run_id,))
    assert rt._calls == set()


def test_a_sync_call_waiting_when_the_runtime_stops_gets_an_error() -> None:
    runtime.configure(storage="memory://", **{**FAST, "drain_timeout": 0.5})
    rt = get_runtime()
    outcome: list[BaseException] = []

    def wait_forever() -> None:
        try:
            rt.call(anyio.sleep_forever)
        except BaseException as exc:  # what the waiting thread gets
            outcome.append(exc)

    thread = threading.Thread(target=wait_forever)
    thread.start()
    time.sleep(0.2)
    rt.shutdown()
    thread.join(timeout=30)
    assert not thread.is_alive()
    assert [type(e) for e in outcome] == [RuntimeError] and "stopped" in str(outcome[0])


def test_get_result_of_a_run_ended_by_another_process_is_found_by_polling() -> None:
    # no worker here: the run is 'ended elsewhere' by a write that bypasses this journal
    runtime.configure(storage="memory://", embedded_worker=False, **FAST)
    rt = get_runtime()
    run_id = start(empty_flow)
    assert _row(run_id).lease_owner is None  # no worker: created free, for anyone

    def end_elsewhere() -> None:
        time.sleep(0.2)
        patch = RunPatch(status=RunStatus.COMPLETED, result=rt.serializer.dumps(7), set_wake=True)
        event = NewEvent(EventType.WORKFLOW_COMPLETED, None, {})
        rt.call(rt.storage.append_events, run_id, 1, [event], patch)

    thread = threading.Thread(target=end_elsewhere)
    thread.start()
    try:
        assert get_result(run_id, timeout=30) == 7
    finally:
        thread.join()
    assert rt.journal._watched == {}


def test_waits_that_time_out_or_are_cancelled_leave_no_watch_behind() -> None:
    runtime.configure(storage="memory://", **FAST)
    rt = get_runtime()
    gate.clear()
    run_id = start(gated_flow)
    for _ in range(3):
        with pytest.raises(TimeoutError):
            get_result(run_id, timeout=0.05)

    async def cancelled_waits() -> None:
        async with anyio.create_task_group() as tg:
            for _ in range(5):
                tg.start_soon(aget_result, run_id)
            await anyio.sleep(0.1)
            assert rt.journal._watched.keys() == {run_id}  # five waiters, one watch
            tg.cancel_scope.cancel()

    rt.call(cancelled_waits)
    assert rt.journal._watched == {}
    gate.set()
    assert get_result(run_id, timeout=30) == "open"
    assert rt.journal._watched == {}


def test_many_waiters_of_many_runs_are_all_woken() -> None:
    runtime.configure(storage="memory://", **FAST)
    rt = get_runtime()
    run_ids = [start(slow_flow, 0.05) for _ in range(20)]

    async def wait_all() -> list[Any]:
        results: list[Any] = []

        async def one(run_id: str) -> None:
            results.append(await aget_result(run_id, timeout=30))

        async with anyio.create_task_group() as tg:
            for run_id in run_ids:
                tg.start_soon(one, run_id)
                tg.start_soon(one, run_id)
        return results

    assert rt.call(wait_all) == ["slept"] * 40
    assert rt.journal._watched == {}


# ----- the worker's pass after an activation ends -----


def test_an_ending_activation_costs_no_claim_pass_when_nothing_is_due() -> None:
    runtime.configure(storage="memory://", **{**FAST, "poll_interval": 60.0})
    storage = get_runtime().storage
    claims: list[Any] = []
    _wrap(storage, "claim_runs", claims)
    for _ in range(10):
        assert get_result(start(ten_steps), timeout=30) == 45
    assert len(claims) <= 1  # at most the pass the worker made when it started


def test_a_run_claimed_while_its_activation_ends_is_activated_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A hook payload lands after the suspension released the lease, while the activation
    is still ending; a claim pass leases the run to this worker then: once the activation
    has ended, the run is let go and claimed again (not left until its lease expires)."""
    runtime.configure(storage="memory://", **{**FAST, "lease_seconds": 60.0, "poll_interval": 60.0})
    real = LocalExecutor.activate
    raced: list[str] = []

    async def racing(
        self: LocalExecutor, rt_: Runtime, run: Run, owner: str, history: Any = None
    ) -> bool:
        finished = await real(self, rt_, run, owner, history)
        if not raced and (await rt_.storage.get_run(run.run_id)).status == RunStatus.SUSPENDED:
            raced.append(run.run_id)
            from pyworkflow.client import _resume_hook

            await _resume_hook(rt_, "fast-start-hook", "payload")  # notify: a claim pass
            with anyio.fail_after(10):
                while (await rt_.storage.get_run(run.run_id)).lease_owner != owner:
                    await anyio.sleep(0.01)
        return finished

    monkeypatch.setattr(LocalExecutor, "activate", racing)
    run_id = start(hook_flow)
    assert get_result(run_id, timeout=20) == "payload"
    assert raced == [run_id]
    assert _worker()._again == set()


def test_the_cli_worker_hears_its_own_process_wake_ups(tmp_path: Path) -> None:
    """A worker run beside a runtime without an embedded worker is that executor's worker."""
    runtime.configure(storage="memory://", embedded_worker=False, **{**FAST, "poll_interval": 60.0})
    rt = get_runtime()
    executor = rt.executor
    assert isinstance(executor, LocalExecutor) and executor.worker is None
    worker = Worker(rt)
    thread = threading.Thread(target=rt.call, args=(worker.run,))
    thread.start()
    try:
        while executor.worker is not worker:
            time.sleep(0.01)
        run_id = start(slow_flow, 0)
        assert _row(run_id).lease_owner in (worker.owner, None)
        assert get_result(run_id, timeout=20) == "slept"
    finally:
        worker.stop()
        thread.join(timeout=30)
    assert executor.worker is None


def test_back_to_back_activations_do_not_wake_the_lease_thread(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Holding a lease pokes the renewer's thread only when it would not look in time."""
    runtime.configure(storage="memory://", **{**FAST, "lease_seconds": 30.0})
    pokes: list[float] = []
    real = LeaseKeeper._poke

    def counted(self: LeaseKeeper) -> None:
        pokes.append(time.monotonic())
        real(self)

    monkeypatch.setattr(LeaseKeeper, "_poke", counted)
    assert get_result(start(slow_flow, 0), timeout=30) == "slept"  # starts the thread
    time.sleep(0.1)  # the thread is up and lingering
    pokes.clear()
    for _ in range(20):
        assert get_result(start(ten_steps), timeout=30) == 45
    assert len(pokes) <= 1  # (one if the thread had just stopped lingering)


def test_a_lease_held_without_a_poke_is_still_renewed() -> None:
    runtime.configure(storage="memory://", **{**FAST, "lease_seconds": 0.3})
    assert get_result(start(slow_flow, 0), timeout=30) == "slept"  # the thread lingers now
    run_id = start(slow_flow, 1.5)  # five lease lengths: lost unless renewed
    assert get_result(run_id, timeout=30) == "slept"
    kinds = [e.type for e in get_events(run_id)]
    assert kinds.count(EventType.STEP_STARTED) == 1 and kinds.count(EventType.WORKFLOW_STARTED) == 1
