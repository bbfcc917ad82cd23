"""Durable streams: steps and workflow code write chunks to named streams of a run.

Chunks are output, not history: stored beside the event log
(:meth:`Storage.append_stream_chunk <pyworkflow.storage.base.Storage.append_stream_chunk>`),
never replayed, kept after the run ends. See ``docs/streams.md``.

The dedup rule: within one stream of one run, storage keeps one chunk per
``(step id, index)``, where ``index`` counts the calls of :func:`write_stream`
for that stream in one attempt of the step (0, 1, 2...). A retried attempt
that writes its chunks again from the start duplicates nothing: its chunks
with an index already stored are dropped (the first attempt's stay), and
readers see only those past it. Workflow code's chunks are numbered the same
way over the whole run (its code is deterministic), so a replayed workflow
duplicates nothing either.
"""

from __future__ import annotations

import math
import time
from collections.abc import AsyncIterator, Iterator
from contextvars import ContextVar
from datetime import datetime
from typing import Any

import anyio
import attrs

from pyworkflow.context import current_step_ids, current_workflow
from pyworkflow.models import StreamChunk
from pyworkflow.runtime import Runtime, get_runtime
from pyworkflow.serialization import Serializer, dumps_limited
from pyworkflow.transient import check_stream_write

__all__ = [
    "StreamItem",
    "follow_chunks",
    "follow_chunks_idle",
    "read_stream",
    "read_stream_sync",
    "write_stream",
    "write_stream_sync",
]

#: Seconds a following reader waits between polls when it has read everything so far.
DEFAULT_POLL = 0.5
#: Chunks read per storage call.
PAGE = 1000

#: The running attempt's ids and its next index per stream name.
_counters: ContextVar[tuple[tuple[str, str, str, int], dict[str, int]] | None] = ContextVar(
    "pyworkflow_stream_counters", default=None
)
#: The serializer name of runs written to or read here: run id -> name (it never changes).
_serializers: dict[str, str] = {}
_MAX_CACHED = 1024


@attrs.frozen
class StreamItem:
    """One chunk as a reader gets it: its ``seq`` (resume after it) and its decoded ``value``."""

    seq: int
    value: Any
    step_id: str | None
    attempt: int | None
    created_at: datetime


def _next_index(ids: tuple[str, str, str, int], name: str) -> int:
    state = _counters.get()
    if state is None or state[0] != ids:
        state = (ids, {})
        _counters.set(state)
    index = state[1].get(name, 0)
    state[1][name] = index + 1
    return index


def _writer_ids(call: str) -> tuple[str, str, str, int] | None:
    """The running step attempt's ids; None in workflow code; an error elsewhere."""
    ids = current_step_ids()
    if ids is None and current_workflow() is None:
        raise RuntimeError(
            f"{call}() called outside a workflow or step: write to a stream from a step body "
            "or from workflow code (readers use read_stream())"
        )
    return ids


def _workflow_write(name: str, chunk: Any) -> None:
    context = current_workflow()
    assert context is not None
    context.write_chunk(name, chunk)


async def _serializer(runtime: Runtime, run_id: str) -> Serializer:
    name = _serializers.get(run_id)
    if name is None:
        run = await runtime.storage.get_run(run_id)
        if len(_serializers) >= _MAX_CACHED:
            _serializers.clear()
        _serializers[run_id] = name = run.serializer
        return runtime.serializer_for(run)
    if name == runtime.serializer.name:
        return runtime.serializer
    from pyworkflow import plugins  # lazily: the registry loads on first use

    return plugins.get_serializer(name)


async def _append(
    runtime: Runtime, run_id: str, name: str, value: Any, step_id: str, attempt: int, index: int
) -> int:
    serializer = await _serializer(runtime, run_id)
    what = f"chunk {index} of stream {name!r} (step {step_id}, run {run_id})"
    data = dumps_limited(serializer, value, limit=runtime.settings.max_payload_bytes, what=what)
    return await runtime.storage.append_stream_chunk(
        run_id, name, data, step_id=step_id, attempt=attempt, index=index
    )


async def write_stream(name: str, chunk: Any) -> int | None:
    """Append ``chunk`` to stream ``name`` of the running run; in a step, returns its seq.

    ``chunk`` is serialized with the run's serializer (JSON by default) and
    may be at most ``max_payload_bytes``
    (:class:`~pyworkflow.errors.PayloadTooLargeError` otherwise).

    From a step body the chunk is stored at once and its seq returned. The
    n-th call for ``name`` in an attempt writes index n; an index the step
    wrote in an earlier attempt is not stored again (its seq is returned), so
    a retried step duplicates nothing it already wrote.

    ```python
    from pyworkflow import step, write_stream

    @step
    async def translate(lines: list[str]) -> int:
        for line in lines:
            await write_stream("progress", line.upper())  # readers see it at once
        return len(lines)
    ```

    From workflow code it returns None: the chunk is stored with the
    workflow's next record (before the step, sleep or outcome that follows
    it is written), and a replay of the workflow does not write it again.
    """
    ids = _writer_ids("write_stream")
    if ids is None:
        _workflow_write(name, chunk)
        return None
    run_id, step_id, _, attempt = ids
    check_stream_write(run_id, name)  # a transient run has no streams
    index = _next_index(ids, name)
    runtime = get_runtime()
    return await runtime.acall(_append, runtime, run_id, name, chunk, step_id, attempt, index)


def write_stream_sync(name: str, chunk: Any) -> int | None:
    """:func:`write_stream` for a synchronous step body (one that runs in a thread)."""
    ids = _writer_ids("write_stream_sync")
    if ids is None:
        _workflow_write(name, chunk)
        return None
    run_id, step_id, _, attempt = ids
    check_stream_write(run_id, name)  # a transient run has no streams
    index = _next_index(ids, name)
    runtime = get_runtime()
    return runtime.call(_append, runtime, run_id, name, chunk, step_id, attempt, index)


async def _page(
    runtime: Runtime, run_id: str, name: str, after: int
) -> tuple[bool, list[StreamItem]]:
    """Whether the run had ended before the read, and the chunks after ``after``."""
    run = await runtime.storage.get_run(run_id)
    ended = run.status.is_terminal
    chunks = await runtime.storage.read_stream(run_id, name, after, PAGE)
    serializer = await _serializer(runtime, run_id)
    return ended, [_item(serializer, c) for c in chunks]


def _item(serializer: Serializer, chunk: StreamChunk) -> StreamItem:
    return StreamItem(
        chunk.seq, serializer.loads(chunk.data), chunk.step_id, chunk.attempt, chunk.created_at
    )


async def _raw_page(
    runtime: Runtime, run_id: str, name: str, after: int
) -> tuple[bool, list[StreamChunk]]:
    run = await runtime.storage.get_run(run_id)
    return run.status.is_terminal, await runtime.storage.read_stream(run_id, name, after, PAGE)


async def follow_chunks(
    run_id: str,
    name: str,
    *,
    after: int = 0,
    follow: bool = True,
    poll: float = DEFAULT_POLL,
) -> AsyncIterator[StreamChunk]:
    """The stored chunks (not decoded) of stream ``name``, as :func:`read_stream` walks them.

    For servers and tools that pass chunks on as stored (the HTTP API sends
    ``data`` as the run's serializer wrote it).
    """
    async for chunk in follow_chunks_idle(run_id, name, after=after, follow=follow, poll=poll):
        if chunk is not None:
            yield chunk


async def follow_chunks_idle(
    run_id: str,
    name: str,
    *,
    after: int = 0,
    follow: bool = True,
    poll: float = DEFAULT_POLL,
    idle: float = math.inf,
) -> AsyncIterator[StreamChunk | None]:
    """:func:`follow_chunks`, yielding None each time ``idle`` seconds passed with no chunk.

    For servers that keep an idle connection open (the SSE keep-alive comment).
    """
    runtime = get_runtime()
    quiet_since = time.monotonic()
    while True:
        ended, chunks = await runtime.acall(_raw_page, runtime, run_id, name, after)
        for chunk in chunks:
            yield chunk
            after = chunk.seq
        if chunks:
            quiet_since = time.monotonic()
        if len(chunks) == PAGE:
            continue
        if ended or not follow:
            return
        if time.monotonic() - quiet_since >= idle:
            yield None
            quiet_since = time.monotonic()
        await anyio.sleep(poll)


async def read_stream(
    run_id: str, name: str, *, after: int = 0, follow: bool = True, poll: float = DEFAULT_POLL
) -> AsyncIterator[StreamItem]:
    """The chunks of stream ``name`` of run ``run_id`` with ``seq > after``, in order.

    With ``follow`` (the default) it waits for more, polling every ``poll``
    seconds, until the run has ended and every chunk is read; without it, it
    stops at the last chunk stored now. Resume a reader by passing the
    ``seq`` of the last item it saw as ``after``. Raises
    :class:`~pyworkflow.errors.RunNotFoundError` for an unknown run.
    """
    runtime = get_runtime()
    while True:
        ended, items = await runtime.acall(_page, runtime, run_id, name, after)
        for item in items:
            yield item
            after = item.seq
        if len(items) == PAGE:
            continue
        if ended or not follow:
            return
        await anyio.sleep(poll)


def read_stream_sync(
    run_id: str, name: str, *, after: int = 0, follow: bool = True, poll: float = DEFAULT_POLL
) -> Iterator[StreamItem]:
    """:func:`read_stream` for synchronous code: a plain iterator.

    ```python
    from pyworkflow import read_stream_sync

    for item in read_stream_sync(run_id, "progress"):  # until the run ends
        print(item.seq, item.value)
    ```
    """
    runtime = get_runtime()
    while True:
        ended, items = runtime.call(_page, runtime, run_id, name, after)
        yield from items
        if items:
            after = items[-1].seq
        if len(items) == PAGE:
            continue
        if ended or not follow:
            return
        time.sleep(poll)
