"""The current run and step, and the deterministic helpers workflow code uses."""

from __future__ import annotations

import asyncio
import random as _random
import uuid as _uuid
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, NoReturn, Protocol

import anyio
import attrs
from loguru import logger

from pyworkflow.durations import Duration, check_due_time, parse_duration
from pyworkflow.models import utcnow

if TYPE_CHECKING:
    from pyworkflow.hooks import Hook
    from pyworkflow.step import StepDefinition
    from pyworkflow.workflow import WorkflowDefinition

__all__ = [
    "ContinueAsNew",
    "StepContext",
    "WorkflowContext",
    "continue_as_new",
    "create_hook",
    "current_step_ids",
    "current_workflow",
    "deprecate_patch",
    "first",
    "get_step_context",
    "now",
    "patched",
    "random",
    "scheduled_at",
    "sleep",
    "uuid4",
    "workflow_logger",
]


class WorkflowContext(Protocol):
    """What the engine offers to workflow code of the activation running it."""

    run_id: str
    workflow_name: str

    @property
    def is_replaying(self) -> bool: ...

    def call_step(
        self,
        definition: StepDefinition,
        body: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> Awaitable[Any]: ...

    def call_sleep(self, delta: timedelta | None, until: datetime | None) -> Awaitable[None]: ...

    def record_value(self, kind: str, produce: Callable[[], Any]) -> Any: ...

    def continue_as_new(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> NoReturn: ...

    def create_hook(
        self, token: str | None, schema: Any, secret: str | None, timeout: timedelta | None = None
    ) -> tuple[str, str]: ...

    def hook_receive(self, cid: str) -> Awaitable[Any]: ...

    def hook_dispose(self, cid: str) -> None: ...

    def hook_disposed(self, cid: str) -> bool: ...

    def write_chunk(self, name: str, value: Any) -> None: ...

    def patched(self, patch_id: str) -> bool: ...

    def deprecate_patch(self, patch_id: str) -> None: ...

    def start_child(
        self,
        name: str,
        definition: WorkflowDefinition | None,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        policy: str,
    ) -> tuple[str, str, Awaitable[Any]]: ...

    def cancel_child(self, cid: str) -> None: ...

    @property
    def public_url(self) -> str | None: ...

    @property
    def scheduled_at(self) -> datetime | None: ...


@attrs.frozen
class StepContext:
    """What a running step knows about itself (``get_step_context()``).

    ``idempotency_key`` is stable across retries and recoveries of the same
    step call: pass it to external APIs so a repeated attempt is deduplicated.
    :meth:`checkpoint` saves the attempt's progress; :attr:`last_checkpoint`
    gives a later attempt what an earlier one saved (``docs/checkpoints.md``).
    """

    run_id: str
    step_id: str
    step_name: str
    attempt: int
    idempotency_key: str

    @property
    def last_checkpoint(self) -> Any:
        """The state an earlier attempt of this step saved last (decoded), or None.

        Read when the attempt began: None on a first attempt, or when no
        earlier attempt (before an exception, a crash, a lost lease) saved a
        checkpoint. This attempt's own :meth:`checkpoint` calls do not change it.
        """
        from pyworkflow import checkpoints  # lazily: most steps never checkpoint

        return checkpoints.last_checkpoint(
            (self.run_id, self.step_id, self.step_name, self.attempt)
        )

    async def checkpoint(self, state: Any) -> None:
        """Save ``state`` as this attempt's progress, for a later attempt to resume from.

        ``state`` is serialized with the run's serializer (at most
        ``checkpoint_max_bytes``, else
        :class:`~pyworkflow.errors.PayloadTooLargeError`). At most one
        checkpoint per ``checkpoint_interval`` seconds is written; one made
        sooner is kept (the latest only) and written by the next call after
        the interval or when the attempt ends, with a result or an exception.
        A save by an attempt that a later attempt superseded is dropped.
        """
        from pyworkflow import checkpoints

        await checkpoints.save_checkpoint(
            (self.run_id, self.step_id, self.step_name, self.attempt), state
        )

    def checkpoint_sync(self, state: Any) -> None:
        """:meth:`checkpoint` for a synchronous step body (one that runs in a thread)."""
        from pyworkflow import checkpoints

        checkpoints.save_checkpoint_sync(
            (self.run_id, self.step_id, self.step_name, self.attempt), state
        )


_workflow: ContextVar[WorkflowContext | None] = ContextVar("pyworkflow_workflow", default=None)
#: The running step's ids ``(run_id, step_id, step_name, attempt)``; its
#: :class:`StepContext` is built when the body asks for it (most never do).
_step: ContextVar[tuple[str, str, str, int] | None] = ContextVar("pyworkflow_step", default=None)
#: An idempotency key chosen by ``pyworkflow.testing.run_step``; None: derived from the ids.
_step_key: ContextVar[str | None] = ContextVar("pyworkflow_step_key", default=None)


def current_workflow() -> WorkflowContext | None:
    """The workflow activation running the calling code, or None."""
    return _workflow.get()


def current_step_ids() -> tuple[str, str, str, int] | None:
    """``(run id, step id, step name, attempt)`` of the step attempt running here, or None.

    Read by code running inside a step body (durable streams, checkpoints).
    """
    return _step.get()


def get_step_context() -> StepContext:
    """The context of the step whose body is running; error outside a step.

    ```python
    from pyworkflow import get_step_context, step

    @step(max_retries=5)
    async def charge(order_id: str, cents: int) -> str:
        ctx = get_step_context()
        # the same key on every attempt: the provider charges once (payments: your client)
        return await payments.charge(order_id, cents, idempotency_key=ctx.idempotency_key)
    ```
    """
    ids = _step.get()
    if ids is None:
        raise RuntimeError("get_step_context() called outside a step body")
    run_id, step_id, step_name, attempt = ids
    return StepContext(
        run_id=run_id,
        step_id=step_id,
        step_name=step_name,
        attempt=attempt,
        idempotency_key=_step_key.get() or f"{run_id}:{step_id}",
    )


def now() -> datetime:
    """The current UTC time; inside a workflow, recorded once and replayed."""
    ctx = _workflow.get()
    if ctx is None:
        return utcnow()
    value: datetime = ctx.record_value("now", utcnow)
    return value


def scheduled_at() -> datetime | None:
    """In a workflow started by a schedule: the tick it was started for (aware UTC).

    None in a run started otherwise. A tick fired late, or caught up after
    downtime, still reads its own tick time, not the time it ran.
    """
    ctx = _workflow.get()
    if ctx is None:
        raise RuntimeError("scheduled_at() is only available inside a workflow")
    return ctx.scheduled_at


def random() -> float:
    """A float in [0, 1); inside a workflow, recorded once and replayed."""
    ctx = _workflow.get()
    if ctx is None:
        return _random.random()
    value: float = ctx.record_value("random", _random.random)
    return value


def uuid4() -> _uuid.UUID:
    """A random UUID; inside a workflow, recorded once and replayed."""
    ctx = _workflow.get()
    if ctx is None:
        return _uuid.uuid4()
    value: _uuid.UUID = ctx.record_value("uuid4", _uuid.uuid4)
    return value


#: The longest patch id ``patched()`` accepts (it is stored in each marker event).
MAX_PATCH_ID_LENGTH = 200


def _check_patch_id(patch_id: object, call: str) -> str:
    """A patch id: 1-200 printable characters; else ``TypeError``/``ValueError``."""
    if not isinstance(patch_id, str):
        raise TypeError(f"{call}: the patch id must be a str, got {type(patch_id).__name__}")
    if not patch_id or len(patch_id) > MAX_PATCH_ID_LENGTH:
        raise ValueError(
            f"{call}: the patch id must be 1-{MAX_PATCH_ID_LENGTH} characters, got {len(patch_id)}"
        )
    if not patch_id.isprintable():  # control characters, lone surrogates, line breaks
        raise ValueError(f"{call}: the patch id {patch_id!r} holds a non-printable character")
    return patch_id


def _marker_context(call: str) -> WorkflowContext:
    if _step.get() is not None:
        raise RuntimeError(
            f"{call} cannot be called inside a step body; call it from the workflow code"
        )
    ctx = _workflow.get()
    if ctx is None:
        raise RuntimeError(f"{call} can only be called inside a workflow")
    return ctx


def patched(patch_id: str) -> bool:
    """Whether this run takes the new branch of the code change named ``patch_id``.

    ``if patched("fix-discount"): <new code> else: <old code>``. A run that
    reaches this point for the first time records a ``marker_recorded`` event
    and gets ``True``; a run whose log was recorded before the patch existed
    (it holds another operation here) gets ``False`` and replays the old
    branch. The answer is decided once per run and patch id: later calls in
    the same run return it and record nothing. See ``docs/versioning.md``.

    ``TypeError``/``ValueError`` for an id that is not 1-200 characters of
    printable characters; ``RuntimeError`` outside a workflow or inside a step body.

    ```python
    from pyworkflow import patched, workflow

    @workflow
    async def checkout(order_id: str) -> float:
        if patched("fix-discount"):
            return await price_with_discount(order_id)  # runs that reach here after the deploy
        return await price(order_id)  # runs recorded before it replay the old step
    ```
    """
    _check_patch_id(patch_id, "patched()")
    return _marker_context("patched()").patched(patch_id)


def deprecate_patch(patch_id: str) -> None:
    """Mark ``patch_id`` as deployed everywhere: the old branch has been removed.

    It records nothing and replays both the runs that recorded the patch's
    marker here (the marker is consumed) and those that did not, so it can
    replace ``if patched(id): new else: old`` by ``deprecate_patch(id); new``
    while runs that recorded the marker are still in flight. Same errors as
    :func:`patched`.
    """
    _check_patch_id(patch_id, "deprecate_patch()")
    _marker_context("deprecate_patch()").deprecate_patch(patch_id)


def sleep(duration: Duration | datetime) -> Awaitable[None]:
    """Wait durably: ``await sleep("5m")``, ``"2h"``, ``"3d"``, a timedelta or a datetime.

    Inside a workflow the run suspends (the process may exit) and resumes
    when the time comes. Outside a workflow it is an ordinary sleep. A bad
    duration (NaN, infinite, negative, non-ASCII digits, over 100 years) or a
    due time more than 100 years away raises ``ValueError`` at the call.
    """
    until: datetime | None = None
    delta: timedelta | None = None
    if isinstance(duration, datetime):
        until = check_due_time(duration, utcnow())
    else:
        delta = parse_duration(duration, what="sleep duration")
    ctx = _workflow.get()
    if ctx is None:
        seconds = delta.total_seconds() if delta is not None else 0.0
        if until is not None:
            seconds = (until - utcnow()).total_seconds()
        return anyio.sleep(max(0.0, seconds))
    return ctx.call_sleep(delta, until)


class ContinueAsNew(BaseException):  # a signal that ends the run, not an error
    """Raised by :func:`continue_as_new`: the run ends and the next run starts.

    A ``BaseException`` so that ``except Exception`` in workflow code does not
    swallow it; ``input`` is the next run's input as the run's serializer wrote it.
    """

    def __init__(self, input: str) -> None:
        super().__init__("the workflow continues as a new run")
        self.input = input


def continue_as_new(*args: Any, **kwargs: Any) -> NoReturn:
    """End this run and start a new run of the same workflow with these arguments.

    For workflows that loop for ever (a poller, a subscription): each run's
    log stays bounded, and the runs form a chain (the ended run's
    ``RunInfo.continued_to``, the next run's ``continued_from``);
    ``get_result`` on any run of the chain waits for the chain's end. The
    arguments are serialized at the call with the run's serializer and size
    limit (a ``SerializationError`` or ``TypeError`` raised here, in the
    workflow). It raises :class:`ContinueAsNew`, a ``BaseException``: let it
    propagate. ``RuntimeError`` outside a workflow or inside a step body.

    ```python
    from pyworkflow import continue_as_new, sleep, step, workflow

    @step
    async def poll_inbox(cursor: int) -> int:
        return cursor + 1  # process new messages; return the next cursor

    @workflow
    async def inbox_poller(cursor: int = 0) -> None:
        for _ in range(100):
            cursor = await poll_inbox(cursor)
            await sleep("1m")
        continue_as_new(cursor)  # the same workflow goes on in a new run, with a new log
    ```
    """
    if _step.get() is not None:
        raise RuntimeError(
            "continue_as_new() cannot be called inside a step body; "
            "call it from the workflow (return a value from the step and continue there)"
        )
    ctx = _workflow.get()
    if ctx is None:
        raise RuntimeError("continue_as_new() can only be called inside a workflow")
    ctx.continue_as_new(args, dict(kwargs))


def create_hook(
    token: str | None = None,
    schema: Any = None,
    *,
    secret: str | None = None,
    timeout: Duration | None = None,
) -> Hook[Any]:
    """Create a hook the outside world can send payloads to (inside a workflow).

    ``token`` defaults to an unguessable one; pass your own deterministic
    token (``f"approval:{order_id}"``) to address it without being told.
    With ``schema`` (an attrs class, dataclass, TypedDict, pydantic model or a
    type such as ``list[str]``) payloads are validated strictly, without
    coercion, before they are recorded. With ``secret`` the HTTP server requires an
    HMAC-SHA256 signature of the body in ``X-PyWorkflow-Signature``.
    ``hook.url`` is set when the ``public_url`` config key is. With
    ``timeout`` (``"2d"``, seconds, a timedelta) the hook lives that long, a
    durable timer recorded at creation: then it is disposed and ``await hook``
    raises :class:`~pyworkflow.errors.HookTimeoutError` (``async for`` ends).

    ```python
    from pyworkflow import HookTimeoutError, create_hook, workflow

    @workflow
    async def approval(order_id: str) -> bool:
        hook = create_hook(token=f"approval:{order_id}", timeout="2d")
        try:
            decision = await hook  # the run suspends until a payload arrives
        except HookTimeoutError:
            return False
        return bool(decision["approved"])
    ```

    The outside world sends the payload with :func:`~pyworkflow.resume_hook`,
    ``pyworkflow hooks resume`` or ``POST /hooks/<token>`` on the HTTP server.
    """
    from pyworkflow.hooks import Hook

    ctx = _workflow.get()
    if ctx is None:
        raise RuntimeError("create_hook() can only be called inside a workflow")
    delta = None if timeout is None else parse_duration(timeout, what="hook timeout")
    if delta is None:  # a context without hook timeouts keeps its three-argument call
        cid, actual = ctx.create_hook(token, schema, secret)
    else:
        cid, actual = ctx.create_hook(token, schema, secret, delta)
    base = ctx.public_url
    url = f"{base.rstrip('/')}/hooks/{actual}" if base else None
    return Hook(ctx, cid, actual, url)


async def first(*awaitables: Awaitable[Any]) -> tuple[int, Any]:
    """Wait for the first of several awaitables; cancel the rest.

    Returns ``(index, result)`` of the winner (its exception is raised).
    Inside a workflow this races durable operations deterministically:
    ``index, payload = await first(hook, sleep("1d"))`` is a hook with a
    timeout; on replay the same one wins, because outcomes are delivered in
    log order.

    ```python
    from pyworkflow import create_hook, first, sleep, workflow

    @workflow
    async def approval(order_id: str) -> str:
        hook = create_hook(token=f"approval:{order_id}")
        index, payload = await first(hook, sleep("2d"))
        if index == 1:
            return "expired"  # the sleep won: nobody answered within two days
        return "approved" if payload["approved"] else "rejected"
    ```
    """
    tasks = [asyncio.ensure_future(a) for a in awaitables]
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            if not task.done():
                task.cancel()
    index = next(i for i, task in enumerate(tasks) if task in done)
    return index, tasks[index].result()


class _WorkflowLogger:
    """loguru logging for workflow code that stays silent while replaying.

    Lines are bound with ``run_id`` and ``workflow``; a line logged before a
    ``sleep`` is printed once, not again when the run resumes.
    """

    def _log(self, level: str, message: str, *args: Any, **kwargs: Any) -> None:
        ctx = _workflow.get()
        if ctx is None:
            logger.opt(depth=2).log(level, message, *args, **kwargs)
            return
        if ctx.is_replaying:
            return
        logger.bind(run_id=ctx.run_id, workflow=ctx.workflow_name).opt(depth=2).log(
            level, message, *args, **kwargs
        )

    def debug(self, message: str, *args: Any, **kwargs: Any) -> None:
        self._log("DEBUG", message, *args, **kwargs)

    def info(self, message: str, *args: Any, **kwargs: Any) -> None:
        self._log("INFO", message, *args, **kwargs)

    def warning(self, message: str, *args: Any, **kwargs: Any) -> None:
        self._log("WARNING", message, *args, **kwargs)

    def error(self, message: str, *args: Any, **kwargs: Any) -> None:
        self._log("ERROR", message, *args, **kwargs)


workflow_logger = _WorkflowLogger()
"""Logging for workflow code that prints each line once, not again on replay.

Its methods ``debug``, ``info``, ``warning`` and ``error`` take a message and
loguru's format arguments; inside a workflow each line is bound with
``run_id`` and ``workflow``. A line logged before a ``sleep`` is printed when
the run first gets there, not again when the run resumes and replays up to
the sleep. Outside a workflow it logs like loguru's ``logger``. Step bodies
run once per attempt and can use loguru's ``logger`` directly.

```python
from pyworkflow import sleep, workflow, workflow_logger

@workflow
async def onboarding(user_id: str) -> None:
    workflow_logger.info("welcome mail for {}", user_id)
    await sleep("1d")
    workflow_logger.info("day-two reminder for {}", user_id)
```

Its lines are logged under your module's name, not ``pyworkflow``, so they
reach your application's loguru sinks whether or not
:func:`~pyworkflow.enable_logging` was called.
"""
