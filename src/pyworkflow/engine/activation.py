"""Activation entry points: activate a run, back off, fail a corrupt run, check replay."""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING

import anyio
from loguru import logger

from pyworkflow.engine.children import Children
from pyworkflow.engine.context import WorkflowCalls
from pyworkflow.engine.continuation import Continuation
from pyworkflow.engine.deadline import Deadline
from pyworkflow.engine.hook_timeouts import HookTimeouts
from pyworkflow.engine.live import Live
from pyworkflow.engine.markers import Markers
from pyworkflow.engine.replay import ReplayReport
from pyworkflow.engine.shielding import Shielding
from pyworkflow.engine.state import _LostOwnership, _Restart
from pyworkflow.errors import CorruptDataError, SerializationError, WorkflowNotFoundError
from pyworkflow.models import Event, EventType, NewEvent, Run, RunPatch, RunStatus, utcnow

if TYPE_CHECKING:
    from pyworkflow import context as ctxmod
    from pyworkflow.runtime import Runtime


class Activation(
    Shielding, HookTimeouts, Children, Markers, Deadline, Continuation, WorkflowCalls, Live
):
    """One activation of one run: replay, then live work until suspension or the end."""


if TYPE_CHECKING:

    def _is_context(activation: Activation) -> ctxmod.WorkflowContext:
        return activation  # mypy checks that an Activation is a WorkflowContext


async def activate(
    runtime: Runtime, run: Run, owner: str, history: list[Event] | None = None
) -> None:
    """Run activations of ``run`` until it suspends, ends, or another owner appears.

    ``history`` is the run's whole log when the caller has it (a run this
    process just created): the first activation then reads nothing.
    """
    log = logger.bind(run_id=run.run_id, workflow=run.workflow_name)
    known: list[Event] = []
    while True:
        try:
            if history is None:
                history = await runtime.storage.get_events(run.run_id)
            activation = Activation(runtime, run, history, owner)
            known, history = history, None
            await activation.execute()
            return
        except _Restart:
            run = await runtime.storage.get_run(run.run_id)
            log.debug("external events arrived; replaying again")
            if known:  # logs are append-only: read only what came after what this one read
                newer = await runtime.storage.get_events(run.run_id, after_seq=known[-1].seq)
                history = [*known, *newer]
        except _LostOwnership:
            log.warning("another worker appended to this run; stopping this activation")
            # if this worker still holds the lease, let the run be claimed at once
            await runtime.storage.release_lease(run.run_id, owner)
            return
        except WorkflowNotFoundError as exc:
            # the run waits (a deploy may bring a worker that knows it), visibly
            from pyworkflow.unknown_workflow import note_unknown  # it imports this module

            await note_unknown(runtime, run, owner, exc)
            await back_off(runtime, run.run_id, owner)
            return
        except (CorruptDataError, SerializationError) as exc:
            log.error("corrupt data: {}", exc)
            await _fail_corrupt(runtime, run, owner, exc)
            return


async def run_activation(
    runtime: Runtime, run: Run, owner: str, history: list[Event] | None = None
) -> bool:
    """:func:`activate` as workers call it; True if the activation ran to its end.

    A crashing activation is logged and its run made due again only after a
    pause (no busy loop); one that crashed or was cancelled (lease lost,
    shutdown) releases its lease so another worker can recover the run at once.
    """
    finished = False
    try:
        await activate(runtime, run, owner, history)
        finished = True
    except Exception:
        logger.bind(run_id=run.run_id).exception("activation crashed; retrying it later")
        with anyio.CancelScope(shield=True):
            await back_off(runtime, run.run_id, owner)
    finally:
        if not finished:
            with anyio.CancelScope(shield=True):
                await runtime.storage.release_lease(run.run_id, owner)
    return finished


async def back_off(runtime: Runtime, run_id: str, owner: str) -> None:
    """Make ``run_id`` due again after a pause and release ``owner``'s lease (a crashed
    activation is retried, not in a busy loop)."""
    retry_at = utcnow() + timedelta(seconds=max(5.0, runtime.settings.poll_interval))
    patch = RunPatch(set_wake=True, wake_at=retry_at, release_lease=True)
    try:
        run = await runtime.storage.get_run(run_id)
        await runtime.journal.append(run_id, run.last_seq, [], patch, owner=owner)
    except Exception:  # the run stays due; the next claim retries it
        logger.bind(run_id=run_id).exception("could not back the run off")


async def _fail_corrupt(runtime: Runtime, run: Run, owner: str, exc: Exception) -> None:
    """Mark a run whose stored data cannot be decoded as failed, naming why."""
    message = f"CorruptDataError: {exc}"
    fresh = await runtime.storage.get_run(run.run_id)
    await runtime.journal.append(
        run.run_id,
        fresh.last_seq,
        [NewEvent(EventType.WORKFLOW_FAILED, None, {"error_message": message})],
        RunPatch(
            status=RunStatus.FAILED,
            error_message=message,
            completed_at=utcnow(),
            set_wake=True,
            wake_at=None,
            release_lease=True,
        ),
        owner=owner,
        workflow=run.workflow_name,
    )


async def check_replay(runtime: Runtime, run_id: str) -> ReplayReport:
    """Replay ``run_id``'s log against the workflow code now registered; no side effects."""
    run = await runtime.storage.get_run(run_id)
    history = await runtime.storage.get_events(run_id)
    return Activation(runtime, run, history, owner="replay-check").check()
