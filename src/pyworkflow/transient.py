"""Transient runs: a workflow run in the caller's process and event loop, with no storage writes.

A workflow declared ``@workflow(durable=False)`` (``durable = False`` on a
``Workflow`` class), or run with ``execute_workflow(..., durable=False)``, runs
here instead of through the engine: :class:`TransientRun` is the
:class:`~pyworkflow.context.WorkflowContext` its code calls, and each
operation does its work directly, with nothing recorded and nothing replayed:

* a step runs its body at once, with the step's retry policy
  (:meth:`~pyworkflow.step.RetryPolicy.should_retry`, ``delay_for``: the same
  ``FatalError``/``RetryableError`` rules and back-off as a durable run, waited
  in real time), its ``timeout``, and ``get_step_context()``;
* ``sleep()`` is an ordinary ``anyio.sleep`` (on the test harness's virtual
  clock, :class:`VirtualTime`: time skips); ``now()``, ``random()``,
  ``uuid4()`` return fresh values; ``patched()`` is True (nothing to replay);
* a child workflow runs as a transient run of its own in this process;
  ``continue_as_new`` runs the body again with the new arguments (the run
  keeps its id);
* hooks are refused (:class:`TransientRunError`): with no log, nothing could
  deliver a payload into the run.

The result is the body's own return value (never serialized), and an error
is the very exception raised, with its traceback. Observer plugins (tracing,
metrics) see the events a durable run would append, built only when some
plugin observes events. See docs/transient.md.
"""

from __future__ import annotations

import asyncio
import functools
import heapq
import inspect
import types
import uuid
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, NoReturn

import anyio
import anyio.to_thread
from loguru import logger

from pyworkflow import context as ctxmod
from pyworkflow import plugins, stepexec
from pyworkflow.clock import Clock, installed_clock
from pyworkflow.context import ContinueAsNew
from pyworkflow.errors import (
    ChildWorkflowError,
    FatalError,
    WorkflowCancelledError,
    WorkflowTimeoutError,
)
from pyworkflow.logs import debug_enabled
from pyworkflow.models import Event, EventType, RunStatus, utcnow

if TYPE_CHECKING:
    from pyworkflow.step import StepDefinition
    from pyworkflow.workflow import WorkflowDefinition

__all__ = [
    "TransientRun",
    "TransientRunError",
    "VirtualTime",
    "check_stream_write",
    "is_transient",
    "run_transient",
]


class TransientRunError(FatalError, RuntimeError):
    """An operation a transient run cannot offer (a hook, a stream); never retried."""


_workflow_var = ctxmod._workflow
_step_var = ctxmod._step
_FunctionType = types.FunctionType
_CO_COROUTINE = inspect.CO_COROUTINE
#: Step names whose queue limits were reported as not applied (warned once each).
_unqueued: set[str] = set()
#: Ids of the transient runs in progress in this process.
_live: set[str] = set()


def check_stream_write(run_id: str, name: str) -> None:
    """Raise :class:`TransientRunError` if ``run_id`` is a transient run (it has no streams)."""
    if run_id in _live:
        raise TransientRunError(
            f"write_stream({name!r}) in a step of transient run {run_id}: a transient run "
            "(durable=False) stores nothing, so it has no streams; return the data instead, or "
            "make the workflow durable"
        )


class _Continue(ContinueAsNew):
    """``continue_as_new`` in a transient run: the body runs again with these arguments."""

    def __init__(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        super().__init__("")
        self.call_args = args
        self.call_kwargs = kwargs


def _observed() -> bool:
    """Whether any plugin observes events (tracing, metrics): then events are built."""
    return plugins.has_event_observers()


class VirtualTime:
    """Waits of a transient run tree on a clock that can be moved (the test harness's).

    A run on :class:`~pyworkflow.testing.WorkflowEnvironment`'s loop sleeps
    and backs off in virtual time, as its durable runs do: a wait ends when
    the clock reaches its due time, and the clock jumps to the earliest wait
    once the run has nothing else to do (no step body running, and nothing of
    the run became runnable for a few turns of the event loop). Waits due at
    the same time end in the order they began.
    """

    #: Turns of the loop with no activity of the run before the clock moves.
    IDLE_TURNS = 3

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self._set: Callable[[datetime], None] = clock.set  # type: ignore[attr-defined]  # checked by for_clock
        self.waits: list[tuple[datetime, int, asyncio.Future[None]]] = []
        self.count = 0
        #: Step bodies running now: time stands still while one runs.
        self.busy = 0
        self.activity = 0
        self.mover: asyncio.Task[None] | None = None

    @classmethod
    def for_clock(cls, clock: Clock | None) -> VirtualTime | None:
        """Virtual time on ``clock`` (the clock installed on this loop) if it can be moved."""
        if clock is None or not callable(getattr(clock, "set", None)):
            return None
        return cls(clock)

    def add(self, seconds: float) -> asyncio.Future[None]:
        """A future set when the clock reaches now + ``seconds``."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.count += 1
        due = self.clock.now() + timedelta(seconds=seconds)
        heapq.heappush(self.waits, (due, self.count, future))
        self.touch()
        return future

    async def sleep(self, seconds: float) -> None:
        """Wait ``seconds`` of virtual time."""
        future = self.add(seconds)
        try:
            await future
        finally:
            future.cancel()  # a cancelled wait is dropped when it comes first

    def touch(self) -> None:
        """Note activity of the run; make sure the clock mover looks again."""
        self.activity += 1
        if self.mover is None or self.mover.done():
            self.mover = asyncio.ensure_future(self._move())

    async def _move(self) -> None:
        idle = 0
        while True:
            seen = self.activity
            await asyncio.sleep(0)
            waits = self.waits
            while waits and waits[0][2].done():
                heapq.heappop(waits)
            if not waits or self.busy:
                return  # the next wait, or the step body's end, looks again
            if self.activity != seen:
                idle = 0
                continue
            idle += 1
            if idle < self.IDLE_TURNS:
                continue
            due, _, future = heapq.heappop(waits)
            if due > self.clock.now():
                self._set(due)
            future.set_result(None)
            idle = 0

    def close(self) -> None:
        """Stop moving the clock (the run tree ended)."""
        if self.mover is not None:
            self.mover.cancel()
        for _, _, future in self.waits:
            future.cancel()
        self.waits.clear()


class TransientRun:
    """The :class:`~pyworkflow.context.WorkflowContext` of one transient run.

    Operations take correlation ids in call order, as in a durable run (step
    ids ``"1"``, ``"2"``...), so ``get_step_context()`` and logs look alike.
    """

    def __init__(
        self,
        definition: WorkflowDefinition,
        run_id: str,
        *,
        parent: tuple[str, str] | None = None,
        overrides: Mapping[str, Callable[..., Any]] | None = None,
        time: VirtualTime | None = None,
    ) -> None:
        self.run_id = run_id
        self.workflow_name = definition.name
        self.definition = definition
        #: ``(parent run id, correlation id)`` for a child run.
        self.parent = parent
        self.counter = 0
        self.seq = 0
        self.observed = _observed()
        self.children: dict[str, asyncio.Task[Any]] = {}
        self._cancelled_children: set[str] = set()
        #: Step bodies replaced by name (the test harness's ``override_step``).
        self.overrides = overrides
        #: Virtual time on the test harness's clock; None: waits are real.
        self.time = time

    def wait(self, seconds: float) -> Awaitable[None]:
        """A wait of ``seconds``: real, or virtual on the test harness's clock."""
        if self.time is not None:
            return self.time.sleep(seconds)
        return anyio.sleep(seconds)

    # ----- what workflow code reads -----

    @property
    def is_replaying(self) -> bool:
        return False

    @property
    def public_url(self) -> str | None:
        return None

    @property
    def scheduled_at(self) -> datetime | None:
        return None

    # ----- events for observer plugins -----

    def emit(self, kind: EventType, cid: str | None, payload: Mapping[str, Any]) -> None:
        """Tell observer plugins about an event a durable run would append (nothing is stored)."""
        self.seq += 1
        event = Event(self.run_id, self.seq, kind, cid, utcnow(), payload)
        plugins.notify_events_appended(self.run_id, [event])

    def status(self, status: RunStatus) -> None:
        """Tell observer plugins the run's status changed."""
        plugins.notify_run_status_changed(self.run_id, self.workflow_name, status)

    # ----- steps -----

    def call_step(
        self,
        definition: StepDefinition,
        body: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> Coroutine[Any, Any, Any]:
        self.counter += 1
        if self.overrides:  # the test harness replaced some step bodies
            body = self.overrides.get(definition.name, body)
        if definition.queue is not None and definition.name not in _unqueued:
            _unqueued.add(definition.name)
            logger.bind(run_id=self.run_id, workflow=self.workflow_name).warning(
                "step {!r} of queue {!r} runs in a transient run: the queue's limits are "
                "not applied (they are kept in storage, which a transient run does not use)",
                definition.name,
                definition.queue,
            )
        return self._step(str(self.counter), definition, body, args, kwargs)

    async def _step(
        self,
        cid: str,
        definition: StepDefinition,
        body: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> Any:
        name = definition.name
        policy = definition.retry
        timeout = definition.timeout.total_seconds() if definition.timeout else None
        direct = (
            timeout is None
            and not stepexec._wrapping
            and type(body) is _FunctionType
            and bool(body.__code__.co_flags & _CO_COROUTINE)
        )
        observed = self.observed
        time = self.time
        attempt = 0
        while True:
            attempt += 1
            ids = (self.run_id, cid, name, attempt)
            if observed:
                self.emit(EventType.STEP_STARTED, cid, {"name": name, "attempt": attempt})
            # the body runs as a step: get_step_context() works, and steps or workflows it
            # calls run plainly (as on a worker); workflow code resumes with its own context
            step_token = _step_var.set(ids)
            workflow_token = _workflow_var.set(None)
            if time is not None:
                time.busy += 1
            try:
                if direct:
                    result = await body(*args, **kwargs)
                else:
                    result = await self._attempt(body, args, kwargs, ids, timeout)
            except Exception as raised:
                error: Exception = raised
            else:
                if observed:
                    self.emit(EventType.STEP_COMPLETED, cid, {"name": name, "attempt": attempt})
                elif debug_enabled(__name__):
                    logger.debug(
                        "step completed", run_id=self.run_id, step_id=cid, step=name,
                        attempt=attempt,
                    )  # fmt: skip
                return result
            finally:
                _workflow_var.reset(workflow_token)
                _step_var.reset(step_token)
                if time is not None:
                    time.busy -= 1
                    time.touch()
            bound = logger.bind(run_id=self.run_id, step_id=cid, step=name, attempt=attempt)
            message = f"{type(error).__name__}: {error}"
            if not policy.should_retry(error, attempt):
                bound.error("step failed: {}", error)
                if observed:
                    detail = {"name": name, "attempt": attempt, "error_message": message}
                    self.emit(EventType.STEP_FAILED, cid, detail)
                raise error
            delay = policy.delay_for(error, attempt)
            seconds = delay.total_seconds()
            bound.warning("step failed, retrying in {:.3f}s: {}", seconds, error)
            if observed:
                due = (utcnow() + delay).isoformat()
                detail = {"name": name, "attempt": attempt, "error_message": message}
                self.emit(EventType.STEP_RETRYING, cid, {**detail, "delay": seconds, "due_at": due})
            await self.wait(seconds)

    @staticmethod
    async def _attempt(
        body: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        ids: tuple[str, str, str, int],
        timeout: float | None,
    ) -> Any:
        """One attempt of a body that needs more than an ``await``: a thread, a timeout, a
        plugin's wrapper (tracing's span)."""
        wrappers = await stepexec._enter_body_contexts(ids) if stepexec._wrapping else None
        try:
            if timeout is None:
                return await _call_body(body, args, kwargs)
            try:
                with anyio.fail_after(timeout) as scope:
                    return await _call_body(body, args, kwargs)
            except TimeoutError:
                if not scope.cancel_called:  # the body's own TimeoutError
                    raise
                raise TimeoutError(f"step {ids[2]!r} timed out after {timeout:g}s") from None
        finally:
            if wrappers is not None:
                await wrappers.aclose()

    # ----- waits and recorded values -----

    def call_sleep(self, delta: timedelta | None, until: datetime | None) -> Awaitable[None]:
        self.counter += 1
        if until is not None:
            seconds = (until - utcnow()).total_seconds()
        else:
            seconds = delta.total_seconds() if delta is not None else 0.0
        if self.observed:
            return self._observed_sleep(str(self.counter), max(0.0, seconds))
        return self.wait(max(0.0, seconds))

    async def _observed_sleep(self, cid: str, seconds: float) -> None:
        due = (utcnow() + timedelta(seconds=seconds)).isoformat()
        self.emit(EventType.WAIT_CREATED, cid, {"name": "sleep", "due_at": due})
        await self.wait(seconds)
        self.emit(EventType.WAIT_COMPLETED, cid, {"name": "sleep"})

    def record_value(self, kind: str, produce: Callable[[], Any]) -> Any:
        self.counter += 1
        return produce()

    def patched(self, patch_id: str) -> bool:
        return True  # nothing was recorded before the patch: the new branch

    def deprecate_patch(self, patch_id: str) -> None:
        return None

    def continue_as_new(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> NoReturn:
        self.definition.check_arguments(args, kwargs)
        raise _Continue(args, kwargs)

    # ----- hooks: refused -----

    def create_hook(
        self,
        token: str | None,
        schema: Any,
        secret: str | None,
        timeout: timedelta | None = None,
    ) -> tuple[str, str]:
        raise TransientRunError(
            f"create_hook() in workflow {self.workflow_name!r} (run {self.run_id}): this run is "
            "transient (durable=False), it has no durable log a hook payload could be delivered "
            "into, and nothing outside this process can reach it; make the workflow durable "
            "(drop durable=False) to wait for outside input"
        )

    def hook_receive(self, cid: str) -> Awaitable[Any]:
        raise TransientRunError(f"transient run {self.run_id} has no hooks")

    def hook_dispose(self, cid: str) -> None:
        raise TransientRunError(f"transient run {self.run_id} has no hooks")

    def hook_disposed(self, cid: str) -> bool:
        raise TransientRunError(f"transient run {self.run_id} has no hooks")

    # ----- streams -----

    def write_chunk(self, name: str, value: Any) -> None:
        """Streams are refused: their chunks are stored with the run, which has no record."""
        raise TransientRunError(
            f"write_stream({name!r}) in workflow {self.workflow_name!r} (run {self.run_id}): "
            "this run is transient (durable=False) and stores nothing, so it has no streams; "
            "return the data, or make the workflow durable"
        )

    # ----- children -----

    def start_child(
        self,
        name: str,
        definition: WorkflowDefinition | None,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        policy: str,
    ) -> tuple[str, str, Awaitable[Any]]:
        self.counter += 1
        cid = str(self.counter)
        if definition is None:
            raise TransientRunError(
                f"workflow {self.workflow_name!r} (transient run {self.run_id}) starts child "
                f"workflow {name!r}, which is not registered in this process: a transient run "
                "runs its children in-process; import the module that defines it"
            )
        child_id = f"{self.run_id}-{cid}"
        # a task, so that the child runs from now on, as a durable child would
        task = asyncio.ensure_future(self._child(cid, child_id, definition, args, kwargs))
        self.children[cid] = task
        return cid, child_id, task

    async def _child(
        self,
        cid: str,
        child_id: str,
        definition: WorkflowDefinition,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> Any:
        name = definition.name
        try:
            return await run_transient(
                definition,
                args,
                kwargs,
                run_id=child_id,
                parent=(self.run_id, cid),
                overrides=self.overrides,
                time=self.time,
            )
        except asyncio.CancelledError:
            if cid not in self._cancelled_children:
                raise
            cause: BaseException = WorkflowCancelledError(f"run {child_id} was cancelled")
            status, message = "cancelled", "was cancelled"
        except Exception as exc:
            cause, status, message = exc, "failed", f"failed: {type(exc).__name__}: {exc}"
        raise ChildWorkflowError(
            f"child run {child_id} of workflow {name!r} {message}",
            run_id=child_id,
            workflow=name,
            status=status,
            child_error=cause,
        )

    def cancel_child(self, cid: str) -> None:
        task = self.children.get(cid)
        if task is not None and not task.done():
            self._cancelled_children.add(cid)
            task.cancel()

    async def end_children(self) -> None:
        """Cancel the children still running as the run ends (they cannot outlive it)."""
        running = [task for task in self.children.values() if not task.done()]
        for task in running:
            task.cancel()
        if running:
            with anyio.CancelScope(shield=True):
                await asyncio.gather(*running, return_exceptions=True)


async def _call_body(
    body: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]
) -> Any:
    """A step body's result: an ``async`` body awaited, a sync one run in a worker thread."""
    if inspect.iscoroutinefunction(body):
        return await body(*args, **kwargs)
    result = await anyio.to_thread.run_sync(functools.partial(body, *args, **kwargs))
    if inspect.isawaitable(result):
        result = await result
    return result


def is_transient(ctx: object) -> bool:
    """Whether ``ctx`` (a :func:`~pyworkflow.context.current_workflow`) is a transient run."""
    return type(ctx) is TransientRun


async def run_transient(
    definition: WorkflowDefinition,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    *,
    run_id: str | None = None,
    timeout: timedelta | None = None,
    parent: tuple[str, str] | None = None,
    overrides: Mapping[str, Callable[..., Any]] | None = None,
    time: VirtualTime | None = None,
) -> Any:
    """Run ``definition`` with these arguments as a transient run here; its result.

    Runs in the calling task: the workflow's error is raised as it was raised
    (a step's error after its last attempt, with its traceback), a
    ``timeout`` (default: the workflow's) that runs out raises
    :class:`~pyworkflow.errors.WorkflowTimeoutError`, and cancelling the
    caller cancels the run. ``overrides`` replaces step bodies by step name
    (the test harness's). On a loop whose clock can be moved (the test
    harness's virtual clock) waits are in virtual time (:class:`VirtualTime`).
    """
    current = _workflow_var.get()
    if current is not None and _step_var.get() is None and not is_transient(current):
        raise TransientRunError(
            f"workflow {definition.name!r} cannot run as a transient run inside the code of "
            f"durable workflow {current.workflow_name!r}: call it as a child workflow, or run it "
            "from a step"
        )
    own_time = None
    if time is None and parent is None:
        clock = installed_clock()
        if clock is not None:  # a runtime's own clock, e.g. the test harness's virtual one
            time = own_time = VirtualTime.for_clock(clock)
    run = TransientRun(
        definition, run_id or uuid.uuid4().hex, parent=parent, overrides=overrides, time=time
    )
    limit = timeout if timeout is not None else definition.timeout
    observed = run.observed
    if observed:
        started: dict[str, Any] = {
            "workflow": definition.name, "version": definition.version, "transient": True
        }  # fmt: skip
        if parent is not None:
            started.update(parent_run_id=parent[0], parent_correlation_id=parent[1])
        run.emit(EventType.WORKFLOW_STARTED, None, started)
        run.status(RunStatus.RUNNING)
    elif debug_enabled(__name__):
        logger.debug("transient run started", run_id=run.run_id, workflow=definition.name)
    workflow_token = _workflow_var.set(run)
    step_token = _step_var.set(None)
    _live.add(run.run_id)
    try:
        while True:
            coro = _begin(definition, args, kwargs)
            try:
                if limit is None:
                    result = await coro
                elif time is not None:
                    result = await _within_virtual(run, time, coro, limit)
                else:
                    result = await _within(run, coro, limit)
            except _Continue as again:
                args, kwargs = again.call_args, again.call_kwargs
                await run.end_children()
                continue
            break
    except BaseException as exc:
        cancelled = isinstance(exc, anyio.get_cancelled_exc_class())
        if cancelled or isinstance(exc, Exception):
            status = RunStatus.CANCELLED if cancelled else RunStatus.FAILED
            bound = logger.bind(run_id=run.run_id, workflow=definition.name)
            if cancelled:
                bound.info("transient run cancelled")
            else:
                bound.error("transient run failed: {}", exc)
            if observed:
                if cancelled:
                    run.emit(EventType.WORKFLOW_CANCELLED, None, {})
                else:
                    message = f"{type(exc).__name__}: {exc}"
                    run.emit(EventType.WORKFLOW_FAILED, None, {"error_message": message})
                run.status(status)
        raise
    else:
        if observed:
            run.emit(EventType.WORKFLOW_COMPLETED, None, {})
            run.status(RunStatus.COMPLETED)
        elif debug_enabled(__name__):
            logger.debug("transient run completed", run_id=run.run_id, workflow=definition.name)
        return result
    finally:
        if run.children:
            await run.end_children()
        _live.discard(run.run_id)
        if own_time is not None:
            own_time.close()
        _step_var.reset(step_token)
        _workflow_var.reset(workflow_token)


def _begin(
    definition: WorkflowDefinition, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> Awaitable[Any]:
    """The body's coroutine; ``TypeError`` naming the signature when the arguments do not fit.

    Calling an ``async def`` body binds its arguments and runs none of its
    code, so a ``TypeError`` here is the arguments' (checked only then: a
    signature costs more than the rest of a short run).
    """
    body = definition.make_body()
    if not inspect.iscoroutinefunction(body):
        definition.check_arguments(args, kwargs)
        coro: Awaitable[Any] = body(*args, **kwargs)
        return coro
    try:
        coro = body(*args, **kwargs)
    except TypeError:
        definition.check_arguments(args, kwargs)
        raise
    return coro


async def _within_virtual(
    run: TransientRun, time: VirtualTime, coro: Awaitable[Any], limit: timedelta
) -> Any:
    """:func:`_within` in virtual time: the deadline is a wait of the run's own."""
    deadline = time.clock.now() + limit
    with time.clock.move_on_until(deadline, cap=_NEVER) as scope:
        marker = time.add(limit.total_seconds())  # the clock moves to the deadline in its turn
        try:
            return await coro
        finally:
            marker.cancel()
    if scope.cancelled_caught:
        raise _timed_out(run, limit, deadline)
    raise AssertionError("unreachable")  # pragma: no cover


#: A cap on waits in virtual time that never comes (a year, in real seconds).
_NEVER = 365 * 86400.0


def _timed_out(run: TransientRun, limit: timedelta, deadline: datetime) -> WorkflowTimeoutError:
    seconds = limit.total_seconds()
    return WorkflowTimeoutError(
        f"run {run.run_id} of workflow {run.workflow_name!r} timed out: its timeout of "
        f"{seconds:g}s ran out at {deadline.isoformat()}",
        run_id=run.run_id,
        timeout=seconds,
        deadline=deadline,
    )


async def _within(run: TransientRun, coro: Awaitable[Any], limit: timedelta) -> Any:
    """``coro``'s result, or :class:`WorkflowTimeoutError` once ``limit`` has passed."""
    seconds = limit.total_seconds()
    deadline = utcnow() + limit
    with anyio.move_on_after(seconds) as scope:
        return await coro
    if scope.cancelled_caught:
        raise _timed_out(run, limit, deadline)
    raise AssertionError("unreachable")  # pragma: no cover
