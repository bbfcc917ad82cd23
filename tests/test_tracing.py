"""OpenTelemetry tracing (docs/observability.md): spans built from the recorded events with
deterministic ids; one trace per run tree; the attempt span is current inside step bodies; the
OTLP/HTTP exporter end to end to a receiver this test starts; config errors."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from pyworkflow import get_result, runtime, start, start_child, step, workflow
from pyworkflow.errors import ConfigError

from .conftest import FAST

if not os.environ.get("CI"):  # the dev extra installs it: never skip there
    pytest.importorskip("opentelemetry.sdk")

from opentelemetry import trace
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from pyworkflow import stepexec, tracing
from pyworkflow.plugins import get_plugin_manager

_calls: dict[str, int] = {}


@step(max_retries=3, retry_delay="0s")
async def tr_flaky(key: str) -> str:
    _calls[key] = _calls.get(key, 0) + 1
    if _calls[key] < 3:
        raise ValueError(f"boom {_calls[key]}")
    # a user's own span inside the step: it must nest under the attempt's span
    with trace.get_tracer("user").start_as_current_span("user-work"):
        pass
    return key


@step(max_retries=1, retry_delay="0s")
async def tr_boom() -> None:
    raise KeyError("always")


@step()
def tr_sync_body() -> int:
    """A sync body (it runs in a worker thread): its spans nest under the attempt too."""
    with trace.get_tracer("user").start_as_current_span("sync-user-work"):
        return 1


@workflow(name="tr_sync")
async def tr_sync() -> int:
    return await tr_sync_body()


@workflow(name="tr_retry")
async def tr_retry(key: str) -> str:
    return await tr_flaky(key)


@workflow(name="tr_fails")
async def tr_fails() -> None:
    await tr_boom()


@workflow(name="tr_kid")
async def tr_kid(key: str) -> str:
    return await tr_flaky(key)


@workflow(name="tr_parent")
async def tr_parent(key: str) -> str:
    return await start_child(tr_kid, key)


@pytest.fixture
def spans(tmp_path: Path) -> Iterator[InMemorySpanExporter]:
    """Tracing on (no exporter of its own), its spans gathered in memory."""
    runtime.reset()
    tracing.shutdown_tracing()
    runtime.configure(
        storage=f"sqlite:///{tmp_path / 'pw.db'}",
        tracing={"enabled": True, "exporter": "none"},
        **FAST,
    )
    runtime.get_runtime()
    plugin = tracing.get_tracing()
    assert plugin is not None
    assert stepexec._wrapping is True  # asked once, when the runtime was made
    exporter = InMemorySpanExporter()
    plugin.provider.add_span_processor(SimpleSpanProcessor(exporter))
    # user code's spans go through the same provider
    previous = trace._TRACER_PROVIDER
    trace._TRACER_PROVIDER = plugin.provider
    try:
        yield exporter
    finally:
        trace._TRACER_PROVIDER = previous
        runtime.reset()
        tracing.shutdown_tracing()
        _calls.clear()


def _by_name(spans: tuple[ReadableSpan, ...]) -> dict[str, list[ReadableSpan]]:
    found: dict[str, list[ReadableSpan]] = {}
    for span in spans:
        found.setdefault(span.name, []).append(span)
    return found


def _parent_id(span: ReadableSpan) -> int | None:
    return span.parent.span_id if span.parent is not None else None


def test_run_with_retries_is_one_trace(spans: InMemorySpanExporter) -> None:
    run_id = start(tr_retry, "a")
    assert get_result(run_id, timeout=20) == "a"
    runtime.shutdown()
    got = spans.get_finished_spans()
    named = _by_name(got)
    assert {s.context.trace_id for s in got} == {tracing.trace_id_for(run_id)}

    (run,) = named["workflow tr_retry"]
    assert run.parent is None
    assert run.context.span_id == tracing.run_span_id(run_id)
    assert run.attributes is not None
    assert run.attributes["pyworkflow.run_id"] == run_id
    assert run.attributes["pyworkflow.outcome"] == "completed"
    assert run.status.is_ok

    attempts = sorted(named["step tr_flaky"], key=lambda s: s.attributes["pyworkflow.attempt"])  # type: ignore[index]
    assert [s.attributes["pyworkflow.attempt"] for s in attempts] == [1, 2, 3]  # type: ignore[index]
    assert [s.attributes["pyworkflow.outcome"] for s in attempts] == [  # type: ignore[index]
        "retrying",
        "retrying",
        "completed",
    ]
    for span in attempts:
        assert _parent_id(span) == run.context.span_id
        assert span.attributes["pyworkflow.step"] == "tr_flaky"  # type: ignore[index]
        assert span.attributes["pyworkflow.workflow"] == "tr_retry"  # type: ignore[index]
        assert span.start_time is not None and span.end_time is not None
        assert run.start_time is not None and run.end_time is not None
        assert run.start_time <= span.start_time <= span.end_time <= run.end_time
    for failed, n in zip(attempts[:2], (1, 2), strict=True):
        assert failed.status.status_code is trace.StatusCode.ERROR
        (exc,) = [e for e in failed.events if e.name == "exception"]
        assert exc.attributes == {"exception.type": "ValueError", "exception.message": f"boom {n}"}
    assert attempts[2].status.is_ok

    # the user's span made inside the third attempt's body is its child, in the same trace
    (user,) = named["user-work"]
    assert _parent_id(user) == attempts[2].context.span_id
    assert user.context.trace_id == run.context.trace_id


def test_sync_body_spans_nest_under_the_attempt(spans: InMemorySpanExporter) -> None:
    run_id = start(tr_sync)
    assert get_result(run_id, timeout=20) == 1
    runtime.shutdown()
    named = _by_name(spans.get_finished_spans())
    (attempt,) = named["step tr_sync_body"]
    (user,) = named["sync-user-work"]
    assert _parent_id(user) == attempt.context.span_id
    assert user.context.trace_id == tracing.trace_id_for(run_id)


def test_failed_run_records_the_error(spans: InMemorySpanExporter) -> None:
    run_id = start(tr_fails)
    with pytest.raises(Exception):  # noqa: B017 - the failure itself is not under test
        get_result(run_id, timeout=20)
    runtime.shutdown()
    named = _by_name(spans.get_finished_spans())
    (run,) = named["workflow tr_fails"]
    assert run.status.status_code is trace.StatusCode.ERROR
    assert run.attributes["pyworkflow.outcome"] == "failed"  # type: ignore[index]
    outcomes = sorted(s.attributes["pyworkflow.outcome"] for s in named["step tr_boom"])  # type: ignore[index]
    assert outcomes == ["failed", "retrying"]
    (last,) = [s for s in named["step tr_boom"] if s.attributes["pyworkflow.outcome"] == "failed"]  # type: ignore[index]
    (exc,) = [e for e in last.events if e.name == "exception"]
    assert exc.attributes is not None and exc.attributes["exception.type"] == "KeyError"


def test_child_run_is_in_the_parents_trace(spans: InMemorySpanExporter) -> None:
    run_id = start(tr_parent, "c")
    assert get_result(run_id, timeout=20) == "c"
    runtime.shutdown()
    got = spans.get_finished_spans()
    named = _by_name(got)
    assert {s.context.trace_id for s in got} == {tracing.trace_id_for(run_id)}
    (parent,) = named["workflow tr_parent"]
    (call,) = named["child tr_kid"]
    (kid,) = named["workflow tr_kid"]
    assert parent.parent is None
    assert _parent_id(call) == parent.context.span_id
    assert _parent_id(kid) == call.context.span_id
    assert kid.attributes["pyworkflow.run_id"] != run_id  # type: ignore[index]
    for attempt in named["step tr_flaky"]:
        assert _parent_id(attempt) == kid.context.span_id
    # the parent waited for its child: an activation resumed it and ended with the run
    activations = named["activation"]
    assert all(_parent_id(a) == parent.context.span_id for a in activations)
    assert "completed" in {a.attributes["pyworkflow.outcome"] for a in activations}  # type: ignore[index]


def test_child_root_found_through_storage(spans: InMemorySpanExporter) -> None:
    """A process that never saw the parent's start finds the root through parent_run_id."""
    run_id = start(tr_parent, "d")
    assert get_result(run_id, timeout=20) == "d"
    runtime.shutdown()
    kid_id = next(
        s.attributes["pyworkflow.run_id"]  # type: ignore[index]
        for s in spans.get_finished_spans()
        if s.name == "workflow tr_kid"
    )
    spans.clear()
    plugin = tracing.get_tracing()
    assert plugin is not None
    plugin._runs.clear()
    from pyworkflow import get_events

    events = get_events(kid_id)

    async def replay() -> None:
        plugin.pyworkflow_events_appended(kid_id, events[-1:])
        for task in list(plugin._tasks):
            await task

    runtime.get_runtime().call(replay)
    (kid,) = spans.get_finished_spans()
    assert kid.context.trace_id == tracing.trace_id_for(run_id)
    assert kid.parent is not None
    assert kid.start_time is not None and kid.end_time is not None
    assert kid.start_time < kid.end_time  # the start came from the stored run


def test_ids_are_deterministic() -> None:
    assert tracing.trace_id_for("r1") == tracing.trace_id_for("r1")
    assert tracing.trace_id_for("r1") != tracing.trace_id_for("r2")
    assert tracing.trace_id_for("r1").bit_length() <= 128
    assert tracing.span_id_for("r1", "3", 2) == tracing.span_id_for("r1", "3", 2)
    assert tracing.span_id_for("r1", "3", 2) != tracing.span_id_for("r1", "3", 1)
    assert tracing.span_id_for("r1", "3", 2).bit_length() <= 64


def test_off_by_default_and_bad_options(tmp_path: Path) -> None:
    runtime.reset()
    tracing.shutdown_tracing()
    runtime.configure(storage="memory://")
    runtime.get_runtime()
    assert tracing.get_tracing() is None
    assert not get_plugin_manager().hook.pyworkflow_events_appended.get_hookimpls()
    assert stepexec._wrapping is False  # step bodies run unwrapped, on the fast path
    for table, key in (
        ({"enabled": "maybe"}, "enabled"),
        ({"enabled": True, "exporter": "zipkin"}, "exporter"),
        ({"enabled": True, "service_name": 3}, "service_name"),
        ({"enabled": True, "colour": "red"}, "colour"),
    ):
        runtime.reset()
        runtime.configure(storage="memory://", tracing=table)
        with pytest.raises(ConfigError, match=key):
            runtime.get_runtime()
    runtime.reset()


# ----- OTLP/HTTP end to end -----


class _Receiver(BaseHTTPRequestHandler):
    received: list[trace_service_pb2.ExportTraceServiceRequest]

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        request = trace_service_pb2.ExportTraceServiceRequest()
        request.ParseFromString(body)
        self.server.received.append(request)  # type: ignore[attr-defined]
        answer = trace_service_pb2.ExportTraceServiceResponse().SerializeToString()
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def receiver() -> Iterator[ThreadingHTTPServer]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Receiver)
    server.received = []  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


def test_otlp_http_export_end_to_end(tmp_path: Path, receiver: ThreadingHTTPServer) -> None:
    runtime.reset()
    tracing.shutdown_tracing()
    port = receiver.server_address[1]
    runtime.configure(
        storage=f"sqlite:///{tmp_path / 'pw.db'}",
        tracing={
            "enabled": True,
            "exporter": "otlp",
            "endpoint": f"http://127.0.0.1:{port}/v1/traces",
            "service_name": "tracing-test",
        },
        **FAST,
    )
    try:
        run_id = start(tr_retry, "o")
        assert get_result(run_id, timeout=20) == "o"
        runtime.shutdown()  # flushes the batch processor
    finally:
        runtime.reset()
        tracing.shutdown_tracing()
        _calls.clear()
    received: list[trace_service_pb2.ExportTraceServiceRequest] = receiver.received  # type: ignore[attr-defined]
    spans = []
    services = set()
    for request in received:
        for resource_spans in request.resource_spans:
            for attr in resource_spans.resource.attributes:
                if attr.key == "service.name":
                    services.add(attr.value.string_value)
            for scope in resource_spans.scope_spans:
                spans.extend(scope.spans)
    assert services == {"tracing-test"}
    want_trace = tracing.trace_id_for(run_id).to_bytes(16, "big")
    pyworkflow_spans = [s for s in spans if s.name != "user-work"]
    assert {s.trace_id for s in pyworkflow_spans} == {want_trace}
    names = sorted(s.name for s in pyworkflow_spans)
    assert names == ["step tr_flaky"] * 3 + ["workflow tr_retry"]
    (run,) = [s for s in spans if s.name == "workflow tr_retry"]
    assert run.span_id == tracing.run_span_id(run_id).to_bytes(8, "big")
    attempts = [s for s in spans if s.name == "step tr_flaky"]
    assert {s.parent_span_id for s in attempts} == {run.span_id}
    errors = [s for s in attempts if s.status.code == s.status.STATUS_CODE_ERROR]
    assert len(errors) == 2
    attrs = {a.key: a.value for a in run.attributes}
    assert attrs["pyworkflow.run_id"].string_value == run_id
    assert attrs["pyworkflow.outcome"].string_value == "completed"
