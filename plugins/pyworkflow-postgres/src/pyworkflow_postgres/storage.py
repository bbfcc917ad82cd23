"""PostgreSQL storage: prepared statements on a pool of asyncpg connections.

Every operation runs statements of :mod:`pyworkflow_postgres.statements` on a
connection of one asyncpg pool; asyncpg prepares each statement once per
connection, so an operation costs its round trips and little Python. An append
(the write of every step) is one statement: the expected-seq ``UPDATE`` of the
run row, the event ``INSERT`` and the ``NOTIFY``, atomic without a
``BEGIN``/``COMMIT``. SQLAlchemy and SQLModel are only loaded to create or
upgrade the tables (:mod:`pyworkflow_postgres.migrations`).

Claims use ``FOR UPDATE SKIP LOCKED`` so many workers take disjoint runs;
every write that makes a run due sends ``NOTIFY`` when it commits, so idle
workers claim at once instead of waiting for their next poll.

Queues: a run's ``(queue, dedup_key)`` is held by a partial unique index over
the live statuses, so a start with a taken key inserts nothing (``ON CONFLICT
DO NOTHING``) and returns the holder. Admission from a queue is one
transaction under an advisory lock named after the queue: count, pick, update.
Schedules are rows of ``pyworkflow_schedules``, leased with ``SKIP LOCKED``
like runs. A place in a step queue is a row of ``pyworkflow_step_slots``, taken
in one transaction under an advisory lock named after the step queue.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any, Literal, TypeVar

import anyio
import anyio.abc
import attrs
from loguru import logger

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
from pyworkflow.storage.background import BackgroundTasks
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
from pyworkflow_postgres import statements as sql
from pyworkflow_postgres.connection import Backoff, is_retryable
from pyworkflow_postgres.listener import WakeListener
from pyworkflow_postgres.settings import PostgresSettings, parse_url

__all__ = ["PostgresStorage"]

T = TypeVar("T")
#: A connection of the pool (asyncpg ships no type hints).
Conn = Any
_Op = Callable[[Conn], Awaitable[T]]
#: How an operation runs: ``read`` and ``statement`` in autocommit (one
#: statement is atomic by itself), ``transaction`` between BEGIN and COMMIT.
Mode = Literal["read", "statement", "transaction"]
#: Prepared statements each pooled connection keeps (asyncpg's cache, LRU).
STATEMENT_CACHE_SIZE = 256
#: Seconds an idle pooled connection stays open.
IDLE_CONNECTION_SECONDS = 300.0
#: The schema version this code needs: ``pyworkflow_postgres.migrations.LATEST``
#: (a test keeps them equal), known without importing SQLAlchemy's migrations.
SCHEMA_LATEST = 6


async def _keep_session(conn: Conn) -> None:
    """Pool reset hook: nothing to undo (the storage changes no session state).

    asyncpg still rolls back an open transaction before this is called; its
    default reset (``RESET ALL``, ``UNLISTEN *``, ...) would add one round
    trip to every operation.
    """


def _count(status: str) -> int:
    """Rows affected, from a command status such as ``UPDATE 1``."""
    return int(status.rsplit(" ", 1)[-1])


def _run(row: Any) -> Run:
    return run_from_row(tuple(row))


class PostgresStorage(Storage):
    """Runs and events in PostgreSQL, safe for any number of worker processes and hosts.

    Tables (``pyworkflow_runs``, ``pyworkflow_events``, ``pyworkflow_hooks``,
    ``pyworkflow_step_leases``, ``pyworkflow_schedules``, ``pyworkflow_step_slots``,
    ``pyworkflow_stream_chunks``) are the SQLModel
    definitions shared with the SQLite backend, created and upgraded at
    :meth:`open` by a versioned migration runner (table
    ``pyworkflow_schema_version``). Every operation
    is one transaction (often one statement); while the database is
    unreachable it is retried with backoff for ``reconnect_timeout`` seconds
    (``command_timeout`` in a one-shot command, see
    :func:`pyworkflow.storage.base.set_command_mode`), then fails with
    :class:`~pyworkflow.errors.StorageUnavailableError` naming the server it
    tried (password hidden).
    """

    def __init__(self, url: str, settings: PostgresSettings | None = None) -> None:
        self.url = url
        self.sa_url, self.settings = parse_url(url, settings or PostgresSettings())
        self.schema = self.settings.schema
        self.pushes_wakeups = self.settings.notify
        #: NOTIFY channel of this schema's wake-ups.
        self.channel = ("pyworkflow_wake_" + self.schema)[:63]
        #: The URL with its password hidden, for logs and errors.
        self.log_url = redact_url(url)
        self.log = logger.bind(storage=self.log_url)
        self._pool: Any = None  # an asyncpg Pool once open
        self._listener: WakeListener | None = None
        self._background: BackgroundTasks | None = None
        #: Seconds to keep retrying an unreachable database, and which option set it.
        self._retry_for, self._retry_option = self.settings.reconnect_timeout, "reconnect_timeout"

    # ----- lifecycle -----

    def _connect_kwargs(self) -> dict[str, Any]:
        """``asyncpg.connect`` arguments: the URL's (query parameters included) and ours."""
        url = self.sa_url
        kwargs: dict[str, Any] = {
            name: value
            for name, value in (
                ("host", url.host),
                ("port", url.port),
                ("user", url.username),
                ("password", url.password),
                ("database", url.database),
            )
            if value is not None
        }
        kwargs.update(url.query)  # driver options such as ?ssl=require
        kwargs.update(
            server_settings={"search_path": self.schema, "application_name": "pyworkflow"},
            timeout=min(self.settings.connect_timeout, self._retry_for),
        )
        return kwargs

    def _set_patience(self) -> None:
        if command_mode():  # a CLI command: fail in seconds, not after a worker's patience
            self._retry_for, self._retry_option = self.settings.command_timeout, "command_timeout"
        else:
            self._retry_for = self.settings.reconnect_timeout
            self._retry_option = "reconnect_timeout"

    async def open(self, task_group: anyio.abc.TaskGroup | None = None) -> None:
        """Connect, create or check the schema, and LISTEN for wake-ups in ``task_group``.

        The ``LISTEN`` loop (with ``notify``) runs in ``task_group``, the
        runtime's; :meth:`close` ends it. Opened without a task group, the
        storage does not listen (its wake-ups are still sent to others).
        """
        import asyncpg

        if self._pool is not None:
            return
        self._set_patience()
        self._pool = await asyncpg.create_pool(
            min_size=0,
            max_size=self.settings.pool_size + self.settings.max_overflow,
            max_inactive_connection_lifetime=IDLE_CONNECTION_SECONDS,
            statement_cache_size=STATEMENT_CACHE_SIZE,
            reset=_keep_session,
            **self._connect_kwargs(),
        )
        try:
            await self._prepare_schema()
        except BaseException:
            pool, self._pool = self._pool, None
            with anyio.CancelScope(shield=True):
                pool.terminate()
            raise
        if self.settings.notify and task_group is not None:
            self._listener = WakeListener(
                self._listen_connection, self.channel, self.wake_listeners
            )
            self._background = BackgroundTasks(task_group, owner=self.log_url)
            await self._background.start(
                self._listener.run, name=f"pyworkflow-listen:{self.channel}"
            )

    async def _prepare_schema(self) -> None:
        """Check the schema version with one query; migrate through SQLAlchemy only if behind."""

        async def version(conn: Conn) -> int:
            if not await conn.fetchval(sql.SCHEMA_VERSION_EXISTS):
                return 0
            return int(await conn.fetchval(sql.SCHEMA_VERSION))

        found = await self._run_op(version, mode="read")
        if found == SCHEMA_LATEST:
            return
        if self.settings.migrate:  # creates or upgrades; refuses a schema newer than this code
            await self._retrying(self._migrate)
            return
        raise ConfigError(
            f"the PyWorkflow tables in schema {self.schema!r} are at version {found}, "
            f"this pyworkflow-postgres needs {SCHEMA_LATEST}; run `pyworkflow storage migrate` "
            "or run it once with migrate = true"
        )

    async def schema_status(self) -> SchemaStatus:
        """The schema's version and the migrations pending (``pyworkflow storage status``).

        Works without :meth:`open`: one connection of its own.
        """
        import asyncpg

        from pyworkflow_postgres.migrations import LATEST, MIGRATIONS

        self._set_patience()
        conn = await self._retrying(lambda: asyncpg.connect(**self._connect_kwargs()))
        try:
            current = 0
            if await conn.fetchval(sql.SCHEMA_VERSION_EXISTS):
                current = int(await conn.fetchval(sql.SCHEMA_VERSION))
        finally:
            await conn.close()
        pending = tuple(
            SchemaStep(m.version, m.description) for m in MIGRATIONS if m.version > current
        )
        return SchemaStatus(current, LATEST, pending)

    async def migrate_schema(
        self, on_applied: Callable[[SchemaStep], None] | None = None
    ) -> list[int]:
        """Apply the pending migrations in one transaction (``pyworkflow storage migrate``).

        Works without :meth:`open`, whatever the ``migrate`` option says.
        """
        self._set_patience()
        return await self._retrying(lambda: self._migrate(on_applied))

    async def _migrate(self, on_applied: Callable[[SchemaStep], None] | None = None) -> list[int]:
        """Create or upgrade the tables in one transaction (SQLAlchemy, one connection)."""
        from sqlalchemy.ext.asyncio import create_async_engine
        from sqlalchemy.pool import NullPool

        from pyworkflow_postgres.migrations import Migration, migrate

        kwargs = self._connect_kwargs()
        engine = create_async_engine(
            self.sa_url,
            poolclass=NullPool,
            connect_args={k: kwargs[k] for k in ("server_settings", "timeout")},
        )
        try:

            def report(migration: Migration) -> None:
                if on_applied is not None:
                    on_applied(SchemaStep(migration.version, migration.description))

            async with engine.begin() as conn:
                applied = await migrate(conn, self.schema, report)
            if applied:
                self.log.info("schema {!r} migrated to version {}", self.schema, applied[-1])
            return applied
        finally:
            with anyio.CancelScope(shield=True):
                await engine.dispose()

    async def _listen_connection(self) -> Any:
        import asyncpg

        return await asyncpg.connect(**self._connect_kwargs())

    async def close(self) -> None:
        """Stop listening (the LISTEN task has ended when this returns), close the pool."""
        background, pool = self._background, self._pool
        self._background, self._pool, self._listener = None, None, None
        if background is not None:
            await background.aclose()
        if pool is not None:
            with anyio.CancelScope(shield=True):
                try:
                    with anyio.move_on_after(self.settings.connect_timeout):
                        await pool.close()
                finally:
                    pool.terminate()  # whatever did not close in time

    # ----- plumbing -----

    async def _retrying(self, attempt: Callable[[], Awaitable[T]]) -> T:
        """``attempt()``, again with back-off while the database is unreachable."""
        backoff = Backoff(timeout=self._retry_for)  # 0.05 s doubling to 2 s, last wait cut short
        while True:
            try:
                return await attempt()
            except Exception as exc:
                if not is_retryable(exc):
                    raise
                delay = backoff.next_delay()
                if delay is None:
                    message = self._unreachable(exc, backoff.attempts + 1)
                    raise StorageUnavailableError(message) from exc
                if backoff.attempts == 1:
                    self.log.warning("database unreachable ({}); retrying", type(exc).__name__)
                await anyio.sleep(delay)

    async def _run_op(
        self, fn: _Op[T], verify: _Op[T | None] | None = None, *, mode: Mode = "transaction"
    ) -> T:
        """Run ``fn`` on a pooled connection, rerunning it while the database is unreachable.

        ``mode`` ``"transaction"`` wraps ``fn`` in BEGIN/COMMIT; ``"statement"``
        runs its one write in autocommit (atomic by itself); ``"read"`` runs
        reads in autocommit. If the connection drops while a write may have
        committed (during COMMIT, or during a lone write statement), ``verify``
        (run first on the next attempt) returns its result if the write landed,
        and None to run ``fn`` again. A pooled connection that died with a
        server restart fails its first statement; the retry then gets a new
        one (asyncpg replaces closed connections), so no ping is spent on every
        checkout.
        """
        pool = self._pool
        if pool is None:
            raise RuntimeError(f"storage {self.log_url} is not open")
        ambiguous = False

        async def attempt() -> T:
            nonlocal ambiguous
            async with pool.acquire() as conn:
                if ambiguous and verify is not None:
                    done = await verify(conn)
                    if done is not None:
                        return done
                    ambiguous = False
                if mode == "read":
                    return await fn(conn)
                if mode == "statement":
                    ambiguous = True  # from here on, the write may land
                    result = await fn(conn)
                    ambiguous = False
                    return result
                transaction = conn.transaction()
                await transaction.start()
                try:
                    result = await fn(conn)
                except BaseException:
                    with contextlib.suppress(Exception), anyio.CancelScope(shield=True):
                        await transaction.rollback()  # a lost connection rolled it back already
                    raise
                ambiguous = True  # a connection lost during COMMIT may have committed
                await transaction.commit()
                ambiguous = False
                return result

        return await self._retrying(attempt)

    def _unreachable(self, exc: BaseException, attempts: int) -> str:
        """What was tried and how to go on, for a database that did not answer."""
        url = self.sa_url
        where = f"host {url.host or 'localhost'}, port {url.port or 5432}, database {url.database}"
        if url.username:
            where += f", user {url.username}"
        return (
            f"PostgreSQL storage {self.log_url} unreachable for {self._retry_for:g}s "
            f"(tried {attempts} time(s): {where}; each connection attempt waits up to "
            f"{min(self.settings.connect_timeout, self._retry_for):g}s): "
            f"{type(exc).__name__}: {redact_text(str(exc))}. Check that PostgreSQL runs and "
            "accepts connections there (pg_isready -h HOST -p PORT) and that the storage URL "
            f"(config key 'storage') is right; to wait longer, raise {self._retry_option} in "
            "[tool.pyworkflow.postgres]"
        )

    async def _last_seq(self, conn: Conn, run_id: str) -> int:
        seq = await conn.fetchval(sql.LAST_SEQ, run_id)
        if seq is None:
            raise RunNotFoundError(f"no run with id {run_id!r} in {self.log_url}")
        return int(seq)

    async def _notify(self, conn: Conn, wake_at: float | None) -> None:
        if self.settings.notify and wake_at is not None:
            await conn.execute(sql.NOTIFY, self.channel, repr(wake_at))

    async def _apply_hooks(
        self, conn: Conn, run_id: str, created: list[HookRecord], disposed: list[str]
    ) -> None:
        """Apply the rule of ``hook_changes``: this run's disposed hooks go first, then inserts."""
        if disposed:
            await conn.execute(sql.DELETE_HOOKS, disposed, run_id)
        if not created:
            return
        columns = list(zip(*(hook_to_values(h) for h in created), strict=True))
        inserted = {row[0] for row in await conn.fetch(sql.INSERT_HOOKS, *map(list, columns))}
        for hook in created:
            if hook.token not in inserted:
                owner = await conn.fetchval(sql.HOOK_OWNER, hook.token)
                raise hook_conflict_error(hook.token, str(owner))

    async def _event_at(self, conn: Conn, run_id: str, seq: int) -> Any:
        return await conn.fetchrow(sql.EVENT_AT, run_id, seq)

    # ----- runs and events -----

    async def create_run(self, run: Run, events: Sequence[NewEvent]) -> tuple[Run, bool]:
        stored = attrs.evolve(run, last_seq=len(events))
        values = run_to_values(stored)
        arrays = sql.event_arrays(event_rows(run.run_id, 0, events))
        created, disposed = hook_changes(run.run_id, events)
        key = run.idempotency_key
        dedup = run.dedup_key
        wake: float | None = values[14]  # wake_at, in RUN_COLUMNS order

        hooks = bool(created or disposed)
        notify = self.settings.notify and wake is not None
        args: list[Any] = [*values, *arrays]
        if notify:
            args.extend((self.channel, repr(wake)))
        statement = sql.create_run(notify, dedup is not None)

        async def write(conn: Conn) -> tuple[Run, bool]:
            # the run, its events and the NOTIFY in one statement, unless the key is taken
            while await conn.fetchval(statement, *args) != 1:
                if dedup is None:
                    return _run(await conn.fetchrow(sql.GET_RUN_BY_KEY, key)), False
                holder = await self._holder(conn, run)
                if holder is not None:
                    return holder, False
                # the holder ended between the insert and the read: insert again
            if hooks:
                await self._apply_hooks(conn, run.run_id, created, disposed)
            return stored, True

        async def landed(conn: Conn) -> tuple[Run, bool] | None:
            row = await conn.fetchrow(sql.GET_RUN, run.run_id)
            return None if row is None else (_run(row), True)

        # Without hooks it is one statement: atomic on its own, no BEGIN/COMMIT.
        return await self._run_op(write, landed, mode="transaction" if hooks else "statement")

    async def _holder(self, conn: Conn, run: Run) -> Run | None:
        """The run whose idempotency key or live ``(queue, dedup_key)`` kept ``run`` out.

        None if neither is held any more (the insert may be tried again); a run
        with ``run``'s id that holds neither is a duplicate id, an error.
        """
        if run.idempotency_key is not None:
            row = await conn.fetchrow(sql.GET_RUN_BY_KEY, run.idempotency_key)
            if row is not None:
                return _run(row)
        row = await conn.fetchrow(sql.GET_RUN_BY_DEDUP, run.queue or "", run.dedup_key)
        if row is not None:
            return _run(row)
        if await conn.fetchrow(sql.GET_RUN, run.run_id) is not None:
            import asyncpg

            raise asyncpg.UniqueViolationError(
                f"a run with id {run.run_id!r} already exists in {self.log_url}"
            )
        return None

    async def get_run(self, run_id: str) -> Run:
        async def read(conn: Conn) -> Run:
            row = await conn.fetchrow(sql.GET_RUN, run_id)
            if row is None:
                raise RunNotFoundError(f"no run with id {run_id!r} in {self.log_url}")
            return _run(row)

        return await self._run_op(read, mode="read")

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
            args.extend(decode_cursor(cursor))
        args.append(limit + 1)
        query = sql.list_runs(
            status is not None, workflow is not None, cursor is not None, parent_run_id is not None
        )

        async def read(conn: Conn) -> list[Run]:
            return [_run(row) for row in await conn.fetch(query, *args)]

        return page_from(await self._run_op(read, mode="read"), limit)

    async def get_events(self, run_id: str, after_seq: int = 0) -> list[Event]:
        async def read(conn: Conn) -> list[Event]:
            rows = await conn.fetch(sql.GET_EVENTS, run_id, after_seq)
            if not rows:
                await self._last_seq(conn, run_id)  # RunNotFoundError for an unknown run
            return [event_from_row(tuple(row)) for row in rows]

        return await self._run_op(read, mode="read")

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
        args: list[Any] = [run_id, expected_seq, last, time.time(), *sql.event_arrays(rows)]
        changes = {} if patch is None else patch_values(patch)
        wake: float | None = changes.get("wake_at")
        release = patch is not None and patch.release_lease and owner is not None
        args.extend(changes.values())
        if release:
            args.append(owner)
        notify = self.settings.notify and wake is not None
        if notify:
            args.extend((self.channel, repr(wake)))
        statement = sql.append(tuple(changes), release, notify)
        created, disposed = hook_changes(run_id, events)
        hooks = bool(created or disposed)

        async def write(conn: Conn) -> int:
            if await conn.fetchval(statement, *args) != 1:
                raise ConcurrencyError(run_id, expected_seq, await self._last_seq(conn, run_id))
            if hooks:
                await self._apply_hooks(conn, run_id, created, disposed)
            return last

        async def landed(conn: Conn) -> int | None:
            # An empty append is idempotent (the same UPDATE matches again).
            if not rows:
                return None
            row = await self._event_at(conn, run_id, expected_seq + 1)
            if row is not None and (row["type"], row["timestamp"]) == (rows[0][2], rows[0][4]):
                return last
            return None

        # Without hooks the append is one statement: atomic on its own, no BEGIN/COMMIT.
        return await self._run_op(write, landed, mode="transaction" if hooks else "statement")

    async def append_hook_payload(
        self, token: str, payload: Mapping[str, Any], now: datetime
    ) -> tuple[str, int]:
        at = now.timestamp()
        data = dump_payload(payload)
        kind = EventType.HOOK_RECEIVED.value

        async def find(conn: Conn) -> HookRecord:
            row = await conn.fetchrow(sql.GET_HOOK, token)
            if row is None:
                raise HookNotFoundError(f"no live hook with token {token!r}")
            return hook_from_row(tuple(row))

        async def write(conn: Conn) -> tuple[str, int]:
            hook = await find(conn)
            seq = await conn.fetchval(sql.TOUCH_RUN_FOR_HOOK, hook.run_id, at)
            if seq is None:
                raise HookNotFoundError(f"no live hook with token {token!r}")
            # The run row is locked now: a hook disposed meanwhile is seen as gone.
            await find(conn)
            await conn.execute(
                sql.APPEND_HOOK_EVENT, hook.run_id, seq, kind, hook.correlation_id, at, data
            )
            await self._notify(conn, at)
            return hook.run_id, int(seq)

        async def landed(conn: Conn) -> tuple[str, int] | None:
            row = await conn.fetchrow(sql.HOOK_PAYLOAD_LANDED, kind, at, data, token)
            return None if row is None else (str(row["run_id"]), int(row["seq"]))

        return await self._run_op(write, landed)

    # ----- claims and leases -----

    async def claim_runs(
        self, owner: str, now: datetime, limit: int, lease_for: timedelta
    ) -> list[Run]:
        at = now.timestamp()
        until = at + lease_for.total_seconds()

        async def write(conn: Conn) -> list[Run]:
            return [_run(row) for row in await conn.fetch(sql.CLAIM_RUNS, at, limit, owner, until)]

        runs = await self._run_op(write, mode="statement")
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
        args: list[Any] = [run_id, owner, at + lease_for.total_seconds(), at]
        statement = sql.CLAIM_RUN
        if take_over_prefix is not None:
            statement = sql.CLAIM_RUN_TAKING_OVER
            args.append(take_over_prefix)

        async def write(conn: Conn) -> Run | None:
            row = await conn.fetchrow(statement, *args)
            return None if row is None else _run(row)

        return await self._run_op(write, mode="statement")

    async def renew_lease(self, run_id: str, owner: str, until: datetime) -> bool:
        async def write(conn: Conn) -> bool:
            return (
                _count(await conn.execute(sql.RENEW_LEASE, run_id, owner, until.timestamp())) == 1
            )

        return await self._run_op(write, mode="statement")

    async def release_lease(self, run_id: str, owner: str) -> None:
        async def write(conn: Conn) -> None:
            await conn.execute(sql.RELEASE_LEASE, run_id, owner)

        await self._run_op(write, mode="statement")

    async def next_wake_at(self) -> datetime | None:
        async def read(conn: Conn) -> float | None:
            value = await conn.fetchval(sql.NEXT_WAKE_AT)
            return None if value is None else float(value)

        return from_epoch(await self._run_op(read, mode="read"))

    async def due_timers(self, now: datetime, limit: int) -> list[tuple[str, datetime]]:
        async def read(conn: Conn) -> list[tuple[str, float]]:
            rows = await conn.fetch(sql.DUE_TIMERS, now.timestamp(), limit)
            return [(str(r), float(w)) for r, w in rows]

        tz = now.tzinfo
        return [
            (r, datetime.fromtimestamp(w, tz=tz)) for r, w in await self._run_op(read, mode="read")
        ]

    # ----- hooks -----

    async def get_hook(self, token: str) -> HookRecord:
        async def read(conn: Conn) -> HookRecord:
            row = await conn.fetchrow(sql.GET_HOOK, token)
            if row is None:
                raise HookNotFoundError(f"no live hook with token {token!r}")
            return hook_from_row(tuple(row))

        return await self._run_op(read, mode="read")

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
        args: list[Any] = [run_id, step_id]
        if owner is None:
            statement = sql.STEP_LEASE_DELETE
            if if_owner is not None:
                statement = sql.STEP_LEASE_DELETE_IF_OWNER
                args.append(if_owner)
        else:
            assert until is not None
            args += [owner, until.timestamp()]
            statement = sql.STEP_LEASE_UPSERT
            if if_owner is not None:
                statement = sql.SET_STEP_LEASE_IF_OWNER
                args.append(if_owner)

        async def write(conn: Conn) -> bool:
            count = _count(await conn.execute(statement, *args))
            return if_owner is None or count == 1

        return await self._run_op(write, mode="statement")

    async def get_step_leases(self, run_id: str) -> dict[str, StepLease]:
        async def read(conn: Conn) -> list[StepLease]:
            return [
                step_lease_from_row(tuple(row))
                for row in await conn.fetch(sql.GET_STEP_LEASES, run_id)
            ]

        return {lease.step_id: lease for lease in await self._run_op(read, mode="read")}

    async def expired_step_leases(self, now: datetime, limit: int) -> list[StepLease]:
        async def read(conn: Conn) -> list[StepLease]:
            rows = await conn.fetch(sql.EXPIRED_STEP_LEASES, now.timestamp(), limit)
            return [step_lease_from_row(tuple(row)) for row in rows]

        return await self._run_op(read, mode="read")

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

        The transaction first takes an advisory lock named after the schema and
        the queue, so the admissions of one queue are serialised across every
        process; it then counts the queue's load, picks waiting runs in
        ``(queue_rank, created_at, run_id)`` order (full partitions are left out
        in SQL, batch after batch, however deep they are) and updates them.
        Admissions send no ``NOTIFY``: the admitting worker holds their leases
        and activates them itself. A connection lost during the COMMIT is not
        checked: runs it admitted are due and leased, so they are claimed again
        when that lease expires.
        """
        at = now.timestamp()
        until = at + lease_for.total_seconds()
        since = None if limits.rate is None else (now - limits.rate[1]).timestamp()
        lock_key = f"pyworkflow:{self.schema}:queue:{queue}"
        per_key = limits.partition_concurrency

        async def write(conn: Conn) -> list[Run]:
            await conn.execute(sql.LOCK_QUEUE, lock_key)
            active, by_worker, recent = await conn.fetchrow(sql.QUEUE_LOAD, queue, worker, since)
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
                load = {k: int(n) for k, n in await conn.fetch(sql.PARTITION_LOAD, queue)}
            full = [k for k, n in load.items() if per_key is not None and n >= per_key]
            chosen: list[str] = []
            while len(chosen) < room:
                # Every row is chosen or skipped because its partition filled up in this
                # batch; the first row is always chosen, so each batch makes progress.
                batch = room - len(chosen) + (0 if per_key is None else _PARTITION_SLACK)
                rows = await conn.fetch(sql.WAITING_RUNS, queue, full, chosen, batch)
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
            rows = await conn.fetch(sql.ADMIT, chosen, at, owner, until, worker)
            by_id = {run.run_id: run for run in map(_run, rows)}
            return [by_id[run_id] for run_id in chosen if run_id in by_id]

        return await self._run_op(write)

    async def queue_stats(self, since: datetime) -> list[QueueStats]:
        async def read(conn: Conn) -> list[QueueStats]:
            rows = await conn.fetch(sql.QUEUE_STATS, since.timestamp())
            return [QueueStats(str(q), int(w), int(a), int(n)) for q, w, a, n in rows]

        return sorted(await self._run_op(read, mode="read"), key=lambda s: s.queue)

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

        The transaction takes an advisory lock named after the schema and the
        step queue (a key apart from the run queue of the same name), so the
        places of one step queue are counted and taken by one process at a
        time; it counts the places others hold and those taken in the rate
        window, then inserts or renews the holder's row and forgets rows of the
        queue released or expired more than a day after they were taken. A
        COMMIT cut off needs no check: if it landed, the retry finds the place
        held and renews it.
        """
        at = now.timestamp()
        until = at + lease_for.total_seconds()
        since = None if limits.rate is None else (now - limits.rate[1]).timestamp()
        forget_before = (now - slot_memory(limits)).timestamp()  # a day, or a longer rate period
        lock_key = f"pyworkflow:{self.schema}:step-queue:{queue}"

        async def write(conn: Conn) -> bool:
            await conn.execute(sql.LOCK_QUEUE, lock_key)
            mine, held, recent = await conn.fetchrow(sql.STEP_SLOT_LOAD, queue, holder, at, since)
            if not mine:
                if limits.concurrency is not None and held >= limits.concurrency:
                    return False
                if limits.rate is not None and recent >= limits.rate[0]:
                    return False
            await conn.execute(sql.STEP_SLOT_TAKE, queue, holder, at, until, forget_before)
            return True

        return await self._run_op(write)

    async def renew_step_slot(self, queue: str, holder: str, until: datetime) -> bool:
        async def write(conn: Conn) -> bool:
            status = await conn.execute(sql.STEP_SLOT_RENEW, queue, holder, until.timestamp())
            return _count(status) == 1

        return await self._run_op(write, mode="statement")

    async def release_step_slot(self, queue: str, holder: str) -> None:
        async def write(conn: Conn) -> None:
            await conn.execute(sql.STEP_SLOT_RELEASE, queue, holder)

        await self._run_op(write, mode="statement")

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
        lock_key = f"pyworkflow:{self.schema}:stream:{run_id}:{stream}"
        now = utcnow().timestamp()

        async def write(conn: Conn) -> int:
            if await conn.fetchval(sql.RUN_EXISTS, run_id) is None:
                raise RunNotFoundError(f"no run with id {run_id!r} in {self.log_url}")
            await conn.execute(sql.LOCK_STREAM, lock_key)
            if key is not None:
                seq = await conn.fetchval(sql.CHUNK_BY_KEY, run_id, stream, key)
                if seq is not None:
                    return int(seq)
            values = (run_id, stream, data, step_id, attempt, index, now, key)
            return int(await conn.fetchval(sql.INSERT_CHUNK, *values))

        # a keyed chunk rerun after a commit that may have landed finds itself (dedup)
        return await self._run_op(write)

    async def read_stream(
        self, run_id: str, stream: str, after_seq: int = 0, limit: int = 1000
    ) -> list[StreamChunk]:
        check_read(run_id, stream, after_seq, limit)

        async def read(conn: Conn) -> list[Any]:
            if await conn.fetchval(sql.RUN_EXISTS, run_id) is None:
                raise RunNotFoundError(f"no run with id {run_id!r} in {self.log_url}")
            return list(await conn.fetch(sql.READ_CHUNKS, run_id, stream, after_seq, limit))

        return [chunk_from_row(tuple(row)) for row in await self._run_op(read, mode="read")]

    async def list_streams(self, run_id: str) -> list[str]:
        async def read(conn: Conn) -> list[str]:
            if await conn.fetchval(sql.RUN_EXISTS, run_id) is None:
                raise RunNotFoundError(f"no run with id {run_id!r} in {self.log_url}")
            return [str(row[0]) for row in await conn.fetch(sql.STREAM_NAMES, run_id)]

        return await self._run_op(read, mode="read")

    # ----- step checkpoints -----

    async def save_step_checkpoint(
        self, run_id: str, step_id: str, attempt: int, data: str
    ) -> bool:
        check_checkpoint(run_id, step_id, attempt, data, self.max_payload_bytes)
        now = utcnow().timestamp()

        async def write(conn: Conn) -> bool:
            if await conn.fetchval(sql.RUN_EXISTS, run_id) is None:
                raise RunNotFoundError(f"no run with id {run_id!r} in {self.log_url}")
            written = await conn.fetchval(sql.SAVE_CHECKPOINT, run_id, step_id, attempt, data, now)
            return written is not None

        # rerun after a commit that may have landed: the same attempt writes again
        return await self._run_op(write)

    async def get_step_checkpoint(self, run_id: str, step_id: str) -> StepCheckpoint | None:
        check_checkpoint_key(run_id, step_id)

        async def read(conn: Conn) -> Any:
            return await conn.fetchrow(sql.GET_CHECKPOINT, run_id, step_id)

        row = await self._run_op(read, mode="read")
        return None if row is None else checkpoint_from_row((run_id, step_id, *tuple(row)))

    # ----- schedules -----

    async def create_schedule(self, schedule: Schedule) -> tuple[Schedule, bool]:
        values = schedule_to_values(schedule)

        async def write(conn: Conn) -> tuple[Schedule, bool]:
            while await conn.fetchval(sql.INSERT_SCHEDULE_UNLESS_NAME, *values) is None:
                data = await conn.fetchval(sql.GET_SCHEDULE, schedule.name)
                if data is not None:
                    return schedule_from_data(data), False
                # deleted between the insert and the read: insert again
            return schedule, True

        async def landed(conn: Conn) -> tuple[Schedule, bool] | None:
            data = await conn.fetchval(sql.GET_SCHEDULE, schedule.name)
            return (schedule, True) if data == values[-1] else None

        return await self._run_op(write, landed, mode="statement")

    async def put_schedule(self, schedule: Schedule) -> None:
        values = schedule_to_values(schedule)

        async def write(conn: Conn) -> None:
            await conn.execute(sql.PUT_SCHEDULE, *values)

        await self._run_op(write, mode="statement")

    async def get_schedule(self, name: str) -> Schedule:
        async def read(conn: Conn) -> str | None:
            data = await conn.fetchval(sql.GET_SCHEDULE, name)
            return None if data is None else str(data)

        data = await self._run_op(read, mode="read")
        if data is None:
            raise ScheduleNotFoundError(f"no schedule named {name!r} in {self.log_url}")
        return schedule_from_data(data)

    async def list_schedules(self) -> list[Schedule]:
        async def read(conn: Conn) -> list[str]:
            return [str(row[0]) for row in await conn.fetch(sql.LIST_SCHEDULES)]

        schedules = [schedule_from_data(data) for data in await self._run_op(read, mode="read")]
        return sorted(schedules, key=lambda s: s.name)

    async def delete_schedule(self, name: str) -> bool:
        async def write(conn: Conn) -> bool:
            return _count(await conn.execute(sql.DELETE_SCHEDULE, name)) == 1

        return await self._run_op(write, mode="statement")

    async def claim_schedules(
        self, owner: str, now: datetime, limit: int, lease_for: timedelta
    ) -> list[Schedule]:
        at = now.timestamp()
        until = at + lease_for.total_seconds()

        async def write(conn: Conn) -> list[Schedule]:
            rows = await conn.fetch(sql.CLAIM_SCHEDULES, at, limit, owner, until)
            return [schedule_from_data(row[0]) for row in rows]

        claimed = await self._run_op(write, mode="statement")
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

        The stored ``next_fire_at`` (epoch seconds, the column written from the
        schedule) is compared with ``expected_next_fire_at`` converted the same
        way, so equal datetimes compare equal exactly.
        """
        expected = to_epoch(expected_next_fire_at)

        def advanced(schedule: Schedule) -> Schedule:
            return attrs.evolve(
                schedule,
                next_fire_at=next_fire_at,
                last_fire_at=last_fire_at,
                last_run_id=last_run_id,
            )

        async def write(conn: Conn) -> bool:
            row = await conn.fetchrow(sql.LOCK_SCHEDULE, name)
            if row is None or row["lease_owner"] != owner:
                return False
            if row["next_fire_at"] != expected:
                await conn.execute(sql.DROP_SCHEDULE_LEASE, name)
                return False
            data = schedule_to_data(advanced(schedule_from_data(row["data"])))
            await conn.execute(sql.ADVANCE_SCHEDULE, name, to_epoch(next_fire_at), data)
            return True

        async def landed(conn: Conn) -> bool | None:
            # a COMMIT cut off: it landed if the lease is gone and the row holds the firing
            row = await conn.fetchrow(sql.GET_SCHEDULE_AND_LEASE, name)
            if row is None or row["lease_owner"] == owner:
                return None
            stored = schedule_from_data(row["data"])
            return True if advanced(stored) == stored else None

        return await self._run_op(write, landed)

    async def next_schedule_at(self) -> datetime | None:
        async def read(conn: Conn) -> float | None:
            value = await conn.fetchval(sql.NEXT_SCHEDULE_AT)
            return None if value is None else float(value)

        return from_epoch(await self._run_op(read, mode="read"))


#: Extra rows per batch of waiting runs when partitions are limited: rows of a partition
#: that fills up within the batch are skipped, and these keep the batch count low.
_PARTITION_SLACK = 16
