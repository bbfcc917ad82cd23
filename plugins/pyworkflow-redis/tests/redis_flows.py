"""Workflows the worker subprocesses of the Redis tests import (``modules = "redis_flows"``).

Names start with ``redis_`` so they never clash with another test module's.
"""

from __future__ import annotations

import anyio

from pyworkflow import create_hook, sleep, step, workflow


@step(name="redis_slow_step")
async def redis_slow_step(tag: str) -> str:
    """Takes a second, so a Redis restart can land while it runs."""
    await anyio.sleep(1.0)
    return tag


@workflow(name="redis_restart_flow")
async def redis_restart_flow() -> list[str]:
    """A step, a durable sleep, a step."""
    first = await redis_slow_step("first")
    await sleep("3s")
    second = await redis_slow_step("second")
    return [first, second]


@step(name="redis_echo_step")
async def redis_echo_step(value: str) -> str:
    return f"{value}!"


@workflow(name="redis_quick_flow")
async def redis_quick_flow(value: str) -> str:
    """One step: finished as soon as a worker claims it."""
    return await redis_echo_step(value)


@workflow(name="redis_hook_flow")
async def redis_hook_flow(token: str) -> str:
    """Waits for one payload on ``token``."""
    payload = await create_hook(token=token)
    return await redis_echo_step(str(payload))


@workflow(name="redis_nap_flow")
async def redis_nap_flow(value: str) -> str:
    """A step, then a short durable sleep: the step's event can be tampered with meanwhile."""
    echoed = await redis_echo_step(value)
    await sleep("1s")
    return echoed
