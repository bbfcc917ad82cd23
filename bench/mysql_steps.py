"""In-process steps/s on MySQL / MariaDB storage, against raw aiomysql transactions in one run.

Run: ``python bench/mysql_steps.py [--steps 1000] [--workflows 100] [--repeats 3]
[--fsync on|off] [--json]`` (needs ``pip install ./plugins/pyworkflow-mysql``).

Starts its own MariaDB (``mariadbd`` from the Debian ``mariadb-server``
package, as the plugin's tests do) on 127.0.0.1 with a free port and a
throw-away data directory; with ``--fsync on`` (the default) InnoDB flushes its
log at every commit (``innodb_flush_log_at_trx_commit = 1``, the durable
default), with ``off`` once a second.
One process, the embedded worker, the public synchronous API
(``start()`` then ``get_result()``):

- one workflow of ``--steps`` sequential steps: µs per step and steps/s, and
  the CPU time this process spent per step (every thread: the client, the
  runtime's loop, the lease renewer), which the machine's load moves less;
- ``--workflows`` ten-step workflows one after another: workflows/s and steps/s;
- the reference, measured on the same server in the same run: one raw aiomysql
  transaction (``INSERT`` of a small row, ``COMMIT``) on one connection, in µs,
  and how many of them fit in one step's time.

Each figure is the best of ``--repeats`` measurements after a warm-up.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections.abc import Callable
from typing import Any

import pyworkflow
from pyworkflow import runtime, step, workflow
from pyworkflow.testing.servers import MariaDBServer


@step()
async def add_one(value: int) -> int:
    """The step body: ``value + 1``."""
    return value + 1


@workflow
async def chain(n: int) -> int:
    """``n`` sequential steps."""
    value = 0
    for _ in range(n):
        value = await add_one(value)
    return value


def best(repeats: int, measure: Callable[[], float]) -> float:
    """The lowest of ``repeats`` measurements."""
    return min(measure() for _ in range(max(1, repeats)))


def run_to_result(n: int) -> int:
    result: int = pyworkflow.get_result(pyworkflow.start(chain, n), timeout=600)
    return result


def measure_pyworkflow(url: str, steps: int, workflows: int, repeats: int) -> dict[str, float]:
    """µs per step of one long workflow, and seconds per ten-step workflow."""
    runtime.reset()
    pyworkflow.configure(storage=url)
    try:
        for _ in range(3):  # warm-up: runtime, pool, schema, code paths
            run_to_result(10)

        cpu: list[float] = []

        def one_long() -> float:
            began, began_cpu = time.perf_counter(), time.process_time()
            assert run_to_result(steps) == steps
            cpu.append((time.process_time() - began_cpu) / steps * 1e6)
            return (time.perf_counter() - began) / steps * 1e6

        def ten_step_batch() -> float:
            began = time.perf_counter()
            for _ in range(workflows):
                assert run_to_result(10) == 10
            return (time.perf_counter() - began) / workflows

        step_us = best(repeats, one_long)
        ten_step_s = best(repeats, ten_step_batch)
    finally:
        runtime.reset()
    return {
        "step_us": step_us,
        "steps_per_s": 1e6 / step_us,
        "step_cpu_us": min(cpu),
        "ten_step_wps": 1.0 / ten_step_s,
        "ten_step_steps_per_s": 10.0 / ten_step_s,
    }


async def _raw_aiomysql(server: MariaDBServer, n: int) -> float:
    import aiomysql

    conn = await aiomysql.connect(
        host="127.0.0.1", port=server.port, user=server.user, db=server.database
    )
    try:
        async with conn.cursor() as cur:
            await cur.execute("SHOW TABLES LIKE 'bench\\_raw'")
            if not await cur.fetchall():
                await cur.execute(
                    "CREATE TABLE bench_raw "
                    "(id BIGINT AUTO_INCREMENT PRIMARY KEY, payload TEXT) ENGINE=InnoDB"
                )
            insert = "INSERT INTO bench_raw (payload) VALUES (%s)"
            for i in range(50):  # warm-up
                await cur.execute(insert, (f'{{"result": {i}}}',))
                await conn.commit()
            began = time.perf_counter()
            for i in range(n):
                await cur.execute(insert, (f'{{"result": {i}}}',))
                await conn.commit()
            return (time.perf_counter() - began) / n * 1e6
    finally:
        conn.close()


def measure_raw(server: MariaDBServer, repeats: int, n: int = 1000) -> float:
    """µs per raw aiomysql ``INSERT; COMMIT`` on one connection."""
    return best(repeats, lambda: asyncio.run(_raw_aiomysql(server, n)))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--workflows", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--fsync", choices=("on", "off"), default="on")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    server = MariaDBServer(durable=args.fsync == "on")
    try:
        raw_before = measure_raw(server, args.repeats)
        figures: dict[str, Any] = measure_pyworkflow(
            server.url.rsplit("/", 1)[0] + "/bench", args.steps, args.workflows, args.repeats
        )
        raw_after = measure_raw(server, args.repeats)
    finally:
        runtime.reset()
        server.destroy()
    raw = min(raw_before, raw_after)
    figures.update(
        raw_tx_us=raw,
        raw_tx_per_step=figures["step_us"] / raw,
        fsync=args.fsync,
        steps=args.steps,
        workflows=args.workflows,
    )
    if args.json:
        sys.stdout.write(json.dumps(figures) + "\n")
        return 0
    rows = [
        (
            f"1 workflow of {args.steps:,} sequential steps",
            f"{figures['step_us']:,.0f} µs/step",
            f"{figures['steps_per_s']:,.0f} steps/s",
        ),
        (
            "  CPU of this process per step (all its threads)",
            f"{figures['step_cpu_us']:,.0f} µs/step",
            "",
        ),
        (
            f"{args.workflows} workflows of 10 steps, one after another",
            f"{figures['ten_step_wps']:,.1f} workflows/s",
            f"{figures['ten_step_steps_per_s']:,.0f} steps/s",
        ),
        (
            "raw aiomysql INSERT+COMMIT (reference)",
            f"{raw:,.0f} µs",
            f"{figures['raw_tx_per_step']:.1f} raw transactions per step",
        ),
    ]
    sys.stdout.write(f"MySQL / MariaDB storage, in-process, fsync {args.fsync}\n")
    for name, a, b in rows:
        sys.stdout.write(f"  {name:<52} {a:>22} {b:>28}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
