"""Step queues: a step declared with ``@step(queue="openai")`` holds a place of that queue
while an attempt runs (docs/queues.md).

The place is taken in storage (``Storage.acquire_step_slot``), so the queue's
``concurrency`` and ``rate`` (from ``[tool.pyworkflow.queues.openai]``) hold
across every worker process. An attempt waits for a place before its body
runs (the step's ``timeout`` starts once it has one), keeps it renewed while
the body runs, and gives it back when the body ends; a worker that dies
holding one loses it when its lease (``lease_seconds``) runs out.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from datetime import timedelta
from typing import TYPE_CHECKING

import anyio
from loguru import logger

from pyworkflow.clock import SYSTEM_CLOCK
from pyworkflow.models import QueueLimits, utcnow

if TYPE_CHECKING:
    from pyworkflow.runtime import Runtime
    from pyworkflow.step import StepDefinition

__all__ = ["place_for", "step_place"]

#: First and longest pause between two tries for a place (seconds of real time).
_FIRST_WAIT, _LONGEST_WAIT = 0.02, 1.0


def needs_place(runtime: Runtime, definition: StepDefinition) -> bool:
    """Whether attempts of ``definition`` must hold a place: its queue has limits."""
    queue = definition.queue
    if queue is None:
        return False
    config = runtime.queue_configs.get(queue)
    return config is not None and (config.concurrency is not None or config.rate is not None)


def place_for(
    runtime: Runtime, definition: StepDefinition, run_id: str, step_id: str, attempt: int
) -> Callable[[], AbstractAsyncContextManager[None]] | None:
    """The place an attempt must hold while it runs (``run_step_attempt(place=...)``).

    None when the step has no queue, or its queue no concurrency or rate.
    """
    if not needs_place(runtime, definition):
        return None
    return functools.partial(step_place, runtime, definition, run_id, step_id, attempt)


@contextlib.asynccontextmanager
async def step_place(
    runtime: Runtime, definition: StepDefinition, run_id: str, step_id: str, attempt: int
) -> AsyncIterator[None]:
    """Hold a place of the step's queue for the attempt while the ``async with`` body runs."""
    queue = definition.queue
    config = runtime.queue_configs.get(queue) if queue is not None else None
    if queue is None or config is None:
        yield
        return
    # under the test harness time stands still while steps run: a rate could never free up
    virtual = runtime.clock is not SYSTEM_CLOCK
    limits = QueueLimits(concurrency=config.concurrency, rate=None if virtual else config.rate)
    holder = f"{run_id}:{step_id}:{attempt}"
    lease = timedelta(seconds=runtime.settings.lease_seconds)
    storage = runtime.storage
    log = logger.bind(run_id=run_id, step_id=step_id, queue=queue)
    wait = _FIRST_WAIT
    waited = False
    while not await storage.acquire_step_slot(queue, holder, limits, utcnow(), lease):
        if not waited:
            log.debug("step waits for a place in its queue")
            waited = True
        await anyio.sleep(wait)
        wait = min(wait * 2, _LONGEST_WAIT, runtime.settings.poll_interval)
    if waited:
        log.debug("step got a place in its queue")

    async def keep() -> None:
        while True:
            await anyio.sleep(lease.total_seconds() / 3)
            try:
                await storage.renew_step_slot(queue, holder, utcnow() + lease)
            except Exception:  # the place lapses after its lease; the limit may be exceeded
                log.exception("could not renew the step's place in its queue")

    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(keep)
            try:
                yield
            finally:
                tg.cancel_scope.cancel()
    finally:
        with anyio.CancelScope(shield=True):
            try:
                await storage.release_step_slot(queue, holder)
            except Exception:  # it lapses when its lease runs out
                log.exception("could not give the step's place back")
