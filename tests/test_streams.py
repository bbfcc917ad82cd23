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


@workflow
async def writes_in_workflow_code() -> None:
    await write_stream("w", 1)


def test_write_stream_outside_a_step_is_refused(pw: str) -> None:
    with pytest.raises(RuntimeError, match="outside a step"):
        write_stream_sync("w", 1)
    run_id = start(writes_in_workflow_code)
    with pytest.raises(Exception, match="write to a stream from a step body"):
        get_result(run_id, timeout=30)


def test_reading_an_unknown_run_is_refused(pw: str) -> None:
    with pytest.raises(RunNotFoundError):
        list(read_stream_sync("no-such-run", "x"))
