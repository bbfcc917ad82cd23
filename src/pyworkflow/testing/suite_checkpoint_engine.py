"""EngineConformance cases for step checkpoints (issue 20).

Mixed into :class:`~pyworkflow.testing.engine_suite.EngineConformance`: every
backend and executor plugin runs them. The steps report what they saw through
their results (recorded in the log), not through process memory, so the cases
hold where step bodies run in other processes (Celery, Ray).
"""

from __future__ import annotations

import asyncio

from pyworkflow.client import get_events, get_result, start
from pyworkflow.context import get_step_context
from pyworkflow.models import EventType
from pyworkflow.runtime import get_runtime
from pyworkflow.step import step
from pyworkflow.workflow import workflow

__all__ = ["CheckpointEngineCases"]


@step(max_retries=2, retry_delay=0.05)
async def conformance_checkpoint_batch(total: int, fail_at: int) -> list[int]:
    """Count to ``total``, checkpointing; attempt 1 fails at ``fail_at``; ``[attempt, resumed]``."""
    ctx = get_step_context()
    begin = ctx.last_checkpoint or 0
    for item in range(begin, total):
        if ctx.attempt == 1 and item == fail_at:
            raise RuntimeError(f"attempt 1 breaks at item {item}")
        await ctx.checkpoint(item + 1)
    return [ctx.attempt, begin]


@workflow
async def conformance_checkpoint_flow(total: int, fail_at: int) -> list[list[int]]:
    """A lone step (inline where the executor allows it), then two gathered (dispatched)."""
    lone = await conformance_checkpoint_batch(total, fail_at)
    a, b = await asyncio.gather(
        conformance_checkpoint_batch(total, fail_at), conformance_checkpoint_batch(total, fail_at)
    )
    return [lone, a, b]


class CheckpointEngineCases:
    """A retried step resumes from its checkpoint, wherever its body runs."""

    def test_a_retried_step_resumes_from_its_last_checkpoint(self, pw: str) -> None:
        # checkpoint_interval is the default (1 s): attempt 1 writes its first checkpoint
        # and keeps the later ones in memory; the last (30) is written as it fails
        run_id = start(conformance_checkpoint_flow, 50, 30)
        assert get_result(run_id, timeout=30) == [[2, 30], [2, 30], [2, 30]]
        step_ids = {
            str(e.correlation_id) for e in get_events(run_id) if e.type == EventType.STEP_COMPLETED
        }
        assert len(step_ids) == 3
        rt = get_runtime()
        for step_id in step_ids:
            stored = rt.call(rt.storage.get_step_checkpoint, run_id, step_id)
            assert stored is not None and stored.attempt == 2
            assert rt.serializer_for(rt.call(rt.storage.get_run, run_id)).loads(stored.data) == 50
