"""Workflows the browser tests drive: the served app (``pyworkflow serve -m``) imports them too.

Names carry a ``ui_tests.`` / ``ui_`` prefix: a whole-suite session imports many
test modules into one registry.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
import attrs

from pyworkflow import create_hook, sleep, step, workflow

#: Steps of :func:`gated`: each one waits for its gate file, so a test decides when it ends.
GATED_STEPS = ("ui_fetch", "ui_transform", "ui_store")


@attrs.frozen
class Decision:
    """The schema of :func:`typed_approval`'s hook: the UI builds one input per field."""

    approver: str
    amount: int


@step(max_retries=2, retry_delay="fixed", retry_base="0.2s", jitter=0)
async def ui_charge_card(cents: int) -> str:
    await anyio.sleep(0.1)  # long enough to be seen as a bar on the timeline
    raise ValueError(f"card declined for {cents} cents")


@workflow(name="ui_tests.flaky")
async def flaky(cents: int) -> str:
    """Fails after three attempts of ``ui_charge_card`` (a ValueError with a traceback)."""
    return await ui_charge_card(cents)


async def _wait_for_gate(gates: str, name: str) -> str:
    gate = Path(gates) / name
    with anyio.fail_after(120):
        while not gate.exists():
            await anyio.sleep(0.05)
    return name


@step(max_retries=0)
async def ui_fetch(gates: str) -> str:
    return await _wait_for_gate(gates, "ui_fetch")


@step(max_retries=0)
async def ui_transform(gates: str) -> str:
    return await _wait_for_gate(gates, "ui_transform")


@step(max_retries=0)
async def ui_store(gates: str) -> str:
    return await _wait_for_gate(gates, "ui_store")


@workflow(name="ui_tests.gated")
async def gated(gates: str) -> list[str]:
    """Three steps one after the other; step ``s`` ends once the file ``gates/s`` exists."""
    return [await ui_fetch(gates), await ui_transform(gates), await ui_store(gates)]


@workflow(name="ui_tests.approval")
async def approval(token: str) -> dict[str, Any]:
    """Waits on a hook without a schema (the UI offers a JSON textarea)."""
    payload = await create_hook(token=token)
    return {"approved": payload}


#: The HMAC secret of :func:`signed_approval`'s hook: no page may show it.
HOOK_SECRET = "ui-tests-hook-secret-7c1e9a"


@workflow(name="ui_tests.signed_approval")
async def signed_approval(token: str) -> Any:
    """Waits on a hook whose deliveries must be signed with :data:`HOOK_SECRET`."""
    return await create_hook(token=token, secret=HOOK_SECRET)


@workflow(name="ui_tests.typed_approval")
async def typed_approval(token: str) -> str:
    """Waits on a hook whose schema is an attrs class (the UI builds a form from it)."""
    decision = await create_hook(token=token, schema=Decision)
    return f"{decision.approver} approved {decision.amount}"


@workflow(name="ui_tests.quick")
async def quick(n: int) -> int:
    """Nothing to do."""
    return n


@workflow(name="ui_tests.filler")
async def filler(n: int) -> int:
    """Nothing to do: the paging test fills more than one page of runs with these."""
    return n


@workflow(name="ui_tests.sleepy")
async def sleepy(label: str) -> str:
    """Sleeps an hour: long enough to be cancelled from the UI."""
    await sleep("1h")
    return label


@step
async def ui_double(value: int) -> int:
    return value * 2


@workflow(name="ui_tests.child")
async def child(value: int) -> int:
    """The child of :func:`parent`."""
    return await ui_double(value)


@workflow(name="ui_tests.parent")
async def parent(value: int) -> int:
    """Runs one child run and adds one to its result."""
    return await child(value) + 1
