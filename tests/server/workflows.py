"""Workflows and schemas the server tests drive over HTTP."""

from __future__ import annotations

from typing import Any

import attrs

from pyworkflow import create_hook, step, workflow

#: The HMAC secret of ``signed`` hooks (tests sign with it).
SECRET = "s3cret-for-the-tests-0123"

#: URLs the ``send_payment_link`` step "sent" (e-mailed, say): the test reads them here.
outbox: list[str] = []


@attrs.frozen
class Payment:
    """What a payment provider posts to the hook."""

    amount: int
    currency: str


@step()
async def send_payment_link(url: str | None) -> None:
    assert url is not None, "public_url is not configured"
    outbox.append(url)


@workflow(name="server_tests.payment")
async def payment(order_id: str) -> dict[str, Any]:
    hook = create_hook()
    await send_payment_link(hook.url)
    paid = await hook
    return {"order": order_id, "payment": paid}


@workflow(name="server_tests.typed")
async def typed_payment(token: str) -> dict[str, Any]:
    paid = await create_hook(token=token, schema=Payment)
    return {"is_payment": isinstance(paid, Payment), "payment": paid}


@workflow(name="server_tests.short_lived")
async def short_lived(token: str) -> Any:
    async with create_hook(token=token) as hook:
        first = await hook
    second = await create_hook(token=f"{token}:later")
    return [first, second]


@workflow(name="server_tests.signed")
async def signed(token: str, count: int) -> list[Any]:
    out: list[Any] = []
    async for payload in create_hook(token=token, secret=SECRET):
        out.append(payload)
        if len(out) == count:
            break
    return out


@workflow(name="server_tests.collect")
async def collect(token: str, count: int, schema: bool = False) -> list[Any]:
    out: list[Any] = []
    async for payload in create_hook(token=token, schema=Payment if schema else None):
        out.append(payload)
        if len(out) == count:
            break
    return out


@workflow(name="server_tests.greet")
async def greet(name: str, punctuation: str = "!") -> str:
    return f"hello {name}{punctuation}"


@workflow(name="server_tests.wait")
async def wait_forever(token: str) -> Any:
    return await create_hook(token=token)


@workflow(name="server_tests.signed_with")
async def signed_with(token: str, secret: str) -> Any:
    return await create_hook(token=token, secret=secret)
