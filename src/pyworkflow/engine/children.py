"""The activation's part in child workflows (issue 15; DESIGN §12, child runs).

- **Start** (:meth:`Children.start_child`): a child operation takes the next
  correlation id; the child's run id is derived from the parent's run id and
  that id (:func:`child_run_id`). ``child_workflow_started`` (name, child run
  id, parent-close policy, input) is buffered, and the child is created only
  after that event is flushed (:meth:`Children._children_recorded`), with the
  child id as idempotency key: a replay, a crash or two racing workers all land
  on one child. Creating first could let a fast child's end reach the parent's
  log before its start.
- **End**: the child's last run (a child that continues as new passes the link
  on) appends ``child_workflow_completed`` / ``child_workflow_failed`` to the
  parent's log with the parent's correlation id and makes the parent due
  (:func:`notify_parent`); both are external events, so a running parent
  activation replays them in.
- **Repair**: a parent suspended with open children wakes at least every
  :func:`check_interval` (``check_children_at`` in ``workflow_suspended``);
  then, and after an activation that ended without suspending (a crash,
  perhaps between recording a child and creating it), it looks at each open
  child (:meth:`Children._check_children`): a missing child is created, an
  ended one whose notification was lost is taken as if it had arrived.
- **Parent end**: when the parent ends (completes, fails, is cancelled, times
  out, continues as new) each open child gets its parent-close policy
  (:func:`close_child`): ``request_cancel`` appends ``cancel_requested``,
  ``terminate`` ends it ``cancelled`` at once (hooks disposed, its own children
  closed by their policies), ``abandon`` leaves it running. The ending event
  lists them (``children``).
"""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import anyio

from pyworkflow.engine.child_runs import (
    close_child,
    last_of_chain,
    listed,
    notify_parent,
    open_children,
    outcome_event,
)
from pyworkflow.engine.state import _RUN_ENDS, ActivationState, _Discarded, _Op
from pyworkflow.errors import RunNotFoundError
from pyworkflow.models import EXTERNAL_EVENTS, Event, EventType, NewEvent, Run, RunStatus, utcnow
from pyworkflow.queues import placement
from pyworkflow.serialization import dumps_call_limited
from pyworkflow.workflow import registered_workflows

if TYPE_CHECKING:
    from pyworkflow.runtime import Runtime
    from pyworkflow.workflow import WorkflowDefinition

__all__ = ["Children", "check_interval", "child_run_id"]

CHILD = "child"
_STARTED = EventType.CHILD_WORKFLOW_STARTED
_ENDS = frozenset({EventType.CHILD_WORKFLOW_COMPLETED, EventType.CHILD_WORKFLOW_FAILED})
_CANCEL_KIND = "cancel_child"
_WF_STARTED = EventType.WORKFLOW_STARTED
#: Events that end a run for good (``workflow_retried`` starts it again).
_ENDED = _RUN_ENDS - {EventType.WORKFLOW_RETRIED}


def child_run_id(parent_run_id: str, correlation_id: str) -> str:
    """The run id of the child started by operation ``correlation_id`` of ``parent_run_id``."""
    return hashlib.sha256(f"child:{parent_run_id}:{correlation_id}".encode()).hexdigest()[:32]


def check_interval(runtime: Runtime) -> timedelta:
    """How often a parent with open children wakes to look at them (lost notifications)."""
    return timedelta(seconds=max(60.0, 10 * runtime.settings.lease_seconds))


class Children(ActivationState):
    """Mixin of :class:`~pyworkflow.engine.activation.Activation`: child workflows."""

    if TYPE_CHECKING:  # of the activation's other mixins (Replay, WorkflowCalls)

        def _next(
            self, kind: str, name: str, decisions: frozenset[EventType]
        ) -> tuple[str, list[Event]]: ...
        def _deliver(self, event: Event | NewEvent) -> None: ...
        def _step_ready(self) -> None: ...
        def record_value(self, kind: str, produce: Any) -> Any: ...

    def start_child(
        self,
        name: str,
        definition: WorkflowDefinition | None,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        policy: str,
    ) -> tuple[str, str, Any]:
        """The child operation: (correlation id, child run id, the future of its result)."""
        if definition is not None:
            self.runtime.executor.check_startable(definition)  # e.g. __main__ on Celery
        cid, recorded = self._next("child workflow", name, frozenset({_STARTED}))
        op = _Op(cid, CHILD, self.loop.create_future())
        op.child_run_id = child_run_id(self.run_id, cid)
        if recorded:
            op.child_run_id = str(recorded[0].payload.get("child_run_id", op.child_run_id))
            if not any(e.type in _ENDS for e in recorded):
                self.open[cid] = op
        else:
            what = f"input of child workflow {name!r}"
            data = dumps_call_limited(self.serializer, args, kwargs, limit=self.limit, what=what)
            version = definition.version if definition is not None else None
            payload = {
                "name": name,
                "child_run_id": op.child_run_id,
                "policy": policy,
                "version": version,
                "input": data,
            }
            self.buffer.append(NewEvent(_STARTED, cid, payload))
            self.to_create[cid] = (op.child_run_id, name, version, data, definition)
            self.open[cid] = op
        self.ops[cid] = op
        return cid, op.child_run_id, op.future

    def cancel_child(self, cid: str) -> None:
        """Record a cancellation of child operation ``cid``; it is requested once recorded."""
        if self.discarded:
            raise _Discarded
        op = self.ops[cid]
        live = str(self.counter + 1) not in self.by_cid
        child = self.record_value(_CANCEL_KIND, lambda: op.child_run_id)
        if live and not op.future.done():
            self.to_cancel[str(self.counter)] = str(child)
        elif not live:
            self.cancel_recorded.add(cid)

    async def _children_recorded(self, events: list[NewEvent]) -> None:
        """After a flush: create the children and request the cancellations it recorded."""
        creates: list[tuple[str, tuple[str, str, str | None, str, Any]]] = []
        cancels: list[str] = []
        for event in events:
            cid = event.correlation_id or ""
            if event.type is _STARTED and cid in self.to_create:
                creates.append((cid, self.to_create.pop(cid)))
            elif event.type is EventType.VALUE_RECORDED and cid in self.to_cancel:
                cancels.append(self.to_cancel.pop(cid))
        if len(creates) == 1:
            await self._create_child(*creates[0])
        elif creates:  # at once: a storage that groups concurrent writes commits them together
            async with anyio.create_task_group() as tg:
                for cid, spec in creates:
                    tg.start_soon(self._create_child, cid, spec)
        reason = f"cancelled by its parent run {self.run_id}"
        for child in cancels:
            await close_child(self.runtime, child, "request_cancel", reason)

    async def _create_child(
        self, cid: str, spec: tuple[str, str, str | None, str, WorkflowDefinition | None]
    ) -> None:
        child_id, name, version, data, definition = spec
        now = utcnow()
        queue = definition.queue if definition is not None else None
        run = Run(
            run_id=child_id,
            workflow_name=name,
            workflow_version=version,
            input=data,
            serializer=self.run.serializer,  # the parent decodes its result with it
            created_at=now,
            updated_at=now,
            idempotency_key=child_id,
            parent_run_id=self.run_id,
            # a child of a workflow whose queue has limits waits in it (docs/queues.md)
            **placement(self.runtime, queue, 0, now),
        )
        payload: dict[str, Any] = {
            "workflow": name,
            "version": version,
            "parent_run_id": self.run_id,
            "parent_correlation_id": cid,
        }
        timeout = definition.timeout if definition is not None else None
        if timeout is not None:
            payload["timeout"] = timeout.total_seconds()
            payload["deadline"] = (now + timeout).isoformat()
        _, created = await self.journal.create(
            run, [NewEvent(EventType.WORKFLOW_STARTED, None, payload, now)]
        )
        self.log.bind(child_run_id=child_id).debug(
            "child run {} {}", child_id, "started" if created else "already exists"
        )

    def _ended_already(self) -> bool:
        """Whether the log ends the run already: a parent terminated it after it was claimed."""
        history = self.history
        return bool(history) and history[-1].type in _ENDED

    def _children_check_due(self) -> bool:
        """Whether this activation looks at its open children (see the module's docstring)."""
        for event in reversed(self.history):
            if event.type in EXTERNAL_EVENTS:
                continue
            if event.type is not EventType.WORKFLOW_SUSPENDED:
                return True  # the last activation did not suspend: a crash, perhaps
            at = event.payload.get("check_children_at")
            return at is not None and utcnow() >= datetime.fromisoformat(str(at))
        return True

    async def _check_children(self) -> None:
        """Create missing children; take the outcome of ended ones whose notice was lost."""
        ops = [
            op
            for op in self.open.values()
            if op.kind == CHILD and not op.future.done() and op.cid in self.by_cid
        ]
        if not ops:
            return
        if not self._children_check_due():
            # a child whose cancel the log records is looked at on every activation until it
            # ends: the request may have been lost after the record was stored
            ops = [op for op in ops if op.cid in self.cancel_recorded]
        for op in ops:
            assert op.child_run_id is not None
            started = self.by_cid[op.cid][0].payload
            try:
                run = await last_of_chain(self.runtime, op.child_run_id)
            except RunNotFoundError:
                name = str(started.get("name"))
                definition = registered_workflows().get(name)
                version = started.get("version")
                spec = (op.child_run_id, name, version, str(started.get("input")), definition)
                self.log.bind(child_run_id=op.child_run_id).warning(
                    "child run {} was recorded but not created; creating it", op.child_run_id
                )
                await self._create_child(op.cid, spec)
                continue
            if not run.status.is_terminal:
                if op.cid in self.cancel_recorded:
                    await self._ensure_cancel_requested(run.run_id)
                continue
            self.log.bind(child_run_id=run.run_id).warning(
                "child run {} ended but its parent was not told; taking its outcome", run.run_id
            )
            event = outcome_event(self.runtime, run, op.cid, str(started.get("name")), {})
            self.buffer.append(event)
            self._deliver(event)
            self._step_ready()

    async def _ensure_cancel_requested(self, child_id: str) -> None:
        """Request the recorded cancellation of a running child again, unless its log has it.

        ``handle.cancel()`` records its intent, then requests the cancel after the
        record is stored; an activation that crashed in between lost the request.
        """
        events = await self.storage.get_events(child_id)
        if any(e.type is EventType.CANCEL_REQUESTED for e in events):
            return
        self.log.bind(child_run_id=child_id).warning(
            "the cancel of child run {} was recorded but not requested; requesting it", child_id
        )
        await close_child(
            self.runtime, child_id, "request_cancel", f"cancelled by its parent run {self.run_id}"
        )

    def _children_wake(self, wake_at: datetime | None) -> tuple[datetime | None, dict[str, Any]]:
        """The suspension's wake time with open children, and what ``workflow_suspended`` notes."""
        if not any(op.kind == CHILD and not op.future.done() for op in self.open.values()):
            return wake_at, {}
        check = utcnow() + check_interval(self.runtime)
        notes = {
            "check_children_at": check.isoformat(),
            "timer_at": wake_at.isoformat() if wake_at else None,
        }
        return (check if wake_at is None or check < wake_at else wake_at), notes

    def _children_to_close(self) -> list[dict[str, Any]]:
        """The children still open as the run ends (with their policies), for its end event."""
        return listed(open_children([*self.history, *self.buffer]))

    async def _close_children(self, children: list[dict[str, Any]], status: RunStatus) -> None:
        """Apply each open child's parent-close policy; the run has ended with ``status``."""
        reason = f"parent run {self.run_id} ended {status.value}"
        for child in children:
            done = await close_child(
                self.runtime, str(child["run_id"]), str(child["policy"]), reason
            )
            self.log.bind(child_run_id=child["run_id"]).info("child run: {}", done)

    async def _notify_parent(self, status: RunStatus, payload: dict[str, Any]) -> None:
        """This run ended (not by continuing as new): tell its parent, if it has one."""
        parent = self.run.parent_run_id
        if parent is None or status is RunStatus.CONTINUED:
            return
        started = next((e.payload for e in self.history if e.type is _WF_STARTED), {})
        cid = started.get("parent_correlation_id")
        if cid is None:
            return
        ended = Run(
            run_id=self.run_id,
            workflow_name=self.workflow_name,
            status=status,
            input="",
            serializer=self.run.serializer,
            created_at=self.run.created_at,
            updated_at=self.run.updated_at,
        )
        event = outcome_event(self.runtime, ended, str(cid), self.workflow_name, payload)
        try:
            await notify_parent(self.runtime, parent, event)
        except Exception:  # the parent's periodic look at its children repairs it
            self.log.bind(parent_run_id=parent).exception("could not tell the parent run")
