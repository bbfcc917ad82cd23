"""One write path: every writer tells observers once per appended batch; a suspension is
announced to the executor once (``pyworkflow.engine.journal``)."""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from datetime import datetime, timedelta
from typing import Any

import pytest

from pyworkflow import (
    EventType,
    RunStatus,
    cancel,
    create_hook,
    get_events,
    get_result,
    get_run,
    resume_hook,
    runtime,
    sleep,
    start,
    step,
    workflow,
)
from pyworkflow import plugins as pw_plugins
from pyworkflow.client import retry_run
from pyworkflow.engine import Activation, _fail_corrupt
from pyworkflow.engine.state import _Restart
from pyworkflow.errors import CorruptDataError, FatalError
from pyworkflow.hookspecs import hookimpl
from pyworkflow.models import Event, NewEvent
from pyworkflow.testing.engine_suite import FAST, gather_flow
from pyworkflow.testing.environment import WorkflowEnvironment

from .dispatching import dispatching_executor  # noqa: F401  # fixture


class Recorder:
    """An observer plugin: every call it gets, in order."""

    def __init__(self) -> None:
        self.batches: list[tuple[str, list[Event]]] = []
        self.statuses: list[tuple[str, str, RunStatus]] = []

    @hookimpl
    def pyworkflow_events_appended(self, run_id: str, events: Sequence[Event]) -> None:
        self.batches.append((run_id, list(events)))

    @hookimpl
    def pyworkflow_run_status_changed(self, run_id: str, workflow: str, status: RunStatus) -> None:
        self.statuses.append((run_id, workflow, status))

    def seqs(self, run_id: str) -> list[int]:
        return [e.seq for rid, batch in self.batches if rid == run_id for e in batch]

    def assert_told_once(self, run_id: str) -> None:
        """Each event of the run's log was observed exactly once, in batches of adjacent seqs."""
        log = [(e.seq, e.type) for e in get_events(run_id)]
        observed = [(e.seq, e.type) for rid, b in self.batches if rid == run_id for e in b]
        assert sorted(observed) == log
        for rid, batch in self.batches:
            assert batch, "an empty batch was observed"
            seqs = [e.seq for e in batch]
            assert seqs == list(range(seqs[0], seqs[0] + len(seqs))), (rid, seqs)


@pytest.fixture
def recorder() -> Iterator[Recorder]:
    """A recording observer on the process's plugin manager, registered before the runtime."""
    observer = Recorder()
    pm = pw_plugins.get_plugin_manager()
    pm.register(observer, name="journal-test-recorder")
    try:
        yield observer
    finally:
        pm.unregister(observer)


@step()
async def shout(text: str) -> str:
    return text.upper()


@workflow
async def hooked_flow() -> list[Any]:
    first = await shout("a")
    one = await create_hook(token="journal:one")
    two = await create_hook(token="journal:two")
    return [first, one, two, await shout("b")]


@workflow
async def waits_forever() -> None:
    await create_hook(token="journal:forever")


@workflow
async def napper(first: float | str, second: float | str) -> str:
    await sleep(first)
    await sleep(second)
    return "rested"


failures = {"left": 1}


@step(max_retries=0)
async def fails_once() -> str:
    if failures["left"] > 0:
        failures["left"] -= 1
        raise FatalError("not yet")
    return "fine"


@workflow
async def retried_flow() -> str:
    return await fails_once()


def _wait_status(run_id: str, status: RunStatus) -> None:
    for _ in range(500):
        if get_run(run_id).status == status:
            return
        time.sleep(0.02)
    raise AssertionError(f"run {run_id} never became {status.value}")


def _wait_hook(run_id: str, token: str) -> None:
    """Until the run has recorded the hook ``token`` and suspended on it."""
    for _ in range(500):
        events = get_events(run_id)
        if any(e.payload.get("token") == token for e in events) and (
            events[-1].type == EventType.WORKFLOW_SUSPENDED
        ):
            return
        time.sleep(0.02)
    raise AssertionError(f"run {run_id} never waited on hook {token!r}")


def test_start_steps_and_resume_hook_tell_observers_once(recorder: Recorder) -> None:
    runtime.configure(storage="memory://", **FAST)
    run_id = start(hooked_flow)
    _wait_hook(run_id, "journal:one")
    resume_hook("journal:one", "x")  # one atomic append, no delivery id
    _wait_hook(run_id, "journal:two")
    resume_hook("journal:two", "y", delivery_id="d-1")  # compare-and-set append
    assert get_result(run_id, timeout=10) == ["A", "x", "y", "B"]
    recorder.assert_told_once(run_id)
    assert recorder.statuses == [(run_id, "hooked_flow", RunStatus.COMPLETED)]


def test_cancel_tells_observers_once(recorder: Recorder) -> None:
    runtime.configure(storage="memory://", **FAST)
    run_id = start(waits_forever)
    _wait_hook(run_id, "journal:forever")
    assert cancel(run_id, "enough")
    _wait_status(run_id, RunStatus.CANCELLED)
    recorder.assert_told_once(run_id)
    assert recorder.statuses == [(run_id, "waits_forever", RunStatus.CANCELLED)]


def test_retry_tells_observers_once(recorder: Recorder) -> None:
    failures["left"] = 1
    runtime.configure(storage="memory://", **FAST)
    run_id = start(retried_flow)
    _wait_status(run_id, RunStatus.FAILED)
    assert retry_run(run_id)
    assert get_result(run_id, timeout=10) == "fine"
    recorder.assert_told_once(run_id)
    statuses = [s for rid, _, s in recorder.statuses if rid == run_id]
    assert statuses == [RunStatus.FAILED, RunStatus.COMPLETED]


def test_dispatched_steps_and_their_suspensions(
    dispatching_executor: None,  # noqa: F811  # the fixture imported above
    recorder: Recorder,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    runtime.configure(storage="memory://", executor="inprocess-dispatch", **FAST)
    executor = runtime.get_runtime().executor
    scheduled: list[tuple[str, datetime]] = []
    real = executor.schedule

    def schedule(run_id: str, at: datetime) -> None:
        scheduled.append((run_id, at))
        real(run_id, at)

    monkeypatch.setattr(executor, "schedule", schedule)
    run_id = start(gather_flow)
    assert get_result(run_id, timeout=20).startswith("a+b")
    events = get_events(run_id)
    # steps started and settled by the dispatch worker were observed like the engine's
    assert any(e.type == EventType.STEP_STARTED and e.payload.get("dispatched") for e in events)
    recorder.assert_told_once(run_id)
    assert recorder.statuses == [(run_id, "gather_flow", RunStatus.COMPLETED)]
    suspensions = [
        (run_id, datetime.fromisoformat(e.payload["wake_at"]))
        for e in events
        if e.type == EventType.WORKFLOW_SUSPENDED and e.payload.get("wake_at")
    ]
    assert suspensions and scheduled == suspensions


def test_a_suspension_is_announced_once(monkeypatch: pytest.MonkeyPatch) -> None:
    runtime.configure(storage="memory://", **FAST)
    rt = runtime.get_runtime()
    assert not hasattr(rt, "wake_hint")  # one mechanism: the executor's schedule()
    scheduled: list[tuple[str, datetime]] = []
    real = rt.executor.schedule

    def schedule(run_id: str, at: datetime) -> None:
        scheduled.append((run_id, at))
        real(run_id, at)

    monkeypatch.setattr(rt.executor, "schedule", schedule)
    run_id = start(napper, 0.05, 0.05)  # the local executor really wakes it, twice
    assert get_result(run_id, timeout=10) == "rested"
    suspensions = [
        (run_id, datetime.fromisoformat(e.payload["wake_at"]))
        for e in get_events(run_id)
        if e.type == EventType.WORKFLOW_SUSPENDED
    ]
    assert len(suspensions) == 2
    assert scheduled == suspensions


@pytest.mark.anyio
async def test_each_suspension_is_announced_once_for_its_due_time(
    workflow_env: WorkflowEnvironment, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The times announced are the sleeps' due times (virtual time, realistic naps)."""
    executor = workflow_env.runtime.executor
    scheduled: list[tuple[str, datetime]] = []
    real = executor.schedule

    def schedule(run_id: str, at: datetime) -> None:
        scheduled.append((run_id, at))
        real(run_id, at)

    monkeypatch.setattr(executor, "schedule", schedule)
    began = workflow_env.now()
    run_id = await workflow_env.start(napper, "30m", "2h")
    assert await workflow_env.result(run_id) == "rested"
    suspensions = [
        (run_id, datetime.fromisoformat(e.payload["wake_at"]))
        for e in await workflow_env.events(run_id)
        if e.type == EventType.WORKFLOW_SUSPENDED
    ]
    assert suspensions == [
        (run_id, began + timedelta(minutes=30)),
        (run_id, began + timedelta(hours=2, minutes=30)),
    ]
    assert scheduled == suspensions
    assert workflow_env.now() == began + timedelta(hours=2, minutes=30)


def test_rebase_tells_observers_of_the_outcome_it_keeps(recorder: Recorder) -> None:
    runtime.configure(storage="memory://", embedded_worker=False, **FAST)
    rt = runtime.get_runtime()
    run_id = start(waits_forever)
    result = rt.serializer.dumps("done")

    async def conflict() -> None:
        run = await rt.storage.get_run(run_id)
        activation = Activation(rt, run, await rt.storage.get_events(run_id), "w1")
        # an external event lands after the activation read the log
        await rt.journal.append(run_id, run.last_seq, [NewEvent(EventType.CANCEL_REQUESTED)])
        fact = NewEvent(
            EventType.STEP_COMPLETED, "1", {"name": "shout", "attempt": 1, "result": result}
        )
        with pytest.raises(_Restart):
            await activation._rebase([fact])

    rt.call(conflict)
    types = [e.type for e in get_events(run_id)]
    assert types == [
        EventType.WORKFLOW_STARTED,
        EventType.CANCEL_REQUESTED,
        EventType.STEP_COMPLETED,
    ]
    recorder.assert_told_once(run_id)


def test_fail_corrupt_tells_observers(recorder: Recorder) -> None:
    runtime.configure(storage="memory://", embedded_worker=False, **FAST)
    rt = runtime.get_runtime()
    run_id = start(waits_forever)

    async def fail() -> None:
        run = await rt.storage.get_run(run_id)
        await _fail_corrupt(rt, run, "w1", CorruptDataError("cannot decode"))

    rt.call(fail)
    assert get_run(run_id).status == RunStatus.FAILED
    assert [e.type for e in get_events(run_id)][-1] == EventType.WORKFLOW_FAILED
    recorder.assert_told_once(run_id)
    assert recorder.statuses == [(run_id, "waits_forever", RunStatus.FAILED)]
