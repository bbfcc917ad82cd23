"""The test environment's executor: activates due runs in-process and knows when all is quiet.

Unlike the local executor's embedded worker it never polls on a timer: it
claims due runs (by the virtual clock) whenever something may have made one
due (a start, a hook payload, an activation ending, the clock moving) and
otherwise waits. "Quiet" means no activation is running and the last claim
found nothing due: only then may the environment move the clock.

Runs are leased like anywhere else, but nobody renews the leases: this is
the only worker of its storage, and the clock only moves when the
environment moves it, which renews the leases of running activations
(:meth:`TestDriver.renew_leases`).
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

import anyio
from loguru import logger

from pyworkflow.dispatch import worker_id
from pyworkflow.engine import run_activation
from pyworkflow.executors.base import Executor
from pyworkflow.models import Run, utcnow

if TYPE_CHECKING:
    from pyworkflow.runtime import Runtime
    from pyworkflow.schedules.firing import ScheduleFirer

__all__ = ["TestDriver"]


class TestDriver(Executor):
    """Runs activations of a :class:`~pyworkflow.testing.WorkflowEnvironment`."""

    __test__ = False  # not a pytest test class, despite its name
    name = "test-environment"

    def __init__(self) -> None:
        self.owner = worker_id("test-environment")
        self.active: dict[str, anyio.CancelScope] = {}
        #: An activation that crashed (an engine error, not a workflow's): raised to the test.
        self.errors: list[BaseException] = []
        self._runtime: Runtime | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._lease = timedelta(seconds=30)
        self._changed = anyio.Event()
        self._quiet = False
        self._quiet_event = anyio.Event()
        self._again: set[str] = set()
        self._stopping = False
        self._firer: ScheduleFirer | None = None

    # ----- the Executor interface -----

    async def start(self, runtime: Runtime) -> None:
        self._runtime = runtime
        self._loop = asyncio.get_running_loop()
        self._lease = timedelta(seconds=runtime.settings.lease_seconds)
        runtime.task_group.start_soon(self._run)

    async def stop(self) -> None:
        self._stopping = True
        for scope in self.active.values():
            scope.cancel()
        self._changed.set()

    def notify(self, run_id: str | None = None) -> None:
        self.poke()

    def schedule(self, run_id: str, at: datetime) -> None:
        self.poke()

    def activating(self, run_id: str) -> bool:
        return run_id in self.active

    def schedules_changed(self) -> None:
        """A schedule was created or resumed: look at schedules on the next pass."""
        if self._firer is not None:
            self._firer.wake()
        self.poke()

    # ----- quiet -----

    def poke(self) -> None:
        """Something may have become due: claim again. Callable from any thread."""
        loop = self._loop
        if loop is None:
            return
        try:
            on_loop = asyncio.get_running_loop() is loop
        except RuntimeError:
            on_loop = False
        if on_loop:
            self._poke()
        else:
            loop.call_soon_threadsafe(self._poke)

    def _poke(self) -> None:
        if self._quiet:
            self._quiet = False
            self._quiet_event = anyio.Event()
        self._changed.set()

    async def settle(self) -> None:
        """Wait until no activation runs and nothing is due by the clock; raise a crash."""
        while True:
            event = self._quiet_event
            await event.wait()
            if self.errors:
                raise self.errors.pop(0)
            if self._quiet:
                return

    async def renew_leases(self) -> None:
        """Extend the leases of running activations from the clock's new time."""
        assert self._runtime is not None
        until = utcnow() + self._lease
        for run_id in list(self.active):
            await self._runtime.storage.renew_lease(run_id, self.owner, until)

    # ----- the loop -----

    async def _run(self) -> None:
        assert self._runtime is not None
        storage = self._runtime.storage
        from pyworkflow.queues import admit_queued
        from pyworkflow.schedules.firing import ScheduleFirer

        firer = self._firer = ScheduleFirer(self._runtime, self.owner)
        queues = any(c.limited for c in self._runtime.queue_configs.values())
        async with anyio.create_task_group() as tg:
            while not self._stopping:
                self._changed = anyio.Event()
                await firer.fire_due()  # schedules follow the virtual clock
                claimed = await storage.claim_runs(self.owner, utcnow(), 64, self._lease)
                if queues:
                    claimed += await admit_queued(
                        self._runtime, self.owner, utcnow(), 64, self._lease, worker=self.owner
                    )
                for run in claimed:
                    if run.run_id in self.active:
                        self._again.add(run.run_id)
                        continue
                    scope = anyio.CancelScope()
                    self.active[run.run_id] = scope
                    tg.start_soon(self._activate, run, scope)
                if claimed:
                    await anyio.sleep(0)
                    continue
                if not self.active and not self._changed.is_set():
                    self._quiet = True
                    self._quiet_event.set()
                await self._changed.wait()
            tg.cancel_scope.cancel()
        self._quiet = True
        self._quiet_event.set()

    async def _activate(self, run: Run, scope: anyio.CancelScope) -> None:
        assert self._runtime is not None
        try:
            with scope:
                await run_activation(self._runtime, run, self.owner)
        except Exception as exc:  # an engine or storage crash: the test must see it
            logger.bind(run_id=run.run_id).exception("activation crashed in the test environment")
            self.errors.append(exc)
        finally:
            del self.active[run.run_id]
            if run.run_id in self._again:
                self._again.discard(run.run_id)
                with anyio.CancelScope(shield=True):
                    await self._runtime.storage.release_lease(run.run_id, self.owner)
            self._poke()
