"""What an activation run in a Ray worker hands back to the worker that sent it.

Inside a Ray worker the ``ray`` executor runs the activation and its lone
steps in-process, but it does not submit Ray tasks or wake runs itself: it
notes them in the activation's :class:`Handoff`, which the task returns, and
the sending worker (``pyworkflow worker``, or a script's embedded worker)
submits the steps, watches them and wakes their runs when they end, as for
everything it sends.
"""

from __future__ import annotations

import asyncio
from contextvars import ContextVar
from datetime import datetime
from typing import TYPE_CHECKING, Any

import attrs

from pyworkflow.engine import run_activation
from pyworkflow.errors import RunNotFoundError

if TYPE_CHECKING:
    from pyworkflow.runtime import Runtime

__all__ = ["Handoff", "activate_here", "cancel_here", "current_handoff"]


@attrs.define
class Handoff:
    """What one activation leaves to its sending worker."""

    #: steps to dispatch: (run id, step id, attempt, the step's Ray task options)
    steps: list[tuple[str, str, int, dict[str, Any]]] = attrs.field(factory=list)
    #: runs due now (children it started, ...)
    due: list[str] = attrs.field(factory=list)
    #: runs suspended until a time: (run id, when)
    timers: list[tuple[str, datetime]] = attrs.field(factory=list)
    #: whether the activation ran to its end (False: it crashed and backed off, or the
    #: run was gone)
    finished: bool = False


_current: ContextVar[Handoff | None] = ContextVar("pyworkflow_ray_handoff", default=None)


def current_handoff() -> Handoff | None:
    """The handoff of the activation running in this context, if any."""
    return _current.get()


#: The activations running in this process: their loop and task, by run id (to cancel).
_running: dict[str, tuple[asyncio.AbstractEventLoop, asyncio.Task[Any]]] = {}


async def activate_here(runtime: Runtime, run_id: str, owner: str) -> Handoff:
    """Activate ``run_id`` (leased to ``owner``) in this process; what it hands back."""
    handoff = Handoff()
    token = _current.set(handoff)
    task = asyncio.current_task()
    if task is not None:
        _running[run_id] = (asyncio.get_running_loop(), task)
    try:
        try:
            run = await runtime.storage.get_run(run_id)
        except RunNotFoundError:
            return handoff
        handoff.finished = await run_activation(runtime, run, owner)
    finally:
        _current.reset(token)
        if task is not None and _running.get(run_id, (None, None))[1] is task:
            del _running[run_id]
    return handoff


def cancel_here(run_id: str) -> None:
    """Cancel the activation of ``run_id`` running in this process, if any (thread-safe).

    Its running steps are cancelled (a sync body is interrupted, see
    :mod:`pyworkflow_ray.interrupt`) and its lease released, as when a worker loses a
    run's lease.
    """
    entry = _running.get(run_id)
    if entry is not None:
        loop, task = entry
        loop.call_soon_threadsafe(task.cancel)
