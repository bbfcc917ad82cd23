"""Transient runs (``@workflow(durable=False)``): in-process, no storage writes."""

from __future__ import annotations

import asyncio
import io
import json
import os
import subprocess
import sys
import time
import traceback
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import anyio
import pytest

from pyworkflow import (
    FatalError,
    RetryableError,
    RunNotFoundError,
    Workflow,
    WorkflowTimeoutError,
    continue_as_new,
    create_hook,
    get_step_context,
    now,
    patched,
    runtime,
    sleep,
    step,
    workflow,
    workflow_logger,
)
from pyworkflow.client import (
    aexecute,
    aexecute_workflow,
    aget_result,
    aget_run,
    alist_runs,
    astart,
    execute,
    execute_workflow,
    start,
)
from pyworkflow.errors import ChildWorkflowError
from pyworkflow.hookspecs import hookimpl
from pyworkflow.logs import disable_logging, enable_logging
from pyworkflow.models import Event, EventType, RunStatus
from pyworkflow.plugins import get_plugin_manager
from pyworkflow.transient import TransientRunError

from .conftest import FAST

pytestmark = pytest.mark.anyio

EXAMPLE = Path(__file__).parent.parent / "examples" / "transient.py"


# ----- workflows and steps -----

calls: dict[str, int] = {}
intervals: dict[str, tuple[float, float]] = {}
seen_ids: list[Any] = []


@pytest.fixture(autouse=True)
def _clean() -> Iterator[None]:
    calls.clear()
    intervals.clear()
    seen_ids.clear()
    yield


def _count(name: str) -> int:
    calls[name] = calls.get(name, 0) + 1
    return calls[name]


@step()
async def tr_add(a: int, b: int) -> int:
    return a + b


@step(max_retries=3, retry_delay="fixed", retry_base=0.001, jitter=0)
async def tr_flaky(name: str, failures: int) -> str:
    attempt = _count(name)
    if attempt <= failures:
        raise ConnectionError(f"{name}: attempt {attempt} failed")
    return f"{name} ok after {attempt}"


@step(max_retries=5, retry_base="1h", jitter=0)
async def tr_retry_soon(name: str) -> int:
    attempt = _count(name)
    if attempt < 3:
        raise RetryableError("busy", retry_after=0.001)  # overrides the hour-long back-off
    return get_step_context().attempt


@step(max_retries=5, retry_base=0.001)
async def tr_fatal(name: str) -> None:
    _count(name)
    raise FatalError("card declined")


class OutOfStock(Exception):
    """A user error type: runs raise it as it is."""


@step(max_retries=1, retry_base=0.001, jitter=0)
async def tr_failing_step(item: str) -> None:
    _count("failing_step")
    raise OutOfStock(f"no {item} left")


@step()
async def tr_timed(name: str, rendezvous: anyio.Event, partner: anyio.Event) -> str:
    began = time.monotonic()
    rendezvous.set()
    with anyio.fail_after(5):  # only if the partner never runs: the test fails, not hangs
        await partner.wait()
    intervals[name] = (began, time.monotonic())
    return name


@step(timeout=0.05, max_retries=0)
async def tr_too_slow() -> None:
    await anyio.sleep(5)


@step()
def tr_sync_step(value: int) -> tuple[str, int, int, str]:
    ctx = get_step_context()
    return ctx.step_id, ctx.attempt, value * 2, ctx.idempotency_key


@workflow(durable=False)
async def quote_order(x: int) -> tuple[int, int, int]:
    a = await tr_add(x, 1)
    b, c = await asyncio.gather(tr_add(a, 1), tr_add(a, 2))
    return a, b, c


@workflow(durable=False)
async def retrying(failures: int) -> str:
    return await tr_flaky("flaky", failures)


@workflow(durable=False)
async def retry_after_wf() -> int:
    return await tr_retry_soon("retry_soon")


@workflow(durable=False)
async def fatal_wf() -> None:
    await tr_fatal("fatal")


@workflow(durable=False)
async def overlap() -> list[str]:
    a, b = anyio.Event(), anyio.Event()
    return list(await asyncio.gather(tr_timed("a", a, b), tr_timed("b", b, a)))


@workflow(durable=False)
async def hooked(order_id: str) -> Any:
    return await create_hook(token=f"approval:{order_id}")


@workflow(durable=False)
async def sleeper() -> list[str]:
    order_seen: list[str] = []

    async def slow() -> None:
        await sleep(0.05)
        order_seen.append("slept")

    async def quick() -> None:
        await tr_add(1, 1)
        order_seen.append("step")

    order_seen.append("start")
    await asyncio.gather(slow(), quick())
    await sleep(timedelta_small())
    order_seen.append("end")
    return order_seen


def timedelta_small() -> Any:
    from datetime import timedelta

    return timedelta(milliseconds=1)


@workflow(durable=False)
async def step_ids() -> list[Any]:
    first = await tr_sync_step(21)
    seen_ids.append(get_step_context_outside())
    second = await tr_add(1, 2)
    return [first, second]


def get_step_context_outside() -> str:
    try:
        get_step_context()
    except RuntimeError:
        return "workflow code sees no step context"
    return "leaked"


@workflow(durable=False)
async def countdown(n: int, seen: int = 0) -> int:
    if n > 0:
        continue_as_new(n - 1, seen + 1)
    return seen


@workflow
async def child_double(x: int) -> int:
    return await tr_add(x, x)


@workflow
async def child_fails(item: str) -> None:
    await tr_failing_step(item)


@workflow(durable=False)
async def parent_of_double(x: int) -> int:
    return await child_double(x) + 1


@workflow(durable=False)
async def parent_of_failure() -> str:
    try:
        await child_fails("pen")
    except ChildWorkflowError as exc:
        return f"{exc.status}: {type(exc.__cause__).__name__}: {exc.__cause__}"
    return "not raised"


@workflow(durable=False, timeout=0.05)
async def overdue() -> None:
    await sleep(5)


@workflow(durable=False)
async def sleeps_long() -> None:
    await sleep(5)


@workflow(durable=False)
async def timing_out_step() -> None:
    await tr_too_slow()


@workflow(durable=False)
async def misc() -> tuple[bool, bool]:
    workflow_logger.info("hello from workflow code")
    return patched("new-pricing"), now().tzinfo is not None


# the same workflow code, durable, to compare outcomes with
@workflow
async def durable_failing(item: str) -> None:
    await tr_failing_step(item)


@workflow
async def durable_raises() -> None:
    raise OutOfStock("raised by the workflow itself")


@workflow(durable=False)
async def transient_failing(item: str) -> None:
    await tr_failing_step(item)


@workflow(durable=False)
async def transient_raises() -> None:
    raise OutOfStock("raised by the workflow itself")


@workflow
async def durable_order(x: int) -> tuple[int, int, int]:
    a = await tr_add(x, 1)
    b, c = await asyncio.gather(tr_add(a, 1), tr_add(a, 2))
    return a, b, c


class Greeting(Workflow):
    name = "transient_greeting"
    durable = False

    async def run(self, who: str) -> str:
        return f"Hello, {await tr_add(len(who), 0)} letters of {who}!"


# ----- results -----


async def test_result_comes_back_from_the_awaited_call() -> None:
    assert await aexecute(quote_order, 1) == (2, 3, 4)
    assert await aexecute_workflow(quote_order, (1,)) == (2, 3, 4)


def test_sync_execute_runs_it_on_a_loop_of_its_own() -> None:
    assert execute(quote_order, 5) == (6, 7, 8)
    assert execute_workflow(durable_order, (5,), durable=False) == (6, 7, 8)
    assert runtime._runtime is None


async def test_sync_execute_from_async_code_is_refused() -> None:
    with pytest.raises(RuntimeError, match="await aexecute"):
        execute(quote_order, 5)


async def test_a_workflow_class_declared_transient() -> None:
    assert await Greeting().execute("Ana") == "Hello, 3 letters of Ana!"
    assert await aexecute(Greeting, "Bo") == "Hello, 2 letters of Bo!"


def test_a_workflow_class_declared_transient_sync() -> None:
    assert Greeting().execute_sync("Ana") == "Hello, 3 letters of Ana!"


async def test_a_durable_workflow_can_run_transiently_per_call() -> None:
    runtime.configure(storage="memory://", **FAST)
    assert await aexecute_workflow(durable_order, (1,), durable=False) == (2, 3, 4)
    assert (await alist_runs()).runs == []
    # and execute() of a durable workflow starts a run and waits for it
    assert await aexecute(durable_order, 1) == (2, 3, 4)
    (run,) = (await alist_runs()).runs
    assert run.status == RunStatus.COMPLETED


async def test_durable_true_for_a_transient_workflow_is_refused() -> None:
    with pytest.raises(ValueError, match="declared transient"):
        await aexecute_workflow(quote_order, (1,), durable=True)


async def test_start_refuses_a_transient_workflow_and_names_the_alternative() -> None:
    runtime.configure(storage="memory://", **FAST)
    with pytest.raises(TypeError, match=r"'quote_order' is transient.*aexecute"):
        await astart(quote_order, 1)
    with pytest.raises(TypeError, match="transient"):
        await Greeting().start("Ana")


def test_sync_start_refuses_a_transient_workflow() -> None:
    runtime.configure(storage="memory://", **FAST)
    with pytest.raises(TypeError, match="transient"):
        start(quote_order, 1)


async def test_bad_arguments_fail_before_anything_runs() -> None:
    with pytest.raises(TypeError, match="arguments do not fit workflow quote_order"):
        await aexecute(quote_order, 1, 2)


# ----- retries -----


async def test_retries_with_back_off_until_success() -> None:
    assert await aexecute(retrying, 2) == "flaky ok after 3"
    assert calls["flaky"] == 3


async def test_retryable_error_retry_after_overrides_the_policy_delay() -> None:
    with anyio.fail_after(10):  # the policy's one-hour back-off would hang here
        assert await aexecute(retry_after_wf) == 3


async def test_fatal_error_is_not_retried() -> None:
    with pytest.raises(FatalError, match="card declined"):
        await aexecute(fatal_wf)
    assert calls["fatal"] == 1


async def test_retries_run_out_and_the_error_is_raised() -> None:
    with pytest.raises(ConnectionError, match="attempt 4 failed"):
        await aexecute(retrying, 10)
    assert calls["flaky"] == 4  # max_retries=3: four attempts, as in a durable run


# ----- errors: the same types as a durable run's result, with the traceback -----


async def test_errors_have_the_types_of_a_durable_runs_result() -> None:
    runtime.configure(storage="memory://", **FAST)
    outcomes: list[tuple[type[BaseException], str]] = []
    for durable, transient in ((durable_failing, transient_failing),):
        with pytest.raises(Exception) as durable_error:
            await aget_result(await astart(durable, "pen"), timeout=30)
        with pytest.raises(Exception) as transient_error:
            await aexecute(transient, "pen")
        outcomes.append((type(durable_error.value), str(durable_error.value)))
        outcomes.append((type(transient_error.value), str(transient_error.value)))
    with pytest.raises(Exception) as durable_error:
        await aget_result(await astart(durable_raises), timeout=30)
    with pytest.raises(Exception) as transient_error:
        await aexecute(transient_raises)
    assert type(durable_error.value) is type(transient_error.value) is OutOfStock
    assert outcomes[0] == outcomes[1] == (OutOfStock, "no pen left")
    assert calls["failing_step"] == 4  # two attempts each


async def test_a_step_exception_keeps_its_traceback() -> None:
    with pytest.raises(OutOfStock) as caught:
        await aexecute(transient_failing, "ink")
    frames = [frame.name for frame in traceback.extract_tb(caught.value.__traceback__)]
    assert "tr_failing_step" in frames  # the step body's own frame, where it was raised
    assert "transient_failing" in frames


async def test_step_timeout() -> None:
    with pytest.raises(TimeoutError, match=r"step 'tr_too_slow' timed out after 0\.05s"):
        await aexecute(timing_out_step)


async def test_workflow_timeout() -> None:
    with pytest.raises(WorkflowTimeoutError, match="overdue") as caught:
        await aexecute(overdue)
    assert caught.value.timeout == 0.05
    with pytest.raises(WorkflowTimeoutError, match=r"timeout of 0\.01s"):
        await aexecute_workflow(sleeps_long, timeout=0.01)  # per call


# ----- concurrency and sleep -----


async def test_gathered_steps_overlap() -> None:
    assert await aexecute(overlap) == ["a", "b"]
    (a_start, a_end), (b_start, b_end) = intervals["a"], intervals["b"]
    # each step waited for the other to start: their recorded intervals overlap
    assert a_start < b_end and b_start < a_end


async def test_sleep_is_a_real_sleep_in_order() -> None:
    assert await aexecute(sleeper) == ["start", "step", "slept", "end"]


# ----- what a transient run refuses, and what it runs transiently -----


async def test_hooks_are_refused_with_a_clear_error() -> None:
    with pytest.raises(TransientRunError) as caught:
        await aexecute(hooked, "o-1")
    message = str(caught.value)
    assert "create_hook()" in message and "'hooked'" in message
    assert "transient (durable=False)" in message and "no durable log" in message


async def test_continue_as_new_runs_the_body_again() -> None:
    assert await aexecute(countdown, 3) == 3


async def test_children_run_transiently_in_process() -> None:
    runtime.configure(storage="memory://", **FAST)
    assert await aexecute(parent_of_double, 4) == 9
    assert await aexecute(parent_of_failure) == "failed: OutOfStock: no pen left"
    assert (await alist_runs()).runs == []


def test_declarations_a_transient_workflow_cannot_have() -> None:
    async def body() -> None:
        return None

    with pytest.raises(ValueError, match="never queued"):
        workflow(name="transient_queued", durable=False, queue="q")(body)
    with pytest.raises(ValueError, match="schedule"):
        workflow(name="transient_scheduled", durable=False, schedule="0 * * * *")(body)
    with pytest.raises(TypeError, match="True or False"):
        workflow(name="transient_bad", durable="no")(body)  # type: ignore[call-overload]  # on purpose


# ----- step context, logs, observers, storage -----


async def test_step_context_and_its_ids() -> None:
    (step_id, attempt, doubled, key), three = await aexecute(step_ids)
    assert (step_id, attempt, doubled, three) == ("1", 1, 42, 3)
    assert key.endswith(":1") and len(key) == 32 + 2  # run id (uuid4 hex) ":" step id
    assert seen_ids == ["workflow code sees no step context"]


async def test_nothing_is_stored() -> None:
    runtime.configure(storage="memory://", **FAST)
    run_ids: list[str] = []

    @step()
    async def remember() -> None:
        run_ids.append(get_step_context().run_id)

    @workflow(name="transient_remembering", durable=False)
    async def remembering() -> None:
        await remember()
        await sleep(0)

    await aexecute(remembering)
    assert runtime._runtime is None  # a transient run starts no runtime, opens no storage
    assert (await alist_runs()).runs == []
    with pytest.raises(RunNotFoundError):
        await aget_run(run_ids[0])
    rt = runtime.get_runtime()
    with pytest.raises(RunNotFoundError):
        await rt.acall(rt.storage.get_events, run_ids[0])  # no event either


class _Observer:
    def __init__(self) -> None:
        self.events: list[Event] = []
        self.statuses: list[tuple[str, RunStatus]] = []

    @hookimpl
    def pyworkflow_events_appended(self, run_id: str, events: Sequence[Event]) -> None:
        self.events.extend(events)

    @hookimpl
    def pyworkflow_run_status_changed(self, run_id: str, workflow: str, status: RunStatus) -> None:
        self.statuses.append((workflow, status))


async def test_observer_plugins_see_the_run() -> None:
    observer = _Observer()
    pm = get_plugin_manager()
    pm.register(observer, name="transient-test-observer")
    try:
        assert await aexecute(retrying, 1) == "flaky ok after 2"
    finally:
        pm.unregister(name="transient-test-observer")
    kinds = [(e.type, e.correlation_id, e.payload.get("attempt")) for e in observer.events]
    assert kinds == [
        (EventType.WORKFLOW_STARTED, None, None),
        (EventType.STEP_STARTED, "1", 1),
        (EventType.STEP_RETRYING, "1", 1),
        (EventType.STEP_STARTED, "1", 2),
        (EventType.STEP_COMPLETED, "1", 2),
        (EventType.WORKFLOW_COMPLETED, None, None),
    ]
    assert [e.seq for e in observer.events] == [1, 2, 3, 4, 5, 6]
    assert observer.events[0].payload["transient"] is True
    assert observer.statuses == [("retrying", RunStatus.RUNNING), ("retrying", RunStatus.COMPLETED)]


async def test_logs_are_bound_with_run_and_step_ids() -> None:
    sink = io.StringIO()
    enable_logging("INFO", json=True, sink=sink)
    try:
        assert await aexecute(retrying, 1) == "flaky ok after 2"
        assert await aexecute(misc) == (True, True)
    finally:
        disable_logging()
    records = [json.loads(line)["record"] for line in sink.getvalue().splitlines()]
    retry = next(r for r in records if "retrying in" in r["message"])
    assert retry["extra"]["step_id"] == "1" and retry["extra"]["step"] == "tr_flaky"
    assert len(retry["extra"]["run_id"]) == 32
    hello = next(r for r in records if r["message"] == "hello from workflow code")
    assert hello["extra"]["workflow"] == "misc" and len(hello["extra"]["run_id"]) == 32


# ----- the example -----


def test_the_example_runs(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYWORKFLOW_", "PYTEST_"))}
    out = subprocess.run(
        [sys.executable, str(EXAMPLE)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    assert "quote for 3 items: 36.0 (priced after 2 attempts)" in out.stdout
    assert "storage opened by the transient runs: False" in out.stdout
    assert "runs stored: 0" in out.stdout


def test_tracing_sees_the_run(tmp_path: Path) -> None:
    """With tracing on, a transient run has its spans; a user span in a step nests under it."""
    if not os.environ.get("CI"):
        pytest.importorskip("opentelemetry.sdk")
    from opentelemetry import trace
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from pyworkflow import tracing

    tracing.shutdown_tracing()
    runtime.configure(
        storage=f"sqlite:///{tmp_path / 'pw.db'}",
        tracing={"enabled": True, "exporter": "none"},
        **FAST,
    )
    runtime.get_runtime()  # tracing is installed with the process's runtime
    plugin = tracing.get_tracing()
    assert plugin is not None
    exporter = InMemorySpanExporter()
    plugin.provider.add_span_processor(SimpleSpanProcessor(exporter))
    previous = trace._TRACER_PROVIDER
    trace._TRACER_PROVIDER = plugin.provider
    try:
        assert execute(traced) == "ok after 2"
        runtime.shutdown()
    finally:
        trace._TRACER_PROVIDER = previous
        runtime.reset()
        tracing.shutdown_tracing()
    spans = {
        (s.name, (s.attributes or {}).get("pyworkflow.attempt")): s
        for s in exporter.get_finished_spans()
    }
    run = spans[("workflow traced", None)]
    first, second = spans[("step tr_traced_step", 1)], spans[("step tr_traced_step", 2)]
    assert run.attributes is not None and run.attributes["pyworkflow.outcome"] == "completed"
    assert first.attributes is not None and first.attributes["pyworkflow.outcome"] == "retrying"
    assert first.parent is not None and first.parent.span_id == run.context.span_id
    user = spans[("user-work", None)]
    assert user.parent is not None and user.parent.span_id == second.context.span_id
    assert user.context.trace_id == run.context.trace_id


@step(max_retries=2, retry_delay="0s")
async def tr_traced_step() -> str:
    attempt = _count("traced_step")
    if attempt < 2:
        raise ValueError("boom")
    from opentelemetry import trace

    with trace.get_tracer("user").start_as_current_span("user-work"):
        pass
    return f"ok after {attempt}"


@workflow(durable=False)
async def traced() -> str:
    return await tr_traced_step()


# ----- cancellation, task groups, first(), nesting in a durable step -----


@step()
async def tr_waits_forever(started: anyio.Event) -> None:
    started.set()
    await anyio.sleep_forever()


@workflow(durable=False)
async def cancellable(started: anyio.Event) -> None:
    await tr_waits_forever(started)


async def test_cancelling_the_caller_cancels_the_run() -> None:
    observer = _Observer()
    pm = get_plugin_manager()
    pm.register(observer, name="transient-test-observer")
    started = anyio.Event()
    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(aexecute, cancellable, started)
            await started.wait()
            tg.cancel_scope.cancel()
    finally:
        pm.unregister(name="transient-test-observer")
    assert [e.type for e in observer.events][-1] == EventType.WORKFLOW_CANCELLED
    assert observer.statuses[-1] == ("cancellable", RunStatus.CANCELLED)


@workflow(durable=False)
async def grouped() -> list[int]:
    results: list[int] = []

    async def one(value: int) -> None:
        results.append(await tr_add(value, 0))

    async with anyio.create_task_group() as tg:
        for value in (3, 1, 2):
            tg.start_soon(one, value)
    return sorted(results)


@workflow(durable=False)
async def raced() -> tuple[int, Any]:
    from pyworkflow import first

    return await first(tr_add(1, 1), sleep(5))


async def test_task_groups_and_first() -> None:
    assert await aexecute(grouped) == [1, 2, 3]
    with anyio.fail_after(4):  # the losing 5 s sleep is cancelled
        assert await aexecute(raced) == (0, 2)


@workflow(durable=False)
async def cancels_its_child() -> str:
    from pyworkflow import start_child

    handle = start_child(sleepy_child)
    await sleep(0.01)
    await handle.cancel()
    try:
        await handle
    except ChildWorkflowError as exc:
        return f"{exc.status}: {type(exc.__cause__).__name__}"
    return "not raised"


@workflow
async def sleepy_child() -> None:
    await sleep(5)


async def test_a_child_cancelled_through_its_handle() -> None:
    with anyio.fail_after(4):
        assert await aexecute(cancels_its_child) == "cancelled: WorkflowCancelledError"


@step()
async def tr_runs_a_transient_flow(x: int) -> tuple[int, int, int]:
    result: tuple[int, int, int] = await aexecute(quote_order, x)
    return result


@workflow
async def durable_outer(x: int) -> tuple[int, int, int]:
    return await tr_runs_a_transient_flow(x)


async def test_a_durable_step_runs_a_transient_workflow() -> None:
    runtime.configure(storage="memory://", **FAST)
    assert await aget_result(await astart(durable_outer, 1), timeout=30) == (2, 3, 4)
    (run,) = (await alist_runs()).runs  # the transient run left no run of its own
    assert run.workflow_name == "durable_outer"


# ----- on the test harness: virtual time and step overrides -----


@step(max_retries=3, retry_delay="exponential", retry_base="1h", max_retry_delay="1d", jitter=0)
async def tr_charge(customer: str) -> str:
    raise RuntimeError("tests never reach the payment API")


@workflow(durable=False)
async def transient_reminder(customer: str) -> dict[str, Any]:
    began = now()
    await sleep("30d")
    payment = await tr_charge(customer)
    return {"payment": payment, "waited": now() - began}


@workflow(durable=False)
async def two_sleeps() -> list[tuple[str, Any]]:
    began = now()
    seen: list[tuple[str, Any]] = []

    async def branch(label: str, duration: str) -> None:
        await sleep(duration)
        await tr_add(1, 1)
        seen.append((label, now() - began))

    await asyncio.gather(branch("two hours", "2h"), branch("one hour", "1h"))
    return seen


@workflow(durable=False, timeout="1h")
async def overdue_virtual() -> None:
    await sleep("1d")


async def test_on_the_harness_time_skips_and_overrides_apply() -> None:
    from datetime import timedelta

    from pyworkflow.testing import WorkflowEnvironment

    outages = [ConnectionError("payment API unreachable")] * 2

    def flaky_charge(customer: str) -> str:
        if outages:
            raise outages.pop()
        return f"pay-{customer}"

    async with WorkflowEnvironment() as env:
        charges = env.override_step(tr_charge, flaky_charge)
        began = env.now()
        with anyio.fail_after(10):  # 30 days and two back-offs of virtual time
            result = await env.run(transient_reminder, "ana")
        # 30 days, then back-offs of 1h and 2h (exponential, no jitter) before the third attempt
        assert result == {"payment": "pay-ana", "waited": timedelta(days=30, hours=3)}
        assert env.now() - began == timedelta(days=30, hours=3)
        assert [call.attempt for call in charges.calls] == [1, 2, 3]

        # concurrent sleeps end in due order, each at its own virtual time
        assert await env.run(two_sleeps) == [
            ("one hour", timedelta(hours=1)),
            ("two hours", timedelta(hours=2)),
        ]

        began = env.now()
        with pytest.raises(WorkflowTimeoutError):
            await env.run(overdue_virtual)
        assert env.now() - began == timedelta(hours=1)

        with pytest.raises(TypeError, match="transient"):
            await env.start(transient_reminder, "bo")  # a transient run has nothing to start


def test_on_the_sync_harness() -> None:
    from pyworkflow.testing import WorkflowEnvironment

    with WorkflowEnvironment() as env:
        env.override_step(tr_charge, lambda customer: "pay-sync")
        assert env.sync.run(transient_reminder, "bo")["payment"] == "pay-sync"


# ----- streams: refused, never retried -----


@step(max_retries=3, retry_base=0.001)
async def tr_streams_from_step() -> None:
    from pyworkflow import write_stream

    _count("streams_from_step")
    await write_stream("out", "chunk")


@workflow(durable=False)
async def stream_in_step() -> None:
    await tr_streams_from_step()


@workflow(durable=False)
async def stream_in_workflow() -> None:
    from pyworkflow import write_stream

    await write_stream("out", "chunk")


async def test_streams_are_refused() -> None:
    runtime.configure(storage="memory://", **FAST)
    with pytest.raises(
        TransientRunError, match=r"write_stream\('out'\) in a step of transient run"
    ):
        await aexecute(stream_in_step)
    assert calls["streams_from_step"] == 1  # a FatalError: not retried
    with pytest.raises(TransientRunError, match=r"'stream_in_workflow'.*no streams"):
        await aexecute(stream_in_workflow)
