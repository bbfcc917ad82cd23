"""Queues and schedules on PostgreSQL beyond the conformance suite: migration 3, many processes."""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import anyio
import asyncpg
import asyncpg.transaction
import pytest
from pyworkflow_postgres import PostgresStorage
from pyworkflow_postgres.migrations import LATEST, versions
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool
from sqlmodel import SQLModel

from pyworkflow.models import (
    EventType,
    NewEvent,
    QueueLimits,
    Run,
    RunPatch,
    RunStatus,
    utcnow,
)
from pyworkflow.storage.schema import (
    EventRow,
    HookRow,
    RunRow,
    ScheduleRow,
    StepCheckpointRow,
    StepLeaseRow,
    StepSlotRow,
    StreamChunkRow,
)
from pyworkflow.testing.servers import PostgresServer
from pyworkflow.testing.storage_suite import make_run
from pyworkflow.testing.suite_flow_storage import queued, schedule

pytestmark = pytest.mark.anyio

_LEASE = timedelta(seconds=30)
_START = [NewEvent(EventType.WORKFLOW_STARTED, None, {})]
_V2_SQL = (Path(__file__).parent / "schema_v2.sql").read_text()
_DEDUP_INDEX = "uq_pyworkflow_runs_live_dedup"
_HELD_INDEX = "ix_pyworkflow_step_slots_held"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def _new_schema() -> str:
    return f"t_{uuid.uuid4().hex[:12]}"


@pytest.fixture
async def stores(schema_url: str) -> AsyncIterator[list[PostgresStorage]]:
    """Four storages on one schema, each with its own pool: four worker processes."""
    opened = [PostgresStorage(schema_url) for _ in range(4)]
    for store in opened:
        await store.open()
    try:
        yield opened
    finally:
        for store in opened:
            await store.close()


async def _end(store: PostgresStorage, run_id: str) -> None:
    run = await store.get_run(run_id)
    patch = RunPatch(status=RunStatus.COMPLETED, result="null", set_wake=True)
    await store.append_events(run_id, run.last_seq, [NewEvent(EventType.WORKFLOW_COMPLETED)], patch)


# ----- migrations 3 and 4 -----


async def _fingerprint(conn: Any, schema: str) -> dict[str, list[tuple[Any, ...]]]:
    """The schema's tables, columns, constraints and indexes, with its name taken out."""

    def plain(value: Any) -> Any:
        return value.replace(f"{schema}.", "") if isinstance(value, str) else value

    queries = {
        "columns": (
            "SELECT table_name, column_name, data_type, is_nullable, column_default "
            "FROM information_schema.columns WHERE table_schema = $1 "
            "ORDER BY table_name, ordinal_position"
        ),
        "constraints": (
            "SELECT r.relname, c.conname, pg_get_constraintdef(c.oid) FROM pg_constraint c "
            "JOIN pg_class r ON r.oid = c.conrelid JOIN pg_namespace n ON n.oid = c.connamespace "
            "WHERE n.nspname = $1 ORDER BY c.conname"
        ),
        "indexes": (
            "SELECT tablename, indexname, indexdef FROM pg_indexes WHERE schemaname = $1 "
            "ORDER BY indexname"
        ),
    }
    return {
        name: [tuple(plain(v) for v in row) for row in await conn.fetch(query, schema)]
        for name, query in queries.items()
    }


async def _metadata_schema(server: PostgresServer, schema: str) -> None:
    """Create ``schema`` straight from the SQLModel tables of ``pyworkflow.storage.schema``."""
    store = PostgresStorage(f"{server.url}?schema={schema}")
    tables = [
        SQLModel.metadata.tables[str(row.__tablename__)]
        for row in (
            RunRow,
            EventRow,
            HookRow,
            StepLeaseRow,
            ScheduleRow,
            StepSlotRow,
            StreamChunkRow,
            StepCheckpointRow,
        )
    ]
    engine = create_async_engine(
        store.sa_url,
        poolclass=NullPool,
        connect_args={"server_settings": {"search_path": schema}},
    )
    try:
        async with engine.begin() as conn:
            await conn.execute(text(f'CREATE SCHEMA "{schema}"'))
            await conn.run_sync(lambda sync: SQLModel.metadata.create_all(sync, tables=tables))
            await conn.run_sync(lambda sync: versions.create(sync))
    finally:
        await engine.dispose()


async def test_a_version_2_database_with_a_run_is_upgraded_to_what_a_fresh_one_is(
    postgres_server: PostgresServer,
) -> None:
    old, fresh, reference = _new_schema(), _new_schema(), _new_schema()
    conn = await asyncpg.connect(postgres_server.url, server_settings={"search_path": old})
    try:
        await conn.execute(f'CREATE SCHEMA "{old}"')
        await conn.execute(_V2_SQL)
        # a run as version 2 stored it (18 columns), suspended on a timer, with one event
        await conn.execute(
            "INSERT INTO pyworkflow_runs VALUES ('old', 'wf', 'v1', 'suspended', '{}', 'json', "
            "NULL, NULL, NULL, 1000.5, 1001.25, NULL, 'key-1', NULL, 2000.0, NULL, NULL, 1)"
        )
        await conn.execute(
            "INSERT INTO pyworkflow_events VALUES ('old', 1, 'workflow_started', NULL, 1000.5, "
            "'{}')"
        )
    finally:
        await conn.close()

    upgraded = PostgresStorage(f"{postgres_server.url}?schema={old}")
    new = PostgresStorage(f"{postgres_server.url}?schema={fresh}")
    await _metadata_schema(postgres_server, reference)
    async with upgraded, new:
        run = await upgraded.get_run("old")
        assert (run.status, run.workflow_version, run.idempotency_key, run.last_seq) == (
            RunStatus.SUSPENDED,
            "v1",
            "key-1",
            1,
        )
        assert run.created_at.timestamp() == 1000.5 and run.wake_at is not None
        assert run.wake_at.timestamp() == 2000.0
        assert (run.queue, run.priority, run.partition_key, run.dedup_key) == (None, 0, None, None)
        assert (run.queue_rank, run.admitted_at, run.admitted_by) == (None, None, None)
        assert [e.type for e in await upgraded.get_events("old")] == [EventType.WORKFLOW_STARTED]

        async with upgraded._pool.acquire() as c:
            applied = [r[0] for r in await c.fetch("SELECT version FROM pyworkflow_schema_version")]
            after_upgrade = await _fingerprint(c, old)
            after_fresh = await _fingerprint(c, fresh)
            from_metadata = await _fingerprint(c, reference)
        assert sorted(applied) == list(range(1, LATEST + 1)) and LATEST == 6
        assert after_upgrade == after_fresh
        # the SQLModel tables, plus the partial indexes only PostgreSQL has
        dedup = [i for i in after_fresh["indexes"] if i[1] == _DEDUP_INDEX]
        assert len(dedup) == 1
        assert "UNIQUE" in dedup[0][2] and "COALESCE(queue" in dedup[0][2]
        assert "WHERE ((dedup_key IS NOT NULL) AND" in dedup[0][2]
        held = [i for i in after_fresh["indexes"] if i[1] == _HELD_INDEX]
        assert len(held) == 1
        assert "(queue, until) WHERE (until IS NOT NULL)" in held[0][2]
        after_fresh["indexes"].remove(dedup[0])
        after_fresh["indexes"].remove(held[0])
        assert after_fresh == from_metadata

        # the upgraded database takes queued runs and schedules
        await upgraded.create_run(queued("q1", dedup_key="d"), _START)
        assert not (await upgraded.create_run(queued("q2", dedup_key="d"), _START))[1]
        admitted = await upgraded.admit_queued_runs("q", QueueLimits(), "o", utcnow(), 5, _LEASE)
        assert [r.run_id for r in admitted] == ["q1"]
        await upgraded.put_schedule(schedule("s"))
        assert (await upgraded.get_schedule("s")).name == "s"
        # and places of step queues (migration 4)
        assert await upgraded.acquire_step_slot(
            "api", "h", QueueLimits(concurrency=1), utcnow(), _LEASE
        )


# ----- dedup keys -----


async def test_concurrent_starts_with_one_dedup_key_make_one_run(
    stores: list[PostgresStorage],
) -> None:
    results: list[tuple[Run, bool]] = []

    async def start(n: int) -> None:
        store = stores[n % len(stores)]
        results.append(await store.create_run(queued(f"r{n:02d}", dedup_key="k"), _START))

    async with anyio.create_task_group() as tg:
        for n in range(24):
            tg.start_soon(start, n)
    created = [run.run_id for run, made in results if made]
    assert len(results) == 24 and len(created) == 1
    assert {run.run_id for run, _ in results} == set(created)
    # once that run has ended, the key starts a new one
    (holder,) = created
    await stores[0].admit_queued_runs("q", QueueLimits(), "o", utcnow(), 1, _LEASE)
    await _end(stores[0], holder)
    again, made = await stores[1].create_run(queued("next", dedup_key="k"), _START)
    assert made and again.run_id == "next"


async def test_a_run_id_taken_is_an_error_with_or_without_a_dedup_key(
    stores: list[PostgresStorage],
) -> None:
    store = stores[0]
    await store.create_run(make_run("a"), _START)
    with pytest.raises(asyncpg.UniqueViolationError):
        await store.create_run(make_run("a"), _START)
    with pytest.raises(asyncpg.UniqueViolationError, match="run with id 'a' already exists"):
        await store.create_run(queued("a", dedup_key="fresh-key"), _START)
    # an idempotency key still wins over the dedup key
    await store.create_run(make_run("b", idempotency_key="ik"), _START)
    back, made = await store.create_run(queued("c", idempotency_key="ik", dedup_key="x"), _START)
    assert not made and back.run_id == "b"


# ----- admission -----


async def test_admissions_from_many_processes_hold_every_limit(
    stores: list[PostgresStorage],
) -> None:
    for i in range(40):
        run = queued(f"r{i:02d}", rank=float(i), partition_key=f"k{i % 4}")
        await stores[0].create_run(run, _START)
    limits = QueueLimits(concurrency=6, partition_concurrency=2)
    admitted: list[Run] = []

    async def admit(n: int) -> None:
        store = stores[n % len(stores)]
        admitted.extend(
            await store.admit_queued_runs("q", limits, f"o{n}", utcnow(), 4, _LEASE, worker=f"w{n}")
        )

    for _ in range(3):  # three rounds: admit from everywhere at once, then end what ran
        async with anyio.create_task_group() as tg:
            for n in range(8):
                tg.start_soon(admit, n)
        states = {r.run_id: (await stores[0].get_run(r.run_id)).status for r in admitted}
        running = [r for r in admitted if states[r.run_id] == RunStatus.PENDING]
        assert len(running) == 6
        assert max(Counter(r.partition_key for r in running).values()) <= 2
        for run in running:
            await _end(stores[0], run.run_id)
    ids = [r.run_id for r in admitted]
    assert len(ids) == 18 and len(set(ids)) == 18
    # in rank order: each round takes the lowest ranks its limits allow
    assert sorted(ids) == [f"r{i:02d}" for i in range(18)]


async def test_a_full_partition_deep_in_the_queue_does_not_hide_the_runs_behind_it(
    stores: list[PostgresStorage],
) -> None:
    store = stores[0]
    async with store._pool.acquire() as conn:  # 300 waiting runs of one customer, in one go
        rows = [queued(f"a{i:03d}", rank=float(i), partition_key="A") for i in range(300)]
        await conn.executemany(
            "INSERT INTO pyworkflow_runs (run_id, workflow_name, status, input, serializer, "
            "created_at, updated_at, last_seq, queue, priority, partition_key, queue_rank) "
            "VALUES ($1, 'wf', 'queued', '{}', 'json', $2, $2, 0, 'q', 0, 'A', $3)",
            [(r.run_id, r.created_at.timestamp(), r.queue_rank) for r in rows],
        )
    for i, key in enumerate(["B", "B", None, "C", None]):
        await store.create_run(queued(f"z{i}", rank=1000.0 + i, partition_key=key), _START)
    limits = QueueLimits(partition_concurrency=1)
    admitted = await store.admit_queued_runs("q", limits, "o", utcnow(), 10, _LEASE)
    assert [r.run_id for r in admitted] == ["a000", "z0", "z2", "z3", "z4"]
    assert await store.admit_queued_runs("q", limits, "o", utcnow(), 10, _LEASE) == []
    stats = {s.queue: s for s in await store.queue_stats(utcnow() - timedelta(minutes=1))}
    assert (stats["q"].waiting, stats["q"].active, stats["q"].admitted) == (300, 5, 5)


async def test_admission_leaves_timers_and_wake_ups_as_they_were(
    stores: list[PostgresStorage],
) -> None:
    store, other = stores[0], stores[1]
    await store.create_run(queued("w"), _START)
    assert await store.next_wake_at() is None  # a queued run is not due
    now = utcnow()
    (run,) = await store.admit_queued_runs("q", QueueLimits(), "o", now, 1, _LEASE)
    assert run.wake_at == now and await store.next_wake_at() == now
    # leased to the admitting owner: nobody else claims it until the lease expires
    assert await other.claim_runs("x", now, 10, _LEASE) == []
    later = now + _LEASE + timedelta(seconds=1)
    assert [r.run_id for r in await other.claim_runs("x", later, 10, _LEASE)] == ["w"]


# ----- schedules -----


async def test_schedule_claims_from_many_processes_lease_each_once(
    stores: list[PostgresStorage],
) -> None:
    now = utcnow()
    for i in range(30):
        await stores[0].put_schedule(schedule(f"s{i:02d}", next_fire_at=now))
    got: list[str] = []

    async def claim(n: int) -> None:
        store = stores[n % len(stores)]
        while batch := await store.claim_schedules(f"w{n}", now, 3, _LEASE):
            got.extend(s.name for s in batch)

    async with anyio.create_task_group() as tg:
        for n in range(8):
            tg.start_soon(claim, n)
    assert sorted(got) == [f"s{i:02d}" for i in range(30)]


@pytest.mark.parametrize("landed", [True, False])
async def test_an_advance_whose_commit_was_cut_off_is_checked_before_the_retry(
    stores: list[PostgresStorage], monkeypatch: pytest.MonkeyPatch, landed: bool
) -> None:
    store = stores[0]
    now = utcnow()
    nxt = now + timedelta(minutes=1)
    await store.put_schedule(schedule("s", next_fire_at=now))
    await store.claim_schedules("w1", now, 10, _LEASE)
    real_commit = asyncpg.transaction.Transaction.commit
    real_rollback = asyncpg.transaction.Transaction.rollback
    cut = {"done": False}

    async def interrupted_commit(self: Any) -> None:
        if cut["done"]:
            return await real_commit(self)
        cut["done"] = True
        await (real_commit if landed else real_rollback)(self)
        raise ConnectionResetError("connection lost during COMMIT")

    monkeypatch.setattr(asyncpg.transaction.Transaction, "commit", interrupted_commit)
    assert await store.advance_schedule("s", "w1", now, nxt, now, "r1")
    monkeypatch.setattr(asyncpg.transaction.Transaction, "commit", real_commit)
    assert cut["done"]
    got = await store.get_schedule("s")
    assert (got.next_fire_at, got.last_fire_at, got.last_run_id) == (nxt, now, "r1")
    assert [s.name for s in await stores[1].claim_schedules("w2", nxt, 10, _LEASE)] == ["s"]


# ----- step queues -----


async def test_step_places_taken_from_many_processes_hold_the_limits(
    stores: list[PostgresStorage],
) -> None:
    now = utcnow()
    limits = QueueLimits(concurrency=3, rate=(7, timedelta(minutes=1)))
    got: dict[str, bool] = {}

    async def take(holder: str) -> None:
        store = stores[len(got) % len(stores)]
        got[holder] = await store.acquire_step_slot("api", holder, limits, now, _LEASE)

    async def round_of(holders: list[str]) -> list[str]:
        got.clear()
        async with anyio.create_task_group() as tg:
            for holder in holders:
                tg.start_soon(take, holder)
        return sorted(h for h, took in got.items() if took)

    first = await round_of([f"a{i:02d}" for i in range(16)])
    assert len(first) == 3  # the concurrency
    # a run queue of the same name is another thing: its admissions are not these places
    await stores[0].create_run(queued("r", queue="api"), _START)
    assert len(await stores[1].admit_queued_runs("api", limits, "o", now, 5, _LEASE)) == 1
    for holder in first:
        await stores[2].release_step_slot("api", holder)
    second = await round_of([f"b{i:02d}" for i in range(16)])
    assert len(second) == 3
    for holder in second:
        await stores[3].release_step_slot("api", holder)
    # 6 of the 7 places of the minute are taken: one more, however many ask
    assert len(await round_of([f"c{i:02d}" for i in range(16)])) == 1
    later = now + timedelta(minutes=1, seconds=1)
    assert await stores[0].acquire_step_slot("api", "d", limits, later, _LEASE)


async def test_old_step_places_released_or_expired_are_forgotten(
    stores: list[PostgresStorage],
) -> None:
    store = stores[0]
    now = utcnow()
    two_days = (now - timedelta(days=2)).timestamp()
    async with store._pool.acquire() as conn:
        await conn.executemany(
            "INSERT INTO pyworkflow_step_slots VALUES ($1, $2, $3, $4)",
            [
                ("api", "released", two_days, None),
                ("api", "expired", two_days, two_days + 30),
                ("api", "renewed", two_days, now.timestamp() + 30),  # still held
                ("api", "recent", now.timestamp() - 60, None),
                ("other", "released", two_days, None),  # another queue: left for later
            ],
        )
    one = QueueLimits(concurrency=1)
    assert not await store.acquire_step_slot("api", "new", one, now, _LEASE)
    assert await store.acquire_step_slot("api", "new", QueueLimits(concurrency=2), now, _LEASE)
    async with store._pool.acquire() as conn:
        rows = await conn.fetch("SELECT queue, holder FROM pyworkflow_step_slots")
    assert sorted(tuple(r) for r in rows) == [
        ("api", "new"),
        ("api", "recent"),
        ("api", "renewed"),
        ("other", "released"),
    ]


@pytest.mark.parametrize("landed", [True, False])
async def test_a_step_place_whose_commit_was_cut_off_is_taken_once(
    stores: list[PostgresStorage], monkeypatch: pytest.MonkeyPatch, landed: bool
) -> None:
    store = stores[0]
    now = utcnow()
    one = QueueLimits(concurrency=1, rate=(1, timedelta(minutes=1)))
    real_commit = asyncpg.transaction.Transaction.commit
    real_rollback = asyncpg.transaction.Transaction.rollback
    cut = {"done": False}

    async def interrupted_commit(self: Any) -> None:
        if cut["done"]:
            return await real_commit(self)
        cut["done"] = True
        await (real_commit if landed else real_rollback)(self)
        raise ConnectionResetError("connection lost during COMMIT")

    monkeypatch.setattr(asyncpg.transaction.Transaction, "commit", interrupted_commit)
    # the retry finds the place held (landed) or takes it (not landed): True either way,
    # although the rate allows one place a minute
    assert await store.acquire_step_slot("api", "h", one, now, _LEASE)
    monkeypatch.setattr(asyncpg.transaction.Transaction, "commit", real_commit)
    assert cut["done"]
    assert not await stores[1].acquire_step_slot("api", "other", one, now, _LEASE)
    async with store._pool.acquire() as conn:
        rows = await conn.fetch("SELECT holder, acquired_at FROM pyworkflow_step_slots")
    assert [tuple(r) for r in rows] == [("h", now.timestamp())]
