"""Entry point of the ``pyworkflow-celery`` distribution: registers the ``celery`` executor."""

from __future__ import annotations

from collections.abc import Callable

from pyworkflow.config import Settings
from pyworkflow.executors.base import Executor
from pyworkflow.hookspecs import hookimpl


@hookimpl
def pyworkflow_register_executors(
    register: Callable[[str, Callable[[Settings], Executor]], None],
) -> None:
    """Provide the ``celery`` executor."""
    from pyworkflow_celery.executor import CeleryExecutor

    register("celery", CeleryExecutor)
