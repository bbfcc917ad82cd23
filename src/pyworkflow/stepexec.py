"""Running one attempt of a step body and turning its outcome into an event.

Shared by activations that run steps in-process and by workers that run
steps dispatched to them: the retry decision, timeout and error encoding
are the same wherever the body runs.

An ``async`` step body runs on its worker's event loop, so a body that blocks
(``time.sleep``, a long CPU-bound stretch between two ``await``) stops every
other run on that worker meanwhile. Each resumption of a body is timed; one
that holds the loop for more than :data:`BLOCKING_WARNING_SECONDS` is logged
as a warning naming the step, while it blocks (by the lease keeper's thread,
:func:`report_blocking`) and once it is over. Leases do not depend on the
loop (:mod:`pyworkflow.leases`), so such a step is not run twice for it.
"""

from __future__ import annotations

import functools
import inspect
import time
import traceback
import types
from collections.abc import Awaitable, Callable, Coroutine, Generator, Iterable, Mapping
from contextlib import AbstractAsyncContextManager, AsyncExitStack
from typing import TYPE_CHECKING, Any

import anyio
import anyio.to_thread
from loguru import logger

from pyworkflow import checkpoints
from pyworkflow import context as ctxmod
from pyworkflow.errors import PayloadTooLargeError, SerializationError, StepFailedError
from pyworkflow.logs import debug_enabled
from pyworkflow.models import Event, EventType, NewEvent, utcnow
from pyworkflow.serialization import Serializer, dumps_limited
from pyworkflow.step import StepDefinition

if TYPE_CHECKING:
    from loguru import Logger

__all__ = [
    "BLOCKING_CHECK_SECONDS",
    "BLOCKING_WARNING_SECONDS",
    "dump_error",
    "refresh_body_contexts",
    "report_blocking",
    "retry_bases",
    "run_step_attempt",
    "runs_now",
    "start_attempt",
    "voided_seqs",
]

#: An ``async`` step body that keeps its event loop busy this long without
#: awaiting (seconds) is reported with a warning naming the step.
BLOCKING_WARNING_SECONDS = 1.0
#: How often the lease keeper's thread looks for such a body while leases are held.
BLOCKING_CHECK_SECONDS = 0.25


def dump_error(
    serializer: Serializer, limit: int, exc: BaseException, what: str
) -> tuple[str, BaseException]:
    """Serialize ``exc``; an oversize or unserializable error is replaced."""
    try:
        return dumps_limited(serializer, exc, limit=limit, what=what), exc
    except PayloadTooLargeError as too_big:
        return serializer.dumps(too_big), too_big
    except SerializationError:
        tb = "".join(traceback.format_exception(exc))
        fallback = StepFailedError(
            str(exc),
            error_type=f"{type(exc).__module__}.{type(exc).__qualname__}",
            traceback=tb[-4000:],
        )
        return serializer.dumps(fallback), fallback


def voided_seqs(history: Iterable[Event]) -> set[int]:
    """Seqs of step failures set aside by ``workflow_retried`` events (``runs retry``)."""
    return {
        seq
        for e in history
        if e.type == EventType.WORKFLOW_RETRIED
        for seq in e.payload.get("void", ())
    }


def retry_bases(history: Iterable[Event], voided: set[int]) -> dict[str, int]:
    """Per step id, the attempt a retried run's step budget starts again from."""
    return {
        str(e.correlation_id): int(e.payload.get("attempt", 0)) for e in history if e.seq in voided
    }


def _unwritable_result(name: str, result: Any, error: SerializationError) -> SerializationError:
    """The error a step fails with when its result cannot be serialized."""
    if isinstance(error, PayloadTooLargeError):
        return error
    kind = type(result)
    return SerializationError(
        f"result of step {name!r} (a {kind.__module__}.{kind.__qualname__}) cannot be "
        f"stored: {error}; return a value the serializer can write (or store it elsewhere "
        "and return a reference to it)"
    )


#: A step attempt's ids: ``(run_id, step_id, step_name, attempt)``.
_Ids = tuple[str, str, str, int]


def _bound(ids: _Ids) -> Logger:
    """The logger with a step attempt's ids bound, made only when a line is logged.

    Most attempts log nothing above DEBUG; binding loguru per attempt cost more
    than the rest of the attempt's bookkeeping.
    """
    run_id, step_id, name, attempt = ids
    return logger.bind(run_id=run_id, step_id=step_id, step=name, attempt=attempt)


#: Step bodies running on some event loop right now, by stretch: ``[since, reported,
#: ids]`` (``since`` a ``time.monotonic()`` reading; read from the lease keeper's thread).
_resuming: dict[int, list[Any]] = {}


def report_blocking(now: float) -> None:
    """Warn once about each step body holding its loop past the threshold at ``now``.

    ``now`` is a ``time.monotonic()`` reading; safe to call from any thread.
    """
    try:
        stretches = tuple(_resuming.values())
    except RuntimeError:  # changed by the loop's thread meanwhile: look again next time
        return
    for stretch in stretches:
        since, reported, ids = stretch
        if not reported and now - since > BLOCKING_WARNING_SECONDS:
            stretch[1] = True
            _bound(ids).warning(
                "step {!r} has been blocking its worker's event loop for {:.1f}s "
                "(threshold {:g}s): other runs on this worker wait until it awaits; "
                "its leases are still renewed",
                ids[2],
                now - since,
                BLOCKING_WARNING_SECONDS,
            )


_monotonic = time.monotonic


#: ``_timed``'s ``yielded`` when the body has not run yet.
_UNSTARTED: Any = object()


@types.coroutine
def _timed(
    awaitable: Awaitable[Any], ids: _Ids, yielded: Any = _UNSTARTED
) -> Generator[Any, Any, Any]:
    """Await a step body, timing each stretch it runs on the loop without suspending.

    While a stretch runs, its record ``[since, reported, ids]`` is in
    ``_resuming`` (``reported`` once the lease keeper's thread has warned).
    ``yielded``, when given, is what the body's first stretch (run and timed
    by the caller) yielded: it is passed on to the loop first.
    """
    inner: Any = awaitable if type(awaitable) is _CoroutineType else awaitable.__await__()
    value: Any = None
    error: BaseException | None = None
    stretch: list[Any] = [0.0, False, ids]
    key = id(stretch)
    suspended = yielded is not _UNSTARTED
    while True:
        if suspended:
            value, error = None, None
            try:
                value = yield yielded
            except GeneratorExit:
                inner.close()
                raise
            except BaseException as exc:  # cancellation included: the body gets it
                error = exc
        suspended = True
        stretch[1] = False
        stretch[0] = since = _monotonic()
        _resuming[key] = stretch
        try:
            if error is None:
                yielded = inner.send(value)
            else:
                yielded = inner.throw(error)
        except StopIteration as done:
            return done.value
        finally:
            del _resuming[key]
            held = _monotonic() - since
            if held > BLOCKING_WARNING_SECONDS:
                _warn_blocked(ids, held)


def _warn_blocked(ids: _Ids, held: float) -> None:
    _bound(ids).warning(
        "step {!r} blocked its worker's event loop for {:.1f}s without awaiting "
        "(threshold {:g}s); nothing else on this worker ran meanwhile. Make the step "
        "a plain `def` (it then runs in a thread) or call blocking code through "
        "`await anyio.to_thread.run_sync(...)`",
        ids[2],
        held,
        BLOCKING_WARNING_SECONDS,
    )


_CoroutineType = types.CoroutineType
_CO_COROUTINE = inspect.CO_COROUTINE
_step_ids = ctxmod._step
#: Attempts with checkpoint state (:mod:`pyworkflow.checkpoints`); empty unless a body
#: checkpoints, so an attempt's end costs one truth test here.
_open_checkpoints = checkpoints.open_attempts
_STEP_COMPLETED = EventType.STEP_COMPLETED
_FunctionType = types.FunctionType


async def _call_body(
    body: Callable[..., Any], args: tuple[Any, ...], kwargs: Mapping[str, Any], ids: _Ids
) -> Any:
    if inspect.iscoroutinefunction(body):
        return await _timed(body(*args, **kwargs), ids)
    result = await anyio.to_thread.run_sync(functools.partial(body, *args, **kwargs))
    if inspect.isawaitable(result):
        result = await _timed(result, ids)
    return result


async def run_step_attempt(
    definition: StepDefinition,
    body: Callable[..., Any],
    args: tuple[Any, ...],
    kwargs: Mapping[str, Any],
    *,
    run_id: str,
    step_id: str,
    attempt: int,
    retry_base: int,
    serializer: Serializer,
    limit: int,
    extra: Mapping[str, Any] | None = None,
    place: Callable[[], AbstractAsyncContextManager[None]] | None = None,
) -> NewEvent:
    """Run attempt ``attempt`` of a step body; return its ``step_completed``,
    ``step_retrying`` or ``step_failed`` event (``extra`` is added to its payload).

    ``retry_base`` is subtracted from ``attempt`` before the retry policy is
    asked (a retried run gives the step a fresh budget). ``place`` (a step of a
    limited queue, :mod:`pyworkflow.step_queues`) is held around the body.
    """
    if place is not None:
        async with place():
            return await run_step_attempt(
                definition,
                body,
                args,
                kwargs,
                run_id=run_id,
                step_id=step_id,
                attempt=attempt,
                retry_base=retry_base,
                serializer=serializer,
                limit=limit,
                extra=extra,
            )
    name = definition.name
    ids = (run_id, step_id, name, attempt)
    _step_ids.set(ids)  # get_step_context() builds its record from them

    base = {"name": name, "attempt": attempt, **extra} if extra else None
    timeout = definition.timeout.total_seconds() if definition.timeout else None
    wrappers = await _enter_body_contexts(ids) if _wrapping else None
    try:
        if attempt > 1:  # read the checkpoint it may resume from (the body cannot wait)
            await checkpoints.prepare(ids)
        if (
            timeout is None
            and type(body) is _FunctionType
            and body.__code__.co_flags & _CO_COROUTINE
        ):  # the common case (an async function, no timeout), one frame less
            result = await _timed(body(*args, **kwargs), ids)
        elif timeout is None:
            result = await _call_body(body, args, kwargs, ids)
        else:
            with anyio.fail_after(timeout):
                result = await _call_body(body, args, kwargs, ids)
    except Exception as raised:
        error = raised
        if isinstance(raised, TimeoutError) and timeout is not None:
            error = TimeoutError(f"step {name!r} timed out after {timeout:g}s")
        if _open_checkpoints:  # the last state before the exception is kept
            await checkpoints.finish(ids)
    else:
        if _open_checkpoints:
            await checkpoints.finish(ids)
        return _finished(definition, ids, retry_base, serializer, limit, base, result)
    finally:
        if _open_checkpoints:  # cancelled (a lost lease): nothing more is written
            checkpoints.discard(ids)
        if wrappers is not None:
            await wrappers.aclose()
    return _failed(definition, ids, retry_base, serializer, limit, base, error, True)


#: Whether a plugin wraps step bodies (``pyworkflow_step_body_context``); asked by
#: :func:`refresh_body_contexts` when a runtime starts, not per attempt.
_wrapping = False


def refresh_body_contexts() -> None:
    """Ask the plugins once whether any wraps step bodies (each runtime calls it)."""
    global _wrapping
    from pyworkflow import plugins

    _wrapping = plugins.has_step_body_contexts()


async def _enter_body_contexts(ids: _Ids) -> AsyncExitStack:
    """Enter the plugins' context managers for attempt ``ids``; close the stack to leave."""
    from pyworkflow import plugins

    stack = AsyncExitStack()
    try:
        for manager in plugins.step_body_contexts(*ids):
            await stack.enter_async_context(manager)
    except BaseException:
        await stack.aclose()
        raise
    return stack


def _finished(
    definition: StepDefinition,
    ids: _Ids,
    retry_base: int,
    serializer: Serializer,
    limit: int,
    base: dict[str, Any] | None,
    result: Any,
) -> NewEvent:
    """The event of an attempt whose body returned ``result``: completed, or failed when
    ``result`` cannot be written."""
    run_id, step_id, name, attempt = ids
    try:
        data = dumps_limited(serializer, result, limit=limit, what=f"result of step {name!r}")
    except SerializationError as unwritable:
        # running the body again returns the same kind of value: fail now, like an
        # oversized result (a FatalError), instead of spending the retries
        error = _unwritable_result(name, result, unwritable)
    else:
        if debug_enabled(__name__):  # building a disabled line cost more than the rest
            # the ids as keyword arguments land in the record's extra, as bound ones would
            logger.debug(
                "step completed", run_id=run_id, step_id=step_id, step=name, attempt=attempt
            )
        if base is None:
            payload = {"name": name, "attempt": attempt, "result": data}
        else:
            payload = {**base, "result": data}
        return NewEvent(_STEP_COMPLETED, step_id, payload, utcnow())
    # outside the except block: the error is written with no exception being handled
    return _failed(definition, ids, retry_base, serializer, limit, base, error, False)


def _failed(
    definition: StepDefinition,
    ids: _Ids,
    retry_base: int,
    serializer: Serializer,
    limit: int,
    base: dict[str, Any] | None,
    error: BaseException,
    retry: bool,
) -> NewEvent:
    """The event of an attempt that failed with ``error``: retrying (if ``retry`` and the
    policy allows another attempt) or failed."""
    _, step_id, name, attempt = ids
    if base is None:
        base = {"name": name, "attempt": attempt}
    data, error = dump_error(serializer, limit, error, f"error of step {name!r}")
    detail = {**base, "error": data, "error_message": f"{type(error).__name__}: {error}"}
    if retry and definition.retry.should_retry(error, attempt - retry_base):
        delay = definition.retry.delay_for(error, attempt - retry_base)
        due = utcnow() + delay
        detail.update(delay=delay.total_seconds(), due_at=due.isoformat())
        _bound(ids).warning("step failed, retrying in {:.3f}s: {}", delay.total_seconds(), error)
        return NewEvent(EventType.STEP_RETRYING, step_id, detail)
    _bound(ids).error("step failed: {}", error)
    return NewEvent(EventType.STEP_FAILED, step_id, detail)


def runs_now(definition: StepDefinition, body: Callable[..., Any]) -> bool:
    """Whether an attempt of ``body`` can start with :func:`start_attempt`: an ``async def``
    function with no timeout (the common step)."""
    return (
        definition.timeout is None
        and type(body) is _FunctionType
        and bool(body.__code__.co_flags & _CO_COROUTINE)
    )


def start_attempt(
    definition: StepDefinition,
    body: Callable[..., Any],
    args: tuple[Any, ...],
    kwargs: Mapping[str, Any],
    ids: _Ids,
    retry_base: int,
    serializer: Serializer,
    limit: int,
) -> NewEvent | Coroutine[Any, Any, NewEvent]:
    """:func:`run_step_attempt` for a body :func:`runs_now` accepts, started at once.

    ``ids`` is ``(run_id, step_id, step_name, attempt)``. The body's first
    stretch runs (and is timed) in this call: a body that finishes without
    suspending gives its outcome event here, with no coroutine of the
    attempt's own; otherwise the coroutine that finishes the attempt is
    returned, to be awaited. The events are those :func:`run_step_attempt`
    writes.
    """
    if _wrapping or ids[3] > 1:
        # a plugin wraps bodies, or a retry reads its checkpoint first: the attempt runs
        # as a coroutine
        return run_step_attempt(
            definition,
            body,
            args,
            kwargs,
            run_id=ids[0],
            step_id=ids[1],
            attempt=ids[3],
            retry_base=retry_base,
            serializer=serializer,
            limit=limit,
        )
    _step_ids.set(ids)  # get_step_context() builds its record from them
    error: Exception | None = None
    result: Any = None
    try:
        coro = body(*args, **kwargs)
        stretch: list[Any] = [_monotonic(), False, ids]
        key = id(stretch)
        _resuming[key] = stretch
        try:
            yielded = coro.send(None)
        finally:
            del _resuming[key]
            held = _monotonic() - stretch[0]
            if held > BLOCKING_WARNING_SECONDS:
                _warn_blocked(ids, held)
    except StopIteration as done:
        result = done.value
    except Exception as raised:
        error = raised
    else:
        return _rest_of_attempt(coro, yielded, definition, ids, retry_base, serializer, limit)
    if _open_checkpoints and ids in _open_checkpoints:  # a checkpoint waits to be written
        return _flushed(
            ids, _finished_or_failed(definition, ids, retry_base, serializer, limit, result, error)
        )
    if error is not None:
        return _failed(definition, ids, retry_base, serializer, limit, None, error, True)
    # _finished, inline for the common outcome
    name = ids[2]
    try:
        data = dumps_limited(serializer, result, limit=limit, what=f"result of step {name!r}")
    except SerializationError:
        data = None  # _finished writes the failure, outside this except block
    if data is None or debug_enabled(__name__):
        return _finished(definition, ids, retry_base, serializer, limit, None, result)
    return NewEvent(
        _STEP_COMPLETED, ids[1], {"name": name, "attempt": ids[3], "result": data}, utcnow()
    )


def _finished_or_failed(
    definition: StepDefinition,
    ids: _Ids,
    retry_base: int,
    serializer: Serializer,
    limit: int,
    result: Any,
    error: Exception | None,
) -> NewEvent:
    if error is not None:
        return _failed(definition, ids, retry_base, serializer, limit, None, error, True)
    return _finished(definition, ids, retry_base, serializer, limit, None, result)


async def _flushed(ids: _Ids, event: NewEvent) -> NewEvent:
    """``event``, once the attempt's pending checkpoint is written."""
    await checkpoints.finish(ids)
    return event


async def _rest_of_attempt(
    coro: Coroutine[Any, Any, Any],
    yielded: Any,
    definition: StepDefinition,
    ids: _Ids,
    retry_base: int,
    serializer: Serializer,
    limit: int,
) -> NewEvent:
    """The rest of an attempt whose body suspended, having yielded ``yielded``."""
    try:
        result = await _timed(coro, ids, yielded)
    except Exception as raised:
        error = raised
        if _open_checkpoints:  # the last state before the exception is kept
            await checkpoints.finish(ids)
    else:
        if _open_checkpoints:
            await checkpoints.finish(ids)
        return _finished(definition, ids, retry_base, serializer, limit, None, result)
    finally:
        if _open_checkpoints:  # cancelled (a lost lease): nothing more is written
            checkpoints.discard(ids)
    return _failed(definition, ids, retry_base, serializer, limit, None, error, True)
