"""Workflows of tests/test_fast_start.py that a subprocess imports too."""

from __future__ import annotations

import os

import anyio

from pyworkflow import step, workflow


@step(max_retries=3, retry_base="0.1s")
async def hang_in_the_first_process(value: int) -> int:
    """Hangs in the process named by ``FASTSTART_HANG_PID`` (the one the test kills)."""
    if str(os.getpid()) == os.environ.get("FASTSTART_HANG_PID"):
        await anyio.sleep(120)
    return value + 1


@workflow
async def one_step(value: int) -> int:
    return await hang_in_the_first_process(value)
