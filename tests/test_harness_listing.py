"""The harness lists runs, and its sync form creates and lists schedules."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from pyworkflow import RunStatus, step, workflow
from pyworkflow.testing import WorkflowEnvironment

START = datetime(2030, 1, 1, tzinfo=UTC)


@step
async def hl_tick(n: int) -> int:
    return n


@workflow
async def hl_nightly(n: int) -> int:
    return await hl_tick(n)


def test_the_sync_form_schedules_and_lists_the_runs_a_schedule_started() -> None:
    with WorkflowEnvironment(start=START) as env:
        env.sync.create_schedule("every-6h", hl_nightly, every="6h", args=(1,))
        assert [s.name for s in env.sync.schedules()] == ["every-6h"]
        env.sync.advance("1d")  # ticks at 06:00, 12:00, 18:00 and midnight
        page = env.sync.list_runs(workflow="hl_nightly")
        assert len(page.runs) == 4
        assert {run.status for run in page.runs} == {RunStatus.COMPLETED}
        assert env.sync.list_runs(status="failed").runs == []
        with pytest.raises(ValueError):
            env.sync.list_runs(status="no-such-status")


@pytest.mark.anyio
async def test_list_runs_pages_through_the_runs() -> None:
    async with WorkflowEnvironment(start=START) as env:
        ids = [await env.start(hl_nightly, n) for n in range(3)]
        first = await env.list_runs(limit=2)
        assert len(first.runs) == 2 and first.next_cursor is not None
        rest = await env.list_runs(limit=2, cursor=first.next_cursor)
        listed = [run.run_id for run in [*first.runs, *rest.runs]]
        assert sorted(listed) == sorted(ids) and len(set(listed)) == 3
