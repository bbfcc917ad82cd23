"""Workflows of the Celery metrics test (test_metrics_celery.py; the workers import it)."""

from __future__ import annotations

from pyworkflow import get_step_context, step, workflow


@step()
async def cm_add(value: int) -> int:
    return value + 1


@step(max_retries=2, retry_base="10ms", jitter=0.0)
async def cm_flaky() -> str:
    if get_step_context().attempt < 3:
        raise ValueError(f"attempt {get_step_context().attempt} fails")
    return "third time"


@workflow()
async def cm_flow(value: int) -> int:
    return await cm_add(value)


@workflow()
async def cm_retry() -> str:
    return await cm_flaky()
