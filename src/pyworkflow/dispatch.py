"""What workers of step-dispatching executors do (Celery, Ray).

Executor plugins only move ids around; these coroutines do the work and
keep storage the source of truth:

- :func:`activate_run` leases one run and activates it (replay, record new
  decisions, dispatch steps, suspend).
- :func:`run_dispatched_step` runs one attempt of a dispatched step: it takes
  the step's ``queued:<attempt>`` lease (so exactly one worker runs an
  attempt), records ``step_started`` with the worker's name, runs the body
  while renewing the lease, records the outcome and makes the run due.
- :func:`sweep` finds what a lost message would leave behind: due runs
  nobody activates (timers, expired activation leases) and dispatched steps
  whose worker died (expired step leases).

A duplicated message finds its work taken or done and is ignored; a lost one
only delays the run until the next sweep.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Sequence
from contextlib import AbstractAsyncContextManager
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import anyio
import attrs
from loguru import logger

from pyworkflow.engine import _fail_corrupt as fail_corrupt
from pyworkflow.engine import queued_owner, run_activation
from pyworkflow.errors import (
    ConcurrencyError,
    CorruptDataError,
    RunNotFoundError,
    SerializationError,
    StepNotFoundError,
)
from pyworkflow.leases import lease_keeper
from pyworkflow.models import Event, EventType, NewEvent, Run, RunPatch, utcnow
from pyworkflow.step import RetryPolicy, StepDefinition, get_step
from pyworkflow.stepexec import retry_bases, run_step_attempt, voided_seqs

if TYPE_CHECKING:
    from pyworkflow.runtime import Runtime
    from pyworkflow.schedules.firing import ScheduleFirer

__all__ = [
    "DISPATCH_PREFIX",
    "activate_run",
    "queued_owner",
    "run_dispatched_step",
    "sweep",
    "worker_id",
]

#: Lease owners of placeholder claims a sweep makes before sending an activation
#: message; any activation message may take such a claim over.
DISPATCH_PREFIX = "dispatch:"


def worker_id(name: str) -> str:
    """A lease owner unique to this process: ``name:pid:random``."""
    return f"{name}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


# ----- activations -----


async def activate_run(runtime: Runtime, run_id: str, owner: str) -> bool:
    """Lease ``run_id`` if it is due and activate it; False if there was nothing to do.

    The lease is renewed while the activation runs, from the lease keeper's
    thread (:mod:`pyworkflow.leases`: a blocked event loop cannot stop it);
    losing it cancels the activation (another worker recovered the run).
    """
    storage = runtime.storage
    lease_for = timedelta(seconds=runtime.settings.lease_seconds)
    run = await storage.claim_run(
        run_id, owner, utcnow(), lease_for, take_over_prefix=DISPATCH_PREFIX
    )
    if run is None:
        logger.bind(run_id=run_id).debug("activation message ignored: run not due or leased")
        return False
    keeper = lease_keeper(runtime)
    with anyio.CancelScope() as scope:

        def lost() -> None:
            logger.bind(run_id=run_id).warning("lease lost; stopping activation")
            scope.cancel()

        held = keeper.hold_run(run_id, owner, lease_for, lost)
        try:
            await run_activation(runtime, run, owner)
        finally:
            keeper.release(held)
    return True


# ----- dispatched steps -----


@attrs.define
class _StepView:
    """One step's history in a run's log."""

    scheduled: dict[int, Event] = attrs.field(factory=dict)
    started: set[int] = attrs.field(factory=set)
    retried: set[int] = attrs.field(factory=set)
    latest: int = 0
    resolved: bool = False
    retry_base: int = 0


def _view(history: Sequence[Event], step_id: str) -> _StepView:
    voided = voided_seqs(history)
    view = _StepView(retry_base=retry_bases(history, voided).get(step_id, 0))
    for event in history:
        if event.correlation_id != step_id or event.seq in voided:
            continue
        attempt = int(event.payload.get("attempt", 0))
        if event.type == EventType.STEP_SCHEDULED:
            view.scheduled[attempt] = event
            view.latest = max(view.latest, attempt)
        elif event.type == EventType.STEP_STARTED:
            view.started.add(attempt)
            view.latest = max(view.latest, attempt)
        elif event.type == EventType.STEP_RETRYING:
            view.retried.add(attempt)
        elif event.type in (EventType.STEP_COMPLETED, EventType.STEP_FAILED):
            view.resolved = True
    return view


async def _append_if(
    runtime: Runtime,
    run_id: str,
    step_id: str,
    event: NewEvent,
    accept: Callable[[_StepView], bool],
    patch: RunPatch | None = None,
    *,
    snapshot: tuple[Run, Sequence[Event]] | None = None,
    due: bool = False,
) -> tuple[Run, list[Event]] | None:
    """Append ``event`` if the run is live and ``accept`` holds on the step's
    history, re-checking after every concurrent append; None if refused.

    ``snapshot`` (the run and its log, as last seen) saves the first reads: a
    log that moved on since is caught by the append's expected seq, and read
    again. With ``due`` the append makes the run due and the executor is told.
    Returns the run and its log including ``event``: the next call's snapshot.
    """
    storage = runtime.storage
    while True:
        if snapshot is None:
            run = await storage.get_run(run_id)
            history: Sequence[Event] = await storage.get_events(run_id)
        else:
            (run, history), snapshot = snapshot, None
        if run.status.is_terminal:
            return None
        if not accept(_view(history, step_id)):
            return None
        last = history[-1].seq if history else 0
        try:
            seq = await runtime.journal.append(run_id, last, [event], patch, due=due)
        except ConcurrencyError:
            continue
        appended = Event(
            run_id, seq, event.type, event.correlation_id, event.timestamp, event.payload
        )
        return run, [*history, appended]


def _missing_step(name: str, error: Exception) -> tuple[StepDefinition, Callable[..., Any]]:
    """A stand-in that fails like the step would if this worker cannot run it."""

    def fail(*args: Any, **kwargs: Any) -> Any:
        raise error

    return StepDefinition(name, RetryPolicy()), fail


async def run_dispatched_step(
    runtime: Runtime, run_id: str, step_id: str, attempt: int, worker: str
) -> str:
    """Run attempt ``attempt`` of dispatched step ``step_id`` of ``run_id`` on this worker.

    ``worker`` names the worker in ``step_started`` (e.g. a Celery hostname).
    Returns what happened: ``"stale"`` (taken, superseded or settled
    elsewhere: ignored), ``"lost"`` (the lease was taken away mid-body: the
    outcome is dropped), or the type of the outcome event recorded or dropped.
    """
    storage = runtime.storage
    log = logger.bind(run_id=run_id, step_id=step_id, attempt=attempt, worker=worker)
    owner = f"{worker_id(worker)}:{attempt}"
    lease_for = timedelta(seconds=runtime.settings.lease_seconds)
    if not await storage.set_step_lease(
        run_id, step_id, owner, utcnow() + lease_for, if_owner=queued_owner(attempt)
    ):
        log.debug("step message ignored: attempt taken by another worker or superseded")
        return "stale"
    try:
        return await _run_leased(runtime, run_id, step_id, attempt, worker, owner, lease_for)
    except RunNotFoundError:
        log.warning("step message for an unknown run ignored")
        return "stale"
    finally:
        with anyio.CancelScope(shield=True):
            await storage.set_step_lease(run_id, step_id, None, None, if_owner=owner)


def _place_for(
    runtime: Runtime, definition: StepDefinition, run_id: str, step_id: str, attempt: int
) -> Callable[[], AbstractAsyncContextManager[None]] | None:
    if definition.queue is None:  # the common case: step_queues is not even imported
        return None
    from pyworkflow.step_queues import place_for

    return place_for(runtime, definition, run_id, step_id, attempt)


async def _run_leased(
    runtime: Runtime,
    run_id: str,
    step_id: str,
    attempt: int,
    worker: str,
    owner: str,
    lease_for: timedelta,
) -> str:
    storage = runtime.storage
    log = logger.bind(run_id=run_id, step_id=step_id, attempt=attempt, worker=worker)
    run = await storage.get_run(run_id)
    history = await storage.get_events(run_id)
    view = _view(history, step_id)
    scheduled = view.scheduled.get(attempt)
    if scheduled is None:
        log.warning("step message names an attempt that was never scheduled; ignored")
        return "stale"
    name = str(scheduled.payload.get("name"))
    try:
        definition, body = get_step(name)
    except StepNotFoundError as exc:
        log.error("{}", exc)
        definition, body = _missing_step(name, exc)
    try:
        serializer = runtime.serializer_for(run)  # the run keeps the one it started with
    except CorruptDataError as exc:  # its serializer's plugin is not installed here
        log.error("{}", exc)
        await fail_corrupt(runtime, run, owner, exc)
        return EventType.WORKFLOW_FAILED.value
    try:
        call = serializer.loads(str(scheduled.payload.get("input") or "{}"))
        args, kwargs = tuple(call.get("args", ())), dict(call.get("kwargs", {}))
    except (SerializationError, AttributeError, TypeError) as exc:
        definition, body = _missing_step(name, exc)
        args, kwargs = (), {}
    tags = {"dispatched": True, "worker": worker}
    started = NewEvent(EventType.STEP_STARTED, step_id, {"name": name, "attempt": attempt, **tags})

    def may_start(v: _StepView) -> bool:
        return not v.resolved and v.latest == attempt and attempt not in v.started

    seen = await _append_if(runtime, run_id, step_id, started, may_start, snapshot=(run, history))
    if seen is None:
        log.debug("step already started, settled or superseded; ignored")
        return "stale"
    log.info("dispatched step started")
    outcome: NewEvent | None = None
    keeper = lease_keeper(runtime)
    # the step lease is renewed from the keeper's thread, even while the body blocks
    # this loop; if it is lost anyway, a body still running is cancelled, and an
    # outcome already in hand is still offered to the log (may_settle decides)
    with anyio.CancelScope() as scope:
        held = keeper.hold_step(run_id, step_id, owner, lease_for, scope.cancel)
        try:
            outcome = await run_step_attempt(
                definition,
                body,
                args,
                kwargs,
                run_id=run_id,
                step_id=step_id,
                attempt=attempt,
                retry_base=view.retry_base,
                serializer=serializer,
                limit=runtime.settings.max_payload_bytes,
                extra=tags,
                place=_place_for(runtime, definition, run_id, step_id, attempt),
            )
        finally:
            keeper.release(held)
    if outcome is None:
        log.warning("step lease lost while running (the step was dispatched again)")
        return "lost"

    def may_settle(v: _StepView) -> bool:
        if v.resolved or attempt not in v.started:
            return False
        if outcome.type == EventType.STEP_COMPLETED:
            return True  # a late success still settles the step
        return v.latest == attempt and attempt not in v.retried

    due_now = RunPatch(set_wake=True, wake_at=utcnow())
    # the log as this worker left it: read again only if someone appended since
    settled = await _append_if(
        runtime, run_id, step_id, outcome, may_settle, due_now, snapshot=seen, due=True
    )
    if settled is None:
        log.info("step outcome dropped: settled elsewhere, superseded, or the run ended")
    return outcome.type.value


# ----- the sweep -----


async def sweep(runtime: Runtime, dispatcher: str, limit: int = 500) -> list[str]:
    """Ids of runs to send activations for; each is claimed under ``dispatch:<dispatcher>``.

    First fires due schedules (their new runs are announced like any start),
    makes due the runs of dispatched steps whose lease expired (their worker
    died, or the message was lost), then claims due runs whose lease is free
    or expired, for ``executor.dispatch_timeout`` seconds, and admits queued
    runs of limited queues (docs/queues.md) under the same placeholder claim.
    """
    storage = runtime.storage
    owner = f"{DISPATCH_PREFIX}{dispatcher}"
    await _fire_schedules(runtime, owner)
    now = utcnow()
    await wake_lost_steps(runtime, now, limit)
    lease_for = timedelta(seconds=runtime.executor.dispatch_timeout)
    claimed = await storage.claim_runs(owner, now, limit, lease_for)
    if len(claimed) < limit and any(c.limited for c in runtime.queue_configs.values()):
        from pyworkflow.queues import admit_queued

        # worker_concurrency counts by the admitting worker: a dispatcher admits for all of them
        claimed += await admit_queued(
            runtime, owner, now, limit - len(claimed), lease_for, worker=None
        )
    return [run.run_id for run in claimed]


async def wake_lost_steps(runtime: Runtime, now: datetime, limit: int = 500) -> int:
    """Make due the runs of dispatched steps whose lease expired; how many were woken.

    The step's worker died (or its message was lost): the woken activation
    finds the lease expired and dispatches the step again. A lease left over
    by an ended run is removed.
    """
    storage = runtime.storage
    woken = 0
    for lease in await storage.expired_step_leases(now, limit):
        log = logger.bind(run_id=lease.run_id, step_id=lease.step_id)
        try:
            run = await storage.get_run(lease.run_id)
        except RunNotFoundError:
            run = None
        if run is None or run.status.is_terminal:
            await storage.set_step_lease(
                lease.run_id, lease.step_id, None, None, if_owner=lease.owner
            )
            continue
        log.warning("dispatched step lease expired ({}); waking the run", lease.owner)
        patch = RunPatch(set_wake=True, wake_at=now)
        try:
            await runtime.journal.append(run.run_id, run.last_seq, [], patch)
        except ConcurrencyError:
            continue  # the run moved on; the next look sees it again
        woken += 1
    return woken


_firers: dict[tuple[int, str], ScheduleFirer] = {}


async def _fire_schedules(runtime: Runtime, owner: str) -> None:
    """Fire the schedules due now (one firer per runtime and dispatcher, kept between sweeps)."""
    from pyworkflow.schedules.firing import ScheduleFirer

    key = (id(runtime), owner)
    firer = _firers.get(key)
    if firer is None or firer.runtime is not runtime:
        firer = _firers[key] = ScheduleFirer(runtime, owner)
    await firer.fire_due()
