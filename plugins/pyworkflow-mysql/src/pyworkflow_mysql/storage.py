"""MySQL / MariaDB storage: short transactions on SQLAlchemy's async engine (aiomysql).

Every operation is one transaction on a pooled connection, in ``READ
COMMITTED`` isolation (InnoDB then locks the rows a statement matches, not the
gaps between them), and is retried with back-off when the server is
unreachable, restarting, or InnoDB chose it as a deadlock victim (error 1213)
or a lock wait timed out (1205). A transaction whose COMMIT was cut off may
have landed: the write's ``verify`` check runs before it is retried, so
nothing acknowledged is lost or written twice.

Claims select due rows ``FOR UPDATE SKIP LOCKED`` (MariaDB 10.6+, MySQL
8.0.1+), so many workers take disjoint runs; the rows are then leased by key
and read back in the same transaction (MySQL has no ``UPDATE ... RETURNING``).
An append updates the run row where ``last_seq`` is the expected one (its row
lock orders two writers of one run) and inserts the events only if it matched.

Queues and step queues: admitting runs, or taking a place, counts and writes
under a named lock (``GET_LOCK``) of the queue, released after COMMIT, so the
limits hold across every worker. A run's live ``(queue, dedup_key)`` is held
by a unique index over generated columns, so a start with a taken key fails
its insert (duplicate key, 1062) and returns the holder. Schedules are rows
leased with ``SKIP LOCKED`` like runs. Stream chunks take the stream's last
seq plus one; two writers racing for one seq meet on the primary key and the
loser reads the new last seq again.

MySQL has no ``LISTEN/NOTIFY``: workers find due runs by polling
(``poll_interval``), and :attr:`pushes_wakeups` is False.
"""

from __future__ import annotations

import contextlib
import hashlib
import re
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any, TypeVar

import anyio
import anyio.abc
import attrs
from loguru import logger
from sqlalchemy.engine import URL
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from pyworkflow.errors import (
    ConcurrencyError,
    ConfigError,
    HookNotFoundError,
    RunNotFoundError,
    ScheduleNotFoundError,
    StorageUnavailableError,
)
from pyworkflow.models import (
    Event,
    EventType,
    HookRecord,
    NewEvent,
    QueueLimits,
    QueueStats,
    Run,
    RunPage,
    RunPatch,
    RunStatus,
    Schedule,
    StepCheckpoint,
    StepLease,
    StreamChunk,
    utcnow,
)
from pyworkflow.redaction import redact_text, redact_url
from pyworkflow.storage.base import Storage, command_mode
from pyworkflow.storage.checkpoint_rules import check_checkpoint, check_checkpoint_key
from pyworkflow.storage.flow_rules import slot_memory
from pyworkflow.storage.migration import SchemaStatus, SchemaStep
from pyworkflow.storage.rows import (
    checkpoint_from_row,
    chunk_from_row,
    dump_payload,
    event_from_row,
    event_rows,
    from_epoch,
    hook_from_row,
    hook_to_values,
    patch_values,
    run_from_row,
    run_to_values,
    schedule_from_data,
    schedule_to_data,
    schedule_to_values,
    step_lease_from_row,
    to_epoch,
)
from pyworkflow.storage.rules import decode_cursor, hook_changes, hook_conflict_error, page_from
from pyworkflow.storage.stream_rules import check_chunk, check_read, chunk_key
from pyworkflow_mysql import statements as sql
from pyworkflow_mysql.connection import (
    DUPLICATE_KEY,
    Backoff,
    error_code,
    is_retryable,
)
from pyworkflow_mysql.settings import DATABASE_NAME, MySQLSettings, parse_url

__all__ = ["MySQLStorage", "ServerVersion", "server_version"]

T = TypeVar("T")
#: The schema version this code needs: ``pyworkflow_mysql.migrations.LATEST`` (a test
#: keeps them equal).
SCHEMA_LATEST = 1
#: Seconds a pooled connection is kept before it is replaced (below MySQL's ``wait_timeout``).
RECYCLE_SECONDS = 3600
#: Seconds to wait for a queue's named lock before the operation is retried.
QUEUE_LOCK_SECONDS = 30
#: ER_BAD_DB_ERROR: the URL's database does not exist.
_UNKNOWN_DATABASE = 1049
#: ER_DATA_TOO_LONG: a value longer than its column.
_DATA_TOO_LONG = 1406
#: What each connection sets first: strict SQL (errors, not truncation), UTC.
_SQL_MODE = "STRICT_ALL_TABLES,NO_ZERO_DATE,ERROR_FOR_DIVISION_BY_ZERO,NO_ENGINE_SUBSTITUTION"


@attrs.frozen
class ServerVersion:
    """The server's product and version, from ``SELECT VERSION()``."""

    mariadb: bool
    version: tuple[int, int, int]
    text: str

    @property
    def supported(self) -> bool:
        """``FOR UPDATE SKIP LOCKED``: MariaDB 10.6 or later, MySQL 8.0.1 or later."""
        return self.version >= ((10, 6, 0) if self.mariadb else (8, 0, 1))

    @property
    def collation(self) -> str:
        """The binary, no-pad utf8mb4 collation: text compares by code point, as in Python."""
        return "utf8mb4_nopad_bin" if self.mariadb else "utf8mb4_0900_bin"

    def check(self) -> None:
        """ConfigError naming the version if this server cannot serve as storage."""
        if not self.supported:
            product = "MariaDB" if self.mariadb else "MySQL"
            raise ConfigError(
                f"the MySQL storage needs MariaDB 10.6 or later or MySQL 8.0.1 or later "
                f"(FOR UPDATE SKIP LOCKED); this server is {product} "
                f"{'.'.join(map(str, self.version))} ({self.text})"
            )


def server_version(text: str) -> ServerVersion:
    """Parse ``SELECT VERSION()``: ``10.11.6-MariaDB-0+deb12u1``, ``8.0.36``, ...

    MariaDB behind some proxies reports ``5.5.5-10.6.12-MariaDB``: its own version is the last.
    """
    mariadb = "mariadb" in text.lower()
    numbers = re.findall(r"(\d+)\.(\d+)\.(\d+)", text)
    if not numbers:
        raise ConfigError(f"cannot read the server version {text!r}")
    major, minor, patch = (int(n) for n in numbers[-1 if mariadb else 0])
    return ServerVersion(mariadb, (major, minor, patch), text)


class _Conn:
    """One pooled connection inside its transaction: statements with ``%s`` parameters."""

    __slots__ = ("raw",)

    def __init__(self, raw: AsyncConnection) -> None:
        self.raw = raw

    async def execute(self, statement: str, args: Sequence[Any] = ()) -> int:
        """Run a write; the rows it matched."""
        result = await self.raw.exec_driver_sql(statement, tuple(args))
        return int(result.rowcount)

    async def executemany(self, statement: str, rows: Sequence[Sequence[Any]]) -> None:
        """Run one statement for each of ``rows`` (one multi-row INSERT for INSERT ... VALUES)."""
        await self.raw.exec_driver_sql(statement, [tuple(row) for row in rows])

    async def fetchall(self, statement: str, args: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        result = await self.raw.exec_driver_sql(statement, tuple(args))
        return [tuple(row) for row in result.fetchall()]

    async def fetchone(self, statement: str, args: Sequence[Any] = ()) -> tuple[Any, ...] | None:
        result = await self.raw.exec_driver_sql(statement, tuple(args))
        row = result.fetchone()
        return None if row is None else tuple(row)

    async def scalar(self, statement: str, args: Sequence[Any] = ()) -> Any:
        row = await self.fetchone(statement, args)
        return None if row is None else row[0]


_Op = Callable[[_Conn], Awaitable[T]]


def _lock_name(key: str) -> str:
    """A ``GET_LOCK`` name for ``key`` (at most 64 characters)."""
    return "pyworkflow:" + hashlib.sha1(key.encode()).hexdigest()


class MySQLStorage(Storage):
    """Runs and events in MySQL 8 or MariaDB 10.6+, safe for any number of worker processes.

    Tables (``pyworkflow_runs``, ``pyworkflow_events``, ``pyworkflow_hooks``,
    ``pyworkflow_step_leases``, ``pyworkflow_schedules``,
    ``pyworkflow_step_slots``, ``pyworkflow_stream_chunks``) are those of
    :mod:`pyworkflow.storage.schema`, created and upgraded at :meth:`open` by a
    versioned migration runner (table ``pyworkflow_schema_version``); the
    database itself is created if missing (with ``migrate``). While the server
    is unreachable an operation is retried with back-off for
    ``reconnect_timeout`` seconds (``command_timeout`` in a one-shot command),
    then fails with :class:`~pyworkflow.errors.StorageUnavailableError` naming
    the server it tried (password hidden).
    """

    pushes_wakeups = False

    def __init__(self, url: str, settings: MySQLSettings | None = None) -> None:
        self.url = url
        self.settings = settings or MySQLSettings()
        self.sa_url: URL = parse_url(url)
        self.database = str(self.sa_url.database)
        #: The URL with its password hidden, for logs and errors.
        self.log_url = redact_url(url)
        self.log = logger.bind(storage=self.log_url)
        self._engine: AsyncEngine | None = None
        self.server: ServerVersion | None = None
        #: Seconds to keep retrying an unreachable database, and which option set it.
        self._retry_for, self._retry_option = self.settings.reconnect_timeout, "reconnect_timeout"

    # ----- lifecycle -----

    def _make_engine(self, url: URL, *, pooled: bool = True) -> AsyncEngine:
        from sqlalchemy.ext.asyncio import create_async_engine
        from sqlalchemy.pool import NullPool

        init = (
            f"SET SESSION sql_mode = '{_SQL_MODE}', SESSION time_zone = '+00:00', "
            f"SESSION innodb_lock_wait_timeout = {int(self.settings.lock_wait_timeout)}"
        )
        connect_args = {
            "connect_timeout": min(self.settings.connect_timeout, self._retry_for),
            "init_command": init,
            "charset": "utf8mb4",
        }
        if not pooled:
            return create_async_engine(
                url, poolclass=NullPool, connect_args=connect_args, isolation_level="AUTOCOMMIT"
            )
        return create_async_engine(
            url,
            pool_size=self.settings.pool_size,
            max_overflow=self.settings.max_overflow,
            pool_recycle=RECYCLE_SECONDS,
            isolation_level="READ COMMITTED",
            connect_args=connect_args,
        )

    async def open(self, task_group: anyio.abc.TaskGroup | None = None) -> None:
        """Connect, check the server's version, create or upgrade the tables.

        MySQL pushes no wake-ups, so nothing is started in ``task_group``.
        """
        if self._engine is not None:
            return
        self._set_patience()
        self._engine = self._make_engine(self.sa_url)
        try:
            await self._prepare_schema()
        except BaseException:
            engine, self._engine = self._engine, None
            with anyio.CancelScope(shield=True):
                await engine.dispose()
            raise

    async def _prepare_schema(self) -> None:
        """Check server and schema version; create the database and migrate if needed."""

        async def probe(conn: _Conn) -> tuple[str, int]:
            text = str(await conn.scalar("SELECT VERSION()"))
            if not await conn.scalar(sql.SCHEMA_VERSION_EXISTS):
                return text, 0
            return text, int(await conn.scalar(sql.SCHEMA_VERSION))

        try:
            text, found = await self._run_op(probe, write=False)
        except DBAPIError as exc:
            if error_code(exc) != _UNKNOWN_DATABASE or not self.settings.migrate:
                raise self._config_error(exc) from None
            try:
                await self._retrying(self._create_database)
            except DBAPIError as denied:  # no CREATE privilege, for one
                raise ConfigError(
                    f"MySQL storage {self.log_url}: database {self.database!r} does not exist "
                    f"and could not be created ({redact_text(str(denied.orig))}); create it "
                    "(CHARACTER SET utf8mb4) or give the user the CREATE privilege"
                ) from None
            text, found = await self._run_op(probe, write=False)
        self.server = server_version(text)
        self.server.check()
        if found == SCHEMA_LATEST:
            return
        if self.settings.migrate:  # creates or upgrades; refuses a schema newer than this code
            await self._retrying(self._migrate)
            return
        raise ConfigError(
            f"the PyWorkflow tables in database {self.database!r} are at version {found}, "
            f"this pyworkflow-mysql needs {SCHEMA_LATEST}; run it once with migrate = true "
            "or apply the migration yourself"
        )

    def _config_error(self, exc: DBAPIError) -> ConfigError:
        """A failure at open that retrying cannot fix (bad credentials, unknown database)."""
        reason = redact_text(str(exc.orig if exc.orig is not None else exc))
        return ConfigError(f"MySQL storage {self.log_url}: {reason}")

    async def _create_database(self) -> None:
        """``CREATE DATABASE`` the URL's database (utf8mb4, binary no-pad collation)."""
        if not DATABASE_NAME.match(self.database):
            raise ConfigError(
                f"MySQL storage {self.log_url}: database {self.database!r} does not exist, and "
                "only names of letters, digits, '_' and '$' are created; create it yourself"
            )
        engine = self._make_engine(self.sa_url.set(database=""), pooled=False)
        try:
            async with engine.connect() as raw:
                conn = _Conn(raw)
                product = server_version(str(await conn.scalar("SELECT VERSION()")))
                product.check()
                await conn.execute(
                    f"CREATE DATABASE IF NOT EXISTS `{self.database}` "
                    f"CHARACTER SET utf8mb4 COLLATE {product.collation}"
                )
            self.log.info("created database {!r}", self.database)
        finally:
            with anyio.CancelScope(shield=True):
                await engine.dispose()

    def _set_patience(self) -> None:
        if command_mode():  # a CLI command: fail in seconds, not after a worker's patience
            self._retry_for, self._retry_option = self.settings.command_timeout, "command_timeout"
        else:
            self._retry_for = self.settings.reconnect_timeout
            self._retry_option = "reconnect_timeout"

    async def schema_status(self) -> SchemaStatus:
        """The schema's version and the migrations pending (``pyworkflow storage status``).

        Works without :meth:`open`: one connection of its own. A database that
        does not exist yet is at version 0.
        """
        from pyworkflow_mysql.migrations import LATEST, MIGRATIONS

        self._set_patience()

        async def read() -> int:
            engine = self._make_engine(self.sa_url, pooled=False)
            try:
                async with engine.connect() as raw:
                    conn = _Conn(raw)
                    if not await conn.scalar(sql.SCHEMA_VERSION_EXISTS):
                        return 0
                    return int(await conn.scalar(sql.SCHEMA_VERSION))
            except DBAPIError as exc:
                if error_code(exc) == _UNKNOWN_DATABASE:
                    return 0
                if is_retryable(exc):
                    raise
                raise self._config_error(exc) from None
            finally:
                with anyio.CancelScope(shield=True):
                    await engine.dispose()

        current = await self._retrying(read)
        pending = tuple(
            SchemaStep(m.version, m.description) for m in MIGRATIONS if m.version > current
        )
        return SchemaStatus(current, LATEST, pending)

    async def migrate_schema(
        self, on_applied: Callable[[SchemaStep], None] | None = None
    ) -> list[int]:
        """Create the database if missing and apply the pending migrations
        (``pyworkflow storage migrate``).

        Works without :meth:`open`, whatever the ``migrate`` option says.
        """
        self._set_patience()
        status = await self.schema_status()
        if status.current == 0:
            await self._retrying(self._create_database)
        return await self._retrying(lambda: self._migrate(on_applied))

    async def _migrate(self, on_applied: Callable[[SchemaStep], None] | None = None) -> list[int]:
        """Create or upgrade the tables on one autocommit connection, under a named lock."""
        from pyworkflow_mysql.migrations import Migration, migrate

        def report(migration: Migration) -> None:
            if on_applied is not None:
                on_applied(SchemaStep(migration.version, migration.description))

        engine = self._make_engine(self.sa_url, pooled=False)
        try:
            async with engine.connect() as raw:
                conn = _Conn(raw)
                product = server_version(str(await conn.scalar("SELECT VERSION()")))

                async def execute(statement: str, args: Sequence[object]) -> list[tuple[Any, ...]]:
                    result = await raw.exec_driver_sql(statement, tuple(args))
                    return [tuple(r) for r in result.fetchall()] if result.returns_rows else []

                applied = await migrate(execute, self.database, product.collation, report)
            if applied:
                self.log.info("database {!r} migrated to version {}", self.database, applied[-1])
            return applied
        finally:
            with anyio.CancelScope(shield=True):
                await engine.dispose()

    async def close(self) -> None:
        """Close the pool's connections; the storage is unusable afterwards."""
        engine, self._engine = self._engine, None
        if engine is not None:
            with anyio.CancelScope(shield=True):
                await engine.dispose()

    # ----- plumbing -----

    async def _retrying(self, attempt: Callable[[], Awaitable[T]]) -> T:
        """``attempt()``, again with back-off while the database is unreachable or busy."""
        backoff = Backoff(timeout=self._retry_for)  # 0.05 s doubling to 2 s, last wait cut short
        while True:
            try:
                return await attempt()
            except Exception as exc:
                if not is_retryable(exc):
                    if isinstance(exc, DBAPIError) and error_code(exc) == _DATA_TOO_LONG:
                        raise ValueError(
                            f"a value is too long for its MySQL column: {exc.orig} (ids, names "
                            "and keys hold at most 255 characters)"
                        ) from None
                    raise
                delay = backoff.next_delay()
                if delay is None:
                    message = self._unreachable(exc, backoff.attempts + 1)
                    raise StorageUnavailableError(message) from exc
                if backoff.attempts == 1:
                    self.log.warning(
                        "database unreachable or busy ({}, error {}); retrying",
                        type(exc).__name__,
                        error_code(exc),
                    )
                await anyio.sleep(delay)

    async def _run_op(
        self,
        fn: _Op[T],
        verify: _Op[T | None] | None = None,
        *,
        write: bool = True,
        lock: str | None = None,
    ) -> T:
        """Run ``fn`` in one transaction on a pooled connection, retrying what may be retried.

        ``write`` marks an operation whose COMMIT, if cut off, may have landed:
        ``verify`` (run first on the next attempt) then returns its result if
        it did, or None to run ``fn`` again (without ``verify`` it simply runs
        again). ``lock`` names a key whose ``GET_LOCK`` is held from before
        ``fn`` until after the COMMIT. A pooled connection that died with a
        server restart fails its first statement; the retry gets a new one.
        """
        engine = self._engine
        if engine is None:
            raise RuntimeError(f"storage {self.log_url} is not open")
        ambiguous = False

        async def attempt() -> T:
            nonlocal ambiguous
            async with engine.connect() as raw:
                conn = _Conn(raw)
                if ambiguous and verify is not None:
                    done = await verify(conn)
                    await raw.commit()
                    if done is not None:
                        return done
                    ambiguous = False
                name = None if lock is None else _lock_name(lock)
                if name is not None:
                    got = await conn.scalar(sql.GET_LOCK, (name, QUEUE_LOCK_SECONDS))
                    if got != 1:
                        raise TimeoutError(f"lock {lock!r} not granted in {QUEUE_LOCK_SECONDS}s")
                try:
                    try:
                        result = await fn(conn)
                    except BaseException:
                        with contextlib.suppress(Exception), anyio.CancelScope(shield=True):
                            await raw.rollback()
                        raise
                    ambiguous = write  # a connection lost during COMMIT may have committed
                    await raw.commit()
                    ambiguous = False
                    return result
                finally:
                    if name is not None:
                        with contextlib.suppress(Exception), anyio.CancelScope(shield=True):
                            await conn.scalar(sql.RELEASE_LOCK, (name,))
                            await raw.commit()

        return await self._retrying(attempt)

    def _unreachable(self, exc: BaseException, attempts: int) -> str:
        """What was tried and how to go on, for a database that did not answer."""
        url = self.sa_url
        where = f"host {url.host or 'localhost'}, port {url.port or 3306}, database {url.database}"
        if url.username:
            where += f", user {url.username}"
        return (
            f"MySQL storage {self.log_url} unreachable for {self._retry_for:g}s "
            f"(tried {attempts} time(s): {where}; each connection attempt waits up to "
            f"{min(self.settings.connect_timeout, self._retry_for):g}s): "
            f"{type(exc).__name__}: {redact_text(str(exc))}. Check that MySQL or MariaDB runs "
            "and accepts connections there (mariadb-admin ping -h HOST -P PORT) and that the "
            f"storage URL (config key 'storage') is right; to wait longer, raise "
            f"{self._retry_option} in [tool.pyworkflow.mysql]"
        )

    async def _last_seq(self, conn: _Conn, run_id: str) -> int:
        seq = await conn.scalar(sql.LAST_SEQ, (run_id,))
        if seq is None:
            raise RunNotFoundError(f"no run with id {run_id!r} in {self.log_url}")
        return int(seq)

    async def _apply_hooks(
        self, conn: _Conn, run_id: str, created: list[HookRecord], disposed: list[str]
    ) -> None:
        """Apply the rule of ``hook_changes``: this run's disposed hooks go first, then inserts."""
        for token in disposed:
            await conn.execute(sql.DELETE_HOOK, (token, run_id))
        for hook in created:
            try:
                await conn.execute(sql.INSERT_HOOK, hook_to_values(hook))
            except IntegrityError as exc:
                if error_code(exc) != DUPLICATE_KEY:
                    raise
                owner = await conn.scalar(sql.HOOK_OWNER, (hook.token,))
                raise hook_conflict_error(hook.token, str(owner)) from None

    # ----- runs and events -----

    async def create_run(self, run: Run, events: Sequence[NewEvent]) -> tuple[Run, bool]:
        stored = attrs.evolve(run, last_seq=len(events))
        values = run_to_values(stored)
        rows = event_rows(run.run_id, 0, events)
        created, disposed = hook_changes(run.run_id, events)

        async def write(conn: _Conn) -> tuple[Run, bool]:
            while True:
                try:
                    await conn.execute(sql.INSERT_RUN, values)
                    break
                except IntegrityError as exc:
                    if error_code(exc) != DUPLICATE_KEY:
                        raise
                    holder = await self._holder(conn, run)
                    if holder is not None:
                        return holder, False
                    # the holder ended between the insert and the read: insert again
            if rows:
                await conn.executemany(sql.INSERT_EVENT, rows)
            if created or disposed:
                await self._apply_hooks(conn, run.run_id, created, disposed)
            return stored, True

        async def landed(conn: _Conn) -> tuple[Run, bool] | None:
            row = await conn.fetchone(sql.GET_RUN, (run.run_id,))
            return None if row is None else (run_from_row(row), True)

        return await self._run_op(write, landed)

    async def _holder(self, conn: _Conn, run: Run) -> Run | None:
        """The run whose idempotency key or live ``(queue, dedup_key)`` kept ``run`` out.

        None if neither is held any more (the insert may be tried again); a run
        with ``run``'s id that holds neither is a duplicate id, an error.
        """
        if run.idempotency_key is not None:
            row = await conn.fetchone(sql.GET_RUN_BY_KEY, (run.idempotency_key,))
            if row is not None:
                return run_from_row(row)
        if run.dedup_key is not None:
            row = await conn.fetchone(sql.GET_RUN_BY_DEDUP, (run.queue or "", run.dedup_key))
            if row is not None:
                return run_from_row(row)
        if await conn.fetchone(sql.RUN_EXISTS, (run.run_id,)) is not None:
            raise ValueError(f"a run with id {run.run_id!r} already exists in {self.log_url}")
        return None

    async def get_run(self, run_id: str) -> Run:
        async def read(conn: _Conn) -> Run:
            row = await conn.fetchone(sql.GET_RUN, (run_id,))
            if row is None:
                raise RunNotFoundError(f"no run with id {run_id!r} in {self.log_url}")
            return run_from_row(row)

        return await self._run_op(read, write=False)

    async def list_runs(
        self,
        *,
        status: RunStatus | None = None,
        workflow: str | None = None,
        limit: int = 100,
        cursor: str | None = None,
        parent_run_id: str | None = None,
    ) -> RunPage:
        args: list[Any] = []
        if status is not None:
            args.append(status.value)
        if workflow is not None:
            args.append(workflow)
        if parent_run_id is not None:
            args.append(parent_run_id)
        if cursor is not None:
            created_at, run_id = decode_cursor(cursor)
            args.extend((created_at, created_at, run_id))
        args.append(limit + 1)
        query = sql.list_runs(
            status is not None, workflow is not None, cursor is not None, parent_run_id is not None
        )

        async def read(conn: _Conn) -> list[Run]:
            return [run_from_row(row) for row in await conn.fetchall(query, args)]

        return page_from(await self._run_op(read, write=False), limit)

    async def get_events(self, run_id: str, after_seq: int = 0) -> list[Event]:
        async def read(conn: _Conn) -> list[Event]:
            rows = await conn.fetchall(sql.GET_EVENTS, (run_id, after_seq))
            if not rows:
                await self._last_seq(conn, run_id)  # RunNotFoundError for an unknown run
            return [event_from_row(row) for row in rows]

        return await self._run_op(read, write=False)

    async def append_events(
        self,
        run_id: str,
        expected_seq: int,
        events: Sequence[NewEvent],
        patch: RunPatch | None = None,
        *,
        owner: str | None = None,
    ) -> int:
        last = expected_seq + len(events)
        rows = event_rows(run_id, expected_seq, events)
        changes = {} if patch is None else patch_values(patch)
        release = patch is not None and patch.release_lease and owner is not None
        args: list[Any] = [last, time.time(), *changes.values()]
        if release:
            args.extend((owner, owner))
        args.extend((run_id, expected_seq))
        statement = sql.append(tuple(changes), release)
        created, disposed = hook_changes(run_id, events)

        async def write(conn: _Conn) -> int:
            if await conn.execute(statement, args) != 1:
                raise ConcurrencyError(run_id, expected_seq, await self._last_seq(conn, run_id))
            if rows:
                await conn.executemany(sql.INSERT_EVENT, rows)
            if created or disposed:
                await self._apply_hooks(conn, run_id, created, disposed)
            return last

        async def landed(conn: _Conn) -> int | None:
            # An empty append is idempotent (the same UPDATE matches again).
            if not rows:
                return None
            row = await conn.fetchone(sql.EVENT_AT, (run_id, expected_seq + 1))
            if row is not None and (row[0], row[1]) == (rows[0][2], rows[0][4]):
                return last
            return None

        return await self._run_op(write, landed)

    async def append_hook_payload(
        self, token: str, payload: Mapping[str, Any], now: datetime
    ) -> tuple[str, int]:
        at = now.timestamp()
        data = dump_payload(payload)
        kind = EventType.HOOK_RECEIVED.value

        async def find(conn: _Conn) -> HookRecord:
            row = await conn.fetchone(sql.GET_HOOK, (token,))
            if row is None:
                raise HookNotFoundError(f"no live hook with token {token!r}")
            return hook_from_row(row)

        async def write(conn: _Conn) -> tuple[str, int]:
            hook = await find(conn)
            if await conn.execute(sql.TOUCH_RUN_FOR_HOOK, (at, at, hook.run_id)) != 1:
                raise HookNotFoundError(f"no live hook with token {token!r}")
            # The run row is locked now: a hook disposed meanwhile is seen as gone.
            await find(conn)
            seq = await self._last_seq(conn, hook.run_id)
            await conn.execute(
                sql.INSERT_EVENT, (hook.run_id, seq, kind, hook.correlation_id, at, data)
            )
            return hook.run_id, seq

        async def landed(conn: _Conn) -> tuple[str, int] | None:
            row = await conn.fetchone(sql.HOOK_PAYLOAD_LANDED, (token, kind, at, data))
            return None if row is None else (str(row[0]), int(row[1]))

        return await self._run_op(write, landed)

    # ----- claims and leases -----

    async def claim_runs(
        self, owner: str, now: datetime, limit: int, lease_for: timedelta
    ) -> list[Run]:
        at = now.timestamp()
        until = at + lease_for.total_seconds()

        async def write(conn: _Conn) -> list[Run]:
            ids = [row[0] for row in await conn.fetchall(sql.DUE_RUNS_LOCKED, (at, at, limit))]
            if not ids:
                return []
            await conn.execute(sql.lease_runs(len(ids)), (owner, until, *ids))
            return [run_from_row(row) for row in await conn.fetchall(sql.runs_by_id(len(ids)), ids)]

        runs = await self._run_op(write)
        return sorted(runs, key=lambda r: (r.wake_at or now, r.run_id))

    async def claim_run(
        self,
        run_id: str,
        owner: str,
        now: datetime,
        lease_for: timedelta,
        *,
        take_over_prefix: str | None = None,
    ) -> Run | None:
        at = now.timestamp()
        args: list[Any] = [owner, at + lease_for.total_seconds(), run_id, at, at]
        statement = sql.CLAIM_RUN
        if take_over_prefix is not None:
            statement = sql.CLAIM_RUN_TAKING_OVER
            args.extend((take_over_prefix, take_over_prefix))

        async def write(conn: _Conn) -> Run | None:
            if await conn.execute(statement, args) != 1:
                return None
            row = await conn.fetchone(sql.GET_RUN, (run_id,))
            return None if row is None else run_from_row(row)

        return await self._run_op(write)

    async def renew_lease(self, run_id: str, owner: str, until: datetime) -> bool:
        async def write(conn: _Conn) -> bool:
            return await conn.execute(sql.RENEW_LEASE, (until.timestamp(), run_id, owner)) == 1

        return await self._run_op(write)

    async def release_lease(self, run_id: str, owner: str) -> None:
        async def write(conn: _Conn) -> None:
            await conn.execute(sql.RELEASE_LEASE, (run_id, owner))

        await self._run_op(write)

    async def next_wake_at(self) -> datetime | None:
        async def read(conn: _Conn) -> float | None:
            value = await conn.scalar(sql.NEXT_WAKE_AT)
            return None if value is None else float(value)

        return from_epoch(await self._run_op(read, write=False))

    async def due_timers(self, now: datetime, limit: int) -> list[tuple[str, datetime]]:
        async def read(conn: _Conn) -> list[tuple[str, float]]:
            rows = await conn.fetchall(sql.DUE_TIMERS, (now.timestamp(), limit))
            return [(str(r), float(w)) for r, w in rows]

        tz = now.tzinfo
        return [
            (r, datetime.fromtimestamp(w, tz=tz)) for r, w in await self._run_op(read, write=False)
        ]

    # ----- hooks -----

    async def get_hook(self, token: str) -> HookRecord:
        async def read(conn: _Conn) -> HookRecord:
            row = await conn.fetchone(sql.GET_HOOK, (token,))
            if row is None:
                raise HookNotFoundError(f"no live hook with token {token!r}")
            return hook_from_row(row)

        return await self._run_op(read, write=False)

    # ----- dispatched steps -----

    async def set_step_lease(
        self,
        run_id: str,
        step_id: str,
        owner: str | None,
        until: datetime | None,
        *,
        if_owner: str | None = None,
    ) -> bool:
        if owner is not None and until is None:
            raise ValueError("a step lease needs an expiry time")
        statement: str
        args: list[Any]
        if owner is None:
            statement, args = sql.STEP_LEASE_DELETE, [run_id, step_id]
            if if_owner is not None:
                statement = sql.STEP_LEASE_DELETE_IF_OWNER
                args.append(if_owner)
        else:
            assert until is not None
            if if_owner is not None:
                statement = sql.SET_STEP_LEASE_IF_OWNER
                args = [owner, until.timestamp(), run_id, step_id, if_owner]
            else:
                statement = sql.STEP_LEASE_UPSERT
                args = [run_id, step_id, owner, until.timestamp()]

        async def write(conn: _Conn) -> bool:
            count = await conn.execute(statement, args)
            return if_owner is None or count == 1

        return await self._run_op(write)

    async def get_step_leases(self, run_id: str) -> dict[str, StepLease]:
        async def read(conn: _Conn) -> list[StepLease]:
            return [
                step_lease_from_row(row)
                for row in await conn.fetchall(sql.GET_STEP_LEASES, (run_id,))
            ]

        return {lease.step_id: lease for lease in await self._run_op(read, write=False)}

    async def expired_step_leases(self, now: datetime, limit: int) -> list[StepLease]:
        async def read(conn: _Conn) -> list[StepLease]:
            rows = await conn.fetchall(sql.EXPIRED_STEP_LEASES, (now.timestamp(), limit))
            return [step_lease_from_row(row) for row in rows]

        return await self._run_op(read, write=False)

    # ----- queues -----

    async def admit_queued_runs(
        self,
        queue: str,
        limits: QueueLimits,
        owner: str,
        now: datetime,
        limit: int,
        lease_for: timedelta,
        *,
        worker: str | None = None,
    ) -> list[Run]:
        """Admit waiting runs of ``queue`` in one transaction (see :class:`Storage`).

        The transaction runs under a named lock (``GET_LOCK``) of the database
        and the queue, so the admissions of one queue are serialised across
        every process; it counts the queue's load, picks waiting runs in
        ``(queue_rank, created_at, run_id)`` order (full partitions are left out
        in SQL, batch after batch), locks those still waiting and updates them.
        A connection lost during the COMMIT is not checked: runs it admitted
        are due and leased, so they are claimed again when that lease expires.
        """
        at = now.timestamp()
        until = at + lease_for.total_seconds()
        since = None if limits.rate is None else (now - limits.rate[1]).timestamp()
        per_key = limits.partition_concurrency

        async def write(conn: _Conn) -> list[Run]:
            load_row = await conn.fetchone(sql.QUEUE_LOAD, (worker, since, since, queue, since))
            assert load_row is not None
            active, by_worker, recent = (int(n) for n in load_row)
            room = limit
            if limits.concurrency is not None:
                room = min(room, limits.concurrency - active)
            if limits.worker_concurrency is not None and worker is not None:
                room = min(room, limits.worker_concurrency - by_worker)
            if limits.rate is not None:
                room = min(room, limits.rate[0] - recent)
            if room <= 0:
                return []
            load: dict[str, int] = {}
            if per_key is not None:
                load = {
                    str(k): int(n) for k, n in await conn.fetchall(sql.PARTITION_LOAD, (queue,))
                }
            full = [k for k, n in load.items() if per_key is not None and n >= per_key]
            chosen: list[str] = []
            while len(chosen) < room:
                # Every row is chosen or skipped because its partition filled up in this
                # batch; the first row is always chosen, so each batch makes progress.
                batch = room - len(chosen) + (0 if per_key is None else _PARTITION_SLACK)
                statement = sql.waiting_runs(len(full), len(chosen))
                rows = await conn.fetchall(statement, (queue, *full, *chosen, batch))
                for run_id, key in rows:
                    if per_key is not None and key is not None:
                        if load.get(key, 0) >= per_key:
                            continue
                        load[key] = load.get(key, 0) + 1
                        if load[key] >= per_key:
                            full.append(key)
                    chosen.append(run_id)
                    if len(chosen) == room:
                        break
                if len(rows) < batch:
                    break
            if not chosen:
                return []
            waiting = [r[0] for r in await conn.fetchall(sql.lock_waiting(len(chosen)), chosen)]
            if not waiting:
                return []
            await conn.execute(sql.admit(len(waiting)), (at, owner, until, at, worker, *waiting))
            admitted = await conn.fetchall(sql.runs_by_id(len(waiting)), waiting)
            by_id = {run.run_id: run for run in map(run_from_row, admitted)}
            return [by_id[run_id] for run_id in chosen if run_id in by_id]

        return await self._run_op(write, lock=f"{self.database}:queue:{queue}")

    async def queue_stats(self, since: datetime) -> list[QueueStats]:
        at = since.timestamp()

        async def read(conn: _Conn) -> list[QueueStats]:
            rows = await conn.fetchall(sql.QUEUE_STATS, (at, at))
            return [QueueStats(str(q), int(w), int(a), int(n)) for q, w, a, n in rows]

        return sorted(await self._run_op(read, write=False), key=lambda s: s.queue)

    # ----- step queues -----

    async def acquire_step_slot(
        self,
        queue: str,
        holder: str,
        limits: QueueLimits,
        now: datetime,
        lease_for: timedelta,
    ) -> bool:
        """Take a place in step queue ``queue`` in one transaction (see :class:`Storage`).

        The transaction runs under a named lock of the database and the step
        queue (a key apart from the run queue of the same name), so the places
        of one step queue are counted and taken by one process at a time. A
        COMMIT cut off needs no check: if it landed, the retry finds the place
        held and renews it.
        """
        at = now.timestamp()
        until = at + lease_for.total_seconds()
        since = None if limits.rate is None else (now - limits.rate[1]).timestamp()
        forget_before = (now - slot_memory(limits)).timestamp()  # a day, or a longer rate period

        async def write(conn: _Conn) -> bool:
            mine = await conn.fetchone(sql.STEP_SLOT_MINE, (queue, holder, at)) is not None
            if not mine:
                if limits.concurrency is not None:
                    held = int(await conn.scalar(sql.STEP_SLOT_HELD, (queue, at, holder)))
                    if held >= limits.concurrency:
                        return False
                if limits.rate is not None:
                    recent = int(await conn.scalar(sql.STEP_SLOT_RECENT, (queue, since)))
                    if recent >= limits.rate[0]:
                        return False
            await conn.execute(sql.STEP_SLOT_FORGET, (queue, holder, forget_before, at))
            await conn.execute(sql.STEP_SLOT_TAKE, (queue, holder, at, until))
            return True

        return await self._run_op(write, lock=f"{self.database}:step-queue:{queue}")

    async def renew_step_slot(self, queue: str, holder: str, until: datetime) -> bool:
        async def write(conn: _Conn) -> bool:
            return await conn.execute(sql.STEP_SLOT_RENEW, (until.timestamp(), queue, holder)) == 1

        return await self._run_op(write)

    async def release_step_slot(self, queue: str, holder: str) -> None:
        async def write(conn: _Conn) -> None:
            await conn.execute(sql.STEP_SLOT_RELEASE, (queue, holder))

        await self._run_op(write)

    # ----- streams -----

    async def append_stream_chunk(
        self,
        run_id: str,
        stream: str,
        data: str,
        *,
        step_id: str | None = None,
        attempt: int | None = None,
        index: int | None = None,
    ) -> int:
        check_chunk(run_id, stream, data, step_id, attempt, index, self.max_payload_bytes)
        key = chunk_key(step_id, index)
        now = utcnow().timestamp()

        async def write(conn: _Conn) -> int:
            if await conn.fetchone(sql.RUN_EXISTS, (run_id,)) is None:
                raise RunNotFoundError(f"no run with id {run_id!r} in {self.log_url}")
            while True:
                if key is not None:
                    seq = await conn.scalar(sql.CHUNK_BY_KEY, (run_id, stream, key))
                    if seq is not None:
                        return int(seq)
                seq = int(await conn.scalar(sql.LAST_CHUNK, (run_id, stream))) + 1
                values = (run_id, stream, seq, data, step_id, attempt, index, now, key)
                try:
                    await conn.execute(sql.INSERT_CHUNK, values)
                    return seq
                except IntegrityError as exc:
                    if error_code(exc) != DUPLICATE_KEY:
                        raise
                    # another writer took this seq or this key first: read again

        # a keyed chunk rerun after a commit that may have landed finds itself (dedup)
        return await self._run_op(write)

    async def read_stream(
        self, run_id: str, stream: str, after_seq: int = 0, limit: int = 1000
    ) -> list[StreamChunk]:
        check_read(run_id, stream, after_seq, limit)

        async def read(conn: _Conn) -> list[tuple[Any, ...]]:
            if await conn.fetchone(sql.RUN_EXISTS, (run_id,)) is None:
                raise RunNotFoundError(f"no run with id {run_id!r} in {self.log_url}")
            return await conn.fetchall(sql.READ_CHUNKS, (run_id, stream, after_seq, limit))

        return [chunk_from_row(row) for row in await self._run_op(read, write=False)]

    async def list_streams(self, run_id: str) -> list[str]:
        async def read(conn: _Conn) -> list[str]:
            if await conn.fetchone(sql.RUN_EXISTS, (run_id,)) is None:
                raise RunNotFoundError(f"no run with id {run_id!r} in {self.log_url}")
            return [str(row[0]) for row in await conn.fetchall(sql.STREAM_NAMES, (run_id,))]

        return await self._run_op(read, write=False)

    # ----- step checkpoints -----

    async def save_step_checkpoint(
        self, run_id: str, step_id: str, attempt: int, data: str
    ) -> bool:
        check_checkpoint(run_id, step_id, attempt, data, self.max_payload_bytes)
        now = utcnow().timestamp()

        async def write(conn: _Conn) -> bool:
            if await conn.fetchone(sql.RUN_EXISTS, (run_id,)) is None:
                raise RunNotFoundError(f"no run with id {run_id!r} in {self.log_url}")
            await conn.execute(sql.SAVE_CHECKPOINT, (run_id, step_id, attempt, data, now))
            # the row is locked by this transaction: what it holds is what the save left
            row = await conn.fetchone(sql.CHECKPOINT_ATTEMPT, (run_id, step_id))
            return row is not None and int(row[0]) == attempt

        # rerun after a commit that may have landed: the same attempt writes again
        return await self._run_op(write)

    async def get_step_checkpoint(self, run_id: str, step_id: str) -> StepCheckpoint | None:
        check_checkpoint_key(run_id, step_id)

        async def read(conn: _Conn) -> tuple[Any, ...] | None:
            return await conn.fetchone(sql.GET_CHECKPOINT, (run_id, step_id))

        row = await self._run_op(read, write=False)
        return None if row is None else checkpoint_from_row((run_id, step_id, *row))

    # ----- schedules -----

    async def create_schedule(self, schedule: Schedule) -> tuple[Schedule, bool]:
        values = schedule_to_values(schedule)

        async def write(conn: _Conn) -> tuple[Schedule, bool]:
            while True:
                try:
                    await conn.execute(sql.INSERT_SCHEDULE, values)
                    return schedule, True
                except IntegrityError as exc:
                    if error_code(exc) != DUPLICATE_KEY:
                        raise
                data = await conn.scalar(sql.GET_SCHEDULE, (schedule.name,))
                if data is not None:
                    return schedule_from_data(str(data)), False
                # deleted between the insert and the read: insert again

        async def landed(conn: _Conn) -> tuple[Schedule, bool] | None:
            data = await conn.scalar(sql.GET_SCHEDULE, (schedule.name,))
            return (schedule, True) if data == values[-1] else None

        return await self._run_op(write, landed)

    async def put_schedule(self, schedule: Schedule) -> None:
        values = schedule_to_values(schedule)

        async def write(conn: _Conn) -> None:
            await conn.execute(sql.PUT_SCHEDULE, values)

        await self._run_op(write)

    async def get_schedule(self, name: str) -> Schedule:
        async def read(conn: _Conn) -> str | None:
            data = await conn.scalar(sql.GET_SCHEDULE, (name,))
            return None if data is None else str(data)

        data = await self._run_op(read, write=False)
        if data is None:
            raise ScheduleNotFoundError(f"no schedule named {name!r} in {self.log_url}")
        return schedule_from_data(data)

    async def list_schedules(self) -> list[Schedule]:
        async def read(conn: _Conn) -> list[str]:
            return [str(row[0]) for row in await conn.fetchall(sql.LIST_SCHEDULES)]

        schedules = [schedule_from_data(data) for data in await self._run_op(read, write=False)]
        return sorted(schedules, key=lambda s: s.name)

    async def delete_schedule(self, name: str) -> bool:
        async def write(conn: _Conn) -> bool:
            return await conn.execute(sql.DELETE_SCHEDULE, (name,)) == 1

        return await self._run_op(write)

    async def claim_schedules(
        self, owner: str, now: datetime, limit: int, lease_for: timedelta
    ) -> list[Schedule]:
        at = now.timestamp()
        until = at + lease_for.total_seconds()

        async def write(conn: _Conn) -> list[Schedule]:
            rows = await conn.fetchall(sql.DUE_SCHEDULES_LOCKED, (at, at, limit))
            names = [row[0] for row in rows]
            if not names:
                return []
            await conn.execute(sql.lease_schedules(len(names)), (owner, until, *names))
            data = await conn.fetchall(sql.schedules_by_name(len(names)), names)
            return [schedule_from_data(str(row[0])) for row in data]

        claimed = await self._run_op(write)
        return sorted(claimed, key=lambda s: (s.next_fire_at or now, s.name))

    async def advance_schedule(
        self,
        name: str,
        owner: str,
        expected_next_fire_at: datetime,
        next_fire_at: datetime | None,
        last_fire_at: datetime | None,
        last_run_id: str | None,
    ) -> bool:
        """Record a firing under the row's lock (see :class:`Storage`).

        The stored ``next_fire_at`` (epoch seconds in a DOUBLE, which returns
        the float written) is compared with ``expected_next_fire_at`` converted
        the same way, so equal datetimes compare equal exactly.
        """
        expected = to_epoch(expected_next_fire_at)

        def advanced(schedule: Schedule) -> Schedule:
            return attrs.evolve(
                schedule,
                next_fire_at=next_fire_at,
                last_fire_at=last_fire_at,
                last_run_id=last_run_id,
            )

        async def write(conn: _Conn) -> bool:
            row = await conn.fetchone(sql.LOCK_SCHEDULE, (name,))
            if row is None or row[1] != owner:
                return False
            if row[0] != expected:
                await conn.execute(sql.DROP_SCHEDULE_LEASE, (name,))
                return False
            data = schedule_to_data(advanced(schedule_from_data(str(row[2]))))
            await conn.execute(sql.ADVANCE_SCHEDULE, (to_epoch(next_fire_at), data, name))
            return True

        async def landed(conn: _Conn) -> bool | None:
            # a COMMIT cut off: it landed if the lease is gone and the row holds the firing
            row = await conn.fetchone(sql.GET_SCHEDULE_AND_LEASE, (name,))
            if row is None or row[1] == owner:
                return None
            stored = schedule_from_data(str(row[2]))
            return True if advanced(stored) == stored else None

        return await self._run_op(write, landed)

    async def next_schedule_at(self) -> datetime | None:
        async def read(conn: _Conn) -> float | None:
            value = await conn.scalar(sql.NEXT_SCHEDULE_AT)
            return None if value is None else float(value)

        return from_epoch(await self._run_op(read, write=False))


#: Extra rows per batch of waiting runs when partitions are limited: rows of a partition
#: that fills up within the batch are skipped, and these keep the batch count low.
_PARTITION_SLACK = 16
