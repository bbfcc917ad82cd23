"""The local executor: a worker loop that claims due runs and activates them in-process."""

from __future__ import annotations

import asyncio
import heapq
import importlib
import os
import socket
import uuid
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

import anyio
import anyio.abc
from loguru import logger

from pyworkflow.config import Settings
from pyworkflow.executors.base import Executor, StartSlot
from pyworkflow.leases import LeaseKeeper, lease_keeper
from pyworkflow.models import Event, Run, utcnow

if TYPE_CHECKING:
    from pyworkflow.runtime import Runtime
    from pyworkflow.schedules.firing import ScheduleFirer

__all__ = ["LocalExecutor", "Worker", "import_modules"]


def import_modules(modules: tuple[str, ...] | list[str]) -> None:
    """Import the workflow modules named in config so their workflows register.

    A module that cannot be found (or that imports a module that cannot be
    found) is a :class:`~pyworkflow.errors.ConfigError` naming the ``modules``
    setting, the module and where Python looked (the current directory and
    ``sys.path``), instead of a ``ModuleNotFoundError`` from inside the runtime.
    Any other error raised while importing the module propagates unchanged.
    """
    # Imported here: this function's edit stays local to it.
    import sys

    from pyworkflow.errors import ConfigError

    for name in modules:
        try:
            importlib.import_module(name)
        except ModuleNotFoundError as exc:
            setting = (
                "config key 'modules' ([tool.pyworkflow] modules, PYWORKFLOW_MODULES or "
                "configure(modules=...)) or a --module option"
            )
            missing = exc.name or ""
            if missing and missing != name and not name.startswith(f"{missing}."):
                raise ConfigError(
                    f"workflow module {name!r} (from the {setting}) was found, but importing "
                    f"it failed: {exc}; install the package that provides {missing!r} in this "
                    "environment"
                ) from exc
            cwd = os.getcwd()
            looked = [entry or f"{cwd} (the current directory)" for entry in sys.path]
            on_path = any(os.path.abspath(entry or cwd) == cwd for entry in sys.path)
            raise ConfigError(
                f"cannot import workflow module {name!r} named in the {setting}: {exc}. "
                f"The current directory is {cwd}"
                f"{'' if on_path else ', which is not on sys.path'}; Python looked in: "
                f"{', '.join(looked)}. Correct the module name, run from the folder that holds "
                f"{name.split('.')[0]!r} (its .py file or package), or add that folder to "
                "PYTHONPATH"
            ) from exc


class Worker:
    """Claims due runs from storage and activates them, up to ``concurrency`` at once.

    Runs whose lease expired (their worker died) are due again and get
    recovered here like any other due run. The leases of the runs it
    activates are renewed from a thread of their own (:mod:`pyworkflow.leases`),
    so a step that blocks this worker's event loop does not lose them.

    Runs started in this process come straight in (:meth:`reserve`: created
    already leased to this worker, then handed over), without a claim. A claim
    pass runs when something may be due: a wake-up (``notify``, ``schedule``'s
    hint coming due, a storage push), a slot freed while due runs may have
    been left unclaimed, and the poll every ``poll_interval`` as the safety
    net; an activation that ends while nothing waits for a slot costs no pass.
    """

    def __init__(
        self,
        runtime: Runtime,
        *,
        concurrency: int | None = None,
        owner: str | None = None,
        claim_on_stop: bool = False,
    ) -> None:
        self.runtime = runtime
        self.settings = runtime.settings
        self.concurrency = concurrency or self.settings.worker_concurrency
        self.owner = owner or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self.lease = timedelta(seconds=self.settings.lease_seconds)
        self.active: dict[str, anyio.CancelScope] = {}
        self.claim_on_stop = claim_on_stop
        self.log = logger.bind(worker=self.owner)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._event = anyio.Event()
        self._dirty = True
        self._stopping = False
        self._hints: list[datetime] = []
        self._idle = anyio.Event()
        self._keeper: LeaseKeeper | None = None
        #: The task group activations run in, while the loop runs.
        self._tg: anyio.abc.TaskGroup | None = None
        #: Slots held for runs this process is creating (see :meth:`reserve`).
        self._reserved = 0
        #: Whether the last claim pass may have left due runs for want of a slot.
        self._capped = False
        #: Runs claimed again while their activation was ending: activated once it has.
        self._again: set[str] = set()
        #: Activations of runs started here (see :meth:`_take`), while they run.
        self._handed: dict[asyncio.Task[None], anyio.CancelScope] = {}
        #: Fires due schedules from the claim passes (made on the first pass).
        self._firer: ScheduleFirer | None = None
        #: When to look for dispatched steps whose lease expired next (dispatching executors).
        self._lost_check_at: datetime | None = None
        #: Whether some queue has limits: claim passes then admit queued runs too.
        self._queues = any(c.limited for c in runtime.queue_configs.values())

    # ----- thread-safe signals -----

    def wake(self) -> None:
        """Claim again now (thread-safe)."""
        loop = self._loop
        if loop is None:
            self._dirty = True
            return
        try:
            if asyncio.get_running_loop() is loop:
                self._set()
                return
        except RuntimeError:
            pass
        loop.call_soon_threadsafe(self._set)

    def hint(self, at: datetime | None) -> None:
        """Remember that a run is due at ``at``, to wake exactly then."""
        if at is not None:
            heapq.heappush(self._hints, at)

    def stop(self) -> None:
        """Stop claiming; in-flight activations get ``drain_timeout`` to finish."""
        self._stopping = True
        self.wake()

    def reserve(self) -> StartSlot | None:
        """A slot for a run this process is creating, if the loop runs and has room.

        Called on the worker's loop (the runtime's). The run is created leased
        to this worker, then :meth:`StartSlot.take` activates it at once.
        """
        if self._tg is None or self._stopping or not self._on_loop():
            return None
        if len(self.active) + self._reserved >= self.concurrency:
            return None
        self._reserved += 1
        return _Slot(self)

    def _on_loop(self) -> bool:
        try:
            return asyncio.get_running_loop() is self._loop
        except RuntimeError:
            return False

    def _take(self, run: Run, history: list[Event]) -> None:
        """Activate ``run``, created leased to this worker (a slot's :meth:`StartSlot.take`)."""
        self._reserved -= 1
        tg = self._tg
        if tg is None:  # the loop ended since the slot was reserved: let anyone claim it
            self.runtime.task_group.start_soon(self._let_go, run.run_id)
            return
        scope = anyio.CancelScope()
        self.active[run.run_id] = scope
        # a plain task (anyio's spawn costs several times more, once per start()): the
        # worker drains it like any activation and awaits it before its task group ends
        task = asyncio.get_running_loop().create_task(self._activate(run, scope, history))
        self._handed[task] = scope
        task.add_done_callback(self._handed_ended)

    def _handed_ended(self, task: asyncio.Task[None]) -> None:
        self._handed.pop(task, None)
        if not task.cancelled() and task.exception() is not None:
            self.log.opt(exception=task.exception()).error("an activation ended abnormally")

    async def _end_handed(self) -> None:
        """Cancel the activations of started runs still running, and wait for them.

        As the worker's task group does its own tasks': their cancel scope is
        cancelled (what is shielded in them still runs), then they are awaited.
        """
        tasks = list(self._handed)
        for scope in self._handed.values():
            scope.cancel()
        if tasks:
            with anyio.CancelScope(shield=True):
                await asyncio.wait(tasks)

    def _cancel(self) -> None:
        self._reserved -= 1
        if not self.active and not self._reserved:
            self._idle.set()
        if self._capped:
            self._set()

    async def _let_go(self, run_id: str) -> None:
        """Release this worker's lease on ``run_id`` so that a claim finds it at once."""
        try:
            await self.runtime.storage.release_lease(run_id, self.owner)
        except Exception:  # the lease expires instead, and the run is recovered then
            self.log.bind(run_id=run_id).exception("could not release a run's lease")

    def _set(self) -> None:
        self._dirty = True
        self._event.set()

    # ----- the loop -----

    async def run(self) -> None:
        """Claim and activate due runs until ``stop()``.

        A worker run in a runtime whose local executor has no embedded
        worker (``pyworkflow worker``) becomes that executor's worker while
        it runs: it hears this process's wake-ups and takes its new runs.
        """
        self._loop = asyncio.get_running_loop()
        self.log.info("worker started (concurrency {})", self.concurrency)
        storage = self.runtime.storage
        executor = self.runtime.executor
        host = None
        if isinstance(executor, LocalExecutor) and executor.worker is None:
            host = executor
            await host.worker_starting()  # an error (Ray unreachable) stops the worker here
            host.worker = self
        storage.add_wake_listener(self._pushed)
        try:
            await self._loop_until_stopped()
        finally:
            storage.remove_wake_listener(self._pushed)
            if host is not None and host.worker is self:
                host.worker = None
        self.log.info("worker stopped")

    def _pushed(self, at: datetime | None) -> None:
        """A wake-up pushed by storage (another process made a run due)."""
        self.hint(at)
        self.wake()

    async def _loop_until_stopped(self) -> None:
        async with anyio.create_task_group() as tg:
            self._tg = tg
            try:
                await self._claim_until_stopped(tg)
                await self._drain()
            finally:
                self._tg = None
                await self._end_handed()
            tg.cancel_scope.cancel()

    async def _claim_until_stopped(self, tg: anyio.abc.TaskGroup) -> None:
        while True:
            # an embedded worker makes one claim pass after stop(): runs its process
            # just started get activated (up to their first suspension) before exit
            stopping = self._stopping
            if stopping and not self.claim_on_stop:
                break
            self._dirty = False
            free = self.concurrency - len(self.active) - self._reserved
            claimed: list[Run] = []
            if free <= 0:  # no slot to claim into; schedules and lost steps need none
                await self._housekeeping()
            else:
                claimed = await self._claim(free)
                for run in claimed:
                    if run.run_id in self.active:
                        # claimed again while its activation runs (its lease lapsed, or the
                        # activation released it and is ending): that one goes on, and the
                        # run is activated again once it has ended
                        self._again.add(run.run_id)
                        continue
                    scope = anyio.CancelScope()
                    self.active[run.run_id] = scope
                    tg.start_soon(self._activate, run, scope)
            # a full pass may have left due runs behind: claim again when a slot frees
            self._capped = len(claimed) >= free
            if stopping:
                break
            if (claimed and len(claimed) == free) or self._dirty:
                await anyio.sleep(0)
                continue
            await self._wait(await self._sleep_time())

    async def _claim(self, limit: int) -> list[Run]:
        """Fire due schedules, claim due runs, admit queued ones (docs/queues.md).

        A storage outage is logged and retried after a poll interval.
        """
        await self._housekeeping()
        try:
            claimed = await self.runtime.storage.claim_runs(
                self.owner, utcnow(), limit, self.lease
            )
        except Exception:
            self.log.exception("claiming due runs failed; retrying after the poll interval")
            return []
        if self._queues and len(claimed) < limit:
            from pyworkflow.queues import admit_queued

            claimed += await admit_queued(
                self.runtime,
                self.owner,
                utcnow(),
                limit - len(claimed),
                self.lease,
                worker=self.owner,
            )
        return claimed

    async def _housekeeping(self) -> None:
        """Fire due schedules and wake runs of lost dispatched steps (each at most once per
        poll interval): every pass, even one with no free slot to claim a run into (a pass
        that skipped this left the next schedule check in the past, and the loop spun)."""
        if self._firer is None:
            from pyworkflow.schedules.firing import ScheduleFirer

            self._firer = ScheduleFirer(self.runtime, self.owner)
        await self._firer.fire_due()
        if self.runtime.executor.dispatches_steps:  # steps on other workers (Ray)
            await self._wake_lost_steps()

    async def _wake_lost_steps(self) -> None:
        """Once per poll interval: make due the runs whose dispatched step lost its worker.

        As the Celery sweep does: a step whose worker died stops renewing its
        lease, and its run is woken when the lease expires (not only at the
        dispatch timeout) to dispatch the step again.
        """
        now = utcnow()
        if self._lost_check_at is not None and now < self._lost_check_at:
            return
        self._lost_check_at = now + timedelta(seconds=self.settings.poll_interval)
        from pyworkflow.dispatch import wake_lost_steps

        try:
            await wake_lost_steps(self.runtime, now)
        except Exception:
            self.log.exception("looking for lost dispatched steps failed; retrying later")

    def schedules_changed(self) -> None:
        """A schedule was created or resumed here: look at schedules on the next pass."""
        if self._firer is not None:
            self._firer.wake()
        self.wake()

    async def _wait(self, timeout: float) -> None:
        if self._dirty or self._stopping:
            return
        self._event = anyio.Event()
        with anyio.move_on_after(timeout):
            await self._event.wait()

    async def _sleep_time(self) -> float:
        now = utcnow()
        timeout = self.settings.poll_interval
        while self._hints and self._hints[0] <= now - timedelta(seconds=1):
            heapq.heappop(self._hints)
        if self._hints:
            timeout = min(timeout, (self._hints[0] - now).total_seconds())
            if self._hints[0] <= now:
                heapq.heappop(self._hints)
        check = None if self._firer is None else self._firer.next_check
        if check is not None:  # the next schedule due before the next poll
            timeout = min(timeout, (check - now).total_seconds())
        return max(0.0, timeout)

    async def _drain(self) -> None:
        if not self.active and not self._reserved:
            return
        # runs this process is creating for a reserved slot are activated and drained too
        self.log.info("waiting for {} activation(s) to finish", len(self.active) + self._reserved)
        self._idle = anyio.Event()
        with anyio.move_on_after(self.settings.drain_timeout):
            await self._idle.wait()
        for scope in self.active.values():
            scope.cancel()

    async def _activate(
        self, run: Run, scope: anyio.CancelScope, history: list[Event] | None = None
    ) -> None:
        log = logger.bind(run_id=run.run_id)

        def lost() -> None:
            if self.active.get(run.run_id) is scope:
                log.warning("lease lost; stopping activation")
                scope.cancel()

        if self._keeper is None:
            self._keeper = lease_keeper(self.runtime)
        held = self._keeper.hold_run(run.run_id, self.owner, self.lease, lost)
        try:
            with scope:
                await self.runtime.executor.activate(self.runtime, run, self.owner, history)
        except Exception:  # storage down even for the back-off: the lease expires, recovery
            log.exception("activation ended with a storage error")
        finally:
            self._keeper.release(held)
            if self.active.get(run.run_id) is scope:
                del self.active[run.run_id]
            if not self.active and not self._reserved:
                self._idle.set()
            if run.run_id in self._again:
                # claimed again meanwhile: the lease is this worker's and nobody renews
                # it now; give it up so that the next pass (or any worker) claims it
                self._again.discard(run.run_id)
                with anyio.CancelScope(shield=True):
                    await self._let_go(run.run_id)
                self._set()
            elif self._capped or self._queues:
                # a slot freed while due runs may be waiting for one, or a queue's place
                self._set()


class LocalExecutor(Executor):
    """Runs activations and steps in this process on anyio.

    With ``embedded_worker`` (the default) a worker runs in the background of
    any process that uses PyWorkflow; ``pyworkflow worker`` runs one as a
    long-lived process.
    """

    name = "local"

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.worker: Worker | None = None
        self._done: anyio.Event | None = None

    async def worker_starting(self) -> None:
        """Called once before this process's worker (embedded, or ``pyworkflow worker``)
        claims its first run; an error stops the worker with it.

        Nothing by default; the Ray executor connects to Ray here, so a wrong
        address fails at start, not at the first step.
        """

    async def start(self, runtime: Runtime) -> None:
        if not self.settings.embedded_worker:
            return
        import_modules(self.settings.modules)
        await self.worker_starting()
        worker = Worker(runtime, claim_on_stop=True)
        self.worker = worker
        self._done = anyio.Event()
        done = self._done

        async def run_worker() -> None:
            try:
                await worker.run()
            finally:
                done.set()

        runtime.task_group.start_soon(run_worker)

    def schedule(self, run_id: str, at: datetime) -> None:
        """A run of this process suspended until ``at``: the embedded worker wakes then."""
        if self.worker is not None:
            self.worker.hint(at)
            self.worker.wake()

    async def stop(self) -> None:
        if self.worker is not None and self._done is not None:
            self.worker.stop()
            await self._done.wait()

    def notify(self, run_id: str | None = None) -> None:
        if self.worker is not None:
            self.worker.wake()

    def reserve_start(self) -> StartSlot | None:
        """A slot of the embedded worker when it has room: new runs go straight to it."""
        return None if self.worker is None else self.worker.reserve()

    def schedules_changed(self) -> None:
        """A schedule was created or resumed in this process: the worker looks at once."""
        if self.worker is not None:
            self.worker.schedules_changed()

    def activating(self, run_id: str) -> bool:
        """Whether this process's worker is activating ``run_id`` now."""
        return self.worker is not None and run_id in self.worker.active


class _Slot(StartSlot):
    """A place in a :class:`Worker`, held by :meth:`Worker.reserve`."""

    __slots__ = ("_done", "_worker", "lease_for", "owner")

    def __init__(self, worker: Worker) -> None:
        self._worker = worker
        self.owner = worker.owner
        self.lease_for = worker.lease
        self._done = False

    def take(self, run: Run, history: list[Event]) -> None:
        if self._done:
            raise RuntimeError("this start slot was already used")
        self._done = True
        self._worker._take(run, history)

    def cancel(self) -> None:
        if not self._done:
            self._done = True
            self._worker._cancel()
