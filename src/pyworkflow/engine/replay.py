"""Replay: deliver the log's outcomes into the workflow in order; detect divergence."""

from __future__ import annotations

import contextvars
from collections.abc import Coroutine
from typing import Any, cast

import attrs

from pyworkflow import context as ctxmod
from pyworkflow.engine.state import _RESOLUTIONS, ActivationState, _BadInput
from pyworkflow.errors import NonDeterminismError, StepFailedError
from pyworkflow.models import Event, EventType, NewEvent
from pyworkflow.workflow import get_workflow

_CANCEL_REQUESTED = EventType.CANCEL_REQUESTED
_HOOK_RECEIVED = EventType.HOOK_RECEIVED
_STEP_COMPLETED = EventType.STEP_COMPLETED


@attrs.frozen
class ReplayReport:
    """Outcome of replaying a run's log against the current workflow code.

    ``operations`` is how many recorded operations (steps, sleeps, hooks,
    recorded values) the code called and found in the log, before the
    divergence if there is one.
    """

    run_id: str
    deterministic: bool
    operations: int
    message: str | None = None
    position: str | None = None
    recorded: str | None = None
    called: str | None = None


class Replay(ActivationState):
    """Runs the workflow against the recorded outcomes and delivers outcomes into it."""

    def _deliver(self, event: Event | NewEvent) -> None:
        """Settle the operation ``event`` resolves, inside the workflow."""
        assert self.root is not None
        kind = event.type
        if kind == _CANCEL_REQUESTED:
            if not self.root.done():
                self.log.info("cancellation delivered into the workflow")
                self.root.cancel()
            return
        cid = event.correlation_id or ""
        if kind == _HOOK_RECEIVED:
            self._deliver_hook(cid, event)
            return
        op = self.ops.get(cid)
        if op is None:
            if self.root.done():
                return
            self.divergence = self.divergence or (cid, event.type.value, "nothing")
            self.diverged = self.diverged or (
                f"operation {cid}: the log has a {event.type.value} event but the workflow "
                "did not call that operation"
            )
            return
        self.open.pop(cid, None)
        op.running = False
        if op.future.done():
            return
        if kind == _STEP_COMPLETED:
            op.future.set_result(self._load_event(event, "result"))
        elif kind == EventType.STEP_FAILED:
            error = self._load_event(event, "error")
            if not isinstance(error, BaseException):
                error = StepFailedError(str(event.payload.get("error_message", "")))
            op.future.set_exception(error)
        elif event.type == EventType.WAIT_COMPLETED:
            op.future.set_result(None)

    def _deliver_hook(self, cid: str, event: Event | NewEvent) -> None:
        assert self.root is not None
        state = self.hooks.get(cid)
        if state is None:
            if not self.root.done():
                self.diverged = self.diverged or (
                    f"operation {cid}: the log has a payload for a hook the workflow did not create"
                )
            return
        value = self._load_event(event, "data")
        while state.waiters:
            waiter = state.waiters.popleft()
            if not waiter.done():
                waiter.set_result(value)
                return
        state.buffer.append(value)

    def _load_event(self, event: Event | NewEvent, key: str) -> Any:
        if type(event) is Event:
            return self._load(event, key)
        return self.serializer.loads(event.payload[key])  # written by this activation just now

    def _step_ready(self) -> None:
        self.loop.run_ready()
        if self.diverged is not None:
            raise NonDeterminismError(self.diverged)

    def _start_root(self) -> None:
        definition = get_workflow(self.workflow_name)
        payload = self.serializer.loads(self.run.input) if self.run.input else {}
        args = tuple(payload.get("args", ()))
        kwargs = dict(payload.get("kwargs", {}))
        body = definition.make_body()
        context = contextvars.copy_context()
        # the Activation composing this mixin is the WorkflowContext (engine/context.py)
        context.run(ctxmod._workflow.set, cast("ctxmod.WorkflowContext", self))
        try:
            coro: Coroutine[Any, Any, Any] = body(*args, **kwargs)  # type: ignore[assignment]  # workflow bodies are async functions
        except TypeError as exc:  # the input does not fit the workflow's signature
            raise _BadInput(exc) from exc
        self.root = self.loop.create_task(coro, context=context)

    def _replay(self) -> None:
        """Run the workflow against the recorded outcomes, in log order."""
        self._step_ready()
        for event in self.history:
            if event.type in _RESOLUTIONS:
                self._deliver(event)
                self._step_ready()
        self.replaying = False

    def check(self) -> ReplayReport:
        """Replay without side effects (nothing is run or written); report divergence."""
        try:
            self._start_root()
            self._replay()
        except NonDeterminismError as exc:
            cid, recorded, called = self.divergence or ("?", "?", "?")
            replayed = self._replayed(int(cid) - 1 if cid.isdigit() else None)
            return ReplayReport(self.run_id, False, replayed, str(exc), cid, recorded, called)
        finally:
            self._discard()
        return ReplayReport(self.run_id, True, self._replayed())

    def _replayed(self, last: int | None = None) -> int:
        """How many operations the code called (up to id ``last``) that the log holds.

        Counted from the call counter and the log, which outlive ``_discard()``.
        """
        upto = self.counter if last is None else min(last, self.counter)
        return sum(1 for n in range(1, upto + 1) if str(n) in self.by_cid)
