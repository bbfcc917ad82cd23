"""Workflows of the shield and hook-timeout crash tests (imported by worker subprocesses).

Step bodies append ``<what> <attempt>`` lines to the file named by the
workflow's ``marks`` argument; a first attempt of the marked steps blocks so
the test can SIGKILL the worker running it.
"""

from __future__ import annotations

import asyncio
import os

import anyio

from pyworkflow import (
    HookTimeoutError,
    create_hook,
    get_step_context,
    shield,
    sleep,
    step,
    workflow,
)


def note(marks: str, what: str) -> None:
    with open(marks, "a") as fh:
        fh.write(f"{what} {get_step_context().attempt}\n")
        fh.flush()
        os.fsync(fh.fileno())


@step()
async def sp_book(marks: str) -> str:
    note(marks, "book")
    return "booked"


@step()
async def sp_refund(marks: str) -> str:
    note(marks, "refund")
    if get_step_context().attempt == 1:
        await anyio.sleep(120)  # the worker is killed here
    return "refunded"


@step()
async def sp_release(marks: str) -> str:
    note(marks, "release")
    return "released"


@workflow
async def sp_saga(marks: str) -> str:
    await sp_book(marks)
    try:
        await sleep("60s")
    except asyncio.CancelledError:
        async with shield():
            await sp_refund(marks)
            await sp_release(marks)
        raise
    return "kept"


@step()
async def sp_after_timeout(marks: str) -> str:
    note(marks, "after")
    if get_step_context().attempt == 1:
        await anyio.sleep(120)  # the worker is killed here
    return "went on"


@workflow
async def sp_hook_timeout(marks: str, token: str) -> str:
    try:
        return str(await create_hook(token=token, timeout="1s"))
    except HookTimeoutError:
        return await sp_after_timeout(marks)
