"""The one write path to run logs: append, then the follow-ups every append owes.

Every writer appends through the runtime's :class:`Journal` (``runtime.journal``):
the engine (an activation's flush, its rebase after a conflict, the back-off,
failing a run whose data is corrupt), the client (start, cancel, retry,
``resume_hook``) and :mod:`pyworkflow.dispatch` (a dispatched step's start and
outcome, the sweep's wake-up). In one place, a write:

1. goes to storage, carrying the ``seq`` the writer expects (a
   :class:`~pyworkflow.errors.ConcurrencyError` goes back to the writer, which
   decides: re-read and retry, rebase, or stop; nobody is told anything then);
2. tells observers once per appended batch (``pyworkflow_events_appended``; an
   empty batch, a patch alone, tells nobody), and, when its patch ends the run,
   ``pyworkflow_run_status_changed``;
3. tells the executor: ``notify(run_id)`` when the write makes the run due now
   (``due=True``, and every new run and hook payload), ``schedule(run_id, at)``
   when an activation suspends until a time (:meth:`Journal.suspended`).

**A suspension is announced once, by** ``Executor.schedule``. There used to be
two announcements, the runtime's wake listeners (``Runtime.wake_hint``) and
``executor.schedule``, and the only wake listener was the local executor's,
telling its own worker. The executor is the one party that acts on the
wake-up (the local executor's embedded worker sleeps until then, Celery arms an
``eta`` activation), so the runtime's listeners are gone. Wake-ups that other
processes cause arrive through storage's own wake listeners
(``Storage.add_wake_listener``: PostgreSQL ``LISTEN``, Redis pub/sub), which
are a different channel and stay.

**A new run can go straight to this process's worker.** When the executor has
a free slot (:meth:`Executor.reserve_start
<pyworkflow.executors.base.Executor.reserve_start>`: the local executor's
embedded worker), :meth:`Journal.create` writes the run already leased to that
worker, in the create's own transaction, and hands it over with its first
events: no claim, no wait for the worker loop, no re-read of the log. If the
process dies before the activation ends, the lease expires and any worker
recovers the run, as after any crash. An idempotency key that finds an
existing run hands nothing over.

**Who waits for a run's end is told in-process.** When an append ends a run
(a terminal status), waiters in this process (``get_result``) that
:meth:`Journal.watch` the run are woken at once; runs that end in other
processes are found by the waiter's own poll of storage. A waiting thread
(the synchronous ``get_result``) :meth:`Journal.watch_thread` es the run: it is
handed the ending patch itself, and the run's serializer when this process
created the run, so it decodes the outcome without another trip to the
runtime's loop or to storage.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import TYPE_CHECKING, Any

import anyio
import attrs

from pyworkflow import plugins
from pyworkflow.models import Event, EventType, NewEvent, Run, RunPatch, RunStatus, utcnow

if TYPE_CHECKING:
    from pyworkflow.executors.base import Executor
    from pyworkflow.storage.base import Storage

__all__ = ["Journal", "ThreadWatch"]


class Journal:
    """Appends to run logs and tells observers and the executor, in one place.

    One per runtime (``runtime.journal``); it holds the runtime's storage and
    executor, and whether any plugin observes appended events (asked once, so
    an append with no observer costs one attribute test).
    """

    __slots__ = (
        "_serializers",
        "_thread_lock",
        "_thread_watched",
        "_watched",
        "executor",
        "observed",
        "storage",
    )

    def __init__(self, storage: Storage, executor: Executor) -> None:
        self.storage = storage
        self.executor = executor
        #: Whether a plugin implements ``pyworkflow_events_appended``.
        self.observed = plugins.has_event_observers()
        #: Runs that waiters of this process watch (see :meth:`watch`).
        self._watched: dict[str, _Watch] = {}
        #: Runs that waiting threads watch (see :meth:`watch_thread`), under ``_thread_lock``.
        self._thread_watched: dict[str, list[ThreadWatch]] = {}
        self._thread_lock = threading.Lock()
        #: The serializer of runs created here lately, by run id (a run keeps its
        #: serializer for life): handed to thread waiters with the run's end.
        self._serializers: dict[str, str] = {}

    async def create(self, run: Run, events: Sequence[NewEvent]) -> tuple[Run, bool]:
        """Create ``run`` with its first ``events``, idempotently; the run is due at once.

        Returns the stored run and whether this call created it; only a
        created run is announced (observers, then the executor). When the
        executor reserves a slot for it (:meth:`Executor.reserve_start
        <pyworkflow.executors.base.Executor.reserve_start>`), the run is
        created leased to that slot's owner and handed over with its events;
        otherwise ``executor.notify`` tells the executor it is due.
        """
        events = list(events)
        # a run waiting in its queue is admitted by a worker's claim pass, never handed over
        queued = run.status is RunStatus.QUEUED
        slot = None if queued else self.executor.reserve_start()
        if slot is not None:
            until = utcnow() + slot.lease_for
            run = attrs.evolve(run, lease_owner=slot.owner, lease_expires_at=until)
        try:
            stored, created = await self.storage.create_run(run, events)
        except BaseException:
            if slot is not None:
                slot.cancel()
            raise
        if not created:  # an idempotency key found the run: nothing new to run
            if slot is not None:
                slot.cancel()
            return stored, created
        if self.observed and events:
            self._observe(stored.run_id, len(events), events)
        serializers = self._serializers
        serializers[stored.run_id] = stored.serializer
        if len(serializers) > _SERIALIZERS_KEPT:  # the oldest go: a miss only costs a read
            serializers.pop(next(iter(serializers)), None)
        if slot is not None:
            slot.take(stored, _as_events(stored.run_id, 1, events))
        else:
            self.executor.notify(None if queued else stored.run_id)
        return stored, created

    async def append(
        self,
        run_id: str,
        expected_seq: int,
        events: Sequence[NewEvent],
        patch: RunPatch | None = None,
        *,
        owner: str | None = None,
        due: bool = False,
        workflow: str | None = None,
    ) -> int:
        """Append ``events`` (and apply ``patch``) after ``expected_seq``; the new last seq.

        :param owner: the activation's lease owner, when an activation writes.
        :param due: the write makes the run due now: the executor is notified.
        :param workflow: the run's workflow name; required when ``patch`` ends
            the run (a terminal status), whose observers are then told.
        """
        seq = await self.storage.append_events(run_id, expected_seq, events, patch, owner=owner)
        if events and self.observed:
            self._observe(run_id, seq, events)
        if patch is not None and patch.status is not None and patch.status.is_terminal:
            if workflow is None:
                raise TypeError(f"run {run_id}: an append that ends the run must name its workflow")
            self._ended(run_id, patch)
            plugins.notify_run_status_changed(run_id, workflow, patch.status)
        if due:
            self.executor.notify(run_id)
        return seq

    async def append_hook_payload(
        self, token: str, body: Mapping[str, Any], at: datetime, correlation_id: str
    ) -> str:
        """Append ``hook_received`` with ``body`` to the run of hook ``token``; its run id.

        One atomic storage call (no expected seq); the run is due at once.
        """
        run_id, seq = await self.storage.append_hook_payload(token, body, at)
        if self.observed:
            event = NewEvent(EventType.HOOK_RECEIVED, correlation_id, body, at)
            self._observe(run_id, seq, [event])
        self.executor.notify(run_id)
        return run_id

    def suspended(self, run_id: str, wake_at: datetime | None) -> None:
        """Announce, once, that ``run_id`` suspended until ``wake_at`` (``None``: no timer)."""
        self._serializers.pop(run_id, None)
        if wake_at is not None:
            self.executor.schedule(run_id, wake_at)

    @contextmanager
    def watch(self, run_id: str) -> Iterator[anyio.Event]:
        """An event set when an append of this process ends ``run_id``, while the block runs.

        Call it on the runtime's loop, and look at the run in storage *after*
        entering the block (a run that ended before is not signalled). Waiters
        of one run share one event; the last to leave forgets the run, so
        timed-out and cancelled waits leave nothing behind. Runs ended by
        other processes are not signalled: waiters poll storage for those.
        """
        watch = self._watched.get(run_id)
        if watch is None:
            watch = self._watched[run_id] = _Watch(anyio.Event(), asyncio.get_running_loop())
        watch.waiters += 1
        try:
            yield watch.event
        finally:
            watch.waiters -= 1
            if watch.waiters == 0 and self._watched.get(run_id) is watch:
                del self._watched[run_id]

    @contextmanager
    def watch_thread(self, run_id: str) -> Iterator[ThreadWatch]:
        """What a thread waiting for ``run_id`` to end waits on, while the block runs.

        Callable from any thread. As with :meth:`watch`, look at the run in
        storage after entering the block. When an append of this process
        ends the run, the watch gets the ending patch (and the run's
        serializer name, when this process created the run) and is woken.
        """
        watch = ThreadWatch()
        with self._thread_lock:
            self._thread_watched.setdefault(run_id, []).append(watch)
        try:
            yield watch
        finally:
            with self._thread_lock:
                watches = self._thread_watched.get(run_id)
                if watches is not None and watch in watches:
                    watches.remove(watch)
                    if not watches:
                        del self._thread_watched[run_id]

    def _ended(self, run_id: str, patch: RunPatch) -> None:
        """Wake the waiters of ``run_id``: an append ended it with ``patch``."""
        serializer = self._serializers.pop(run_id, None)
        if self._thread_watched:
            with self._thread_lock:
                watches = self._thread_watched.pop(run_id, None)
            for thread_watch in watches or ():
                thread_watch.end(patch, serializer)
        watch = self._watched.pop(run_id, None)
        if watch is None:
            return
        try:
            here = asyncio.get_running_loop() is watch.loop
        except RuntimeError:
            here = False
        if here:
            watch.event.set()
        else:  # an append made from another thread: wake the waiters on their loop
            watch.loop.call_soon_threadsafe(watch.event.set)

    def _observe(self, run_id: str, last_seq: int, events: Sequence[NewEvent]) -> None:
        plugins.notify_events_appended(
            run_id, _as_events(run_id, last_seq - len(events) + 1, events)
        )


#: How many runs created here :attr:`Journal._serializers` remembers at most.
_SERIALIZERS_KEPT = 1024


class ThreadWatch:
    """A thread's wait for one run's end (:meth:`Journal.watch_thread`).

    ``woke`` is set when the run ended in this process (``patch`` then holds
    the ending patch, ``serializer`` the run's serializer name if known) or
    when :meth:`poke` is called (the waiter's own look at storage is done).
    """

    __slots__ = ("patch", "serializer", "woke")

    def __init__(self) -> None:
        self.woke = threading.Event()
        #: The patch that ended the run, once an append of this process did.
        self.patch: RunPatch | None = None
        self.serializer: str | None = None

    def end(self, patch: RunPatch, serializer: str | None) -> None:
        """The run ended with ``patch``: record it, then wake the thread."""
        self.serializer = serializer
        self.patch = patch
        self.woke.set()

    def poke(self, _: object = None) -> None:
        """Wake the thread (a future's done callback: its look at storage is done)."""
        self.woke.set()


@attrs.define(eq=False)
class _Watch:
    """The waiters of one run: their shared event and the loop it belongs to."""

    event: anyio.Event
    loop: asyncio.AbstractEventLoop
    waiters: int = 0


def _as_events(run_id: str, first: int, events: Sequence[NewEvent]) -> list[Event]:
    """``events`` as stored: seq from ``first``."""
    return [
        Event(run_id, first + i, e.type, e.correlation_id, e.timestamp, e.payload)
        for i, e in enumerate(events)
    ]
