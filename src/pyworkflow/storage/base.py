"""The storage interface every backend implements (built-in or plugin)."""

from __future__ import annotations

import abc
from collections.abc import Sequence
from datetime import datetime, timedelta

from pyworkflow.models import Event, NewEvent, Run, RunPage, RunPatch, RunStatus

__all__ = ["Storage"]


class Storage(abc.ABC):
    """Durable home of runs, their event logs, wake-up times and leases.

    All methods are coroutines called from the process's PyWorkflow event
    loop (one loop per process). Implementations must be safe for several
    processes sharing one database: every write that depends on state
    (append, claim, lease) is atomic.

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

    async def open(self) -> None:
        """Connect and create the schema if needed."""

    async def close(self) -> None:
        """Release connections; the object is unusable afterwards."""

    @abc.abstractmethod
    async def create_run(self, run: Run, events: Sequence[NewEvent]) -> tuple[Run, bool]:
        """Insert ``run`` with its first events (seq from 1).

        If ``run.idempotency_key`` is set and a run with that key exists,
        nothing is written and ``(existing_run, False)`` is returned;
        otherwise ``(stored_run, True)``.
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
    ) -> RunPage:
        """Runs newest first, filtered, one page at a time."""

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
