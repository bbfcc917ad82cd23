"""Workflows behind the run page's tests (timeline, page, actions API).

Names carry a ``ui_run.`` prefix: a whole-suite session imports many test
modules into one registry.
"""

from __future__ import annotations

from typing import Any

import attrs

from pyworkflow import (
    FatalError,
    RetryableError,
    continue_as_new,
    create_hook,
    sleep,
    start_child,
    step,
    workflow,
)

#: Attempts of :func:`ui_run_flaky` so far, per key (it fails the first two of each key).
attempts: dict[str, int] = {}

#: What :func:`drifting` does: flipped by a test to make the code diverge from a log.
drift = {"v2": False}

#: A string a page must show as text, never as markup.
HOSTILE = "<script>alert('x')</script>&amp;\"quoted\""


@attrs.frozen
class Decision:
    """A hook schema: the run page builds one input per field."""

    approver: str
    amount: int
    urgent: bool = False
    ratio: float = 1.0
    notes: list[str] = attrs.field(factory=list)


@step(max_retries=3, retry_delay="fixed", retry_base="2s", jitter=0)
async def ui_run_flaky(key: str) -> str:
    attempts[key] = attempts.get(key, 0) + 1
    if attempts[key] < 3:
        raise RetryableError(f"flaky attempt {attempts[key]}")
    return f"ok after {attempts[key]}"


@step(max_retries=1, retry_delay="fixed", retry_base="1s", jitter=0)
async def ui_run_broken(text: str) -> None:
    raise ValueError(f"broken: {text}")


@step(max_retries=0)
async def ui_run_fatal(text: str) -> None:
    raise FatalError(f"fatal: {text}")


@step
async def ui_run_double(value: int) -> int:
    return value * 2


@workflow(name="ui_run.child")
async def child(value: int) -> int:
    return await ui_run_double(value)


@workflow(name="ui_run.everything")
async def everything(key: str) -> dict[str, Any]:
    """A step that succeeds on its third attempt, a sleep, a hook, a child run."""
    flaky = await ui_run_flaky(key)
    await sleep("30s")
    payload = await create_hook(token=f"ui-run:{key}")
    doubled = await start_child(child, 21)
    return {"flaky": flaky, "payload": payload, "child": doubled}


@workflow(name="ui_run.fails")
async def fails(text: str) -> None:
    """Fails after two attempts of a step (a ValueError with a traceback)."""
    await ui_run_broken(text)


@workflow(name="ui_run.fatal")
async def fatal(text: str) -> None:
    """Fails at once."""
    await ui_run_fatal(text)


@workflow(name="ui_run.greet")
async def greet(name: str) -> dict[str, Any]:
    return {"hello": name, "items": [1, 2, 3]}


@workflow(name="ui_run.wait")
async def wait(token: str) -> Any:
    """Waits on a hook without a schema."""
    return {"got": await create_hook(token=token)}


@workflow(name="ui_run.typed")
async def typed(token: str) -> dict[str, Any]:
    """Waits on a hook whose schema is an attrs class."""
    decision = await create_hook(token=token, schema=Decision)
    return attrs.asdict(decision)


@workflow(name="ui_run.after_hook")
async def after_hook(token: str) -> Any:
    """Takes one payload, disposes its hook, then sleeps an hour."""
    async with create_hook(token=token) as hook:
        first = await hook
    await sleep("1h")
    return first


@workflow(name="ui_run.sleepy")
async def sleepy(label: str) -> str:
    await sleep("1h")
    return label


@workflow(name="ui_run.drifting")
async def drifting(value: int) -> int:
    """Calls a step, or (after ``drift["v2"] = True``) sleeps first: a divergence."""
    if drift["v2"]:
        await sleep("1s")
    return await ui_run_double(value)


@workflow(name="ui_run.parent")
async def parent(value: int) -> int:
    """Runs one child run."""
    return await child(value) + 1


@workflow(name="ui_run.chain")
async def chain(left: int) -> int:
    """Continues as new ``left`` times."""
    if left > 0:
        continue_as_new(left - 1)
    return left
