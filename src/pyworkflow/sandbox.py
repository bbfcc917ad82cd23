"""The private event loop that runs workflow code one deterministic slice at a time."""

from __future__ import annotations

import asyncio
import contextvars
from asyncio import events, format_helpers
from collections.abc import Callable
from typing import Any, TypeVarTuple, Unpack

from loguru import logger

__all__ = ["WorkflowLoop"]

_Ts = TypeVarTuple("_Ts")


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
                if handle._cancelled:
                    continue
                # Handle._run, inline: one frame less for every workflow wake-up
                try:
                    handle._context.run(handle._callback, *handle._args)
                except (SystemExit, KeyboardInterrupt):
                    raise
                except BaseException as exc:
                    self._callback_failed(handle, exc)
        finally:
            events._set_running_loop(outer)

    def _callback_failed(self, handle: Any, exc: BaseException) -> None:
        """What ``Handle._run`` does when a callback raises: tell the exception handler."""
        callback = format_helpers._format_callback_source(handle._callback, handle._args)
        context: dict[str, Any] = {
            "message": f"Exception in callback {callback}",
            "exception": exc,
            "handle": handle,
        }
        if handle._source_traceback:
            context["source_traceback"] = handle._source_traceback
        self.call_exception_handler(context)

    def call_soon(
        self,
        callback: Callable[[Unpack[_Ts]], object],
        *args: *_Ts,
        context: contextvars.Context | None = None,
    ) -> asyncio.Handle:
        """``BaseEventLoop.call_soon`` in one frame when the loop is open and not in debug mode.

        Every step outcome wakes the workflow's task through here.
        """
        if self._closed or self._debug:  # type: ignore[attr-defined]  # BaseEventLoop's flags
            return super().call_soon(callback, *args, context=context)
        handle = events.Handle(callback, args, self, context)
        self._ready.append(handle)  # type: ignore[attr-defined]  # BaseEventLoop's ready deque
        return handle

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
