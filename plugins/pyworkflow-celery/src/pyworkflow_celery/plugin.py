"""Entry point of the ``pyworkflow-celery`` distribution: registers the ``celery`` executor."""

from __future__ import annotations

from pyworkflow.hookspecs import ExecutorRegister, hookimpl


@hookimpl
def pyworkflow_register_executors(register: ExecutorRegister) -> None:
    """Provide the ``celery`` executor."""
    from pyworkflow_celery.executor import CeleryExecutor

    register("celery", CeleryExecutor)
