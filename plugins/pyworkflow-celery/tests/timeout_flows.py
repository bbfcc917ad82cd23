"""Workflows of the Celery workflow-timeout tests; their workers import this module.

Step bodies append ``<event> <name> <pid>`` lines to a file the test passes in.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import anyio

from pyworkflow import step, workflow


def note(path: str, what: str, name: str) -> None:
    with open(path, "a") as fh:
        fh.write(f"{what} {name} {os.getpid()}\n")


def notes(path: str | Path) -> list[str]:
    """``<event> <name>`` of each line written so far."""
    try:
        return [" ".join(line.split()[:2]) for line in Path(path).read_text().splitlines()]
    except FileNotFoundError:
        return []


@step(max_retries=0)
async def timeout_slow(name: str, log: str) -> str:
    note(log, "started", name)
    try:
        await anyio.sleep(4.0)
    except BaseException:
        note(log, "cancelled", name)
        raise
    note(log, "finished", name)
    return name


@workflow(timeout=1.5)
async def timeout_gathered(log: str) -> list[str]:
    # two steps at once: both go to the step queue, to the workers
    return list(await asyncio.gather(timeout_slow("a", log), timeout_slow("b", log)))


@workflow(timeout=1.5)
async def timeout_lone(log: str) -> str:
    # a lone step runs inside the activation (the executor's inline_steps)
    return await timeout_slow("lone", log)
