"""The Redis backend itself: plugin wiring, options, the durability check, key layout,
corrupt data, retried calls, restarts and pub/sub wake-ups (against real redis-servers)."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime, timedelta
from typing import Any

import pytest
from pyworkflow_redis import RedisSettings, RedisStorage
from redis.exceptions import ConnectionError as RedisConnectionError

import pyworkflow
from pyworkflow import plugins, runtime
from pyworkflow.config import load_settings
from pyworkflow.errors import (
    ConfigError,
    CorruptDataError,
    RunNotFoundError,
    StorageUnavailableError,
)
from pyworkflow.models import EventType, NewEvent, RunPatch, RunStatus, utcnow
from pyworkflow.storage.memory import MemoryStorage
from pyworkflow.testing.servers import RedisServer, free_port, wait_for
from pyworkflow.testing.storage_suite import make_run

pytestmark = pytest.mark.anyio


def ev(cid: str = "1", kind: EventType = EventType.STEP_COMPLETED, **payload: Any) -> NewEvent:
    return NewEvent(kind, cid, payload)


@pytest.fixture
async def store(redis_url: str) -> AsyncIterator[RedisStorage]:
    # as the runtime opens it: with a task group, where its subscriber runs
    async with RedisStorage(redis_url) as storage:
        yield storage


# ----- plugin wiring and options -----


def test_configure_resolves_redis_urls_through_the_entry_point(redis_server: RedisServer) -> None:
    pyworkflow.configure(storage=f"{redis_server.url}?prefix=x", embedded_worker=False)
    storage = runtime.get_runtime().storage
    assert type(storage) is RedisStorage
    assert storage.prefix == "x" and storage.options.durability == "fsync"
    provider = plugins.storage_schemes()
    assert {"redis", "rediss"} <= set(provider)


def test_options_come_from_the_table_env_and_url(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = load_settings({"redis": {"prefix": "app", "reconnect_timeout": 5}})
    storage = plugins.create_storage("redis://127.0.0.1:6379/2", settings)
    assert isinstance(storage, RedisStorage)
    assert storage.options == RedisSettings(prefix="app", reconnect_timeout=5.0)
    url_wins = plugins.create_storage("redis://h/0?prefix=mine&durability=RELAXED", settings)
    assert isinstance(url_wins, RedisStorage)
    assert (url_wins.prefix, url_wins.options.durability) == ("mine", "relaxed")
    monkeypatch.setenv("PYWORKFLOW_REDIS__DURABILITY", "relaxed")
    from_env = plugins.create_storage("redis://h:1/0?socket_timeout=3", load_settings())
    assert isinstance(from_env, RedisStorage) and from_env.options.durability == "relaxed"


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("redis://127.0.0.1:notaport/0", "Port"),
        ("redis://127.0.0.1:6379/zero", "database number"),
        ("redis://127.0.0.1:6379/0?prefx=a", "unknown query parameter 'prefx'"),
        ("redis://127.0.0.1:6379/0?durability=sometimes", "durability"),
        ("redis://127.0.0.1:6379/0?prefix=", "prefix"),
        ("redis://127.0.0.1:6379/0?db=1", "path"),
        ("redis://:secret@127.0.0.1:6379/x", "database number"),
    ],
)
def test_bad_urls_are_config_errors(url: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as info:
        plugins.create_storage(url, load_settings())
    assert "secret" not in str(info.value)  # passwords never reach messages


def test_bad_plugin_options_are_config_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ConfigError, match=r"unknown option 'prefx'.*valid options: durability"):
        plugins.create_storage("redis://h/0", load_settings({"redis": {"prefx": "a"}}))
    monkeypatch.setenv("PYWORKFLOW_REDIS__DURABILITY", "maybe")
    with pytest.raises(ConfigError, match="PYWORKFLOW_REDIS__DURABILITY"):
        plugins.create_storage("redis://h/0", load_settings())
    monkeypatch.delenv("PYWORKFLOW_REDIS__DURABILITY")
    pyworkflow.configure(storage="redis://127.0.0.1:1/0", redis={"reconnect_timeout": -1})
    with pytest.raises(ConfigError, match="reconnect_timeout"):
        runtime.get_runtime()


# ----- the durability check -----


async def test_a_server_without_aof_is_refused_unless_relaxed(
    own_redis: Callable[..., RedisServer], new_prefix: Callable[[], str]
) -> None:
    server = own_redis(aof=False)
    storage = RedisStorage(f"{server.url}?prefix={new_prefix()}")
    with pytest.raises(ConfigError) as info:
        await storage.open()
    message = str(info.value)
    for expected in ("appendonly yes", "appendfsync always", 'durability = "relaxed"'):
        assert expected in message, message
    relaxed = RedisStorage(f"{server.url}?prefix={new_prefix()}&durability=relaxed")
    await relaxed.open()
    try:
        _, created = await relaxed.create_run(make_run("r"), [ev()])
        assert created and (await relaxed.get_run("r")).last_seq == 1
    finally:
        await relaxed.close()
    everysec = own_redis(aof=True)
    everysec.client().config_set("appendfsync", "everysec")
    with pytest.raises(ConfigError, match="appendfsync always") as info:
        await RedisStorage(f"{everysec.url}?prefix={new_prefix()}").open()
    assert "appendonly is" not in str(info.value)


def leaf(error: BaseException) -> BaseException:
    """The one error inside (possibly nested) exception groups."""
    while isinstance(error, BaseExceptionGroup) and len(error.exceptions) == 1:
        error = error.exceptions[0]
    return error


def test_configure_reports_the_refusal(own_redis: Callable[..., RedisServer]) -> None:
    server = own_redis(aof=False)
    pyworkflow.configure(storage=server.url, embedded_worker=False)
    # the runtime currently wraps errors of storage.open() in exception groups
    with pytest.raises((ConfigError, BaseExceptionGroup)) as info:
        runtime.get_runtime()
    error = leaf(info.value)
    assert isinstance(error, ConfigError) and "appendfsync always" in str(error)
    pyworkflow.configure(storage=server.url, redis={"durability": "relaxed"})
    assert runtime.get_runtime().storage.url == server.url


async def test_without_config_access_the_error_says_how_to_opt_out(
    redis_server: RedisServer, new_prefix: Callable[[], str]
) -> None:
    user = f"noconfig{new_prefix()}"
    redis_server.client().execute_command(
        "ACL", "SETUSER", user, "on", ">pw", "~*", "&*", "+@all", "-config"
    )
    url = f"redis://{user}:pw@127.0.0.1:{redis_server.port}/0?prefix={new_prefix()}"
    with pytest.raises(ConfigError) as info:
        await RedisStorage(url).open()
    message = str(info.value)
    assert "CONFIG" in message and 'durability = "relaxed"' in message, message
    assert ":pw@" not in message
    relaxed = RedisStorage(f"{url}&durability=relaxed")
    await relaxed.open()
    try:
        await relaxed.create_run(make_run("r"), [])
    finally:
        await relaxed.close()


async def test_an_unreachable_server_fails_after_the_reconnect_timeout() -> None:
    storage = RedisStorage(f"redis://127.0.0.1:{free_port()}/0?reconnect_timeout=0.5")
    began = time.monotonic()
    with pytest.raises(StorageUnavailableError, match="unreachable"):
        await storage.open()
    assert time.monotonic() - began < 25  # the default reconnect_timeout is 30 s


# ----- key layout -----


async def test_every_key_starts_with_the_prefix_and_prefixes_do_not_mix(
    redis_server: RedisServer, new_prefix: Callable[[], str]
) -> None:
    a, b = new_prefix(), new_prefix()
    one, two = (
        RedisStorage(f"{redis_server.url}?prefix={a}"),
        RedisStorage(f"{redis_server.url}?prefix={b}"),
    )
    await one.open()
    await two.open()
    try:
        now = utcnow()
        hook = ev("h", EventType.HOOK_CREATED, token=f"tok-{a}")
        await one.create_run(make_run("r1", wake_at=now, idempotency_key="k"), [ev(), hook])
        await one.set_step_lease("r1", "s1", "w", now + timedelta(seconds=30))
        await one.append_events("r1", 2, [ev("2")], RunPatch(status=RunStatus.RUNNING))
        await two.create_run(make_run("r2"), [])
        assert [r.run_id for r in (await one.list_runs()).runs] == ["r1"]
        assert [r.run_id for r in (await two.list_runs()).runs] == ["r2"]
        with pytest.raises(RunNotFoundError):
            await two.get_run("r1")
        keys = sorted(k.decode() for k in redis_server.client().keys(f"{a}:*"))
        assert all(k.startswith(f"{a}:") for k in keys)
        assert {
            f"{a}:run:r1",
            f"{a}:log:r1",
            f"{a}:idem",
            f"{a}:hooks",
            f"{a}:timers",
            f"{a}:ready",
            f"{a}:steps:r1",
            f"{a}:stepleases",
            f"{a}:idx:all",
            f"{a}:idx:status:running",
            f"{a}:idx:wf:wf",
            f"{a}:idx:wfs:running:wf",
            f"{a}:schema",
        } == set(keys)
        assert not redis_server.client().exists(f"{a}:idx:status:pending")  # moved on
    finally:
        await one.close()
        await two.close()


# ----- several processes -----


async def test_concurrent_claims_from_two_clients_are_disjoint(redis_url: str) -> None:
    a, b = RedisStorage(redis_url), RedisStorage(redis_url)
    await a.open()
    await b.open()
    try:
        now = utcnow()
        for i in range(40):
            await a.create_run(make_run(f"r{i}", wake_at=now - timedelta(seconds=i)), [])
        lease = timedelta(seconds=30)
        claims = await asyncio.gather(
            *(
                s.claim_runs(f"w{k}-{n}", now, 3, lease)
                for k in range(10)
                for n, s in enumerate((a, b))
            )
        )
        claimed = [r.run_id for batch in claims for r in batch]
        assert sorted(claimed) == sorted(f"r{i}" for i in range(40))  # each exactly once
        assert await a.claim_runs("late", now, 10, lease) == []
        assert await b.due_timers(now, 100) != []  # still due, only leased
    finally:
        await a.close()
        await b.close()


# ----- listing -----


async def test_list_runs_pages_like_the_memory_backend_with_ties(store: RedisStorage) -> None:
    rng = random.Random(7)
    base = utcnow()
    memory = MemoryStorage()
    statuses = [RunStatus.PENDING, RunStatus.COMPLETED, RunStatus.FAILED]
    for i in range(40):
        run = make_run(
            f"r{rng.randrange(1000):03d}-{i}",
            workflow_name=rng.choice(["a", "b:c"]),
            status=rng.choice(statuses),
            created_at=base + timedelta(seconds=rng.randrange(5)),  # many equal times
        )
        await store.create_run(run, [])
        await memory.create_run(run, [])
    for status in (None, *statuses):
        for workflow in (None, "a", "b:c"):
            for limit in (1, 3, 100):
                pages: dict[str, list[str]] = {"redis": [], "memory": []}
                for name, storage in (("redis", store), ("memory", memory)):
                    cursor = None
                    while True:
                        page = await storage.list_runs(
                            status=status, workflow=workflow, limit=limit, cursor=cursor
                        )
                        pages[name] += [r.run_id for r in page.runs]
                        cursor = page.next_cursor
                        if cursor is None:
                            break
                assert pages["redis"] == pages["memory"], (status, workflow, limit)


# ----- corrupt data -----


async def test_a_corrupt_event_names_the_run_and_seq(
    store: RedisStorage, redis_server: RedisServer
) -> None:
    await store.create_run(make_run("bad"), [ev("1"), ev("2"), ev("3")])
    await store.create_run(make_run("good"), [ev("1")])
    client = redis_server.client()
    client.lset(f"{store.prefix}:log:bad", 1, b"{not json")
    with pytest.raises(CorruptDataError, match=r"run bad: event seq 2"):
        await store.get_events("bad")
    assert [e.seq for e in await store.get_events("bad", after_seq=2)] == [3]
    assert [e.seq for e in await store.get_events("good")] == [1]
    client.lset(f"{store.prefix}:log:good", 0, b'{"type":"no_such_type","ts":1,"payload":{}}')
    with pytest.raises(CorruptDataError, match=r"run good: event seq 1 \(no_such_type\)"):
        await store.get_events("good")
    client.lset(f"{store.prefix}:log:good", 0, b'{"type":"step_completed","ts":1,"payload":[1]}')
    with pytest.raises(CorruptDataError, match=r"run good: event seq 1"):
        await store.get_events("good")
    assert await store.append_events("good", 1, [ev("2")]) == 2  # the run stays writable
    client.hset(f"{store.prefix}:run:good", "status", "exploded")
    with pytest.raises(CorruptDataError, match="good"):
        await store.get_run("good")
    client.hset(f"{store.prefix}:run:bad", "created_at", "yesterday")
    with pytest.raises(CorruptDataError, match="bad"):
        await store.get_run("bad")


def test_a_corrupt_event_fails_that_run_only(
    redis_server: RedisServer, new_prefix: Callable[[], str]
) -> None:
    import redis_flows

    prefix = new_prefix()
    pyworkflow.configure(
        storage=f"{redis_server.url}?prefix={prefix}", poll_interval=0.05, lease_seconds=2
    )
    victim = pyworkflow.start(redis_flows.redis_nap_flow, "victim")
    wait_for(lambda: pyworkflow.get_run(victim).status == RunStatus.SUSPENDED, 20, "the nap")
    (seq,) = [e.seq for e in pyworkflow.get_events(victim) if e.type == EventType.STEP_COMPLETED]
    redis_server.client().lset(f"{prefix}:log:{victim}", seq - 1, b"{not json")
    healthy = pyworkflow.start(redis_flows.redis_nap_flow, "healthy")
    assert pyworkflow.get_result(healthy, timeout=20) == "healthy!"
    wait_for(lambda: pyworkflow.get_run(victim).status.is_terminal, 20, "the victim to end")
    info = pyworkflow.get_run(victim)
    assert info.status == RunStatus.FAILED
    assert "CorruptDataError" in (info.error_message or "")
    assert f"event seq {seq}" in (info.error_message or "")
    with pytest.raises(CorruptDataError, match=f"run {victim}: event seq {seq}"):
        pyworkflow.get_events(victim)


# ----- a reply lost after the write went through: the retried call does not write twice ----


def lose_first_reply(storage: RedisStorage) -> list[str]:
    """Make every call go through once, lose its reply, and be retried (as after a blip)."""
    calls: list[str] = []
    original = storage._call

    async def lossy(what: str, attempt: Callable[[bool], Awaitable[Any]]) -> Any:
        async def first_reply_lost(retry: bool) -> Any:
            if not retry:
                calls.append(what)
                await attempt(False)
                raise RedisConnectionError("connection reset (reply lost)")
            return await attempt(True)

        return await original(what, first_reply_lost)

    storage._call = lossy  # type: ignore[method-assign]  # fault injection for this test
    return calls


async def test_retried_writes_take_effect_once(store: RedisStorage) -> None:
    now = utcnow()
    lease = timedelta(seconds=30)
    hook = ev("h", EventType.HOOK_CREATED, token="tok")
    calls = lose_first_reply(store)
    run, created = await store.create_run(make_run("r", wake_at=now, idempotency_key="k"), [hook])
    assert created and run.last_seq == 1
    assert await store.append_events("r", 1, [ev("1"), ev("2")]) == 3
    assert await store.append_hook_payload("tok", {"data": "x"}, now) == ("r", 4)
    claimed = await store.claim_runs("w1", now, 10, lease)
    assert [r.run_id for r in claimed] == ["r"] and claimed[0].lease_owner == "w1"
    assert await store.set_step_lease("r", "s", "queued:1", now + lease)
    assert await store.set_step_lease("r", "s", "w1", now + lease, if_owner="queued:1")
    await store.create_run(make_run("r2", wake_at=now), [])
    taken = await store.claim_run("r2", "w2", now, lease)
    assert taken is not None and taken.lease_owner == "w2"
    assert calls == [
        "create_run",
        "append",
        "hook",
        "claim_runs",
        "step_lease",
        "step_lease",
        "create_run",
        "claim_run",
    ]
    events = await store.get_events("r")
    assert [e.seq for e in events] == [1, 2, 3, 4]
    assert [e.type for e in events].count(EventType.HOOK_RECEIVED) == 1
    assert (await store.get_step_leases("r"))["s"].owner == "w1"


# ----- restarts and wake-ups -----


async def test_calls_and_the_subscriber_survive_a_restart(
    own_redis: Callable[..., RedisServer], new_prefix: Callable[[], str]
) -> None:
    server = own_redis()
    url = f"{server.url}?prefix={new_prefix()}"
    heard: list[datetime | None] = []
    listening = RedisStorage(url)
    listening.add_wake_listener(heard.append)
    # opened as the runtime opens them: the subscriber runs in their task group until close
    async with listening, RedisStorage(url) as writing:
        now = utcnow()
        await asyncio.sleep(0.2)  # the subscription is up
        await writing.create_run(make_run("r", wake_at=now), [ev()])
        await wait_until(lambda: now in heard)
        server.stop()
        restarting = asyncio.get_running_loop().run_in_executor(None, restart, server)
        # issued while the server is down: retried until it is back
        assert await writing.append_events("r", 1, [ev("2")]) == 2
        await restarting
        await wait_until(lambda: None in heard)  # reconnected: "look now"
        later = now + timedelta(seconds=5)
        patch = RunPatch(set_wake=True, wake_at=later)
        await writing.append_events("r", 2, [], patch)
        await wait_until(lambda: later in heard)
        assert [e.seq for e in await listening.get_events("r")] == [1, 2]


def restart(server: RedisServer) -> None:
    time.sleep(1.0)
    server.start()


async def wait_until(check: Callable[[], bool], timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.02)
