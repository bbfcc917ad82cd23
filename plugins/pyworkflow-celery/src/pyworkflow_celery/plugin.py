"""Entry point of the ``pyworkflow-celery`` distribution: registers the ``celery`` executor."""

from __future__ import annotations

from typing import TYPE_CHECKING

from pyworkflow.hookspecs import ExecutorRegister, hookimpl

if TYPE_CHECKING:
    from pyworkflow.config import Settings
    from pyworkflow_celery.executor import CeleryExecutor


def _create(settings: Settings) -> CeleryExecutor:
    from pyworkflow_celery.executor import CeleryExecutor  # imported on first use

    return CeleryExecutor(settings)


@hookimpl
def pyworkflow_register_executors(register: ExecutorRegister) -> None:
    """Provide the ``celery`` executor."""
    register("celery", _create)
