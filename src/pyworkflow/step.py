"""Steps: ``@step`` functions and ``Step`` classes, and their retry policy."""

from __future__ import annotations

import functools
import inspect
import random as _random
import types
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from datetime import timedelta
from typing import Any, ClassVar, Generic, ParamSpec, TypeVar, overload

import attrs

from pyworkflow.context import _workflow as _workflow_var
from pyworkflow.context import current_workflow
from pyworkflow.durations import Duration, parse_duration
from pyworkflow.errors import FatalError, RetryableError, StepNotFoundError

__all__ = [
    "RetryPolicy",
    "Step",
    "StepDefinition",
    "StepFunction",
    "check_dispatchable",
    "get_step",
    "step",
]

P = ParamSpec("P")
R = TypeVar("R")


@attrs.frozen
class RetryPolicy:
    """How often and how fast a failing step is retried.

    ``max_retries`` counts retries after the first attempt (so a step runs at
    most ``max_retries + 1`` times). ``retry_delay`` is ``"exponential"``
    (``base * 2**(attempt-1)``), ``"fixed"`` (``base``) or a duration.
    ``jitter`` spreads each delay by up to that fraction; ``max_delay`` caps it.
    """

    max_retries: int = 3
    retry_delay: str | float | timedelta = "exponential"
    base: timedelta = timedelta(seconds=1)
    max_delay: timedelta = timedelta(hours=1)
    jitter: float = 0.1

    def __attrs_post_init__(self) -> None:
        if self.max_retries < 0:
            raise ValueError(f"max_retries must be >= 0, got {self.max_retries}")
        if not isinstance(self.retry_delay, str) or self.retry_delay not in (
            "exponential",
            "fixed",
        ):
            parse_duration(self.retry_delay, what="retry_delay")

    def should_retry(self, exc: BaseException, attempt: int) -> bool:
        """Whether attempt number ``attempt`` failing with ``exc`` is retried."""
        if isinstance(exc, FatalError):
            return False
        return attempt <= self.max_retries

    def delay_for(self, exc: BaseException, attempt: int) -> timedelta:
        """The wait before the attempt after ``attempt``."""
        if isinstance(exc, RetryableError) and exc.retry_after is not None:
            return parse_duration(exc.retry_after, what="retry_after")
        if self.retry_delay == "exponential":
            delay = self.base * float(2 ** (attempt - 1))
        elif self.retry_delay == "fixed":
            delay = self.base
        else:
            delay = parse_duration(self.retry_delay, what="retry_delay")
        delay = min(delay, self.max_delay)
        if self.jitter:
            delay = delay * (1 + _random.uniform(-self.jitter, self.jitter))
        return timedelta(seconds=delay.total_seconds())


@attrs.frozen
class StepDefinition:
    """A step's name, policy and timeout."""

    name: str
    retry: RetryPolicy
    timeout: timedelta | None = None
    #: The step queue its attempts take a place in (``@step(queue=...)``), None: none.
    queue: str | None = None
    #: What an attempt needs of the worker that runs it (``@step(resources=...)``): executors
    #: that place steps by resources (Ray) honour it; others ignore it.
    resources: Mapping[str, float] | None = None


#: Steps by name, for workers that run step bodies dispatched from other processes:
#: a ``@step`` function, or a ``Step`` subclass (instantiated without arguments).
_registry: dict[str, StepFunction[Any, Any] | type[Step]] = {}
#: Names claimed by two different steps: dispatching them is ambiguous.
_ambiguous: dict[str, set[str]] = {}


def _qualified(target: Callable[..., Any] | type) -> str:
    return f"{target.__module__}.{target.__qualname__}"


def _register(name: str, target: StepFunction[Any, Any] | type[Step]) -> None:
    known = _registry.get(name)
    if known is not None and _qualified(known) != _qualified(target):
        _ambiguous.setdefault(name, {_qualified(known)}).add(_qualified(target))
    _registry[name] = target


def _queue(queue: object) -> str | None:
    if queue is None:
        return None
    from pyworkflow.queues import check_queue_name

    return check_queue_name(queue, "step queue")


def _resources(resources: object) -> Mapping[str, float] | None:
    """``resources`` checked: names to non-negative numbers (never bools), or None."""
    if resources is None:
        return None
    if not isinstance(resources, Mapping):
        raise TypeError(f"step resources must be a mapping, got {type(resources).__name__}")
    checked: dict[str, float] = {}
    for key, amount in resources.items():
        if not isinstance(key, str) or not key:
            raise TypeError(f"step resource names must be non-empty strings, got {key!r}")
        if isinstance(amount, bool) or not isinstance(amount, int | float) or not amount >= 0:
            raise ValueError(
                f"step resource {key!r} must be a non-negative number, got {amount!r}"
            )
        checked[key] = float(amount)
    return types.MappingProxyType(checked)


def get_step(name: str) -> tuple[StepDefinition, Callable[..., Any]]:
    """The definition and body of the step registered as ``name`` (dispatched steps).

    Raises :class:`~pyworkflow.errors.StepNotFoundError` if no module
    imported in this process defines it, or two different steps share it.
    """
    if name in _ambiguous:
        raise StepNotFoundError(
            f"step name {name!r} is used by {', '.join(sorted(_ambiguous[name]))}; "
            "give them distinct names with @step(name=...) or Step.name"
        )
    target = _registry.get(name)
    if target is None:
        raise StepNotFoundError(
            f"no step named {name!r} is registered in this worker; "
            "list the module that defines it in the `modules` config key"
        )
    if isinstance(target, StepFunction):
        return target.definition, target.fn
    return target._definition, target().execute


def check_dispatchable(definition: StepDefinition, body: Callable[..., Any]) -> None:
    """Raise ``TypeError`` if another process could not find and run this step by name."""
    owner = getattr(body, "__self__", None)
    if isinstance(owner, Step):
        if vars(owner):
            raise TypeError(
                f"step {definition.name!r}: a Step instance with state set in __init__ "
                "cannot run on another worker; pass those values as arguments instead"
            )
        return
    if "<locals>" in getattr(body, "__qualname__", ""):
        raise TypeError(
            f"step {definition.name!r} is defined inside a function; steps that run on "
            "other workers must be defined at module level"
        )


def _policy(
    max_retries: int,
    retry_delay: Duration,
    retry_base: Duration,
    max_retry_delay: Duration,
    jitter: float,
) -> RetryPolicy:
    delay: str | float | timedelta
    if isinstance(retry_delay, str) and retry_delay in ("exponential", "fixed"):
        delay = retry_delay
    else:
        delay = parse_duration(retry_delay, what="retry_delay")
    return RetryPolicy(
        max_retries=max_retries,
        retry_delay=delay,
        base=parse_duration(retry_base, what="retry_base"),
        max_delay=parse_duration(max_retry_delay, what="max_retry_delay"),
        jitter=jitter,
    )


def _invoke(
    definition: StepDefinition,
    body: Callable[..., Any],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
) -> Coroutine[Any, Any, Any]:
    """Inside a workflow: a durable step call. Outside: the plain body."""
    ctx = current_workflow()
    if ctx is None:
        return _call_plain(body, args, kwargs)
    future = ctx.call_step(definition, body, args, kwargs)
    return _await(future)


async def _await(future: Awaitable[Any]) -> Any:
    return await future


async def _call_plain(
    body: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]
) -> Any:
    result = body(*args, **kwargs)
    if inspect.isawaitable(result):
        return await result
    return result


class StepFunction(Generic[P, R]):
    """What ``@step`` returns: call it inside a workflow and await the result."""

    def __init__(self, fn: Callable[P, Awaitable[R]] | Callable[P, R], definition: StepDefinition):
        self.fn = fn
        self.definition = definition
        functools.update_wrapper(self, fn)

    @property
    def name(self) -> str:
        return self.definition.name

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> Coroutine[Any, Any, R]:
        ctx = _workflow_var.get()  # _invoke, inlined: this is every step call's path
        if ctx is None:
            return _call_plain(self.fn, args, kwargs)
        return _await(ctx.call_step(self.definition, self.fn, args, kwargs))

    def __repr__(self) -> str:
        return f"<step {self.definition.name}>"


@overload
def step(fn: Callable[P, Awaitable[R]], /) -> StepFunction[P, R]: ...
@overload
def step(
    fn: None = None,
    /,
    *,
    name: str | None = None,
    max_retries: int = 3,
    retry_delay: Duration = "exponential",
    retry_base: Duration = "1s",
    max_retry_delay: Duration = "1h",
    jitter: float = 0.1,
    timeout: Duration | None = None,
    queue: str | None = None,
    resources: Mapping[str, float] | None = None,
) -> Callable[[Callable[P, Awaitable[R]]], StepFunction[P, R]]: ...


def step(
    fn: Callable[P, Awaitable[R]] | None = None,
    /,
    *,
    name: str | None = None,
    max_retries: int = 3,
    retry_delay: Duration = "exponential",
    retry_base: Duration = "1s",
    max_retry_delay: Duration = "1h",
    jitter: float = 0.1,
    timeout: Duration | None = None,
    queue: str | None = None,
    resources: Mapping[str, float] | None = None,
) -> StepFunction[P, R] | Callable[[Callable[P, Awaitable[R]]], StepFunction[P, R]]:
    """Declare a step: a unit of work run at least once, recorded exactly once.

    Use as ``@step``, ``@step()`` or ``@step(max_retries=5,
    retry_delay="exponential", timeout="30s")``. Sync functions run in a
    worker thread. With ``queue="openai"`` each attempt holds a place of
    that queue while it runs, under the queue's ``concurrency`` and ``rate``
    across all workers (docs/queues.md). ``resources`` (``{"num_cpus": 2,
    "num_gpus": 1, "memory": 2e9, "my_resource": 1}``) is what an attempt needs
    of the worker running it, for executors that place steps (Ray, docs/ray.md).

    A step raises :class:`~pyworkflow.RetryableError` to ask for a retry
    (optionally after ``retry_after``) or :class:`~pyworkflow.FatalError` to
    fail at once; any other exception is retried by the policy, and once the
    retries are spent the exception is raised in the workflow awaiting the step.

    ```python
    import httpx
    from pyworkflow import step

    @step(max_retries=5, retry_delay="exponential", timeout="30s")
    async def fetch(url: str) -> str:
        async with httpx.AsyncClient() as client:
            response = await client.get(url)
            response.raise_for_status()
            return response.text
    ```
    """
    policy = _policy(max_retries, retry_delay, retry_base, max_retry_delay, jitter)
    limit = parse_duration(timeout, what="timeout") if timeout is not None else None
    step_queue = _queue(queue)
    needs = _resources(resources)

    def decorate(func: Callable[P, Awaitable[R]]) -> StepFunction[P, R]:
        definition = StepDefinition(name or func.__name__, policy, limit, step_queue, needs)
        wrapped: StepFunction[P, R] = StepFunction(func, definition)
        if "<locals>" not in func.__qualname__:
            _register(definition.name, wrapped)
        return wrapped

    if fn is not None:
        return decorate(fn)
    return decorate


class Step:
    """Base class of class-based steps: override ``async def execute``.

    Retry policy via class attributes (``max_retries``, ``retry_delay``,
    ``retry_base``, ``max_retry_delay``, ``jitter``, ``timeout``); ``name``
    defaults to the class name. Inside a workflow: ``await MyStep()(args)``.

    ```python
    from pyworkflow import Step

    class SendEmail(Step):
        max_retries = 5
        timeout = "30s"

        async def execute(self, to: str, subject: str) -> str:
            return f"sent {subject!r} to {to}"

    # inside a workflow:
    #     message_id = await SendEmail()("ana@example.com", "Welcome")
    ```
    """

    name: ClassVar[str | None] = None
    max_retries: ClassVar[int] = 3
    retry_delay: ClassVar[Duration] = "exponential"
    retry_base: ClassVar[Duration] = "1s"
    max_retry_delay: ClassVar[Duration] = "1h"
    jitter: ClassVar[float] = 0.1
    timeout: ClassVar[Duration | None] = None
    #: The step queue its attempts take a place in (docs/queues.md); None: none.
    queue: ClassVar[str | None] = None
    #: What an attempt needs of its worker (``{"num_gpus": 1}``; Ray places steps by it).
    resources: ClassVar[Mapping[str, float] | None] = None

    _definition: ClassVar[StepDefinition]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        policy = _policy(
            cls.max_retries, cls.retry_delay, cls.retry_base, cls.max_retry_delay, cls.jitter
        )
        limit = parse_duration(cls.timeout, what="timeout") if cls.timeout is not None else None
        cls._definition = StepDefinition(
            cls.name or cls.__name__, policy, limit, _queue(cls.queue), _resources(cls.resources)
        )
        if "<locals>" not in cls.__qualname__:
            _register(cls._definition.name, cls)

    async def execute(self, *args: Any, **kwargs: Any) -> Any:
        """The step's body; override it."""
        raise NotImplementedError(f"{type(self).__name__}.execute is not implemented")

    def __call__(self, *args: Any, **kwargs: Any) -> Coroutine[Any, Any, Any]:
        return _invoke(self._definition, self.execute, args, kwargs)
