"""SQLite storage specifics: URLs, group commit, several instances on one file, bad rows."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator, Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import anyio
import pytest

from pyworkflow.config import Settings
from pyworkflow.default_plugins.sqlite_storage import pyworkflow_register_storage
from pyworkflow.errors import ConcurrencyError, ConfigError, CorruptDataError, RunNotFoundError
from pyworkflow.models import EventType, NewEvent, utcnow
from pyworkflow.storage.base import Storage
from pyworkflow.storage.sqlite import SQLiteStorage
from pyworkflow.testing import StorageConformance
from pyworkflow.testing.storage_suite import make_run

pytestmark = pytest.mark.anyio


class TestSQLiteNormalSync(StorageConformance):
    """The whole suite again with ``synchronous=NORMAL`` and a relative URL (cwd is tmp)."""

    def make_storage(self, tmp_path: Path) -> Storage:
        return SQLiteStorage("sqlite:///data/pw.db", synchronous="normal")


def ev(cid: str, **payload: object) -> NewEvent:
    return NewEvent(EventType.STEP_COMPLETED, cid, payload)


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[SQLiteStorage]:
    storage = SQLiteStorage(f"sqlite:///{tmp_path / 'pw.db'}")
    await storage.open()
    try:
        yield storage
    finally:
        await storage.close()


def tamper(path: Path, *statements: str) -> None:
    """Change the file behind the storage's back, as another program would."""
    conn = sqlite3.connect(path)
    try:
        with conn:
            for sql in statements:
                conn.execute(sql)
    finally:
        conn.close()


async def pragma(storage: SQLiteStorage, name: str) -> Any:
    def read(conn: sqlite3.Connection) -> Any:
        return conn.execute(f"PRAGMA {name}").fetchone()[0]

    return await storage._read(read)


# ----- URLs and settings -----


async def test_absolute_url_creates_parent_dirs(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b" / "pw.db"
    storage = SQLiteStorage(f"sqlite:///{path}")
    assert storage.path == path and path.is_absolute()
    await storage.open()
    try:
        assert path.exists()
        assert await pragma(storage, "journal_mode") == "wal"
        assert await pragma(storage, "synchronous") == 2  # FULL
        assert await pragma(storage, "busy_timeout") >= 5000
    finally:
        await storage.close()


async def test_relative_url_is_cwd_relative_and_normal_sync(tmp_path: Path) -> None:
    storage = SQLiteStorage("sqlite:///rel/dir/pw.db", synchronous="NORMAL")
    await storage.open()
    try:
        assert (tmp_path / "rel" / "dir" / "pw.db").exists()  # the autouse fixture chdirs here
        assert await pragma(storage, "synchronous") == 1  # NORMAL
    finally:
        await storage.close()


@pytest.mark.parametrize("url", ["sqlite://", "sqlite:///", "sqlite://:memory:", "postgres:///x"])
def test_bad_urls_are_config_errors(url: str) -> None:
    with pytest.raises(ConfigError, match="sqlite:///"):
        SQLiteStorage(url)


def test_bad_synchronous_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="FULL"):
        SQLiteStorage("sqlite:///x.db", synchronous="OFF; DROP TABLE x")


def test_registered_for_the_sqlite_scheme_with_settings() -> None:
    factories: dict[str, Callable[..., Storage]] = {}
    pyworkflow_register_storage(lambda scheme, factory: factories.__setitem__(scheme, factory))
    storage = factories["sqlite"]("sqlite:///x.db", Settings(sqlite_synchronous="NORMAL"))
    assert isinstance(storage, SQLiteStorage) and storage.synchronous == "NORMAL"


async def test_closed_storage_refuses_calls_and_reopens(tmp_path: Path) -> None:
    storage = SQLiteStorage(f"sqlite:///{tmp_path / 'pw.db'}")
    await storage.open()
    await storage.create_run(make_run("r"), [ev("1")])
    await storage.close()
    with pytest.raises(RuntimeError, match="not open"):
        await storage.get_run("r")
    with pytest.raises(RuntimeError, match="not open"):
        await storage.append_events("r", 1, [ev("2")])
    commits = storage.commit_count
    await storage.open()
    try:
        assert await storage.append_events("r", 1, [ev("2")]) == 2
        assert storage.commit_count == commits + 1
    finally:
        await storage.close()


# ----- group commit -----


async def test_concurrent_appends_share_commits(db: SQLiteStorage) -> None:
    for i in range(50):
        await db.create_run(make_run(f"r{i}"), [])
    before = db.commit_count
    results = await asyncio.gather(*(db.append_events(f"r{i}", 0, [ev("1")]) for i in range(50)))
    assert results == [1] * 50
    commits = db.commit_count - before
    assert 1 <= commits <= 10, commits
    for i in range(50):
        assert [e.seq for e in await db.get_events(f"r{i}")] == [1]


async def test_a_conflict_in_a_batch_rolls_back_only_that_request(db: SQLiteStorage) -> None:
    for i in range(20):
        await db.create_run(make_run(f"r{i}"), [ev("0")])
    # Even runs get a stale expected seq; all 20 requests land in the same few batches.
    outcomes = await asyncio.gather(
        *(db.append_events(f"r{i}", 0 if i % 2 == 0 else 1, [ev("a"), ev("b")]) for i in range(20)),
        return_exceptions=True,
    )
    for i, outcome in enumerate(outcomes):
        events = await db.get_events(f"r{i}")
        if i % 2 == 0:
            assert isinstance(outcome, ConcurrencyError) and outcome.actual_seq == 1
            assert [e.correlation_id for e in events] == ["0"]
            assert (await db.get_run(f"r{i}")).last_seq == 1
        else:
            assert outcome == 3
            assert [e.correlation_id for e in events] == ["0", "a", "b"]
    missing = await asyncio.gather(
        db.append_events("nope", 0, [ev("x")]), db.append_events("r1", 3, [ev("c")]),
        return_exceptions=True,
    )  # fmt: skip
    assert isinstance(missing[0], RunNotFoundError) and missing[1] == 4


async def test_cancelled_calls_do_not_break_the_storage(db: SQLiteStorage) -> None:
    await db.create_run(make_run("r"), [])
    for _ in range(30):
        read = asyncio.ensure_future(db.get_run("r"))
        write = asyncio.ensure_future(db.release_lease("r", "nobody"))
        await asyncio.sleep(0)
        read.cancel()
        write.cancel()
    with anyio.fail_after(5):
        assert (await db.get_run("r")).last_seq == 0
        assert await db.append_events("r", 0, [ev("1")]) == 1
        assert [e.seq for e in await db.get_events("r")] == [1]


# ----- several instances (processes) on one file -----


async def test_two_instances_open_a_new_file_at_once(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'new' / 'pw.db'}"
    stores = [SQLiteStorage(url) for _ in range(3)]
    await asyncio.gather(*(s.open() for s in stores))
    try:
        await stores[0].create_run(make_run("r"), [])
        assert (await stores[2].get_run("r")).run_id == "r"
    finally:
        for s in stores:
            await s.close()


async def test_two_instances_append_to_one_run(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'pw.db'}"
    a, b = SQLiteStorage(url), SQLiteStorage(url)
    await a.open()
    await b.open()
    conflicts = 0
    try:
        await a.create_run(make_run("r"), [])

        async def writer(storage: SQLiteStorage, name: str) -> None:
            nonlocal conflicts
            for i in range(15):
                while True:
                    seq = (await storage.get_run("r")).last_seq
                    try:
                        await storage.append_events("r", seq, [ev(f"{name}-{i}")])
                        break
                    except ConcurrencyError:
                        conflicts += 1

        async with anyio.create_task_group() as tg:
            for n in range(4):
                tg.start_soon(writer, a, f"a{n}")
                tg.start_soon(writer, b, f"b{n}")
        events = await b.get_events("r")
        assert [e.seq for e in events] == list(range(1, 121))
        expected = sorted(f"{s}{n}-{i}" for s in "ab" for n in range(4) for i in range(15))
        assert sorted(e.correlation_id or "" for e in events) == expected
        assert (await a.get_run("r")).last_seq == 120
        assert conflicts > 0  # the writers really raced
    finally:
        await a.close()
        await b.close()


async def test_two_instances_never_claim_the_same_run(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'pw.db'}"
    a, b = SQLiteStorage(url), SQLiteStorage(url)
    await a.open()
    await b.open()
    try:
        now = utcnow()
        for i in range(40):
            await a.create_run(make_run(f"r{i}", wake_at=now - timedelta(seconds=i)), [])
        lease = timedelta(seconds=30)
        claims = await asyncio.gather(
            *(s.claim_runs(s.url + str(k), now, 3, lease) for k in range(10) for s in (a, b))
        )
        claimed = [r.run_id for batch in claims for r in batch]
        assert sorted(claimed) == sorted(f"r{i}" for i in range(40))  # each exactly once
    finally:
        await a.close()
        await b.close()


# ----- corrupt rows -----


async def test_corrupt_event_row_fails_only_that_run(db: SQLiteStorage) -> None:
    await db.create_run(make_run("bad"), [ev("1"), ev("2"), ev("3")])
    await db.create_run(make_run("good"), [ev("1")])
    tamper(db.path, "UPDATE pyworkflow_events SET payload = '{x' WHERE run_id = 'bad' AND seq = 2")
    with pytest.raises(CorruptDataError, match=r"run bad: event seq 2"):
        await db.get_events("bad")
    assert [e.seq for e in await db.get_events("bad", after_seq=2)] == [3]
    assert [e.seq for e in await db.get_events("good")] == [1]
    tamper(
        db.path,
        "UPDATE pyworkflow_events SET type = 'no_such_type' WHERE run_id = 'bad'",
        "UPDATE pyworkflow_events SET payload = '[1]' WHERE run_id = 'good'",
    )
    with pytest.raises(CorruptDataError, match=r"run bad: event seq 1"):
        await db.get_events("bad")
    with pytest.raises(CorruptDataError, match=r"run good: event seq 1"):
        await db.get_events("good")
    assert await db.append_events("good", 1, [ev("2")]) == 2  # the run stays writable


async def test_corrupt_run_row_is_reported(db: SQLiteStorage) -> None:
    await db.create_run(make_run("bad"), [])
    tamper(db.path, "UPDATE pyworkflow_runs SET status = 'exploded' WHERE run_id = 'bad'")
    with pytest.raises(CorruptDataError, match="bad"):
        await db.get_run("bad")
