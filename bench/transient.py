"""Per-step cost of a transient run against a durable one, on the same workflow, in one run.

Run: ``python bench/transient.py [--steps 10 100] [--repeat 30]``. For each
workflow size it runs the same sequential workflow (one ``@step`` per
iteration) four ways and prints µs per step and ratios:

* **durable**: ``start`` + ``get_result`` on the default storage (SQLite file,
  WAL, in a temporary directory) and the ``local`` executor;
* **transient (async)**: ``await aexecute_workflow(wf, durable=False)`` in the
  caller's event loop: no storage, no serialization;
* **transient (sync)**: ``execute_workflow(wf, durable=False)`` from sync code,
  which pays for an event loop of its own per call;
* **bare await**: awaiting the step function's body directly, the floor.

Each figure is the best of ``--repeat`` runs' mean per-step time (after a
warm-up), so the ratios compare like with like on this machine today; the
absolute values move from day to day.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time

import pyworkflow
from pyworkflow import runtime, step, workflow
from pyworkflow.client import aexecute_workflow, execute_workflow


@step()
async def inc(value: int) -> int:
    return value + 1


@workflow(name="bench_transient_steps")
async def steps(n: int) -> int:
    value = 0
    for _ in range(n):
        value = await inc(value)
    return value


def _best(samples: list[float], n: int) -> float:
    return min(samples) / n * 1e6


def durable_us(n: int, repeat: int) -> float:
    execute_workflow(steps, (3,))  # warm up: the runtime, the schema, the first run
    samples = []
    for _ in range(repeat):
        began = time.perf_counter()
        assert execute_workflow(steps, (n,)) == n
        samples.append(time.perf_counter() - began)
    return _best(samples, n)


def transient_async_us(n: int, repeat: int) -> float:
    async def measure() -> list[float]:
        await aexecute_workflow(steps, (3,), durable=False)
        samples = []
        for _ in range(repeat):
            began = time.perf_counter()
            assert await aexecute_workflow(steps, (n,), durable=False) == n
            samples.append(time.perf_counter() - began)
        return samples

    return _best(asyncio.run(measure()), n)


def transient_sync_us(n: int, repeat: int) -> float:
    execute_workflow(steps, (3,), durable=False)
    samples = []
    for _ in range(repeat):
        began = time.perf_counter()
        assert execute_workflow(steps, (n,), durable=False) == n
        samples.append(time.perf_counter() - began)
    return _best(samples, n)


def bare_us(n: int, repeat: int) -> float:
    async def measure() -> list[float]:
        samples = []
        for _ in range(repeat):
            began = time.perf_counter()
            value = 0
            for _ in range(n):
                value = await inc.fn(value)
            samples.append(time.perf_counter() - began)
        return samples

    return _best(asyncio.run(measure()), n)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, nargs="+", default=[10, 100])
    parser.add_argument("--repeat", type=int, default=30)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        runtime.reset()
        pyworkflow.configure(storage=f"sqlite:///{tmp}/bench.db", executor="local")
        try:
            for n in args.steps:
                durable = durable_us(n, args.repeat)
                transient = transient_async_us(n, args.repeat)
                sync = transient_sync_us(n, args.repeat)
                bare = bare_us(n, args.repeat)
                print(f"{n}-step workflow (us per step, best of {args.repeat}):")
                print(f"  durable (sqlite, local executor): {durable:9.1f}")
                print(f"  transient, awaited in the loop:    {transient:9.1f}")
                print(f"  transient, sync execute():         {sync:9.1f}")
                print(f"  bare await of the step body:       {bare:9.2f}")
                print(
                    f"  durable / transient = {durable / transient:.0f}x; "
                    f"durable / transient sync = {durable / sync:.0f}x; "
                    f"transient / bare await = {transient / bare:.0f}x"
                )
        finally:
            runtime.reset()


if __name__ == "__main__":
    main()
