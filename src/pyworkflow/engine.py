"""Activations: replay the log, run new work, suspend or finish the run."""

from __future__ import annotations

import asyncio
import collections
import contextvars
import math
import secrets
from collections.abc import Callable, Coroutine, Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import anyio
import attrs
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream
from loguru import logger

from pyworkflow import context as ctxmod
from pyworkflow.errors import (
    ConcurrencyError,
    CorruptDataError,
    HookTokenConflictError,
    NonDeterminismError,
    SerializationError,
    StepFailedError,
    WorkflowNotFoundError,
)
from pyworkflow.hooks import check_hook_secret, check_hook_token
from pyworkflow.models import (
    EXTERNAL_EVENTS,
    Event,
    EventType,
    NewEvent,
    Run,
    RunPatch,
    RunStatus,
    utcnow,
)
from pyworkflow.sandbox import WorkflowLoop
from pyworkflow.serialization import dumps_limited
from pyworkflow.step import StepDefinition, check_dispatchable
from pyworkflow.stepexec import dump_error, retry_bases, run_step_attempt, voided_seqs
from pyworkflow.validation import schema_ref
from pyworkflow.workflow import get_workflow

if TYPE_CHECKING:
    from pyworkflow.runtime import Runtime

__all__ = [
    "ReplayReport",
    "activate",
    "check_replay",
    "is_external",
    "queued_owner",
    "run_activation",
]

#: Events that settle an operation; replay delivers them in log order.
_RESOLUTIONS = frozenset(
    {
        EventType.STEP_COMPLETED,
        EventType.STEP_FAILED,
        EventType.WAIT_COMPLETED,
        EventType.CANCEL_REQUESTED,
        EventType.HOOK_RECEIVED,
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
    }.get(event.type, event.type.value)
    return f"{what} {name!r}" if name else what


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


class Activation:
    """One activation of one run: replay, then live work until suspension or the end."""

    def __init__(self, runtime: Runtime, run: Run, history: Sequence[Event], owner: str) -> None:
        self.runtime = runtime
        self.storage = runtime.storage
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
        #: lease expiry of dispatched steps known to be in flight, by step id
        self.step_deadlines: dict[str, datetime] = {}
        self.log = logger.bind(run_id=run.run_id, workflow=run.workflow_name)
        send, receive = anyio.create_memory_object_stream[tuple[_Op, NewEvent]](math.inf)
        self.facts_tx: MemoryObjectSendStream[tuple[_Op, NewEvent]] = send
        self.facts_rx: MemoryObjectReceiveStream[tuple[_Op, NewEvent]] = receive

    # ----- what workflow code calls (WorkflowContext) -----

    @property
    def is_replaying(self) -> bool:
        return self.replaying

    def _next(
        self, kind: str, name: str, decisions: frozenset[EventType]
    ) -> tuple[str, list[Event]]:
        if self.discarded:
            raise _Discarded
        self.counter += 1
        cid = str(self.counter)
        recorded = self.by_cid.get(cid, [])
        if recorded:
            first = recorded[0]
            same = first.type in decisions and (
                first.payload.get("name") == name or first.payload.get("kind") == name
            )
            if not same:
                self.divergence = self.divergence or (cid, _describe(first), f"{kind} {name!r}")
                self._diverge(
                    f"operation {cid}: the log has {_describe(first)} (event seq {first.seq}) "
                    f"but the workflow now calls {kind} {name!r}"
                )
        return cid, recorded

    def _diverge(self, message: str) -> None:
        if self.diverged is None:
            self.diverged = message
        raise _Diverged(message)

    def call_step(
        self,
        definition: StepDefinition,
        body: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> asyncio.Future[Any]:
        cid, recorded = self._next("step", definition.name, _STEP_CALLS)
        op = _Op(cid, "step", self.loop.create_future(), definition, body, args, kwargs)
        resolved = False
        for event in recorded:
            if event.type in _STEP_CALLS:
                attempt = int(event.payload.get("attempt", 1))
                if attempt >= op.attempt:
                    op.attempt = attempt
                    op.due = None
                    op.remote = event.type == EventType.STEP_SCHEDULED or bool(
                        event.payload.get("dispatched")
                    )
            elif event.type == EventType.STEP_RETRYING:
                if int(event.payload.get("attempt", 0)) >= op.attempt:
                    op.due = datetime.fromisoformat(event.payload["due_at"])
                    op.remote = False
            elif event.type in (EventType.STEP_COMPLETED, EventType.STEP_FAILED):
                resolved = True
        if not resolved:
            if self.dispatching:
                check_dispatchable(definition, body)
            op.input = dumps_limited(
                self.serializer,
                {"args": args, "kwargs": kwargs},
                limit=self.limit,
                what=f"input of step {definition.name!r}",
            )
            self.open[cid] = op
        self.ops[cid] = op
        return op.future

    def call_sleep(self, delta: timedelta | None, until: datetime | None) -> asyncio.Future[Any]:
        cid, recorded = self._next("sleep", "sleep", frozenset({EventType.WAIT_CREATED}))
        op = _Op(cid, "sleep", self.loop.create_future())
        if recorded:
            op.due = datetime.fromisoformat(recorded[0].payload["due_at"])
        else:
            op.due = until if until is not None else utcnow() + (delta or timedelta())
            self.buffer.append(
                NewEvent(
                    EventType.WAIT_CREATED,
                    cid,
                    {"name": "sleep", "due_at": op.due.isoformat()},
                )
            )
        if not any(e.type == EventType.WAIT_COMPLETED for e in recorded):
            self.open[cid] = op
        self.ops[cid] = op
        return op.future

    def record_value(self, kind: str, produce: Callable[[], Any]) -> Any:
        cid, recorded = self._next("value", kind, frozenset({EventType.VALUE_RECORDED}))
        if recorded:
            return self._load(recorded[0], "value")
        value = produce()
        data = self.serializer.dumps(value)
        self.buffer.append(NewEvent(EventType.VALUE_RECORDED, cid, {"kind": kind, "value": data}))
        return value

    @property
    def public_url(self) -> str | None:
        return self.runtime.settings.public_url

    def create_hook(self, token: str | None, schema: Any, secret: str | None) -> tuple[str, str]:
        cid, recorded = self._next("hook", "hook", frozenset({EventType.HOOK_CREATED}))
        if recorded:
            state = _HookState(cid, str(recorded[0].payload["token"]), durable=True)
        else:
            actual = secrets.token_urlsafe(24) if token is None else check_hook_token(token)
            if secret is not None:
                check_hook_secret(secret)
            path = schema_ref(schema) if schema is not None else None
            payload = {"name": "hook", "token": actual, "schema": path, "signed": bool(secret)}
            event = NewEvent(EventType.HOOK_CREATED, cid, payload, hook_secret=secret or None)
            self.buffer.append(event)
            state = _HookState(cid, actual, created=event)
        self.hooks[cid] = state
        return cid, state.token

    def hook_receive(self, cid: str) -> asyncio.Future[Any]:
        if self.discarded:
            raise _Discarded
        state = self.hooks[cid]
        future: asyncio.Future[Any] = self.loop.create_future()
        if state.buffer:
            future.set_result(state.buffer.popleft())
        else:
            state.waiters.append(future)
        return future

    def hook_disposed(self, cid: str) -> bool:
        return self.hooks[cid].disposed

    def hook_dispose(self, cid: str) -> None:
        if self.discarded:
            raise _Discarded
        state = self.hooks[cid]
        if state.disposed:
            return
        state.disposed = True
        recorded = self.by_cid.get(cid, [])
        if not any(e.type == EventType.HOOK_DISPOSED for e in recorded):
            self.buffer.append(
                NewEvent(EventType.HOOK_DISPOSED, cid, {"name": "hook", "token": state.token})
            )

    # ----- helpers -----

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

    def _deliver(self, event: Event | NewEvent) -> None:
        """Settle the operation ``event`` resolves, inside the workflow."""
        assert self.root is not None
        if event.type == EventType.CANCEL_REQUESTED:
            if not self.root.done():
                self.log.info("cancellation delivered into the workflow")
                self.root.cancel()
            return
        cid = event.correlation_id or ""
        if event.type == EventType.HOOK_RECEIVED:
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
        if event.type == EventType.STEP_COMPLETED:
            op.future.set_result(self._load_event(event, "result"))
        elif event.type == EventType.STEP_FAILED:
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
        if isinstance(event, Event):
            return self._load(event, key)
        return self.serializer.loads(event.payload[key])

    def _step_ready(self) -> None:
        self.loop.run_ready()
        if self.diverged is not None:
            raise NonDeterminismError(self.diverged)

    # ----- the activation -----

    def _start_root(self) -> None:
        definition = get_workflow(self.workflow_name)
        payload = self.serializer.loads(self.run.input) if self.run.input else {}
        args = tuple(payload.get("args", ()))
        kwargs = dict(payload.get("kwargs", {}))
        body = definition.make_body()
        context = contextvars.copy_context()
        context.run(ctxmod._workflow.set, self)
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

    async def execute(self) -> None:
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
            failure: Exception | None = None
            async with anyio.create_task_group() as tg:
                try:
                    await self._live(tg)
                except Exception as exc:  # re-raised below, unwrapped from the task group
                    failure = exc
                tg.cancel_scope.cancel()
            if failure is not None:
                raise failure
            await self._finish()
        except NonDeterminismError as exc:
            self.log.error("non-determinism: {}", exc)
            await self._fail(exc)
        except HookTokenConflictError as exc:
            self.log.error("{}", exc)
            await self._fail(exc)
        finally:
            self._discard()

    async def _live(self, tg: anyio.abc.TaskGroup) -> None:
        assert self.root is not None
        while not self.root.done():
            now = utcnow()
            fired, launch, next_due = self._advance(now)
            if fired:
                for op in fired:
                    event = NewEvent(EventType.WAIT_COMPLETED, op.cid, {"name": "sleep"})
                    self.buffer.append(event)
                    self._deliver(event)
                    self._step_ready()
                continue
            if launch:
                await self._flush()
                if len(launch) == 1 and len(self.open) == 1:
                    # the workflow waits on this step alone: run it inline, no task needed
                    await self._run_step(launch[0])
                else:
                    for op in launch:
                        tg.start_soon(self._run_step, op)
            if self._take_ready_facts():
                continue
            if not any(op.running for op in self.open.values()):
                await self._suspend(next_due)
                return
            await self._flush()
            timeout = self.runtime.settings.poll_interval * 5
            if next_due is not None:
                timeout = min(timeout, max(0.0, (next_due - utcnow()).total_seconds()))
            with anyio.move_on_after(timeout):
                self._take_fact(*await self.facts_rx.receive())
                self._take_ready_facts()
                continue
            await self._check_external()

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

    def _advance(self, now: datetime) -> tuple[list[_Op], list[_Op], datetime | None]:
        fired: list[_Op] = []
        launch: list[_Op] = []
        next_due: datetime | None = None
        for op in list(self.open.values()):
            if op.future.done():
                self.open.pop(op.cid)
                continue
            if op.running or op.remote:
                continue
            if op.due is not None and op.due > now:
                next_due = op.due if next_due is None else min(next_due, op.due)
                continue
            if op.kind == "sleep":
                fired.append(op)
                continue
            assert op.definition is not None
            op.attempt += 1
            op.due = None
            if self.dispatching:
                op.remote = True
                self.buffer.append(
                    NewEvent(
                        EventType.STEP_SCHEDULED,
                        op.cid,
                        {"name": op.definition.name, "attempt": op.attempt, "input": op.input},
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
                        "worker": self.owner,
                    },
                )
            )
            launch.append(op)
        return fired, launch, next_due

    def _take_fact(self, op: _Op, event: NewEvent) -> None:
        if op.future.done():
            op.running = False
            self.open.pop(op.cid, None)
            return
        self.buffer.append(event)
        if event.type == EventType.STEP_RETRYING:
            op.running = False
            op.due = datetime.fromisoformat(event.payload["due_at"])
            return
        self._deliver(event)
        self._step_ready()

    async def _run_step(self, op: _Op) -> None:
        assert op.definition is not None and op.body is not None
        event = await run_step_attempt(
            op.definition,
            op.body,
            op.args,
            op.kwargs,
            run_id=self.run_id,
            step_id=op.cid,
            attempt=op.attempt,
            retry_base=self.retry_base.get(op.cid, 0),
            serializer=self.serializer,
            limit=self.limit,
        )
        self.facts_tx.send_nowait((op, event))

    async def _flush(self, patch: RunPatch | None = None) -> None:
        if self.pending_patch is not None:
            patch = patch or self.pending_patch
            if patch.status is None:
                patch = attrs.evolve(patch, status=self.pending_patch.status)
            self.pending_patch = None
        if not self.buffer and patch is None:
            return
        events, self.buffer = self.buffer, []
        try:
            self.seq = await self.storage.append_events(
                self.run_id, self.seq, events, patch, owner=self.owner
            )
        except ConcurrencyError:
            await self._rebase(events)
        for event in events:
            if event.type == EventType.HOOK_CREATED:
                self.hooks[str(event.correlation_id)].durable = True
        self.runtime.events_appended(self.run_id, self.seq, events)

    async def _rebase(self, events: list[NewEvent]) -> None:
        """After a conflict: keep the step outcomes in ``events`` nobody else dealt with.

        Re-reads what was appended since this activation's last append. Each
        step outcome (completed, failed, retrying) is appended at the new end
        of the log unless those appends end or retry the run, or carry the same
        step (another attempt of it, or its outcome): a finished result is not
        thrown away because the lease lapsed while the step ran, and a step is
        never settled twice.

        If only external events came in (cancellation, hook payloads, dispatched
        or late step events), the activation replays again (``_Restart``).
        Otherwise another worker has taken the run over: the outcomes kept are
        marked ``"late": true``, which makes them external for that worker (it
        replays them in instead of stopping), and this activation stops
        (``_LostOwnership``).
        """
        facts = [e for e in events if e.type in _STEP_FACTS]
        touched: set[str | None] = set()
        taken = ended = False
        while True:
            newer = await self.storage.get_events(self.run_id, after_seq=self.seq)
            if newer:
                self.seq = newer[-1].seq
            taken = taken or not all(is_external(e) for e in newer)
            ended = ended or any(e.type in _RUN_ENDS for e in newer)
            touched.update(e.correlation_id for e in newer)
            kept = [] if ended else [e for e in facts if e.correlation_id not in touched]
            if taken:
                kept = [attrs.evolve(e, payload={**e.payload, "late": True}) for e in kept]
            if kept:
                try:
                    self.seq = await self.storage.append_events(
                        self.run_id, self.seq, kept, owner=self.owner
                    )
                except ConcurrencyError:
                    continue
                self.runtime.events_appended(self.run_id, self.seq, kept)
            recorded = {e.correlation_id for e in kept}
            for fact in facts:
                log = self.log.bind(step_id=fact.correlation_id)
                what = f"step {fact.payload.get('name')!r} attempt {fact.payload.get('attempt')}"
                if fact.correlation_id not in recorded:
                    why = "the run ended" if ended else "another attempt of it was recorded"
                    log.warning("{} finished after {}; its outcome is dropped", what, why)
                elif taken:
                    log.warning(
                        "{} finished after another worker took the run over; "
                        "its outcome is recorded for that worker",
                        what,
                    )
            raise _LostOwnership if taken else _Restart

    async def _check_external(self) -> None:
        run = await self.storage.get_run(self.run_id)
        if run.last_seq != self.seq:
            await self._rebase(self.buffer)

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
        self.buffer.append(
            NewEvent(
                EventType.WORKFLOW_SUSPENDED,
                None,
                {"wake_at": wake_at.isoformat() if wake_at else None},
            )
        )
        await self._flush(
            RunPatch(status=RunStatus.SUSPENDED, set_wake=True, wake_at=wake_at, release_lease=True)
        )
        await self._dispatch()
        self.runtime.wake_hint(wake_at)
        if wake_at is not None:
            self.runtime.executor.schedule(self.run_id, wake_at)
        self.log.debug("suspended until {}", wake_at)

    async def _dispatch(self) -> None:
        """Hand the steps just recorded as scheduled to the executor."""
        ops, self.to_dispatch = self.to_dispatch, []
        if not ops:
            return
        until = utcnow() + self.dispatch_timeout
        for op in ops:
            await self.storage.set_step_lease(self.run_id, op.cid, queued_owner(op.attempt), until)
        await self.runtime.executor.dispatch_steps(
            self.run_id, [(op.cid, op.attempt) for op in ops]
        )
        self.log.debug("dispatched {} step(s)", len(ops))

    async def _check_dispatched(self) -> None:
        """Find which dispatched steps are still in flight; lost ones run again."""
        leases = await self.storage.get_step_leases(self.run_id)
        now = utcnow()
        for cid, lease in leases.items():
            op = self.open.get(cid)
            if op is None or not op.remote:
                # settled (or retrying): the lease is left over
                await self.storage.set_step_lease(
                    self.run_id, cid, None, None, if_owner=lease.owner
                )
        for cid, op in self.open.items():
            if not op.remote:
                continue
            current = leases.get(cid)
            if current is not None and current.until > now:
                self.step_deadlines[cid] = current.until
            else:
                self.log.bind(step_id=cid).warning(
                    "dispatched step attempt {} was lost (lease expired); dispatching it again",
                    op.attempt,
                )
                op.remote = False

    def _hook_waiting(self) -> bool:
        return any(state.waiting() for state in self.hooks.values())

    async def _finish(self) -> None:
        root = self.root
        if root is None or not root.done():
            return
        if root.cancelled():
            await self._end(EventType.WORKFLOW_CANCELLED, RunStatus.CANCELLED, {}, RunPatch())
            return
        exc = root.exception()
        if exc is not None:
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
        pending = {id(e) for e in self.buffer}
        for state in self.hooks.values():
            if not state.disposed and (state.durable or id(state.created) in pending):
                state.disposed = True
                self.buffer.append(
                    NewEvent(
                        EventType.HOOK_DISPOSED, state.cid, {"name": "hook", "token": state.token}
                    )
                )
        self.buffer.append(NewEvent(kind, None, payload))
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
        self.runtime.run_finished(self.run_id, self.workflow_name, status)
        self.log.info("workflow {}", status.value)

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


async def activate(runtime: Runtime, run: Run, owner: str) -> None:
    """Run activations of ``run`` until it suspends, ends, or another owner appears."""
    log = logger.bind(run_id=run.run_id, workflow=run.workflow_name)
    while True:
        try:
            history = await runtime.storage.get_events(run.run_id)
            activation = Activation(runtime, run, history, owner)
            await activation.execute()
            return
        except _Restart:
            run = await runtime.storage.get_run(run.run_id)
            log.debug("external events arrived; replaying again")
        except _LostOwnership:
            log.warning("another worker appended to this run; stopping this activation")
            # if this worker still holds the lease, let the run be claimed at once
            await runtime.storage.release_lease(run.run_id, owner)
            return
        except WorkflowNotFoundError as exc:
            # the run waits (a deploy may bring a worker that knows it), visibly
            from pyworkflow.unknown_workflow import note_unknown  # it imports this module

            await note_unknown(runtime, run, owner, exc)
            await _back_off(runtime, run.run_id, owner)
            return
        except (CorruptDataError, SerializationError) as exc:
            log.error("corrupt data: {}", exc)
            await _fail_corrupt(runtime, run, owner, exc)
            return


async def run_activation(runtime: Runtime, run: Run, owner: str) -> bool:
    """:func:`activate` as workers call it; True if the activation ran to its end.

    A crashing activation is logged and its run made due again only after a
    pause (no busy loop); one that crashed or was cancelled (lease lost,
    shutdown) releases its lease so another worker can recover the run at once.
    """
    finished = False
    try:
        await activate(runtime, run, owner)
        finished = True
    except Exception:
        logger.bind(run_id=run.run_id).exception("activation crashed; retrying it later")
        with anyio.CancelScope(shield=True):
            await _back_off(runtime, run.run_id, owner)
    finally:
        if not finished:
            with anyio.CancelScope(shield=True):
                await runtime.storage.release_lease(run.run_id, owner)
    return finished


async def _back_off(runtime: Runtime, run_id: str, owner: str) -> None:
    retry_at = utcnow() + timedelta(seconds=max(5.0, runtime.settings.poll_interval))
    patch = RunPatch(set_wake=True, wake_at=retry_at, release_lease=True)
    try:
        run = await runtime.storage.get_run(run_id)
        await runtime.storage.append_events(run_id, run.last_seq, [], patch, owner=owner)
    except Exception:  # the run stays due; the next claim retries it
        logger.bind(run_id=run_id).exception("could not back the run off")


async def _fail_corrupt(runtime: Runtime, run: Run, owner: str, exc: Exception) -> None:
    """Mark a run whose stored data cannot be decoded as failed, naming why."""
    message = f"CorruptDataError: {exc}"
    fresh = await runtime.storage.get_run(run.run_id)
    await runtime.storage.append_events(
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
    )
    runtime.run_finished(run.run_id, run.workflow_name, RunStatus.FAILED)


async def check_replay(runtime: Runtime, run_id: str) -> ReplayReport:
    """Replay ``run_id``'s log against the workflow code now registered; no side effects."""
    run = await runtime.storage.get_run(run_id)
    history = await runtime.storage.get_events(run_id)
    return Activation(runtime, run, history, owner="replay-check").check()
