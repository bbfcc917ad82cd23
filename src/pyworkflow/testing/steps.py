"""Run a step body alone, with a chosen step context and no engine.

Like Temporal's ``ActivityEnvironment``: :func:`run_step` and :func:`arun_step`
call the body of a ``@step`` function or a :class:`~pyworkflow.step.Step`
subclass directly, with :func:`~pyworkflow.get_step_context` returning the
run id, step id, attempt and idempotency key the test chose. No storage,
runtime or worker is started, no retry policy or timeout is applied, and an
exception raised by the body propagates unchanged. Step checkpoints are kept in
the process: a call with ``attempt=2`` resumes from what the ``attempt=1`` call
of the same ``run_id`` and ``step_id`` saved (a first attempt starts from none).
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any

import anyio

from pyworkflow import checkpoints
from pyworkflow import context as _ctx
from pyworkflow.step import Step, StepFunction

__all__ = ["arun_step", "run_step"]


def _resolve(target: Any) -> tuple[str, Callable[..., Any]]:
    """The step's name and body for a ``@step`` function, a Step subclass or instance."""
    if isinstance(target, StepFunction):
        return target.definition.name, target.fn
    if isinstance(target, type) and issubclass(target, Step):
        return target._definition.name, target().execute
    if isinstance(target, Step):
        return target._definition.name, target.execute
    raise TypeError(
        f"run_step expects a @step function, a Step subclass or a Step instance, got {target!r}"
    )


def _bind(
    target: Any,
    run_id: str,
    step_id: str | None,
    attempt: int,
    idempotency_key: str | None,
) -> tuple[Callable[..., Any], tuple[str, str, str, int], str | None]:
    if attempt < 1:
        raise ValueError(f"attempt must be >= 1, got {attempt}")
    name, body = _resolve(target)
    return body, (run_id, step_id or "1", name, attempt), idempotency_key


def _call_in_context(
    ids: tuple[str, str, str, int],
    key: str | None,
    call: Callable[[], Any],
) -> Any:
    ids_token = _ctx._step.set(ids)
    key_token = _ctx._step_key.set(key)
    checkpoints.enter_alone(ids)
    try:
        return call()
    finally:
        checkpoints.exit_alone(ids)
        _ctx._step_key.reset(key_token)
        _ctx._step.reset(ids_token)


async def arun_step(
    step: Any,
    /,
    *args: Any,
    attempt: int = 1,
    idempotency_key: str | None = None,
    run_id: str = "test-run",
    step_id: str | None = None,
    **kwargs: Any,
) -> Any:
    """Await the body of ``step`` once with the given step context; return its result.

    ``step`` is a ``@step`` function, a :class:`~pyworkflow.step.Step` subclass
    (instantiated without arguments) or instance. Inside the body,
    ``get_step_context()`` returns ``run_id``, ``step_id`` (default ``"1"``,
    the id the engine gives a run's first operation), ``attempt`` and
    ``idempotency_key`` (default ``"<run_id>:<step_id>"``, as the engine
    derives it). A sync body runs in the calling thread. Exceptions propagate
    as raised.
    """
    body, ids, key = _bind(step, run_id, step_id, attempt, idempotency_key)
    ids_token = _ctx._step.set(ids)
    key_token = _ctx._step_key.set(key)
    checkpoints.enter_alone(ids)
    try:
        result = body(*args, **kwargs)
        if inspect.isawaitable(result):
            result = await result
        return result
    finally:
        checkpoints.exit_alone(ids)
        _ctx._step_key.reset(key_token)
        _ctx._step.reset(ids_token)


def run_step(
    step: Any,
    /,
    *args: Any,
    attempt: int = 1,
    idempotency_key: str | None = None,
    run_id: str = "test-run",
    step_id: str | None = None,
    **kwargs: Any,
) -> Any:
    """Run the body of ``step`` once with the given step context; return its result.

    The synchronous form of :func:`arun_step`, with the same arguments: a sync
    body is called directly, an async body runs in a fresh event loop (so call
    :func:`arun_step` instead from async tests). Exceptions propagate as raised.
    """
    body, ids, key = _bind(step, run_id, step_id, attempt, idempotency_key)
    if inspect.iscoroutinefunction(body):
        return _call_in_context(
            ids, key, lambda: anyio.run(functools.partial(_await_body, body, args, kwargs))
        )
    result = _call_in_context(ids, key, lambda: body(*args, **kwargs))
    if inspect.isawaitable(result):
        return _call_in_context(ids, key, lambda: anyio.run(_await_value, result))
    return result


async def _await_body(
    body: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]
) -> Any:
    return await body(*args, **kwargs)


async def _await_value(value: Any) -> Any:
    return await value
