"""The activation's part in continue-as-new (issue 15).

``pyworkflow.continue_as_new(*args, **kwargs)`` ends a run and starts the next
run of the same workflow with the new input; the runs form a chain a client
follows through the link, never by copying logs:

- At the call (:meth:`Continuation.continue_as_new`), the input is checked
  against the workflow's signature and serialized with the run's serializer
  and size limit; a bad input raises there, in the workflow. Then
  :class:`~pyworkflow.context.ContinueAsNew` (a ``BaseException``) unwinds the
  workflow.
- When the workflow ends with it (:meth:`Continuation._continue`, called from
  ``Live._finish``), the next run is created first, then this run ends with
  ``workflow_continued_as_new`` (``input``, ``next_run_id``) and the status
  ``continued``.

**Idempotent, not transactional.** The next run's id is derived from this
run's id (:func:`next_run_id`), and it is created with the idempotency key
:func:`continuation_key` of this run: a crash (or a lost lease, a conflicting
append) between "next run created" and "this run ended" replays this run,
which reaches ``continue_as_new`` again and finds the next run already there
(``Journal.create`` returns it, not created): one next run, whatever happens.
The order matters: ending this run first could lose the next run in a crash,
as nothing activates an ended run again. The next run's ``workflow_started``
carries ``continued_from``; its link back is also in its idempotency key, so
:func:`continued_from` reads it from the run row without reading any log.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, NoReturn

from pyworkflow.context import ContinueAsNew
from pyworkflow.engine.deadline import carried_timeout
from pyworkflow.engine.state import ActivationState, _Discarded
from pyworkflow.errors import PayloadTooLargeError, SerializationError
from pyworkflow.models import Event, EventType, NewEvent, Run, RunPatch, RunStatus, utcnow
from pyworkflow.serialization import dumps_call_limited
from pyworkflow.workflow import get_workflow

if TYPE_CHECKING:
    from pyworkflow.workflow import WorkflowDefinition

__all__ = ["Continuation", "continuation_key", "continued_from", "next_run_id", "signal_of"]

#: Prefix of the idempotency key of a run started by ``continue_as_new``.
_KEY_PREFIX = "pyworkflow:continued-from:"


def next_run_id(run_id: str) -> str:
    """The id of the run that ``run_id`` continues as (the same on every replay)."""
    return hashlib.sha256(f"continue-as-new:{run_id}".encode()).hexdigest()[:32]


def continuation_key(run_id: str) -> str:
    """The idempotency key of the run that ``run_id`` continues as."""
    return f"{_KEY_PREFIX}{run_id}"


def continued_from(run: Run) -> str | None:
    """The run that ``run`` continues (from its idempotency key), or None."""
    key = run.idempotency_key
    if key is not None and key.startswith(_KEY_PREFIX):
        return key[len(_KEY_PREFIX) :]
    return None


def continued_to(run: Run) -> str | None:
    """The run that ``run`` continued as, when it ended by ``continue_as_new``; else None."""
    return next_run_id(run.run_id) if run.status == RunStatus.CONTINUED else None


def carried_parent(history: Sequence[Event]) -> dict[str, Any]:
    """``workflow_started`` fields the next run keeps: a child's link to its parent."""
    for event in history:
        if event.type is EventType.WORKFLOW_STARTED:
            keys = ("parent_run_id", "parent_correlation_id")
            return {k: event.payload[k] for k in keys if k in event.payload}
    return {}


def signal_of(exc: BaseException) -> ContinueAsNew | None:
    """The :class:`ContinueAsNew` that ended the workflow with ``exc``, or None.

    ``exc`` is the signal itself, or an exception group holding it (the call
    was made in a task of an anyio task group); a group holding anything
    else too is a failure, not a continuation.
    """
    if isinstance(exc, ContinueAsNew):
        return exc
    if isinstance(exc, BaseExceptionGroup):
        matched, rest = exc.split(ContinueAsNew)
        if matched is not None and rest is None:
            first = matched.exceptions[0]
            return signal_of(first)
    return None


class Continuation(ActivationState):
    """Mixin of :class:`~pyworkflow.engine.activation.Activation`: continue-as-new."""

    if TYPE_CHECKING:  # of the activation's other mixins (Replay, Recording, Live)
        definition: WorkflowDefinition | None

        async def _flush(self, patch: RunPatch | None = None) -> None: ...

        async def _end(
            self, kind: EventType, status: RunStatus, payload: dict[str, Any], patch: RunPatch
        ) -> None: ...

    def continue_as_new(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> NoReturn:
        """Check and serialize the next run's input, then unwind the workflow."""
        if self.discarded:
            raise _Discarded
        definition = self.definition or get_workflow(self.workflow_name)
        definition.check_arguments(args, kwargs)
        what = f"input of workflow {self.workflow_name!r} continued as new"
        try:
            data = dumps_call_limited(self.serializer, args, kwargs, limit=self.limit, what=what)
        except PayloadTooLargeError:
            raise
        except SerializationError as exc:
            raise SerializationError(f"continue_as_new(): the {what}: {exc}") from exc
        raise ContinueAsNew(data)

    async def _continue(self, signal: ContinueAsNew) -> None:
        """Create the next run (idempotently), then end this one ``continued``.

        This run's hooks are disposed (and recorded so) before the next run
        exists, so that run may create the same hook tokens at once.
        """
        self._dispose_live_hooks()
        if self.buffer:
            await self._flush()
        definition = self.definition or get_workflow(self.workflow_name)
        next_id = next_run_id(self.run_id)
        now = utcnow()
        run = Run(
            run_id=next_id,
            workflow_name=self.workflow_name,
            workflow_version=definition.version,
            status=RunStatus.PENDING,
            input=signal.input,
            serializer=self.run.serializer,
            created_at=now,
            updated_at=now,
            idempotency_key=continuation_key(self.run_id),
            parent_run_id=self.run.parent_run_id,  # a child's next run is its parent's child
            wake_at=now,
            # a run of a queue hands its place on: the next run is admitted already (it
            # exists before this one ends, so the queue never counts one run too few)
            queue=self.run.queue,
            priority=self.run.priority,
            partition_key=self.run.partition_key,
            queue_rank=self.run.queue_rank,
            admitted_at=self.run.admitted_at,
            admitted_by=self.run.admitted_by,
        )
        started = NewEvent(
            EventType.WORKFLOW_STARTED,
            None,
            {
                "workflow": self.workflow_name,
                "version": definition.version,
                "continued_from": self.run_id,
                **carried_timeout(self.history, now),  # each run of the chain: the same timeout
                **carried_parent(self.history),  # and the same parent to tell at its end
            },
        )
        stored, created = await self.journal.create(run, [started])
        self.log.bind(next_run_id=stored.run_id).info(
            "continued as new run {}{}", stored.run_id, "" if created else " (already created)"
        )
        await self._end(
            EventType.WORKFLOW_CONTINUED_AS_NEW,
            RunStatus.CONTINUED,
            {"input": signal.input, "next_run_id": stored.run_id},
            RunPatch(),
        )
