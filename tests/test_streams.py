"""Durable streams through the public API: write_stream in steps, read_stream following a run."""

from __future__ import annotations

from typing import Any

import anyio
import pytest

from pyworkflow import (
    PayloadTooLargeError,
    RunNotFoundError,
    astart,
    get_result,
    get_step_context,
    read_stream,
    read_stream_sync,
    runtime,
    start,
    step,
    workflow,
    write_stream,
    write_stream_sync,
)
from pyworkflow import (
    sleep as pw_sleep,
)

from .conftest import FAST
from .dispatching import dispatching_executor  # noqa: F401  # fixture


@step(max_retries=2, retry_delay=0.01)
async def flaky_writer(count: int) -> int:
    attempt = get_step_context().attempt
    for i in range(count):
        await write_stream("progress", {"attempt": attempt, "i": i})
        if attempt == 1 and i == 2:
            raise RuntimeError("the worker dies after its third chunk")
    return count


@workflow
async def retried_stream(count: int) -> int:
    return await flaky_writer(count)


def test_a_retried_step_duplicates_nothing(pw: str) -> None:
    run_id = start(retried_stream, 5)
    assert get_result(run_id, timeout=30) == 5
    items = list(read_stream_sync(run_id, "progress"))
    assert [item.seq for item in items] == [1, 2, 3, 4, 5]
    assert [item.value for item in items] == [
        {"attempt": 1, "i": 0},
        {"attempt": 1, "i": 1},
        {"attempt": 1, "i": 2},
        {"attempt": 2, "i": 3},
        {"attempt": 2, "i": 4},
    ]
    assert [item.attempt for item in items] == [1, 1, 1, 2, 2]
    assert len({item.step_id for item in items}) == 1
    # resume after a seq; without follow it stops at what is stored
    assert [i.seq for i in read_stream_sync(run_id, "progress", after=3, follow=False)] == [4, 5]


@step
def sync_writer(names: list[str]) -> int:
    for n, name in enumerate(names):
        write_stream_sync("a", name)
        write_stream_sync("b", n)
    return len(names)


@workflow
async def two_streams(names: list[str]) -> int:
    return await sync_writer(names)


def test_a_sync_step_writes_two_streams(pw: str) -> None:
    run_id = start(two_streams, ["x", "y", "z"])
    assert get_result(run_id, timeout=30) == 3
    assert [i.value for i in read_stream_sync(run_id, "a")] == ["x", "y", "z"]
    assert [i.value for i in read_stream_sync(run_id, "b")] == [0, 1, 2]
    assert list(read_stream_sync(run_id, "nothing")) == []


@step
async def slow_writer(count: int) -> None:
    for i in range(count):
        await write_stream("ticks", i)
        await anyio.sleep(0.01)


@workflow
async def ticking(count: int) -> str:
    await slow_writer(count)
    return "done"


def test_a_reader_follows_the_run_until_it_ends(pw: str) -> None:
    run_id = start(ticking, 30)
    values = [item.value for item in read_stream_sync(run_id, "ticks", poll=0.02)]
    assert values == list(range(30))
    assert get_result(run_id, timeout=30) == "done"


@pytest.mark.anyio
async def test_an_async_reader_follows_and_resumes(pw: str) -> None:
    run_id = await astart(ticking, 20)
    seen: list[int] = []
    async for item in read_stream(run_id, "ticks", poll=0.02):
        seen.append(item.value)
        if item.seq == 7:
            break  # the reader goes away; a new one resumes after the last seq it saw
    async for item in read_stream(run_id, "ticks", after=7, poll=0.02):
        seen.append(item.value)
    assert seen == list(range(20))


@step
async def oversized() -> str:
    await write_stream("big", "ok")
    try:
        await write_stream("big", "x" * 2000)
    except PayloadTooLargeError as exc:
        return str(exc)
    return "stored"


@workflow
async def writes_too_much() -> str:
    return await oversized()


@pytest.mark.parametrize("storage", ["sqlite", "memory"])
def test_a_dispatched_step_streams_and_dedups_too(
    storage: str,
    tmp_path: Any,
    dispatching_executor: None,  # noqa: F811
) -> None:
    url = "memory://" if storage == "memory" else f"sqlite:///{tmp_path / 'pw.db'}"
    runtime.configure(storage=url, executor="inprocess-dispatch", **FAST)
    run_id = start(retried_stream, 4)
    assert get_result(run_id, timeout=30) == 4
    items = list(read_stream_sync(run_id, "progress"))
    assert [(i.seq, i.value["i"], i.attempt) for i in items] == [
        (1, 0, 1),
        (2, 1, 1),
        (3, 2, 1),
        (4, 3, 2),
    ]


def test_a_chunk_over_the_payload_limit_is_refused() -> None:
    runtime.configure(storage="memory://", max_payload_bytes=1000, **FAST)
    run_id = start(writes_too_much)
    message: Any = get_result(run_id, timeout=30)
    assert "chunk 1 of stream 'big'" in message and "2002 bytes" in message
    assert "max_payload_bytes" in message
    assert [i.value for i in read_stream_sync(run_id, "big")] == ["ok"]


def test_write_stream_outside_a_workflow_or_step_is_refused(pw: str) -> None:
    with pytest.raises(RuntimeError, match="outside a workflow or step"):
        write_stream_sync("w", 1)


@step
async def add_one(x: int) -> int:
    await write_stream("story", f"step {x}")
    return x + 1


@workflow
async def narrated(count: int) -> int:
    assert (
        await write_stream("story", "start") is None
    )  # workflow code: stored with its next record
    x = 0
    for i in range(count):
        x = await add_one(x)
        write_stream_sync("story", f"after {i}")
    await pw_sleep(0.05)  # the run suspends; the next activation replays all of the above
    await write_stream("story", "woke")
    x = await add_one(x)
    await write_stream("story", "end")
    return x


def test_workflow_code_writes_in_order_with_its_steps_and_replay_duplicates_nothing(
    pw: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    storage = runtime.get_runtime().storage
    sent: list[tuple[str, int | None]] = []
    append = type(storage).append_stream_chunk

    async def counting(self: Any, run_id: str, stream: str, data: str, **kw: Any) -> int:
        if kw.get("step_id") is None:
            sent.append((data, kw.get("index")))
        return await append(self, run_id, stream, data, **kw)

    monkeypatch.setattr(type(storage), "append_stream_chunk", counting)
    run_id = start(narrated, 3)
    assert get_result(run_id, timeout=30) == 4
    items = list(read_stream_sync(run_id, "story"))
    assert [i.value for i in items] == [
        "start", "step 0", "after 0", "step 1", "after 1", "step 2", "after 2",
        "woke", "step 3", "end",
    ]  # fmt: skip
    assert [i.seq for i in items] == list(range(1, 11))
    workflow_items = [i for i in items if i.step_id is None]
    assert [i.value for i in workflow_items] == [
        "start",
        "after 0",
        "after 1",
        "after 2",
        "woke",
        "end",
    ]
    assert all(i.attempt is None for i in workflow_items)
    # the activation after the sleep replayed "start" and "after 0..2": none was sent again
    events = runtime.get_runtime().call(runtime.get_runtime().storage.get_events, run_id)
    assert sum(e.type.value == "workflow_suspended" for e in events) >= 1
    assert [index for _, index in sent] == [0, 1, 2, 3, 4, 5]


def test_a_workflow_chunk_over_the_limit_fails_the_run_with_a_clear_error() -> None:
    runtime.configure(storage="memory://", **{**FAST, "max_payload_bytes": 2000})
    run_id = start(chatty_replayed_big)
    with pytest.raises(PayloadTooLargeError, match="stream 'w' \\(workflow code"):
        get_result(run_id, timeout=30)
    assert list(read_stream_sync(run_id, "w")) == []


@workflow
async def chatty_replayed_big() -> None:
    await write_stream("w", "x" * 3000)


def test_reading_an_unknown_run_is_refused(pw: str) -> None:
    with pytest.raises(RunNotFoundError):
        list(read_stream_sync("no-such-run", "x"))
