"""The Ray tasks of the ``ray`` executor: an activation, and a dispatched step."""

from __future__ import annotations

import concurrent.futures
import contextlib
import os
from functools import cache
from typing import TYPE_CHECKING

import ray

from pyworkflow import dispatch
from pyworkflow_ray.handoff import Handoff, activate_here, cancel_here
from pyworkflow_ray.interrupt import UNWIND_SECONDS

if TYPE_CHECKING:
    from pyworkflow.runtime import Runtime

__all__ = ["run_activation", "run_step", "worker_name"]


@cache
def worker_name() -> str:
    """``ray:<node id>:<pid>``: who ran the step, as ``step_started`` records it."""
    node = ray.get_runtime_context().get_node_id()
    return f"ray:{node}:{os.getpid()}"


def _runtime() -> Runtime:
    """This Ray worker process's PyWorkflow runtime, with the workflow modules imported.

    It comes from the ``PYWORKFLOW_*`` variables the executor put in the task's
    ``runtime_env``: the ``ray`` executor (which finds itself inside a Ray
    worker) and no embedded worker. PyWorkflow's logs go to stderr.
    """
    from pyworkflow.executors.local import import_modules
    from pyworkflow.runtime import get_runtime

    runtime = get_runtime()
    import_modules(runtime.settings.modules)
    _enable_logging((runtime.settings.log_level or "WARNING").upper())
    return runtime


@cache
def _enable_logging(level: str) -> None:
    """PyWorkflow's logs on this Ray worker's stderr (Ray's log files), as ``pyworkflow
    worker`` has them: at ``log_level`` (``PYWORKFLOW_LOG_LEVEL``), else WARNING."""
    from pyworkflow import enable_logging

    enable_logging(level)


@ray.remote(max_retries=0)
def run_activation(run_id: str, owner: str) -> Handoff:
    """Run one activation of ``run_id``, leased to ``owner`` (the sending worker).

    The sending worker holds the run's lease and renews it while this task
    runs. The activation replays the run and runs its lone steps here, then
    suspends or ends the run; what it leaves to the sending worker (steps
    to dispatch as Ray tasks, runs to wake, timers) is returned. Ray does not
    retry the task: a worker that dies leaves the run to the sending worker,
    which lets it go at once. Cancelled by the sender (``ray.cancel``: it lost
    the run's lease, or it is stopping), the activation is cancelled here too.
    """
    runtime = _runtime()
    call = runtime.submit(activate_here, runtime, run_id, owner)
    try:
        while True:  # in short waits: ray.cancel's KeyboardInterrupt lands between bytecodes
            try:
                return call.result(timeout=0.2)
            except concurrent.futures.TimeoutError:
                continue
    except BaseException:  # ray.cancel (the sender lost the run's lease, or stops): stop it too
        cancel_here(run_id)
        with contextlib.suppress(BaseException):  # its steps unwound, its lease released
            call.result(timeout=UNWIND_SECONDS)
        raise


@ray.remote(max_retries=0)
def run_step(run_id: str, step_id: str, attempt: int) -> str:
    """Run attempt ``attempt`` of step ``step_id`` of ``run_id``; returns what happened.

    :func:`~pyworkflow.dispatch.run_dispatched_step` takes the step's lease
    (a duplicate finds it taken), runs the body and records it. Ray does not
    retry the task: PyWorkflow's lease and retry policy do.
    """
    runtime = _runtime()
    return runtime.call(
        dispatch.run_dispatched_step, runtime, run_id, step_id, attempt, worker_name()
    )
