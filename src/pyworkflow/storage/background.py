"""A storage's background tasks (a LISTEN loop, a subscriber), in a task group it was given.

The runtime opens its storage with its own task group
(:meth:`pyworkflow.storage.Storage.open`); a backend that needs a task of
its own starts it there through :class:`BackgroundTasks` and ends it in
``close()``. No task outlives the storage, and none runs outside a task
group: at shutdown the runtime's task group is left with nothing of the
storage's to cancel.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import anyio.abc
from loguru import logger

__all__ = ["BackgroundTasks"]


class BackgroundTasks:
    """Tasks a storage runs in ``task_group`` until :meth:`aclose`.

    Each task runs inside a cancel scope of its own, so :meth:`aclose` ends
    exactly these tasks (not the rest of the task group) and waits until
    they have finished. A task that raises is logged and ends on its own: a
    storage's helper loop failing must not bring the runtime down (its work
    is an optimisation such as a wake-up push; workers poll regardless).
    """

    def __init__(self, task_group: anyio.abc.TaskGroup, *, owner: str) -> None:
        self.task_group = task_group
        #: Who runs the tasks (a storage's URL, password hidden), for logs.
        self.owner = owner
        self._scopes: list[anyio.CancelScope] = []
        self._running = 0
        self._idle = anyio.Event()
        self._idle.set()
        self._closed = False

    @property
    def running(self) -> int:
        """How many of the tasks have started and not finished."""
        return self._running

    async def start(self, fn: Callable[[], Awaitable[Any]], *, name: str) -> None:
        """Start ``fn()`` in the task group; returns once it runs.

        Raises RuntimeError after :meth:`aclose`.
        """
        if self._closed:
            raise RuntimeError(f"the background tasks of {self.owner} are closed")
        await self.task_group.start(self._run, fn, name, name=name)

    async def _run(
        self,
        fn: Callable[[], Awaitable[Any]],
        name: str,
        *,
        task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
    ) -> None:
        with anyio.CancelScope() as scope:
            self._scopes.append(scope)
            if self._running == 0:
                self._idle = anyio.Event()
            self._running += 1
            try:
                task_status.started()
                await fn()
            except Exception:
                logger.bind(storage=self.owner, task=name).exception(
                    "storage background task {!r} failed; it is not restarted", name
                )
            finally:
                self._scopes.remove(scope)
                self._running -= 1
                if self._running == 0:
                    self._idle.set()

    async def aclose(self) -> None:
        """Cancel every task and wait until all have finished (idempotent)."""
        self._closed = True
        for scope in list(self._scopes):
            scope.cancel()
        with anyio.CancelScope(shield=True):
            await self._idle.wait()
