"""Workflows the Celery tests start; workers import this module (``modules``).

The first ones are the seed README's Celery examples with shortened sleeps.
Steps that must be counted append a line to a file the test passes in.
"""

from __future__ import annotations

import asyncio
import os
import socket
import time
from pathlib import Path

import anyio

from pyworkflow import (
    FatalError,
    RetryableError,
    Step,
    Workflow,
    get_step_context,
    sleep,
    step,
    workflow,
)


def mark(path: str, name: str) -> None:
    """Record one execution of a step body: name, attempt, pid."""
    attempt = get_step_context().attempt
    with open(path, "a") as fh:
        fh.write(f"{name} {attempt} {os.getpid()} {socket.gethostname()}\n")


def executions(path: str | Path) -> list[str]:
    try:
        return [line.split()[0] for line in Path(path).read_text().splitlines()]
    except FileNotFoundError:
        return []


# ----- seed: basic example -----


@step()
async def process_item(item_id: int) -> str:
    # This runs on any available Celery worker
    return f"Processed {item_id}"


@workflow
async def my_workflow(item_id: int, pause: str = "5m") -> str:
    result = await process_item(item_id)
    await sleep(pause)  # the seed sleeps 5 minutes; tests pass a shorter pause
    return result


# ----- seed: basic example, OOP API -----


class GreetWorkflow(Workflow):
    name = "greet_user"

    async def run(self, name: str) -> str:
        message = await CreateGreetingStep()(name)
        await SendMessageStep()(message)
        return message


class CreateGreetingStep(Step):
    async def execute(self, name: str) -> str:
        return f"Hello, {name}!"


class SendMessageStep(Step):
    async def execute(self, message: str) -> bool:
        return True


# ----- seed: sleep and delays (onboarding) -----


@step()
async def send_welcome_email(user_id: str) -> bool:
    return True


@step()
async def send_tips_email(user_id: str) -> bool:
    return True


@step()
async def send_feedback_request(user_id: str) -> bool:
    return True


@workflow
async def onboarding_flow(user_id: str, first: str = "1d", second: str = "3d") -> str:
    await send_welcome_email(user_id)
    await sleep(first)  # the seed sleeps 1 day
    await send_tips_email(user_id)
    await sleep(second)  # the seed sleeps 3 more days
    await send_feedback_request(user_id)
    return f"onboarded {user_id}"


# ----- seed: error handling and retries -----


@step(max_retries=5, retry_delay="exponential", retry_base="0.2s")
async def call_external_api(url: str, log: str) -> dict[str, str]:
    mark(log, "call_external_api")
    attempt = get_step_context().attempt
    if url.endswith("/missing"):
        raise FatalError("Resource not found")  # Don't retry
    if attempt == 1:
        raise RetryableError("Server error", retry_after="0.5s")  # Retry
    if attempt == 2:
        raise RetryableError("Network error")  # Retry with exponential backoff
    return {"url": url, "attempt": str(attempt)}


@workflow
async def fetch_flow(url: str, log: str) -> dict[str, str]:
    return await call_external_api(url, log)


# ----- parallel steps on different workers -----


@step(max_retries=0)
async def meet(label: str, other: str, folder: str) -> str:
    """Mark this step started, then wait (up to 60 s) until ``other`` has started too.

    Two of these under ``gather`` finish only if they run at the same time: run
    one after the other, the first would wait for a step that cannot start, and
    fail. So parallelism is shown by construction, not by a wall-time bound.
    """
    Path(folder, label).touch()
    with anyio.fail_after(60):
        while not Path(folder, other).exists():
            await anyio.sleep(0.02)
    return label


@workflow
async def parallel_flow(folder: str) -> list[str]:
    return list(await asyncio.gather(meet("a", "b", folder), meet("b", "a", folder)))


# ----- crash recovery -----


@step()
async def quick(label: str, log: str) -> str:
    mark(log, label)
    return label


@step()
def slow_record(log: str) -> str:
    mark(log, "slow")
    time.sleep(3)
    return "slow done"


@workflow
async def crash_flow(log: str) -> list[str]:
    first = await quick("first", log)
    middle = await slow_record(log)
    last = await quick("last", log)
    return [first, middle, last]


# ----- timers -----


@workflow
async def nap_flow(log: str, pause: str = "3s") -> str:
    await quick("before", log)
    await sleep(pause)
    await quick("after", log)
    return "rested"


# ----- throughput -----


@step()
async def celery_add_one(value: int) -> int:
    return value + 1


@workflow
async def celery_five_steps(value: int) -> int:
    for _ in range(5):
        value = await celery_add_one(value)
    return value
