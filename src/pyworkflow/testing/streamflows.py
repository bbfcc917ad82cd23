"""The durable-stream workload that worker processes import by module name.

:func:`pyworkflow.testing.streamchecks.stream_across_kill` starts ``pyworkflow
worker`` processes with ``modules = ["pyworkflow.testing.streamflows"]``.
"""

from __future__ import annotations

import anyio

from pyworkflow.step import step
from pyworkflow.streams import write_stream
from pyworkflow.workflow import workflow

__all__ = ["stream_emit", "stream_progress"]


@step(name="stream_emit", max_retries=5, retry_delay=0.1)
async def stream_emit(count: int, pause: float) -> int:
    """Write ``{"i": i}`` for i in 0..count-1 to stream ``progress``, pausing between chunks."""
    for i in range(count):
        await write_stream("progress", {"i": i})
        await anyio.sleep(pause)
    return count


@workflow(name="stream_progress")
async def stream_progress(count: int, pause: float) -> int:
    """One step that streams ``count`` chunks; returns ``count``."""
    return await stream_emit(count, pause)
