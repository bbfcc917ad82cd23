"""A virtual clock: time that moves only when the test harness moves it."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from datetime import UTC, datetime

import anyio

from pyworkflow.clock import Clock

__all__ = ["VirtualClock"]


class VirtualClock(Clock):
    """Time that stands still until :meth:`set` moves it forward.

    :class:`~pyworkflow.testing.WorkflowEnvironment` gives one to its
    runtime: every time read on that runtime (sleeps, retry back-offs, event
    timestamps, ``pyworkflow.now()``) is this clock's. Reading it is safe from
    any thread; moving it happens on the runtime's loop.
    """

    def __init__(self, start: datetime | None = None) -> None:
        if start is None:
            start = datetime.now(UTC)
        elif not isinstance(start, datetime):
            raise TypeError(f"start must be a datetime, not {type(start).__name__}")
        elif start.tzinfo is None or start.utcoffset() is None:
            raise ValueError(f"start must be timezone-aware (got naive {start.isoformat()})")
        self._now = start.astimezone(UTC)
        #: Scopes of waits that end at a due time, cancelled once the clock reaches it.
        self._waits: list[tuple[datetime, anyio.CancelScope]] = []

    def now(self) -> datetime:
        return self._now

    def set(self, when: datetime) -> None:
        """Move the clock to ``when`` (never backwards); waits due by then end."""
        if when < self._now:
            raise ValueError(
                f"a virtual clock only moves forward: {when.isoformat()} is before "
                f"{self._now.isoformat()}"
            )
        self._now = when.astimezone(UTC)  # a due time may carry the zone it was given in
        due = [scope for at, scope in self._waits if at <= when]
        self._waits = [(at, scope) for at, scope in self._waits if at > when]
        for scope in due:
            scope.cancel()

    @contextlib.contextmanager
    def move_on_until(self, due: datetime | None, cap: float) -> Iterator[anyio.CancelScope]:
        with anyio.move_on_after(cap) as scope:
            entry: tuple[datetime, anyio.CancelScope] | None = None
            if due is not None:
                if due <= self._now:
                    scope.cancel()
                else:
                    entry = (due, scope)
                    self._waits.append(entry)
            try:
                yield scope
            finally:
                if entry is not None:
                    self._waits = [wait for wait in self._waits if wait is not entry]
