"""What PostgreSQL adds beyond the suites: URLs, migrations, SKIP LOCKED, NOTIFY, outages."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from typing import Any

import anyio
import asyncpg
import asyncpg.connection
import asyncpg.transaction
import pytest
from pyworkflow_postgres import PostgresSettings, PostgresStorage
from pyworkflow_postgres.migrations import LATEST
from pyworkflow_postgres.storage import SCHEMA_LATEST

import pyworkflow
from pyworkflow.errors import ConfigError, StorageUnavailableError
from pyworkflow.models import EventType, NewEvent, RunPatch, utcnow
from pyworkflow.runtime import get_runtime
from pyworkflow.testing.servers import PostgresServer, free_port
from pyworkflow.testing.storage_suite import make_run

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
async def storage(schema_url: str) -> AsyncIterator[PostgresStorage]:
    # as the runtime opens it: with a task group, where its LISTEN loop runs
    async with PostgresStorage(schema_url) as store:
        yield store


# ----- configuration -----


def test_postgresql_url_resolves_through_the_entry_point(schema_url: str) -> None:
    pyworkflow.configure(storage=schema_url, postgres={"pool_size": 3}, embedded_worker=False)
    store = get_runtime().storage
    assert isinstance(store, PostgresStorage)
    assert store.settings.pool_size == 3
    assert store.schema == schema_url.rsplit("=", 1)[1]


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("postgresql+psycopg2://u@h/db", "uses asyncpg"),
        ("postgresql://u@127.0.0.1:5432", "names no database"),
        ("postgresql://u@127.0.0.1/db?schema=Bad-Name", "?schema= must be a lower-case SQL"),
    ],
)
def test_bad_urls_are_named(url: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("?", r"\?")):
        PostgresStorage(url)


def test_bad_plugin_options_are_named(schema_url: str) -> None:
    with pytest.raises(ConfigError, match=r"unknown option 'pool' in \[tool.pyworkflow.postgres\]"):
        pyworkflow.configure(storage=schema_url, postgres={"pool": 3})
        get_runtime()
    pyworkflow.runtime.reset()
    with pytest.raises(ConfigError, match=r"'reconnect_timeout'.*positive number of seconds"):
        pyworkflow.configure(storage=schema_url, postgres={"reconnect_timeout": -1})
        get_runtime()


def test_plugin_options_from_the_environment(
    schema_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PYWORKFLOW_STORAGE", schema_url)
    monkeypatch.setenv("PYWORKFLOW_POSTGRES__NOTIFY", "false")
    monkeypatch.setenv("PYWORKFLOW_EMBEDDED_WORKER", "false")
    store = get_runtime().storage
    assert isinstance(store, PostgresStorage)
    assert store.settings.notify is False and store.pushes_wakeups is False


# ----- migrations -----


async def test_schema_is_versioned_and_migrated_once_by_concurrent_openers(
    schema_url: str,
) -> None:
    stores = [PostgresStorage(schema_url) for _ in range(5)]
    async with anyio.create_task_group() as tg:
        for store in stores:
            tg.start_soon(store.open)
    try:
        async with stores[0]._pool.acquire() as conn:
            rows = await conn.fetch("SELECT version FROM pyworkflow_schema_version")
        assert sorted(r[0] for r in rows) == list(range(1, LATEST + 1))
    finally:
        for store in stores:
            await store.close()


async def test_a_newer_schema_is_refused(storage: PostgresStorage, schema_url: str) -> None:
    async with storage._pool.acquire() as conn:
        await conn.execute(
            "INSERT INTO pyworkflow_schema_version VALUES ($1, 'from the future', 0)", LATEST + 1
        )
    newer = PostgresStorage(schema_url)
    with pytest.raises(ConfigError, match=f"at version {LATEST + 1}, newer than"):
        await newer.open()


async def test_a_version_1_database_is_upgraded_with_the_parent_index(
    storage: PostgresStorage, schema_url: str
) -> None:
    async with storage._pool.acquire() as conn:  # back to what version 1 made
        await conn.execute("DROP INDEX ix_pyworkflow_runs_parent")
        await conn.execute("DELETE FROM pyworkflow_schema_version WHERE version > 1")
    upgraded = PostgresStorage(schema_url)
    await upgraded.open()
    try:
        async with upgraded._pool.acquire() as conn:
            versions = await conn.fetch("SELECT version FROM pyworkflow_schema_version")
            index = await conn.fetchval(
                "SELECT indexdef FROM pg_indexes WHERE indexname = 'ix_pyworkflow_runs_parent' "
                "AND schemaname = current_schema()"
            )
        assert sorted(r[0] for r in versions) == list(range(1, LATEST + 1))
        assert index is not None and "(parent_run_id)" in index
        await upgraded.create_run(make_run("p-1"), [])
        await upgraded.create_run(make_run("c-1", parent_run_id="p-1"), [])
        assert [r.run_id for r in (await upgraded.list_runs(parent_run_id="p-1")).runs] == ["c-1"]
    finally:
        await upgraded.close()


async def test_migrate_false_needs_tables_at_this_version(postgres_server: PostgresServer) -> None:
    url = f"{postgres_server.url}?schema=t_{uuid.uuid4().hex[:12]}"
    store = PostgresStorage(url, PostgresSettings(migrate=False))
    with pytest.raises(ConfigError, match=f"at version 0, this pyworkflow-postgres needs {LATEST}"):
        await store.open()
    first = PostgresStorage(url)
    await first.open()
    await first.close()
    await store.open()  # now current
    await store.close()


# ----- claims -----


async def test_concurrent_claimers_take_disjoint_runs(
    storage: PostgresStorage, schema_url: str
) -> None:
    past = utcnow() - timedelta(seconds=1)
    for i in range(200):
        await storage.create_run(make_run(f"r{i:03}", wake_at=past), [])
    claimers = [PostgresStorage(schema_url) for _ in range(8)]
    for claimer in claimers:
        await claimer.open()
    claimed: dict[str, list[str]] = {}

    async def claim(n: int, store: PostgresStorage) -> None:
        owner = f"w{n}"
        claimed[owner] = []
        while True:
            runs = await store.claim_runs(owner, utcnow(), 7, timedelta(minutes=5))
            if not runs:
                return
            claimed[owner] += [r.run_id for r in runs]

    try:
        async with anyio.create_task_group() as tg:
            for n, claimer in enumerate(claimers):
                tg.start_soon(claim, n, claimer)
    finally:
        for claimer in claimers:
            await claimer.close()
    every = [run_id for ids in claimed.values() for run_id in ids]
    assert len(every) == 200 and len(set(every)) == 200
    assert sum(1 for ids in claimed.values() if ids) > 1
    for owner, ids in claimed.items():
        for run_id in ids[:3]:
            assert (await storage.get_run(run_id)).lease_owner == owner


# ----- wake-ups -----


async def test_notify_reaches_listeners_of_other_connections(
    storage: PostgresStorage, schema_url: str
) -> None:
    writer = PostgresStorage(schema_url)
    await writer.open()
    heard: list[datetime | None] = []
    got = anyio.Event()

    def listener(at: datetime | None) -> None:
        heard.append(at)
        if at is not None:
            got.set()

    storage.add_wake_listener(listener)
    try:
        await anyio.sleep(0.3)  # the LISTEN connection is up
        due = utcnow() + timedelta(seconds=30)
        await writer.create_run(make_run("woken", wake_at=due), [])
        with anyio.fail_after(5):
            await got.wait()
        assert due in heard
    finally:
        await writer.close()


async def test_no_notify_when_disabled(schema_url: str) -> None:
    quiet = PostgresStorage(schema_url, PostgresSettings(notify=False))
    loud = PostgresStorage(schema_url)
    heard: list[datetime | None] = []
    loud.add_wake_listener(heard.append)
    async with quiet, loud:
        await anyio.sleep(0.3)
        heard.clear()
        await quiet.create_run(make_run("silent", wake_at=utcnow()), [])
        await anyio.sleep(0.5)
        assert heard == []
        assert quiet._background is None  # no LISTEN task


# ----- connection loss -----


def _is_append(query: str) -> bool:
    return query.startswith("WITH u AS (UPDATE")


async def test_an_interrupted_append_that_landed_is_not_written_twice(
    storage: PostgresStorage, monkeypatch: pytest.MonkeyPatch
) -> None:
    # an append is one statement in autocommit: its reply lost after it committed
    await storage.create_run(make_run("ambiguous"), [])
    real = asyncpg.connection.Connection.fetchval
    cut = {"done": False}

    async def run_then_drop(self: Any, query: str, *args: Any, **kwargs: Any) -> Any:
        value = await real(self, query, *args, **kwargs)
        if _is_append(query) and not cut["done"]:
            cut["done"] = True
            raise ConnectionResetError("connection lost before the reply")
        return value

    monkeypatch.setattr(asyncpg.connection.Connection, "fetchval", run_then_drop)
    events = [NewEvent(EventType.STEP_COMPLETED, "1", {"result": "1"})]
    assert await storage.append_events("ambiguous", 0, events) == 1
    monkeypatch.setattr(asyncpg.connection.Connection, "fetchval", real)
    assert cut["done"]
    assert [e.seq for e in await storage.get_events("ambiguous")] == [1]


async def test_an_interrupted_append_that_did_not_land_is_retried(
    storage: PostgresStorage, monkeypatch: pytest.MonkeyPatch
) -> None:
    await storage.create_run(make_run("lost"), [])
    real = asyncpg.connection.Connection.fetchval
    cut = {"done": False}

    async def drop_before(self: Any, query: str, *args: Any, **kwargs: Any) -> Any:
        if _is_append(query) and not cut["done"]:
            cut["done"] = True
            raise ConnectionResetError("connection lost before the statement reached the server")
        return await real(self, query, *args, **kwargs)

    monkeypatch.setattr(asyncpg.connection.Connection, "fetchval", drop_before)
    events = [NewEvent(EventType.STEP_COMPLETED, "1", {"result": "1"})]
    assert await storage.append_events("lost", 0, events, RunPatch(set_wake=True)) == 1
    monkeypatch.setattr(asyncpg.connection.Connection, "fetchval", real)
    assert cut["done"]
    assert [e.seq for e in await storage.get_events("lost")] == [1]


@pytest.mark.parametrize("landed", [True, False])
async def test_an_interrupted_commit_is_checked_before_the_retry(
    storage: PostgresStorage, monkeypatch: pytest.MonkeyPatch, landed: bool
) -> None:
    # create_run (and an append with hooks) run in a transaction: the COMMIT's reply lost
    real_commit = asyncpg.transaction.Transaction.commit
    real_rollback = asyncpg.transaction.Transaction.rollback
    cut = {"done": False}

    async def interrupted_commit(self: Any) -> None:
        if cut["done"]:
            return await real_commit(self)
        cut["done"] = True
        if landed:
            await real_commit(self)
        else:
            await real_rollback(self)
        raise ConnectionResetError("connection lost during COMMIT")

    monkeypatch.setattr(asyncpg.transaction.Transaction, "commit", interrupted_commit)
    hook = NewEvent(EventType.HOOK_CREATED, "h", {"token": "tok-ambiguous"})
    run, created = await storage.create_run(make_run("c"), [hook])
    monkeypatch.setattr(asyncpg.transaction.Transaction, "commit", real_commit)
    assert cut["done"] and created and run.run_id == "c"
    assert [e.seq for e in await storage.get_events("c")] == [1]
    assert (await storage.get_hook("tok-ambiguous")).run_id == "c"


def test_the_schema_version_the_storage_checks_is_the_latest_migration() -> None:
    assert SCHEMA_LATEST == LATEST


async def test_operations_wait_out_a_server_restart() -> None:
    server = PostgresServer(fsync=False)
    store = PostgresStorage(server.url)
    try:
        await store.open()
        await store.create_run(make_run("before"), [])
        await anyio.to_thread.run_sync(server.stop)
        restarted = asyncio.get_running_loop().run_in_executor(None, server.start)
        await asyncio.sleep(0)
        # issued while the server is down: retried until it is back
        run = await store.get_run("before")
        await restarted
        assert run.run_id == "before"
        await store.create_run(make_run("after"), [])
        assert (await store.get_run("after")).run_id == "after"
    finally:
        await store.close()
        server.destroy()


async def test_an_unreachable_database_fails_after_the_reconnect_timeout() -> None:
    url = f"postgresql://postgres@127.0.0.1:{free_port()}/postgres"
    store = PostgresStorage(url, PostgresSettings(reconnect_timeout=0.5, connect_timeout=0.5))
    with anyio.fail_after(10):
        with pytest.raises(StorageUnavailableError, match=r"unreachable for 0\.5s"):
            await store.open()
