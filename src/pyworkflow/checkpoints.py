"""Step checkpoints: a step attempt saves its progress; the next attempt resumes from it.

Inside a step body, ``await get_step_context().checkpoint(state)`` (or
``checkpoint_sync(state)`` in a plain ``def`` body, which runs in a thread)
records ``state``, serialized with the run's serializer, as the step's
checkpoint in storage (:meth:`Storage.save_step_checkpoint
<pyworkflow.storage.base.Storage.save_step_checkpoint>`). The next attempt of
the same step, after an exception and a retry, a crash of the worker or a
lease taken over by another worker, reads it as
``get_step_context().last_checkpoint`` and carries on from there. What
Temporal calls heartbeat details. See ``docs/checkpoints.md``.

The rules, in one place:

- **Throttled.** Of the checkpoints one attempt makes, at most one is written
  per ``checkpoint_interval`` seconds (by the runtime's clock). A checkpoint
  made sooner is kept in memory (only the latest) and written by the first
  call once the interval has passed, or when the attempt ends, however it
  ends (a result or an exception: the last state before an exception is
  kept). A crash loses at most the states of the last interval.
- **Size-limited.** A state whose serialized form is over
  ``checkpoint_max_bytes`` fails the call with
  :class:`~pyworkflow.errors.PayloadTooLargeError` naming the step.
- **Fenced.** Storage keeps one checkpoint per step, from the newest attempt
  that saved one; a save by an older attempt (a zombie that lost its lease
  to a newer attempt) is refused, logged once, and that attempt saves no
  more (:func:`~pyworkflow.storage.checkpoint_rules.supersedes`).
- **Read once.** ``last_checkpoint`` is the checkpoint as it stood when the
  attempt began (None on a first attempt, or when no earlier attempt saved
  one); the attempt's own saves do not change it.

The attempt's state lives in this process, keyed by the attempt's ids, from
its first use to the attempt's end (:func:`finish`, which the code running
the attempt calls: :mod:`pyworkflow.stepexec`). A run that storage does not
know (a transient run, a step run alone by ``pyworkflow.testing.run_step``)
keeps its checkpoints in this process only, written at once (no throttle: it
costs no storage write), so a retry within the run resumes from them.
"""

from __future__ import annotations

import sys
import threading
from datetime import datetime
from typing import TYPE_CHECKING, Any

import attrs
from loguru import logger

from pyworkflow.errors import PayloadTooLargeError, RunNotFoundError
from pyworkflow.models import StepCheckpoint, utcnow

if TYPE_CHECKING:
    from pyworkflow.runtime import Runtime
    from pyworkflow.serialization import Serializer

__all__ = [
    "discard",
    "enter_alone",
    "exit_alone",
    "finish",
    "last_checkpoint",
    "open_attempts",
    "prepare",
    "save_checkpoint",
    "save_checkpoint_sync",
]

#: A step attempt's ids: ``(run_id, step_id, step_name, attempt)``.
_Ids = tuple[str, str, str, int]

#: Attempts whose state is kept at most (the oldest are forgotten past it: an attempt
#: that never reached its end, such as a transient run's).
_MAX_ATTEMPTS = 4096
#: A decoded value not decoded yet.
_UNDECODED: Any = object()


@attrs.define(eq=False)
class _Attempt:
    """What this process knows of one attempt's checkpoints."""

    runtime: Runtime | None = None
    serializer: Serializer | None = None
    #: whether the checkpoint stored before the attempt began was read
    loaded: bool = False
    record: StepCheckpoint | None = None
    value: Any = _UNDECODED
    #: when the attempt last wrote a checkpoint (None: never)
    written_at: datetime | None = None
    #: the latest state made within the interval, serialized, not written yet
    pending: str | None = None
    #: a newer attempt's checkpoint is stored: this attempt writes no more
    refused: bool = False
    #: the run is not in storage (a transient run): checkpoints stay in this process
    local: bool = False
    #: a transient run's ``checkpoint_max_bytes``
    limit: int = 0


#: Attempts with checkpoint state in this process, by ids (empty for most: read by
#: :mod:`pyworkflow.stepexec` to skip :func:`finish` when no attempt checkpoints).
open_attempts: dict[_Ids, _Attempt] = {}
_attempts = open_attempts
_lock = threading.Lock()
#: Checkpoints of runs storage does not know, by ``(run_id, step_id)`` (bounded).
_local: dict[tuple[str, str], StepCheckpoint] = {}


#: Attempts of runs without storage (transient runs, steps run alone), by ids: apart, so
#: that :data:`open_attempts` stays empty where no stored run checkpoints.
_local_attempts: dict[_Ids, _Attempt] = {}


def _state(ids: _Ids, table: dict[_Ids, _Attempt] = _attempts) -> _Attempt:
    state = table.get(ids)
    if state is None:
        with _lock:
            state = table.get(ids)
            if state is None:
                while len(table) >= _MAX_ATTEMPTS:
                    del table[next(iter(table))]
                state = table[ids] = _Attempt()
    return state


def _runtime() -> Runtime:
    from pyworkflow.runtime import current_runtime  # lazily: the runtime imports a lot

    return current_runtime()


def _transient(run_id: str) -> bool:
    """Whether ``run_id`` has no storage: a transient run, or a step run alone, in progress here."""
    if run_id in _alone:
        return True
    module = sys.modules.get("pyworkflow.transient")  # loaded by any transient run
    return module is not None and run_id in getattr(module, "_live", ())


#: Run ids of steps run alone by the test harness (``pyworkflow.testing.run_step``), with
#: how many such calls are in progress for each.
_alone: dict[str, int] = {}


def enter_alone(ids: _Ids) -> None:
    """A step body runs alone (``pyworkflow.testing.run_step``): its checkpoints stay here.

    A first attempt starts from no checkpoint (one left by an earlier test is
    dropped); a later attempt of the same run id and step id reads what an
    earlier call saved.
    """
    with _lock:
        _alone[ids[0]] = _alone.get(ids[0], 0) + 1
        if ids[3] <= 1:
            _local.pop((ids[0], ids[1]), None)


def exit_alone(ids: _Ids) -> None:
    """The step body :func:`enter_alone` announced has returned or raised."""
    with _lock:
        left = _alone.get(ids[0], 1) - 1
        if left:
            _alone[ids[0]] = left
        else:
            _alone.pop(ids[0], None)
        _local_attempts.pop(ids, None)


def _encode(serializer: Serializer, limit: int, ids: _Ids, value: Any) -> str:
    """``value`` serialized; over ``limit`` bytes :class:`PayloadTooLargeError` naming the step."""
    run_id, step_id, name, _ = ids
    data = serializer.dumps(value)
    size = len(data) if data.isascii() else len(data.encode())
    if size > limit:
        raise PayloadTooLargeError(
            f"checkpoint of step {name!r} (step id {step_id}, run {run_id}) is {size} bytes, "
            f"over the checkpoint limit of {limit} bytes (config key 'checkpoint_max_bytes'): "
            "save a smaller state, such as a position or the id of data stored elsewhere"
        )
    return data


def _bind_transient(state: _Attempt, ids: _Ids) -> Serializer:
    """A transient run's checkpoints: the configured serializer, kept in this process.

    The checkpoint an earlier attempt saved is taken aside at the attempt's
    first touch (before any save of its own).
    """
    if state.serializer is None:
        earlier = _local.get((ids[0], ids[1]))
        state.record = earlier if earlier is not None and earlier.attempt < ids[3] else None
        from pyworkflow import plugins
        from pyworkflow.runtime import _current, current_settings

        running = _current.get()
        settings = running.settings if running is not None else current_settings()
        state.serializer = plugins.get_serializer(settings.serializer)
        state.limit = settings.checkpoint_max_bytes
        state.local = state.loaded = True
    return state.serializer


def _save_transient(ids: _Ids, value: Any) -> None:
    state = _state(ids, _local_attempts)
    serializer = _bind_transient(state, ids)
    if not state.refused:
        state.refused = not _store_locally(ids, _encode(serializer, state.limit, ids, value))


def _last_transient(ids: _Ids) -> Any:
    state = _state(ids, _local_attempts)
    serializer = _bind_transient(state, ids)
    if state.record is None:
        return None
    if state.value is _UNDECODED:
        state.value = serializer.loads(state.record.data)
    return state.value


async def _bind(runtime: Runtime, ids: _Ids, state: _Attempt) -> Serializer:
    """The run's serializer (and whether storage knows the run), looked up once per attempt."""
    if state.serializer is None:
        try:
            run = await runtime.storage.get_run(ids[0])
        except RunNotFoundError:
            state.local = True
            state.serializer = runtime.serializer
        else:
            state.serializer = runtime.serializer_for(run)
        state.runtime = runtime
    return state.serializer


async def _load(runtime: Runtime, ids: _Ids, state: _Attempt) -> None:
    """Read the checkpoint stored before this attempt (on the runtime's loop)."""
    run_id, step_id, _, _ = ids
    await _bind(runtime, ids, state)
    if state.local:
        state.record = _local.get((run_id, step_id))
    else:
        state.record = await runtime.storage.get_step_checkpoint(run_id, step_id)
    state.loaded = True


async def prepare(ids: _Ids) -> None:
    """Read the checkpoint an attempt after the first may resume from, before its body runs.

    Called on the runtime's loop by the code starting the attempt: a body
    running on that loop cannot wait for storage when it reads
    ``last_checkpoint``. A first attempt has nothing to read.
    """
    if ids[3] <= 1:
        return
    state = _state(ids)
    if not state.loaded:
        runtime = _runtime()
        await runtime.acall(_load, runtime, ids, state)


def last_checkpoint(ids: _Ids) -> Any:
    """The state an earlier attempt of the step saved last, decoded; None if there is none."""
    if ids[3] > 1 and _transient(ids[0]):
        return _last_transient(ids)
    state = _attempts.get(ids)
    if state is None or not state.loaded:
        if ids[3] <= 1:
            return None  # no earlier attempt
        state = _state(ids)
        runtime = _runtime()
        if runtime.in_loop:  # not read before the body started (it cannot wait here)
            local = _local.get((ids[0], ids[1]))
            return None if local is None else runtime.serializer.loads(local.data)
        # from a thread that is not the runtime's: a sync body's, or one running an event
        # loop of its own (an async body an executor runs in its worker process, as Ray
        # does), which waits for this one read; check_sync_call() would refuse the latter
        runtime._call_from_thread(_load, (runtime, ids, state))
    if state.record is None:
        return None
    if state.value is _UNDECODED:
        assert state.serializer is not None  # set by _load
        state.value = state.serializer.loads(state.record.data)
    return state.value


async def _save(runtime: Runtime, ids: _Ids, value: Any) -> None:
    """Serialize ``value`` and write it now, or keep it for later (throttled)."""
    state = _state(ids)
    serializer = await _bind(runtime, ids, state)
    data = _encode(serializer, runtime.settings.checkpoint_max_bytes, ids, value)
    if state.refused:
        return
    now = utcnow()
    last = state.written_at
    if last is not None and (now - last).total_seconds() < runtime.settings.checkpoint_interval:
        state.pending = data
        return
    state.pending = None
    state.written_at = now
    await _write(runtime, ids, state, data)


def _store_locally(ids: _Ids, data: str) -> bool:
    run_id, step_id, _, attempt = ids
    with _lock:
        stored = _local.get((run_id, step_id))
        if stored is not None and stored.attempt > attempt:
            return False
        while len(_local) >= _MAX_ATTEMPTS:
            del _local[next(iter(_local))]
        _local[run_id, step_id] = StepCheckpoint(run_id, step_id, attempt, data, utcnow())
        return True


async def _write(runtime: Runtime, ids: _Ids, state: _Attempt, data: str) -> None:
    run_id, step_id, name, attempt = ids
    if state.local:
        written = _store_locally(ids, data)
    else:
        written = await runtime.storage.save_step_checkpoint(run_id, step_id, attempt, data)
    if not written:
        state.refused = True
        state.pending = None
        logger.bind(run_id=run_id, step_id=step_id, step=name, attempt=attempt).warning(
            "checkpoint of step {!r} refused: a later attempt of the step has saved one "
            "(this attempt was superseded, e.g. after its lease was taken over); this "
            "attempt's checkpoints are no longer written",
            name,
        )


async def save_checkpoint(ids: _Ids, value: Any) -> None:
    """``StepContext.checkpoint``: save ``value`` as attempt ``ids``'s progress."""
    if _transient(ids[0]):
        _save_transient(ids, value)
        return
    runtime = _runtime()
    await runtime.acall(_save, runtime, ids, value)


def save_checkpoint_sync(ids: _Ids, value: Any) -> None:
    """``StepContext.checkpoint_sync``: :func:`save_checkpoint` from a thread."""
    if _transient(ids[0]):
        _save_transient(ids, value)
        return
    runtime = _runtime()
    if runtime.in_loop:
        raise RuntimeError(
            "checkpoint_sync() called on the event loop: in an async step body use "
            "`await get_step_context().checkpoint(state)`"
        )
    runtime.call(_save, runtime, ids, value)


async def _flush(runtime: Runtime, ids: _Ids, state: _Attempt) -> None:
    data = state.pending
    if data is None or state.refused:
        return
    state.pending = None
    try:
        await _write(runtime, ids, state, data)
    except Exception as exc:  # the attempt's outcome stands; only its last state is lost
        run_id, step_id, name, attempt = ids
        logger.bind(run_id=run_id, step_id=step_id, step=name, attempt=attempt).warning(
            "the last checkpoint of step {!r} could not be written: {}", name, exc
        )


async def finish(ids: _Ids) -> None:
    """The attempt ended (a result or an exception): write its pending checkpoint, forget it."""
    state = _attempts.pop(ids, None)
    if state is None or state.pending is None or state.runtime is None:
        return
    await state.runtime.acall(_flush, state.runtime, ids, state)


def discard(ids: _Ids) -> None:
    """Forget attempt ``ids`` without writing (it was cancelled: its lease was lost)."""
    _attempts.pop(ids, None)
