"""The load-test workload: a 5-step workflow that worker processes import by module name.

``pyworkflow worker`` processes started by :mod:`pyworkflow.testing.workers`
import this module (``modules = ["pyworkflow.testing.loadflows"]``); the
storage benchmark runs the same workflow in-process.
"""

from __future__ import annotations

from pyworkflow.step import step
from pyworkflow.workflow import workflow

__all__ = ["STEPS", "load_add_one", "load_five_steps"]

#: Steps per run of :func:`load_five_steps`.
STEPS = 5


@step(name="load_add_one")
async def load_add_one(value: int) -> int:
    """One cheap step: the cost measured is the framework's, not the body's."""
    return value + 1


@workflow(name="load_five_steps")
async def load_five_steps(start_value: int) -> int:
    """Five sequential steps; returns ``start_value + 5``."""
    value = start_value
    for _ in range(STEPS):
        value = await load_add_one(value)
    return value
