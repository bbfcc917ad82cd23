"""Workflows used by the multi-process tests (imported by worker subprocesses)."""

from __future__ import annotations

import json
import os
import time

import anyio

from pyworkflow import get_step_context, sleep, step, workflow


def _mark(path: str, name: str) -> None:
    ctx = get_step_context()
    line = json.dumps({"step": name, "attempt": ctx.attempt, "pid": os.getpid(), "t": time.time()})
    with open(path, "a") as fh:
        fh.write(line + "\n")
        fh.flush()
        os.fsync(fh.fileno())


@step(max_retries=3, retry_base="0.1s")
async def first(marker: str) -> int:
    _mark(marker, "first")
    return 1


@step(max_retries=3, retry_base="0.1s")
async def second(marker: str, value: int) -> int:
    _mark(marker, "second")
    if get_step_context().attempt == 1:
        await anyio.sleep(60)  # the test kills the process here
    return value + 1


@step(max_retries=3, retry_base="0.1s")
async def third(marker: str, value: int) -> int:
    _mark(marker, "third")
    return value + 1


@workflow
async def three_steps(marker: str) -> int:
    value = await first(marker)
    value = await second(marker, value)
    return await third(marker, value)


@workflow
async def step_then_sleep(marker: str) -> str:
    await first(marker)
    await sleep("3s")
    return "woke"


@step()
async def add_one(value: int) -> int:
    return value + 1


@workflow
async def five_steps(start_value: int) -> int:
    value = start_value
    for _ in range(5):
        value = await add_one(value)
    return value


@workflow
async def sleep_an_hour(n: int) -> int:
    await sleep("1h")
    return n
