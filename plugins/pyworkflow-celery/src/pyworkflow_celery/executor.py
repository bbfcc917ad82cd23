"""The ``celery`` executor: activations and steps become Celery tasks."""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import Callable, Container, Mapping, Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from loguru import logger

from pyworkflow.config import Settings
from pyworkflow.executors.base import Executor
from pyworkflow.executors.local import import_modules
from pyworkflow.models import utcnow
from pyworkflow.redaction import redact_text
from pyworkflow_celery.settings import CelerySettings

if TYPE_CHECKING:
    from celery import Celery

    from pyworkflow.runtime import Runtime
    from pyworkflow.step import StepDefinition

__all__ = ["CeleryExecutor"]

#: Publishing gives up after this; the sweep then finds the run (storage is the truth).
_RETRY_POLICY = {"max_retries": 3, "interval_start": 0, "interval_step": 0.5, "interval_max": 1}


class CeleryExecutor(Executor):
    """Sends ``pyworkflow.activate`` / ``pyworkflow.step`` messages; Celery workers run them.

    Nothing runs in the calling process: ``start()`` in a script only records
    the run and sends its first activation.
    """

    name = "celery"
    dispatches_steps = True
    runs_workflows_elsewhere = True

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.options = CelerySettings.from_settings(settings)
        self.dispatch_timeout = self.options.dispatch_timeout
        # a worker that does not consume the step queue turns this off (worker_started)
        self.inline_lone_steps = self.options.inline_steps
        self._queues_known = False
        self._app: Celery | None = None
        self._sender = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="pw-celery")

    @property
    def app(self) -> Celery:
        if self._app is None:
            from pyworkflow_celery.app import create_app

            self._app = create_app(self.settings)
        return self._app

    def worker_started(self, hostname: str, queues: Container[str]) -> None:
        """Told by a worker's first activation its name and the queues it consumes.

        A lone step runs inline (``inline_steps``) only where step bodies may
        run: on a worker that also consumes the step queue, not one started
        with ``-Q`` naming the workflow queue alone. Its ``step_started`` names
        the worker's hostname, as a dispatched step's does.
        """
        if not self._queues_known:
            self._queues_known = True
            self.worker_name = hostname
            self.inline_lone_steps = self.options.inline_steps and (
                self.options.step_queue in queues
            )

    async def start(self, runtime: Runtime) -> None:
        import_modules(tuple(self.settings.modules) + self.options.modules)

    async def stop(self) -> None:
        await asyncio.get_running_loop().run_in_executor(None, self._sender.shutdown)

    def _send(self, name: str, args: list[Any], queue: str, eta: datetime | None = None) -> None:
        try:
            self.app.send_task(
                name, args=args, queue=queue, eta=eta, retry=True, retry_policy=_RETRY_POLICY
            )
        except Exception as exc:  # the sweep recovers what a lost message leaves behind
            logger.bind(task=name, args=args).warning(
                "could not send Celery task: {}", redact_text(str(exc))
            )

    def _submit(self, fn: Callable[[], None]) -> concurrent.futures.Future[None] | None:
        try:
            return self._sender.submit(fn)
        except RuntimeError:  # shut down: send inline
            fn()
            return None

    def notify(self, run_id: str | None = None) -> None:
        if run_id is None:
            return
        from pyworkflow_celery.app import ACTIVATE

        self._submit(lambda: self._send(ACTIVATE, [run_id], self.options.workflow_queue))

    def schedule(self, run_id: str, at: datetime) -> None:
        if at - utcnow() > timedelta(seconds=self.options.eta_horizon):
            return  # far timers: the sweep wakes the run
        from pyworkflow_celery.app import ACTIVATE

        eta = at + timedelta(milliseconds=10)
        self._submit(lambda: self._send(ACTIVATE, [run_id], self.options.workflow_queue, eta))

    async def dispatch_steps(
        self,
        run_id: str,
        steps: Sequence[tuple[str, int]],
        *,
        definitions: Mapping[str, StepDefinition] | None = None,
    ) -> None:
        from pyworkflow_celery.app import STEP

        def send_all() -> None:
            for step_id, attempt in steps:
                self._send(STEP, [run_id, step_id, attempt], self.options.step_queue)

        future = self._submit(send_all)
        if future is not None:
            await asyncio.wrap_future(future)
