"""Workflows the PostgreSQL tests run in worker subprocesses (names unique repo-wide)."""

from __future__ import annotations

from pyworkflow import sleep, step, workflow


@step(name="pg_double")
async def pg_double(value: int) -> int:
    return value * 2


@workflow(name="pg_step_sleep_step")
async def pg_step_sleep_step(value: int, pause: str) -> int:
    """A step, a durable sleep (the test restarts the server here), another step."""
    value = await pg_double(value)
    await sleep(pause)
    return await pg_double(value)
