"""Workflows: ``@workflow`` functions, ``Workflow`` classes, and the registry."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, Any, ClassVar, Generic, ParamSpec, TypeVar, overload

import attrs

from pyworkflow.durations import Duration, parse_duration
from pyworkflow.errors import WorkflowNotFoundError

if TYPE_CHECKING:
    from pyworkflow.children import ChildHandle
    from pyworkflow.schedules.spec import Cron

__all__ = [
    "Workflow",
    "WorkflowDefinition",
    "WorkflowFunction",
    "get_workflow",
    "registered_workflows",
    "workflow",
]

P = ParamSpec("P")
R = TypeVar("R")


@attrs.frozen
class WorkflowDefinition:
    """A registered workflow: its name, version and how to run it."""

    name: str
    version: str | None
    make_body: Callable[[], Callable[..., Awaitable[Any]]]
    origin: str
    #: The default workflow timeout of its runs (``@workflow(timeout=...)``), None: none.
    timeout: timedelta | None = None
    #: The queue its runs go to unless ``start_workflow(queue=...)`` says otherwise.
    queue: str | None = None
    #: The schedule declared with it (``@workflow(schedule=...)``), None: none.
    schedule: Cron | None = None
    #: False: its runs are transient (``@workflow(durable=False)``, docs/transient.md).
    durable: bool = True

    def check_arguments(self, args: Sequence[Any], kwargs: Mapping[str, Any]) -> None:
        """Raise ``TypeError`` naming the signature unless the arguments bind to the workflow.

        A body with no introspectable signature passes (the run will tell).
        """
        try:
            signature = inspect.signature(self.make_body())
        except (TypeError, ValueError):
            return
        signature = signature.replace(return_annotation=inspect.Signature.empty)
        try:
            signature.bind(*args, **kwargs)
        except TypeError as exc:
            raise TypeError(
                f"arguments do not fit workflow {self.name}{signature}: {exc}"
            ) from None


def workflow_timeout(value: Duration | None, *, what: str = "workflow timeout") -> timedelta | None:
    """``value`` as a workflow timeout: None, or a positive duration of at most 100 years.

    Raises ``ValueError`` naming the value and the accepted forms.
    """
    if value is None:
        return None
    timeout = parse_duration(value, what=what)
    if timeout <= timedelta(0):
        raise ValueError(
            f"invalid {what} {value!r}: must be positive; pass a duration such as '30m' or "
            "'1h', or None for no timeout"
        )
    return timeout


_registry: dict[str, WorkflowDefinition] = {}


def _register(definition: WorkflowDefinition) -> None:
    existing = _registry.get(definition.name)
    if existing is not None and existing.origin != definition.origin:
        raise ValueError(
            f"workflow name {definition.name!r} is already used by {existing.origin}; "
            f"pass another name for {definition.origin}"
        )
    _registry[definition.name] = definition


def get_workflow(name: str) -> WorkflowDefinition:
    """The workflow registered as ``name`` in this process."""
    try:
        return _registry[name]
    except KeyError:
        known = ", ".join(sorted(_registry)) or "none"
        raise WorkflowNotFoundError(
            f"no workflow named {name!r} is registered in this process (registered: {known}); "
            "add its module to the 'modules' config key so workers import it"
        ) from None


def registered_workflows() -> dict[str, WorkflowDefinition]:
    """All workflows registered in this process, by name."""
    return dict(_registry)


class WorkflowFunction(Generic[P, R]):
    """What ``@workflow`` returns: pass it to ``start()``.

    Called inside a workflow, it starts a child run and returns its
    :class:`~pyworkflow.children.ChildHandle` (``await charge(order)`` waits
    for the child's result); called anywhere else (a step body, plain code),
    it runs the body plainly.
    """

    def __init__(
        self,
        fn: Callable[P, Awaitable[R]],
        name: str,
        version: str | None,
        timeout: Duration | None = None,
        queue: str | None = None,
        schedule: str | Cron | None = None,
        durable: bool = True,
    ) -> None:
        self.fn = fn
        origin = f"{fn.__module__}.{fn.__qualname__}"
        limit = workflow_timeout(timeout, what=f"timeout of workflow {name!r}")
        self.definition = WorkflowDefinition(
            name,
            version,
            lambda: fn,
            origin,
            limit,
            _queue(queue, name),
            _schedule(schedule, name),
            _durable(durable, name, queue, schedule),
        )
        functools.update_wrapper(self, fn)
        _register(self.definition)

    @property
    def name(self) -> str:
        return self.definition.name

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> Awaitable[R]:
        from pyworkflow import context as ctxmod

        if ctxmod._workflow.get() is not None and ctxmod._step.get() is None:
            from pyworkflow.children import spawn

            return spawn(self, args, kwargs, "request_cancel")
        return self.fn(*args, **kwargs)

    def __repr__(self) -> str:
        return f"<workflow {self.definition.name}>"


@overload
def workflow(fn: Callable[P, Awaitable[R]], /) -> WorkflowFunction[P, R]: ...
@overload
def workflow(
    fn: None = None,
    /,
    *,
    name: str | None = None,
    version: str | None = None,
    timeout: Duration | None = None,
    queue: str | None = None,
    schedule: str | Cron | None = None,
    durable: bool = True,
) -> Callable[[Callable[P, Awaitable[R]]], WorkflowFunction[P, R]]: ...


def workflow(
    fn: Callable[P, Awaitable[R]] | None = None,
    /,
    *,
    name: str | None = None,
    version: str | None = None,
    timeout: Duration | None = None,
    queue: str | None = None,
    schedule: str | Cron | None = None,
    durable: bool = True,
) -> WorkflowFunction[P, R] | Callable[[Callable[P, Awaitable[R]]], WorkflowFunction[P, R]]:
    """Declare a durable workflow: ``@workflow`` or ``@workflow(name=..., version=...)``.

    The body must be deterministic: do I/O in steps and take time, randomness
    and ids from ``pyworkflow.now()``, ``random()`` and ``uuid4()``.
    ``timeout`` (``"1h"``, seconds, a timedelta) bounds each run, from its
    start and across suspensions (docs/timeouts.md); ``start_workflow(...,
    timeout=)`` overrides it per run.
    ``queue`` is the queue its runs go to by default (docs/queues.md);
    ``schedule`` a cron expression or a :class:`~pyworkflow.Cron` that starts
    runs on its own (docs/schedules.md).
    ``durable=False`` makes its runs **transient**: ``execute()`` runs them
    in the caller's process with no storage writes, nothing to resume after
    a crash, and no hooks (docs/transient.md).

    ```python
    from pyworkflow import sleep, step, workflow

    @step(max_retries=5)
    async def charge(order_id: str) -> str:
        return f"charged {order_id}"

    @workflow(timeout="7d")
    async def checkout(order_id: str) -> str:
        receipt = await charge(order_id)
        await sleep("1h")  # durable: the process may exit meanwhile
        return receipt
    ```
    """

    def decorate(func: Callable[P, Awaitable[R]]) -> WorkflowFunction[P, R]:
        return WorkflowFunction(
            func, name or func.__name__, version, timeout, queue, schedule, durable
        )

    if fn is not None:
        return decorate(fn)
    return decorate


class Workflow:
    """Base class of class-based workflows: set ``name`` and override ``async def run``.

    ``run_id = await MyWorkflow().start(args)`` starts a run; a new instance
    is made for every activation, so keep state in local variables.

    ```python
    from pyworkflow import Workflow, sleep

    class Onboarding(Workflow):
        name = "onboarding"

        async def run(self, user_id: str) -> str:
            await sleep("1d")
            return f"onboarded {user_id}"

    run_id = Onboarding().start_sync("u-1")
    ```
    """

    name: ClassVar[str | None] = None
    version: ClassVar[str | None] = None
    #: Each run's workflow timeout (``"1h"``, seconds, a timedelta); None: no timeout.
    timeout: ClassVar[Duration | None] = None
    #: The queue its runs go to by default (docs/queues.md); None: none.
    queue: ClassVar[str | None] = None
    #: A cron expression or :class:`~pyworkflow.Cron` that starts runs on its own.
    schedule: ClassVar[str | Cron | None] = None
    #: False: its runs are transient, run in-process by ``execute()`` (docs/transient.md).
    durable: ClassVar[bool] = True
    definition: ClassVar[WorkflowDefinition]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if cls.__dict__.get("name") is None:
            cls.name = cls.__name__
        origin = f"{cls.__module__}.{cls.__qualname__}"
        name = cls.name or cls.__name__
        limit = workflow_timeout(cls.timeout, what=f"timeout of workflow {name!r}")
        cls.definition = WorkflowDefinition(
            name,
            cls.version,
            lambda: cls().run,
            origin,
            limit,
            _queue(cls.queue, name),
            _schedule(cls.schedule, name),
            _durable(cls.durable, name, cls.queue, cls.schedule),
        )
        _register(cls.definition)

    async def run(self, *args: Any, **kwargs: Any) -> Any:
        """The workflow body; override it."""
        raise NotImplementedError(f"{type(self).__name__}.run is not implemented")

    def run_child(self, *args: Any, **kwargs: Any) -> ChildHandle:
        """Inside a workflow: start a child run of this workflow; await the handle for its result.

        ``await ChargeWorkflow().run_child(order)``; for a parent-close policy
        use :func:`pyworkflow.start_child` (``start_child(ChargeWorkflow, order,
        parent_close_policy="abandon")``).
        """
        from pyworkflow.children import spawn

        return spawn(type(self), args, kwargs, "request_cancel")

    async def start(self, *args: Any, **kwargs: Any) -> str:
        """Start a run of this workflow; returns its run id at once."""
        from pyworkflow.client import astart

        return await astart(type(self), *args, **kwargs)

    def start_sync(self, *args: Any, **kwargs: Any) -> str:
        """``start`` for synchronous code."""
        from pyworkflow.client import start

        return start(type(self), *args, **kwargs)

    async def execute(self, *args: Any, **kwargs: Any) -> Any:
        """Run this workflow and return its result (a transient one in-process, at once).

        See :func:`pyworkflow.aexecute`.
        """
        from pyworkflow.client import aexecute

        return await aexecute(type(self), *args, **kwargs)

    def execute_sync(self, *args: Any, **kwargs: Any) -> Any:
        """``execute`` for synchronous code."""
        from pyworkflow.client import execute

        return execute(type(self), *args, **kwargs)


def _queue(queue: object, name: str) -> str | None:
    if queue is None:
        return None
    from pyworkflow.queues import check_queue_name

    return check_queue_name(queue, f"queue of workflow {name!r}")


def _durable(durable: object, name: str, queue: object, schedule: object) -> bool:
    """``durable`` checked: a bool; a transient workflow has no run queue and no schedule."""
    if not isinstance(durable, bool):
        raise TypeError(f"durable of workflow {name!r} must be True or False, got {durable!r}")
    if not durable and queue is not None:
        raise ValueError(
            f"workflow {name!r} is transient (durable=False) and has queue={queue!r}: a transient "
            "run is never queued (it runs at once, in the caller's process); drop one of them"
        )
    if not durable and schedule is not None:
        raise ValueError(
            f"workflow {name!r} is transient (durable=False) and has a schedule: a schedule "
            "starts stored runs from a worker; drop one of them"
        )
    return durable


def _schedule(schedule: object, name: str) -> Cron | None:
    if schedule is None:
        return None
    from pyworkflow.schedules.spec import Cron

    if isinstance(schedule, str):
        schedule = Cron(schedule)
    if not isinstance(schedule, Cron):
        raise TypeError(
            f"schedule of workflow {name!r} must be a cron string or pyworkflow.Cron, "
            f"got {type(schedule).__name__}"
        )
    try:
        schedule.check()
    except (TypeError, ValueError) as exc:
        raise type(exc)(f"schedule of workflow {name!r}: {exc}") from None
    return schedule


def definition_of(target: Any) -> WorkflowDefinition:
    """The definition behind a workflow function, class, instance or name."""
    if isinstance(target, str):
        return get_workflow(target)
    if isinstance(target, WorkflowFunction):
        return target.definition
    if isinstance(target, type) and issubclass(target, Workflow):
        return target.definition
    if isinstance(target, Workflow):
        return type(target).definition
    raise TypeError(
        f"expected a @workflow function, a Workflow subclass or a workflow name, got {target!r}"
    )
