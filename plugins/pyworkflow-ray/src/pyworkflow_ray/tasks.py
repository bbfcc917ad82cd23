"""The Ray tasks of the ``ray`` executor: a dispatched step, and an inline step's body."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import os
from collections.abc import Iterator
from typing import Any

import ray

from pyworkflow import dispatch
from pyworkflow.context import step_ids_entered

__all__ = ["BodyCall", "run_body", "run_step", "worker_name"]

#: What :func:`run_body` gets: step name, args, kwargs, the attempt's ids, and the
#: OpenTelemetry context of the attempt as W3C headers (``{}`` when tracing is off).
BodyCall = tuple[
    str, tuple[Any, ...], dict[str, Any], tuple[str, str, str, int] | None, dict[str, str]
]

#: This Ray worker process's event loop for ``async`` step bodies (one per process).
_loop: asyncio.AbstractEventLoop | None = None
#: Whether the workflow modules (``PYWORKFLOW_MODULES``) were imported in this process.
_imported = False


def worker_name() -> str:
    """``ray:<node id>:<pid>``: who ran the step, as ``step_started`` records it."""
    node = ray.get_runtime_context().get_node_id()
    return f"ray:{node}:{os.getpid()}"


@ray.remote(max_retries=0)
def run_step(run_id: str, step_id: str, attempt: int) -> str:
    """Run attempt ``attempt`` of step ``step_id`` of ``run_id``; returns what happened.

    The process's PyWorkflow runtime comes from the ``PYWORKFLOW_*`` variables
    the executor put in the task's ``runtime_env``; it imports the workflow
    modules, then :func:`~pyworkflow.dispatch.run_dispatched_step` takes the
    step's lease (a duplicate finds it taken), runs the body and records it.
    Ray does not retry the task: PyWorkflow's lease and retry policy do.
    """
    from pyworkflow.executors.local import import_modules
    from pyworkflow.runtime import get_runtime

    runtime = get_runtime()
    import_modules(runtime.settings.modules)
    return runtime.call(
        dispatch.run_dispatched_step, runtime, run_id, step_id, attempt, worker_name()
    )


def _import_workflow_modules() -> None:
    """Import the modules ``PYWORKFLOW_MODULES`` names (the executor sets it), once."""
    global _imported
    if _imported:
        return
    from pyworkflow.executors.local import import_modules

    modules = [m.strip() for m in os.environ.get("PYWORKFLOW_MODULES", "").split(",")]
    import_modules([m for m in modules if m])
    _imported = True


def _event_loop() -> asyncio.AbstractEventLoop:
    global _loop
    if _loop is None or _loop.is_closed():
        _loop = asyncio.new_event_loop()
    return _loop


@ray.remote(max_retries=3)
def run_body(call: BodyCall) -> tuple[str, bool, Any]:
    """Run the body of a step; ``(worker, True, value)`` or ``(worker, False, exception)``.

    ``call`` is ``(name, args, kwargs, ids)``, one argument (Ray serializes
    each argument of a task on its own). Nothing is recorded here: the
    activation that awaits this task records the attempt (an inline lone
    step, see ``RayExecutor.inline_body``), naming ``worker``
    (``ray:<node id>:<pid>``) as where it ran. ``ids`` are the attempt's, for
    ``get_step_context()``. Ray runs the task again if its worker process
    dies (``max_retries``); an exception of the body is returned, not raised,
    so Ray does not retry it (the step's retry policy does) and the
    activation learns where it ran.
    """
    from pyworkflow.step import get_step

    name, args, kwargs, ids, trace_headers = call
    worker = worker_name()
    try:
        _import_workflow_modules()
        _, body = get_step(name)
        with step_ids_entered(ids), _trace_context(trace_headers):
            if inspect.iscoroutinefunction(body):
                value = _event_loop().run_until_complete(body(*args, **kwargs))
            else:
                value = body(*args, **kwargs)
                if inspect.isawaitable(value):
                    value = _event_loop().run_until_complete(value)
    except Exception as exc:
        return worker, False, _sendable(exc, worker)
    return worker, True, value


@contextlib.contextmanager
def _trace_context(headers: dict[str, str]) -> Iterator[None]:
    """The step attempt's span as the current OpenTelemetry context (user spans nest under it)."""
    if not headers:
        yield
        return
    from opentelemetry import context, propagate

    token = context.attach(propagate.extract(headers))
    try:
        yield
    finally:
        context.detach(token)


def _sendable(exc: Exception, worker: str) -> Exception:
    """``exc`` with the remote traceback as a note, or a stand-in if it cannot be pickled."""
    import traceback

    from ray import cloudpickle

    exc.add_note(f"(raised in {worker})\n" + "".join(traceback.format_tb(exc.__traceback__)))
    try:
        cloudpickle.dumps(exc)  # type: ignore[no-untyped-call]
    except Exception:
        return RuntimeError(f"{type(exc).__name__}: {exc} (not picklable, raised in {worker})")
    return exc
