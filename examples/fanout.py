"""Child workflows: a parent fans out one child run per item and gathers the results.

``await charge(item)`` inside a workflow starts a child run of the
``@workflow`` function ``charge`` and waits for its result; under
``asyncio.gather`` the children run concurrently, each with its own run id,
its own event log and its parent's id. A child that fails raises
``ChildWorkflowError`` in the parent, with the child's error as its cause.
``start_child`` returns a handle instead (``run_id``, ``await handle``,
``await handle.cancel()``) and takes a parent-close policy. See docs/children.md.
"""

from __future__ import annotations

import asyncio

from pyworkflow import (
    ChildWorkflowError,
    FatalError,
    get_result,
    list_runs,
    start,
    start_child,
    step,
    workflow,
)


@step()
async def charge_card(item: str, cents: int) -> str:
    if cents <= 0:
        raise FatalError(f"nothing to charge for {item}")  # no retry: it would fail again
    return f"{item}:{cents}"


@workflow
async def charge(item: str, cents: int) -> str:
    """A child: one charge, in a run of its own."""
    return await charge_card(item, cents)


@workflow
async def checkout(cart: dict[str, int]) -> dict[str, object]:
    """The parent: one child per item, gathered; a failed child is reported, not fatal."""
    receipts = await asyncio.gather(
        *(charge(item, cents) for item, cents in cart.items()), return_exceptions=True
    )
    charged = [r for r in receipts if isinstance(r, str)]
    failed = [str(e.__cause__) for e in receipts if isinstance(e, ChildWorkflowError)]
    audit = start_child(charge, "audit-fee", 1, parent_close_policy="abandon")
    return {"charged": charged, "failed": failed, "audit": await audit}


if __name__ == "__main__":
    run_id = start(checkout, {"book": 1200, "pen": 150, "gift": 0})
    result = get_result(run_id, timeout=60)
    children = list_runs(parent=run_id).runs
    print(f"charged: {', '.join(result['charged'])}")
    print(f"failed: {'; '.join(result['failed'])}")
    print(f"audit: {result['audit']}")
    print(f"{len(children)} child runs of {run_id}")
