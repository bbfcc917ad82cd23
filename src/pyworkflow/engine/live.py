"""Live scheduling: run new work after replay, then suspend or end the run."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Coroutine
from contextlib import AbstractAsyncContextManager
from datetime import datetime
from typing import TYPE_CHECKING, Any

import anyio
import attrs

from pyworkflow.engine.continuation import signal_of
from pyworkflow.engine.deadline import TimedOut
from pyworkflow.engine.hook_timeouts import TIMERS
from pyworkflow.engine.limits import EventLimitReached
from pyworkflow.engine.sequential import SequentialSteps
from pyworkflow.engine.state import _STEP_FACTS, _BadInput, _Diverged, _Op
from pyworkflow.engine.step_leases import StepLeases
from pyworkflow.errors import (
    HookTokenConflictError,
    NonDeterminismError,
    SerializationError,
)
from pyworkflow.models import EventType, NewEvent, RunPatch, RunStatus, utcnow
from pyworkflow.serialization import dumps_limited
from pyworkflow.stepexec import run_step_attempt, runs_now

if TYPE_CHECKING:
    from pyworkflow.context import ContinueAsNew


class Live(SequentialSteps, StepLeases):
    """After replay: run new steps and timers until the workflow suspends or ends."""

    async def execute(self) -> None:
        if self._ended_already():  # terminated by its parent's close policy meanwhile
            self._discard()
            return
        if self._deadline_passed():  # the run's timeout ran out while nothing ran it
            try:
                await self._end(*self._timed_out())
            finally:
                self._discard()
            return
        try:
            self._start_root()
        except _BadInput as bad:
            self.log.error("cannot call the workflow: {}", bad.error)
            await self._fail(bad.error)
            self._discard()
            return
        if self.run.status == RunStatus.SUSPENDED:
            self.buffer.append(NewEvent(EventType.WORKFLOW_RESUMED))
        if self.run.status != RunStatus.RUNNING:
            self.pending_patch = RunPatch(status=RunStatus.RUNNING)
        try:
            self._replay()
            if any(op.remote for op in self.open.values()):
                await self._check_dispatched()
            await self._check_children()  # engine/children.py: missing or ended children
            failure: Exception | None = None
            async with contextlib.AsyncExitStack() as stack:
                tasks = _Tasks(stack)
                try:
                    await self._live(tasks)
                except Exception as exc:  # re-raised below, unwrapped from the task group
                    failure = exc
                if tasks.group is not None:
                    tasks.group.cancel_scope.cancel()
            if failure is not None:
                raise failure
            await self._finish()
        except TimedOut:  # its running steps were cancelled with the task group above
            await self._end(*self._timed_out())
        except EventLimitReached as reached:  # engine/limits.py: nothing of the batch appended
            await self._end(*self._limit_failure(reached))
        except NonDeterminismError as exc:
            self.log.error("non-determinism: {}", exc)
            await self._fail(exc)
        except HookTokenConflictError as exc:
            self.log.error("{}", exc)
            await self._fail(exc)
        finally:
            self._discard()

    async def _live(self, tasks: _Tasks) -> None:
        assert self.root is not None
        while not self.root.done():
            self._check_deadline()
            fired, launch, next_due = self._advance()
            if fired:
                for op in fired:  # sleeps, and hook timeouts (engine/hook_timeouts.py)
                    event = NewEvent(EventType.WAIT_COMPLETED, op.cid, {"name": op.kind})
                    self.buffer.append(event)
                    self._deliver(event)
                    self._step_ready()
                continue
            if launch:
                await self._flush()
                if len(launch) == 1 and len(self.open) == 1:
                    # the workflow waits on this step alone: run it inline, no task needed,
                    # and take its outcome at once (facts other steps reported before it
                    # are of operations already settled: the next pass drops them)
                    op = launch[0]
                    assert op.definition is not None and op.body is not None
                    timed = self._has_timeout()  # the step is cut short at the deadline
                    if runs_now(op.definition, self._body(op)) and not timed:
                        await self._run_lone(op)
                    else:
                        with self._deadline_scope():
                            self._take_fact(op, await self._attempt(op))
                    continue
                for op in launch:
                    await tasks.start_soon(self._run_step, op)
            if self._take_ready_facts():
                continue
            if not any(op.running for op in self.open.values()):
                await self._suspend(next_due)
                return
            await self._flush()
            # until the next timer by the runtime's clock (a virtual clock's move ends it too)
            cap = self.runtime.settings.poll_interval * 5
            with self.runtime.clock.move_on_until(self._until_deadline(next_due), cap):
                self._take_fact(*await self.facts_rx.receive())
                self._take_ready_facts()
                continue
            await self._check_external()

    if TYPE_CHECKING:  # engine/children.py (a mixin of the same activation)

        async def _check_children(self) -> None: ...
        def _ended_already(self) -> bool: ...
        def _children_wake(self, at: datetime | None) -> tuple[datetime | None, dict[str, Any]]: ...
        def _children_to_close(self) -> list[dict[str, Any]]: ...
        async def _close_children(self, children: list[dict[str, Any]], s: RunStatus) -> None: ...
        async def _notify_parent(self, status: RunStatus, payload: dict[str, Any]) -> None: ...

    if TYPE_CHECKING:  # engine/deadline.py (a mixin of the same activation)

        def _has_timeout(self) -> bool: ...
        def _deadline_scope(self) -> contextlib.AbstractContextManager[object]: ...
        def _deadline_passed(self) -> bool: ...
        def _check_deadline(self) -> None: ...
        def _until_deadline(self, due: datetime | None) -> datetime | None: ...
        def _timed_out(self) -> tuple[EventType, RunStatus, dict[str, Any], RunPatch]: ...

    def _take_ready_facts(self) -> bool:
        """Take every outcome already reported, without waiting; True if any."""
        took = False
        while True:
            try:
                item = self.facts_rx.receive_nowait()
            except anyio.WouldBlock:
                return took
            self._take_fact(*item)
            took = True

    def _advance(self) -> tuple[list[_Op], list[_Op], datetime | None]:
        fired: list[_Op] = []
        launch: list[_Op] = []
        next_due: datetime | None = None
        now: datetime | None = None  # read once, when an operation has a due time
        for op in list(self.open.values()):
            if op.future.done():
                self.open.pop(op.cid)
                continue
            if op.running or op.remote or op.child_run_id is not None:
                continue
            if op.due is not None:
                if now is None:
                    now = utcnow()
                if op.due > now:
                    next_due = op.due if next_due is None else min(next_due, op.due)
                    continue
            if op.kind in TIMERS:
                fired.append(op)
                continue
            assert op.definition is not None
            op.attempt += 1
            op.due = None
            op.started = False
            if self.dispatching and not self._lone_step_inline():
                op.remote = True
                self.buffer.append(
                    NewEvent(
                        EventType.STEP_SCHEDULED,
                        op.cid,
                        {
                            "name": op.definition.name,
                            "attempt": op.attempt,
                            "input": op.input,
                            # what the step waits for a worker with (runs show)
                            **(
                                {"resources": dict(op.definition.resources)}
                                if op.definition.resources
                                else {}
                            ),
                        },
                    )
                )
                self.to_dispatch.append(op)
                continue
            op.running = True
            self.buffer.append(
                NewEvent(
                    EventType.STEP_STARTED,
                    op.cid,
                    {
                        "name": op.definition.name,
                        "attempt": op.attempt,
                        "input": op.input,
                        "worker": self.runtime.executor.worker_name or self.owner,
                    },
                )
            )
            launch.append(op)
        return fired, launch, next_due

    def _lone_step_inline(self) -> bool:
        """Whether a ready step runs here although the executor dispatches steps.

        Only when the executor allows it (``Executor.inline_lone_steps``) and the
        workflow waits on that step alone: nothing else open (no other step, in
        flight or ready, and no timer), so no parallelism is lost.
        """
        executor = self.runtime.executor
        if not executor.inline_lone_steps:
            return False
        waiting = [op for op in self.open.values() if not op.future.done()]
        if len(waiting) != 1:
            return False
        definition = waiting[0].definition
        return definition is None or executor.inlines(definition)

    async def _run_step(self, op: _Op) -> None:
        self.facts_tx.send_nowait((op, await self._attempt(op)))

    def _attempt(self, op: _Op) -> Coroutine[Any, Any, NewEvent]:
        """The attempt of ``op`` to await (a plain call: no coroutine frame of its own)."""
        assert op.definition is not None and op.body is not None
        return run_step_attempt(
            op.definition,
            self._body(op),
            op.args,
            op.kwargs,
            run_id=self.run_id,
            step_id=op.cid,
            attempt=op.attempt,
            retry_base=self.retry_base.get(op.cid, 0),
            serializer=self.serializer,
            limit=self.limit,
            place=self._place(op) if op.definition.queue is not None else None,
        )

    def _body(self, op: _Op) -> Callable[..., Any]:
        """What an attempt of ``op`` run by this activation calls: the step's body, or, on
        a dispatching executor (an inline lone step), the executor's stand-in for it (Ray)."""
        assert op.definition is not None and op.body is not None
        if self.dispatching:
            return self.runtime.executor.inline_body(op.definition, op.body)
        return op.body

    def _place(self, op: _Op) -> Callable[[], AbstractAsyncContextManager[None]] | None:
        """The place of ``op``'s step queue to hold while it runs (None: its queue has no limit)."""
        from pyworkflow.step_queues import place_for

        assert op.definition is not None
        return place_for(self.runtime, op.definition, self.run_id, op.cid, op.attempt)

    async def _suspend(self, wake_at: datetime | None) -> None:
        assert self.root is not None
        # wake when a dispatched step's lease would run out, to re-dispatch a lost one
        deadlines = list(self.step_deadlines.values())
        if self.to_dispatch:
            deadlines.append(utcnow() + self.dispatch_timeout)
        if deadlines:
            wake_at = min([*deadlines, *([wake_at] if wake_at else [])])
        if wake_at is None and not self.open and not self._hook_waiting():
            if self.loop.has_timers():
                error: BaseException = RuntimeError(
                    "workflow code awaited asyncio.sleep() or a timeout; "
                    "use pyworkflow.sleep() for durable waits"
                )
            else:
                error = RuntimeError(
                    "workflow is blocked on something that is not a PyWorkflow operation "
                    "(steps, sleep, hooks); it can never resume"
                )
            await self._fail(error)
            return
        wake_at = self._until_deadline(wake_at)  # a run with a timeout wakes by its deadline
        wake_at, notes = self._children_wake(wake_at)  # and by its next look at its children
        at = wake_at.isoformat() if wake_at else None
        self.buffer.append(NewEvent(EventType.WORKFLOW_SUSPENDED, None, {"wake_at": at, **notes}))
        await self._flush(
            RunPatch(status=RunStatus.SUSPENDED, set_wake=True, wake_at=wake_at, release_lease=True)
        )
        await self._dispatch()
        self.journal.suspended(self.run_id, wake_at)
        self.log.debug("suspended until {}", wake_at)

    if TYPE_CHECKING:  # engine/continuation.py (a mixin of the same activation)

        async def _continue(self, signal: ContinueAsNew) -> None: ...

    async def _finish(self) -> None:
        root = self.root
        if root is None or not root.done():
            return
        if root.cancelled():
            await self._end(EventType.WORKFLOW_CANCELLED, RunStatus.CANCELLED, {}, RunPatch())
            return
        exc = root.exception()
        if exc is not None:
            signal = signal_of(exc)  # continue_as_new() ended the workflow
            if signal is not None:
                await self._continue(signal)
                return
            await self._fail(exc)
            return
        try:
            data = dumps_limited(
                self.serializer, root.result(), limit=self.limit, what="workflow result"
            )
        except SerializationError as error:
            await self._fail(error)
            return
        await self._end(
            EventType.WORKFLOW_COMPLETED,
            RunStatus.COMPLETED,
            {"result": data},
            RunPatch(result=data),
        )

    async def _fail(self, exc: BaseException) -> None:
        if isinstance(exc, _Diverged | NonDeterminismError):
            exc = NonDeterminismError(str(exc))
        data, exc = self._dump_error(exc, "workflow error")
        message = f"{type(exc).__name__}: {exc}"
        keep = _STEP_FACTS | {EventType.HOOK_CREATED, EventType.HOOK_DISPOSED}
        self.buffer = [e for e in self.buffer if e.type in keep]
        await self._end(
            EventType.WORKFLOW_FAILED,
            RunStatus.FAILED,
            {"error": data, "error_message": message},
            RunPatch(error=data, error_message=message),
        )

    async def _end(
        self, kind: EventType, status: RunStatus, payload: dict[str, Any], patch: RunPatch
    ) -> None:
        self._dispose_live_hooks()
        children = self._children_to_close()  # engine/children.py: parent-close policies
        if children:
            # before the end is stored: once it is, nothing activates this run again, so a
            # crash after it would leave the children running; closing is idempotent, and an
            # activation that crashes before its end closes them again on its next attempt
            if self.to_create:  # children started by this activation: recorded and created first
                await self._flush()
            await self._close_children(children, status)
        ending = {**payload, "children": children} if children else payload
        self.buffer.append(NewEvent(kind, None, ending))
        await self._flush(
            attrs.evolve(
                patch,
                status=status,
                completed_at=utcnow(),
                set_wake=True,
                wake_at=None,
                release_lease=True,
            )
        )
        self.log.info("workflow {}", status.value)
        with anyio.CancelScope(shield=True):  # the lease is released: its keeper may cancel us
            await self._notify_parent(status, payload)


class _Tasks:
    """The activation's task group, opened on first use: most activations need none.

    A task group costs a loop pass on exit even with no task in it (anyio's
    checkpoint), and cancelling it more; sequential workflows start no task.
    """

    __slots__ = ("group", "stack")

    def __init__(self, stack: contextlib.AsyncExitStack) -> None:
        self.stack = stack
        self.group: anyio.abc.TaskGroup | None = None

    async def start_soon(self, fn: Callable[..., Coroutine[Any, Any, Any]], *args: Any) -> None:
        if self.group is None:
            self.group = await self.stack.enter_async_context(anyio.create_task_group())
        self.group.start_soon(fn, *args)
