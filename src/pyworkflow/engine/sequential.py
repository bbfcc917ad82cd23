"""The fused path of sequential steps, and taking a step's outcome into the workflow."""

from __future__ import annotations

import inspect
import types
from datetime import datetime

from pyworkflow.engine.recording import Recording
from pyworkflow.engine.replay import Replay
from pyworkflow.engine.state import _Op
from pyworkflow.errors import ConcurrencyError, NonDeterminismError
from pyworkflow.models import EventType, NewEvent, utcnow
from pyworkflow.stepexec import start_attempt

_STEP_RETRYING = EventType.STEP_RETRYING
_STEP_COMPLETED = EventType.STEP_COMPLETED
_STEP_STARTED = EventType.STEP_STARTED
_HOOK_CREATED = EventType.HOOK_CREATED
_FunctionType = types.FunctionType
_CO_COROUTINE = inspect.CO_COROUTINE


class SequentialSteps(Replay, Recording):
    """Takes step outcomes into the workflow; runs a workflow's lone steps one after another.

    :meth:`_run_lone` is the engine's path for the common case, a workflow
    awaiting one step at a time; :class:`~pyworkflow.engine.live.Live` hands
    it such a step and takes over again for anything else.
    """

    def _take_fact(self, op: _Op, event: NewEvent) -> None:
        if op.future.done():
            op.running = False
            self.open.pop(op.cid, None)
            return
        self.buffer.append(event)
        if event.type == _STEP_RETRYING:
            op.running = False
            op.due = datetime.fromisoformat(event.payload["due_at"])
            return
        self._deliver(event)
        self._step_ready()

    async def _run_lone(self, op: _Op) -> None:
        """The fused path of sequential steps: run ``op``, then each next lone step, inline.

        ``op`` is started (its ``step_started`` flushed) and is all the
        workflow waits on, on an executor that runs steps here (or runs lone
        steps inline: then the body is :meth:`Executor.inline_body`'s, e.g. a
        Ray task awaited), and its body is an ``async def`` without a timeout
        (:func:`runs_now`). Per step
        this records the outcome, resumes the workflow, and, when the
        workflow then waits on exactly one new such step, records that
        step's start, flushes both events in one append and runs it: no pass
        of :meth:`_live`, no task, no coroutine of the attempt when the body
        finishes without suspending. Anything else returns to :meth:`_live`
        with the same state its own path would leave: an outcome other than
        ``step_completed`` (retry, failure) or of a settled operation is
        taken by :meth:`_take_fact`, and a next operation that is not such a
        step (or several, or none) is left to :meth:`_advance`. The events
        written are those of the general path.
        """
        assert self.root is not None
        root = self.root
        open_ops = self.open
        serializer = self.serializer
        run_id = self.run_id
        limit = self.limit
        retry_base = self.retry_base
        journal = self.journal
        owner = self.owner
        run_ready = self.loop.run_ready
        executor = self.runtime.executor
        worker = executor.worker_name or owner
        dispatching = self.dispatching
        while True:
            definition = op.definition
            assert definition is not None and op.body is not None
            cid = op.cid
            outcome = start_attempt(
                definition,
                executor.inline_body(definition, op.body) if dispatching else op.body,
                op.args,
                op.kwargs,
                (run_id, cid, definition.name, op.attempt),
                retry_base.get(cid, 0),
                serializer,
                limit,
            )
            if not isinstance(outcome, NewEvent):  # the body suspended
                outcome = await outcome
            if outcome.type is not _STEP_COMPLETED or op.future.done():
                self._take_fact(op, outcome)
                return
            self.buffer.append(outcome)
            open_ops.pop(cid, None)
            op.running = False
            op.future.set_result(serializer.loads(outcome.payload["result"]))
            run_ready()  # the workflow runs to its next durable operation
            if self.diverged is not None:
                raise NonDeterminismError(self.diverged)
            if root.done() or len(open_ops) != 1:
                return
            op = next(iter(open_ops.values()))
            definition = op.definition
            body = op.body
            if dispatching and definition is not None and body is not None:
                # a step the executor dispatches goes back to _advance; one it lets run
                # inline (Ray: a Ray task this activation awaits) has its stand-in body
                if not executor.inline_lone_steps or not executor.inlines(definition):
                    return
                body = executor.inline_body(definition, body)
            if (
                op.kind != "step"
                or op.running
                or op.remote
                or op.due is not None
                or definition is None
                or definition.timeout is not None  # runs_now(), inline
                or type(body) is not _FunctionType
                or not body.__code__.co_flags & _CO_COROUTINE
                or op.future.done()
            ):
                return
            op.attempt += 1
            op.running = True
            self.buffer.append(
                NewEvent(
                    _STEP_STARTED,
                    op.cid,
                    {
                        "name": definition.name,
                        "attempt": op.attempt,
                        "input": op.input,
                        "worker": worker,
                    },
                    utcnow(),
                )
            )
            # Recording._flush, inline (no run patch is pending once the run is live)
            if (
                self.pending_patch is not None
                or self.to_create
                or self.chunks
                or self.seq + len(self.buffer) > self.event_soft_limit  # engine/limits.py
            ):
                await self._flush()
                continue
            events, self.buffer = self.buffer, []
            try:
                self.seq = await journal.append(run_id, self.seq, events, owner=owner)
            except ConcurrencyError:
                await self._rebase(events)
            if self.hooks:
                for event in events:
                    if event.type == _HOOK_CREATED:
                        self.hooks[str(event.correlation_id)].durable = True
