"""Per-step overhead of a 1,000-step sequential workflow, against a bare await and raw SQLite.

Run: ``python bench/step_overhead.py [--steps 1000]``. Prints, for SQLite
(file, WAL, synchronous FULL and NORMAL) and memory storage: per-step time,
overhead over a bare ``await`` of the same function, SQLite commits per step,
and the raw cost of one INSERT+COMMIT of a small row on the same file and
settings, measured in the same run.
"""

from __future__ import annotations

import argparse
import asyncio
import sqlite3
import tempfile
import time
from pathlib import Path

import pyworkflow
from pyworkflow import runtime, step, workflow


@step()
async def inc(value: int) -> int:
    return value + 1


@workflow
async def many_steps(n: int) -> int:
    value = 0
    for _ in range(n):
        value = await inc(value)
    return value


def bare_await_us(n: int) -> float:
    async def loop() -> float:
        began = time.perf_counter()
        value = 0
        for _ in range(n):
            value = await inc.fn(value)
        return (time.perf_counter() - began) / n * 1e6

    return min(asyncio.run(loop()) for _ in range(5))


def raw_commit_us(path: Path, synchronous: str, n: int = 1000) -> float:
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute(f"PRAGMA synchronous={synchronous}")
    conn.execute("CREATE TABLE IF NOT EXISTS t (id INTEGER PRIMARY KEY, payload TEXT)")
    began = time.perf_counter()
    for i in range(n):
        conn.execute("BEGIN")
        conn.execute("INSERT INTO t (payload) VALUES (?)", (f'{{"result": {i}}}',))
        conn.execute("COMMIT")
    elapsed = time.perf_counter() - began
    conn.close()
    return elapsed / n * 1e6


def run_workflow(storage: str, n: int, **settings: object) -> tuple[float, int | None]:
    runtime.reset()
    pyworkflow.configure(storage=storage, poll_interval=0.01, **settings)
    rt = runtime.get_runtime()
    pyworkflow.get_result(pyworkflow.start(many_steps, 3), timeout=60)  # warm up
    commits_before = getattr(rt.storage, "commit_count", None)
    began = time.perf_counter()
    run_id = pyworkflow.start(many_steps, n)
    assert pyworkflow.get_result(run_id, timeout=600) == n
    completed = pyworkflow.get_run(run_id).completed_at
    created = pyworkflow.get_run(run_id).created_at
    wall = time.perf_counter() - began
    engine_time = (completed - created).total_seconds() if completed else wall
    commits_after = getattr(rt.storage, "commit_count", None)
    commits = None
    if commits_before is not None and commits_after is not None:
        commits = commits_after - commits_before
    runtime.reset()
    return engine_time / n * 1e6, commits


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=1000)
    n = parser.parse_args().steps
    bare = bare_await_us(n)
    print(f"bare await of the step function: {bare:.2f} us per call")
    with tempfile.TemporaryDirectory() as tmp:
        for sync in ("FULL", "NORMAL"):
            raw = raw_commit_us(Path(tmp) / f"raw-{sync}.db", sync)
            per_step, commits = run_workflow(
                f"sqlite:///{tmp}/bench-{sync}.db", n, sqlite_synchronous=sync
            )
            per_commit = (commits or 0) / n
            overhead = per_step - bare
            budget = per_commit * raw if per_commit else raw
            print(
                f"sqlite synchronous={sync}: {per_step:.1f} us/step, overhead {overhead:.1f} us "
                f"({per_step / bare:.0f}x a bare await); {per_commit:.2f} commits/step; "
                f"raw INSERT+COMMIT {raw:.1f} us; overhead / (commits x raw) = "
                f"{overhead / budget:.2f} (target <= 3)"
            )
        per_step, _ = run_workflow("memory://", n)
        print(
            f"memory: {per_step:.1f} us/step, overhead {per_step - bare:.1f} us "
            f"({per_step / bare:.0f}x a bare await)"
        )


if __name__ == "__main__":
    main()
