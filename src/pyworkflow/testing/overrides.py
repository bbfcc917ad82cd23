"""Replacing step bodies in a test environment, and recording the replacements' calls."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import attrs

from pyworkflow.context import get_step_context
from pyworkflow.step import Step, StepFunction

__all__ = ["StepCall", "StepOverride", "step_name"]


@attrs.frozen
class StepCall:
    """One call of a replaced step: its arguments and where it ran."""

    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    run_id: str
    step_id: str
    attempt: int


@attrs.define
class StepOverride:
    """A step body replaced by ``fake`` in a test environment; :attr:`calls` in order."""

    name: str
    fake: Callable[..., Any]
    calls: list[StepCall] = attrs.field(factory=list)

    @property
    def call_count(self) -> int:
        """How many times the fake ran (each retry attempt counts)."""
        return len(self.calls)

    def body(self) -> Callable[..., Any]:
        """The body the engine runs: records the call, then calls the fake.

        An ``async def`` fake (or an ``AsyncMock``) gives an ``async def`` body
        that runs on the loop; any other callable gives a plain function, which
        the engine runs in a worker thread as it would a sync step.
        """
        fake, calls = self.fake, self.calls

        def record(args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
            ctx = get_step_context()
            calls.append(StepCall(args, dict(kwargs), ctx.run_id, ctx.step_id, ctx.attempt))

        if inspect.iscoroutinefunction(fake):

            async def async_body(*args: Any, **kwargs: Any) -> Any:
                record(args, kwargs)
                return await fake(*args, **kwargs)

            return async_body

        def sync_body(*args: Any, **kwargs: Any) -> Any:
            record(args, kwargs)
            result = fake(*args, **kwargs)
            if inspect.isawaitable(result):
                raise TypeError(
                    f"the fake of step {self.name!r} returned an awaitable from a plain "
                    "function; make it `async def` (or an AsyncMock)"
                )
            return result

        return sync_body


def step_name(step: Any) -> str:
    """The registered name of ``step``: a ``@step`` function, a ``Step`` subclass or a name."""
    if isinstance(step, StepFunction):
        return step.definition.name
    if isinstance(step, type) and issubclass(step, Step) and step is not Step:
        return step._definition.name
    if isinstance(step, str):
        if not step:
            raise ValueError("step name must not be empty")
        return step
    raise TypeError(
        "override_step() takes a @step function, a Step subclass or a step name, "
        f"not {type(step).__name__}"
    )
