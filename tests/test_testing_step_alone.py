"""pyworkflow.testing.run_step / arun_step: a step body alone, with a chosen StepContext."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from typing import Any

import pytest

from pyworkflow import Step, get_step_context, runtime, step
from pyworkflow.context import StepContext
from pyworkflow.testing import arun_step, run_step


@step(name="alone-charge")
async def charge(amount: int, *, currency: str = "EUR") -> dict[str, Any]:
    ctx = get_step_context()
    return {"amount": amount, "currency": currency, "ctx": ctx}


@step(name="alone-sync-charge")
def sync_charge(amount: int) -> tuple[int, StepContext]:
    return amount, get_step_context()


class Refund(Step):
    name = "AloneRefund"

    async def execute(self, amount: int) -> tuple[int, StepContext]:
        return -amount, get_step_context()


class Declined(Exception):
    pass


@step(name="alone-declines")
async def declines(attempt_ok: int) -> int:
    ctx = get_step_context()
    if ctx.attempt < attempt_ok:
        raise Declined(f"attempt {ctx.attempt}")
    return ctx.attempt


@step(name="alone-sync-declines")
def sync_declines() -> None:
    raise Declined("sync")


def test_async_body_sees_chosen_attempt_and_key() -> None:
    out = run_step(charge, 5, currency="USD", attempt=3, idempotency_key="k-1", run_id="r-9")
    ctx = out["ctx"]
    assert (out["amount"], out["currency"]) == (5, "USD")
    assert ctx == StepContext(
        run_id="r-9",
        step_id="1",
        step_name="alone-charge",
        attempt=3,
        idempotency_key="k-1",
    )


def test_default_key_is_derived_like_the_engine_does() -> None:
    ctx = run_step(charge, 1, run_id="r-1", step_id="s-7")["ctx"]
    assert ctx.attempt == 1
    assert ctx.idempotency_key == "r-1:s-7"


def test_sync_body() -> None:
    amount, ctx = run_step(sync_charge, 7, attempt=2, idempotency_key="abc")
    assert amount == 7
    assert (ctx.step_name, ctx.attempt, ctx.idempotency_key) == ("alone-sync-charge", 2, "abc")


def test_step_class_and_instance() -> None:
    amount, ctx = run_step(Refund, 4, attempt=5)
    assert amount == -4
    assert (ctx.step_name, ctx.attempt) == ("AloneRefund", 5)
    amount, ctx = run_step(Refund(), 2, idempotency_key="x")
    assert (amount, ctx.idempotency_key) == (-2, "x")


@pytest.mark.anyio
async def test_arun_step_in_async_test() -> None:
    out = await arun_step(charge, 3, attempt=4, idempotency_key="a-4")
    assert (out["ctx"].attempt, out["ctx"].idempotency_key) == (4, "a-4")
    amount, ctx = await arun_step(sync_charge, 8, attempt=2)
    assert (amount, ctx.attempt) == (8, 2)
    amount, ctx = await arun_step(Refund, 1)
    assert (amount, ctx.step_name) == (-1, "AloneRefund")


@pytest.mark.anyio
async def test_exceptions_propagate_as_raised() -> None:
    with pytest.raises(Declined, match="attempt 1"):
        await arun_step(declines, 2, attempt=1)
    assert await arun_step(declines, 2, attempt=2) == 2
    with pytest.raises(Declined, match="sync"):
        await arun_step(sync_declines)


def test_exceptions_propagate_sync() -> None:
    with pytest.raises(Declined, match="attempt 2"):
        run_step(declines, 3, attempt=2)
    with pytest.raises(Declined, match="sync"):
        run_step(sync_declines)


def test_context_is_unset_after_the_call() -> None:
    run_step(charge, 1)
    with pytest.raises(RuntimeError, match="outside a step"):
        get_step_context()


def test_bad_arguments() -> None:
    with pytest.raises(TypeError, match="@step function"):
        run_step(lambda: 1)
    with pytest.raises(ValueError, match="attempt"):
        run_step(charge, 1, attempt=0)


def test_no_runtime_is_started() -> None:
    runtime.reset()
    run_step(charge, 1)
    run_step(sync_charge, 1)
    assert runtime._runtime is None


def test_import_without_pytest() -> None:
    code = textwrap.dedent(
        """
        import sys
        sys.modules["pytest"] = None
        import pyworkflow.testing as t
        from pyworkflow import get_step_context, step

        @step
        async def body(x):
            c = get_step_context()
            return x, c.attempt, c.idempotency_key

        assert t.run_step(body, 1, attempt=2, idempotency_key="k") == (1, 2, "k")
        assert "pytest" not in {m for m in sys.modules if sys.modules[m] is not None}
        try:
            t.StorageConformance
        except ImportError:
            print("ok")
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"
