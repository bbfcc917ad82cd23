"""One trace for a run whose steps ran on two Celery workers (issue 19, tracing).

No trace context travels in the Celery messages: every process derives the trace id from the
run id and the span ids from (run id, correlation id, attempt). This process starts the run with
tracing on (its spans gathered by the SDK's in-memory exporter: none end here, starting a run only
opens the run's span, which the worker that appends the run's end emits, its start read from
storage); the two worker processes export theirs over OTLP/HTTP to a receiver this test starts,
which decodes the protobuf payloads. Put
together, the spans form one trace: the run's span is the root, every step attempt (a retried one
too) is its child, and the span the user's code made inside a step on a worker nests under that
attempt's span.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import attrs
import pytest
from celery_support import FAST, HERE, client_settings
from pyworkflow_celery.testing import QUEUES, CeleryCluster, RedisServer, wait_for

from pyworkflow import EventType, get_events, get_result, runtime, start

if not os.environ.get("CI"):  # the dev extra installs it: never skip there
    pytest.importorskip("opentelemetry.sdk")

from opentelemetry.proto.collector.trace.v1 import trace_service_pb2
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from pyworkflow import tracing

pytestmark = pytest.mark.slow


@attrs.frozen
class Span:
    """A span as this test compares them, from either source."""

    name: str
    trace_id: int
    span_id: int
    parent_id: int | None
    attributes: dict[str, Any]
    error: bool
    source: str


class _Receiver(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        request = trace_service_pb2.ExportTraceServiceRequest()
        request.ParseFromString(body)
        spans: list[Span] = self.server.spans  # type: ignore[attr-defined]
        for resource_spans in request.resource_spans:
            resource = {a.key: a.value.string_value for a in resource_spans.resource.attributes}
            for scope in resource_spans.scope_spans:
                for s in scope.spans:
                    spans.append(
                        Span(
                            name=s.name,
                            trace_id=int.from_bytes(s.trace_id, "big"),
                            span_id=int.from_bytes(s.span_id, "big"),
                            parent_id=int.from_bytes(s.parent_span_id, "big")
                            if s.parent_span_id
                            else None,
                            attributes={
                                a.key: a.value.string_value or a.value.int_value
                                for a in s.attributes
                            },
                            error=s.status.code == s.status.STATUS_CODE_ERROR,
                            source=resource.get("pyworkflow.test_worker", "?"),
                        )
                    )
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
    server.spans = []  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def traced_cluster(
    redis_server: RedisServer, tmp_path: Path, receiver: ThreadingHTTPServer
) -> Iterator[tuple[CeleryCluster, InMemorySpanExporter]]:
    redis_server.client().flushall()
    storage_url = f"sqlite:///{tmp_path / 'pw.db'}"
    endpoint = f"http://127.0.0.1:{receiver.server_address[1]}/v1/traces"
    cluster = CeleryCluster(
        tmp_path,
        redis_server.url,
        storage_url,
        modules="celery_tracing_flows",
        pythonpath=HERE,
        settings={
            **FAST,
            "PYWORKFLOW_TRACING__ENABLED": "1",
            "PYWORKFLOW_TRACING__EXPORTER": "otlp",
            "PYWORKFLOW_TRACING__ENDPOINT": endpoint,
            # no timed export: the spans must leave when the workers stop (the flush at stop)
            "OTEL_BSP_SCHEDULE_DELAY": "600000",
        },
    )
    runtime.reset()
    tracing.shutdown_tracing()
    runtime.configure(
        **client_settings(redis_server.url, storage_url),
        tracing={"enabled": True, "exporter": "none"},
    )
    runtime.get_runtime()
    plugin = tracing.get_tracing()
    assert plugin is not None
    memory = InMemorySpanExporter()
    plugin.provider.add_span_processor(SimpleSpanProcessor(memory))
    try:
        yield cluster, memory
    finally:
        runtime.reset()
        tracing.shutdown_tracing()
        cluster.stop_all()


def _local(memory: InMemorySpanExporter) -> list[Span]:
    return [
        Span(
            name=s.name,
            trace_id=s.context.trace_id,
            span_id=s.context.span_id,
            parent_id=s.parent.span_id if s.parent is not None else None,
            attributes=dict(s.attributes or {}),
            error=not s.status.is_ok,
            source="client",
        )
        for s in memory.get_finished_spans()
    ]


def test_steps_on_two_celery_workers_make_one_trace(
    traced_cluster: tuple[CeleryCluster, InMemorySpanExporter],
    receiver: ThreadingHTTPServer,
    tmp_path: Path,
) -> None:
    cluster, memory = traced_cluster
    # w1: a thread-pool worker; w2: a prefork worker, whose pool process runs the steps
    cluster.worker("w1", env={"OTEL_RESOURCE_ATTRIBUTES": "pyworkflow.test_worker=w1"})
    cluster.settings["OTEL_RESOURCE_ATTRIBUTES"] = "pyworkflow.test_worker=w2"
    argv = ["celery", "-A", "pyworkflow_celery.app", "worker", "-Q", QUEUES, "-n", "w2@%h"]
    argv += ["-P", "prefork", "-c", "1", "--without-gossip", "--without-mingle"]
    argv += ["--without-heartbeat", "-l", "INFO"]
    cluster.command("w2", argv, "ready.")
    import celery_tracing_flows as flows

    run_id = start(flows.traced_parallel, str(tmp_path))
    assert get_result(run_id, timeout=120) == ["a", "b"]
    events = get_events(run_id)
    hosts = {e.payload["worker"] for e in events if e.type == EventType.STEP_STARTED}
    assert hosts == {cluster.hostname_of("w1"), cluster.hostname_of("w2")}, hosts
    received: list[Span] = receiver.spans  # type: ignore[attr-defined]
    assert not received  # batched until the workers stop
    cluster.stop_all()  # SIGTERM: a warm shutdown, which flushes the batched spans

    def all_exported() -> bool:
        names = [s.name for s in received]
        return "workflow traced_parallel" in names and names.count("step traced_meet") == 3

    wait_for(all_exported, 30, "the workers' spans to reach the receiver")
    spans = _local(memory) + list(received)
    assert {s.trace_id for s in spans} == {tracing.trace_id_for(run_id)}

    (run,) = [s for s in spans if s.name == "workflow traced_parallel"]
    assert run.parent_id is None
    assert run.span_id == tracing.run_span_id(run_id)
    assert run.attributes["pyworkflow.outcome"] == "completed"
    attempts = [s for s in spans if s.name == "step traced_meet"]
    assert {s.parent_id for s in attempts} == {run.span_id}
    # the steps' spans came from both worker processes, not from this one
    assert {s.source for s in attempts} == {"w1", "w2"}
    outcomes = sorted(
        (str(s.attributes["pyworkflow.attempt"]), str(s.attributes["pyworkflow.outcome"]))
        for s in attempts
    )
    assert outcomes == [("1", "completed"), ("1", "retrying"), ("2", "completed")]
    assert [s.error for s in attempts if s.attributes["pyworkflow.outcome"] == "retrying"] == [True]
    # the user's spans made inside the steps on the workers nest under their attempts
    by_id = {s.span_id: s for s in attempts}
    for label in ("a", "b"):
        (user,) = [s for s in spans if s.name == f"user {label}"]
        parent = by_id[user.parent_id]  # type: ignore[index]
        assert parent.attributes["pyworkflow.outcome"] == "completed"
        assert parent.source == user.source


def test_a_child_run_on_celery_workers_is_in_the_parents_trace(
    traced_cluster: tuple[CeleryCluster, InMemorySpanExporter],
    receiver: ThreadingHTTPServer,
) -> None:
    cluster, memory = traced_cluster
    for name in ("w1", "w2"):
        cluster.worker(
            name, concurrency=2, env={"OTEL_RESOURCE_ATTRIBUTES": f"pyworkflow.test_worker={name}"}
        )
    import celery_tracing_flows as flows

    run_id = start(flows.traced_parent, 41)
    assert get_result(run_id, timeout=120) == 42
    cluster.stop_all()  # flushes the workers' spans
    received: list[Span] = receiver.spans  # type: ignore[attr-defined]

    def all_exported() -> bool:
        names = [s.name for s in received]
        return "workflow traced_parent" in names and "workflow traced_kid" in names

    wait_for(all_exported, 30, "the workers' spans to reach the receiver")
    spans = _local(memory) + list(received)
    assert {s.trace_id for s in spans} == {tracing.trace_id_for(run_id)}
    (parent,) = [s for s in spans if s.name == "workflow traced_parent"]
    (call,) = [s for s in spans if s.name == "child traced_kid"]
    (kid,) = [s for s in spans if s.name == "workflow traced_kid"]
    (add,) = [s for s in spans if s.name == "step traced_add"]
    assert parent.parent_id is None
    assert call.parent_id == parent.span_id
    assert kid.parent_id == call.span_id
    assert add.parent_id == kid.span_id
    assert kid.attributes["pyworkflow.run_id"] != run_id
