"""The workflows of the flow-control checks, imported by worker processes by module name.

``pyworkflow worker`` processes started by :mod:`pyworkflow.testing.flowchecks`
(and Celery workers in the Celery plugin's tests) import this module
(``PYWORKFLOW_MODULES=pyworkflow.testing.flowflows``); the checking process
imports it too, to create schedules and start runs.
"""

from __future__ import annotations

import asyncio

from pyworkflow.context import scheduled_at
from pyworkflow.step import step
from pyworkflow.workflow import workflow

__all__ = ["FLOW_SHORT", "FLOW_TICK", "flow_pause", "flow_short", "flow_tick"]

#: The registered names of the two workflows (``list_runs(workflow=...)``).
FLOW_TICK = "flow_tick"
FLOW_SHORT = "flow_short"


@step(name="flow_pause")
async def flow_pause(seconds: float) -> float:
    """Wait ``seconds`` (the work a run holds its queue place for); returns them."""
    await asyncio.sleep(seconds)
    return seconds


@workflow(name=FLOW_TICK)
async def flow_tick() -> str | None:
    """Started by a schedule: one short step; returns its tick (``scheduled_at()``) in ISO form."""
    tick = scheduled_at()
    await flow_pause(0.01)
    return None if tick is None else tick.isoformat()


@workflow(name=FLOW_SHORT)
async def flow_short(index: int, seconds: float) -> int:
    """One step of ``seconds``; returns ``index``."""
    await flow_pause(seconds)
    return index
