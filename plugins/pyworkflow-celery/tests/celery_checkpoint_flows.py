"""Step checkpoints on Celery workers (issue 20); workers import this module (``modules``)."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from pyworkflow import get_step_context, step, workflow


@step(max_retries=3, retry_delay=0.1)
async def resumable(log: str, name: str, total: int, fail_at: int) -> int:
    """Count to ``total``, checkpointing; attempt 1 fails at ``fail_at``.

    Appends ``name attempt resumed-at pid`` to ``log`` when an attempt begins.
    """
    ctx = get_step_context()
    begin = ctx.last_checkpoint or 0
    with open(log, "a") as fh:
        fh.write(f"{name} {ctx.attempt} {begin} {os.getpid()}\n")
    for item in range(begin, total):
        if ctx.attempt == 1 and item == fail_at:
            raise RuntimeError(f"{name} breaks at item {item}")
        await ctx.checkpoint(item + 1)
    return total


@workflow
async def two_resumables(log: str, total: int, fail_at: int) -> list[int]:
    """Two steps awaited together: the Celery executor dispatches both to its step queue."""
    a, b = await asyncio.gather(
        resumable(log, "a", total, fail_at), resumable(log, "b", total, fail_at)
    )
    return [a, b]


def attempts(log: str | Path) -> list[tuple[str, int, int, int]]:
    """``(name, attempt, resumed at, pid)`` per attempt begun, from the log."""
    rows = []
    for line in Path(log).read_text().splitlines():
        name, attempt, begin, pid = line.split()
        rows.append((name, int(attempt), int(begin), int(pid)))
    return rows
