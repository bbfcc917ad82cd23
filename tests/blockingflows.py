"""A step that blocks its worker's event loop, for worker processes (tests/test_step_blocking.py).

Worker processes import this module by name (``PYWORKFLOW_MODULES=blockingflows``
with this folder on ``PYTHONPATH``); the test process imports it the same way.
"""

from __future__ import annotations

import time

from pyworkflow import step, workflow


@step(max_retries=0)
async def hold_the_loop(seconds: float) -> str:
    """An ``async`` step that calls a blocking function: nothing else on its loop runs."""
    time.sleep(seconds)  # the mistake under test
    return f"held {seconds:g}s"


@workflow
async def blocking_flow(seconds: float) -> str:
    """One step that holds the event loop for ``seconds``."""
    return await hold_the_loop(seconds)
