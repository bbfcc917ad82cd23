"""Human-in-the-loop approval with a timeout: a hook raced against a durable sleep.

The workflow asks for approval (a step "sends" the hook's token or URL to a
person), then waits for whichever comes first: the person's answer through
the hook, or the deadline. Here the "person" answers one order and ignores
the other, so one run is approved and one times out.
"""

from __future__ import annotations

import time

import attrs

from pyworkflow import (
    RunStatus,
    create_hook,
    first,
    get_result,
    get_run,
    resume_hook,
    sleep,
    start,
    step,
    workflow,
)


@attrs.frozen
class Decision:
    approved: bool
    by: str


@step()
async def request_approval(order_id: str, token: str) -> None:
    print(f"approval requested for {order_id}: POST /hooks/{token}")


@step()
async def ship(order_id: str) -> str:
    return f"{order_id} shipped"


@workflow
async def approve_order(order_id: str, deadline: str) -> str:
    async with create_hook(token=f"approval:{order_id}", schema=Decision) as hook:
        await request_approval(order_id, hook.token)
        winner, decision = await first(hook, sleep(deadline))
    if winner == 1:
        return f"{order_id}: no answer before the deadline"
    if not decision.approved:
        return f"{order_id}: rejected by {decision.by}"
    return f"{await ship(order_id)} (approved by {decision.by})"


def wait_until_suspended(run_id: str) -> None:
    while get_run(run_id).status != RunStatus.SUSPENDED:
        time.sleep(0.05)


if __name__ == "__main__":
    answered = start(approve_order, "order-1", "1h")
    ignored = start(approve_order, "order-2", "2s")
    wait_until_suspended(answered)
    resume_hook("approval:order-1", {"approved": True, "by": "ana"})  # the person answers
    print(get_result(answered, timeout=60))
    print(get_result(ignored, timeout=60))
