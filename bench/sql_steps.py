"""What ``bench/postgres_steps.py`` and ``bench/mysql_steps.py`` share.

In-process steps/s of PyWorkflow on a SQL server the bench starts itself,
against a raw transaction of the server's own driver in the same run. Each
bench module gives its server, its storage URL and its raw transaction;
:func:`main` does the rest and prints the figures (``--json``: one object).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from typing import Any, Protocol

import pyworkflow
from pyworkflow import runtime, step, workflow


class Server(Protocol):
    """A throw-away database server of :mod:`pyworkflow.testing.servers`."""

    def destroy(self) -> None: ...


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


def main(
    argv: list[str] | None,
    *,
    description: str,
    title: str,
    start_server: Callable[[bool], Any],
    storage_url: Callable[[Any], str],
    raw_transaction_us: Callable[[Any, int], float],
    raw_label: str,
) -> int:
    """Parse the common options, start the server, measure both sides and print them.

    ``start_server(durable)`` starts the server (fsync on or off);
    ``storage_url(server)`` is PyWorkflow's storage URL on it;
    ``raw_transaction_us(server, n)`` times ``n`` raw transactions (µs each).
    """
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--workflows", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--fsync", choices=("on", "off"), default="on")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    server: Server = start_server(args.fsync == "on")

    def raw() -> float:
        return best(args.repeats, lambda: raw_transaction_us(server, 1000))

    try:
        raw_before = raw()
        figures: dict[str, Any] = measure_pyworkflow(
            storage_url(server), args.steps, args.workflows, args.repeats
        )
        raw_after = raw()
    finally:
        runtime.reset()
        server.destroy()
    raw_us = min(raw_before, raw_after)
    figures.update(
        raw_tx_us=raw_us,
        raw_tx_per_step=figures["step_us"] / raw_us,
        fsync=args.fsync,
        steps=args.steps,
        workflows=args.workflows,
    )
    if args.json:
        import json

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
            f"{raw_label} (reference)",
            f"{raw_us:,.0f} µs",
            f"{figures['raw_tx_per_step']:.1f} raw transactions per step",
        ),
    ]
    sys.stdout.write(f"{title}, in-process, fsync {args.fsync}\n")
    for name, a, b in rows:
        sys.stdout.write(f"  {name:<52} {a:>22} {b:>28}\n")
    return 0
