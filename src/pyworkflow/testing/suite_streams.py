"""Storage conformance cases for durable streams (mixed into ``StorageConformance``).

Each case names the rule of :meth:`~pyworkflow.storage.base.Storage.append_stream_chunk`,
``read_stream`` or ``list_streams`` it checks; every backend must pass them.
"""

from __future__ import annotations

from typing import Any

import anyio
import pytest

from pyworkflow.errors import PayloadTooLargeError, RunNotFoundError
from pyworkflow.models import EventType, NewEvent, Run, RunStatus, utcnow
from pyworkflow.storage.base import Storage

__all__ = ["StreamStorageCases"]


def _run(run_id: str) -> Run:
    now = utcnow()
    return Run(run_id, "wf", RunStatus.PENDING, "{}", "json", now, now)


async def _create(storage: Storage, *run_ids: str) -> None:
    for run_id in run_ids:
        await storage.create_run(_run(run_id), [NewEvent(EventType.WORKFLOW_STARTED)])


@pytest.mark.anyio
class StreamStorageCases:
    """``append_stream_chunk``, ``read_stream`` and ``list_streams``."""

    async def test_chunks_read_back_in_order_with_seq_from_1(self, storage: Storage) -> None:
        await _create(storage, "r")
        seqs = [await storage.append_stream_chunk("r", "out", f'"c{i}"') for i in range(5)]
        assert seqs == [1, 2, 3, 4, 5]
        chunks = await storage.read_stream("r", "out")
        assert [(c.seq, c.data) for c in chunks] == [(i + 1, f'"c{i}"') for i in range(5)]
        first = chunks[0]
        assert (first.run_id, first.stream, first.step_id, first.attempt, first.index) == (
            "r",
            "out",
            None,
            None,
            None,
        )
        assert first.created_at.tzinfo is not None

    async def test_step_fields_round_trip(self, storage: Storage) -> None:
        await _create(storage, "r")
        await storage.append_stream_chunk("r", "out", "[1]", step_id="s-1", attempt=2, index=0)
        (chunk,) = await storage.read_stream("r", "out")
        assert (chunk.step_id, chunk.attempt, chunk.index, chunk.data) == ("s-1", 2, 0, "[1]")

    async def test_after_seq_pages_and_limit_bounds(self, storage: Storage) -> None:
        await _create(storage, "r")
        for i in range(7):
            await storage.append_stream_chunk("r", "out", str(i))
        assert [c.seq for c in await storage.read_stream("r", "out", after_seq=4)] == [5, 6, 7]
        assert [c.seq for c in await storage.read_stream("r", "out", 2, limit=3)] == [3, 4, 5]
        assert await storage.read_stream("r", "out", after_seq=7) == []
        assert await storage.read_stream("r", "out", after_seq=70) == []
        with pytest.raises(ValueError):
            await storage.read_stream("r", "out", after_seq=2**64)
        pages, after = [], 0
        while chunk_page := await storage.read_stream("r", "out", after, limit=2):
            pages.append([c.seq for c in chunk_page])
            after = chunk_page[-1].seq
        assert pages == [[1, 2], [3, 4], [5, 6], [7]]

    async def test_a_retried_attempt_duplicates_nothing(self, storage: Storage) -> None:
        await _create(storage, "r")
        append = storage.append_stream_chunk
        for i in range(3):  # attempt 1 writes 3 chunks, then its worker dies
            await append("r", "out", f'"a{i}"', step_id="s", attempt=1, index=i)
        seqs = [  # attempt 2 writes its 5 chunks: the first 3 are already there
            await append("r", "out", f'"b{i}"', step_id="s", attempt=2, index=i) for i in range(5)
        ]
        assert seqs == [1, 2, 3, 4, 5]
        chunks = await storage.read_stream("r", "out")
        assert [(c.data, c.attempt, c.index) for c in chunks] == [
            ('"a0"', 1, 0),
            ('"a1"', 1, 1),
            ('"a2"', 1, 2),
            ('"b3"', 2, 3),
            ('"b4"', 2, 4),
        ]

    async def test_dedup_is_per_step_and_workflow_code_has_its_own_keys(
        self, storage: Storage
    ) -> None:
        await _create(storage, "r")
        assert await storage.append_stream_chunk("r", "out", "1", step_id="a", index=0) == 1
        assert await storage.append_stream_chunk("r", "out", "2", step_id="b", index=0) == 2
        assert await storage.append_stream_chunk("r", "out", "3", index=0) == 3  # workflow code
        assert await storage.append_stream_chunk("r", "out", "4", index=0) == 3  # its replay
        assert await storage.append_stream_chunk("r", "out", "5", step_id="a", index=0) == 1
        # without an index a chunk is always appended
        assert await storage.append_stream_chunk("r", "out", "6") == 4
        assert await storage.append_stream_chunk("r", "out", "6") == 5
        assert await storage.append_stream_chunk("r", "out", "7", step_id="a") == 6
        assert [c.data for c in await storage.read_stream("r", "out")] == list("123667")

    async def test_streams_and_runs_are_separate(self, storage: Storage) -> None:
        await _create(storage, "r1", "r2")
        assert await storage.list_streams("r1") == []
        await storage.append_stream_chunk("r1", "b", "1", step_id="s", index=0)
        await storage.append_stream_chunk("r1", "a", "2", step_id="s", index=0)
        await storage.append_stream_chunk("r2", "b", "3", step_id="s", index=0)
        assert await storage.append_stream_chunk("r1", "a", "4") == 2
        assert [(c.seq, c.data) for c in await storage.read_stream("r1", "a")] == [
            (1, "2"),
            (2, "4"),
        ]
        assert [(c.seq, c.data) for c in await storage.read_stream("r1", "b")] == [(1, "1")]
        assert [(c.seq, c.data) for c in await storage.read_stream("r2", "b")] == [(1, "3")]
        assert await storage.read_stream("r2", "a") == []
        assert await storage.list_streams("r1") == ["a", "b"]
        assert await storage.list_streams("r2") == ["b"]

    async def test_names_and_data_are_kept_as_given(self, storage: Storage) -> None:
        await _create(storage, "r")
        name = "progress/ü 1:{x}\n"
        data = '"ünï\\n\\u0000 çødé ✓"'
        await storage.append_stream_chunk("r", name, data)
        assert await storage.list_streams("r") == [name]
        assert [c.data for c in await storage.read_stream("r", name)] == [data]

    async def test_an_unknown_run_is_refused(self, storage: Storage) -> None:
        with pytest.raises(RunNotFoundError, match="nope"):
            await storage.append_stream_chunk("nope", "out", "1")
        with pytest.raises(RunNotFoundError, match="nope"):
            await storage.read_stream("nope", "out")
        with pytest.raises(RunNotFoundError, match="nope"):
            await storage.list_streams("nope")

    @pytest.mark.parametrize(
        ("changes", "error"),
        [
            ({"data": b"1"}, TypeError),
            ({"data": 1}, TypeError),
            ({"stream": 3}, TypeError),
            ({"stream": ""}, ValueError),
            ({"step_id": 5}, TypeError),
            ({"attempt": "1"}, TypeError),
            ({"index": 1.0}, TypeError),
            ({"index": True}, TypeError),
            ({"index": -1}, ValueError),
            ({"index": 2**63}, ValueError),
        ],
    )
    async def test_wrong_types_are_refused(
        self, storage: Storage, changes: dict[str, Any], error: type[Exception]
    ) -> None:
        await _create(storage, "r")
        args: dict[str, Any] = {"stream": "out", "data": "1", "step_id": "s", "index": 0}
        args.update(changes)
        stream, data = args.pop("stream"), args.pop("data")
        with pytest.raises(error):
            await storage.append_stream_chunk("r", stream, data, **args)
        assert await storage.list_streams("r") == []

    async def test_a_chunk_over_the_payload_limit_is_refused(self, storage: Storage) -> None:
        await _create(storage, "r")
        storage.max_payload_bytes = 100
        await storage.append_stream_chunk("r", "out", "x" * 100)
        too_big = r"is 101 bytes, over the payload limit of 100"
        with pytest.raises(PayloadTooLargeError, match=too_big):
            await storage.append_stream_chunk("r", "out", "x" * 101)
        with pytest.raises(PayloadTooLargeError, match="is 102 bytes"):  # UTF-8 bytes
            await storage.append_stream_chunk("r", "out", "é" * 51)
        assert [c.seq for c in await storage.read_stream("r", "out")] == [1]

    async def test_concurrent_writers_get_dense_seqs_and_dedup_holds(
        self, storage: Storage
    ) -> None:
        await _create(storage, "r")
        seqs: list[int] = []

        async def writer(attempt: int) -> None:
            for i in range(10):
                seqs.append(
                    await storage.append_stream_chunk(
                        "r", "out", str(i), step_id="s", attempt=attempt, index=i
                    )
                )
                seqs.append(await storage.append_stream_chunk("r", "free", str(i)))

        async with anyio.create_task_group() as tg:
            for attempt in (1, 2, 3):
                tg.start_soon(writer, attempt)
        out = await storage.read_stream("r", "out")
        assert [c.seq for c in out] == list(range(1, 11))
        assert sorted(c.index or 0 for c in out) == list(range(10))
        free = await storage.read_stream("r", "free")
        assert [c.seq for c in free] == list(range(1, 31))
