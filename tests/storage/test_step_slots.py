"""Step queue places on SQLite and File: several storages on one store, old rows, upgrades."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator, Callable
from datetime import timedelta
from pathlib import Path

import anyio
import pytest

from pyworkflow.errors import CorruptDataError
from pyworkflow.models import QueueLimits, utcnow
from pyworkflow.storage.base import Storage
from pyworkflow.storage.file import FileStorage
from pyworkflow.storage.memory import MemoryStorage
from pyworkflow.storage.sqlite import SCHEMA, SQLiteStorage

pytestmark = pytest.mark.anyio

_LEASE = timedelta(seconds=30)
_SLOTS = "pyworkflow_step_slots"

BACKENDS: dict[str, Callable[[Path], Storage]] = {
    "sqlite": lambda tmp: SQLiteStorage(f"sqlite:///{tmp / 'pw.db'}"),
    "file": lambda tmp: FileStorage(f"file://{tmp / 'store'}"),
}


@pytest.fixture(params=sorted(BACKENDS))
async def storages(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[list[Storage]]:
    """Three storages on one store, as three worker processes would have."""
    opened = [BACKENDS[request.param](tmp_path) for _ in range(3)]
    for storage in opened:
        await storage.open()
    try:
        yield opened
    finally:
        for storage in opened:
            await storage.close()


async def test_several_storages_on_one_store_share_the_limit(storages: list[Storage]) -> None:
    now = utcnow()
    three = QueueLimits(concurrency=3)
    got: dict[str, bool] = {}

    async def take(storage: Storage, holder: str) -> None:
        got[holder] = await storage.acquire_step_slot("api", holder, three, now, _LEASE)

    async with anyio.create_task_group() as tg:
        for i in range(12):
            tg.start_soon(take, storages[i % 3], f"h{i}")
    winners = sorted(h for h, took in got.items() if took)
    assert len(winners) == 3
    # every storage sees the same places: the queue is full for all of them
    for storage in storages:
        assert not await storage.acquire_step_slot("api", "late", three, now, _LEASE)
    await storages[2].release_step_slot("api", winners[0])
    assert await storages[0].acquire_step_slot("api", "late", three, now, _LEASE)
    # a winner asking again through another storage keeps its place
    assert await storages[1].acquire_step_slot("api", winners[1], three, now, _LEASE)


async def test_an_expired_place_is_renewed_until_someone_takes_it(
    storages: list[Storage],
) -> None:
    now = utcnow()
    one = QueueLimits(concurrency=1)
    first, second = storages[0], storages[1]
    assert await first.acquire_step_slot("api", "a", one, now, _LEASE)
    expired = now + _LEASE + timedelta(seconds=1)
    assert await second.renew_step_slot("api", "a", expired + _LEASE)  # no one took it
    assert not await second.acquire_step_slot("api", "b", one, expired, _LEASE)
    gone = expired + _LEASE + timedelta(seconds=1)
    assert await second.acquire_step_slot("api", "b", one, gone, _LEASE)
    assert not await first.acquire_step_slot("api", "a", one, gone, _LEASE)
    await first.release_step_slot("api", "a")  # already lost: no effect on b
    assert not await first.acquire_step_slot("api", "c", one, gone, _LEASE)


@pytest.mark.parametrize("kind", ["memory", *sorted(BACKENDS)])
async def test_a_rate_longer_than_a_day_counts_places_older_than_a_day(
    kind: str, tmp_path: Path
) -> None:
    """Free places are forgotten after a day, but never while a rate window counts them."""
    storage = MemoryStorage() if kind == "memory" else BACKENDS[kind](tmp_path)
    await storage.open()
    try:
        t0 = utcnow()
        per_two_days = QueueLimits(rate=(2, timedelta(days=2)))
        for holder in ("a", "b"):
            assert await storage.acquire_step_slot("api", holder, per_two_days, t0, _LEASE)
            await storage.release_step_slot("api", holder)
        later = t0 + timedelta(days=1, hours=12)
        assert not await storage.acquire_step_slot("api", "c", per_two_days, later, _LEASE)
        after = t0 + timedelta(days=2, seconds=1)
        assert await storage.acquire_step_slot("api", "c", per_two_days, after, _LEASE)
    finally:
        await storage.close()


# ----- SQLite -----


def _rows(path: Path, queue: str) -> dict[str, tuple[float, float | None]]:
    conn = sqlite3.connect(path)
    try:
        sql = f"SELECT holder, acquired_at, until FROM {_SLOTS} WHERE queue = ?"
        rows = conn.execute(sql, (queue,)).fetchall()
    finally:
        conn.close()
    return {str(h): (a, u) for h, a, u in rows}


def _insert(path: Path, *rows: tuple[str, str, float, float | None]) -> None:
    conn = sqlite3.connect(path)
    try:
        with conn:
            conn.executemany(f"INSERT INTO {_SLOTS} VALUES (?, ?, ?, ?)", rows)
    finally:
        conn.close()


async def test_sqlite_forgets_old_free_places_when_one_is_taken(tmp_path: Path) -> None:
    path = tmp_path / "pw.db"
    storage = SQLiteStorage(f"sqlite:///{path}")
    await storage.open()
    try:
        now = utcnow()
        at = now.timestamp()
        day = 86400.0
        _insert(
            path,
            ("api", "old-released", at - day - 5, None),
            ("api", "old-expired", at - day - 5, at - day),
            ("api", "old-held", at - day - 5, at + 60),  # a long step, renewed
            ("api", "recent-released", at - 60, None),
            ("other", "old-released", at - day - 5, None),  # another queue: left alone
        )
        assert await storage.acquire_step_slot("api", "new", QueueLimits(), now, _LEASE)
        assert sorted(_rows(path, "api")) == ["new", "old-held", "recent-released"]
        assert sorted(_rows(path, "other")) == ["old-released"]
        assert _rows(path, "api")["new"] == (at, (now + _LEASE).timestamp())
        # a rate over two days still counts rows older than a day
        _insert(path, ("slow", "h1", at - day - 5, None), ("slow", "h2", at - day - 5, None))
        per_two_days = QueueLimits(rate=(2, timedelta(days=2)))
        assert not await storage.acquire_step_slot("slow", "h3", per_two_days, now, _LEASE)
        assert sorted(_rows(path, "slow")) == ["h1", "h2"]
    finally:
        await storage.close()


def test_sqlite_slot_queries_search_the_queue_index(tmp_path: Path) -> None:
    """Pruning and the rate count read a range of (queue, acquired_at); nothing scans the table."""
    from pyworkflow.storage import sqlite as sqlite_module

    conn = sqlite3.connect(tmp_path / "plan.db")
    try:
        for statement in SCHEMA:
            conn.execute(statement)
        for sql, params, ranged in (
            (sqlite_module._PRUNE_SLOTS, ("q", 1.0, 2.0), True),
            (sqlite_module._RECENT_SLOTS, ("q", 1.0, 5), True),
            (sqlite_module._HELD_SLOTS, ("q", "h", 1.0, 5), False),
        ):
            plan = [str(r[-1]) for r in conn.execute(f"EXPLAIN QUERY PLAN {sql}", params)]
            search = [p for p in plan if p.startswith(f"SEARCH {_SLOTS} USING")]
            assert len(search) == 1, plan
            assert "ix_pyworkflow_step_slots_acquired (queue=?" in search[0], plan
            assert ("acquired_at" in search[0]) == ranged, plan
            assert not any(p.startswith(f"SCAN {_SLOTS}") for p in plan), plan
    finally:
        conn.close()


async def test_sqlite_adds_the_places_table_to_an_older_database(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    conn = sqlite3.connect(path)
    try:
        for statement in SCHEMA:
            if _SLOTS not in statement:
                conn.execute(statement)
        conn.commit()
    finally:
        conn.close()
    storage = SQLiteStorage(f"sqlite:///{path}")
    await storage.open()
    try:
        limits = QueueLimits(concurrency=1)
        assert await storage.acquire_step_slot("api", "a", limits, utcnow(), _LEASE)
        assert not await storage.acquire_step_slot("api", "b", limits, utcnow(), _LEASE)
    finally:
        await storage.close()


# ----- File -----


async def test_file_keeps_one_small_file_per_queue(tmp_path: Path) -> None:
    storage = FileStorage(f"file://{tmp_path}")
    await storage.open()
    now = utcnow()
    await storage.release_step_slot("api", "nobody")  # nothing held: nothing written
    assert list((tmp_path / "slots").iterdir()) == []
    assert await storage.acquire_step_slot("api", "a", QueueLimits(), now, _LEASE)
    assert await storage.acquire_step_slot("db", "a", QueueLimits(), now, _LEASE)
    files = sorted((tmp_path / "slots").iterdir())
    assert len(files) == 2 and all(f.suffix == ".json" for f in files)
    # a damaged file is reported, not taken as an empty queue
    for f in files:
        f.write_text("{not json")
    with pytest.raises(CorruptDataError, match="corrupt step queue file"):
        await storage.acquire_step_slot("api", "b", QueueLimits(concurrency=1), now, _LEASE)
