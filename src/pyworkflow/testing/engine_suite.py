"""The engine test set, runnable against any storage backend with one import.

A plugin's tests run it like this::

    from pyworkflow.testing import EngineConformance

    class TestEngineOnRedis(EngineConformance):
        def make_storage_url(self, tmp_path):
            return f"redis://127.0.0.1:{port}/0"
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
import uuid
from collections.abc import Iterator, Sequence
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import anyio
import pytest
from loguru import logger

import pyworkflow
from pyworkflow import (
    EventType,
    FatalError,
    NonDeterminismError,
    PayloadTooLargeError,
    RetryableError,
    RunStatus,
    SerializationError,
    WorkflowCancelledError,
    create_hook,
    get_events,
    get_result,
    get_run,
    get_step_context,
    runtime,
    sleep,
    start,
    step,
    workflow,
    workflow_logger,
)
from pyworkflow import plugins as pw_plugins
from pyworkflow.models import Event
from pyworkflow.storage.memory import MemoryStorage
from pyworkflow.testing.suite_checkpoint_engine import CheckpointEngineCases
from pyworkflow.testing.suite_children import ChildrenCases
from pyworkflow.testing.suite_continuation import ContinueAsNewCases
from pyworkflow.testing.suite_hook_timeouts import HookTimeoutCases
from pyworkflow.testing.suite_patching import PatchingCases
from pyworkflow.testing.suite_shield import ShieldCases
from pyworkflow.testing.suite_timeouts import TimeoutCases

calls: dict[str, list[Any]] = {}


def record(name: str, value: Any = None) -> None:
    calls.setdefault(name, []).append(value)


def types_of(run_id: str) -> list[str]:
    return [e.type.value for e in get_events(run_id)]


# ----- gather: concurrency and stable correlation ids (must-show 4) -----


@step()
async def slow_a() -> str:
    await anyio.sleep(1.0)
    return "a"


@step()
async def slow_b() -> str:
    await anyio.sleep(0.6)
    return "b"


@step()
async def after_gather(values: list[str]) -> str:
    return "+".join(values)


@workflow
async def gather_flow() -> str:
    began = pyworkflow.now()
    a, b = await asyncio.gather(slow_a(), slow_b())
    ended = pyworkflow.now()
    await sleep("50ms")  # forces a second activation that replays the gather
    joined = await after_gather([a, b])
    return f"{joined}:{(ended - began).total_seconds():.3f}"


@workflow
async def taskgroup_flow() -> list[str]:
    results: list[str] = []

    async def branch(step_fn: Any) -> None:
        results.append(await step_fn())

    async with anyio.create_task_group() as tg:
        tg.start_soon(branch, slow_a)
        tg.start_soon(branch, slow_b)
    return results


# ----- retries (must-show 5) -----


@step(max_retries=3, retry_base="10ms", jitter=0)
async def flaky() -> str:
    ctx = get_step_context()
    record("flaky", ctx.attempt)
    if ctx.attempt < 3:
        raise RetryableError(f"try again ({ctx.attempt})")
    return f"ok after {ctx.attempt}"


@workflow
async def flaky_flow() -> str:
    return await flaky()


@step(max_retries=5, retry_base="0.01s")
async def fatal_step() -> None:
    record("fatal", get_step_context().attempt)
    raise FatalError("card declined")


@workflow
async def fatal_flow() -> None:
    await fatal_step()


@step(max_retries=2, retry_base="0.01s", jitter=0)
async def rate_limited() -> str:
    attempt = get_step_context().attempt
    record("rate", time.monotonic())
    if attempt == 1:
        raise RetryableError("slow down", retry_after="50ms")
    return "done"


@workflow
async def rate_flow() -> str:
    return await rate_limited()


@step(max_retries=1, retry_base="0.01s")
async def charge(amount: int) -> str:
    raise ValueError(f"cannot charge {amount}")


@step()
async def release_stock(item: str) -> str:
    record("release", item)
    return f"released {item}"


@workflow
async def compensating_flow(item: str) -> str:
    try:
        await charge(10)
    except ValueError as exc:  # the step's original exception type comes back
        undo = await release_stock(item)
        return f"{undo} after: {exc}"
    return "charged"


# ----- non-determinism (must-show 6) -----

variant = {"first": "step_a"}


@step()
async def step_a() -> str:
    return "a"


@step()
async def step_b() -> str:
    return "b"


@workflow
async def changing_flow() -> str:
    first = step_a if variant["first"] == "step_a" else step_b
    await first()
    await sleep("0.5s")
    return "done"


# ----- cancellation -----


@step()
async def cleanup(tag: str) -> str:
    record("cleanup", tag)
    return tag


@workflow
async def long_sleeper() -> str:
    try:
        await sleep("30s")
    except asyncio.CancelledError:
        await cleanup("after-cancel")
        raise
    return "woke"


@step()
async def long_step() -> str:
    await anyio.sleep(1.0)
    return "finished"


@workflow
async def busy_flow() -> str:
    return await long_step()


# ----- deterministic values and replay-aware logging (must-show 10) -----


@workflow
async def values_flow() -> list[Any]:
    before = (pyworkflow.uuid4(), pyworkflow.random(), pyworkflow.now())
    await sleep("50ms")  # a second activation replays the recorded values
    return [*before, pyworkflow.uuid4()]


@workflow
async def chatty_flow() -> str:
    workflow_logger.info("before sleep")
    await sleep("50ms")  # a second activation replays the first line
    workflow_logger.info("after sleep")
    return "ok"


# ----- payload limits and serialization at the call site (must-shows 8, limits) -----


@step(max_retries=5, retry_base="0.01s")
async def big_result(size: int) -> str:
    record("big", get_step_context().attempt)
    return "x" * size


@workflow
async def big_flow(size: int) -> str:
    try:
        return await big_result(size)
    except PayloadTooLargeError as exc:
        return f"too large: {exc}"


@step()
async def takes_anything(value: Any) -> str:
    return "ran"


@workflow
async def bad_arg_flow() -> str:
    try:
        await takes_anything(lambda: 1)
    except SerializationError as exc:
        return str(exc)
    return "no error"


# ----- OOP and async API -----


class Double(pyworkflow.Step):
    max_retries = 0

    async def execute(self, x: int) -> int:
        return 2 * x


class Pipeline(pyworkflow.Workflow):
    name = "pipeline"

    async def run(self, x: int) -> int:
        y: int = await Double()(x)
        await sleep(timedelta(milliseconds=50))
        result: int = await Double()(y)
        return result


# ----- a run keeps its serializer when the default changes -----


@dataclasses.dataclass(frozen=True)
class Parcel:
    """A value whose types must come back whole through either serializer."""

    sku: str
    price: Decimal
    shipped: datetime
    tags: frozenset[str]


@step()
async def pack(parcel: Parcel, extra: tuple[int, ...]) -> dict[str, Any]:
    return {"parcel": parcel, "extra": extra, "raw": b"\x00\xff", "on": date(2024, 1, 2)}


@workflow
async def switching_flow(token: str, parcel: Parcel, extra: tuple[int, ...]) -> tuple[Any, ...]:
    packed = await pack(parcel, extra)
    stamp = pyworkflow.now()
    received: Parcel = await create_hook(token=token)  # the default serializer changes here
    again = await pack(received, extra)
    return (parcel, extra, packed, stamp, received, again)


def shape(value: Any) -> Any:
    """The nested types of ``value``, to compare what came back with what went in."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        fields = dataclasses.fields(value)
        return (type(value), tuple(shape(getattr(value, f.name)) for f in fields))
    if isinstance(value, dict):
        return (dict, tuple(sorted((str(k), shape(v)) for k, v in value.items())))
    if isinstance(value, list | tuple):
        return (type(value), tuple(shape(v) for v in value))
    if isinstance(value, set | frozenset):
        return (type(value), tuple(sorted(type(v).__name__ for v in value)))
    return type(value)


#: Settings that keep the suite fast: short polls and leases.
FAST: dict[str, Any] = {"poll_interval": 0.05, "lease_seconds": 2.0, "drain_timeout": 2.0}


def _assert_ran_together(events: Sequence[Event], first: str, second: str) -> None:
    """Both steps started before either completed, in the log's order and by its clock:
    they ran at once (by the recorded events, not by how long the run took)."""
    started = {e.payload["name"]: e for e in events if e.type == EventType.STEP_STARTED}
    done = {e.payload["name"]: e for e in events if e.type == EventType.STEP_COMPLETED}
    for a, b in ((first, second), (second, first)):
        assert started[a].seq < done[b].seq, f"{a} started after {b} completed"
        assert started[a].timestamp < done[b].timestamp, f"{a} started after {b} completed"


class EngineConformance(
    ChildrenCases,
    PatchingCases,
    TimeoutCases,
    ContinueAsNewCases,
    HookTimeoutCases,
    ShieldCases,
    CheckpointEngineCases,
):
    """Subclass it and implement :meth:`make_storage_url`; pytest collects every check.

    The checks run real workflows (steps, retries, sleeps, hooks, children,
    cancellation, patching, timeouts, continue-as-new, checkpoints) on a
    runtime whose ``storage`` is that URL, so they exercise a backend the way
    the engine uses it. An executor plugin sets ``executor`` in
    :attr:`extra_settings`.

    ```python
    from pyworkflow.testing import EngineConformance

    class TestEngineOnMyStorage(EngineConformance):
        def make_storage_url(self, tmp_path):
            return f"sqlite:///{tmp_path}/runs.db"  # your backend's URL
    ```
    """

    #: Extra settings for every test (an executor plugin sets ``executor`` here).
    extra_settings: dict[str, Any] = {}

    def make_storage_url(self, tmp_path: Path) -> str:
        """A storage URL, fresh and empty for each test."""
        raise NotImplementedError

    @pytest.fixture
    def anyio_backend(self) -> str:
        return "asyncio"

    @pytest.fixture
    def storage_url(self, tmp_path: Path) -> Iterator[str]:
        calls.clear()
        runtime.reset()
        yield self.make_storage_url(tmp_path)
        runtime.reset()

    @pytest.fixture
    def pw(self, storage_url: str) -> str:
        """A fast runtime on the backend under test."""
        runtime.configure(storage=storage_url, **{**FAST, **self.extra_settings})
        return storage_url

    def test_gather_runs_steps_concurrently_with_stable_ids(self, pw: str) -> None:
        run_id = start(gather_flow)
        result = get_result(run_id, timeout=20)
        joined, _ = result.split(":")
        assert joined == "a+b"
        events = get_events(run_id)
        _assert_ran_together(events, "slow_a", "slow_b")
        started = {
            e.payload["name"]: e.correlation_id for e in events if e.type == EventType.STEP_STARTED
        }
        completed = [
            (e.payload["name"], e.correlation_id)
            for e in events
            if e.type == EventType.STEP_COMPLETED
        ]
        # ids follow call order (a before b) although b completed first
        assert int(started["slow_a"] or 0) < int(started["slow_b"] or 0)
        assert completed[0] == ("slow_b", started["slow_b"])
        assert completed[1] == ("slow_a", started["slow_a"])
        # the run went through a second activation, which replayed both ids without divergence
        assert "workflow_resumed" in types_of(run_id)
        assert [e.type for e in events].count(EventType.STEP_COMPLETED) == 3

    def test_anyio_task_group_runs_steps_concurrently(self, pw: str) -> None:
        run_id = start(taskgroup_flow)
        assert get_result(run_id, timeout=20) == ["b", "a"]
        _assert_ran_together(get_events(run_id), "slow_a", "slow_b")

    def test_retryable_twice_then_success(self, pw: str) -> None:
        run_id = start(flaky_flow)
        assert get_result(run_id, timeout=20) == "ok after 3"
        assert calls["flaky"] == [1, 2, 3]
        events = get_events(run_id)
        retrying = [e for e in events if e.type == EventType.STEP_RETRYING]
        assert len(retrying) == 2
        delays = [e.payload["delay"] for e in retrying]
        assert delays[0] < delays[1], delays
        assert delays == pytest.approx([0.01, 0.02])  # at length: tests/test_harness_timing.py
        starts = [e.payload["attempt"] for e in events if e.type == EventType.STEP_STARTED]
        assert starts == [1, 2, 3]
        assert [e.type for e in events].count(EventType.STEP_COMPLETED) == 1

    def test_fatal_error_fails_at_once(self, pw: str) -> None:
        run_id = start(fatal_flow)
        with pytest.raises(FatalError, match="card declined"):
            get_result(run_id, timeout=20)
        assert calls["fatal"] == [1]
        assert "step_retrying" not in types_of(run_id)
        assert types_of(run_id).count("step_failed") == 1
        info = get_run(run_id)
        assert info.status == RunStatus.FAILED
        assert "card declined" in (info.error_message or "")

    def test_retry_after_is_honoured(self, pw: str) -> None:
        run_id = start(rate_flow)
        assert get_result(run_id, timeout=20) == "done"
        first, second = calls["rate"]
        assert second - first >= 0.05
        (retry,) = [e for e in get_events(run_id) if e.type == EventType.STEP_RETRYING]
        assert retry.payload["delay"] == pytest.approx(0.05)

    def test_workflow_catches_final_failure_and_compensates(self, pw: str) -> None:
        run_id = start(compensating_flow, "book")
        assert get_result(run_id, timeout=20) == "released book after: cannot charge 10"
        assert calls["release"] == ["book"]
        assert types_of(run_id).count("step_failed") == 1
        assert types_of(run_id).count("step_retrying") == 1

    def test_changed_code_raises_non_determinism(self, pw: str) -> None:
        variant["first"] = "step_a"
        run_id = start(changing_flow)
        deadline = time.monotonic() + 10
        while get_run(run_id).status != RunStatus.SUSPENDED:
            assert time.monotonic() < deadline
            time.sleep(0.02)
        variant["first"] = "step_b"  # a deploy changed the workflow between activations
        try:
            with pytest.raises(NonDeterminismError) as info:
                get_result(run_id, timeout=20)
        finally:
            variant["first"] = "step_a"
        assert "step_a" in str(info.value) and "step_b" in str(info.value)
        run = get_run(run_id)
        assert run.status == RunStatus.FAILED
        assert "NonDeterminismError" in (run.error_message or "")
        assert "step_a" in (run.error_message or "")
        assert "step_b" not in [e.payload.get("name") for e in get_events(run_id)]

    def test_cancel_delivers_cancellation_and_ends_cancelled(self, pw: str) -> None:
        run_id = start(long_sleeper)
        deadline = time.monotonic() + 10
        while get_run(run_id).status != RunStatus.SUSPENDED:
            assert time.monotonic() < deadline
            time.sleep(0.02)
        assert pyworkflow.cancel(run_id, reason="user asked") is True
        with pytest.raises(WorkflowCancelledError):
            get_result(run_id, timeout=10)
        assert get_run(run_id).status == RunStatus.CANCELLED
        assert calls["cleanup"] == ["after-cancel"]
        kinds = types_of(run_id)
        assert kinds.index("cancel_requested") < kinds.index("workflow_cancelled")
        assert pyworkflow.cancel(run_id) is False  # already over

    def test_cancel_while_a_step_runs(self, pw: str) -> None:
        run_id = start(busy_flow)
        deadline = time.monotonic() + 10
        while "step_started" not in types_of(run_id):
            assert time.monotonic() < deadline
            time.sleep(0.02)
        pyworkflow.cancel(run_id)
        with pytest.raises(WorkflowCancelledError):
            get_result(run_id, timeout=15)

    def test_now_random_uuid_are_recorded_and_replayed(self, pw: str) -> None:
        run_id = start(values_flow)
        result = get_result(run_id, timeout=20)
        recorded = [e for e in get_events(run_id) if e.type == EventType.VALUE_RECORDED]
        assert [e.payload["kind"] for e in recorded] == ["uuid4", "random", "now", "uuid4"]
        serializer = pyworkflow.runtime.get_runtime().serializer
        assert result == [serializer.loads(e.payload["value"]) for e in recorded]
        assert result[0] != result[3]

    def test_workflow_logger_prints_each_line_once_across_activations(self, pw: str) -> None:
        lines: list[str] = []
        handler = logger.add(lambda m: lines.append(m.record["message"]), level="INFO")
        logger.enable(__name__)  # this module is inside the (quiet) pyworkflow package
        try:
            run_id = start(chatty_flow)
            assert get_result(run_id, timeout=20) == "ok"
        finally:
            logger.disable(__name__)
            logger.remove(handler)
        assert types_of(run_id).count("workflow_resumed") >= 1
        assert lines.count("before sleep") == 1
        assert lines.count("after sleep") == 1

    def test_oversize_step_result_fails_fatally_naming_size_and_limit(
        self, storage_url: str
    ) -> None:
        pyworkflow.configure(
            storage=storage_url, max_payload_bytes=1000, poll_interval=0.05, **self.extra_settings
        )
        result = get_result(start(big_flow, 5000), timeout=20)
        assert result.startswith("too large:")
        assert "1000" in result and "5002" in result  # JSON string: 5000 chars plus quotes
        assert calls["big"] == [1]  # never retried

    def test_oversize_workflow_input_fails_at_start(self, storage_url: str) -> None:
        pyworkflow.configure(storage=storage_url, max_payload_bytes=1000, **self.extra_settings)
        with pytest.raises(PayloadTooLargeError, match="1000"):
            start(big_flow, "y" * 5000)

    def test_unserializable_step_argument_fails_at_the_call(self, pw: str) -> None:
        message = get_result(start(bad_arg_flow), timeout=20)
        assert "function" in message

    def test_unserializable_workflow_argument_fails_at_start(self, pw: str) -> None:
        with pytest.raises(SerializationError, match="function"):
            start(bad_arg_flow, lambda: 1)

    @pytest.mark.anyio
    async def test_oop_workflow_with_async_api(self, pw: str) -> None:
        run_id = await Pipeline().start(5)
        assert await pyworkflow.aget_result(run_id, timeout=20) == 20
        info = await pyworkflow.aget_run(run_id)
        assert info.workflow == "pipeline" and info.status == RunStatus.COMPLETED
        assert info.completed_at is not None and info.created_at <= info.completed_at

    def test_get_result_timeout_names_status(self, pw: str) -> None:
        run_id = start(long_sleeper)
        with pytest.raises(TimeoutError, match="still"):
            get_result(run_id, timeout=0.3)

    def switch_default_serializer(self, name: str) -> None:
        """Make ``name`` the configured serializer, as a redeployed process would see it.

        A persistent backend gets a new runtime configured with ``name``; a
        ``memory://`` storage lives inside its runtime and a restart would lose
        the run, so there the running runtime's default is replaced instead.
        """
        if isinstance(runtime.get_runtime().storage, MemoryStorage):
            runtime.get_runtime().serializer = pw_plugins.get_serializer(name)
        else:
            pyworkflow.configure(serializer=name)
        assert runtime.get_runtime().serializer.name == name

    @pytest.mark.parametrize(("first", "then"), [("json", "pickle"), ("pickle", "json")])
    def test_a_run_keeps_its_serializer_when_the_default_changes(
        self, storage_url: str, first: str, then: str
    ) -> None:
        pyworkflow.configure(
            storage=storage_url, serializer=first, **{**FAST, **self.extra_settings}
        )
        token = f"switch-{uuid.uuid4().hex}"
        shipped = datetime(2024, 5, 6, 7, 8, 9, tzinfo=UTC)
        parcel = Parcel("sku-1", Decimal("9.99"), shipped, frozenset({"fragile"}))
        run_id = start(switching_flow, token, parcel, (1, 2))
        deadline = time.monotonic() + 30
        while get_run(run_id).status != RunStatus.SUSPENDED or "hook_created" not in types_of(
            run_id
        ):
            assert time.monotonic() < deadline, f"run never waited on its hook: {types_of(run_id)}"
            time.sleep(0.02)

        self.switch_default_serializer(then)
        sent = Parcel("sku-2", Decimal("0.10"), shipped, frozenset({"a", "b"}))
        assert pyworkflow.resume_hook(token, sent) == run_id
        result = get_result(run_id, timeout=30)

        events = get_events(run_id)
        (recorded,) = [e for e in events if e.type == EventType.VALUE_RECORDED]
        old = pw_plugins.get_serializer(first)
        stamp = old.loads(recorded.payload["value"])
        assert type(stamp) is datetime
        bits = {"extra": (1, 2), "raw": b"\x00\xff", "on": date(2024, 1, 2)}
        expected = (
            parcel,
            (1, 2),
            {"parcel": parcel, **bits},
            stamp,
            sent,
            {"parcel": sent, **bits},
        )
        assert result == expected
        assert shape(result) == shape(expected)
        # every payload of the run was written, before and after the switch, by its own serializer
        payloads = [
            (e.type.value, key, e.payload[key])
            for e in events
            for key in ("input", "result", "data", "value")
            if isinstance(e.payload.get(key), str)
        ]
        kinds = {kind for kind, _, _ in payloads}
        assert {"step_completed", "hook_received", "value_recorded", "workflow_completed"} <= kinds
        for kind, key, data in payloads:
            try:
                old.loads(data)
            except SerializationError as exc:
                raise AssertionError(f"{kind} {key} not written with {first!r}: {exc}") from exc
        rt = runtime.get_runtime()
        assert rt.call(rt.storage.get_run, run_id).serializer == first

        # a run started now uses the new default, and completes with it
        fresh = start(Pipeline, 5)
        assert get_result(fresh, timeout=30) == 20
        assert rt.call(rt.storage.get_run, fresh).serializer == then

    def test_idempotency_key_returns_the_same_run(self, pw: str) -> None:
        first = pyworkflow.start_workflow(busy_flow, idempotency_key="order-1")
        again = pyworkflow.start_workflow(busy_flow, idempotency_key="order-1")
        assert first == again
