"""How ``pyworkflow run`` and ``runs retry`` work their own run, and only it.

These commands do not start the embedded worker (it would claim every due
run in storage, other people's included). With the ``local`` executor they
activate the one run they started, in this process, whenever it is due;
other due runs are left to workers. With another executor (Celery, Ray)
that executor's workers run it and the command only follows it.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

import anyio
from loguru import logger

from pyworkflow.client import aget_run
from pyworkflow.dispatch import activate_run, worker_id
from pyworkflow.models import Event, utcnow

if TYPE_CHECKING:
    from pyworkflow.client import RunInfo
    from pyworkflow.runtime import Runtime

__all__ = ["RunDriver", "drive", "drives_here", "follow", "owner_name"]


def owner_name() -> str:
    """The lease owner this command activates its run as: ``cli@host:pid:random``."""
    return worker_id(f"cli@{socket.gethostname()}")


def drives_here(runtime: Runtime) -> bool:
    """Whether this process activates the run itself (the ``local`` executor)."""
    return runtime.executor.name == "local"


async def drive(runtime: Runtime, run_id: str, owner: str, *, until_end: bool) -> None:
    """Activate ``run_id`` in this process whenever it is due.

    With ``until_end`` it keeps going until the run ends (sleeping until the
    run's wake-up time or the next poll in between); without, it makes one
    attempt, bounded by ``drain_timeout`` like an embedded worker at exit.
    A run leased by another worker is left to it and looked at again later.
    """
    settings = runtime.settings
    if not until_end:
        with anyio.move_on_after(settings.drain_timeout):
            await activate_run(runtime, run_id, owner)
        return
    while True:
        await activate_run(runtime, run_id, owner)
        run = await aget_run(run_id)
        if run.status.is_terminal:
            return
        delay = settings.poll_interval
        now = utcnow()
        if run.wake_at is not None and run.wake_at > now:
            delay = min(delay, (run.wake_at - now).total_seconds())
        await anyio.sleep(delay)


class RunDriver:
    """Drives one run on the runtime's loop while the command follows it.

    ``start()`` and ``stop()`` are called through ``runtime.call``; a crash of
    the driver is kept in :attr:`error` for the follower to raise.
    """

    def __init__(self, runtime: Runtime, run_id: str) -> None:
        self.runtime = runtime
        self.run_id = run_id
        self.owner = owner_name()
        self.error: BaseException | None = None
        self._scope: anyio.CancelScope | None = None
        self._done: anyio.Event | None = None

    async def start(self) -> None:
        """Start driving in the runtime's task group."""
        self._scope = anyio.CancelScope()
        self._done = anyio.Event()
        self.runtime.task_group.start_soon(self._run)

    async def _run(self) -> None:
        assert self._done is not None and self._scope is not None
        try:
            with self._scope:
                await drive(self.runtime, self.run_id, self.owner, until_end=True)
        except Exception as exc:  # handed to the follower, which raises it
            logger.bind(run_id=self.run_id).exception("driving the run failed")
            self.error = exc
        finally:
            self._done.set()

    async def stop(self) -> None:
        """Stop driving (an activation in flight is cancelled and its lease released)."""
        if self._scope is not None and self._done is not None:
            self._scope.cancel()
            await self._done.wait()


def follow(
    run_id: str,
    on_event: Callable[[Event], None],
    *,
    driver: RunDriver | None = None,
    interval: float = 0.1,
) -> RunInfo:
    """Hand each new event of ``run_id`` to ``on_event`` until the run ends; its last info.

    Each round reads the status first and the events after it: the event that
    ends a run is stored with (or before) its final status, so the round that
    sees a final status also sees every event, the last ones included.
    """
    import pyworkflow

    shown = 0
    while True:
        if driver is not None and driver.error is not None:
            raise driver.error
        info = pyworkflow.get_run(run_id)
        events = pyworkflow.get_events(run_id)
        for event in events[shown:]:
            on_event(event)
        shown = len(events)
        if info.status.is_terminal:
            return info
        time.sleep(interval)
