"""Workflows of the Celery tracing test (workers import this module)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import anyio

from pyworkflow import step, workflow


@step(max_retries=2, retry_delay="0s")
async def traced_meet(label: str, other: str, folder: str) -> str:
    """Wait (up to 60 s) until ``other`` started too, so the two run on two workers at once.

    The first attempt of ``a`` fails (a retried attempt is its own span); each attempt that
    gets to the end makes a span of its own, which must nest under the attempt's span.
    """
    from opentelemetry import trace

    Path(folder, label).touch()
    with anyio.fail_after(60):
        while not Path(folder, other).exists():
            await anyio.sleep(0.02)
    marker = Path(folder, f"{label}.failed")
    if label == "a" and not marker.exists():
        marker.touch()
        raise ValueError("first attempt of a")
    with trace.get_tracer("user").start_as_current_span(f"user {label}"):
        return label


@workflow
async def traced_parallel(folder: str) -> list[str]:
    return list(await asyncio.gather(traced_meet("a", "b", folder), traced_meet("b", "a", folder)))


@step()
async def traced_add(a: int, b: int) -> int:
    return a + b


@workflow
async def traced_kid(n: int) -> int:
    return await traced_add(n, 1)


@workflow
async def traced_parent(n: int) -> int:
    from pyworkflow import start_child

    return await start_child(traced_kid, n)
