"""Time to resume a run with 1,000 vs 10,000 recorded steps (replay must be linear).

Run: ``python bench/replay_scaling.py``. Each run records N steps, then
sleeps; with no worker running, the bench claims the due run itself and
times one activation: a full replay of N steps plus the final step.
"""

from __future__ import annotations

import tempfile
import time
from datetime import timedelta

import pyworkflow
from pyworkflow import runtime, sleep, step, workflow
from pyworkflow.engine import activate
from pyworkflow.models import utcnow


@step()
async def inc(value: int) -> int:
    return value + 1


@workflow
async def long_history(n: int) -> int:
    value = 0
    for _ in range(n):
        value = await inc(value)
    await sleep("1s")
    return await inc(value)


def resume_seconds(storage: str, n: int) -> float:
    runtime.reset()
    pyworkflow.configure(storage=storage, embedded_worker=False)
    rt = runtime.get_runtime()
    run_id = pyworkflow.start(long_history, n)

    async def activate_due() -> float:
        (run,) = await rt.storage.claim_runs("bench", utcnow(), 1, timedelta(seconds=600))
        began = time.perf_counter()
        await activate(rt, run, "bench")
        return time.perf_counter() - began

    rt.call(activate_due)  # records n steps live, then suspends on the sleep
    assert pyworkflow.get_run(run_id).status == pyworkflow.RunStatus.SUSPENDED
    time.sleep(1.05)
    elapsed = rt.call(activate_due)  # replays n steps, then runs the last one
    assert pyworkflow.get_result(run_id, timeout=5) == n + 1
    runtime.reset()
    return elapsed


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        for label, storage in (("memory", "memory://"), ("sqlite", f"sqlite:///{tmp}/r.db")):
            small = resume_seconds(storage, 1000)
            large = resume_seconds(storage, 10000)
            print(
                f"{label}: resume after 1,000 steps {small * 1e3:.1f} ms, after 10,000 steps "
                f"{large * 1e3:.1f} ms, ratio {large / small:.1f} (linear is about 10)"
            )


if __name__ == "__main__":
    main()
