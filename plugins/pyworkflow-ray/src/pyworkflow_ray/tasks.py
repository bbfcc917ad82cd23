"""The Ray task that runs one dispatched step in a Ray worker process."""

from __future__ import annotations

import os

import ray

from pyworkflow import dispatch

__all__ = ["run_step", "worker_name"]


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
