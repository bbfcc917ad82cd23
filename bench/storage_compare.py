"""Steps per second of one workload on every storage backend, measured in one run.

Run: ``python bench/storage_compare.py [--runs 200] [--processes 4]``.

The workload is ``--runs`` runs of a 5-step workflow
(:mod:`pyworkflow.testing.loadflows`), all started at once:

- in-process: one process with its embedded worker (concurrency 16), on
  memory, SQLite (WAL, synchronous FULL), File (JSONL, fsync), Redis (AOF
  ``appendfsync always``) and PostgreSQL (fsync on, synchronous commit):
  every backend in its durable default;
- with ``--processes N`` also N ``pyworkflow worker`` processes sharing
  SQLite, Redis and PostgreSQL (memory cannot be shared; File is left out
  because its per-run lock files are meant for one host's few workers).

Redis and PostgreSQL run as local servers the benchmark starts and stops
(``redis-server`` and PostgreSQL from the Debian packages must be installed,
and the ``pyworkflow-redis`` and ``pyworkflow-postgres`` plugins).
Figures are steps/s and the ratio to the memory backend of the same run.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import anyio

import pyworkflow
from pyworkflow import runtime
from pyworkflow.testing import loadflows
from pyworkflow.testing.servers import PostgresServer, RedisServer
from pyworkflow.testing.workers import drain


@contextmanager
def redis_url(tmp: Path) -> Iterator[str]:
    server = RedisServer(tmp / "redis", aof=True)
    try:
        yield f"{server.url}?prefix=bench"
    finally:
        server.stop()


@contextmanager
def postgres_url(tmp: Path) -> Iterator[str]:
    server = PostgresServer(fsync=True)
    try:
        yield server.url
    finally:
        runtime.reset()
        server.destroy()


def backends(tmp: Path) -> dict[str, Callable[[], Iterator[str]]]:
    """Name -> a context manager yielding a fresh storage URL."""

    @contextmanager
    def fixed(url: str) -> Iterator[str]:
        yield url

    return {
        "memory": lambda: fixed("memory://"),
        "sqlite": lambda: fixed(f"sqlite:///{tmp / 'bench.db'}"),
        "file": lambda: fixed(f"file://{tmp / 'file-store'}"),
        "redis": lambda: redis_url(tmp),
        "postgres": lambda: postgres_url(tmp),
    }


async def _start_and_wait(runs: int) -> None:
    """Start ``runs`` runs concurrently (as many clients would), then await every result."""
    ids: dict[int, str] = {}

    async def start(i: int) -> None:
        ids[i] = await pyworkflow.astart(loadflows.load_five_steps, i)

    async with anyio.create_task_group() as tg:
        for i in range(runs):
            tg.start_soon(start, i)
    for i, run_id in ids.items():
        assert await pyworkflow.aget_result(run_id, timeout=600) == i + loadflows.STEPS


def in_process(url: str, runs: int) -> float:
    """Steps/s of ``runs`` 5-step runs on an embedded worker; 10 runs before warm it up.

    The runs are started concurrently on the runtime's loop, so the figure
    is the engine's and the backend's, not one client's round trips.
    """
    runtime.reset()
    pyworkflow.configure(storage=url, poll_interval=0.05, worker_concurrency=16)
    try:
        warm = [pyworkflow.start(loadflows.load_five_steps, i) for i in range(10)]
        for run_id in warm:
            pyworkflow.get_result(run_id, timeout=120)
        began = time.perf_counter()
        runtime.get_runtime().call(_start_and_wait, runs)
        return runs * loadflows.STEPS / (time.perf_counter() - began)
    finally:
        runtime.reset()


def in_processes(url: str, runs: int, processes: int, tmp: Path) -> float:
    """Steps/s of ``runs`` 5-step runs on ``processes`` worker processes."""
    runtime.reset()
    try:
        report = drain(url, tmp, workers=processes, runs=runs)
    finally:
        runtime.reset()
    if report.problems:
        raise AssertionError(f"{url}: {report.problems[:5]}")
    return runs * loadflows.STEPS / report.seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=200, help="runs of 5 steps per backend")
    parser.add_argument("--processes", type=int, default=0, help="also N worker processes")
    parser.add_argument(
        "--backends",
        default="memory,sqlite,file,redis,postgres",
        help="comma-separated subset (memory always runs: it is the baseline)",
    )
    args = parser.parse_args()
    chosen = {"memory", *args.backends.split(",")}
    print(f"workload: {args.runs} runs x {loadflows.STEPS} steps, started at once")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        figures: dict[str, float] = {}
        for name, url_of in backends(root).items():
            if name not in chosen:
                continue
            with url_of() as url:
                figures[name] = in_process(url, args.runs)
            base = figures["memory"]
            print(
                f"  in-process  {name:<9} {figures[name]:8.0f} steps/s  "
                f"({figures[name] / base:.2f}x memory)"
            )
        if args.processes:
            shared = {
                k: v
                for k, v in backends(root).items()
                if k in ("sqlite", "redis", "postgres") and k in chosen
            }
            (root / "procs").mkdir()
            for name, url_of in shared.items():
                with url_of() as url:
                    if name == "sqlite":
                        url = f"sqlite:///{root / 'procs.db'}"
                    rate = in_processes(url, args.runs, args.processes, root / "procs")
                print(
                    f"  {args.processes} processes {name:<9} {rate:8.0f} steps/s  "
                    f"({rate / figures['memory']:.2f}x in-process memory)"
                )


if __name__ == "__main__":
    main()
