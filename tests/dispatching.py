"""An in-process executor that dispatches steps (a unit-test stand-in for Celery/Ray).

It drives the same protocol the Celery plugin does (``activate_run``,
``run_dispatched_step``, ``sweep``) with anyio tasks instead of queues, so the
whole engine test set can run with step dispatch on every storage. The real
distributed executors are tested with real servers in their plugins.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, ClassVar

import anyio
import pluggy
import pytest

from pyworkflow import dispatch, plugins
from pyworkflow.config import Settings
from pyworkflow.executors.base import Executor
from pyworkflow.executors.local import import_modules
from pyworkflow.models import utcnow

if TYPE_CHECKING:
    from pyworkflow.runtime import Runtime

hookimpl = pluggy.HookimplMarker("pyworkflow")


class InProcessDispatch(Executor):
    """Activations, dispatched steps and sweeps as tasks on the runtime loop."""

    name = "inprocess-dispatch"
    dispatches_steps = True
    dispatch_timeout = 3.0
    #: step messages to drop (to simulate lost messages); counted down
    drop_steps = 0
    #: (step id, attempt) messages to drop once each
    drop_once: ClassVar[set[tuple[str, int]]] = set()

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.runtime: Runtime | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self.owner = dispatch.worker_id("inproc")
        self.step_runs: list[tuple[str, str, int, str]] = []
        #: step messages delivered: (run id, step id, attempt)
        self.messages: list[tuple[str, str, int]] = []

    async def start(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.loop = asyncio.get_running_loop()
        import_modules(self.settings.modules)
        runtime.task_group.start_soon(self._sweeper)

    def _spawn(self, fn: Callable[..., object], *args: object) -> None:
        runtime, loop = self.runtime, self.loop
        if runtime is None or loop is None:
            return

        def go() -> None:
            runtime.task_group.start_soon(fn, *args)  # type: ignore[arg-type]

        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            go()
        else:
            loop.call_soon_threadsafe(go)

    async def _activate(self, run_id: str) -> None:
        assert self.runtime is not None
        await dispatch.activate_run(self.runtime, run_id, self.owner)

    async def _step(self, run_id: str, step_id: str, attempt: int) -> None:
        assert self.runtime is not None
        outcome = await dispatch.run_dispatched_step(
            self.runtime, run_id, step_id, attempt, "inproc"
        )
        self.step_runs.append((run_id, step_id, attempt, outcome))

    async def _at(self, run_id: str, at: datetime) -> None:
        await anyio.sleep(max(0.0, (at - utcnow()).total_seconds()))
        await self._activate(run_id)

    async def _sweeper(self) -> None:
        assert self.runtime is not None
        while True:
            for run_id in await dispatch.sweep(self.runtime, "inproc"):
                self._spawn(self._activate, run_id)
            await anyio.sleep(0.2)

    def notify(self, run_id: str | None = None) -> None:
        if run_id is not None:
            self._spawn(self._activate, run_id)

    def schedule(self, run_id: str, at: datetime) -> None:
        self._spawn(self._at, run_id, at)

    async def dispatch_steps(self, run_id: str, steps: Sequence[tuple[str, int]]) -> None:
        for step_id, attempt in steps:
            if InProcessDispatch.drop_steps > 0:
                InProcessDispatch.drop_steps -= 1
                continue
            if (step_id, attempt) in InProcessDispatch.drop_once:
                InProcessDispatch.drop_once.discard((step_id, attempt))
                continue
            self.messages.append((run_id, step_id, attempt))
            self._spawn(self._step, run_id, step_id, attempt)


class InProcessInline(InProcessDispatch):
    """Like :class:`InProcessDispatch`, but a lone ready step runs in its activation.

    As the Celery executor does by default (``inline_steps``): only steps
    awaited together (``gather``) are dispatched.
    """

    name = "inprocess-inline"
    inline_lone_steps = True
    worker_name = "inproc-activation"


class _Plugin:
    @hookimpl
    def pyworkflow_register_executors(
        self, register: Callable[[str, Callable[[Settings], Executor]], None]
    ) -> None:
        register("inprocess-dispatch", InProcessDispatch)
        register("inprocess-inline", InProcessInline)


@pytest.fixture
def dispatching_executor() -> Iterator[None]:
    """Make ``executor="inprocess-dispatch"`` and ``"inprocess-inline"`` available for a test."""
    pm = plugins.make_plugin_manager(load_entrypoints=True)
    pm.register(_Plugin(), name="inprocess-dispatch-tests")
    plugins.reset_plugin_manager(pm)
    try:
        yield
    finally:
        plugins.reset_plugin_manager(None)
