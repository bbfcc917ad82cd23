"""The activation's part in event limits: a soft warning, a hard failure (issue 20).

Each append of a run's own events (an activation's flush) is checked against
the run's log length, ``seq`` (dense from 1, so the count of events):

- **soft limit** (``event_soft_limit``, default 10,000): the append that takes
  the log past it logs a warning, once per run (only one append crosses
  it), bound with the run id and workflow, suggesting ``continue_as_new``;
  ``pyworkflow runs show`` notes a run past it;
- **hard limit** (``event_hard_limit``, default 50,000): an append that would
  take the log past it is not made. The activation ends the run instead:
  ``workflow_failed`` with an :class:`~pyworkflow.errors.EventLimitError`
  (the limit and the count), in one append with what the buffer held that
  must not be lost (outcomes of step attempts that ran, hook records) and the
  hooks it disposes; new operations in the buffer (steps not yet started,
  sleeps, child runs not yet created) are dropped, so nothing ran that the
  log does not show. The ending append itself may pass the limit by those
  few events.

Ending appends (complete, fail, cancel, continue as new) are never refused:
a run at its limit can still end, and ``continue_as_new`` starts a fresh log.
Events written by others (hook payloads, cancellations, a dispatched step's
worker) are not counted against the limit when written; the next flush of the
run's own events counts them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from pyworkflow.engine.state import _STEP_FACTS, ActivationState
from pyworkflow.errors import EventLimitError
from pyworkflow.models import Event, EventType, RunPatch, RunStatus

if TYPE_CHECKING:
    from pyworkflow.models import Run
    from pyworkflow.runtime import Runtime

__all__ = ["EventLimitReached", "EventLimits"]

#: What the failing append keeps of the buffer: facts of work already done.
_KEEP = _STEP_FACTS | {EventType.HOOK_CREATED, EventType.HOOK_DISPOSED}


class EventLimitReached(Exception):
    """Raised by a flush that would take the log past ``event_hard_limit``: fail the run."""

    def __init__(self, events: int, limit: int) -> None:
        super().__init__(f"{events} events, over the limit of {limit}")
        self.events = events
        self.limit = limit


class EventLimits(ActivationState):
    """Checks each flush of the activation against the run's event limits."""

    def __init__(self, runtime: Runtime, run: Run, history: Sequence[Event], owner: str) -> None:
        super().__init__(runtime, run, history, owner)
        settings = runtime.settings
        #: ``event_soft_limit``: a flush past it goes through the checks of ``_flush``
        self.event_soft_limit = settings.event_soft_limit
        self.event_hard_limit = settings.event_hard_limit

    def _check_event_limit(self, adding: int) -> None:
        """Before appending ``adding`` events of the run's own: raise past the hard limit."""
        hard = self.event_hard_limit
        if self.seq + adding > hard:
            raise EventLimitReached(self.seq + adding, hard)

    def _note_event_count(self, before: int) -> None:
        """After an append took the log from ``before`` to ``self.seq`` events: warn once."""
        soft = self.event_soft_limit
        if before <= soft < self.seq:
            self.log.bind(events=self.seq, event_soft_limit=soft).warning(
                "run {} of workflow {!r} has {} events, past the soft limit of {} "
                "(event_soft_limit); a workflow that loops should call continue_as_new() "
                "to start a fresh log; at {} events (event_hard_limit) the run fails",
                self.run_id,
                self.workflow_name,
                self.seq,
                soft,
                self.event_hard_limit,
            )

    def _limit_failure(
        self, reached: EventLimitReached
    ) -> tuple[EventType, RunStatus, dict[str, Any], RunPatch]:
        """Trim the buffer to what must be kept; the arguments of ``Live._end`` that fail."""
        self.buffer = [e for e in self.buffer if e.type in _KEEP]
        self.to_create.clear()  # their child_workflow_started is dropped: never created
        self.to_cancel.clear()
        self.to_dispatch.clear()
        error = EventLimitError(
            f"run {self.run_id} of workflow {self.workflow_name!r} reached the event limit: "
            f"its log would hold {reached.events} events, over event_hard_limit = "
            f"{reached.limit}; call continue_as_new() in a workflow that loops, or raise "
            "event_hard_limit (retrying the run fails it again until then)",
            run_id=self.run_id,
            limit=reached.limit,
            events=reached.events,
        )
        data, exc = self._dump_error(error, "workflow error")
        message = f"{type(exc).__name__}: {exc}"
        self.log.bind(events=reached.events, event_hard_limit=reached.limit).error(
            "run failed: event limit reached"
        )
        return (
            EventType.WORKFLOW_FAILED,
            RunStatus.FAILED,
            {"error": data, "error_message": message, "event_limit": reached.limit},
            RunPatch(error=data, error_message=message),
        )
