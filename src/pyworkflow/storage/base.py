"""The storage interface every backend implements (built-in or plugin)."""

from __future__ import annotations

import abc
import warnings
from collections.abc import Callable, Mapping, Sequence
from contextlib import AsyncExitStack
from datetime import datetime, timedelta
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self

from pyworkflow.models import (
    Event,
    HookRecord,
    NewEvent,
    QueueLimits,
    QueueStats,
    Run,
    RunPage,
    RunPatch,
    RunStatus,
    Schedule,
    StepCheckpoint,
    StepLease,
    StreamChunk,
)

if TYPE_CHECKING:
    from anyio.abc import TaskGroup

__all__ = [
    "Storage",
    "command_mode",
    "open_storage",
    "set_command_mode",
]

_command_mode = False


def set_command_mode(on: bool) -> None:
    """Declare this process a one-shot command, or not (the default).

    The ``pyworkflow`` CLI turns it on for every command except ``worker`` and
    ``serve``. Server-backed storages then stop trying to reach their server
    after a short command timeout (PostgreSQL: ``command_timeout``, 5 s) and
    say what they tried, instead of retrying for their reconnect timeout as a
    long-lived worker does.
    """
    global _command_mode
    _command_mode = on


def command_mode() -> bool:
    """Whether this process is a one-shot command (see :func:`set_command_mode`)."""
    return _command_mode


class Storage(abc.ABC):
    """Durable home of runs, their event logs, wake-up times and leases.

    All methods are coroutines called from the process's PyWorkflow event
    loop (one loop per process). Implementations must be safe for several
    processes sharing one database: every write that depends on state
    (append, claim, lease) is atomic.

    Lifecycle: :meth:`open` before use, :meth:`close` after. The runtime
    calls ``open(task_group)`` with its own task group, in which the storage
    starts any background task it needs (see :meth:`open`); ``async with
    storage:`` does the same with a task group of its own, for scripts and
    tests.

    Semantics every backend follows (the conformance tests check them):

    - ``append_events`` writes events with seq ``expected_seq + 1 ...`` only
      if the run's last seq is ``expected_seq``; otherwise it raises
      :class:`~pyworkflow.errors.ConcurrencyError` and writes nothing.
      The optional patch updates the run row in the same transaction, and
      ``last_seq``/``updated_at`` always follow the log.
    - A run is *due* when ``wake_at <= now``. ``claim_runs`` leases due runs
      whose lease is free or expired to ``owner`` until ``now + lease_for``.
    """

    url: str
    #: Whether the backend pushes wake-ups made by other processes to
    #: :meth:`add_wake_listener` listeners (Postgres ``LISTEN/NOTIFY``, Redis
    #: pub/sub) once opened with a task group. Workers poll either way; a push
    #: only makes them claim sooner.
    pushes_wakeups: bool = False
    #: Whether this object may be used from another thread's event loop at the same
    #: time as from its own (its data lives in this object, under a lock). A worker's
    #: lease renewer, which runs on a thread of its own so that a blocked loop cannot
    #: starve it, then uses this object; otherwise (the default) the renewer opens a
    #: second storage on the same URL, with its own connections.
    shared_with_threads: bool = False

    def add_wake_listener(self, listener: Callable[[datetime | None], None]) -> None:
        """Call ``listener(wake_at)`` on the storage's loop when any process makes a run due.

        ``wake_at`` is when the run becomes due (None: unknown, look now).
        Backends without push notifications never call it (the default).
        """
        self.__dict__.setdefault("_wake_listeners", []).append(listener)

    def remove_wake_listener(self, listener: Callable[[datetime | None], None]) -> None:
        """Stop calling ``listener`` (no-op if it was not added)."""
        listeners: list[Callable[[datetime | None], None]] = self.__dict__.get(
            "_wake_listeners", []
        )
        if listener in listeners:
            listeners.remove(listener)

    def wake_listeners(self, at: datetime | None) -> None:
        """Tell every listener that a run is due at ``at`` (backends call it)."""
        for listener in list(self.__dict__.get("_wake_listeners", [])):
            listener(at)

    async def open(self, task_group: TaskGroup | None = None) -> None:
        """Connect and create the schema if needed.

        ``task_group`` is the task group of whoever owns the storage (the
        runtime passes its own). A storage that needs a task running beside
        its calls, such as a ``LISTEN`` loop or a pub/sub subscriber that
        pushes wake-ups, starts it there, never with ``asyncio.create_task``,
        and :meth:`close` ends it and waits for it: after ``close()`` no task
        of the storage's is left running. :class:`~pyworkflow.storage.background.BackgroundTasks`
        does that bookkeeping. Without a task group (None: a one-off script, a
        second storage used only for lease renewals) the storage starts no
        background task; it works the same, except that it pushes no wake-ups
        (workers find due runs by polling regardless).

        Storages written before the parameter existed, whose ``open(self)``
        takes no argument, keep working: :func:`open_storage`, which the
        runtime uses, calls them without it (with a ``DeprecationWarning``).
        """

    async def close(self) -> None:
        """End the storage's background tasks, release connections; unusable afterwards."""

    async def __aenter__(self) -> Self:
        """Open the storage with a task group of its own (closed by ``__aexit__``)."""
        import anyio  # lazily: importing a backend stays cheap

        stack = AsyncExitStack()
        task_group = await stack.enter_async_context(anyio.create_task_group())
        try:
            await open_storage(self, task_group)
        except BaseException:
            await stack.__aexit__(None, None, None)
            raise
        self.__dict__["_context_stack"] = stack
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        """Close the storage, then leave its task group."""
        stack: AsyncExitStack | None = self.__dict__.pop("_context_stack", None)
        try:
            await self.close()
        finally:
            if stack is not None:
                await stack.__aexit__(exc_type, exc, traceback)

    @abc.abstractmethod
    async def create_run(self, run: Run, events: Sequence[NewEvent]) -> tuple[Run, bool]:
        """Insert ``run`` with its first events (seq from 1).

        If ``run.idempotency_key`` is set and a run with that key exists,
        nothing is written and ``(existing_run, False)`` is returned;
        otherwise ``(stored_run, True)``. Likewise if ``run.dedup_key`` is
        set and a run with the same ``queue`` (None matches None) and
        ``dedup_key`` exists whose status is not terminal (queued, pending,
        running or suspended): that run is returned. The check and the
        insert are one atomic operation.
        """

    @abc.abstractmethod
    async def get_run(self, run_id: str) -> Run:
        """The run's row; raises ``RunNotFoundError``."""

    @abc.abstractmethod
    async def list_runs(
        self,
        *,
        status: RunStatus | None = None,
        workflow: str | None = None,
        limit: int = 100,
        cursor: str | None = None,
        parent_run_id: str | None = None,
    ) -> RunPage:
        """Runs newest first, filtered, one page at a time.

        ``parent_run_id`` keeps the children of that run (runs created with it
        as their ``parent_run_id``).
        """

    @abc.abstractmethod
    async def get_events(self, run_id: str, after_seq: int = 0) -> list[Event]:
        """Events of the run with ``seq > after_seq`` in order.

        Raises ``RunNotFoundError`` for an unknown run and
        ``CorruptDataError`` naming the run and seq for an undecodable row.
        """

    @abc.abstractmethod
    async def append_events(
        self,
        run_id: str,
        expected_seq: int,
        events: Sequence[NewEvent],
        patch: RunPatch | None = None,
        *,
        owner: str | None = None,
    ) -> int:
        """Append atomically after ``expected_seq``; returns the new last seq.

        ``patch.release_lease`` clears the lease only if ``owner`` holds it.
        """

    @abc.abstractmethod
    async def claim_runs(
        self, owner: str, now: datetime, limit: int, lease_for: timedelta
    ) -> list[Run]:
        """Lease up to ``limit`` due runs (earliest ``wake_at`` first)."""

    @abc.abstractmethod
    async def claim_run(
        self,
        run_id: str,
        owner: str,
        now: datetime,
        lease_for: timedelta,
        *,
        take_over_prefix: str | None = None,
    ) -> Run | None:
        """Lease ``run_id`` to ``owner`` if it is due and its lease is free or expired.

        A lease held by an owner whose name starts with ``take_over_prefix``
        counts as free (a dispatcher's placeholder claim). Returns the leased
        run, or None (not due, leased by someone else, or unknown run).
        """

    @abc.abstractmethod
    async def renew_lease(self, run_id: str, owner: str, until: datetime) -> bool:
        """Extend ``owner``'s lease; False if it no longer holds it."""

    @abc.abstractmethod
    async def release_lease(self, run_id: str, owner: str) -> None:
        """Drop ``owner``'s lease (no-op if someone else holds it)."""

    @abc.abstractmethod
    async def next_wake_at(self) -> datetime | None:
        """The earliest ``wake_at`` over all runs, or None."""

    @abc.abstractmethod
    async def due_timers(self, now: datetime, limit: int) -> list[tuple[str, datetime]]:
        """``(run_id, wake_at)`` of up to ``limit`` runs due at ``now``.

        Backed by an index on ``wake_at``: the cost is proportional to the
        number of due runs, not to the number of runs.
        """

    @abc.abstractmethod
    async def get_hook(self, token: str) -> HookRecord:
        """The live hook with ``token``; raises ``HookNotFoundError``."""

    @abc.abstractmethod
    async def append_hook_payload(
        self, token: str, payload: Mapping[str, Any], now: datetime
    ) -> tuple[str, int]:
        """Atomically append ``hook_received`` to the hook's run and make it due.

        Appends at the end of the log (no expected seq: external events do
        not depend on the log), sets ``wake_at = now`` and returns
        ``(run_id, seq)``. Raises ``HookNotFoundError`` if no live hook has
        ``token``; then nothing is written.
        """

    # ----- dispatched steps (executors that run step bodies on other workers) -----

    @abc.abstractmethod
    async def set_step_lease(
        self,
        run_id: str,
        step_id: str,
        owner: str | None,
        until: datetime | None,
        *,
        if_owner: str | None = None,
    ) -> bool:
        """Write (or, with ``owner=None``, remove) the lease of one step of a run.

        With ``if_owner`` the write happens only if the step's lease is held
        by ``if_owner`` right now (compare-and-set, whatever its expiry);
        without it, unconditionally. Returns whether anything was written.
        """

    @abc.abstractmethod
    async def get_step_leases(self, run_id: str) -> dict[str, StepLease]:
        """The run's step leases by step id (expired ones included)."""

    @abc.abstractmethod
    async def expired_step_leases(self, now: datetime, limit: int) -> list[StepLease]:
        """Up to ``limit`` step leases over all runs with ``until < now``, oldest first."""

    # ----- queues (flow control; docs/queues.md) -----
    #
    # Not abstract, so that storages written before queues existed still load; every
    # built-in backend implements them and StorageConformance checks them.

    async def admit_queued_runs(
        self,
        queue: str,
        limits: QueueLimits,
        owner: str,
        now: datetime,
        limit: int,
        lease_for: timedelta,
        *,
        worker: str | None = None,
    ) -> list[Run]:
        """Admit up to ``limit`` waiting runs of ``queue`` within ``limits``, atomically.

        Waiting runs (status ``queued``, this ``queue``) are taken in order of
        ``(queue_rank, created_at, run_id)``. A run is *active* when its status
        is pending, running or suspended. Going down that order, admission
        stops when the queue has ``limits.concurrency`` active runs, when
        ``worker`` has admitted ``limits.worker_concurrency`` active ones
        (``admitted_by == worker``; ignored when ``worker`` is None), or when
        ``limits.rate = (count, period)`` runs of the queue have
        ``admitted_at > now - period``. A run whose ``partition_key`` already
        has ``limits.partition_concurrency`` active runs is passed over (the
        runs behind it are still considered). Each run admitted counts at once
        for the next one.

        An admitted run becomes ``pending``, due (``wake_at = now``), leased to
        ``owner`` until ``now + lease_for``, with ``admitted_at = now`` and
        ``admitted_by = worker``; ``updated_at`` is left as it is. Returns the
        admitted runs as stored, in admission order. Counting and admitting
        are one atomic operation across every process sharing the store.
        """
        raise NotImplementedError(f"{type(self).__name__} does not support queues")

    async def queue_stats(self, since: datetime) -> list[QueueStats]:
        """Per queue, by name: waiting runs, active runs, runs admitted at or after ``since``.

        Queues with none of the three are left out.
        """
        raise NotImplementedError(f"{type(self).__name__} does not support queues")

    # ----- step queues: places held by step attempts (docs/queues.md) -----

    async def acquire_step_slot(
        self,
        queue: str,
        holder: str,
        limits: QueueLimits,
        now: datetime,
        lease_for: timedelta,
    ) -> bool:
        """Take a place in step queue ``queue`` for ``holder`` if ``limits`` allow; atomically.

        A place is a row ``(queue, holder)`` with ``acquired_at`` and ``until``;
        it is *held* while ``until`` is set and ``until > now``. If ``holder``
        already holds its place, its ``until`` becomes ``now + lease_for`` and
        the answer is True (nothing else changes). Otherwise the place is
        taken (``acquired_at = now``, ``until = now + lease_for``, replacing an
        old row of that holder) unless the queue has ``limits.concurrency``
        places held by others, or ``limits.rate = (count, period)`` rows of the
        queue have ``acquired_at > now - period``; then nothing is written and
        the answer is False. ``worker_concurrency`` and
        ``partition_concurrency`` do not apply to steps. Rows released or
        expired whose ``acquired_at`` is more than a day old may be deleted.
        """
        raise NotImplementedError(f"{type(self).__name__} does not support step queues")

    async def renew_step_slot(self, queue: str, holder: str, until: datetime) -> bool:
        """Move the ``until`` of ``holder``'s place to ``until`` if it is held; whether it was.

        Held here means the row exists and has not been released (an expired
        one is renewed too, as long as no one was given it instead; its place
        may have been counted as free meanwhile).
        """
        raise NotImplementedError(f"{type(self).__name__} does not support step queues")

    async def release_step_slot(self, queue: str, holder: str) -> None:
        """Give ``holder``'s place back: ``until`` cleared, ``acquired_at`` kept for rates."""
        raise NotImplementedError(f"{type(self).__name__} does not support step queues")

    # ----- schedules (docs/schedules.md) -----

    async def create_schedule(self, schedule: Schedule) -> tuple[Schedule, bool]:
        """Insert ``schedule`` unless its name is taken: ``(stored, True)`` or ``(old, False)``."""
        raise NotImplementedError(f"{type(self).__name__} does not support schedules")

    async def put_schedule(self, schedule: Schedule) -> None:
        """Insert or replace the schedule of that name (a lease on it stays as it is)."""
        raise NotImplementedError(f"{type(self).__name__} does not support schedules")

    async def get_schedule(self, name: str) -> Schedule:
        """The schedule; raises ``ScheduleNotFoundError``."""
        raise NotImplementedError(f"{type(self).__name__} does not support schedules")

    async def list_schedules(self) -> list[Schedule]:
        """Every schedule, by name."""
        raise NotImplementedError(f"{type(self).__name__} does not support schedules")

    async def delete_schedule(self, name: str) -> bool:
        """Remove the schedule; False if there was none."""
        raise NotImplementedError(f"{type(self).__name__} does not support schedules")

    async def claim_schedules(
        self, owner: str, now: datetime, limit: int, lease_for: timedelta
    ) -> list[Schedule]:
        """Lease up to ``limit`` due schedules to ``owner`` until ``now + lease_for``.

        Due: not paused, ``next_fire_at <= now``, and no lease or an expired one
        (``lease_expires_at < now``). Earliest ``next_fire_at`` first.
        """
        raise NotImplementedError(f"{type(self).__name__} does not support schedules")

    async def advance_schedule(
        self,
        name: str,
        owner: str,
        expected_next_fire_at: datetime,
        next_fire_at: datetime | None,
        last_fire_at: datetime | None,
        last_run_id: str | None,
    ) -> bool:
        """Record a firing, then drop ``owner``'s lease on the schedule.

        Writes ``next_fire_at``, ``last_fire_at`` and ``last_run_id`` (into the
        schedule as :meth:`get_schedule` returns it) only if ``owner`` holds
        the lease and the stored ``next_fire_at`` is still
        ``expected_next_fire_at`` (the schedule was not edited meanwhile).
        Returns whether it wrote. The lease is dropped either way if ``owner``
        holds it.
        """
        raise NotImplementedError(f"{type(self).__name__} does not support schedules")

    async def next_schedule_at(self) -> datetime | None:
        """The earliest ``next_fire_at`` over schedules that are not paused, or None."""
        raise NotImplementedError(f"{type(self).__name__} does not support schedules")

    # ----- streams (docs/streams.md) -----
    #
    # Chunks are output, not history: appended beside the event log, never replayed.
    # The argument checks, the size limit and the dedup key are those of
    # pyworkflow.storage.stream_rules (one rule for every backend).

    #: The size limit of a chunk's ``data`` in UTF-8 bytes: the ``max_payload_bytes``
    #: setting of the process (``plugins.create_storage`` sets it from the settings).
    max_payload_bytes: int = 2 * 1024 * 1024

    async def append_stream_chunk(
        self,
        run_id: str,
        stream: str,
        data: str,
        *,
        step_id: str | None = None,
        attempt: int | None = None,
        index: int | None = None,
    ) -> int:
        """Append ``data`` to stream ``stream`` of run ``run_id``; returns the chunk's seq.

        Seqs are dense from 1 per ``(run_id, stream)``, assigned atomically
        across processes. Dedup: a chunk with an ``index`` whose
        ``(step_id, index)`` is already stored in that stream of that run (from
        any attempt; ``step_id`` None is workflow code) is not stored again and
        the stored chunk's seq is returned, so a retried step attempt or a
        replayed workflow that writes its chunks 0, 1, 2... again duplicates
        nothing. A chunk without ``index`` is always appended.

        Raises ``RunNotFoundError`` for an unknown run, ``TypeError`` or
        ``ValueError`` for bad arguments (:func:`~pyworkflow.storage.stream_rules.check_chunk`)
        and ``PayloadTooLargeError`` when ``data`` is over :attr:`max_payload_bytes`.
        """
        raise NotImplementedError(f"{type(self).__name__} does not support streams")

    async def read_stream(
        self, run_id: str, stream: str, after_seq: int = 0, limit: int = 1000
    ) -> list[StreamChunk]:
        """Up to ``limit`` chunks of the stream with ``seq > after_seq``, in seq order.

        An unknown stream of a known run reads as empty; an unknown run raises
        ``RunNotFoundError``.
        """
        raise NotImplementedError(f"{type(self).__name__} does not support streams")

    async def list_streams(self, run_id: str) -> list[str]:
        """The names of the run's streams that have chunks, sorted; ``RunNotFoundError``."""
        raise NotImplementedError(f"{type(self).__name__} does not support streams")

    # ----- step checkpoints (docs/checkpoints.md) -----
    #
    # The progress a step attempt saved, read by its next attempt. One per
    # (run_id, step_id); the checks and the fencing rule are those of
    # pyworkflow.storage.checkpoint_rules (one rule for every backend).

    async def save_step_checkpoint(
        self, run_id: str, step_id: str, attempt: int, data: str
    ) -> bool:
        """Store ``data`` as the checkpoint of step ``step_id`` of ``run_id``; whether it was.

        Replaces the stored checkpoint, atomically, only if ``attempt`` is
        the stored one's or a later one
        (:func:`~pyworkflow.storage.checkpoint_rules.supersedes`): a stale
        attempt (a zombie after another worker took its step over) is refused
        and False returned, nothing written. ``saved_at`` is the storage's
        ``utcnow()``. Raises ``RunNotFoundError`` for an unknown run,
        ``TypeError``/``ValueError`` for bad arguments and
        ``PayloadTooLargeError`` when ``data`` is over :attr:`max_payload_bytes`
        (:func:`~pyworkflow.storage.checkpoint_rules.check_checkpoint`).
        """
        raise NotImplementedError(f"{type(self).__name__} does not support step checkpoints")

    async def get_step_checkpoint(self, run_id: str, step_id: str) -> StepCheckpoint | None:
        """The checkpoint stored for step ``step_id`` of ``run_id``, or None.

        None also for an unknown run (a checkpoint is never read for one).
        """
        raise NotImplementedError(f"{type(self).__name__} does not support step checkpoints")


def _open_takes_task_group(storage: Storage) -> bool:
    import inspect  # lazily: only opening a storage needs it

    try:
        parameters = inspect.signature(storage.open).parameters.values()
    except (TypeError, ValueError):  # a callable without a signature: assume today's contract
        return True
    kinds = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    return any(p.kind in kinds or p.kind is inspect.Parameter.VAR_POSITIONAL for p in parameters)


async def open_storage(storage: Storage, task_group: TaskGroup | None) -> None:
    """``storage.open(task_group)``, or ``storage.open()`` for a storage from before the parameter.

    A storage class whose ``open(self)`` takes no task group gets a
    ``DeprecationWarning`` naming it: it still works, but any background task
    it starts is outside the runtime's task group.
    """
    if _open_takes_task_group(storage):
        await storage.open(task_group)
        return
    cls = type(storage)
    warnings.warn(
        f"{cls.__module__}.{cls.__qualname__}.open() takes no task group; define it as "
        "open(self, task_group=None) and start background tasks in that task group "
        "(see pyworkflow.storage.base.Storage.open)",
        DeprecationWarning,
        stacklevel=2,
    )
    await storage.open()  # an override from before the parameter
