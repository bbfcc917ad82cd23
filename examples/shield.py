"""A trip-booking saga whose compensation runs to completion after a cancellation.

The workflow books a flight and a hotel, then waits (durably) for the trip.
Cancelled meanwhile, it releases both bookings, newest first, inside
``shield()``: the impatient user cancels a second time while the first
release is running, and both releases still complete and are recorded; the
run then ends ``cancelled``. Without the shield, that second cancel would cut
the compensation short, leaving the flight booked.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from pyworkflow import (
    EventType,
    WorkflowCancelledError,
    cancel,
    get_events,
    get_result,
    get_run,
    shield,
    sleep,
    start,
    step,
    workflow,
)


@step()
async def book(kind: str, trip: str) -> str:
    return f"{kind}-{trip}"


@step()
async def release(booking: str) -> str:
    await asyncio.sleep(0.5)  # the provider takes a while
    print(f"released {booking}")
    return booking


@workflow
async def book_trip(trip: str) -> str:
    booked: list[str] = []
    try:
        booked.append(await book("flight", trip))
        booked.append(await book("hotel", trip))
        await sleep("30d")  # until the trip
        return "travelled"
    except asyncio.CancelledError:
        async with shield():  # a second cancel waits for the compensation to finish
            for booking in reversed(booked):
                await release(booking)
        raise


def wait_for(check: Callable[[], bool]) -> None:
    while not check():
        time.sleep(0.05)


def logged(run_id: str, kind: EventType, name: str) -> bool:
    return any(e.type == kind and e.payload.get("name") == name for e in get_events(run_id))


if __name__ == "__main__":
    run_id = start(book_trip, "rome")
    wait_for(lambda: logged(run_id, EventType.WAIT_CREATED, "sleep"))  # booked, waiting
    cancel(run_id, reason="plans changed")
    wait_for(lambda: logged(run_id, EventType.STEP_STARTED, "release"))
    cancel(run_id, reason="really, cancel it")  # while the compensation runs
    try:
        get_result(run_id, timeout=60)
    except WorkflowCancelledError:
        released = [
            e
            for e in get_events(run_id)
            if e.type == EventType.STEP_COMPLETED and e.payload["name"] == "release"
        ]
        print(f"run {get_run(run_id).status.value} after {len(released)} compensations")
