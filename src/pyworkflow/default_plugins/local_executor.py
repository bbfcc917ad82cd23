"""Built-in plugin providing the ``local`` executor."""

from __future__ import annotations

from typing import TYPE_CHECKING

from pyworkflow.hookspecs import ExecutorRegister, hookimpl

if TYPE_CHECKING:
    from pyworkflow.config import Settings
    from pyworkflow.executors.local import LocalExecutor


def _create(settings: Settings) -> LocalExecutor:
    from pyworkflow.executors.local import LocalExecutor  # imported on first use: a fast start

    return LocalExecutor(settings)


@hookimpl
def pyworkflow_register_executors(register: ExecutorRegister) -> None:
    """Provide the ``local`` executor."""
    register("local", _create)
