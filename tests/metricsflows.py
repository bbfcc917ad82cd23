"""Workflows of the metrics tests (tests/test_metrics.py; imported by worker subprocesses too).

The known set of runs :func:`start_known_runs` starts, and what it should count:
3 completed (2 ``mf_ok``, 1 ``mf_retry`` whose step is retried twice), 3 failed
(2 ``mf_bad``, 1 ``mf_slow`` by its timeout), 1 cancelled (``mf_wait``).
"""

from __future__ import annotations

import time
from typing import Any

import pyworkflow
from pyworkflow import get_step_context, sleep, step, workflow


@step()
async def mf_add(value: int) -> int:
    return value + 1


@step(max_retries=2, retry_base="10ms", jitter=0.0)
async def mf_flaky() -> str:
    if get_step_context().attempt < 3:
        raise ValueError(f"attempt {get_step_context().attempt} fails")
    return "third time"


@step(max_retries=0)
async def mf_boom() -> None:
    raise RuntimeError("boom")


@workflow()
async def mf_ok(value: int) -> int:
    return await mf_add(value)


@workflow()
async def mf_retry() -> str:
    return await mf_flaky()


@workflow()
async def mf_bad() -> None:
    await mf_boom()


@workflow()
async def mf_wait() -> None:
    await sleep("1h")


@workflow(timeout="300ms")
async def mf_slow() -> None:
    await sleep("1h")


def start_known_runs() -> dict[str, Any]:
    """Start the known set, wait for every run's end; the run ids by kind."""
    ok = [pyworkflow.start(mf_ok, i) for i in range(2)]
    retry = pyworkflow.start(mf_retry)
    bad = [pyworkflow.start(mf_bad) for _ in range(2)]
    slow = pyworkflow.start(mf_slow)
    waiting = pyworkflow.start(mf_wait)
    deadline = time.monotonic() + 60
    while pyworkflow.get_run(waiting).status != pyworkflow.RunStatus.SUSPENDED:
        assert time.monotonic() < deadline, "mf_wait did not suspend"
        time.sleep(0.02)
    pyworkflow.cancel(waiting)
    ended = [*ok, retry, *bad, slow, waiting]
    for run_id in ended:
        while not pyworkflow.get_run(run_id).status.is_terminal:
            assert time.monotonic() < deadline, f"run {run_id} did not end"
            time.sleep(0.02)
    return {"ok": ok, "retry": retry, "bad": bad, "slow": slow, "wait": waiting, "all": ended}
