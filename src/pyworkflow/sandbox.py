"""The private event loop that runs workflow code one deterministic slice at a time."""

from __future__ import annotations

import asyncio
from asyncio import events
from typing import Any

from loguru import logger

__all__ = ["WorkflowLoop"]


class WorkflowLoop(asyncio.BaseEventLoop):
    """An asyncio loop the engine steps by hand.

    Workflow code (its tasks, ``asyncio.gather``, anyio task groups) runs only
    inside :meth:`run_ready`, which runs callbacks until none is ready: the
    workflow is then idle, blocked on durable operations the engine resolves
    one at a time, in log order. That makes replay deterministic whatever
    the timing of the original run.
    """

    def run_ready(self) -> None:
        """Run workflow callbacks until the workflow is blocked."""
        outer = events._get_running_loop()
        events._set_running_loop(self)
        try:
            ready = self._ready  # type: ignore[attr-defined]  # BaseEventLoop's ready deque
            while ready:
                handle = ready.popleft()
                if not handle._cancelled:
                    handle._run()
        finally:
            events._set_running_loop(outer)

    def has_timers(self) -> bool:
        """Whether workflow code scheduled a wall-clock timer (e.g. ``asyncio.sleep``)."""
        scheduled = self._scheduled  # type: ignore[attr-defined]  # BaseEventLoop's timer heap
        return any(not handle._cancelled for handle in scheduled)

    def call_exception_handler(self, context: dict[str, Any]) -> None:
        """Log instead of printing; discarded tasks are expected after suspension."""
        message = context.get("message", "")
        if "destroyed but it is pending" in message:
            return
        logger.opt(exception=context.get("exception")).debug("workflow loop: {}", message)

    def _write_to_self(self) -> None:
        """Nothing to wake: this loop is stepped by the engine, not by a selector."""

    def _process_events(self, event_list: Any) -> None:
        """No selector, no I/O events."""
