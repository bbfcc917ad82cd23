"""``pyworkflow_ray.interrupt``: a sync step body that a cancel interrupts (no cluster needed)."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest
from pyworkflow_ray.interrupt import interruptible


def test_the_body_s_value_and_errors_come_back() -> None:
    def add(a: int, b: int = 0) -> int:
        return a + b

    def fail() -> None:
        raise ValueError("no")

    assert asyncio.run(interruptible(add)(1, b=2)) == 3
    with pytest.raises(ValueError, match="no"):
        asyncio.run(interruptible(fail)())


def test_a_cancel_interrupts_the_body_and_waits_for_it_to_unwind() -> None:
    seen: list[str] = []
    started = threading.Event()

    def stubborn() -> str:
        started.set()
        try:
            for _ in range(600):
                time.sleep(0.05)
        except KeyboardInterrupt:
            seen.append("interrupted")
            raise
        finally:
            seen.append("unwound")
        return "finished"

    async def main() -> None:
        task = asyncio.ensure_future(interruptible(stubborn)())
        await asyncio.get_running_loop().run_in_executor(None, started.wait, 10)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        # the cancel returned only once the body's finally block had run
        assert seen == ["interrupted", "unwound"]

    asyncio.run(main())


def test_the_body_runs_in_the_callers_context() -> None:
    import contextvars

    var: contextvars.ContextVar[str] = contextvars.ContextVar("var", default="unset")

    def read() -> str:
        return var.get()

    async def main() -> str:
        var.set("the attempt's")
        return await interruptible(read)()

    assert asyncio.run(main()) == "the attempt's"
