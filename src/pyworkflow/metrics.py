"""Prometheus metrics: a built-in observer plugin, on with ``[tool.pyworkflow.metrics]``.

Off by default: with ``enabled = true`` (or ``pyworkflow worker --metrics-port``)
each runtime of the process registers :class:`MetricsObserver` with the plugin
manager. It counts from the two observer hooks only
(``pyworkflow_events_appended`` and ``pyworkflow_run_status_changed``), so the
engine makes no metrics calls of its own and a process with metrics off pays
nothing.

**Which process counts what.** The hooks fire in the process that appended the
events: the process that starts a run counts ``runs_started``; the process that
runs its activations (an embedded worker, ``pyworkflow worker``, a Celery or Ray
worker running the activation) counts steps, suspensions and run ends. A
dispatched step's attempt is counted where it runs (a Celery worker). Each
process exports only its own counts, so scrape every process, or use
prometheus_client's multiprocess mode (``PROMETHEUS_MULTIPROC_DIR``, see
``docs/observability.md``) for processes of one host.

Queue depth and schedule lag are gauges read from storage when scraped, by
whichever process exports them.

``prometheus_client`` is an optional dependency (``pip install
pyworkflow[metrics]``): this module imports without it, and turning metrics on
without it is a :class:`~pyworkflow.errors.ConfigError`.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import attrs
from loguru import logger

from pyworkflow.errors import ConfigError
from pyworkflow.hookspecs import hookimpl
from pyworkflow.models import Event, EventType, RunStatus, utcnow
from pyworkflow.plugin_options import option_bool, option_text, parse_plugin_table

if TYPE_CHECKING:
    from prometheus_client.registry import CollectorRegistry

    from pyworkflow.config import Settings
    from pyworkflow.models import QueueStats
    from pyworkflow.storage.base import Storage

__all__ = [
    "DEFAULT_HOST",
    "MULTIPROC_ENV",
    "PLUGIN_NAME",
    "STEP_DURATION_BUCKETS",
    "TABLE",
    "Metrics",
    "MetricsObserver",
    "MetricsOptions",
    "get_metrics",
    "install_if_enabled",
    "metrics_options",
    "render_metrics",
    "reset_metrics",
    "start_metrics_server",
]

#: The config table: ``[tool.pyworkflow.metrics]`` (``PYWORKFLOW_METRICS__<OPTION>``).
TABLE = "metrics"
#: The name the observer is registered under with the plugin manager.
PLUGIN_NAME = "pyworkflow_metrics"
#: prometheus_client's multiprocess mode: the directory every process writes its values to.
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
#: Where ``pyworkflow worker --metrics-port`` listens unless told otherwise.
DEFAULT_HOST = "127.0.0.1"
#: Buckets of ``pyworkflow_step_duration_seconds``: 5 ms to an hour.
STEP_DURATION_BUCKETS = (
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0
)  # fmt: skip
#: How long a scrape waits for storage's queue and schedule figures.
SCRAPE_TIMEOUT = 10.0
#: Step attempts whose start is remembered (for their duration) at most; the oldest go first.
_STARTS_KEPT = 10_000

_STEP_OUTCOMES = {
    EventType.STEP_COMPLETED: "completed",
    EventType.STEP_FAILED: "failed",
    EventType.STEP_RETRYING: "retrying",
}


# ----- options -----


def _option_port(value: Any) -> int:
    if isinstance(value, bool | float):
        raise TypeError("a port number (1-65535)")
    try:
        port = int(value)
    except (TypeError, ValueError):
        raise TypeError("a port number (1-65535)") from None
    if not 0 < port < 65536:
        raise TypeError("a port number (1-65535)")
    return port


@attrs.frozen(kw_only=True)
class MetricsOptions:
    """``[tool.pyworkflow.metrics]``, parsed."""

    #: Whether this process counts (and its server exports ``/metrics``).
    enabled: bool = False
    #: Interface ``pyworkflow worker`` serves metrics on (``--metrics-host``).
    worker_host: str = DEFAULT_HOST
    #: Port ``pyworkflow worker`` serves metrics on (``--metrics-port``); None: no server.
    worker_port: int | None = None


def metrics_options(settings: Settings) -> MetricsOptions:
    """The metrics options of ``settings``; a bad value is a ConfigError naming the option."""
    values = parse_plugin_table(
        settings,
        TABLE,
        {"enabled": option_bool, "worker_host": option_text, "worker_port": _option_port},
    )
    return MetricsOptions(**values)


# ----- the metrics -----


class Metrics:
    """This process's PyWorkflow metrics, in a registry of their own.

    :attr:`registry` holds the counters and histograms; :attr:`exposition` is
    what a scrape renders: the same registry plus the storage gauges, or, in
    multiprocess mode, the values of every process of the directory.
    """

    def __init__(self) -> None:
        try:
            from prometheus_client import CollectorRegistry, Counter, Histogram
        except ImportError:
            raise ConfigError(
                "metrics are on ([tool.pyworkflow.metrics] enabled, or --metrics-port) but "
                "prometheus_client is not installed; pip install 'pyworkflow[metrics]'"
            ) from None
        multiproc = _multiproc_dir()
        self.registry = CollectorRegistry()
        registry = self.registry
        self.runs_started = Counter(
            "pyworkflow_runs_started_total",
            "Runs created (workflow_started appended), by workflow.",
            ["workflow"],
            registry=registry,
        )
        self.runs_ended = Counter(
            "pyworkflow_runs_ended_total",
            "Runs that ended, by workflow and status (completed, failed, cancelled, continued).",
            ["workflow", "status"],
            registry=registry,
        )
        self.runs_timed_out = Counter(
            "pyworkflow_runs_timed_out_total",
            "Runs failed by their workflow timeout (also counted as failed), by workflow.",
            ["workflow"],
            registry=registry,
        )
        self.runs_suspended = Counter(
            "pyworkflow_runs_suspended_total",
            "Activations that ended by suspending a run (workflow_suspended appended).",
            registry=registry,
        )
        self.step_attempts = Counter(
            "pyworkflow_step_attempts_total",
            "Step attempts started (step_started appended), by step.",
            ["step"],
            registry=registry,
        )
        self.step_outcomes = Counter(
            "pyworkflow_step_outcomes_total",
            "Step attempts that ended, by step and outcome (completed, failed, retrying).",
            ["step", "outcome"],
            registry=registry,
        )
        self.step_retries = Counter(
            "pyworkflow_step_retries_total",
            "Retries scheduled after a failed step attempt (step_retrying), by step.",
            ["step"],
            registry=registry,
        )
        self.step_duration = Histogram(
            "pyworkflow_step_duration_seconds",
            "Step attempt duration from step_started to its outcome, by step and outcome.",
            ["step", "outcome"],
            buckets=STEP_DURATION_BUCKETS,
            registry=registry,
        )
        storage_gauges = StorageCollector()
        if multiproc is None:
            registry.register(storage_gauges)
            self.exposition: CollectorRegistry = registry
        else:
            from prometheus_client import multiprocess

            self.exposition = CollectorRegistry()
            multiprocess.MultiProcessCollector(  # type: ignore[no-untyped-call,unused-ignore]
                self.exposition, path=multiproc
            )
            self.exposition.register(storage_gauges)
        #: Whether values are shared through ``PROMETHEUS_MULTIPROC_DIR``.
        self.multiprocess = multiproc is not None
        self._lock = threading.Lock()
        self._starts: OrderedDict[tuple[str, str | None, Any], datetime] = OrderedDict()
        self._timed_out: OrderedDict[str, None] = OrderedDict()

    def observe_events(self, run_id: str, events: Sequence[Event]) -> None:
        """Count what ``events`` (just appended to run ``run_id``) say."""
        for event in events:
            kind = event.type
            payload = event.payload
            if kind == EventType.WORKFLOW_STARTED:
                self.runs_started.labels(workflow=str(payload.get("workflow"))).inc()
            elif kind == EventType.STEP_STARTED:
                self.step_attempts.labels(step=str(payload.get("name"))).inc()
                key = (run_id, event.correlation_id, payload.get("attempt"))
                with self._lock:
                    self._starts[key] = event.timestamp
                    if len(self._starts) > _STARTS_KEPT:
                        self._starts.popitem(last=False)
            elif kind in _STEP_OUTCOMES:
                self._step_outcome(run_id, event, _STEP_OUTCOMES[EventType(kind)])
            elif kind == EventType.WORKFLOW_SUSPENDED:
                self.runs_suspended.inc()
            elif kind == EventType.WORKFLOW_TIMED_OUT:
                # the failure that follows (same append) names the workflow
                with self._lock:
                    self._timed_out[run_id] = None
                    if len(self._timed_out) > _STARTS_KEPT:
                        self._timed_out.popitem(last=False)

    def _step_outcome(self, run_id: str, event: Event, outcome: str) -> None:
        step = str(event.payload.get("name"))
        self.step_outcomes.labels(step=step, outcome=outcome).inc()
        if outcome == "retrying":
            self.step_retries.labels(step=step).inc()
        key = (run_id, event.correlation_id, event.payload.get("attempt"))
        with self._lock:
            started = self._starts.pop(key, None)
        if started is not None:  # started in this process: its duration is known
            seconds = max(0.0, (event.timestamp - started).total_seconds())
            self.step_duration.labels(step=step, outcome=outcome).observe(seconds)

    def observe_status(self, run_id: str, workflow: str, status: RunStatus) -> None:
        """Count run ``run_id`` of ``workflow`` ending with ``status``."""
        self.runs_ended.labels(workflow=workflow, status=str(status.value)).inc()
        with self._lock:
            timed_out = run_id in self._timed_out
            if timed_out:
                del self._timed_out[run_id]
        if timed_out:
            self.runs_timed_out.labels(workflow=workflow).inc()


def _multiproc_dir() -> str | None:
    """``PROMETHEUS_MULTIPROC_DIR`` if set, checked; a ConfigError for what cannot work."""
    path = os.environ.get(MULTIPROC_ENV) or os.environ.get(MULTIPROC_ENV.lower())
    if not path:
        return None
    if not os.path.isdir(path) or not os.access(path, os.W_OK):
        raise ConfigError(
            f"{MULTIPROC_ENV}={path!r} is not a writable directory; create it (empty) before "
            "starting the processes, or unset it for single-process metrics"
        )
    from prometheus_client import values

    if values.ValueClass is values.MutexValue:
        raise ConfigError(
            f"{MULTIPROC_ENV} was set after prometheus_client was imported, so this process "
            "keeps its values in memory; set it in the environment before the process starts"
        )
    return path


class StorageCollector:
    """Gauges read from storage at scrape time: queue depth and schedule lag."""

    def describe(self) -> Iterable[Any]:
        """The gauges, without samples (so registering them reads nothing)."""
        return _gauges()

    def collect(self) -> Iterable[Any]:
        """The gauges with samples read now from this process's runtime's storage."""
        waiting, active, lag = _gauges()
        try:
            snapshot = _read_storage()
        except Exception as exc:  # a scrape still answers with the counters
            logger.bind(component="metrics").warning(
                "cannot read queue and schedule gauges: {}", exc
            )
            return []
        stats, configured, next_due, now = snapshot
        if stats is not None:
            depth = {name: (0, 0) for name in configured}
            for row in stats:
                depth[row.queue] = (row.waiting, row.active)
            for name, (queued, running) in sorted(depth.items()):
                waiting.add_metric([name], queued)
                active.add_metric([name], running)
        behind = 0.0 if next_due is None else max(0.0, (now - next_due).total_seconds())
        lag.add_metric([], behind)
        return [waiting, active, lag] if stats is not None else [lag]


def _gauges() -> list[Any]:
    from prometheus_client.core import GaugeMetricFamily

    return [
        GaugeMetricFamily(
            "pyworkflow_queue_waiting_runs",
            "Runs waiting in their queue to be admitted (status queued), by queue.",
            labels=["queue"],
        ),
        GaugeMetricFamily(
            "pyworkflow_queue_active_runs",
            "Runs of a queue that hold a place (pending, running or suspended), by queue.",
            labels=["queue"],
        ),
        GaugeMetricFamily(
            "pyworkflow_schedule_lag_seconds",
            "How far behind now the earliest due schedule is (0 when none is overdue).",
        ),
    ]


_Snapshot = tuple["list[QueueStats] | None", tuple[str, ...], "datetime | None", datetime]


def _read_storage() -> _Snapshot:
    """Queue stats and the next schedule time from the runtime's storage (from a thread)."""
    from pyworkflow.runtime import get_runtime

    runtime = get_runtime()
    configured = tuple(runtime.queue_configs)
    return runtime.submit(_snapshot, runtime.storage, configured).result(timeout=SCRAPE_TIMEOUT)


async def _snapshot(storage: Storage, configured: tuple[str, ...]) -> _Snapshot:
    now = utcnow()
    stats: list[QueueStats] | None
    try:
        stats = await storage.queue_stats(now - timedelta(minutes=1))
    except NotImplementedError:  # a storage without queues
        stats = None
    try:
        next_due = await storage.next_schedule_at()
    except NotImplementedError:  # a storage without schedules
        next_due = None
    return stats, configured, next_due, now


# ----- the process's metrics, the observer, exporting -----

_metrics: Metrics | None = None
_metrics_lock = threading.Lock()


def get_metrics() -> Metrics:
    """This process's :class:`Metrics`, made on first use.

    A :class:`~pyworkflow.errors.ConfigError` when prometheus_client is missing.
    """
    global _metrics
    with _metrics_lock:
        if _metrics is None:
            _metrics = Metrics()
        return _metrics


def reset_metrics() -> None:
    """Forget this process's metrics: the next use starts from zero (for tests)."""
    global _metrics
    with _metrics_lock:
        _metrics = None


class MetricsObserver:
    """The built-in observer plugin: counts from the observer hooks, never raises."""

    @hookimpl
    def pyworkflow_events_appended(self, run_id: str, events: Sequence[Event]) -> None:
        """Count appended events (runs started, suspended, step attempts and outcomes)."""
        try:
            get_metrics().observe_events(run_id, events)
        except Exception:  # a metric must never fail the append that fed it
            logger.opt(exception=True).bind(run_id=run_id).warning("metrics: events not counted")

    @hookimpl
    def pyworkflow_run_status_changed(self, run_id: str, workflow: str, status: RunStatus) -> None:
        """Count a run's end by workflow and status."""
        try:
            get_metrics().observe_status(run_id, workflow, status)
        except Exception:
            logger.opt(exception=True).bind(run_id=run_id).warning("metrics: end not counted")


def install_if_enabled(settings: Settings) -> bool:
    """Register the observer if ``settings`` turn metrics on, unregister it if not.

    Called by each :class:`~pyworkflow.runtime.Runtime` before its journal asks
    whether anyone observes events. Returns whether metrics are on.
    """
    from pyworkflow.plugins import get_plugin_manager

    if TABLE not in settings.plugin_tables:  # the common case: nothing to read
        enabled = False
    else:
        enabled = metrics_options(settings).enabled
    pm = get_plugin_manager()
    registered = pm.get_plugin(PLUGIN_NAME)
    if not enabled:
        if isinstance(registered, MetricsObserver):
            pm.unregister(name=PLUGIN_NAME)
        return False
    get_metrics()  # fail now, with a clear error, if prometheus_client is missing
    if registered is None:
        pm.register(MetricsObserver(), name=PLUGIN_NAME)
    return True


def render_metrics() -> tuple[bytes, str]:
    """This process's exposition text and its content type (for ``GET /metrics``)."""
    from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

    return generate_latest(get_metrics().exposition), CONTENT_TYPE_LATEST


def start_metrics_server(host: str, port: int) -> Any:
    """Serve this process's metrics over HTTP on ``host:port`` from a daemon thread.

    Returns the server; call its ``shutdown()`` to stop. Used by
    ``pyworkflow worker --metrics-port``.
    """
    from prometheus_client import start_http_server

    server, _thread = start_http_server(port, addr=host, registry=get_metrics().exposition)
    return server
