"""The scheduler's queries touch only due runs: they go through the wake_at index."""

from __future__ import annotations

import sqlite3
from datetime import timedelta
from pathlib import Path

import pytest

from pyworkflow.models import Run, RunStatus, utcnow
from pyworkflow.storage import sqlite as sqlite_storage


def plan(db: Path, sql: str, params: tuple[object, ...]) -> str:
    with sqlite3.connect(db) as conn:
        rows = conn.execute(f"EXPLAIN QUERY PLAN {sql}", params).fetchall()
    return " | ".join(str(r[-1]) for r in rows)


@pytest.mark.anyio
async def test_claim_and_due_queries_use_the_wake_at_index(tmp_path: Path) -> None:
    db = tmp_path / "pw.db"
    storage = sqlite_storage.SQLiteStorage(f"sqlite:///{db}")
    await storage.open()
    try:
        now = utcnow()
        for i in range(300):  # many runs sleeping far in the future, three due now
            wake = now - timedelta(seconds=1) if i < 3 else now + timedelta(hours=1)
            run = Run(
                run_id=f"r{i}", workflow_name="w", status=RunStatus.SUSPENDED, input="{}",
                serializer="json", created_at=now, updated_at=now, wake_at=wake,
            )  # fmt: skip
            await storage.create_run(run, [])
        assert [r for r, _ in await storage.due_timers(now, 100)] == ["r0", "r1", "r2"]
        claimed = await storage.claim_runs("w1", now, 100, timedelta(seconds=30))
        assert sorted(r.run_id for r in claimed) == ["r0", "r1", "r2"]
    finally:
        await storage.close()
    at = now.timestamp()
    due_plan = plan(db, sqlite_storage._DUE, (at, 10))
    claim_plan = plan(db, sqlite_storage._CLAIM, ("w", at + 30, at, at, 10))
    for text in (due_plan, claim_plan):
        assert "ix_pyworkflow_runs_wake_at" in text, text
        assert "SCAN pyworkflow_runs" not in text.replace("USING INDEX", ""), text
