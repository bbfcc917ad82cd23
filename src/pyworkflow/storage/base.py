"""The storage interface every backend implements (built-in or plugin)."""

from __future__ import annotations

import abc
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from pyworkflow.models import (
    Event,
    HookRecord,
    NewEvent,
    Run,
    RunPage,
    RunPatch,
    RunStatus,
    StepLease,
)

__all__ = [
    "Storage",
    "command_mode",
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
    #: pub/sub). Workers poll either way; a push only makes them claim sooner.
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
