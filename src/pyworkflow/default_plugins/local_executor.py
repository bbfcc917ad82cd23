"""Built-in plugin providing the ``local`` executor."""

from __future__ import annotations

from pyworkflow.executors.local import LocalExecutor
from pyworkflow.hookspecs import ExecutorRegister, hookimpl


@hookimpl
def pyworkflow_register_executors(register: ExecutorRegister) -> None:
    """Provide the ``local`` executor."""
    register("local", LocalExecutor)
