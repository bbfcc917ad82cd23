"""The one clock a runtime reads time through (DESIGN §12, virtual time).

Every time the engine reads (a sleep's due time, a retry's back-off, a lease's
expiry, an event's timestamp, ``pyworkflow.now()``) comes from
:func:`pyworkflow.models.utcnow`, which asks the clock of the runtime whose
loop the code runs on. A runtime installs its clock in its loop's context
(and the lease keeper's thread inherits it), so tasks and step threads of
that runtime see it, and nothing else does: the test harness
(:class:`pyworkflow.testing.WorkflowEnvironment`) gives its own runtime a
virtual clock without touching the process's real one.

The one wait that a clock move must cut short, an activation waiting for
running steps while a timer is pending, goes through :meth:`Clock.move_on_until`.
"""

from __future__ import annotations

import contextlib
import contextvars
from datetime import UTC, datetime

import anyio

__all__ = ["SYSTEM_CLOCK", "Clock", "current_clock", "installed_clock"]

_datetime_now = datetime.now


class Clock:
    """The wall clock (the default). Subclasses replace it (virtual time in tests)."""

    def now(self) -> datetime:
        """The current time as an aware UTC datetime."""
        return _datetime_now(UTC)

    def move_on_until(
        self, due: datetime | None, cap: float
    ) -> contextlib.AbstractContextManager[anyio.CancelScope]:
        """A scope that ends its block at ``due`` by this clock, or after ``cap`` real seconds.

        ``due`` None means only the cap applies.
        """
        timeout = cap
        if due is not None:
            timeout = min(cap, max(0.0, (due - self.now()).total_seconds()))
        return anyio.move_on_after(timeout)


#: The clock of every runtime that was not given another.
SYSTEM_CLOCK = Clock()

#: The clock installed in this context by a runtime with a clock of its own (None: the
#: system clock). Read on every ``utcnow()``: a context variable lookup is the whole cost.
_installed: contextvars.ContextVar[Clock | None] = contextvars.ContextVar(
    "pyworkflow_clock", default=None
)
installed_clock = _installed.get


def current_clock() -> Clock:
    """The clock code running here reads time through."""
    return _installed.get() or SYSTEM_CLOCK


def install(clock: Clock) -> None:
    """Make ``clock`` this context's clock (a runtime does this on its loop, once)."""
    _installed.set(None if clock is SYSTEM_CLOCK else clock)
