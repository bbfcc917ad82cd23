"""The seed README's sleep example (user onboarding), with the sleeps shortened."""

from __future__ import annotations

from pyworkflow import get_result, sleep, start, step, workflow


@step()
async def send_welcome_email(user_id: str):
    # Send email logic
    return True


@step()
async def send_tips_email(user_id: str):
    # Send tips logic
    return True


@step()
async def send_feedback_request(user_id: str):
    # Send feedback request
    return True


@workflow
async def onboarding_flow(user_id: str):
    await send_welcome_email(user_id)

    await sleep("1s")  # seed: sleep("1d") - the workflow suspends
    await send_tips_email(user_id)

    await sleep("1s")  # seed: sleep("3d")
    await send_feedback_request(user_id)
    return "onboarded"


if __name__ == "__main__":
    run_id = start(onboarding_flow, "user_123")
    print(get_result(run_id, timeout=60))
