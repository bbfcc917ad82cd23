"""The executor interface: how a run that became due gets activated."""

from __future__ import annotations

import abc
from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pyworkflow.runtime import Runtime

__all__ = ["Executor"]


class Executor(abc.ABC):
    """Runs activations of due runs somewhere.

    Storage is the source of truth: ``notify`` is a hint that work may be
    due; an executor that misses one only delays a run, because due runs are
    also found by polling ``Storage.claim_runs``.
    """

    name: str
    #: Whether step bodies run on other workers: activations then record
    #: ``step_scheduled`` and hand the steps to :meth:`dispatch_steps`
    #: instead of running them in-process.
    dispatches_steps: bool = False
    #: Seconds a dispatched step may wait for a worker before it counts as lost
    #: and is dispatched again.
    dispatch_timeout: float = 300.0

    async def start(self, runtime: Runtime) -> None:
        """Called once when the process's runtime starts."""

    async def stop(self) -> None:
        """Called when the runtime shuts down; finish or abandon work."""

    @abc.abstractmethod
    def notify(self, run_id: str | None = None) -> None:
        """Hint that ``run_id`` (or some run) is due now. Thread-safe."""

    def schedule(self, run_id: str, at: datetime) -> None:
        """Hint that ``run_id`` suspended until ``at`` (a timer). Default: nothing.

        Executors with their own timers (Celery ``eta``) arm one here; the
        run is also found by polling or sweeping storage once due.
        """

    async def dispatch_steps(self, run_id: str, steps: Sequence[tuple[str, int]]) -> None:
        """Send ``(step_id, attempt)`` of ``run_id`` to workers (when ``dispatches_steps``).

        Called after the ``step_scheduled`` events are stored and each step
        has a ``queued:<attempt>`` lease; a worker runs one with
        :func:`pyworkflow.dispatch.run_dispatched_step`.
        """
        raise NotImplementedError(f"executor {self.name!r} does not dispatch steps")
