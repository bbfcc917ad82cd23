"""The activation's part in the workflow timeout (issue 15; DESIGN §12, workflow timeouts).

A run started with a timeout (``start_workflow(..., timeout=)``,
``@workflow(timeout=)``, ``Workflow.timeout``) records its deadline, start
time plus timeout, in its ``workflow_started`` event. That deadline is the
run's durable timer, kept in the same index as sleeps and retry back-offs
(the run's ``wake_at``), with no row of its own:

- every suspension wakes the run no later than the deadline (a run waiting
  only on a hook, or on a step dispatched to another worker, wakes then);
- an activation that begins at or after the deadline ends the run without
  running workflow code (a run whose workers were down meanwhile included);
- while an activation runs steps, its wait for their outcomes ends at the
  deadline too (by the runtime's clock); past it the activation raises
  :class:`TimedOut`, its running steps are cancelled with its task group,
  and the run ends.

Ending a timed-out run appends ``workflow_timed_out`` (the deadline, the
timeout, the step attempts cancelled here and those left running on other
workers) and then ``workflow_failed`` with a
:class:`~pyworkflow.errors.WorkflowTimeoutError`: the run's status is
``failed``. Live hooks are disposed; children still open get their
parent-close policy, as at any end of the run (``Live._end``,
:mod:`pyworkflow.engine.children`). A dispatched step that reports after
the end finds the run ended and its outcome is dropped
(:mod:`pyworkflow.dispatch`).

``runs retry`` on a timed-out run gives it a fresh timeout, measured from
the retry (its ``workflow_retried`` event).
"""

from __future__ import annotations

import contextlib
import functools
import math
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from pyworkflow.engine.state import _STEP_FACTS, ActivationState
from pyworkflow.errors import WorkflowTimeoutError
from pyworkflow.models import Event, EventType, NewEvent, RunPatch, RunStatus, utcnow

__all__ = ["Deadline", "TimedOut", "carried_timeout"]

_STARTED = EventType.WORKFLOW_STARTED
_RETRIED = EventType.WORKFLOW_RETRIED


class TimedOut(Exception):
    """Raised in the live loop when the run's deadline has passed: end the run."""


class Deadline(ActivationState):
    """Mixin of :class:`~pyworkflow.engine.activation.Activation`: the workflow timeout."""

    @functools.cached_property
    def run_timeout(self) -> timedelta | None:
        """The run's workflow timeout (None: the run has none)."""
        started = self._started_payload()
        seconds = started.get("timeout")
        return None if seconds is None else timedelta(seconds=float(seconds))

    @functools.cached_property
    def run_deadline(self) -> datetime | None:
        """When the run's timeout runs out: its start (or last retry) plus the timeout."""
        text = self._started_payload().get("deadline")
        if text is None:
            return None
        deadline = datetime.fromisoformat(str(text))
        timeout = self.run_timeout
        if timeout is not None:
            for event in self.history:  # a retried run is given its timeout again
                if event.type is _RETRIED:
                    deadline = max(deadline, event.timestamp + timeout)
        return deadline

    @property
    def scheduled_at(self) -> datetime | None:
        """The schedule tick that started the run (its ``workflow_started`` payload), or None.

        Read here because this mixin owns the started payload (``pyworkflow.scheduled_at()``).
        """
        text = self._started_payload().get("scheduled_at")
        return None if text is None else datetime.fromisoformat(str(text))

    def _started_payload(self) -> Any:
        history = self.history
        if history and history[0].type is _STARTED:
            return history[0].payload
        for event in history:
            if event.type is _STARTED:
                return event.payload
        return {}

    def _has_timeout(self) -> bool:
        """Whether the run has a workflow timeout."""
        return self.run_deadline is not None

    def _deadline_scope(self) -> contextlib.AbstractContextManager[object]:
        """A scope that ends its block at the run's deadline, by the runtime's clock."""
        deadline = self.run_deadline
        if deadline is None:
            return contextlib.nullcontext()
        return self.runtime.clock.move_on_until(deadline, math.inf)

    def _deadline_passed(self) -> bool:
        """Whether the run has a deadline and the runtime's clock has reached it."""
        deadline = self.run_deadline
        return deadline is not None and utcnow() >= deadline

    def _check_deadline(self) -> None:
        """Raise :class:`TimedOut` if the run's deadline has passed."""
        if self._deadline_passed():
            raise TimedOut

    def _until_deadline(self, due: datetime | None) -> datetime | None:
        """``due``, brought forward to the deadline if that comes first."""
        deadline = self.run_deadline
        if deadline is None:
            return due
        return deadline if due is None or deadline < due else due

    def _timed_out(self) -> tuple[EventType, RunStatus, dict[str, Any], RunPatch]:
        """Buffer the events of the timeout; the arguments of ``Live._end`` that end the run.

        Kept from the buffer: step outcomes and hook events (as a failure
        keeps them). Added: ``hook_disposed`` for hooks the log holds live
        that this activation did not create again (it may have run no
        workflow code), then ``workflow_timed_out``.
        """
        deadline, timeout = self.run_deadline, self.run_timeout
        assert deadline is not None and timeout is not None
        cancelled, dispatched = self._steps_in_flight()
        keep = _STEP_FACTS | {EventType.HOOK_CREATED, EventType.HOOK_DISPOSED}
        self.buffer = [e for e in self.buffer if e.type in keep]
        live: dict[str, str] = {}
        for event in self.history:
            cid = event.correlation_id or ""
            if event.type is EventType.HOOK_CREATED and cid not in self.hooks:
                live[cid] = str(event.payload.get("token"))
            elif event.type is EventType.HOOK_DISPOSED:
                live.pop(cid, None)
        for cid, token in live.items():
            self.buffer.append(
                NewEvent(EventType.HOOK_DISPOSED, cid, {"name": "hook", "token": token})
            )
        seconds = timeout.total_seconds()
        self.buffer.append(
            NewEvent(
                EventType.WORKFLOW_TIMED_OUT,
                None,
                {
                    "deadline": deadline.isoformat(),
                    "timeout": seconds,
                    "cancelled": cancelled,
                    "dispatched": dispatched,
                },
            )
        )
        error = WorkflowTimeoutError(
            f"run {self.run_id} of workflow {self.workflow_name!r} timed out: its timeout of "
            f"{_show(timeout)} ran out at {deadline.isoformat()}",
            run_id=self.run_id,
            timeout=seconds,
            deadline=deadline,
        )
        data, exc = self._dump_error(error, "workflow error")
        message = f"{type(exc).__name__}: {exc}"
        self.log.bind(deadline=deadline.isoformat(), cancelled=len(cancelled)).warning(
            "workflow timed out"
        )
        return (
            EventType.WORKFLOW_FAILED,
            RunStatus.FAILED,
            {"error": data, "error_message": message},
            RunPatch(error=data, error_message=message),
        )

    def _steps_in_flight(self) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """Step attempts without an outcome: those running here, those on other workers.

        Dispatched attempts come from the log as well as from this
        activation's operations: an activation that begins past the deadline
        runs no workflow code, so it has none.
        """
        dispatched: dict[str, dict[str, Any]] = {}
        events: list[Event | NewEvent] = [*self.history, *self.buffer]
        for event in events:
            cid = event.correlation_id or ""
            if event.type is EventType.STEP_SCHEDULED:
                dispatched[cid] = _step(
                    cid, event.payload.get("name"), event.payload.get("attempt")
                )
            elif event.type in _STEP_FACTS:
                dispatched.pop(cid, None)
        cancelled: list[dict[str, Any]] = []
        for op in self.open.values():
            if op.future.done() or op.definition is None:
                continue
            if op.running:
                cancelled.append(_step(op.cid, op.definition.name, op.attempt))
                dispatched.pop(op.cid, None)
            elif op.remote:
                dispatched[op.cid] = _step(op.cid, op.definition.name, op.attempt)
        return cancelled, list(dispatched.values())


def carried_timeout(history: Sequence[Event], now: datetime) -> dict[str, Any]:
    """``workflow_started`` fields: a run started ``now`` gets the timeout of ``history``'s run.

    ``continue_as_new`` passes them on: each run of a chain gets the same
    timeout (the start-time one, if the chain's first run was given one),
    measured from its own start. Empty when the run has no timeout.
    """
    for event in history:
        if event.type is _STARTED:
            seconds = event.payload.get("timeout")
            if seconds is None:
                return {}
            deadline = now + timedelta(seconds=float(seconds))
            return {"timeout": seconds, "deadline": deadline.isoformat()}
    return {}


def _step(step_id: str, name: Any, attempt: Any) -> dict[str, Any]:
    return {"step_id": step_id, "name": name, "attempt": attempt}


def _show(timeout: timedelta) -> str:
    """``timeout`` for people: ``1h``, ``90s``, ``1d 2h``, ``0.3s``."""
    seconds = timeout.total_seconds()
    if seconds < 60 or seconds != int(seconds):
        return f"{seconds:g}s"
    parts = []
    rest = int(seconds)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if rest >= size:
            parts.append(f"{rest // size}{unit}")
            rest %= size
    return " ".join(parts)
