"""Entry point of the ``pyworkflow-ray`` distribution: registers the ``ray`` executor."""

from __future__ import annotations

from typing import TYPE_CHECKING

from pyworkflow.hookspecs import ExecutorRegister, hookimpl

if TYPE_CHECKING:
    from pyworkflow.config import Settings
    from pyworkflow_ray.executor import RayExecutor


def _create(settings: Settings) -> RayExecutor:
    from pyworkflow_ray.executor import RayExecutor  # imported on first use (not Ray itself)

    return RayExecutor(settings)


@hookimpl
def pyworkflow_register_executors(register: ExecutorRegister) -> None:
    """Provide the ``ray`` executor."""
    register("ray", _create)
