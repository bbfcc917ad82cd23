"""Storage conformance cases for step checkpoints (mixed into ``StorageConformance``).

Each case names the rule of :meth:`~pyworkflow.storage.base.Storage.save_step_checkpoint`
or ``get_step_checkpoint`` it checks; every backend must pass them.
"""

from __future__ import annotations

from datetime import timedelta

import anyio
import pytest

from pyworkflow.errors import PayloadTooLargeError, RunNotFoundError
from pyworkflow.models import EventType, NewEvent, Run, RunStatus, utcnow
from pyworkflow.storage.base import Storage

__all__ = ["CheckpointStorageCases"]


async def _create(storage: Storage, *run_ids: str) -> None:
    for run_id in run_ids:
        now = utcnow()
        run = Run(run_id, "wf", RunStatus.PENDING, "{}", "json", now, now)
        await storage.create_run(run, [NewEvent(EventType.WORKFLOW_STARTED)])


@pytest.mark.anyio
class CheckpointStorageCases:
    """``save_step_checkpoint`` and ``get_step_checkpoint``."""

    async def test_checkpoint_saved_reads_back(self, storage: Storage) -> None:
        await _create(storage, "r")
        assert await storage.get_step_checkpoint("r", "s") is None
        before = utcnow() - timedelta(seconds=1)
        assert await storage.save_step_checkpoint("r", "s", 1, '{"pos": 10}')
        found = await storage.get_step_checkpoint("r", "s")
        assert found is not None
        assert (found.run_id, found.step_id, found.attempt, found.data) == (
            "r",
            "s",
            1,
            '{"pos": 10}',
        )
        assert found.saved_at.tzinfo is not None
        assert found.saved_at >= before

    async def test_checkpoint_one_per_step_the_latest(self, storage: Storage) -> None:
        await _create(storage, "r", "r2")
        for pos in range(5):
            assert await storage.save_step_checkpoint("r", "s", 1, str(pos))
        await storage.save_step_checkpoint("r", "other", 1, '"o"')
        await storage.save_step_checkpoint("r2", "s", 3, '"r2"')
        found = await storage.get_step_checkpoint("r", "s")
        assert found is not None and (found.attempt, found.data) == (1, "4")
        other = await storage.get_step_checkpoint("r", "other")
        assert other is not None and other.data == '"o"'
        in_r2 = await storage.get_step_checkpoint("r2", "s")
        assert in_r2 is not None and (in_r2.attempt, in_r2.data) == (3, '"r2"')

    async def test_checkpoint_of_an_older_attempt_is_refused(self, storage: Storage) -> None:
        await _create(storage, "r")
        assert await storage.save_step_checkpoint("r", "s", 1, '"a1"')
        assert await storage.save_step_checkpoint("r", "s", 2, '"a2"')
        # attempt 1 is a zombie now (its step was taken over by attempt 2): refused
        assert not await storage.save_step_checkpoint("r", "s", 1, '"zombie"')
        found = await storage.get_step_checkpoint("r", "s")
        assert found is not None and (found.attempt, found.data) == (2, '"a2"')
        assert await storage.save_step_checkpoint("r", "s", 2, '"a2 again"')
        assert await storage.save_step_checkpoint("r", "s", 5, '"a5"')
        found = await storage.get_step_checkpoint("r", "s")
        assert found is not None and (found.attempt, found.data) == (5, '"a5"')

    async def test_checkpoint_unknown_run_and_bad_arguments(self, storage: Storage) -> None:
        with pytest.raises(RunNotFoundError):
            await storage.save_step_checkpoint("nope", "s", 1, "1")
        assert await storage.get_step_checkpoint("nope", "s") is None
        await _create(storage, "r")
        with pytest.raises(TypeError):
            await storage.save_step_checkpoint("r", "s", 1, b"1")  # type: ignore[arg-type]  # the check under test
        with pytest.raises(TypeError):
            await storage.save_step_checkpoint("r", 1, 1, "1")  # type: ignore[arg-type]  # the check under test
        with pytest.raises(ValueError):
            await storage.save_step_checkpoint("r", "s", 0, "1")
        with pytest.raises(ValueError):
            await storage.save_step_checkpoint("r", "", 1, "1")
        assert await storage.get_step_checkpoint("r", "s") is None

    async def test_checkpoint_over_the_payload_limit_is_refused(self, storage: Storage) -> None:
        await _create(storage, "r")
        storage.max_payload_bytes = 100
        assert await storage.save_step_checkpoint("r", "s", 1, "x" * 100)
        with pytest.raises(PayloadTooLargeError, match="step s of run r is 101 bytes"):
            await storage.save_step_checkpoint("r", "s", 1, "x" * 101)
        with pytest.raises(PayloadTooLargeError, match="is 102 bytes"):  # UTF-8 bytes
            await storage.save_step_checkpoint("r", "s", 1, "é" * 51)
        found = await storage.get_step_checkpoint("r", "s")
        assert found is not None and found.data == "x" * 100

    async def test_checkpoint_unicode_data_round_trips(self, storage: Storage) -> None:
        await _create(storage, "r")
        data = '{"note": "héllo ✓ \\u0000", "n": [1, 2]}'
        assert await storage.save_step_checkpoint("r", "s-1/ä", 1, data)
        found = await storage.get_step_checkpoint("r", "s-1/ä")
        assert found is not None and found.data == data

    async def test_checkpoint_concurrent_attempts_end_newest(self, storage: Storage) -> None:
        await _create(storage, "r")
        refused: dict[int, int] = {1: 0, 2: 0, 3: 0}

        async def saver(attempt: int) -> None:
            for i in range(10):
                if not await storage.save_step_checkpoint("r", "s", attempt, f"[{attempt}, {i}]"):
                    refused[attempt] += 1

        async with anyio.create_task_group() as tg:
            for attempt in (1, 2, 3):
                tg.start_soon(saver, attempt)
        found = await storage.get_step_checkpoint("r", "s")
        # attempt 3's saves are never refused; its last one is what stays
        assert refused[3] == 0
        assert found is not None and (found.attempt, found.data) == (3, "[3, 9]")
