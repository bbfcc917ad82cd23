"""OpenTelemetry tracing: a built-in plugin, on with ``[tool.pyworkflow.tracing]``.

Off by default. With ``enabled = true`` each runtime of the process registers
:class:`TracingPlugin` with the plugin manager. Spans are built from the
**recorded events**, through the ``pyworkflow_events_appended`` hook, in
whichever process appends them:

* a span per run (``workflow_started`` to its end event), named after the workflow;
* a span per activation (``workflow_resumed`` to the next ``workflow_suspended``
  or end event);
* a span per step attempt (``step_started`` to its ``step_completed``,
  ``step_retrying`` or ``step_failed``), with start and end taken from the
  events' timestamps;
* a span per child workflow call of a parent (``child_workflow_started`` to its
  outcome): the child run's span is its child.

**Ids are deterministic, so no context travels.** The trace id is the first 16
bytes of ``sha256("pyworkflow-trace:" + root run id)`` (a child run uses its
root ancestor's, found through ``parent_run_id`` once and cached); a span id is
8 bytes of ``sha256`` of (run id, correlation id, attempt). A Celery or Ray
worker appending a step's outcome, and the worker appending the run's end,
therefore emit spans of one trace with the right parents without passing
anything along. The step attempt's span is the current OpenTelemetry context
while the step body runs (``pyworkflow_step_body_context``), so spans a user's
instrumented client makes inside a step nest under the attempt.

``opentelemetry-sdk`` is an optional dependency (``pip install
pyworkflow[otel]``): this module imports without it, and turning tracing on
without it is a :class:`~pyworkflow.errors.ConfigError`.
"""

from __future__ import annotations

import asyncio
import hashlib
import threading
from collections import OrderedDict
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager, contextmanager
from datetime import datetime
from typing import TYPE_CHECKING, Any

import attrs
from loguru import logger

from pyworkflow.errors import ConfigError
from pyworkflow.hookspecs import hookimpl
from pyworkflow.models import Event, EventType
from pyworkflow.plugin_options import (
    option_bool,
    option_choice,
    option_optional_text,
    option_text,
    parse_plugin_table,
)

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
    from opentelemetry.sdk.trace.export import SpanExporter
    from opentelemetry.trace import SpanContext

    from pyworkflow.config import Settings
    from pyworkflow.storage.base import Storage

__all__ = [
    "PLUGIN_NAME",
    "TABLE",
    "TracingOptions",
    "TracingPlugin",
    "install_if_enabled",
    "run_span_id",
    "shutdown_tracing",
    "span_id_for",
    "trace_id_for",
    "tracing_options",
]

#: The config table: ``[tool.pyworkflow.tracing]`` (``PYWORKFLOW_TRACING__<OPTION>``).
TABLE = "tracing"
#: The name the plugin is registered under with the plugin manager.
PLUGIN_NAME = "pyworkflow_tracing"
#: How many runs' roots and open spans are remembered at most; the oldest go first.
_KEPT = 10_000

_STEP_OUTCOMES = {
    EventType.STEP_COMPLETED: "completed",
    EventType.STEP_FAILED: "failed",
    EventType.STEP_RETRYING: "retrying",
}
_RUN_ENDS = {
    EventType.WORKFLOW_COMPLETED: "completed",
    EventType.WORKFLOW_FAILED: "failed",
    EventType.WORKFLOW_CANCELLED: "cancelled",
    EventType.WORKFLOW_CONTINUED_AS_NEW: "continued_as_new",
}
_CHILD_ENDS = {
    EventType.CHILD_WORKFLOW_COMPLETED: "completed",
    EventType.CHILD_WORKFLOW_FAILED: "failed",
}


# ----- options -----


@attrs.frozen(kw_only=True)
class TracingOptions:
    """``[tool.pyworkflow.tracing]``, parsed."""

    #: Whether this process emits spans.
    enabled: bool = False
    #: ``"otlp"`` (OTLP/HTTP to :attr:`endpoint`), ``"console"`` (stdout) or ``"none"``
    #: (spans go only to processors added to the provider, e.g. by tests).
    exporter: str = "otlp"
    #: OTLP/HTTP traces URL (``http://host:4318/v1/traces``); None: the OTel SDK's
    #: default (``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`` or ``http://localhost:4318/v1/traces``).
    endpoint: str | None = None
    #: The ``service.name`` resource attribute.
    service_name: str = "pyworkflow"


def tracing_options(settings: Settings) -> TracingOptions:
    """The tracing options of ``settings``; a bad value is a ConfigError naming the option."""
    values = parse_plugin_table(
        settings,
        TABLE,
        {
            "enabled": option_bool,
            "exporter": option_choice("otlp", "console", "none"),
            "endpoint": option_optional_text,
            "service_name": option_text,
        },
    )
    return TracingOptions(**values)


# ----- deterministic ids -----


def _digest(*parts: object) -> bytes:
    return hashlib.sha256("\x1f".join(str(p) for p in parts).encode()).digest()


def trace_id_for(root_run_id: str) -> int:
    """The trace id of every span of the run tree whose root run is ``root_run_id``."""
    value = int.from_bytes(_digest("pyworkflow-trace", root_run_id)[:16], "big")
    return value or 1


def span_id_for(run_id: str, correlation_id: str | None, attempt: int | str) -> int:
    """The span id of ``(run_id, correlation_id, attempt)``: the same in every process."""
    value = int.from_bytes(_digest("pyworkflow-span", run_id, correlation_id, attempt)[:8], "big")
    return value or 1


def run_span_id(run_id: str) -> int:
    """The span id of run ``run_id``'s own span."""
    return span_id_for(run_id, None, "run")


def _child_call_span_id(parent_run_id: str, correlation_id: str) -> int:
    return span_id_for(parent_run_id, correlation_id, "child")


# ----- the plugin -----


@attrs.define
class _RunInfo:
    """What is known of a run: its root ancestor and where its span hangs."""

    root: str
    workflow: str | None = None
    started: datetime | None = None
    #: The span id the run's span is a child of (a parent's child-call span), if any.
    parent_span: int | None = None


class _Lru(OrderedDict[str, Any]):
    _lock = threading.Lock()

    def remember(self, key: str, value: Any) -> None:
        with self._lock:
            self[key] = value
            self.move_to_end(key)
            while len(self) > _KEPT:
                self.popitem(last=False)


class TracingPlugin:
    """Builds OpenTelemetry spans from appended events (see the module docstring)."""

    def __init__(self, provider: TracerProvider, storage: Storage | None = None) -> None:
        from opentelemetry import trace

        self.provider = provider
        self.tracer = provider.get_tracer("pyworkflow")
        self._trace = trace
        self.storage = storage
        self._lock = threading.Lock()
        self._runs: _Lru = _Lru()
        #: Open spans' starts: (run id, correlation id or kind, attempt) -> timestamp.
        self._starts: _Lru = _Lru()
        self._tasks: set[asyncio.Task[None]] = set()
        #: Events of runs whose root is being looked up, by run id, in append order.
        self._pending: dict[str, list[Event]] = {}

    # --- the hooks ---

    @hookimpl
    def pyworkflow_events_appended(self, run_id: str, events: Sequence[Event]) -> None:
        """Emit the spans ``events`` end (and remember the starts they open)."""
        try:
            self._learn(run_id, events)
            info = self._runs.get(run_id)
            if info is not None and run_id not in self._pending:
                self._emit(run_id, info, events)
                return
            self._resolve_later(run_id, events)
        except Exception:  # tracing must never break an append
            logger.opt(exception=True).warning("pyworkflow tracing: cannot build spans")

    @hookimpl
    def pyworkflow_step_body_context(
        self, run_id: str, step_id: str, name: str, attempt: int
    ) -> AbstractAsyncContextManager[None] | None:
        """Make the step attempt's span the current OpenTelemetry context around the body."""
        return self._current(run_id, span_id_for(run_id, step_id, attempt))

    # --- what the events say ---

    def _learn(self, run_id: str, events: Sequence[Event]) -> None:
        for event in events:
            if event.type is EventType.WORKFLOW_STARTED:
                payload = event.payload
                parent = payload.get("parent_run_id")
                info = _RunInfo(root=run_id, workflow=payload.get("workflow"))
                info.started = event.timestamp
                if parent:
                    known = self._runs.get(parent)
                    if known is None:
                        self._runs.pop(run_id, None)
                        return  # resolved through storage
                    info.root = known.root
                    cid = payload.get("parent_correlation_id")
                    if cid is not None:
                        info.parent_span = _child_call_span_id(parent, str(cid))
                self._runs.remember(run_id, info)

    def _resolve_later(self, run_id: str, events: Sequence[Event]) -> None:
        """Find the run's root through storage (on its loop), then emit."""
        storage = self.storage
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            loop = None
        if storage is None or loop is None:
            info = _RunInfo(root=run_id)
            self._emit(run_id, info, events)
            return
        with self._lock:
            pending = self._pending.get(run_id)
            if pending is not None:  # a lookup is under way: its events wait, in order
                pending.extend(events)
                return
            self._pending[run_id] = list(events)
        task = loop.create_task(self._resolve_and_emit(storage, run_id))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _resolve_and_emit(self, storage: Storage, run_id: str) -> None:
        try:
            info = await self._resolve(storage, run_id)
        except Exception:
            logger.opt(exception=True).warning("pyworkflow tracing: cannot find run {}", run_id)
            info = _RunInfo(root=run_id)
        with self._lock:
            events = self._pending.pop(run_id, [])
        try:
            self._emit(run_id, info, events)
        except Exception:
            logger.opt(exception=True).warning("pyworkflow tracing: cannot build spans")

    async def _resolve(self, storage: Storage, run_id: str) -> _RunInfo:
        known: _RunInfo | None = self._runs.get(run_id)
        if known is not None and known.started is not None:
            return known
        run = await storage.get_run(run_id)
        info = _RunInfo(root=run_id, workflow=run.workflow_name, started=run.created_at)
        if run.parent_run_id:
            parent = await self._resolve(storage, run.parent_run_id)
            info.root = parent.root
            first = await storage.get_events(run_id, after_seq=0)
            cid = first[0].payload.get("parent_correlation_id") if first else None
            if cid is not None:
                info.parent_span = _child_call_span_id(run.parent_run_id, str(cid))
        self._runs.remember(run_id, info)
        return info

    # --- spans ---

    def _context(self, root: str, span_id: int) -> SpanContext:
        trace = self._trace
        context: SpanContext = trace.SpanContext(
            trace_id=trace_id_for(root),
            span_id=span_id,
            is_remote=True,
            trace_flags=trace.TraceFlags(trace.TraceFlags.SAMPLED),
        )
        return context

    @asynccontextmanager
    async def _current(self, run_id: str, span_id: int) -> AsyncIterator[None]:
        """``span_id`` of run ``run_id`` as the current span (its root looked up if unknown)."""
        from opentelemetry import context

        info: _RunInfo | None = self._runs.get(run_id)
        if info is None and self.storage is not None:
            try:
                info = await self._resolve(self.storage, run_id)
            except Exception:
                logger.opt(exception=True).warning("pyworkflow tracing: cannot find the run")
        if info is None:
            yield
            return
        parent = self._context(info.root, span_id)
        token = context.attach(
            self._trace.set_span_in_context(self._trace.NonRecordingSpan(parent))
        )
        try:
            yield
        finally:
            context.detach(token)

    def _span(
        self,
        name: str,
        *,
        root: str,
        span_id: int,
        parent_id: int | None,
        start: datetime,
        end: datetime,
        attributes: dict[str, Any],
        error: tuple[str, str] | None = None,
    ) -> None:
        """Emit one finished span whose ids are chosen here, not by the SDK."""
        trace = self._trace
        parent = None
        if parent_id is not None:
            parent = trace.set_span_in_context(
                trace.NonRecordingSpan(self._context(root, parent_id))
            )
        with _chosen_ids(trace_id_for(root), span_id):
            span = self.tracer.start_span(
                name,
                context=parent if parent is not None else _empty_context(),
                attributes=attributes,
                start_time=_ns(start),
            )
        if error is not None:
            kind, message = error
            span.add_event(
                "exception",
                {"exception.type": kind, "exception.message": message},
                timestamp=_ns(end),
            )
            span.set_status(trace.Status(trace.StatusCode.ERROR, f"{kind}: {message}"))
        span.end(end_time=max(_ns(end), _ns(start)))

    def _emit(self, run_id: str, info: _RunInfo, events: Sequence[Event]) -> None:
        root = info.root
        run_span = run_span_id(run_id)
        base = {"pyworkflow.run_id": run_id}
        if info.workflow:
            base["pyworkflow.workflow"] = info.workflow
        for event in events:
            kind = event.type
            payload = event.payload
            cid = event.correlation_id
            if kind is EventType.STEP_STARTED:
                attempt = payload.get("attempt", 1)
                self._starts.remember(f"{run_id}\x1f{cid}\x1f{attempt}", event.timestamp)
            elif kind in _STEP_OUTCOMES:
                attempt = payload.get("attempt", 1)
                start = self._starts.pop(f"{run_id}\x1f{cid}\x1f{attempt}", event.timestamp)
                outcome = _STEP_OUTCOMES[kind]
                self._span(
                    f"step {payload.get('name', '?')}",
                    root=root,
                    span_id=span_id_for(run_id, cid, attempt),
                    parent_id=run_span,
                    start=start,
                    end=event.timestamp,
                    attributes={
                        **base,
                        "pyworkflow.step": str(payload.get("name", "")),
                        "pyworkflow.step_id": str(cid),
                        "pyworkflow.attempt": int(attempt),
                        "pyworkflow.outcome": outcome,
                    },
                    error=None if outcome == "completed" else _error_of(payload),
                )
            elif kind is EventType.WORKFLOW_RESUMED:
                self._starts.remember(f"{run_id}\x1factivation", (event.seq, event.timestamp))
            elif kind is EventType.WORKFLOW_SUSPENDED or kind in _RUN_ENDS:
                opened = self._starts.pop(f"{run_id}\x1factivation", None)
                if opened is not None:
                    seq, start = opened
                    self._span(
                        "activation",
                        root=root,
                        span_id=span_id_for(run_id, None, f"activation-{seq}"),
                        parent_id=run_span,
                        start=start,
                        end=event.timestamp,
                        attributes={**base, "pyworkflow.outcome": _activation_end(kind)},
                    )
                if kind in _RUN_ENDS:
                    outcome = _RUN_ENDS[kind]
                    self._span(
                        f"workflow {info.workflow or '?'}",
                        root=root,
                        span_id=run_span,
                        parent_id=info.parent_span,
                        start=info.started or event.timestamp,
                        end=event.timestamp,
                        attributes={**base, "pyworkflow.outcome": outcome},
                        error=_error_of(payload) if outcome == "failed" else None,
                    )
            elif kind is EventType.CHILD_WORKFLOW_STARTED:
                self._starts.remember(f"{run_id}\x1f{cid}\x1fchild", event.timestamp)
            elif kind in _CHILD_ENDS and cid is not None:
                start = self._starts.pop(f"{run_id}\x1f{cid}\x1fchild", None)
                if start is None:  # the call started in another process: the child's start is near
                    child = self._runs.get(str(payload.get("child_run_id", "")))
                    start = child.started if child is not None else None
                    start = start or event.timestamp
                outcome = _CHILD_ENDS[kind]
                self._span(
                    f"child {payload.get('name', '?')}",
                    root=root,
                    span_id=_child_call_span_id(run_id, cid),
                    parent_id=run_span,
                    start=start,
                    end=event.timestamp,
                    attributes={
                        **base,
                        "pyworkflow.child_run_id": str(payload.get("child_run_id", "")),
                        "pyworkflow.outcome": outcome,
                    },
                    error=_error_of(payload) if outcome == "failed" else None,
                )

    # --- lifecycle ---

    def shutdown(self) -> None:
        """Flush and shut the provider down (spans still batched are exported now)."""
        try:
            self.provider.force_flush()
        finally:
            self.provider.shutdown()


def _activation_end(kind: EventType) -> str:
    return "suspended" if kind is EventType.WORKFLOW_SUSPENDED else _RUN_ENDS[kind]


def _error_of(payload: Any) -> tuple[str, str]:
    """(exception type, message) of a failure event's payload."""
    text = str(payload.get("error_message") or payload.get("status") or "error")
    kind, sep, message = text.partition(": ")
    if not sep or " " in kind:
        return "Error", text
    return kind, message


def _ns(moment: datetime) -> int:
    return int(moment.timestamp() * 1_000_000_000)


def _empty_context() -> Any:
    from opentelemetry.context import Context

    return Context()


# ----- choosing span ids -----

_chosen = threading.local()


@contextmanager
def _chosen_ids(trace_id: int, span_id: int) -> Iterator[None]:
    _chosen.ids = (trace_id, span_id)
    try:
        yield
    finally:
        _chosen.ids = None


def _id_generator() -> Any:
    """An IdGenerator that gives the ids :func:`_chosen_ids` chose, random ones otherwise."""
    from opentelemetry.sdk.trace.id_generator import RandomIdGenerator

    class ChosenIdGenerator(RandomIdGenerator):
        def generate_span_id(self) -> int:
            ids = getattr(_chosen, "ids", None)
            return ids[1] if ids else super().generate_span_id()

        def generate_trace_id(self) -> int:
            ids = getattr(_chosen, "ids", None)
            return ids[0] if ids else super().generate_trace_id()

    return ChosenIdGenerator()


# ----- installing -----

_installed: TracingPlugin | None = None
_install_lock = threading.Lock()


def _exporter(options: TracingOptions) -> SpanExporter | None:
    if options.exporter == "console":
        from opentelemetry.sdk.trace.export import ConsoleSpanExporter

        return ConsoleSpanExporter()
    if options.exporter == "otlp":
        try:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        except ImportError:
            raise ConfigError(
                "tracing exporter 'otlp' ([tool.pyworkflow.tracing]) needs "
                "opentelemetry-exporter-otlp-proto-http; pip install 'pyworkflow[otel]'"
            ) from None
        return OTLPSpanExporter(endpoint=options.endpoint)
    return None


def make_provider(options: TracingOptions) -> TracerProvider:
    """A TracerProvider with PyWorkflow's id generator and ``options``' exporter (batched)."""
    try:
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
    except ImportError:
        raise ConfigError(
            "tracing is on ([tool.pyworkflow.tracing] enabled) but the OpenTelemetry SDK is "
            "not installed; pip install 'pyworkflow[otel]'"
        ) from None
    provider = TracerProvider(
        resource=Resource.create({"service.name": options.service_name}),
        id_generator=_id_generator(),
        shutdown_on_exit=True,
    )
    exporter = _exporter(options)
    if exporter is not None:
        processor: SpanProcessor = BatchSpanProcessor(exporter)
        provider.add_span_processor(processor)
    return provider


def install_if_enabled(settings: Settings, storage: Storage | None = None) -> bool:
    """Register the tracing plugin if ``settings`` turn tracing on, unregister it if not.

    Called by each :class:`~pyworkflow.runtime.Runtime` before its journal asks
    whether anyone observes events. ``storage`` (the runtime's) is where the
    root ancestor of a child run is looked up. Returns whether tracing is on.
    """
    global _installed
    from pyworkflow.plugins import get_plugin_manager

    enabled = TABLE in settings.plugin_tables and tracing_options(settings).enabled
    pm = get_plugin_manager()
    with _install_lock:
        registered = pm.get_plugin(PLUGIN_NAME)
        if not enabled:
            if isinstance(registered, TracingPlugin):
                pm.unregister(name=PLUGIN_NAME)
            return False
        if isinstance(registered, TracingPlugin):
            registered.storage = storage
            return True
        if _installed is None:
            _installed = TracingPlugin(make_provider(tracing_options(settings)), storage)
            _offer_global_provider(_installed.provider)
        else:
            _installed.storage = storage
        pm.register(_installed, name=PLUGIN_NAME)
        return True


def _offer_global_provider(provider: TracerProvider) -> None:
    """Make ``provider`` OpenTelemetry's global one unless the application set its own.

    Then spans user code makes with ``trace.get_tracer(...)`` inside steps are
    exported with PyWorkflow's (and nest under the attempt's span either way).
    """
    from opentelemetry import trace

    if isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider):
        trace.set_tracer_provider(provider)


def get_tracing() -> TracingPlugin | None:
    """This process's tracing plugin, if tracing was turned on."""
    return _installed


def flush_tracing() -> None:
    """Export the spans batched so far (the runtime calls it when it stops)."""
    plugin = _installed
    if plugin is not None:
        plugin.provider.force_flush()


def shutdown_tracing() -> None:
    """Flush, shut down and forget this process's tracing (for tests and process ends)."""
    global _installed
    from pyworkflow.plugins import get_plugin_manager

    with _install_lock:
        plugin: TracingPlugin | None = _installed
        _installed = None
        if plugin is None:
            return
        pm = get_plugin_manager()
        if pm.get_plugin(PLUGIN_NAME) is plugin:
            pm.unregister(name=PLUGIN_NAME)
    if plugin is not None:
        plugin.shutdown()
