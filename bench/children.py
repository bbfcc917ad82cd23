"""A fan-out of 1,000 child workflows: time and peak memory, against peers in the same run.

Run: ``python bench/children.py [--children 1000] [--storage memory|sqlite|both]``.

Each workload runs in a fresh subprocess (so peak RSS is its own), on the
local executor with its embedded worker:

- ``children``: one parent ``asyncio.gather``-ing N child workflows (each
  child runs one step), awaited with ``get_result``;
- ``runs`` (the peer): the same N workflows started as N top-level runs by
  the client and awaited: the same work without a parent;
- ``steps`` (a second peer): one workflow gathering N steps.

Printed: seconds and peak RSS per workload, and the ratios children/runs
and children/steps. Figures move from day to day; only the ratios of one
run compare.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from pyworkflow import get_result, runtime, start, step, workflow


@step()
async def bench_child_step(n: int) -> int:
    return n + 1


@workflow(name="bench_child")
async def bench_child(n: int) -> int:
    return await bench_child_step(n)


@workflow(name="bench_fanout_parent")
async def bench_fanout_parent(count: int) -> int:
    return sum(await asyncio.gather(*(bench_child(i) for i in range(count))))


@workflow(name="bench_fanout_steps")
async def bench_fanout_steps(count: int) -> int:
    return sum(await asyncio.gather(*(bench_child_step(i) for i in range(count))))


def _side(kind: str, count: int, storage: str) -> None:
    """One workload in this process; prints its seconds and peak RSS as JSON."""
    runtime.configure(storage=storage, poll_interval=0.05)
    expected = sum(range(1, count + 1))
    began = time.perf_counter()
    if kind == "children":
        total = get_result(start(bench_fanout_parent, count), timeout=1800)
    elif kind == "steps":
        total = get_result(start(bench_fanout_steps, count), timeout=1800)
    else:
        ids = [start(bench_child, i) for i in range(count)]
        total = sum(get_result(run_id, timeout=1800) for run_id in ids)
    seconds = time.perf_counter() - began
    assert total == expected, (total, expected)
    runtime.reset()
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"seconds": seconds, "peak_mb": peak_kb / 1024}))


def _measure(kind: str, count: int, storage: str) -> dict[str, float]:
    out = subprocess.run(
        [sys.executable, __file__, "--side", kind, "--children", str(count), "--url", storage],
        capture_output=True,
        text=True,
        timeout=3600,
        check=True,
    )
    result: dict[str, float] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--children", type=int, default=1000)
    parser.add_argument("--storage", choices=("memory", "sqlite", "both"), default="both")
    parser.add_argument("--side", help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.side:
        _side(args.side, args.children, args.url)
        return
    stores = ("memory", "sqlite") if args.storage == "both" else (args.storage,)
    with tempfile.TemporaryDirectory() as tmp:
        for label in stores:
            figures: dict[str, dict[str, float]] = {}
            for kind in ("children", "runs", "steps"):
                url = "memory://" if label == "memory" else f"sqlite:///{Path(tmp) / kind}.db"
                figures[kind] = _measure(kind, args.children, url)
            kids, runs, steps = figures["children"], figures["runs"], figures["steps"]
            print(
                f"{label}, {args.children}: children {kids['seconds']:.2f} s "
                f"{kids['peak_mb']:.0f} MB; {args.children} top-level runs "
                f"{runs['seconds']:.2f} s {runs['peak_mb']:.0f} MB; one run gathering "
                f"{args.children} steps {steps['seconds']:.2f} s {steps['peak_mb']:.0f} MB. "
                f"children/runs: time {kids['seconds'] / runs['seconds']:.2f}x, "
                f"memory {kids['peak_mb'] / runs['peak_mb']:.2f}x; children/steps: time "
                f"{kids['seconds'] / steps['seconds']:.2f}x"
            )


if __name__ == "__main__":
    main()
