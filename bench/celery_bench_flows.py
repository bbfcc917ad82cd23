"""Workloads of ``bench/celery_throughput.py`` (imported by its Celery workers).

The same 5-step computation twice: a PyWorkflow workflow on the ``celery``
executor, and a plain Celery ``chain`` of 5 tasks (the baseline).
"""

from __future__ import annotations

import os

from celery import Celery

from pyworkflow import step, workflow


@step()
async def bench_add_one(value: int) -> int:
    return value + 1


@workflow
async def bench_five_steps(value: int) -> int:
    for _ in range(5):
        value = await bench_add_one(value)
    return value


baseline_app = Celery(
    "baseline",
    broker=os.environ.get("BENCH_BROKER_URL", "redis://127.0.0.1:6379/1"),
    backend=os.environ.get("BENCH_BROKER_URL", "redis://127.0.0.1:6379/1"),
)
baseline_app.conf.update(
    task_serializer="json",
    result_serializer="json",
    accept_content=["json"],
    task_acks_late=True,
    worker_prefetch_multiplier=1,
    broker_connection_retry_on_startup=True,
)


@baseline_app.task(name="bench.add_one")
def add_one(value: int) -> int:
    return value + 1
