"""A subscription with a free trial: a 30-day sleep, a plan choice with a deadline, a card charge.

The workflow welcomes the customer, lets the 30-day trial run out (a durable
sleep), then asks the customer to pick a plan through a hook and waits at most
3 days for the answer (``first(hook, sleep("3d"))``). No answer, or "no
thanks", ends the trial; a plan is charged to the customer's card, a call to a
payment API that is retried with exponential back-off (1 min, 2 min, 4 min,
...) while it fails.

Run it for real (trial and deadline shortened to seconds: the defaults would
take a month):

    python examples/subscriptions/app.py

Test it in well under a second with the harness (the defaults, 30 days and all):

    python -m pytest -q examples/subscriptions
"""

from __future__ import annotations

import time

import attrs

from pyworkflow import (
    create_hook,
    first,
    get_events,
    get_result,
    now,
    resume_hook,
    sleep,
    start,
    step,
    workflow,
)

#: Monthly price of each plan, in cents.
PRICES = {"basic": 900, "pro": 2900}


@attrs.frozen
class PlanChoice:
    """What the customer answers when the trial ends: a plan, or ``None`` to stop."""

    plan: str | None


@step()
async def send_email(customer: str, text: str) -> None:
    """Send the customer an email (here: print it)."""
    print(f"to {customer}: {text}")


@step(max_retries=6, retry_delay="exponential", retry_base="1m", max_retry_delay="1h")
async def charge_card(customer: str, amount: int) -> str:
    """Charge the customer's card; returns the payment id.

    A real implementation calls the payment API with the step's idempotency
    key (``get_step_context().idempotency_key``), so a retried charge is never
    taken twice; a failed attempt is retried after 1, 2, 4, 8, ... minutes.
    """
    return f"pay-{customer}-{amount}"


@workflow
async def subscription(customer: str, trial: str = "30d", decide_within: str = "3d") -> dict:
    """A customer's free trial and, if they pick a plan, its first payment."""
    await send_email(customer, f"welcome! your free trial ends in {trial}")
    await sleep(trial)
    trial_ended_at = now()

    async with create_hook(token=f"plan:{customer}", schema=PlanChoice) as hook:
        await send_email(customer, f"your trial is over: choose a plan at /hooks/{hook.token}")
        index, choice = await first(hook, sleep(decide_within))

    if index == 1 or choice.plan is None:
        reason = "no answer" if index == 1 else "declined"
        await send_email(customer, "your trial has ended; come back any time")
        return {"status": "ended", "reason": reason, "trial_ended_at": trial_ended_at.isoformat()}

    payment = await charge_card(customer, PRICES[choice.plan])
    await send_email(customer, f"thanks! you are on {choice.plan} ({payment})")
    return {
        "status": "active",
        "plan": choice.plan,
        "payment": payment,
        "trial_ended_at": trial_ended_at.isoformat(),
        "charged_at": now().isoformat(),
    }


def wait_for_hook(run_id: str, token: str) -> None:
    """Poll until the run has created hook ``token`` (its trial is over)."""
    while not any(e.payload.get("token") == token for e in get_events(run_id)):
        time.sleep(0.05)


if __name__ == "__main__":
    ana = start(subscription, "ana", "1s", "1h")  # ana picks a plan
    bob = start(subscription, "bob", "1s", "2s")  # bob never answers
    wait_for_hook(ana, "plan:ana")
    resume_hook("plan:ana", {"plan": "pro"})
    print(get_result(ana, timeout=60))
    print(get_result(bob, timeout=60))
