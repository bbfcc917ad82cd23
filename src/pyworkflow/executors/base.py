"""The executor interface: how a run that became due gets activated."""

from __future__ import annotations

import abc
import sys
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from pyworkflow.errors import ConfigError

if TYPE_CHECKING:
    from pyworkflow.models import Event, Run
    from pyworkflow.runtime import Runtime
    from pyworkflow.step import StepDefinition
    from pyworkflow.workflow import WorkflowDefinition

__all__ = ["Executor", "StartSlot"]


class StartSlot(abc.ABC):
    """A place in this process's worker, held for a run about to be created.

    :meth:`Executor.reserve_start` returns one; the journal creates the run
    leased to ``owner`` until ``lease_for`` from now, in the create's own
    transaction, then calls exactly one of :meth:`take` (created: activate
    it now) or :meth:`cancel` (not created). Both are called on the runtime's
    loop.
    """

    #: The lease owner the run is created with (the worker's name).
    owner: str
    #: How long that first lease lasts; the worker renews it from then on.
    lease_for: timedelta

    @abc.abstractmethod
    def take(self, run: Run, history: list[Event]) -> None:
        """Activate ``run``, created leased to :attr:`owner`, whose log is ``history``."""

    @abc.abstractmethod
    def cancel(self) -> None:
        """Give the place back: no run was created for it."""


class Executor(abc.ABC):
    """Runs activations of due runs somewhere.

    Storage is the source of truth: ``notify`` is a hint that work may be
    due; an executor that misses one only delays a run, because due runs are
    also found by polling ``Storage.claim_runs``.
    """

    name: str
    #: Whether step bodies run on other workers: activations then record
    #: ``step_scheduled`` and hand the steps to :meth:`dispatch_steps`
    #: instead of running them in-process.
    dispatches_steps: bool = False
    #: With ``dispatches_steps``: whether an activation whose workflow waits on
    #: one ready step and nothing else runs that step itself, recording
    #: ``step_started`` and the outcome as the local executor does, instead of
    #: dispatching it (one message and one worker hop less per step). Several
    #: ready steps (a ``gather``) are still dispatched together. A worker that
    #: dies mid-step leaves the run's lease to expire; recovery re-runs the step.
    inline_lone_steps: bool = False
    #: The ``worker`` that ``step_started`` names for a step an activation runs
    #: in this process (``None``: the activation's lease owner); the Celery
    #: executor names the worker's hostname, as its dispatched steps do.
    worker_name: str | None = None
    #: Seconds a dispatched step may wait for a worker before it counts as lost
    #: and is dispatched again.
    dispatch_timeout: float = 300.0
    #: Whether workflows run in other processes, which find them by importing
    #: the modules named in ``modules``: such an executor cannot run a workflow
    #: defined in the starting script (``__main__``), and ``start()`` refuses one
    #: (:meth:`check_startable`) instead of leaving its run pending forever.
    runs_workflows_elsewhere: bool = False
    #: Whether :meth:`dispatch_steps` takes ``definitions`` (each dispatched step's
    #: :class:`~pyworkflow.step.StepDefinition` by step id: its name, resources, queue).
    #: Off by default, so executors written before it keep their signature.
    wants_step_definitions: bool = False

    def check_startable(self, definition: WorkflowDefinition) -> None:
        """Raise :class:`ConfigError` if this executor's workers could never run ``definition``.

        With ``runs_workflows_elsewhere``, a workflow defined in ``__main__``
        (the script being run) is refused: other processes cannot import it.
        """
        if not self.runs_workflows_elsewhere or not definition.origin.startswith("__main__."):
            return
        script = getattr(sys.modules.get("__main__"), "__file__", None)
        where = f"the script {script}" if script else "the interactive session"
        qualname = definition.origin.removeprefix("__main__.")
        raise ConfigError(
            f"workflow {definition.name!r} is defined in {where} (module __main__), and the "
            f"{self.name!r} executor runs workflows in worker processes, which cannot import "
            "__main__: its run would stay pending forever. Move the workflow and its steps "
            "into a module (for example workflows.py), import it in the script "
            f"(from workflows import {qualname.partition('.')[0]}), and list that module in "
            "the 'modules' setting ([tool.pyworkflow] modules = [\"workflows\"], or "
            "PYWORKFLOW_MODULES=workflows) so the workers import it."
        )

    async def start(self, runtime: Runtime) -> None:
        """Called once when the process's runtime starts."""

    async def activate(
        self, runtime: Runtime, run: Run, owner: str, history: list[Event] | None = None
    ) -> bool:
        """Run one activation of ``run``, claimed by a worker of this process as ``owner``.

        In this process by default (``history``: the run's log, when the worker
        already has it). The worker holds the run's lease meanwhile and renews it;
        cancelling the call (lease lost, shutdown) stops the activation. The Ray
        executor runs it in a Ray worker process instead. True if it ran to its end.
        """
        from pyworkflow.engine import run_activation  # the engine imports this module

        return await run_activation(runtime, run, owner, history)

    def reserve_start(self) -> StartSlot | None:
        """A slot to run a new run of this process at once, or None (default: None).

        With a slot, the run is created already leased to this executor's
        worker and handed to it (no claim, no ``notify``); without one it is
        created free and announced with :meth:`notify`. If the process dies
        before the activation ends, the lease expires and any worker recovers
        the run.
        """
        return None

    def activating(self, run_id: str) -> bool:
        """Whether an activation of ``run_id`` is running in this process (default: False).

        Its end, if it ends the run, is then written through this process's
        journal, which wakes in-process waiters: ``get_result`` need not poll
        storage meanwhile.
        """
        return False

    async def stop(self) -> None:
        """Called when the runtime shuts down; finish or abandon work."""

    @abc.abstractmethod
    def notify(self, run_id: str | None = None) -> None:
        """Hint that ``run_id`` (or some run) is due now. Thread-safe."""

    def schedule(self, run_id: str, at: datetime) -> None:
        """Hint that ``run_id`` suspended until ``at`` (a timer). Default: nothing.

        The one announcement of a suspension (see :mod:`pyworkflow.engine.journal`):
        the local executor's embedded worker wakes then; executors with their
        own timers (Celery ``eta``) arm one here. The run is also found by
        polling or sweeping storage once due.
        """

    def inlines(self, definition: StepDefinition) -> bool:
        """With ``inline_lone_steps``: whether a lone ready step of ``definition`` runs inline.

        The default: every step. The Ray executor keeps a step that declares
        ``resources`` or a ``queue`` dispatched, so Ray places it and ``runs show``
        tells it waits for a worker.
        """
        return True

    def inline_body(
        self, definition: StepDefinition, body: Callable[..., Any]
    ) -> Callable[..., Any]:
        """What an inline attempt of a dispatching executor calls as the step's body.

        The default is ``body`` itself. An executor may wrap it in an
        ``async`` stand-in that returns its value or raises its exception (the
        Ray executor, in a Ray worker: a sync body in a thread that a step
        timeout or cancelled run interrupts); the activation records the
        attempt as the local executor does. The stand-in runs in the attempt's
        context (:func:`pyworkflow.context.current_step_ids`, ``get_step_context()``).
        """
        return body

    async def dispatch_steps(
        self,
        run_id: str,
        steps: Sequence[tuple[str, int]],
        *,
        definitions: Mapping[str, StepDefinition] | None = None,
    ) -> None:
        """Send ``(step_id, attempt)`` of ``run_id`` to workers (when ``dispatches_steps``).

        Called after the ``step_scheduled`` events are stored and each step
        has a ``queued:<attempt>`` lease; a worker runs one with
        :func:`pyworkflow.dispatch.run_dispatched_step`. With
        ``wants_step_definitions``, ``definitions`` maps each step id to its
        definition (for placement: resources, queue).
        """
        raise NotImplementedError(f"executor {self.name!r} does not dispatch steps")
