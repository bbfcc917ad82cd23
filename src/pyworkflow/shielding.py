"""``shield()``: let cleanup and compensation finish after a run's cancellation was requested."""

from __future__ import annotations

import asyncio
from types import TracebackType
from typing import Protocol, runtime_checkable

__all__ = ["shield"]


@runtime_checkable
class _Shieldable(Protocol):
    """A workflow context that can defer the run's cancellation (the engine's activation)."""

    def shield_enter(self) -> None: ...

    def shield_exit(self, raising: bool) -> bool: ...


class _Shield:
    """The ``async with`` block :func:`shield` returns."""

    __slots__ = ("_ctx",)

    def __init__(self, ctx: _Shieldable | None) -> None:
        self._ctx = ctx

    async def __aenter__(self) -> None:
        if self._ctx is not None:
            self._ctx.shield_enter()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._ctx is not None and self._ctx.shield_exit(exc_type is not None):
            raise asyncio.CancelledError("the run was cancelled while a shield() block ran")


def shield() -> _Shield:
    """Defer the run's cancellation while the ``async with shield():`` block runs.

    Inside a workflow::

        try:
            await book_flight(trip)
            await sleep("1d")
        except asyncio.CancelledError:
            async with shield():             # both compensations run to completion,
                await cancel_flight(trip)    # even if another cancel(run_id) comes meanwhile
                await refund(trip)
            raise

    A cancellation requested while the block runs (or that arrives in the log
    while it is open) does not cancel the steps, sleeps, hooks or child runs
    the workflow awaits; it is delivered as ``asyncio.CancelledError`` when the
    outermost open shield exits (nested and concurrent blocks add up). It is
    replay-safe: a crash inside the block resumes the cleanup. It does not
    defer the workflow timeout. Outside a workflow (a step body, plain code)
    there is nothing durable to defer: the block does nothing.
    """
    from pyworkflow.context import current_workflow

    ctx = current_workflow()
    return _Shield(ctx if isinstance(ctx, _Shieldable) else None)
