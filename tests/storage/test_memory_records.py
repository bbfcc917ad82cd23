"""Memory storage moves a run's record in place only while no caller holds it."""

from __future__ import annotations

from datetime import timedelta

import attrs
import pytest

from pyworkflow.models import EventType, NewEvent, Run, RunPatch, RunStatus, utcnow
from pyworkflow.storage.memory import MemoryStorage
from pyworkflow.storage.rules import apply_patch


def _run() -> Run:
    now = utcnow()
    return Run("r1", "wf", RunStatus.PENDING, "{}", "json", now, now, wake_at=now)


@pytest.mark.anyio
async def test_a_run_a_caller_holds_never_changes() -> None:
    storage = MemoryStorage()
    created, _ = await storage.create_run(_run(), [NewEvent(EventType.WORKFLOW_STARTED)])
    claimed = (await storage.claim_runs("me", utcnow(), 10, timedelta(seconds=30)))[0]
    seen = []
    for n in range(2, 6):
        seq = await storage.append_events("r1", n - 1, [NewEvent(EventType.VALUE_RECORDED)])
        assert seq == n
        seen.append(await storage.get_run("r1"))
    await storage.append_events("r1", 5, [], RunPatch(status=RunStatus.RUNNING))
    assert (created.last_seq, claimed.last_seq) == (1, 1)
    assert [run.last_seq for run in seen] == [2, 3, 4, 5]
    assert seen[-1].status == RunStatus.PENDING
    page = await storage.list_runs()
    await storage.append_events("r1", 5, [NewEvent(EventType.VALUE_RECORDED)])
    assert page.runs[0].last_seq == 5 and page.runs[0].status == RunStatus.RUNNING
    last = await storage.get_run("r1")
    assert (last.last_seq, last.status, last.lease_owner) == (6, RunStatus.RUNNING, "me")
    assert last.updated_at >= seen[-1].updated_at


def test_apply_patch_keeps_every_other_field() -> None:
    run = _run()
    now = utcnow()
    moved = apply_patch(run, None, None, now, 7)
    assert moved == attrs.evolve(run, updated_at=now, last_seq=7)
    done = apply_patch(run, RunPatch(status=RunStatus.COMPLETED, result="1"), None, now, 8)
    assert (done.status, done.result, done.last_seq, done.created_at) == (
        RunStatus.COMPLETED,
        "1",
        8,
        run.created_at,
    )
