"""Exponential back-off for infrastructure retries: the one rule every reconnect loop uses.

Storage plugins retry a call while their server is unreachable and keep
their wake-up subscriptions alive across restarts; they all wait with a
:class:`Backoff`. (A step's retry delay is a different rule, durable and
replayed: :class:`pyworkflow.step.RetryPolicy`.)

The rule: the first wait is ``initial`` seconds, each next one ``factor``
times the last, never more than ``cap``; with ``jitter`` each wait is
spread by up to that fraction either way. With a ``timeout`` the waits end
at a deadline, and ``at_deadline`` says what happens to the wait that would
pass it: ``"shorten"`` it to the time left (then stop once none is left), or
``"give_up"`` at once. :meth:`Backoff.reset` starts again from ``initial``
after a success (the deadline, if any, stays).
"""

from __future__ import annotations

import random
import time
from typing import Literal

import attrs

__all__ = ["AtDeadline", "Backoff"]

#: What a :class:`Backoff` with a timeout does with a wait that would pass its deadline.
AtDeadline = Literal["shorten", "give_up"]


@attrs.define(kw_only=True)
class Backoff:
    """Waits of ``initial`` seconds growing by ``factor`` up to ``cap``, until ``timeout``.

    Call :meth:`next_delay` after each failure: it returns the seconds to
    wait before the next attempt, or None when the deadline says to stop.
    ``attempts`` counts the waits handed out since construction (not reset).
    """

    initial: float = 0.05
    factor: float = 2.0
    cap: float = 2.0
    jitter: float = 0.0
    timeout: float | None = None
    at_deadline: AtDeadline = "shorten"
    attempts: int = attrs.field(default=0, init=False)
    deadline: float | None = attrs.field(default=None, init=False)
    _delay: float = attrs.field(default=0.0, init=False)

    def __attrs_post_init__(self) -> None:
        if self.timeout is not None:
            self.deadline = time.monotonic() + self.timeout
        self._delay = self.initial

    def next_delay(self) -> float | None:
        """Seconds to wait before the next attempt, or None when time is up."""
        delay = self._delay
        if self.jitter:
            delay *= 1 + random.uniform(-self.jitter, self.jitter)
        if self.deadline is not None:
            left = self.deadline - time.monotonic()
            if self.at_deadline == "give_up":
                if delay > left:
                    return None
            elif left <= 0:
                return None
            else:
                delay = min(delay, left)
        self._delay = min(self._delay * self.factor, self.cap)
        self.attempts += 1
        return delay

    def reset(self) -> None:
        """Start again from ``initial`` (after a success); the deadline stays."""
        self._delay = self.initial
