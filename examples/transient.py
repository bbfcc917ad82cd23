"""A transient workflow: a request-scoped quote, run in-process with no storage writes.

``@workflow(durable=False)`` runs the same workflow code as a durable one, but
``execute()`` runs it right here and returns its result: steps still retry and
run in parallel, sleeps are real sleeps, and nothing is written anywhere (no
run to look up afterwards, nothing to resume after a crash). See docs/transient.md.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pyworkflow
from pyworkflow import get_step_context, sleep, step, workflow

PRICES = {"book": 12.0, "pen": 1.5, "lamp": 22.5}
attempts: dict[str, int] = {}


@step()
async def price(item: str) -> float:
    return PRICES[item]


@step(max_retries=3, retry_delay="fixed", retry_base=0.01)
async def exchange_rate(currency: str) -> tuple[float, int]:
    attempt = get_step_context().attempt
    attempts[currency] = attempt
    if attempt < 2:  # the rates service fails once: the step is retried after 10 ms
        raise ConnectionError("rates service unavailable")
    return 1.0, attempt


@workflow(durable=False)
async def quote(items: list[str], currency: str) -> tuple[float, int]:
    prices = await asyncio.gather(*(price(item) for item in items))  # in parallel
    await sleep(0.01)  # a real sleep: nothing is recorded, the run does not suspend
    rate, attempt = await exchange_rate(currency)
    return round(sum(prices) * rate, 2), attempt


def main() -> None:
    total, attempt = pyworkflow.execute(quote, ["book", "pen", "lamp"], "EUR")
    print(f"quote for 3 items: {total} (priced after {attempt} attempts)")
    print(f"storage opened by the transient runs: {Path('.pyworkflow').exists()}")
    print(f"runs stored: {len(pyworkflow.list_runs().runs)}")


if __name__ == "__main__":
    main()
