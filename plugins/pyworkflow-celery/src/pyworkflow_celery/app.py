"""The Celery app workers and beat run: ``celery -A pyworkflow_celery.app worker``.

Three tasks, each carrying ids only (inputs and results live in storage):

- ``pyworkflow.activate(run_id)`` on the workflow queue: lease the run if it
  is due and activate it (replay, record, dispatch steps, suspend).
- ``pyworkflow.step(run_id, step_id, attempt)`` on the step queue: run one
  attempt of a dispatched step.
- ``pyworkflow.sweep()`` on the workflow queue, sent by Celery beat every
  ``sweep_interval``: find due runs and lost steps, send activations.

The app is configured from the same settings as the rest of PyWorkflow
(``[tool.pyworkflow]``, ``[tool.pyworkflow.celery]``, ``PYWORKFLOW_*``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from celery import Celery, Task, signals
from loguru import logger

from pyworkflow import dispatch, runtime
from pyworkflow.config import Settings
from pyworkflow.redaction import redact_text
from pyworkflow_celery.executor import CeleryExecutor
from pyworkflow_celery.settings import CelerySettings

__all__ = ["ACTIVATE", "STEP", "SWEEP", "app", "create_app"]

ACTIVATE = "pyworkflow.activate"
STEP = "pyworkflow.step"
SWEEP = "pyworkflow.sweep"


def _runtime() -> runtime.Runtime:
    rt = runtime.get_runtime()
    if rt.settings.executor != "celery":
        raise RuntimeError(
            f"this Celery worker's PyWorkflow executor is {rt.settings.executor!r}; "
            'set executor = "celery" in [tool.pyworkflow] (or PYWORKFLOW_EXECUTOR=celery)'
        )
    return rt


def _activate(task: Task, run_id: str) -> bool:
    rt = _runtime()
    hostname = task.request.hostname or "celery"
    if isinstance(rt.executor, CeleryExecutor):
        rt.executor.worker_started(hostname, task.app.amqp.queues.consume_from)
    owner = dispatch.worker_id(hostname)
    return rt.call(dispatch.activate_run, rt, run_id, owner)


def _step(task: Task, run_id: str, step_id: str, attempt: int) -> str:
    rt = _runtime()
    worker = task.request.hostname or "celery"
    return rt.call(dispatch.run_dispatched_step, rt, run_id, step_id, int(attempt), worker)


def _sweep(task: Task) -> int:
    rt = _runtime()
    run_ids = rt.call(dispatch.sweep, rt, dispatch.worker_id(task.request.hostname or "beat"))
    queue = CelerySettings.from_settings(rt.settings).workflow_queue
    for run_id in run_ids:
        task.app.send_task(ACTIVATE, args=[run_id], queue=queue)
    if run_ids:
        logger.info("sweep sent {} activation(s)", len(run_ids))
    return len(run_ids)


def _survive_broker_restarts() -> None:
    """Keep a worker alive when Redis goes away while it holds unacked messages.

    kombu's Redis transport (5.7) restores unacked messages when the
    connection drops, through that already-closed connection, and the
    ``AttributeError`` kills the worker ("Unrecoverable error"). Skipping the
    restore is safe here: the messages stay in Redis's unacked set (redelivered
    after the visibility timeout) and PyWorkflow's sweep recovers the runs anyway.
    """
    try:
        from kombu.transport import redis as kombu_redis
    except ImportError:  # redis transport not installed
        return
    qos: Any = kombu_redis.QoS
    if getattr(qos.restore_unacked, "_pyworkflow", False):
        return
    original: Callable[..., Any] = qos.restore_unacked

    def restore_unacked(self: Any, client: Any = None) -> Any:
        try:
            return original(self, client)
        except AttributeError as exc:
            logger.warning(
                "broker connection gone; unacked messages left to Redis ({})",
                redact_text(str(exc)),
            )
            return None

    restore_unacked._pyworkflow = True  # type: ignore[attr-defined]
    qos.restore_unacked = restore_unacked


def _worker_queues(options: CelerySettings) -> dict[str, dict[str, str]]:
    """The queues a worker started without ``-Q`` consumes: workflow and step queue.

    Each is declared as Celery declares a queue it creates on first use (an
    exchange and a routing key of the queue's name), so ``-Q`` can still pick
    one of them and messages sent before keep their route.
    """
    names = (options.workflow_queue, options.step_queue)
    return {name: {"exchange": name, "routing_key": name} for name in names}


def create_app(settings: Settings | None = None) -> Celery:
    """A Celery app configured for PyWorkflow from ``settings`` (default: this process's)."""
    settings = settings or runtime.current_settings()
    options = CelerySettings.from_settings(settings)
    app = Celery("pyworkflow", broker=options.broker_url, backend=options.result_backend)
    app.conf.update(
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        task_ignore_result=True,
        task_default_queue=options.workflow_queue,
        # a worker started without -Q consumes every queue listed here: both
        task_queues=_worker_queues(options),
        task_routes={
            ACTIVATE: {"queue": options.workflow_queue},
            SWEEP: {"queue": options.workflow_queue},
            STEP: {"queue": options.step_queue},
        },
        # at-least-once delivery; duplicates find their work taken and are ignored
        task_acks_late=True,
        worker_prefetch_multiplier=1,
        broker_connection_retry_on_startup=True,
        enable_utc=True,
        timezone="UTC",
        imports=tuple(settings.modules) + options.modules,
        beat_schedule={
            "pyworkflow-sweep": {
                "task": SWEEP,
                "schedule": options.sweep_interval,
                "options": {"queue": options.workflow_queue, "expires": options.sweep_interval},
            }
        },
    )
    app.task(name=ACTIVATE, bind=True)(_activate)
    app.task(name=STEP, bind=True)(_step)
    app.task(name=SWEEP, bind=True)(_sweep)
    return app


def _forget_inherited_runtime(**_: Any) -> None:
    """A forked pool process starts its own runtime (threads do not survive fork)."""
    runtime._runtime = None


def _stop_runtime(**_: Any) -> None:
    runtime.shutdown()


def _flush_spans(**_: Any) -> None:
    """A prefork pool process exits without atexit handlers: export its batched spans first."""
    from pyworkflow.tracing import flush_tracing

    flush_tracing()


signals.worker_process_init.connect(_forget_inherited_runtime, weak=False)
signals.worker_process_shutdown.connect(_flush_spans, weak=False)
signals.worker_shutdown.connect(_stop_runtime, weak=False)


_survive_broker_restarts()
app = create_app()
