"""SQLite fast paths: inline writes and reads on the caller's loop, beside the writer thread.

A lone write commits on the event loop's thread when the writer thread is idle;
writes made by several tasks in one pass, writes made while the writer thread is
busy, and writes that find another process holding the file's write lock go
through the writer thread. Each path must commit, roll back what fails, and
leave the connections usable.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import sqlite3
import threading
from collections.abc import AsyncIterator, Callable
from datetime import timedelta
from pathlib import Path

import anyio
import pytest

from pyworkflow.errors import ConcurrencyError
from pyworkflow.models import EventType, NewEvent, utcnow
from pyworkflow.storage.base import Storage
from pyworkflow.storage.sqlite import SQLiteStorage
from pyworkflow.testing import StorageConformance
from pyworkflow.testing.storage_suite import make_run

pytestmark = pytest.mark.anyio

WRITER = "pyworkflow-sqlite-writer"


class TestSQLiteThreadsOnly(StorageConformance):
    """The whole suite with every call going through the threads (``inline=False``)."""

    def make_storage(self, tmp_path: Path) -> Storage:
        return SQLiteStorage(f"sqlite:///{tmp_path / 'pw.db'}", inline=False)


class TestSQLiteThreadsOnlyNormal(StorageConformance):
    """And with ``synchronous=NORMAL``, whose writes are the ones most often inline."""

    def make_storage(self, tmp_path: Path) -> Storage:
        return SQLiteStorage(f"sqlite:///{tmp_path / 'pw.db'}", synchronous="NORMAL", inline=False)


def ev(cid: str) -> NewEvent:
    return NewEvent(EventType.STEP_COMPLETED, cid, {"cid": cid})


@pytest.fixture(params=["FULL", "NORMAL"])
async def db(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[SQLiteStorage]:
    storage = SQLiteStorage(f"sqlite:///{tmp_path / 'pw.db'}", synchronous=request.param)
    await storage.open()
    try:
        yield storage
    finally:
        await storage.close()


def committed_rows(path: Path, sql: str) -> list[tuple[object, ...]]:
    """What another connection (another process) sees in the file."""
    conn = sqlite3.connect(path)
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


def insert(value: str, seen: list[str]) -> Callable[[sqlite3.Connection], str]:
    """A write request that records the thread it ran on."""

    def write(conn: sqlite3.Connection) -> str:
        seen.append(threading.current_thread().name)
        conn.execute("CREATE TABLE IF NOT EXISTS t (v TEXT)")
        conn.execute("INSERT INTO t (v) VALUES (?)", (value,))
        return value

    return write


async def test_a_lone_write_commits_on_the_loop_thread(db: SQLiteStorage) -> None:
    seen: list[str] = []
    commits = db.commit_count
    assert await db._write(insert("a", seen)) == "a"
    assert seen == [threading.current_thread().name]
    assert db.commit_count == commits + 1
    assert committed_rows(db.path, "SELECT v FROM t") == [("a",)]


async def test_writes_of_several_tasks_in_one_pass_share_a_commit_on_the_writer(
    db: SQLiteStorage,
) -> None:
    seen: list[str] = []
    commits = db.commit_count
    values = [str(i) for i in range(30)]
    results = await asyncio.gather(*(db._write(insert(v, seen)) for v in values))
    assert results == values
    assert seen[0] == threading.current_thread().name  # the first of the pass: inline
    assert set(seen[1:]) == {WRITER}  # the others: one batch for the writer thread
    assert db.commit_count == commits + 2
    assert sorted(committed_rows(db.path, "SELECT v FROM t")) == sorted((v,) for v in values)
    seen.clear()
    more = [str(i) for i in range(30, 40)]
    assert await asyncio.gather(*(db._write(insert(v, seen)) for v in more)) == more
    assert set(seen) == {WRITER}  # still contended: none of them waits on the loop's thread


async def test_writes_queue_behind_a_busy_writer_thread_and_commit(db: SQLiteStorage) -> None:
    release = threading.Event()
    seen: list[str] = []

    def slow(conn: sqlite3.Connection) -> str:
        seen.append(threading.current_thread().name)
        assert release.wait(10)
        conn.execute("CREATE TABLE IF NOT EXISTS t (v TEXT)")
        return "slow"

    first = asyncio.ensure_future(db._write(insert("first", seen)))
    held = asyncio.ensure_future(db._write(slow))  # same pass: the writer thread runs it
    await first
    with anyio.fail_after(5):
        while not seen[1:]:
            await asyncio.sleep(0.001)
    later = [asyncio.ensure_future(db._write(insert(f"later{i}", seen))) for i in range(5)]
    await asyncio.sleep(0.05)
    assert not any(task.done() for task in later)  # queued behind the busy writer thread
    release.set()
    assert await held == "slow"
    assert [await task for task in later] == [f"later{i}" for i in range(5)]
    assert seen[1:] == [WRITER] * 6
    rows = committed_rows(db.path, "SELECT v FROM t")
    assert sorted(rows) == sorted([("first",)] + [(f"later{i}",) for i in range(5)])
    seen.clear()
    await db._write(insert("lone", seen))  # after load: the writer thread, once
    await db._write(insert("idle again", seen))
    assert seen == [WRITER, threading.current_thread().name]  # caught up: inline again


async def test_a_failed_inline_write_rolls_back_and_the_connection_stays_usable(
    db: SQLiteStorage,
) -> None:
    await db._write(insert("kept", []))

    def half_then_fail(conn: sqlite3.Connection) -> None:
        conn.execute("INSERT INTO t (v) VALUES ('lost')")
        raise ValueError("boom")

    with pytest.raises(ValueError, match="boom"):
        await db._write(half_then_fail)
    assert db._writer is not None and not db._writer.conn.in_transaction
    assert committed_rows(db.path, "SELECT v FROM t") == [("kept",)]
    await db.create_run(make_run("r"), [ev("1")])
    with pytest.raises(ConcurrencyError):
        await db.append_events("r", 0, [ev("x")])
    assert await db.append_events("r", 1, [ev("2")]) == 2
    assert [e.correlation_id for e in await db.get_events("r")] == ["1", "2"]
    assert committed_rows(db.path, "SELECT v FROM t") == [("kept",)]


async def test_a_write_lock_held_by_another_process_sends_the_write_to_the_writer(
    db: SQLiteStorage,
) -> None:
    await db.create_run(make_run("r"), [])
    other = sqlite3.connect(db.path, isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")  # the file's write lock, as another process would
        append = asyncio.ensure_future(db.append_events("r", 0, [ev("1")]))
        ticks = 0
        while ticks < 20:  # the loop is not blocked meanwhile
            await asyncio.sleep(0.005)
            ticks += 1
        assert not append.done()
        other.execute("COMMIT")
        with anyio.fail_after(10):
            assert await append == 1
    finally:
        other.close()
    assert committed_rows(db.path, "SELECT seq FROM pyworkflow_events") == [(1,)]
    assert await db.append_events("r", 1, [ev("2")]) == 2


async def test_inline_reads_see_what_others_commit(db: SQLiteStorage) -> None:
    await db.create_run(make_run("r"), [ev("1")])
    assert (await db.get_run("r")).last_seq == 1
    assert len(await db.get_events("r")) == 1
    other = sqlite3.connect(db.path, isolation_level=None)
    try:
        other.execute("UPDATE pyworkflow_runs SET workflow_name = 'renamed' WHERE run_id = 'r'")
        other.execute(
            "INSERT INTO pyworkflow_events VALUES ('r', 2, 'step_completed', '2', 0, '{}')"
        )
    finally:
        other.close()
    assert (await db.get_run("r")).workflow_name == "renamed"  # no snapshot held over
    assert [e.seq for e in await db.get_events("r")] == [1, 2]


async def test_claim_runs_with_nothing_due_writes_nothing(db: SQLiteStorage) -> None:
    now = utcnow()
    await db.create_run(make_run("later", wake_at=now + timedelta(hours=1)), [])
    commits = db.commit_count
    assert await db.claim_runs("w", now, 10, timedelta(seconds=30)) == []
    assert db.commit_count == commits  # no write transaction
    due = now + timedelta(hours=2)
    claimed = await db.claim_runs("w", due, 10, timedelta(seconds=30))
    assert [r.run_id for r in claimed] == ["later"] and claimed[0].lease_owner == "w"
    assert db.commit_count == commits + 1
    assert await db.claim_runs("w2", due, 10, timedelta(seconds=30)) == []  # leased: not due


async def test_writes_of_one_pass_are_committed_by_close(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'pw.db'}"
    storage = SQLiteStorage(url)
    await storage.open()
    for i in range(5):
        await storage.create_run(make_run(f"r{i}"), [])
    tasks = [asyncio.ensure_future(storage.append_events(f"r{i}", 0, [ev("1")])) for i in range(5)]
    await asyncio.sleep(0)  # the tasks write in this pass; the first commits inline
    await storage.close()
    assert [await task for task in tasks] == [1] * 5
    rows = committed_rows(storage.path, "SELECT run_id FROM pyworkflow_events ORDER BY run_id")
    assert rows == [(f"r{i}",) for i in range(5)]


def _append_many(url: str, prefix: str, count: int) -> None:
    """Another process: appends to its own runs and to a shared one, on the same file."""

    async def main() -> None:
        storage = SQLiteStorage(url, synchronous="NORMAL")
        await storage.open()
        try:
            await storage.create_run(make_run(prefix), [])
            for i in range(count):
                await storage.append_events(prefix, i, [ev(f"{prefix}{i}")])
                while True:
                    seq = (await storage.get_run("shared")).last_seq
                    try:
                        await storage.append_events("shared", seq, [ev(f"{prefix}-s{i}")])
                        break
                    except ConcurrencyError:
                        pass
        finally:
            await storage.close()

    asyncio.run(main())


async def test_several_processes_write_one_file_inline_and_queued(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'pw.db'}"
    count = 60
    storage = SQLiteStorage(url, synchronous="NORMAL")
    await storage.open()
    try:
        await storage.create_run(make_run("shared"), [])
        ctx = multiprocessing.get_context("spawn")
        procs = [ctx.Process(target=_append_many, args=(url, f"p{n}", count)) for n in range(2)]
        for proc in procs:
            proc.start()
        await anyio.to_thread.run_sync(_append_many, url, "p-thread", count)  # meanwhile
        for proc in procs:
            await anyio.to_thread.run_sync(proc.join, 60)
            assert proc.exitcode == 0
        for name in ("p0", "p1", "p-thread"):
            events = await storage.get_events(name)
            assert [e.correlation_id for e in events] == [f"{name}{i}" for i in range(count)]
        shared = await storage.get_events("shared")
        assert [e.seq for e in shared] == list(range(1, 3 * count + 1))
        expected = sorted(f"{name}-s{i}" for name in ("p0", "p1", "p-thread") for i in range(count))
        assert sorted(e.correlation_id or "" for e in shared) == expected
    finally:
        await storage.close()
