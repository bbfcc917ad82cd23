"""Stores written before queues and schedules existed still open, read and queue.

SQLite: a database whose runs table lacks the queue columns is upgraded on
open (``ALTER TABLE ADD COLUMN``, then the new indexes and the schedules
table), also when several processes open it at once. File: run rows and logs
written before the queue columns load with their defaults. And admission
passes over a full partition however many of its runs wait ahead.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import subprocess
import sys
import textwrap
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from pyworkflow.models import (
    EventType,
    NewEvent,
    QueueLimits,
    QueueStats,
    Run,
    RunStatus,
    utcnow,
)
from pyworkflow.storage import sqlite as sqlite_module
from pyworkflow.storage.base import Storage
from pyworkflow.storage.file import FileStorage
from pyworkflow.storage.memory import MemoryStorage
from pyworkflow.storage.sqlite import ADDED_COLUMNS, SCHEMA, SCHEMA_OBJECTS, SQLiteStorage
from pyworkflow.testing.suite_flow_storage import queued, schedule

pytestmark = pytest.mark.anyio

_LEASE = timedelta(seconds=30)

#: The runs table as the release before queues created it.
OLD_RUNS = """CREATE TABLE pyworkflow_runs (
\trun_id VARCHAR NOT NULL,
\tworkflow_name VARCHAR NOT NULL,
\tworkflow_version VARCHAR,
\tstatus VARCHAR NOT NULL,
\tinput VARCHAR NOT NULL,
\tserializer VARCHAR NOT NULL,
\tresult VARCHAR,
\terror VARCHAR,
\terror_message VARCHAR,
\tcreated_at FLOAT NOT NULL,
\tupdated_at FLOAT NOT NULL,
\tcompleted_at FLOAT,
\tidempotency_key VARCHAR,
\tparent_run_id VARCHAR,
\twake_at FLOAT,
\tlease_owner VARCHAR,
\tlease_expires_at FLOAT,
\tlast_seq INTEGER NOT NULL,
\tPRIMARY KEY (run_id),
\tCONSTRAINT uq_pyworkflow_runs_idempotency_key UNIQUE (idempotency_key)
)"""
#: Objects of the current schema that the old release did not have.
NEW_OBJECTS = {
    "ix_pyworkflow_runs_queue",
    "ix_pyworkflow_runs_admitted",
    "ix_pyworkflow_runs_dedup",
    "pyworkflow_schedules",
    "ix_pyworkflow_schedules_next",
}


def make_old_db(path: Path) -> None:
    """A database as the release before queues left it, holding run ``old`` and its event."""
    conn = sqlite3.connect(path)
    try:
        conn.execute(OLD_RUNS)
        for statement in SCHEMA:
            name = statement.split(" IF NOT EXISTS ", 1)[1].split(None, 1)[0]
            if name not in NEW_OBJECTS and name != "pyworkflow_runs":
                conn.execute(statement)
        now = utcnow().timestamp()
        conn.execute(
            "INSERT INTO pyworkflow_runs VALUES "
            "('old', 'wf', NULL, 'suspended', '{}', 'json', NULL, NULL, NULL, ?, ?, NULL, "
            "'idem-1', NULL, NULL, NULL, NULL, 1)",
            (now, now),
        )
        conn.execute(
            "INSERT INTO pyworkflow_events VALUES ('old', 1, 'workflow_started', NULL, ?, '{}')",
            (now,),
        )
        conn.commit()
    finally:
        conn.close()


def columns(path: Path, table: str = "pyworkflow_runs") -> list[tuple[str, str, int]]:
    """Name, type and NOT NULL of each column of ``table``, in order."""
    conn = sqlite3.connect(path)
    try:
        return [(r[1], r[2], r[3]) for r in conn.execute(f"PRAGMA table_info({table})")]
    finally:
        conn.close()


def objects(path: Path) -> set[str]:
    conn = sqlite3.connect(path)
    try:
        rows = conn.execute("SELECT name FROM sqlite_master WHERE type IN ('table', 'index')")
        return {str(name) for (name,) in rows}
    finally:
        conn.close()


async def test_an_old_database_is_upgraded_and_its_run_reads_and_queues(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    make_old_db(path)
    assert "queue" not in {name for name, _, _ in columns(path)}
    storage = SQLiteStorage(f"sqlite:///{path}")
    await storage.open()
    try:
        old = await storage.get_run("old")
        assert (old.status, old.idempotency_key, old.last_seq) == (RunStatus.SUSPENDED, "idem-1", 1)
        assert (old.queue, old.priority, old.partition_key, old.dedup_key) == (None, 0, None, None)
        assert old.queue_rank is None and old.admitted_at is None and old.admitted_by is None
        assert [e.type for e in await storage.get_events("old")] == [EventType.WORKFLOW_STARTED]
        # the upgraded store queues, dedups, admits, counts and keeps schedules
        start = [NewEvent(EventType.WORKFLOW_STARTED, None, {})]
        await storage.create_run(queued("q1", rank=1.0, dedup_key="k"), start)
        await storage.create_run(queued("q2", rank=2.0), start)
        again, created = await storage.create_run(queued("q3", dedup_key="k"), start)
        assert not created and again.run_id == "q1"
        now = utcnow()
        limits = QueueLimits(concurrency=1)
        admitted = await storage.admit_queued_runs("q", limits, "o", now, 5, _LEASE, worker="w")
        assert [r.run_id for r in admitted] == ["q1"]
        assert (await storage.get_run("q1")).admitted_by == "w"
        stats = await storage.queue_stats(now)
        assert stats == [QueueStats("q", waiting=1, active=1, admitted=1)]
        await storage.create_schedule(schedule("nightly"))
        assert [s.name for s in await storage.list_schedules()] == ["nightly"]
        # the old run is still found by its idempotency key
        dup = Run(
            run_id="other", workflow_name="wf", status=RunStatus.PENDING, input="{}",
            serializer="json", created_at=now, updated_at=now, idempotency_key="idem-1",
        )  # fmt: skip
        found, created = await storage.create_run(dup, start)
        assert not created and found.run_id == "old"
    finally:
        await storage.close()
    # the file now has every column and object a new database has
    fresh = tmp_path / "fresh.db"
    new = SQLiteStorage(f"sqlite:///{fresh}")
    await new.open()
    await new.close()
    assert columns(path) == columns(fresh)
    assert SCHEMA_OBJECTS <= objects(path)
    assert objects(path) == objects(fresh)


def test_added_columns_are_the_tail_of_the_schema() -> None:
    """ADDED_COLUMNS names the columns SCHEMA's runs table has beyond the old one, in order."""
    conn = sqlite3.connect(":memory:")
    try:
        conn.execute(SCHEMA[0])
        current = [r[1] for r in conn.execute("PRAGMA table_info(pyworkflow_runs)")]
        conn.execute(OLD_RUNS.replace("pyworkflow_runs", "old_runs"))
        old = [r[1] for r in conn.execute("PRAGMA table_info(old_runs)")]
    finally:
        conn.close()
    assert current == old + [column for _, column, _ in ADDED_COLUMNS]


async def test_instances_opening_an_old_database_at_once_upgrade_it_once(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    make_old_db(path)
    url = f"sqlite:///{path}"
    stores = [SQLiteStorage(url) for _ in range(4)]
    await asyncio.gather(*(s.open() for s in stores))
    try:
        assert (await stores[3].get_run("old")).priority == 0
        await stores[1].create_run(queued("q1"), [])
        assert (await stores[2].get_run("q1")).queue == "q"
    finally:
        for s in stores:
            await s.close()
    assert [name for name, _, _ in columns(path)].count("queue") == 1


OPENER = textwrap.dedent(
    """
    import sys, anyio
    from pyworkflow.storage.sqlite import SQLiteStorage

    async def main(url):
        storage = SQLiteStorage(url)
        await storage.open()
        run = await storage.get_run("old")
        await storage.close()
        print(run.priority, run.queue)

    anyio.run(main, sys.argv[1])
    """
)


@pytest.mark.slow
def test_processes_opening_an_old_database_at_once_all_succeed(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    make_old_db(path)
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", OPENER, f"sqlite:///{path}"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(3)
    ]
    outcomes = [proc.communicate(timeout=120) for proc in procs]
    assert [proc.returncode for proc in procs] == [0, 0, 0], [err for _, err in outcomes]
    assert [out.strip() for out, _ in outcomes] == ["0 None"] * 3
    assert SCHEMA_OBJECTS <= objects(path)


async def test_a_column_added_meanwhile_is_no_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An upgrade that finds a column already added (another process won) goes on."""
    path = tmp_path / "pw.db"
    first = SQLiteStorage(f"sqlite:///{path}")
    await first.open()
    await first.close()

    def every(conn: sqlite3.Connection) -> list[tuple[str, str, str]]:
        return list(ADDED_COLUMNS)

    monkeypatch.setattr(sqlite_module, "_missing_columns", every)
    again = SQLiteStorage(f"sqlite:///{path}")
    await again.open()
    try:
        await again.create_run(queued("q1"), [])
        assert (await again.get_run("q1")).queue == "q"
    finally:
        await again.close()


# ----- File storage -----


async def test_file_rows_written_before_the_queue_columns_load(tmp_path: Path) -> None:
    root = tmp_path / "store"
    storage = FileStorage(f"file://{root}")
    await storage.open()
    now = utcnow()
    run = Run(
        run_id="old", workflow_name="wf", status=RunStatus.SUSPENDED, input="{}",
        serializer="json", created_at=now, updated_at=now, wake_at=now,
    )  # fmt: skip
    await storage.create_run(run, [NewEvent(EventType.WORKFLOW_STARTED, None, {})])
    # rewrite the log's creation record and the row (columns, then log size) in the old layout
    log_path = root / "runs" / "old.jsonl"
    first = json.loads(log_path.read_text().splitlines()[0])
    first[4] = first[4][:18]
    log_path.write_text(json.dumps(first, separators=(",", ":")) + "\n")
    row_path = root / "runs" / "old.json"
    row_path.write_text(json.dumps([*first[4], len(log_path.read_bytes())]))

    got = await storage.get_run("old")
    assert (got.run_id, got.status, got.last_seq, got.wake_at) == (
        "old",
        RunStatus.SUSPENDED,
        1,
        now,
    )
    assert (got.queue, got.priority, got.queue_rank, got.admitted_at) == (None, 0, None, None)
    assert [e.type for e in await storage.get_events("old")] == [EventType.WORKFLOW_STARTED]
    assert [r.run_id for r in await storage.claim_runs("w", now, 10, _LEASE)] == ["old"]
    # and a row rebuilt from an old log's creation record
    row_path.unlink()
    rebuilt = await storage.get_run("old")
    assert (rebuilt.run_id, rebuilt.queue, rebuilt.priority) == ("old", None, 0)


async def test_file_a_queued_run_rebuilt_from_its_log_waits_again(tmp_path: Path) -> None:
    root = tmp_path / "store"
    storage = FileStorage(f"file://{root}")
    await storage.open()
    start = [NewEvent(EventType.WORKFLOW_STARTED, None, {})]
    await storage.create_run(queued("q1", partition_key="p"), start)
    now = utcnow()
    assert [
        r.run_id for r in await storage.admit_queued_runs("q", QueueLimits(), "o", now, 5, _LEASE)
    ] == ["q1"]
    (root / "runs" / "q1.json").unlink()  # the row is lost before the run did anything
    rebuilt = await storage.get_run("q1")
    assert rebuilt.status == RunStatus.QUEUED and rebuilt.wake_at is None
    assert rebuilt.partition_key == "p" and rebuilt.admitted_at is None
    assert await storage.claim_runs("w", now + timedelta(days=1), 10, _LEASE) == []
    again = await storage.admit_queued_runs("q", QueueLimits(), "o", now, 5, _LEASE)
    assert [r.run_id for r in again] == ["q1"]


async def test_file_a_dedup_marker_of_a_run_never_created_frees_the_key(tmp_path: Path) -> None:
    root = tmp_path / "store"
    storage = FileStorage(f"file://{root}")
    await storage.open()
    await storage.create_run(queued("a", dedup_key="k"), [])
    # a crash after the marker, before the run: the marker names a run that does not exist
    for marker in (root / "dedup").iterdir():
        marker.write_text(json.dumps("ghost"))
    run, created = await storage.create_run(queued("b", dedup_key="k"), [])
    # "a" is live, but the marker no longer names it: the key is held by no run the store
    # can find, so "b" is created (the marker now names it)
    assert created and run.run_id == "b"
    again, created_again = await storage.create_run(queued("c", dedup_key="k"), [])
    assert not created_again and again.run_id == "b"


# ----- admission past a long full partition, on every built-in backend -----


@pytest.fixture(params=["memory", "sqlite", "file"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    makers: dict[str, Callable[[], Storage]] = {
        "memory": MemoryStorage,
        "sqlite": lambda: SQLiteStorage(f"sqlite:///{tmp_path / 'pw.db'}"),
        "file": lambda: FileStorage(f"file://{tmp_path / 'store'}"),
    }
    storage = makers[request.param]()
    await storage.open()
    yield storage
    await storage.close()


async def test_a_long_full_partition_does_not_hide_the_runs_behind_it(store: Storage) -> None:
    start: list[NewEvent] = []
    for i in range(150):
        await store.create_run(queued(f"a{i:03d}", rank=float(i), partition_key="A"), start)
    await store.create_run(queued("b1", rank=500.0, partition_key="B"), start)
    await store.create_run(queued("n1", rank=600.0), start)
    now = utcnow()
    limits = QueueLimits(partition_concurrency=2)
    admitted = await store.admit_queued_runs("q", limits, "o", now, 10, _LEASE)
    assert [r.run_id for r in admitted] == ["a000", "a001", "b1", "n1"]
    # A is full: the runs behind it are found however far the scan goes
    await store.create_run(queued("b2", rank=700.0, partition_key="B"), start)
    await store.create_run(queued("b3", rank=800.0, partition_key="B"), start)
    await store.create_run(queued("c1", rank=900.0, partition_key="C"), start)
    again = await store.admit_queued_runs("q", limits, "o", now, 10, _LEASE)
    assert [r.run_id for r in again] == ["b2", "c1"]
    assert await store.admit_queued_runs("q", limits, "o", now, 10, _LEASE) == []
