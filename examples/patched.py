"""Versioning with patched(): change a workflow while runs of it are in flight.

This file plays a deploy in one process: order 1 starts on version 1 of
``checkout`` and waits for approval; then version 2 (same workflow, a discount
step behind ``patched("fix-discount")``) replaces it, order 2 starts on it,
and both are approved. Order 1 replays its log on the new code, where
``patched()`` returns False, so it finishes the old way; order 2 takes the
new branch. See docs/versioning.md for the whole deploy sequence.
"""

from __future__ import annotations

import time

from pyworkflow import (
    RunStatus,
    create_hook,
    get_result,
    get_run,
    patched,
    resume_hook,
    start,
    step,
    workflow,
)


@step()
async def price(order: int) -> int:
    return order * 10


@step()
async def discount(total: int) -> int:
    return total - 5


@step()
async def ship(order: int, total: int) -> str:
    return f"order {order}: shipped for {total}"


def wait_for_approval(run_id: str) -> None:
    while get_run(run_id).status != RunStatus.SUSPENDED:
        time.sleep(0.05)


# ----- version 1, deployed last week -----


@workflow
async def checkout(order: int) -> str:
    total = await price(order)
    await create_hook(token=f"approve:{order}")
    return await ship(order, total)


if __name__ == "__main__":
    old_run = start(checkout, 1)
    wait_for_approval(old_run)  # order 1 waits for approval, on version 1


# ----- version 2, deployed while order 1 waits -----


@workflow  # type: ignore[no-redef]  # the same workflow, redefined: this is the deploy
async def checkout(order: int) -> str:
    fixed = patched("fix-discount")  # False when replaying a run from before the patch
    total = await price(order)
    if fixed:
        total = await discount(total)
    await create_hook(token=f"approve:{order}")
    return await ship(order, total)


if __name__ == "__main__":
    new_run = start(checkout, 2)
    wait_for_approval(new_run)
    resume_hook("approve:1", "ok")
    resume_hook("approve:2", "ok")
    print(get_result(old_run, timeout=60), "(started on version 1: the old branch)")
    print(get_result(new_run, timeout=60), "(started on version 2: the patched branch)")
