"""Step queue places on Redis beyond the conformance cases: the answers of the reference rules
(Memory) over random calls, retried calls, old entries forgotten, several clients at once."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from datetime import timedelta

import pytest
from pyworkflow_redis import RedisStorage
from test_redis_backend import lose_first_reply

from pyworkflow.models import QueueLimits, utcnow
from pyworkflow.storage.memory import MemoryStorage
from pyworkflow.testing.servers import RedisServer

pytestmark = pytest.mark.anyio

LEASE = timedelta(seconds=30)


@pytest.fixture
async def store(redis_url: str) -> AsyncIterator[RedisStorage]:
    async with RedisStorage(redis_url) as storage:
        yield storage


async def test_places_follow_the_reference_rules(store: RedisStorage) -> None:
    """Random acquisitions, renewals and releases: Redis answers what Memory answers."""
    rng = random.Random(16)
    memory = MemoryStorage()
    now = utcnow()
    holders = ["a", "b", "c", "d", "e:1", "é", "f"]
    for step in range(400):
        now += timedelta(seconds=rng.choice([0, 0, 1, 2, 7]))
        queue = rng.choice(["q", "other:q"])
        holder = rng.choice(holders)
        action = rng.random()
        if action < 0.6:
            limits = QueueLimits(
                concurrency=rng.choice([None, 1, 3]),
                rate=rng.choice([None, (2, timedelta(seconds=10)), (5, timedelta(seconds=30))]),
            )
            lease = timedelta(seconds=rng.choice([3, 10, 30]))
            answers = [
                await s.acquire_step_slot(queue, holder, limits, now, lease)
                for s in (store, memory)
            ]
        elif action < 0.8:
            until = now + timedelta(seconds=rng.choice([-5, 5, 20]))
            answers = [await s.renew_step_slot(queue, holder, until) for s in (store, memory)]
        else:
            for s in (store, memory):
                await s.release_step_slot(queue, holder)
            answers = [True, True]
        assert answers[0] == answers[1], (step, queue, holder, action)


async def test_a_retried_acquisition_takes_one_place_and_one_rate_token(
    store: RedisStorage,
) -> None:
    now = utcnow()
    limits = QueueLimits(concurrency=2, rate=(2, timedelta(minutes=1)))
    calls = lose_first_reply(store)
    assert await store.acquire_step_slot("api", "a", limits, now, LEASE)
    assert await store.renew_step_slot("api", "a", now + 2 * LEASE)
    await store.release_step_slot("api", "a")
    assert await store.acquire_step_slot("api", "b", limits, now, LEASE)
    assert calls == [
        "acquire_step_slot",
        "renew_step_slot",
        "release_step_slot",
        "acquire_step_slot",
    ]
    # a and b took the two tokens of the minute, once each
    assert not await store.acquire_step_slot("api", "c", limits, now, LEASE)
    later = now + timedelta(minutes=1, seconds=1)
    assert await store.acquire_step_slot("api", "c", limits, later, LEASE)


async def test_places_and_acquisitions_older_than_a_day_are_forgotten(
    store: RedisStorage, redis_server: RedisServer
) -> None:
    now = utcnow()
    client = redis_server.client()
    held, taken = f"{store.prefix}:stepq:held:api", f"{store.prefix}:stepq:taken:api"
    one = QueueLimits(concurrency=1)
    assert await store.acquire_step_slot("api", "old", one, now, LEASE)
    assert await store.acquire_step_slot("api", "released", QueueLimits(), now, LEASE)
    await store.release_step_slot("api", "released")
    assert client.zcard(held) == 1 and client.zcard(taken) == 2
    # a day on, the expired place and both acquisitions are deleted by the next acquisition
    later = now + timedelta(days=1, minutes=1)
    assert await store.acquire_step_slot("api", "new", one, later, LEASE)
    assert [m.decode() for m in client.zrange(held, 0, -1)] == ["new"]
    assert [m.decode() for m in client.zrange(taken, 0, -1)] == ["new"]
    assert not await store.renew_step_slot("api", "old", later + LEASE)
    # a rate whose period is longer than a day keeps what it counts
    weekly = QueueLimits(rate=(2, timedelta(days=7)))
    assert await store.acquire_step_slot("api", "x", weekly, later + timedelta(days=2), LEASE)
    assert not await store.acquire_step_slot("api", "y", weekly, later + timedelta(days=3), LEASE)


async def test_acquisitions_from_several_clients_keep_the_limits(redis_url: str) -> None:
    clients = [RedisStorage(redis_url) for _ in range(3)]
    for client in clients:
        await client.open()
    try:
        now = utcnow()
        limits = QueueLimits(concurrency=4, rate=(6, timedelta(seconds=10)))
        got = await asyncio.gather(
            *(
                client.acquire_step_slot("api", f"h{k}-{i}", limits, now, LEASE)
                for k, client in enumerate(clients)
                for i in range(10)
            )
        )
        assert got.count(True) == 4
        # the four release: the rate leaves two more acquisitions in the window
        winners = [f"h{k}-{i}" for k in range(3) for i in range(10) if got[k * 10 + i]]
        for holder in winners:
            await clients[0].release_step_slot("api", holder)
        again = await asyncio.gather(
            *(
                client.acquire_step_slot("api", f"n{k}-{i}", limits, now, LEASE)
                for k, client in enumerate(clients)
                for i in range(5)
            )
        )
        assert again.count(True) == 2
    finally:
        for client in clients:
            await client.close()
