"""Per-step overhead of a 1,000-step sequential workflow, against a bare await and raw SQLite.

Run: ``python bench/step_overhead.py [--steps 1000] [--runs 20]``. Prints, for SQLite
(file, WAL, synchronous FULL and NORMAL) and memory storage: per-step time,
overhead over a bare ``await`` of the same function, SQLite commits per step,
and the raw cost of one INSERT+COMMIT of a small row on the same file and
settings, measured in the same run; then the SQLite part of a step (SQLite's
per-step time minus memory's) against one raw commit.

With ``--runs N`` (0 to skip) it also runs N workflows at once (``--steps``
divided among them) and prints µs per step of throughput (first run created
to last run completed, over all steps) for each storage, SQLite both as
configured (writes inline on the event loop when its writer thread is idle)
and with every call through its threads (``inline=False``), so the cost of
blocking the loop for a commit is weighed against the thread hop.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sqlite3
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

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


def concurrent_runs_us(storage: str, runs: int, steps: int, **settings: object) -> float:
    """µs per step of throughput of ``runs`` workflows of ``steps`` steps started at once."""
    runtime.reset()
    pyworkflow.configure(storage=storage, poll_interval=0.01, **settings)
    pyworkflow.get_result(pyworkflow.start(many_steps, 3), timeout=60)  # warm up
    run_ids = [pyworkflow.start(many_steps, steps) for _ in range(runs)]
    for run_id in run_ids:
        assert pyworkflow.get_result(run_id, timeout=600) == steps
    infos = [pyworkflow.get_run(run_id) for run_id in run_ids]
    began = min(info.created_at for info in infos)
    ended = max(info.completed_at or info.updated_at for info in infos)
    runtime.reset()
    return (ended - began).total_seconds() / (runs * steps) * 1e6


@contextlib.contextmanager
def sqlite_threads_only() -> Iterator[None]:
    """SQLite storages created meanwhile make every call through their threads."""
    from pyworkflow.storage import sqlite as module

    original = module.SQLiteStorage

    class ThreadsOnly(original):  # type: ignore[misc, valid-type]
        def __init__(self, url: str, **options: Any) -> None:
            super().__init__(url, **options, inline=False)

    module.SQLiteStorage = ThreadsOnly  # type: ignore[misc]
    try:
        yield
    finally:
        module.SQLiteStorage = original  # type: ignore[misc]


def concurrent_table(tmp: str, runs: int, steps: int) -> None:
    """Print the concurrent-runs figures (see the module docstring)."""
    each = max(1, steps // runs)
    print(f"{runs} workflows at once, {each} steps each (us per step of throughput):")
    for sync in ("FULL", "NORMAL"):
        inline = concurrent_runs_us(
            f"sqlite:///{tmp}/conc-{sync}.db", runs, each, sqlite_synchronous=sync
        )
        with sqlite_threads_only():
            threads = concurrent_runs_us(
                f"sqlite:///{tmp}/conc-threads-{sync}.db", runs, each, sqlite_synchronous=sync
            )
        single = run_workflow(f"sqlite:///{tmp}/single-{sync}.db", steps, sqlite_synchronous=sync)
        with sqlite_threads_only():
            single_threads = run_workflow(
                f"sqlite:///{tmp}/single-threads-{sync}.db", steps, sqlite_synchronous=sync
            )
        print(
            f"  sqlite synchronous={sync}: {runs} runs {inline:.1f} (threads only "
            f"{threads:.1f}); 1 run {single[0]:.1f} (threads only {single_threads[0]:.1f})"
        )
    print(f"  memory: {runs} runs {concurrent_runs_us('memory://', runs, each):.1f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=20, help="workflows at once (0: skip)")
    args = parser.parse_args()
    n = args.steps
    bare = bare_await_us(n)
    print(f"bare await of the step function: {bare:.2f} us per call")
    sqlite_us: dict[str, tuple[float, float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for sync in ("FULL", "NORMAL"):
            raw = raw_commit_us(Path(tmp) / f"raw-{sync}.db", sync)
            per_step, commits = run_workflow(
                f"sqlite:///{tmp}/bench-{sync}.db", n, sqlite_synchronous=sync
            )
            per_commit = (commits or 0) / n
            overhead = per_step - bare
            budget = per_commit * raw if per_commit else raw
            sqlite_us[sync] = (per_step, budget)
            print(
                f"sqlite synchronous={sync}: {per_step:.1f} us/step, overhead {overhead:.1f} us "
                f"({per_step / bare:.0f}x a bare await); {per_commit:.2f} commits/step; "
                f"raw INSERT+COMMIT {raw:.1f} us; overhead / (commits x raw) = "
                f"{overhead / budget:.2f} (target <= 3)"
            )
        memory, _ = run_workflow("memory://", n)
        print(
            f"memory: {memory:.1f} us/step, overhead {memory - bare:.1f} us "
            f"({memory / bare:.0f}x a bare await)"
        )
        for sync, (per_step, budget) in sqlite_us.items():
            part = per_step - memory
            print(
                f"sqlite synchronous={sync}, its part of a step (sqlite - memory): {part:.1f} us "
                f"= {part / budget:.2f}x (commits per step x raw commit)"
            )
        if args.runs > 0:
            concurrent_table(tmp, args.runs, n)


if __name__ == "__main__":
    main()
