"""Start, inspect, await and cancel runs: sync functions and ``a``-prefixed async twins."""

from __future__ import annotations

import asyncio
import functools
import re
import time
import uuid
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

import anyio
import attrs

from pyworkflow import engine
from pyworkflow.durations import Duration
from pyworkflow.engine import ReplayReport
from pyworkflow.engine.continuation import continued_from, continued_to
from pyworkflow.errors import (
    ConcurrencyError,
    CorruptDataError,
    SerializationError,
    WorkflowCancelledError,
    WorkflowFailedError,
)
from pyworkflow.models import (
    Event,
    EventType,
    HookRecord,
    NewEvent,
    Run,
    RunPage,
    RunPatch,
    RunStatus,
    utcnow,
)
from pyworkflow.runtime import Runtime, get_runtime
from pyworkflow.serialization import dumps_limited
from pyworkflow.validation import load_schema, validate
from pyworkflow.workflow import definition_of, workflow_timeout

__all__ = [
    "RunInfo",
    "acancel",
    "adeliver_hook",
    "aexecute",
    "aexecute_workflow",
    "aget_events",
    "aget_hook",
    "aget_result",
    "aget_run",
    "alist_runs",
    "aresume_hook",
    "aretry_run",
    "astart",
    "astart_workflow",
    "cancel",
    "check_delivery_id",
    "check_replay",
    "execute",
    "execute_workflow",
    "get_events",
    "get_result",
    "get_run",
    "list_runs",
    "resume_hook",
    "retry_run",
    "run_info",
    "start",
    "start_workflow",
]


@attrs.frozen
class RunInfo:
    """A run as users see it: status, decoded result or error, timestamps."""

    run_id: str
    workflow: str
    status: RunStatus
    created_at: datetime
    updated_at: datetime
    completed_at: datetime | None
    result: Any = None
    error: BaseException | None = None
    error_message: str | None = None
    version: str | None = None
    idempotency_key: str | None = None
    wake_at: datetime | None = None
    #: The run this one continued as (it ended by ``continue_as_new``: status ``continued``).
    continued_to: str | None = None
    #: The run this one continues (started by that run's ``continue_as_new``).
    continued_from: str | None = None
    #: The seq of the run's last event: how many events its log holds.
    last_seq: int = 0
    #: The run that started this one as its child, if any.
    parent_run_id: str | None = None
    #: The queue it was started in (docs/queues.md), its priority and partition key.
    queue: str | None = None
    priority: int = 0
    partition_key: str | None = None
    #: When a worker admitted it from its queue (None: never queued, or still waiting).
    admitted_at: datetime | None = None


def run_info(run: Run) -> RunInfo:
    """The :class:`RunInfo` of a stored ``run`` (a row of :func:`list_runs`), result decoded."""
    return _info(get_runtime(), run)


def _info(runtime: Runtime, run: Run) -> RunInfo:
    result: Any = None
    error: BaseException | None = None
    try:
        if run.result is not None:
            result = runtime.serializer_for(run).loads(run.result)
        if run.error is not None:
            loaded = runtime.serializer_for(run).loads(run.error)
            error = loaded if isinstance(loaded, BaseException) else None
    except (SerializationError, CorruptDataError) as exc:
        error = exc
    return RunInfo(
        run_id=run.run_id,
        workflow=run.workflow_name,
        status=run.status,
        created_at=run.created_at,
        updated_at=run.updated_at,
        completed_at=run.completed_at,
        result=result,
        error=error,
        error_message=run.error_message,
        version=run.workflow_version,
        idempotency_key=run.idempotency_key,
        wake_at=run.wake_at,
        continued_to=continued_to(run),
        continued_from=continued_from(run),
        last_seq=run.last_seq,
        parent_run_id=run.parent_run_id,
        queue=run.queue,
        priority=run.priority,
        partition_key=run.partition_key,
        admitted_at=run.admitted_at,
    )


@attrs.frozen
class FlowOptions:
    """Where a new run goes: queue (None: the workflow's own), priority, partition, dedup key."""

    queue: str | None = None
    priority: int = 0
    partition_key: str | None = None
    dedup_key: str | None = None

    @classmethod
    def checked(
        cls,
        queue: str | None,
        priority: int,
        partition_key: str | None,
        dedup_key: str | None,
    ) -> FlowOptions | None:
        """The options, each checked (a clear ``TypeError``/``ValueError``); None if all default."""
        from pyworkflow.queues import check_priority, check_queue_name

        if queue is not None:
            check_queue_name(queue)
        check_priority(priority)
        for what, value in (("partition_key", partition_key), ("dedup_key", dedup_key)):
            if value is not None and (not isinstance(value, str) or not 0 < len(value) <= 256):
                raise TypeError(f"{what} must be a non-empty string of at most 256 characters")
        if queue is None and priority == 0 and partition_key is None and dedup_key is None:
            return None
        return cls(queue, priority, partition_key, dedup_key)


async def _create(
    runtime: Runtime,
    target: Any,
    args: Sequence[Any],
    kwargs: Mapping[str, Any],
    idempotency_key: str | None,
    run_id: str | None,
    timeout: Duration | None = None,
    flow: FlowOptions | None = None,
) -> str:
    definition = definition_of(target)
    if not definition.durable:
        raise _not_startable(definition.name)
    runtime.executor.check_startable(definition)  # e.g. __main__ workflows on Celery
    data = dumps_limited(
        runtime.serializer,
        {"args": tuple(args), "kwargs": dict(kwargs)},
        limit=runtime.settings.max_payload_bytes,
        what=f"input of workflow {definition.name!r}",
    )
    stored = await create_prepared(
        runtime,
        definition.name,
        definition.version,
        data,
        runtime.serializer.name,
        run_id=run_id,
        idempotency_key=idempotency_key,
        timeout=workflow_timeout(timeout) if timeout is not None else definition.timeout,
        flow=flow,
        default_queue=definition.queue,
    )
    return stored.run_id


async def create_prepared(
    runtime: Runtime,
    workflow_name: str,
    version: str | None,
    data: str,
    serializer: str,
    *,
    run_id: str | None = None,
    idempotency_key: str | None = None,
    timeout: timedelta | None = None,
    flow: FlowOptions | None = None,
    default_queue: str | None = None,
    started: Mapping[str, Any] | None = None,
) -> Run:
    """Create a run of ``workflow_name`` from its serialized input ``data``; the stored run.

    The one way runs are created (``start_workflow``, schedules): a run of a
    queue with limits is created ``queued`` (a worker admits it), any other
    run due at once. ``started`` adds fields to the ``workflow_started``
    payload (a schedule's ``schedule`` and ``scheduled_at``).
    """
    from pyworkflow.queues import placement

    now = utcnow()
    flow = flow or FlowOptions()
    queue = flow.queue or default_queue
    run = Run(
        run_id=run_id or uuid.uuid4().hex,
        workflow_name=workflow_name,
        workflow_version=version,
        input=data,
        serializer=serializer,
        created_at=now,
        updated_at=now,
        idempotency_key=idempotency_key,
        partition_key=flow.partition_key,
        dedup_key=flow.dedup_key,
        **placement(runtime, queue, flow.priority, now),
    )
    payload: dict[str, Any] = {"workflow": workflow_name, "version": version}
    if timeout is not None:  # the run's durable timeout timer is its deadline (engine/deadline.py)
        payload["timeout"] = timeout.total_seconds()
        payload["deadline"] = (now + timeout).isoformat()
    if queue is not None:
        payload["queue"] = queue
    if started:
        payload.update(started)
    first = NewEvent(EventType.WORKFLOW_STARTED, None, payload, now)
    stored, _ = await runtime.journal.create(run, [first])
    return stored


async def astart_workflow(
    workflow: Any,
    args: Sequence[Any] = (),
    kwargs: Mapping[str, Any] | None = None,
    *,
    idempotency_key: str | None = None,
    run_id: str | None = None,
    timeout: Duration | None = None,
    queue: str | None = None,
    priority: int = 0,
    partition_key: str | None = None,
    dedup_key: str | None = None,
) -> str:
    """Start a run with options.

    With an ``idempotency_key``, starting again returns the first run's id.
    ``timeout`` (``"1h"``, seconds, a timedelta) bounds the whole run from
    now, across suspensions, overriding the workflow's own ``timeout``; a run
    that outlives it fails with :class:`~pyworkflow.errors.WorkflowTimeoutError`.

    ``queue`` (default: the workflow's ``queue``) puts the run under that
    queue's limits (docs/queues.md): it waits as ``queued`` until a worker
    admits it, higher ``priority`` first, at most ``partition_concurrency``
    at once per ``partition_key``. While a run with the same ``dedup_key``
    is queued or running in that queue, starting again returns its id.
    """
    limit = workflow_timeout(timeout)  # a bad value fails here, before anything is written
    flow = FlowOptions.checked(queue, priority, partition_key, dedup_key)
    runtime = get_runtime()
    return await runtime.acall(
        _create, runtime, workflow, args, kwargs or {}, idempotency_key, run_id, limit, flow
    )


def start_workflow(
    workflow: Any,
    args: Sequence[Any] = (),
    kwargs: Mapping[str, Any] | None = None,
    *,
    idempotency_key: str | None = None,
    run_id: str | None = None,
    timeout: Duration | None = None,
    queue: str | None = None,
    priority: int = 0,
    partition_key: str | None = None,
    dedup_key: str | None = None,
) -> str:
    """Sync form of :func:`astart_workflow`."""
    limit = workflow_timeout(timeout)  # a bad value fails here, before anything is written
    flow = FlowOptions.checked(queue, priority, partition_key, dedup_key)
    runtime = get_runtime()
    return runtime.call(
        _create, runtime, workflow, args, kwargs or {}, idempotency_key, run_id, limit, flow
    )


async def astart(workflow: Any, *args: Any, **kwargs: Any) -> str:
    """Start a run of ``workflow`` (``@workflow``, ``Workflow`` class or name); returns its id."""
    return await astart_workflow(workflow, args, kwargs)


def start(workflow: Any, *args: Any, **kwargs: Any) -> str:
    """Start a run of ``workflow`` from sync code; returns the run id at once.

    ``workflow`` is a ``@workflow`` function, a ``Workflow`` class or a
    workflow's name; ``args`` and ``kwargs`` are its input (serialized now).
    The async form is :func:`astart`; :func:`start_workflow` takes options
    (``idempotency_key``, ``timeout``, ``queue``...).

    ```python
    from pyworkflow import get_result, start

    run_id = start(checkout, "order-1")       # returns at once
    print(get_result(run_id, timeout=600))     # waits for the end
    ```
    """
    return start_workflow(workflow, args, kwargs)


def _not_startable(name: str) -> TypeError:
    return TypeError(
        f"workflow {name!r} is transient (durable=False): its runs leave no record to start "
        f"and look up later; run it with `await pyworkflow.aexecute({name}, ...)` (or "
        "`execute(...)` in sync code), which returns its result"
    )


async def aexecute_workflow(
    workflow: Any,
    args: Sequence[Any] = (),
    kwargs: Mapping[str, Any] | None = None,
    *,
    durable: bool | None = None,
    timeout: Duration | None = None,
) -> Any:
    """Run ``workflow`` to its end and return its result (or raise its error).

    A transient workflow (``@workflow(durable=False)``), or any workflow with
    ``durable=False`` here, runs right here, in the calling task, with no
    storage writes (docs/transient.md): its result is the body's return value
    and its error the very exception raised, with its traceback. A durable
    workflow is started as with :func:`astart_workflow` and awaited as with
    :func:`aget_result`. ``timeout`` bounds the run as ``start_workflow``'s
    does (:class:`~pyworkflow.errors.WorkflowTimeoutError`). ``durable=True``
    for a workflow declared transient is a ``ValueError``.
    """
    definition = definition_of(workflow)
    transient = _transient(definition.name, definition.durable, durable)
    limit = workflow_timeout(timeout)
    if transient:
        from pyworkflow.transient import run_transient

        return await run_transient(definition, tuple(args), dict(kwargs or {}), timeout=limit)
    run_id = await astart_workflow(workflow, args, kwargs, timeout=limit)
    return await aget_result(run_id)


def execute_workflow(
    workflow: Any,
    args: Sequence[Any] = (),
    kwargs: Mapping[str, Any] | None = None,
    *,
    durable: bool | None = None,
    timeout: Duration | None = None,
) -> Any:
    """Sync form of :func:`aexecute_workflow`.

    A transient run runs on an event loop of its own in the calling thread
    (``RuntimeError`` if that thread already runs one: await
    :func:`aexecute_workflow` there).
    """
    definition = definition_of(workflow)
    transient = _transient(definition.name, definition.durable, durable)
    limit = workflow_timeout(timeout)
    if transient:
        from pyworkflow.transient import run_transient

        try:
            asyncio.get_running_loop()
        except RuntimeError:
            pass
        else:
            raise RuntimeError(
                "execute() was called from async code; await aexecute() (or "
                "aexecute_workflow()) there instead"
            )
        call = functools.partial(
            run_transient, definition, tuple(args), dict(kwargs or {}), timeout=limit
        )
        return anyio.run(call)
    run_id = start_workflow(workflow, args, kwargs, timeout=limit)
    return get_result(run_id)


def _transient(name: str, declared: bool, durable: bool | None) -> bool:
    if durable is None:
        return not declared
    if not isinstance(durable, bool):
        raise TypeError(f"durable must be True, False or None, got {durable!r}")
    if durable and not declared:
        raise ValueError(
            f"workflow {name!r} is declared transient (durable=False): it cannot run durably; "
            "remove durable=False from its declaration to start durable runs of it"
        )
    return not durable


async def aexecute(workflow: Any, *args: Any, **kwargs: Any) -> Any:
    """Run ``workflow`` to its end and return its result: a transient workflow in-process.

    :func:`aexecute_workflow` with these arguments (docs/transient.md).
    """
    return await aexecute_workflow(workflow, args, kwargs)


def execute(workflow: Any, *args: Any, **kwargs: Any) -> Any:
    """Run ``workflow`` to its end and return its result; sync form of :func:`aexecute`.

    ```python
    from pyworkflow import execute

    receipt = execute(checkout, "order-1")  # blocks until the run has ended
    ```
    """
    return execute_workflow(workflow, args, kwargs)


async def _get_run(runtime: Runtime, run_id: str) -> RunInfo:
    return _info(runtime, await runtime.storage.get_run(run_id))


async def aget_run(run_id: str) -> RunInfo:
    """The run's status, decoded result or error, and timestamps."""
    runtime = get_runtime()
    return await runtime.acall(_get_run, runtime, run_id)


def get_run(run_id: str) -> RunInfo:
    """Sync form of :func:`aget_run`.

    ```python
    from pyworkflow import RunStatus, get_run

    info = get_run(run_id)
    if info.status == RunStatus.COMPLETED:
        print(info.result)
    elif info.status == RunStatus.FAILED:
        print(info.error_message)
    ```
    """
    runtime = get_runtime()
    return runtime.call(_get_run, runtime, run_id)


#: First and longest pause between two looks at a run that may end in another process (s).
_POLL_FIRST, _POLL_MAX = 0.005, 0.25


async def _wait(runtime: Runtime, run_id: str, timeout: float | None) -> RunInfo:
    """The run once it has ended, following ``continue_as_new`` to the chain's last run.

    Runs on the runtime's loop. An end written in this process wakes the wait at once (the journal's
    in-process signal). Storage is read again only while no activation of the
    run is running here, at a growing interval (for runs ending elsewhere).
    """
    delay = _POLL_FIRST
    executor = runtime.executor
    with anyio.fail_after(timeout):
        while True:
            # watched before the look: an end written after it is signalled (a fresh
            # watch each time round: a run retried since its signal waits anew)
            with runtime.journal.watch(run_id) as ended:
                info = await _get_run(runtime, run_id)
                if info.status.is_terminal:
                    if info.continued_to is None:
                        return info
                    run_id, delay = info.continued_to, _POLL_FIRST  # the chain goes on there
                    continue
                while True:
                    with anyio.move_on_after(delay):
                        await ended.wait()
                    delay = min(delay * 1.5, _POLL_MAX)
                    if ended.is_set() or not executor.activating(run_id):
                        break


def _outcome(info: RunInfo) -> Any:
    if info.status == RunStatus.COMPLETED:
        if info.error is not None:  # the stored result could not be decoded
            raise info.error
        return info.result
    if info.status == RunStatus.CANCELLED:
        raise WorkflowCancelledError(f"run {info.run_id} was cancelled")
    if info.error is not None:
        raise info.error
    raise WorkflowFailedError(info.error_message or f"run {info.run_id} failed", run_id=info.run_id)


async def _result(runtime: Runtime, run_id: str, timeout: float | None) -> Any:
    try:
        info = await _wait(runtime, run_id, timeout)
    except TimeoutError:
        status = (await _get_run(runtime, run_id)).status.value
        raise TimeoutError(f"run {run_id} is still {status} after {timeout}s") from None
    return _outcome(info)


async def aget_result(run_id: str, timeout: float | None = None) -> Any:
    """Wait for the run to end; return its result or raise its error.

    A run that continued as new (``continue_as_new``) is followed to the
    chain's last run, whose outcome this is; ``timeout`` covers the whole
    chain. A failed run raises the workflow's own exception type where it can be
    rebuilt (else :class:`WorkflowFailedError`); a cancelled run raises
    :class:`WorkflowCancelledError`; ``timeout`` (seconds) raises
    ``TimeoutError``.
    """
    runtime = get_runtime()
    return await runtime.acall(_result, runtime, run_id, timeout)


def get_result(run_id: str, timeout: float | None = None) -> Any:
    """Wait for the run's end; return its result or raise its error (sync :func:`aget_result`).

    ``timeout`` is in seconds (``None``: wait for ever); when it runs out,
    ``TimeoutError``, and the run goes on. A failed run raises the
    workflow's own exception where its type can be rebuilt, else
    :class:`~pyworkflow.WorkflowFailedError`; a cancelled run
    :class:`~pyworkflow.WorkflowCancelledError`.

    ```python
    from pyworkflow import WorkflowCancelledError, get_result

    try:
        receipt = get_result(run_id, timeout=30)
    except TimeoutError:
        receipt = None  # still running: ask again later
    except WorkflowCancelledError:
        receipt = None
    ```

    How it waits: the calling thread waits itself (:meth:`Journal.watch_thread
    <pyworkflow.engine.journal.Journal.watch_thread>`). While this process
    activates the run, the thread just waits: the append that ends the run
    wakes it with its outcome, with no trip to the runtime's loop or to
    storage. Otherwise it enters the loop once to look at the run in storage
    (a run ending here meanwhile wakes it all the same), and runs ending
    elsewhere are polled for as :func:`aget_result` does.
    """
    runtime = get_runtime()
    runtime.check_sync_call()
    deadline = None if timeout is None else time.monotonic() + timeout
    delay = _POLL_FIRST
    executor = runtime.executor
    while True:
        with runtime.journal.watch_thread(run_id) as watch:
            # watched before the look; a run activated here has its end signalled
            if not executor.activating(run_id):
                look = runtime.submit(_look, runtime, run_id, _left(deadline))
                look.add_done_callback(watch.poke)
                watch.woke.wait()  # the look has the timeout (from when it starts, as in _wait)
                if watch.patch is not None:
                    ended = _ended_outcome(runtime, run_id, watch.patch, watch.serializer)
                    if ended is not None:
                        look.cancel()  # not started yet: dropped
                        return ended.unwrap()
                try:
                    info = look.result()  # done, or waited for: it follows the end
                except TimeoutError:
                    raise _timed_out(runtime, run_id, timeout) from None
                if info.status.is_terminal:
                    if info.continued_to is None:
                        return _outcome(info)
                    run_id = info.continued_to  # continue_as_new: wait for the next run
                    continue
                watch.woke.clear()
            while watch.patch is None:
                left = _left(deadline)
                if watch.woke.wait(delay if left is None else min(delay, left)):
                    break
                if left is not None and left <= delay:
                    raise _timed_out(runtime, run_id, timeout)
                delay = min(delay * 1.5, _POLL_MAX)
                if not executor.activating(run_id):
                    break  # look again (a fresh watch: a run retried since waits anew)
            if watch.patch is not None:
                ended = _ended_outcome(runtime, run_id, watch.patch, watch.serializer)
                if ended is not None:
                    return ended.unwrap()


def _left(deadline: float | None) -> float | None:
    return None if deadline is None else max(0.0, deadline - time.monotonic())


async def _look(runtime: Runtime, run_id: str, timeout: float | None) -> RunInfo:
    with anyio.fail_after(timeout):
        return await _get_run(runtime, run_id)


def _timed_out(runtime: Runtime, run_id: str, timeout: float | None) -> TimeoutError:
    status = runtime.call(_get_run, runtime, run_id).status.value
    return TimeoutError(f"run {run_id} is still {status} after {timeout}s")


@attrs.frozen
class _Ended:
    """The outcome of a run, taken from the patch that ended it."""

    result: Any = None
    error: BaseException | None = None

    def unwrap(self) -> Any:
        if self.error is not None:
            raise self.error
        return self.result


def _ended_outcome(
    runtime: Runtime, run_id: str, patch: RunPatch, serializer: str | None
) -> _Ended | None:
    """What :func:`_outcome` gives for the run ended by ``patch``; None: look in storage.

    Only for the common ends: completed with a result, failed with an error,
    cancelled; and only when the run's serializer is this runtime's.
    """
    status = patch.status
    if status == RunStatus.CANCELLED:
        return _Ended(error=WorkflowCancelledError(f"run {run_id} was cancelled"))
    data = patch.result if status == RunStatus.COMPLETED else patch.error
    if data is None or serializer is None or serializer != runtime.serializer.name:
        return None
    try:
        value = runtime.serializer.loads(data)
    except (SerializationError, CorruptDataError) as exc:
        return _Ended(error=exc)
    if status == RunStatus.COMPLETED:
        return _Ended(result=value)
    if isinstance(value, BaseException):
        return _Ended(error=value)
    message = patch.error_message or f"run {run_id} failed"
    return _Ended(error=WorkflowFailedError(message, run_id=run_id))


async def _events(runtime: Runtime, run_id: str) -> list[Event]:
    return await runtime.storage.get_events(run_id)


async def aget_events(run_id: str) -> list[Event]:
    """The run's event log, in order."""
    runtime = get_runtime()
    return await runtime.acall(_events, runtime, run_id)


def get_events(run_id: str) -> list[Event]:
    """Sync form of :func:`aget_events`."""
    runtime = get_runtime()
    return runtime.call(_events, runtime, run_id)


async def _cancel(runtime: Runtime, run_id: str, reason: str | None) -> bool:
    while True:
        run = await runtime.storage.get_run(run_id)
        if run.status.is_terminal:
            return False
        event = NewEvent(EventType.CANCEL_REQUESTED, None, {"reason": reason})
        if run.status is RunStatus.QUEUED:
            # never admitted, so nothing of it ran: it ends here (made due, it would skip its queue)
            ended = NewEvent(EventType.WORKFLOW_CANCELLED, None, {"queued": True})
            patch = RunPatch(status=RunStatus.CANCELLED, completed_at=utcnow())
            try:
                await runtime.journal.append(
                    run_id, run.last_seq, [event, ended], patch, workflow=run.workflow_name
                )
            except ConcurrencyError:
                continue  # admitted meanwhile: cancelled as a running run
            return True
        try:
            await runtime.journal.append(
                run_id, run.last_seq, [event], RunPatch(set_wake=True, wake_at=utcnow()), due=True
            )
        except ConcurrencyError:
            continue
        return True


async def acancel_run(runtime: Runtime, run_id: str, reason: str | None = None) -> bool:
    """:func:`acancel` on ``runtime``'s loop (for code already running there)."""
    return await _cancel(runtime, run_id, reason)


async def acancel(run_id: str, reason: str | None = None) -> bool:
    """Ask the run to stop: a cancellation is delivered into the workflow.

    Returns False if the run had already ended. The workflow may catch the
    cancellation to compensate; otherwise the run ends ``cancelled``.
    """
    runtime = get_runtime()
    return await runtime.acall(_cancel, runtime, run_id, reason)


def cancel(run_id: str, reason: str | None = None) -> bool:
    """Ask the run to stop; sync form of :func:`acancel`.

    ```python
    from pyworkflow import cancel

    if not cancel(run_id, reason="customer asked"):
        print("the run had already ended")
    ```
    """
    runtime = get_runtime()
    return runtime.call(_cancel, runtime, run_id, reason)


def validate_payload(schema_path: str | None, payload: Any) -> Any:
    """``payload`` checked strictly against the hook's recorded schema (see ``validation``).

    Raises ``PayloadValidationError`` listing each field at fault; no schema: as is.
    """
    if schema_path is None:
        return payload
    return validate(load_schema(schema_path), payload)


#: A delivery id: 1-200 printable ASCII characters, no spaces.
_DELIVERY_ID = re.compile(r"[\x21-\x7e]{1,200}")


def check_delivery_id(value: Any) -> str:
    """``value`` if it is a valid delivery id, else ``ValueError`` saying what one is."""
    if not isinstance(value, str) or not _DELIVERY_ID.fullmatch(value):
        raise ValueError("a delivery id must be 1-200 printable ASCII characters without spaces")
    return value


def _delivered(events: Sequence[Event], correlation_id: str, keys: Sequence[str]) -> bool:
    """Whether a ``hook_received`` of this hook already carries one of ``keys``."""
    wanted = set(keys)
    for event in events:
        if event.type == EventType.HOOK_RECEIVED and event.correlation_id == correlation_id:
            seen = event.payload.get("delivery")
            if isinstance(seen, list) and wanted.intersection(seen):
                return True
    return False


async def _resume_hook(
    runtime: Runtime, token: str, payload: Any, delivery: Sequence[str] = ()
) -> str:
    """Validate, record ``hook_received`` and schedule the run; once per delivery key.

    Without delivery keys the payload is appended at the end of the log in one
    atomic storage call. With keys, the log is read and the append carries the
    seq it read (compare-and-set), so two concurrent deliveries of one key
    record it once; a key already recorded for this hook returns at once.
    """
    while True:
        hook = await runtime.storage.get_hook(token)
        value = validate_payload(hook.schema, payload)
        data = dumps_limited(
            runtime.serializer_for(await runtime.storage.get_run(hook.run_id)),
            value,
            limit=runtime.settings.max_payload_bytes,
            what=f"payload of hook {token!r}",
        )
        body: dict[str, Any] = {"token": token, "data": data}
        if not delivery:
            return await runtime.journal.append_hook_payload(
                token, body, utcnow(), hook.correlation_id
            )
        body["delivery"] = list(delivery)
        events = await runtime.storage.get_events(hook.run_id)
        if _delivered(events, hook.correlation_id, delivery):
            return hook.run_id
        now = utcnow()
        event = NewEvent(EventType.HOOK_RECEIVED, hook.correlation_id, body, now)
        expected = events[-1].seq if events else 0
        try:
            await runtime.journal.append(
                hook.run_id, expected, [event], RunPatch(set_wake=True, wake_at=now), due=True
            )
        except ConcurrencyError:
            continue  # the log moved (another payload, the hook disposed): look again
        return hook.run_id


def _delivery_keys(delivery_id: str | None) -> tuple[str, ...]:
    return () if delivery_id is None else (check_delivery_id(delivery_id),)


async def aresume_hook(token: str, payload: Any = None, *, delivery_id: str | None = None) -> str:
    """Send ``payload`` to the live hook ``token``; returns the run id it resumes.

    Validated against the hook's schema (``PayloadValidationError`` listing
    field errors, nothing recorded), then ``hook_received`` is appended
    atomically and the run is scheduled. ``HookNotFoundError`` for an
    unknown or disposed token. With ``delivery_id`` the call is idempotent:
    a second call with an id this hook already recorded records nothing and
    returns the same run id (safe to retry after a timeout).
    """
    runtime = get_runtime()
    keys = _delivery_keys(delivery_id)
    return await runtime.acall(_resume_hook, runtime, token, payload, keys)


def resume_hook(token: str, payload: Any = None, *, delivery_id: str | None = None) -> str:
    """Send ``payload`` to the live hook ``token``; sync form of :func:`aresume_hook`.

    ```python
    from pyworkflow import resume_hook

    # e.g. in a web handler, once the manager clicked "approve":
    run_id = resume_hook("approval:order-1", {"approved": True}, delivery_id="click-42")
    ```
    """
    runtime = get_runtime()
    keys = _delivery_keys(delivery_id)
    return runtime.call(_resume_hook, runtime, token, payload, keys)


async def adeliver_hook(token: str, payload: Any, keys: Sequence[str]) -> str:
    """:func:`aresume_hook` recording ``payload`` once across several delivery ``keys``.

    The HTTP server passes the signature of a signed request and the
    sender's delivery id: a repeat of either is acknowledged, not recorded.
    """
    runtime = get_runtime()
    return await runtime.acall(_resume_hook, runtime, token, payload, tuple(keys))


async def _list_runs(
    runtime: Runtime,
    status: RunStatus | None,
    workflow: str | None,
    limit: int,
    cursor: str | None,
    parent: str | None = None,
) -> RunPage:
    return await runtime.storage.list_runs(
        status=status, workflow=workflow, limit=limit, cursor=cursor, parent_run_id=parent
    )


async def alist_runs(
    *,
    status: RunStatus | str | None = None,
    workflow: str | None = None,
    limit: int = 50,
    cursor: str | None = None,
    parent: str | None = None,
) -> RunPage:
    """Runs newest first, optionally filtered; pass ``page.next_cursor`` for the next page.

    ``parent`` keeps the child runs of that run id.
    """
    runtime = get_runtime()
    wanted = RunStatus(status) if status is not None else None
    return await runtime.acall(_list_runs, runtime, wanted, workflow, limit, cursor, parent)


def list_runs(
    *,
    status: RunStatus | str | None = None,
    workflow: str | None = None,
    limit: int = 50,
    cursor: str | None = None,
    parent: str | None = None,
) -> RunPage:
    """Sync form of :func:`alist_runs`.

    ```python
    from pyworkflow import RunStatus, list_runs

    page = list_runs(status=RunStatus.FAILED, limit=20)
    while True:
        for run in page.runs:
            print(run.run_id, run.workflow_name, run.created_at)
        if page.next_cursor is None:
            break
        page = list_runs(status=RunStatus.FAILED, limit=20, cursor=page.next_cursor)
    ```
    """
    runtime = get_runtime()
    wanted = RunStatus(status) if status is not None else None
    return runtime.call(_list_runs, runtime, wanted, workflow, limit, cursor, parent)


async def _get_hook(runtime: Runtime, token: str) -> HookRecord:
    return await runtime.storage.get_hook(token)


async def aget_hook(token: str) -> HookRecord:
    """The live hook ``token`` (its run, schema and secret); ``HookNotFoundError`` if none."""
    runtime = get_runtime()
    return await runtime.acall(_get_hook, runtime, token)


async def _retry(runtime: Runtime, run_id: str) -> RunStatus | None:
    """Retry a failed run; the status it was given (pending, or queued), None if not failed."""
    while True:
        run = await runtime.storage.get_run(run_id)
        if run.status != RunStatus.FAILED:
            return None
        events = await runtime.storage.get_events(run_id)
        failed_at = max(e.seq for e in events if e.type == EventType.WORKFLOW_FAILED)
        step_failures = [e for e in events if e.type == EventType.STEP_FAILED and e.seq < failed_at]
        void = [step_failures[-1].seq] if step_failures else []
        event = NewEvent(EventType.WORKFLOW_RETRIED, None, {"void": void})
        from pyworkflow.queues import waits_in_queue

        if waits_in_queue(runtime, run.queue):  # it waits in its queue again
            patch = RunPatch(
                status=RunStatus.QUEUED, set_wake=True, wake_at=None, clear_outcome=True
            )
        else:
            patch = RunPatch(
                status=RunStatus.PENDING, set_wake=True, wake_at=utcnow(), clear_outcome=True
            )
        queued = patch.status is RunStatus.QUEUED
        try:
            await runtime.journal.append(run_id, run.last_seq, [event], patch, due=not queued)
        except ConcurrencyError:
            continue
        if queued:
            runtime.executor.notify(None)
        return patch.status


async def aretry_run(run_id: str) -> bool:
    """Resume a failed run from its failed step; completed steps are not run again.

    The step failure that failed the run is set aside (its retry budget starts
    afresh) and the run is scheduled; returns False if the run is not failed.
    """
    return await aretry_run_status(run_id) is not None


async def aretry_run_status(run_id: str) -> RunStatus | None:
    """:func:`aretry_run`, telling the status the retry gave the run (``pending``, or
    ``queued`` in a limited queue), or None if the run is not failed.

    That status is the retry's own, not a later read: a worker may already have moved on.
    """
    runtime = get_runtime()
    return await runtime.acall(_retry, runtime, run_id)


def retry_run(run_id: str) -> bool:
    """Sync form of :func:`aretry_run`."""
    runtime = get_runtime()
    return runtime.call(_retry, runtime, run_id) is not None


def check_replay(run_id: str) -> ReplayReport:
    """Replay the run's log against the workflow code now imported; report any divergence."""
    runtime = get_runtime()
    return runtime.call(engine.check_replay, runtime, run_id)
