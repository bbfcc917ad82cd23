"""One activation's state, the operation records, and the event-type rules the engine shares."""

from __future__ import annotations

import asyncio
import collections
import math
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import anyio
import attrs
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream
from loguru import logger

from pyworkflow.errors import CorruptDataError, SerializationError
from pyworkflow.models import EXTERNAL_EVENTS, Event, EventType, NewEvent, Run, RunPatch
from pyworkflow.sandbox import WorkflowLoop
from pyworkflow.step import StepDefinition
from pyworkflow.stepexec import dump_error, retry_bases, voided_seqs

if TYPE_CHECKING:
    from pyworkflow.runtime import Runtime


#: Events that settle an operation; replay delivers them in log order.
_RESOLUTIONS = frozenset(
    {
        EventType.STEP_COMPLETED,
        EventType.STEP_FAILED,
        EventType.WAIT_COMPLETED,
        EventType.CANCEL_REQUESTED,
        EventType.HOOK_RECEIVED,
        EventType.CHILD_WORKFLOW_COMPLETED,
        EventType.CHILD_WORKFLOW_FAILED,
    }
)
#: Outcomes of work done by a step body: worth keeping when a flush must be redone.
_STEP_FACTS = frozenset({EventType.STEP_COMPLETED, EventType.STEP_FAILED, EventType.STEP_RETRYING})
#: Events that record the call of a step (in-process, or dispatched to another worker).
_STEP_CALLS = frozenset({EventType.STEP_STARTED, EventType.STEP_SCHEDULED})
#: Step events a worker running a dispatched step writes (marked ``"dispatched": true``).
_DISPATCHED_STEP_EVENTS = _STEP_FACTS | {EventType.STEP_STARTED}
#: Events that do not mean an earlier activation ran the workflow code.
_NOT_DECISIONS = EXTERNAL_EVENTS | {EventType.WORKFLOW_STARTED}
#: Events after which a step outcome from before them is not recorded any more.
_RUN_ENDS = frozenset(
    {
        EventType.WORKFLOW_COMPLETED,
        EventType.WORKFLOW_FAILED,
        EventType.WORKFLOW_CANCELLED,
        EventType.WORKFLOW_RETRIED,
        EventType.WORKFLOW_CONTINUED_AS_NEW,
    }
)


def is_external(event: Event | NewEvent) -> bool:
    """Whether ``event`` was written by someone other than the run's activation.

    Besides cancellations and hook payloads, that is every step event written
    by a worker running a dispatched step (marked ``"dispatched": true``), and
    every step outcome a worker recorded after another worker took the run
    over (marked ``"late": true``, see ``Activation._rebase``).
    """
    if event.type in EXTERNAL_EVENTS:
        return True
    if event.type in _STEP_FACTS and event.payload.get("late"):
        return True
    return event.type in _DISPATCHED_STEP_EVENTS and bool(event.payload.get("dispatched"))


def queued_owner(attempt: int) -> str:
    """The step lease owner of a dispatched attempt no worker has taken yet."""
    return f"queued:{attempt}"


class _Restart(Exception):
    """External events (cancel, hook) interleaved: replay again from the log."""


class _LostOwnership(Exception):
    """Another worker appended to the run: stop without touching it."""


class _BadInput(Exception):
    """The run's input does not fit the workflow's signature."""

    def __init__(self, error: TypeError) -> None:
        super().__init__(str(error))
        self.error = error


class _Discarded(BaseException):
    """Raised in workflow code that runs after its activation was discarded."""


class _Diverged(BaseException):
    """Raised in workflow code whose call does not match the log."""


@attrs.define(eq=False)
class _Op:
    cid: str
    kind: str
    future: asyncio.Future[Any]
    definition: StepDefinition | None = None
    body: Callable[..., Any] | None = None
    args: tuple[Any, ...] = ()
    kwargs: dict[str, Any] = attrs.field(factory=dict)
    input: str | None = None
    due: datetime | None = None
    attempt: int = 0
    running: bool = False
    #: dispatched to another worker and not settled yet
    remote: bool = False
    #: a worker recorded ``step_started`` for the current attempt (it is not just scheduled)
    started: bool = False
    #: a child workflow operation's child run id
    child_run_id: str | None = None


@attrs.define(eq=False)
class _HookState:
    cid: str
    token: str
    created: NewEvent | None = None
    durable: bool = False
    disposed: bool = False
    buffer: collections.deque[Any] = attrs.field(factory=collections.deque)
    waiters: collections.deque[asyncio.Future[Any]] = attrs.field(factory=collections.deque)

    def waiting(self) -> bool:
        return any(not w.done() for w in self.waiters)


def _describe(event: Event) -> str:
    name = event.payload.get("name") or event.payload.get("kind")
    what = {
        EventType.STEP_STARTED: "step",
        EventType.STEP_SCHEDULED: "step",
        EventType.WAIT_CREATED: "sleep",
        EventType.VALUE_RECORDED: "value",
        EventType.HOOK_CREATED: "hook",
        EventType.MARKER_RECORDED: "patch",
        EventType.CHILD_WORKFLOW_STARTED: "child workflow",
    }.get(event.type, event.type.value)
    return f"{what} {name!r}" if name else what


class ActivationState:
    """What one activation of one run holds: the run, its log, and the operations in flight.

    The engine's other modules are mixins over this state, each doing one job;
    :class:`pyworkflow.engine.activation.Activation` composes them.
    """

    def __init__(self, runtime: Runtime, run: Run, history: Sequence[Event], owner: str) -> None:
        self.runtime = runtime
        self.storage = runtime.storage
        #: the one write path: every append, and what it owes observers and the executor
        self.journal = runtime.journal
        self.serializer = runtime.serializer_for(run)  # the run keeps the one it started with
        self.limit = runtime.settings.max_payload_bytes
        self.run = run
        self.run_id = run.run_id
        self.workflow_name = run.workflow_name
        self.owner = owner
        self.seq = history[-1].seq if history else 0
        # a retried run ignores the step failure that failed it, and that step's
        # retry budget starts again from the attempt that failed
        voided = voided_seqs(history)
        self.retry_base = retry_bases(history, voided)
        history = [e for e in history if e.seq not in voided] if voided else history
        self.history = history
        self.divergence: tuple[str, str, str] | None = None
        self.by_cid: dict[str, list[Event]] = {}
        for event in history:
            if event.correlation_id is not None:
                self.by_cid.setdefault(event.correlation_id, []).append(event)
        self.replaying = any(e.type not in _NOT_DECISIONS for e in history)
        self.counter = 0
        self.ops: dict[str, _Op] = {}
        self.open: dict[str, _Op] = {}
        self.hooks: dict[str, _HookState] = {}
        self.buffer: list[NewEvent] = []
        #: chunks workflow code wrote to durable streams, stored before the next flush's
        #: events (``(stream, data, index)``), and each stream's next index
        self.chunks: list[tuple[str, str, int]] = []
        self.stream_writes: dict[str, int] = {}
        self.pending_patch: RunPatch | None = None
        self.diverged: str | None = None
        self.discarded = False
        self.loop = WorkflowLoop()
        self.root: asyncio.Task[Any] | None = None
        executor = runtime.executor
        self.dispatching = executor.dispatches_steps
        self.dispatch_timeout = timedelta(seconds=executor.dispatch_timeout)
        #: steps recorded as scheduled, handed to the executor after the next flush
        self.to_dispatch: list[_Op] = []
        #: child runs to create (by correlation id) once their ``child_workflow_started``
        #: is flushed, and cancellations to request (by the cancel's id: the child's id)
        self.to_create: dict[str, tuple[str, str, str | None, str, Any]] = {}
        self.to_cancel: dict[str, str] = {}
        #: child operations whose cancellation the log records (by operation id), so that a
        #: cancel lost to a crash after its record is requested again (engine/children.py)
        self.cancel_recorded: set[str] = set()
        #: lease expiry of dispatched steps known to be in flight, by step id
        self.step_deadlines: dict[str, datetime] = {}
        self.log = logger.bind(run_id=run.run_id, workflow=run.workflow_name)
        send, receive = anyio.create_memory_object_stream[tuple[_Op, NewEvent]](math.inf)
        self.facts_tx: MemoryObjectSendStream[tuple[_Op, NewEvent]] = send
        self.facts_rx: MemoryObjectReceiveStream[tuple[_Op, NewEvent]] = receive

    def _load(self, event: Event, key: str) -> Any:
        try:
            return self.serializer.loads(event.payload[key])
        except (SerializationError, KeyError, TypeError) as exc:
            raise CorruptDataError(
                f"run {self.run_id}: cannot decode {key!r} of event seq {event.seq} "
                f"({event.type.value}): {exc}"
            ) from exc

    def _dump_error(self, exc: BaseException, what: str) -> tuple[str, BaseException]:
        return dump_error(self.serializer, self.limit, exc, what)

    def _hook_waiting(self) -> bool:
        return any(state.waiting() for state in self.hooks.values())

    def _dispose_live_hooks(self) -> None:
        """Buffer ``hook_disposed`` for each hook still live as the run ends.

        Live means recorded (durable) or created by an event still in the
        buffer; a hook whose creation was dropped from the buffer never existed.
        """
        pending = {id(e) for e in self.buffer}
        for state in self.hooks.values():
            if not state.disposed and (state.durable or id(state.created) in pending):
                state.disposed = True
                self.buffer.append(
                    NewEvent(
                        EventType.HOOK_DISPOSED, state.cid, {"name": "hook", "token": state.token}
                    )
                )

    def _discard(self) -> None:
        """Drop the workflow's coroutines: a suspended run holds nothing in memory."""
        self.discarded = True
        for task in asyncio.all_tasks(self.loop):
            if not task.done():
                try:
                    task.get_coro().close()
                except BaseException:
                    pass
        self.loop.close()
        self.ops.clear()
        self.open.clear()
        self.hooks.clear()
