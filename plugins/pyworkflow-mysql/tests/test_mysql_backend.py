"""What MySQL adds beyond the suites: URLs, options, migrations, SKIP LOCKED, collation, outages."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import anyio
import pytest
from mysql_support import fresh_database_url
from pymysql.err import OperationalError
from pyworkflow_mysql import MySQLSettings, MySQLStorage
from pyworkflow_mysql.migrations import LATEST
from pyworkflow_mysql.storage import SCHEMA_LATEST, server_version
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlmodel import SQLModel

import pyworkflow
from pyworkflow import plugins
from pyworkflow.config import load_settings
from pyworkflow.errors import ConfigError, HookTokenConflictError, StorageUnavailableError
from pyworkflow.models import EventType, NewEvent, utcnow
from pyworkflow.runtime import get_runtime
from pyworkflow.storage import schema
from pyworkflow.testing.servers import MariaDBServer, free_port
from pyworkflow.testing.storage_suite import make_run

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
async def storage(database_url: str) -> AsyncIterator[MySQLStorage]:
    async with MySQLStorage(database_url) as store:
        yield store


async def _rows(store: MySQLStorage, statement: str, *args: Any) -> list[tuple[Any, ...]]:
    assert store._engine is not None
    async with store._engine.connect() as conn:
        result = await conn.exec_driver_sql(statement, tuple(args))
        rows = [tuple(r) for r in result.fetchall()] if result.returns_rows else []
        await conn.commit()
        return rows


# ----- configuration -----


@pytest.mark.parametrize("scheme", ["mysql", "mariadb", "mysql+aiomysql", "MariaDB"])
def test_mysql_and_mariadb_urls_resolve_through_the_entry_point(
    mariadb_server: MariaDBServer, scheme: str
) -> None:
    url = fresh_database_url(mariadb_server).replace("mysql://", f"{scheme}://")
    pyworkflow.configure(storage=url, mysql={"pool_size": 3}, embedded_worker=False)
    store = get_runtime().storage
    assert isinstance(store, MySQLStorage)
    assert store.settings.pool_size == 3
    assert store.database == url.rsplit("/", 1)[1]
    assert store.server is not None and store.server.mariadb and store.server.supported


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("mysql+pymysql://u@h/db", "uses aiomysql"),
        ("mysql+asyncmy://u:pw-bad-1@h/db", "uses aiomysql"),
        ("mysql://u@127.0.0.1:3306", "names no database"),
        ("mariadb://u@127.0.0.1:3306/", "names no database"),
        ("mysql://u:pw-bad-1@127.0.0.1:notaport/db", "invalid MySQL storage URL"),
    ],
)
def test_bad_urls_are_named_without_their_password(url: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as info:
        MySQLStorage(url)
    assert "pw-bad-1" not in str(info.value)


def test_bad_plugin_options_are_named(database_url: str) -> None:
    with pytest.raises(ConfigError, match=r"unknown option 'pool' in \[tool.pyworkflow.mysql\]"):
        pyworkflow.configure(storage=database_url, mysql={"pool": 3})
        get_runtime()
    pyworkflow.runtime.reset()
    with pytest.raises(ConfigError, match=r"'reconnect_timeout'.*positive number of seconds"):
        pyworkflow.configure(storage=database_url, mysql={"reconnect_timeout": -1})
        get_runtime()
    pyworkflow.runtime.reset()
    with pytest.raises(ConfigError, match=r"'lock_wait_timeout'"):
        pyworkflow.configure(storage=database_url, mysql={"lock_wait_timeout": "soon"})
        get_runtime()


def test_plugin_options_from_the_environment(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PYWORKFLOW_STORAGE", database_url)
    monkeypatch.setenv("PYWORKFLOW_MYSQL__COMMAND_TIMEOUT", "2")
    monkeypatch.setenv("PYWORKFLOW_MYSQL__MIGRATE", "true")
    monkeypatch.setenv("PYWORKFLOW_EMBEDDED_WORKER", "false")
    store = get_runtime().storage
    assert isinstance(store, MySQLStorage)
    assert store.settings.command_timeout == 2.0 and store.settings.migrate is True
    assert store.pushes_wakeups is False
    settings = load_settings({"mysql": {"max_overflow": 4}})
    assert MySQLSettings.from_settings(settings).max_overflow == 4
    created = plugins.create_storage("mariadb://u:p@127.0.0.1:1/db", settings)
    assert isinstance(created, MySQLStorage) and created.settings.max_overflow == 4


# ----- server versions -----


@pytest.mark.parametrize(
    ("text", "mariadb", "version", "supported"),
    [
        ("10.11.19-MariaDB-0+deb12u1", True, (10, 11, 19), True),
        ("10.6.0-MariaDB", True, (10, 6, 0), True),
        ("10.5.23-MariaDB-0+deb11u1", True, (10, 5, 23), False),
        ("5.5.5-10.4.32-MariaDB-log", True, (10, 4, 32), False),
        ("8.0.36", False, (8, 0, 36), True),
        ("8.4.0-commercial", False, (8, 4, 0), True),
        ("5.7.44-log", False, (5, 7, 44), False),
    ],
)
def test_server_versions_without_skip_locked_are_refused_by_name(
    text: str, mariadb: bool, version: tuple[int, int, int], supported: bool
) -> None:
    found = server_version(text)
    assert (found.mariadb, found.version, found.supported) == (mariadb, version, supported)
    if supported:
        found.check()
        return
    product = "MariaDB" if mariadb else "MySQL"
    with pytest.raises(ConfigError, match=r"MariaDB 10\.6 or later or MySQL 8\.0\.1") as info:
        found.check()
    assert f"this server is {product} {'.'.join(map(str, version))}" in str(info.value)


# ----- migrations and tables -----


def test_the_schema_version_the_storage_checks_is_the_latest_migration() -> None:
    assert SCHEMA_LATEST == LATEST


async def test_tables_have_the_columns_of_the_shared_sqlmodel_tables(
    storage: MySQLStorage,
) -> None:
    rows = await _rows(
        storage,
        "SELECT table_name, column_name, is_generated FROM information_schema.columns "
        "WHERE table_schema = DATABASE() AND table_name LIKE 'pyworkflow\\_%%'",
    )
    found: dict[str, set[str]] = {}
    for table, column, generated in rows:
        if generated == "NEVER" and table != "pyworkflow_schema_version":
            found.setdefault(str(table), set()).add(str(column))
    assert schema.RunRow.__tablename__ in SQLModel.metadata.tables
    shared = {
        name: {c.name for c in table.columns}
        for name, table in SQLModel.metadata.tables.items()
        if name.startswith("pyworkflow_")
    }
    assert found == shared
    collations = await _rows(
        storage,
        "SELECT DISTINCT collation_name FROM information_schema.columns "
        "WHERE table_schema = DATABASE() AND collation_name IS NOT NULL",
    )
    assert collations == [("utf8mb4_nopad_bin",)]


async def test_schema_is_versioned_and_migrated_once_by_concurrent_openers(
    database_url: str,
) -> None:
    stores = [MySQLStorage(database_url) for _ in range(5)]
    async with anyio.create_task_group() as tg:
        for store in stores:
            tg.start_soon(store.open)
    try:
        rows = await _rows(stores[0], "SELECT version FROM pyworkflow_schema_version")
        assert sorted(r[0] for r in rows) == list(range(1, LATEST + 1))
    finally:
        for store in stores:
            await store.close()


async def test_a_newer_schema_is_refused(storage: MySQLStorage, database_url: str) -> None:
    await _rows(
        storage, "INSERT INTO pyworkflow_schema_version VALUES (%s, 'from the future', 0)", 99
    )
    with pytest.raises(ConfigError, match="at version 99, newer than"):
        await MySQLStorage(database_url).open()


async def test_migrate_false_needs_tables_at_this_version(mariadb_server: MariaDBServer) -> None:
    url = fresh_database_url(mariadb_server)
    with pytest.raises(ConfigError, match="Unknown database"):
        await MySQLStorage(url, MySQLSettings(migrate=False)).open()
    status = await MySQLStorage(url).schema_status()
    assert (status.current, status.latest, status.up_to_date) == (0, LATEST, False)
    applied = await MySQLStorage(url, MySQLSettings(migrate=False)).migrate_schema()
    assert applied == list(range(1, LATEST + 1))
    assert (await MySQLStorage(url).schema_status()).up_to_date
    async with MySQLStorage(url, MySQLSettings(migrate=False)) as store:
        await store.create_run(make_run("r"), [])
        await _rows(store, "DELETE FROM pyworkflow_schema_version")
    with pytest.raises(ConfigError, match="at version 0, this pyworkflow-mysql needs"):
        await MySQLStorage(url, MySQLSettings(migrate=False)).open()


# ----- MySQL specifics -----


async def test_text_compares_by_code_point_as_in_python(storage: MySQLStorage) -> None:
    # the default utf8mb4 collations ignore case and trailing spaces; these tables do not
    for run_id in ("run", "Run", "run ", "rün"):
        _, created = await storage.create_run(make_run(run_id, idempotency_key=run_id), [])
        assert created, run_id
    assert (await storage.get_run("run ")).run_id == "run "
    for run_id, token in (("run", "tok"), ("Run", "TOK"), ("run ", "tok ")):
        hook = NewEvent(EventType.HOOK_CREATED, token, {"token": token})
        await storage.append_events(run_id, 0, [hook])
    assert [(await storage.get_hook(t)).run_id for t in ("tok", "TOK", "tok ")] == [
        "run",
        "Run",
        "run ",
    ]
    with pytest.raises(HookTokenConflictError):
        hook = NewEvent(EventType.HOOK_CREATED, "x", {"token": "tok"})
        await storage.append_events("rün", 0, [hook])


async def test_a_value_longer_than_its_column_is_a_clear_error(storage: MySQLStorage) -> None:
    with pytest.raises(ValueError, match=r"too long for its MySQL column.*255 characters"):
        await storage.create_run(make_run("long", idempotency_key="k" * 300), [])
    long_input = "x" * 300_000  # LONGTEXT payloads have no such limit
    await storage.create_run(make_run("big", input=long_input), [])
    assert (await storage.get_run("big")).input == long_input


async def test_concurrent_claimers_take_disjoint_runs(database_url: str) -> None:
    stores = [MySQLStorage(database_url) for _ in range(4)]
    for store in stores:
        await store.open()
    try:
        now = utcnow()
        for i in range(120):
            await stores[0].create_run(make_run(f"r{i:03}", wake_at=now), [])
        claimed: dict[str, list[str]] = {}

        async def claimer(store: MySQLStorage, owner: str) -> None:
            while runs := await store.claim_runs(owner, utcnow(), 7, timedelta(minutes=5)):
                claimed.setdefault(owner, []).extend(r.run_id for r in runs)
                assert all(r.lease_owner == owner for r in runs)

        async with anyio.create_task_group() as tg:
            for i, store in enumerate(stores):
                tg.start_soon(claimer, store, f"w{i}")
        every = [run_id for ids in claimed.values() for run_id in ids]
        assert sorted(every) == [f"r{i:03}" for i in range(120)]  # each once, none lost
        assert len(claimed) > 1
    finally:
        for store in stores:
            await store.close()


async def test_a_deadlock_victim_is_run_again(
    storage: MySQLStorage, monkeypatch: pytest.MonkeyPatch
) -> None:
    await storage.create_run(make_run("d"), [])
    real = AsyncConnection.exec_driver_sql
    failed: list[int] = []

    async def deadlock_once(self: AsyncConnection, statement: str, *args: Any) -> Any:
        if statement.startswith("UPDATE pyworkflow_runs SET last_seq") and not failed:
            failed.append(1213)
            raise OperationalError(1213, "Deadlock found when trying to get lock")
        return await real(self, statement, *args)

    monkeypatch.setattr(AsyncConnection, "exec_driver_sql", deadlock_once)
    events = [NewEvent(EventType.STEP_COMPLETED, "1", {"result": "1"})]
    assert await storage.append_events("d", 0, events) == 1
    monkeypatch.setattr(AsyncConnection, "exec_driver_sql", real)
    assert failed == [1213]
    assert [e.seq for e in await storage.get_events("d")] == [1]


@pytest.mark.parametrize("landed", [True, False])
async def test_an_interrupted_commit_is_checked_before_the_retry(
    storage: MySQLStorage, monkeypatch: pytest.MonkeyPatch, landed: bool
) -> None:
    real_commit = AsyncConnection.commit
    real_rollback = AsyncConnection.rollback
    cut: list[bool] = []

    async def interrupted_commit(self: AsyncConnection) -> None:
        if cut or not self.in_transaction():
            return await real_commit(self)
        cut.append(True)
        if landed:
            await real_commit(self)
        else:
            await real_rollback(self)
        raise ConnectionResetError("connection lost during COMMIT")

    monkeypatch.setattr(AsyncConnection, "commit", interrupted_commit)
    hook = NewEvent(EventType.HOOK_CREATED, "h", {"token": "tok-ambiguous"})
    run, created = await storage.create_run(make_run("c"), [hook])
    events = [NewEvent(EventType.STEP_COMPLETED, "1", {"result": "1"})]
    cut.clear()
    assert await storage.append_events("c", 1, events) == 2
    monkeypatch.setattr(AsyncConnection, "commit", real_commit)
    assert cut and created and run.run_id == "c"
    assert [e.seq for e in await storage.get_events("c")] == [1, 2]
    assert (await storage.get_hook("tok-ambiguous")).run_id == "c"


# ----- outages -----


async def test_operations_wait_out_a_server_restart() -> None:
    server = MariaDBServer(durable=False)
    store = MySQLStorage(server.url)
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
    url = f"mysql://app:pw-unreachable-7@127.0.0.1:{free_port()}/app"
    store = MySQLStorage(url, MySQLSettings(reconnect_timeout=0.5, connect_timeout=0.5))
    with anyio.fail_after(10):
        with pytest.raises(StorageUnavailableError, match=r"unreachable for 0\.5s") as info:
            await store.open()
    message = str(info.value)
    assert f"host 127.0.0.1, port {url.split(':')[3].split('/')[0]}" in message
    assert "user app" in message and "reconnect_timeout" in message
    assert "pw-unreachable-7" not in message and "***" in message


async def test_a_lock_wait_timeout_is_rolled_back_and_run_again(database_url: str) -> None:
    # another session holds the run row for longer than lock_wait_timeout (1 s): the append's
    # statement times out (1205), its transaction is rolled back and run again until it gets in
    async with MySQLStorage(database_url, MySQLSettings(lock_wait_timeout=1)) as store:
        await store.create_run(make_run("held"), [])
        assert store._engine is not None
        async with store._engine.connect() as other:
            await other.exec_driver_sql(
                "SELECT run_id FROM pyworkflow_runs WHERE run_id = 'held' FOR UPDATE"
            )
            events = [NewEvent(EventType.STEP_COMPLETED, "1", {"result": "1"})]
            async with anyio.create_task_group() as tg:
                done: list[int] = []

                async def append() -> None:
                    done.append(await store.append_events("held", 0, events))

                tg.start_soon(append)
                await anyio.sleep(2.5)  # past two lock waits
                assert done == []
                await other.commit()
        assert done == [1]
        assert [e.seq for e in await store.get_events("held")] == [1]


async def test_an_old_server_is_refused_at_open_naming_its_version(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pyworkflow_mysql import storage as module

    real = module._Conn.scalar

    async def old_server(self: Any, statement: str, args: Any = ()) -> Any:
        if statement == "SELECT VERSION()":
            return "10.5.23-MariaDB-0+deb11u1"
        return await real(self, statement, args)

    monkeypatch.setattr(module._Conn, "scalar", old_server)
    with pytest.raises(ConfigError, match=r"this server is MariaDB 10\.5\.23"):
        await MySQLStorage(database_url).open()


async def test_a_database_the_user_may_not_create_is_a_clear_error(
    storage: MySQLStorage, mariadb_server: MariaDBServer
) -> None:
    user = f"ro_{uuid.uuid4().hex[:8]}"
    await _rows(storage, f"CREATE USER '{user}'@'%%' IDENTIFIED BY 'ro-secret-31'")
    await _rows(storage, f"GRANT SELECT ON *.* TO '{user}'@'%%'")
    url = f"mysql://{user}:ro-secret-31@127.0.0.1:{mariadb_server.port}/not_there"
    with pytest.raises(ConfigError, match="does not exist and could not be created") as info:
        await MySQLStorage(url).open()
    assert "CREATE privilege" in str(info.value) and "ro-secret-31" not in str(info.value)
