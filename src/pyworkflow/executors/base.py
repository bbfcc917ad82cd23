"""The executor interface: how a run that became due gets activated."""

from __future__ import annotations

import abc
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

    async def start(self, runtime: Runtime) -> None:
        """Called once when the process's runtime starts."""

    async def stop(self) -> None:
        """Called when the runtime shuts down; finish or abandon work."""

    @abc.abstractmethod
    def notify(self, run_id: str | None = None) -> None:
        """Hint that ``run_id`` (or some run) is due now. Thread-safe."""
