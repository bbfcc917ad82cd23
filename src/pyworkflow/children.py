"""Child workflows from the workflow's side: ``start_child`` and its :class:`ChildHandle`.

Inside a workflow, awaiting a ``@workflow`` function (``await charge(order)``),
``await ChargeWorkflow().run_child(order)`` or ``await start_child(...)``
starts a **child run** and waits for its result; the engine's side is
:mod:`pyworkflow.engine.children` (docs/children.md).
"""

from __future__ import annotations

from collections.abc import Generator
from typing import Any, Literal

from pyworkflow import context as ctxmod
from pyworkflow.workflow import Workflow, WorkflowDefinition, WorkflowFunction, get_workflow

__all__ = ["PARENT_CLOSE_POLICIES", "ChildHandle", "ParentClosePolicy", "spawn", "start_child"]

#: What happens to a child still running when its parent ends (completes, fails,
#: is cancelled, times out or continues as new).
ParentClosePolicy = Literal["request_cancel", "terminate", "abandon"]
#: The accepted parent-close policies.
PARENT_CLOSE_POLICIES: tuple[str, ...] = ("request_cancel", "terminate", "abandon")


class ChildHandle:
    """A child run started by :func:`start_child`: await it for its result.

    ``run_id`` is known at once (derived from the parent's run id and the
    call's correlation id). ``await handle`` returns the child's result or
    raises :class:`~pyworkflow.errors.ChildWorkflowError` with the child's
    error as ``__cause__``; ``await handle.cancel()`` asks the child to stop.
    """

    __slots__ = ("_context", "_future", "correlation_id", "run_id", "workflow")

    def __init__(
        self,
        context: ctxmod.WorkflowContext,
        correlation_id: str,
        run_id: str,
        workflow: str,
        future: Any,
    ) -> None:
        self._context = context
        self._future = future
        self.correlation_id = correlation_id
        #: The child's run id.
        self.run_id = run_id
        #: The child's workflow name.
        self.workflow = workflow

    def __await__(self) -> Generator[Any, None, Any]:
        return self._future.__await__()  # type: ignore[no-any-return]  # an asyncio future

    async def cancel(self) -> None:
        """Ask the child to stop (recorded once in the parent's log; no-op once it ended).

        The child gets a cancellation as from ``pyworkflow.cancel``; awaiting
        the handle then raises :class:`~pyworkflow.errors.ChildWorkflowError`
        caused by :class:`~pyworkflow.errors.WorkflowCancelledError` (unless
        the child catches the cancellation and returns).
        """
        self._context.cancel_child(self.correlation_id)

    def __repr__(self) -> str:
        return f"<child run {self.run_id} of workflow {self.workflow!r}>"


def _definition(target: Any) -> tuple[str, WorkflowDefinition | None]:
    """The workflow name of ``target`` and its definition, if this process knows it."""
    if isinstance(target, str):
        if not target:
            raise ValueError("start_child(): the workflow name must not be empty")
        try:
            return target, get_workflow(target)
        except LookupError:  # started by name: a worker that imports it runs the child
            return target, None
    if isinstance(target, WorkflowFunction):
        return target.definition.name, target.definition
    if isinstance(target, type) and issubclass(target, Workflow):
        return target.definition.name, target.definition
    if isinstance(target, Workflow):
        return type(target).definition.name, type(target).definition
    raise TypeError(
        "start_child(): expected a @workflow function, a Workflow subclass or a workflow "
        f"name, got {target!r}"
    )


def start_child(
    workflow: Any,
    *args: Any,
    parent_close_policy: ParentClosePolicy = "request_cancel",
    **kwargs: Any,
) -> ChildHandle:
    """Start a child run of ``workflow`` from inside a workflow; returns its handle at once.

    ``workflow`` is a ``@workflow`` function, a ``Workflow`` class or a
    workflow name (a workflow this worker does not import is started by name:
    a worker that imports it runs it). The child's run id is derived from this
    run's id and the call's correlation id, so replays, crashes and retries
    never start it twice. ``parent_close_policy`` says what happens to the
    child if this run ends while it still runs: ``"request_cancel"`` (the
    default: a cancellation is delivered into the child), ``"terminate"``
    (the child ends ``cancelled`` at once, running no more code) or
    ``"abandon"`` (it runs on). ``RuntimeError`` outside a workflow or in a
    step body; ``TypeError`` when the arguments do not fit a known workflow.

    ```python
    from pyworkflow import start_child, workflow

    @workflow
    async def ship(order_id: str) -> str:
        return f"shipped {order_id}"

    @workflow
    async def ship_all(order_ids: list[str]) -> list[str]:
        handles = [start_child(ship, order_id) for order_id in order_ids]  # run in parallel
        return [await handle for handle in handles]
    ```
    """
    return spawn(workflow, args, kwargs, parent_close_policy)


def spawn(workflow: Any, args: tuple[Any, ...], kwargs: dict[str, Any], policy: str) -> ChildHandle:
    """:func:`start_child` with its arguments as they are (``await wf(...)`` calls it)."""
    if policy not in PARENT_CLOSE_POLICIES:
        raise ValueError(
            f"start_child(): unknown parent_close_policy {policy!r}; "
            f"use one of {', '.join(PARENT_CLOSE_POLICIES)}"
        )
    if ctxmod._step.get() is not None:
        raise RuntimeError(
            "start_child() cannot be called inside a step body; call it from the workflow"
        )
    ctx = ctxmod._workflow.get()
    if ctx is None:
        raise RuntimeError(
            "start_child() can only be called inside a workflow; use pyworkflow.start() "
            "to start a run from other code"
        )
    name, definition = _definition(workflow)
    if definition is not None:
        definition.check_arguments(args, kwargs)
    cid, child_id, future = ctx.start_child(name, definition, tuple(args), dict(kwargs), policy)
    return ChildHandle(ctx, cid, child_id, name, future)
