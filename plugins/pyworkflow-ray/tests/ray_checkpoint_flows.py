"""Step checkpoints on Ray workers (issue 20); worker and Ray processes import this module."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from pyworkflow import get_step_context, step, workflow


@step(max_retries=3, retry_delay=0.1)
async def ray_resumable(log: str, name: str, total: int, fail_at: int) -> int:
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
async def ray_resumables(log: str, total: int, fail_at: int) -> list[int]:
    """A lone step (run in its activation's Ray worker process), then two gathered ones
    (dispatched as Ray tasks of their own)."""
    first = await ray_resumable(log, "inline", total, fail_at)
    a, b = await asyncio.gather(
        ray_resumable(log, "a", total, fail_at), ray_resumable(log, "b", total, fail_at)
    )
    return [first, a, b]


def attempts(log: str | Path) -> list[tuple[str, int, int, int]]:
    """``(name, attempt, resumed at, pid)`` per attempt begun, from the log."""
    rows = []
    for line in Path(log).read_text().splitlines():
        name, attempt, begin, pid = line.split()
        rows.append((name, int(attempt), int(begin), int(pid)))
    return rows
