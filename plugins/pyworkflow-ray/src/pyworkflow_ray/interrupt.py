"""Sync step bodies that a step timeout or a cancelled run can interrupt, in a Ray worker.

An activation elsewhere runs a plain ``def`` step in a thread, which nothing
can stop: a timeout or cancel takes effect once the body returns. A Ray
worker process belongs to the tasks it runs, so there the ``ray`` executor
does what ``ray.cancel`` does to a task: it raises ``KeyboardInterrupt`` in
the body's thread, at its next Python bytecode (not inside a blocking C call
such as one long ``time.sleep``), and the attempt ends once the body has
unwound (its ``finally`` blocks ran). Each attempt's body gets a thread of its
own, so thread-local state does not carry over from one step to the next.
"""

from __future__ import annotations

import asyncio
import contextvars
import ctypes
import threading
from collections.abc import Callable
from typing import Any

__all__ = ["interruptible"]

#: How long a cancelled attempt waits for its interrupted body to unwind.
UNWIND_SECONDS = 30.0


def interruptible(body: Callable[..., Any]) -> Callable[..., Any]:
    """An ``async`` stand-in for the sync ``body``: run in a thread of its own, interrupted
    (``KeyboardInterrupt``) when the awaiting task is cancelled."""

    async def run(*args: Any, **kwargs: Any) -> Any:
        loop = asyncio.get_running_loop()
        done: asyncio.Future[Any] = loop.create_future()
        context = contextvars.copy_context()  # the attempt's ids and step context

        abandoned = False  # cancelled: nobody takes the outcome

        def settle(value: Any, error: BaseException | None) -> None:
            if done.done() or abandoned:
                return
            if error is not None:
                done.set_exception(error)
            else:
                done.set_result(value)

        def target() -> None:
            try:
                value = context.run(body, *args, **kwargs)
            except BaseException as exc:  # KeyboardInterrupt included: handed to the loop
                loop.call_soon_threadsafe(settle, None, exc)
            else:
                loop.call_soon_threadsafe(settle, value, None)

        thread = threading.Thread(target=target, name="pyworkflow-ray-step", daemon=True)
        thread.start()
        try:
            return await asyncio.shield(done)
        except asyncio.CancelledError:
            abandoned = True
            _interrupt(thread)
            # the attempt ends once the body has unwound (its finally blocks ran); joined,
            # not awaited through ``done``: an interrupt landing just after the body
            # returned may keep the thread from handing over its outcome
            await loop.run_in_executor(None, thread.join, UNWIND_SECONDS)
            raise

    return run


def _interrupt(thread: threading.Thread) -> None:
    """Raise ``KeyboardInterrupt`` in ``thread`` at its next bytecode (if still running)."""
    if thread.ident is None or not thread.is_alive():
        return
    ctypes.pythonapi.PyThreadState_SetAsyncExc(
        ctypes.c_ulong(thread.ident), ctypes.py_object(KeyboardInterrupt)
    )
