"""Replay: deliver the log's outcomes into the workflow in order; detect divergence."""

from __future__ import annotations

import contextvars
from collections.abc import Coroutine
from typing import Any, cast

import attrs

from pyworkflow import context as ctxmod
from pyworkflow.engine.state import _RESOLUTIONS, _RUN_ENDS, ActivationState, _BadInput, _describe
from pyworkflow.errors import ChildWorkflowError, NonDeterminismError, StepFailedError
from pyworkflow.models import Event, EventType, NewEvent
from pyworkflow.workflow import WorkflowDefinition, get_workflow

_CANCEL_REQUESTED = EventType.CANCEL_REQUESTED
_HOOK_RECEIVED = EventType.HOOK_RECEIVED
_STEP_COMPLETED = EventType.STEP_COMPLETED
#: Events that record a call of the workflow code (the first event of an operation).
_CALLS = frozenset(
    {
        EventType.STEP_STARTED,
        EventType.STEP_SCHEDULED,
        EventType.WAIT_CREATED,
        EventType.VALUE_RECORDED,
        EventType.HOOK_CREATED,
        EventType.MARKER_RECORDED,
        EventType.CHILD_WORKFLOW_STARTED,
    }
)


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

    #: the workflow to run; None looks the run's workflow name up in the registry
    definition: WorkflowDefinition | None = None

    def _deliver(self, event: Event | NewEvent) -> None:
        """Settle the operation ``event`` resolves, inside the workflow."""
        assert self.root is not None
        kind = event.type
        if kind == _CANCEL_REQUESTED:
            if not self.root.done():
                self._cancel_workflow()  # engine/shielding.py: deferred while shielded
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
        elif kind == EventType.CHILD_WORKFLOW_COMPLETED:
            op.future.set_result(self._load_event(event, "result"))
        elif kind == EventType.CHILD_WORKFLOW_FAILED:
            op.future.set_exception(self._child_error(event))

    def _cancel_workflow(self) -> None:
        """Deliver the run's cancellation into the workflow (overridden by ``Shielding``)."""
        assert self.root is not None
        self.log.info("cancellation delivered into the workflow")
        self.root.cancel()

    def _child_error(self, event: Event | NewEvent) -> ChildWorkflowError:
        """The :class:`ChildWorkflowError` of a failed child, caused by the child's error."""
        payload = event.payload
        cause = self._load_event(event, "error") if payload.get("error") else None
        child, name = payload.get("child_run_id", ""), payload.get("name", "")
        status = str(payload.get("status", "failed"))
        message = payload.get("error_message") or status
        return ChildWorkflowError(
            f"child run {child} of workflow {name!r} {status}: {message}",
            run_id=child,
            workflow=name,
            status=status,
            child_error=cause if isinstance(cause, BaseException) else None,
        )

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
        definition = self.definition or get_workflow(self.workflow_name)
        payload = self.serializer.loads(self.run.input) if self.run.input else {}
        args = tuple(payload.get("args", ()))
        kwargs = dict(payload.get("kwargs", {}))
        body = definition.make_body()
        context = contextvars.copy_context()
        # the Activation composing this mixin is the WorkflowContext (engine/context.py)
        context.run(ctxmod._workflow.set, cast("ctxmod.WorkflowContext", self))
        context.run(ctxmod._step.set, None)  # a step run earlier in this task set it
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
        """Replay without side effects (nothing is run or written); report divergence.

        Besides a call that does not match the log, it reports a recorded
        operation the code no longer calls, a completed run whose code now
        goes on calling, and an input that no longer fits the signature.
        """
        try:
            self._start_root()
            self._replay()
            self._check_end()
        except NonDeterminismError as exc:
            cid, recorded, called = self.divergence or ("?", "?", "?")
            replayed = self._replayed(int(cid) - 1 if cid.isdigit() else None)
            return ReplayReport(self.run_id, False, replayed, str(exc), cid, recorded, called)
        except _BadInput as exc:
            message = f"the run's input does not fit the workflow now: {exc}"
            return ReplayReport(
                self.run_id, False, 0, message, "input", "the run's input", str(exc)
            )
        finally:
            self._discard()
        return ReplayReport(self.run_id, True, self._replayed())

    def _check_end(self) -> None:
        """After the log: every recorded call was made, and a completed run ended here too."""
        assert self.root is not None
        called = self.counter
        for event in self.history:
            cid = event.correlation_id or ""
            if event.type in _CALLS and cid.isdigit() and int(cid) > called:
                self.divergence = (cid, _describe(event), "nothing")
                raise NonDeterminismError(
                    f"operation {cid}: the log has {_describe(event)} (event seq {event.seq}) "
                    f"but the workflow now {'ends' if self.root.done() else 'waits'} "
                    "without calling it"
                )
        ends = [e for e in self.history if e.type in _RUN_ENDS]
        if not ends or ends[-1].type != EventType.WORKFLOW_COMPLETED:
            return
        end = ends[-1]
        where = f"the end of the run (workflow_completed, event seq {end.seq})"
        last = max((int(c) for c in self.by_cid if c.isdigit()), default=0)
        if self.counter > last:  # it calls what the log does not have
            cid = str(last + 1)
            call = self._called(cid)
            self.divergence = (cid, "the end of the run", call)
            raise NonDeterminismError(
                f"operation {cid}: the log has {where} but the workflow now calls {call}"
            )
        if not self.root.done():
            self.divergence = ("end", "the end of the run", "nothing (it does not end)")
            raise NonDeterminismError(f"the log has {where} but the workflow now does not end")
        if not self.root.cancelled() and self.root.exception() is not None:
            error = self.root.exception()
            raised = f"raises {type(error).__name__}: {error}"
            self.divergence = ("end", "the end of the run", raised)
            raise NonDeterminismError(f"the log has {where} but the workflow now {raised}")

    def _called(self, cid: str) -> str:
        """What the code called as operation ``cid`` (one the log does not have)."""
        op = self.ops.get(cid)
        if op is not None:
            name = op.definition.name if op.definition else op.kind
            return f"{op.kind} {name!r}"
        return "hook 'hook'" if cid in self.hooks else "a recorded value"

    def _replayed(self, last: int | None = None) -> int:
        """How many operations the code called (up to id ``last``) that the log holds.

        Counted from the call counter and the log, which outlive ``_discard()``.
        """
        upto = self.counter if last is None else min(last, self.counter)
        return sum(1 for n in range(1, upto + 1) if str(n) in self.by_cid)
