"""Queues and schedules on Redis beyond the conformance cases: the admission order and limits
against the reference rules (Memory), the queue indexes through status changes, rows stored
before queues, retried calls, and admissions from several clients."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from datetime import timedelta

import attrs
import pytest
from pyworkflow_redis import RedisStorage
from test_redis_backend import lose_first_reply

from pyworkflow.models import (
    EventType,
    NewEvent,
    QueueLimits,
    QueueStats,
    Run,
    RunPatch,
    RunStatus,
    utcnow,
)
from pyworkflow.storage.base import Storage
from pyworkflow.storage.memory import MemoryStorage
from pyworkflow.testing.servers import RedisServer
from pyworkflow.testing.storage_suite import make_run
from pyworkflow.testing.suite_flow_storage import queued, schedule

pytestmark = pytest.mark.anyio

LEASE = timedelta(seconds=30)
START = [NewEvent(EventType.WORKFLOW_STARTED, None, {})]


@pytest.fixture
async def store(redis_url: str) -> AsyncIterator[RedisStorage]:
    async with RedisStorage(redis_url) as storage:
        yield storage


async def end(storage: Storage, run_id: str, status: RunStatus = RunStatus.COMPLETED) -> None:
    run = await storage.get_run(run_id)
    patch = RunPatch(status=status, set_wake=True)
    ending = [NewEvent(EventType.WORKFLOW_COMPLETED)]
    await storage.append_events(run_id, run.last_seq, ending, patch)


async def test_admission_follows_the_reference_rules(store: RedisStorage) -> None:
    """Random queues, ties, partitions, limits and endings: Redis admits what Memory admits."""
    rng = random.Random(16)
    memory = MemoryStorage()
    base = utcnow()
    # few distinct ranks and creation times (1 µs apart), so ties are the rule; ids whose
    # byte order and code point order must agree (':' and non-ASCII letters)
    names = ["a", "b", "a:b", "ab", "é", "z9", "Ω", "a-1", "_", "0"]
    runs: list[Run] = []
    for i in range(60):
        run_id = f"{rng.choice(names)}{rng.choice(names)}{i}"
        created = base + timedelta(microseconds=rng.randrange(3))
        status = RunStatus.QUEUED if rng.random() < 0.85 else RunStatus.PENDING
        runs.append(
            queued(
                run_id,
                queue=rng.choice(["q", "q", "other:q"]),
                rank=rng.choice([-1.5, 0.0, 0.0, 2.25]),
                created_at=created,
                updated_at=created,
                status=status,
                wake_at=created if status == RunStatus.PENDING else None,
                partition_key=rng.choice([None, "A", "B", "C"]),
            )
        )
    for run in runs:
        for storage in (store, memory):
            await storage.create_run(run, START)
    now = base
    for step in range(40):
        now += timedelta(seconds=rng.choice([0, 1, 3]))
        queue = rng.choice(["q", "other:q"])
        limits = QueueLimits(
            concurrency=rng.choice([None, 4, 8]),
            worker_concurrency=rng.choice([None, 2]),
            partition_concurrency=rng.choice([None, 1, 2]),
            rate=rng.choice([None, (3, timedelta(seconds=5))]),
        )
        worker = rng.choice([None, "w1", "w2"])
        limit = rng.randrange(1, 6)
        got = {}
        for name, storage in (("redis", store), ("memory", memory)):
            admitted = await storage.admit_queued_runs(
                queue, limits, f"o{step}", now, limit, LEASE, worker=worker
            )
            got[name] = [r.run_id for r in admitted]
        assert got["redis"] == got["memory"], (step, queue, limits, worker, limit)
        active = [
            r.run_id
            for r in (await memory.list_runs(limit=1000)).runs
            if r.status in (RunStatus.PENDING, RunStatus.SUSPENDED)
        ]
        for run_id in rng.sample(sorted(active), k=min(len(active), rng.randrange(3))):
            for storage in (store, memory):
                await end(storage, run_id)
        since = now - timedelta(seconds=4)
        assert await store.queue_stats(since) == await memory.queue_stats(since)
    for run in runs:  # every stored field, as Memory stores it
        mine, ref = await store.get_run(run.run_id), await memory.get_run(run.run_id)
        assert mine == attrs.evolve(ref, updated_at=mine.updated_at)


async def test_a_queued_run_that_ends_leaves_its_queue_and_frees_its_key(
    store: RedisStorage,
) -> None:
    await store.create_run(queued("a", dedup_key="k"), START)
    await store.create_run(queued("b", rank=1.0), START)
    await end(store, "a", RunStatus.CANCELLED)  # cancelled while waiting
    since = utcnow() - timedelta(hours=1)
    assert await store.queue_stats(since) == [QueueStats("q", waiting=1, active=0, admitted=0)]
    admitted = await store.admit_queued_runs("q", QueueLimits(), "o", utcnow(), 10, LEASE)
    assert [r.run_id for r in admitted] == ["b"]
    again, created = await store.create_run(queued("c", dedup_key="k"), START)
    assert created and again.run_id == "c"
    await end(store, "b", RunStatus.FAILED)
    assert await store.queue_stats(since) == [QueueStats("q", waiting=1, active=0, admitted=1)]


async def test_admitted_runs_are_claimed_like_any_due_run(store: RedisStorage) -> None:
    now = utcnow()
    await store.create_run(queued("r"), START)
    (admitted,) = await store.admit_queued_runs("q", QueueLimits(), "o", now, 1, LEASE)
    assert admitted.wake_at == now
    assert await store.due_timers(now, 10) == [("r", now)]
    assert await store.next_wake_at() == now
    later = now + LEASE + timedelta(seconds=1)  # the admitting worker died: the lease expires
    (claimed,) = await store.claim_runs("w2", later, 10, LEASE)
    assert claimed.run_id == "r" and claimed.lease_owner == "w2"
    assert claimed.admitted_at == now and claimed.status == RunStatus.PENDING


async def test_a_run_stored_before_queues_reads_with_the_defaults(
    store: RedisStorage, redis_server: RedisServer
) -> None:
    await store.create_run(make_run("old"), [])
    client = redis_server.client()
    client.hdel(f"{store.prefix}:run:old", "priority")  # as the first layout wrote it
    got = await store.get_run("old")
    assert (got.queue, got.priority, got.partition_key, got.dedup_key) == (None, 0, None, None)
    assert (got.queue_rank, got.admitted_at, got.admitted_by) == (None, None, None)
    assert await store.queue_stats(utcnow() - timedelta(days=1)) == []


async def test_retried_flow_writes_take_effect_once(store: RedisStorage) -> None:
    now = utcnow()
    calls = lose_first_reply(store)
    _, created = await store.create_run(queued("r1", dedup_key="k"), START)
    assert created
    await store.create_run(queued("r2", rank=1.0), START)
    admitted = await store.admit_queued_runs("q", QueueLimits(), "o", now, 1, LEASE, worker="w")
    assert [r.run_id for r in admitted] == ["r1"]
    assert (await store.get_run("r2")).status == RunStatus.QUEUED  # not a second admission
    stored, made = await store.create_schedule(schedule("s", next_fire_at=now))
    assert made and stored.name == "s"
    assert [s.name for s in await store.claim_schedules("w", now, 10, LEASE)] == ["s"]
    nxt = now + timedelta(minutes=1)
    assert await store.advance_schedule("s", "w", now, nxt, now, "r1")
    assert (await store.get_schedule("s")).next_fire_at == nxt
    assert calls == [
        "create_run",
        "create_run",
        "admit",
        "get_run",
        "put_schedule",
        "claim_schedules",
        "advance_schedule",  # the read
        "advance_schedule",  # the script
        "get_schedule",
    ]


async def test_admissions_from_several_clients_keep_every_limit(redis_url: str) -> None:
    clients = [RedisStorage(redis_url) for _ in range(3)]
    for client in clients:
        await client.open()
    try:
        for i in range(30):
            run = queued(f"r{i:02d}", rank=float(i), partition_key=f"p{i % 3}")
            await clients[0].create_run(run, START)
        now = utcnow()
        limits = QueueLimits(concurrency=6, partition_concurrency=2, worker_concurrency=3)
        batches = await asyncio.gather(
            *(
                client.admit_queued_runs("q", limits, f"o{k}", now, 2, LEASE, worker=f"w{k % 4}")
                for k in range(12)
                for client in clients
            )
        )
        admitted = [r for batch in batches for r in batch]
        assert len(admitted) == 6 and len({r.run_id for r in admitted}) == 6
        per_key = {key: sum(r.partition_key == key for r in admitted) for key in ("p0", "p1", "p2")}
        assert per_key == {"p0": 2, "p1": 2, "p2": 2}
        per_worker = [sum(r.admitted_by == f"w{k}" for r in admitted) for k in range(4)]
        assert max(per_worker) <= 3
        assert sorted(r.run_id for r in admitted) == [f"r{i:02d}" for i in range(6)]
    finally:
        for client in clients:
            await client.close()
