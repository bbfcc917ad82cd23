"""Queues and step queues on the local executor, in real time, on every built-in storage.

Overlap is computed from times the steps record (never a wall-clock bound on the test).
"""

from __future__ import annotations

import asyncio
import threading
from datetime import datetime, timedelta
from typing import Any

import anyio

from pyworkflow import get_result, get_run, runtime, start_workflow, step, workflow
from pyworkflow.models import utcnow
from tests.conftest import FAST

_lock = threading.Lock()
_spans: list[tuple[datetime, datetime]] = []


@step(name="ql.call", queue="ql-api")
async def call(n: int) -> int:
    start = utcnow()
    await anyio.sleep(0.03)
    with _lock:
        _spans.append((start, utcnow()))
    return n


@workflow(name="ql.calls")
async def calls(count: int) -> list[int]:
    return list(await asyncio.gather(*(call(i) for i in range(count))))


@workflow(name="ql.job", queue="ql-jobs")
async def job(n: int) -> int:
    return await work(n)


@step(name="ql.work")
async def work(n: int) -> int:
    start = utcnow()
    await anyio.sleep(0.02)
    with _lock:
        _spans.append((start, utcnow()))
    return n


def _most_at_once(spans: list[tuple[datetime, datetime]]) -> int:
    edges = sorted([(s, 1) for s, _ in spans] + [(e, -1) for _, e in spans])
    now = best = 0
    for _, delta in edges:
        now += delta
        best = max(best, now)
    return best


def test_a_step_queue_limits_concurrent_attempts(storage_url: str) -> None:
    _spans.clear()
    runtime.configure(storage=storage_url, queues={"ql-api": {"concurrency": 2}}, **FAST)
    assert get_result(start_workflow(calls, (8,)), timeout=60) == list(range(8))
    assert len(_spans) == 8 and _most_at_once(_spans) <= 2


def test_a_step_queue_rate_spaces_attempts(storage_url: str) -> None:
    _spans.clear()
    runtime.configure(storage=storage_url, queues={"ql-api": {"rate": "2/0.5s"}}, **FAST)
    storage = runtime.get_runtime().storage
    taken: list[datetime] = []
    acquire = storage.acquire_step_slot

    async def recorded(*args: Any) -> bool:  # the instants the storage granted places at
        granted = await acquire(*args)
        if granted:
            taken.append(args[3])
        return granted

    storage.acquire_step_slot = recorded  # type: ignore[method-assign]
    assert get_result(start_workflow(calls, (6,)), timeout=60) == list(range(6))
    assert len(taken) == 6
    taken.sort()
    # at most two places in any half second: any three grants span at least the period
    assert all(b - a >= timedelta(seconds=0.5) for a, b in zip(taken, taken[2:], strict=False))


def test_a_run_queue_limits_active_runs(storage_url: str) -> None:
    _spans.clear()
    runtime.configure(storage=storage_url, queues={"ql-jobs": {"concurrency": 2}}, **FAST)
    ids = [start_workflow(job, (i,)) for i in range(8)]
    assert [get_result(i, timeout=60) for i in ids] == list(range(8))
    assert len(_spans) == 8 and _most_at_once(_spans) <= 2
    assert all(get_run(i).admitted_at is not None for i in ids)
