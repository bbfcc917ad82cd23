"""Workflows the MySQL tests run in worker subprocesses (names unique repo-wide)."""

from __future__ import annotations

from pyworkflow import sleep, step, workflow


@step(name="mysql_double")
async def mysql_double(value: int) -> int:
    return value * 2


@workflow(name="mysql_step_sleep_step")
async def mysql_step_sleep_step(value: int, pause: str) -> int:
    """A step, a durable sleep (the test restarts the server here), another step."""
    value = await mysql_double(value)
    await sleep(pause)
    return await mysql_double(value)
