"""Lease renewal from a thread of its own, so a blocked event loop cannot starve it.

A worker holds a lease on each run it activates (and, with a dispatching
executor, on each step attempt it runs) and must renew it every
``lease_seconds / 3``. Those renewals used to run as tasks on the worker's
event loop, the same loop ``async`` step bodies run on: a step that blocked it
(``time.sleep`` in an ``async def``, a long CPU-bound stretch) stopped the
renewals, the lease lapsed, another worker took the run over and ran the step
again, and again, without end.

:class:`LeaseKeeper` renews those leases from a daemon thread running an event
loop of its own, through storage access of its own: a second storage object
opened on the same URL (its own connections), or the worker's storage object
itself when the backend says it is safe to share across threads
(:attr:`~pyworkflow.storage.base.Storage.shared_with_threads`, e.g.
``memory://``). A lease it finds taken by someone else is reported to its
holder on the holder's loop. The same thread reports step bodies that hold
their loop too long (:func:`pyworkflow.stepexec.report_blocking`).

One keeper serves a runtime (:func:`lease_keeper`); it starts with the first
lease held and stops with the runtime.
"""

from __future__ import annotations

import asyncio
import contextvars
import threading
import time
import weakref
from collections.abc import Callable
from datetime import timedelta
from typing import TYPE_CHECKING

import anyio
import anyio.to_thread
import attrs
from loguru import logger

from pyworkflow import plugins
from pyworkflow.models import utcnow
from pyworkflow.stepexec import BLOCKING_CHECK_SECONDS, report_blocking

if TYPE_CHECKING:
    from pyworkflow.config import Settings
    from pyworkflow.runtime import Runtime
    from pyworkflow.storage.base import Storage

__all__ = ["HeldLease", "LeaseKeeper", "lease_keeper"]

#: Pause before trying again to open the keeper's storage after a failure (seconds).
_REOPEN_SECONDS = 1.0
#: How long the thread keeps looking every ``BLOCKING_CHECK_SECONDS`` once it holds
#: nothing (seconds), before it sleeps until poked: back-to-back activations then
#: start without waking it.
_LINGER_SECONDS = 2.0


@attrs.define(eq=False)
class HeldLease:
    """A run lease (``step_id`` None) or a step lease the keeper renews until released."""

    run_id: str
    step_id: str | None
    owner: str
    lease_for: timedelta
    #: Called on ``loop`` when the lease turns out to be held by someone else.
    on_lost: Callable[[], None]
    loop: asyncio.AbstractEventLoop
    #: ``time.monotonic()`` of the next renewal.
    due: float = 0.0
    released: bool = False

    @property
    def interval(self) -> float:
        """Seconds between renewals: a third of the lease."""
        return max(0.05, self.lease_for.total_seconds() / 3)


class LeaseKeeper:
    """Renews leases from a daemon thread with its own event loop and storage access.

    ``hold_run``/``hold_step`` and ``release`` are called from the holder's
    event loop (any thread); renewals, and the holder's ``on_lost`` callback,
    happen whatever that loop is doing.
    """

    def __init__(self, storage: Storage, settings: Settings) -> None:
        self.storage = storage
        self.settings = settings
        self._lock = threading.Lock()
        self._held: list[HeldLease] = []
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._kick: asyncio.Event | None = None
        self._closing = False
        #: ``time.monotonic()`` by which the thread looks again unpoked (under ``_lock``).
        self._next_look = float("inf")
        #: Since when the thread has held nothing (None: it holds something).
        self._idle_since: float | None = None

    # ----- what holders call -----

    def hold_run(
        self, run_id: str, owner: str, lease_for: timedelta, on_lost: Callable[[], None]
    ) -> HeldLease:
        """Renew ``owner``'s lease on run ``run_id`` until :meth:`release`."""
        return self._hold(HeldLease(run_id, None, owner, lease_for, on_lost, _running_loop()))

    def hold_step(
        self,
        run_id: str,
        step_id: str,
        owner: str,
        lease_for: timedelta,
        on_lost: Callable[[], None],
    ) -> HeldLease:
        """Renew ``owner``'s lease on step ``step_id`` of ``run_id`` until :meth:`release`."""
        return self._hold(HeldLease(run_id, step_id, owner, lease_for, on_lost, _running_loop()))

    def release(self, held: HeldLease) -> None:
        """Stop renewing ``held`` (the holder releases the lease in storage itself)."""
        with self._lock:
            held.released = True
            if held in self._held:
                self._held.remove(held)

    def close(self) -> None:
        """Stop the thread and wait for it (blocking; it closes its own storage)."""
        with self._lock:
            self._closing = True
            thread = self._thread
        self._poke()
        if thread is not None:
            thread.join(timeout=5)  # a daemon: a renewal stuck on storage does not hold us

    # ----- the thread -----

    def _hold(self, held: HeldLease) -> HeldLease:
        now = time.monotonic()
        held.due = now + held.interval
        with self._lock:
            if self._closing:
                return held  # the runtime is stopping: the holder is about to end too
            self._held.append(held)
            if self._thread is None:
                # in the holder's context: the thread reads time through its runtime's clock
                self._thread = threading.Thread(
                    target=contextvars.copy_context().run,
                    args=(self._thread_main,),
                    name="pyworkflow-leases",
                    daemon=True,
                )
                self._thread.start()
            # a thread that looks again soon enough (its renewals, its blocking checks)
            # needs no poke: a poke wakes it now, and costs the holder's loop a thread switch
            poke = min(held.due, now + BLOCKING_CHECK_SECONDS) < self._next_look
        if poke:
            self._poke()
        return held

    def _poke(self) -> None:
        loop, kick = self._loop, self._kick
        if loop is not None and kick is not None:
            try:
                loop.call_soon_threadsafe(kick.set)
            except RuntimeError:  # the keeper's loop already ended
                pass

    def _thread_main(self) -> None:
        asyncio.run(self._main())

    async def _main(self) -> None:
        self._kick = asyncio.Event()
        self._loop = asyncio.get_running_loop()
        storage: Storage | None = None
        own = not self.storage.shared_with_threads
        try:
            while not self._closing:
                if storage is None:
                    storage = await self._open() if own else self.storage
                if storage is not None:
                    await self._renew_due(storage)
                report_blocking(time.monotonic())
                await self._sleep(storage is None)
        finally:
            if own and storage is not None:
                try:
                    await storage.close()
                except Exception:
                    logger.exception("closing the lease renewer's storage failed")

    async def _open(self) -> Storage | None:
        """A storage of the keeper's own on the runtime's URL; None (logged) if it failed."""
        try:
            storage = plugins.create_storage(self.settings.storage, self.settings)
            await storage.open()
        except Exception:
            logger.exception(
                "the lease renewer could not open its storage; retrying in {}s", _REOPEN_SECONDS
            )
            return None
        return storage

    async def _sleep(self, reopen: bool) -> None:
        """Until the next renewal is due, a blocking check is due, or someone pokes."""
        assert self._kick is not None
        now = time.monotonic()
        with self._lock:
            dues = [held.due for held in self._held]
            if dues:
                self._idle_since = None
            elif self._idle_since is None:
                self._idle_since = now
            if reopen and dues:
                timeout: float | None = _REOPEN_SECONDS
            elif dues:
                timeout = max(0.0, min(min(dues) - now, BLOCKING_CHECK_SECONDS))
            elif self._idle_since is not None and now - self._idle_since < _LINGER_SECONDS:
                # just let go: look as if holding, so that the next hold needs no poke
                timeout = BLOCKING_CHECK_SECONDS
            else:
                timeout = None  # nothing held for a while: nothing runs, nothing can block
            self._next_look = float("inf") if timeout is None else now + timeout
        self._kick.clear()
        if self._closing:
            return
        try:
            await asyncio.wait_for(self._kick.wait(), timeout)
        except TimeoutError:
            pass

    async def _renew_due(self, storage: Storage) -> None:
        now = time.monotonic()
        with self._lock:
            due = [held for held in self._held if held.due <= now]
        for held in due:
            held.due = now + held.interval
            until = utcnow() + held.lease_for
            log = logger.bind(run_id=held.run_id, step_id=held.step_id)
            try:
                if held.step_id is None:
                    kept = await storage.renew_lease(held.run_id, held.owner, until)
                else:
                    kept = await storage.set_step_lease(
                        held.run_id, held.step_id, held.owner, until, if_owner=held.owner
                    )
            except Exception:  # storage trouble: try again next interval; the lease may lapse
                log.exception("renewing the lease failed; trying again in {:.1f}s", held.interval)
                continue
            if kept:
                continue
            with self._lock:
                if held.released:
                    continue
                self._held.remove(held)
            try:
                held.loop.call_soon_threadsafe(held.on_lost)
            except RuntimeError:  # the holder's loop has ended
                pass


def _running_loop() -> asyncio.AbstractEventLoop:
    return asyncio.get_running_loop()


_keepers: weakref.WeakKeyDictionary[Runtime, LeaseKeeper] = weakref.WeakKeyDictionary()
_keepers_lock = threading.Lock()


def lease_keeper(runtime: Runtime) -> LeaseKeeper:
    """The runtime's lease keeper (made on first use; call it on the runtime's loop).

    It is closed when the runtime stops (a task in the runtime's task group).
    """
    with _keepers_lock:
        keeper = _keepers.get(runtime)
        if keeper is None:
            keeper = LeaseKeeper(runtime.storage, runtime.settings)
            _keepers[runtime] = keeper
            runtime.task_group.start_soon(_close_with_runtime, keeper)
    return keeper


async def _close_with_runtime(keeper: LeaseKeeper) -> None:
    try:
        await anyio.sleep_forever()
    finally:
        with anyio.CancelScope(shield=True):
            await anyio.to_thread.run_sync(keeper.close)
