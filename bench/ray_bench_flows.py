"""Workloads of ``bench/ray_throughput.py`` (imported by its Ray worker processes).

The same 5-step computation twice: a PyWorkflow workflow on the ``ray``
executor, and a plain chain of 5 Ray tasks (the baseline).
"""

from __future__ import annotations

import ray

from pyworkflow import step, workflow


@step()
async def bench_ray_add_one(value: int) -> int:
    return value + 1


@workflow
async def bench_ray_five_steps(value: int) -> int:
    for _ in range(5):
        value = await bench_ray_add_one(value)
    return value


@ray.remote
def add_one(value: int) -> int:
    return value + 1
