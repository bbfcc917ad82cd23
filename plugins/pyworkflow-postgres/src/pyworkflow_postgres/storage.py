"""PostgreSQL storage: SQLModel tables on async SQLAlchemy (asyncpg).

Claims use ``FOR UPDATE SKIP LOCKED`` so many workers take disjoint runs;
every write that makes a run due sends ``NOTIFY`` in its transaction, so
idle workers claim at once instead of waiting for their next poll.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any, TypeVar

import anyio
import anyio.abc
import attrs
from loguru import logger
from sqlalchemy import Row, case, delete, func, insert, null, or_, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlmodel import SQLModel

from pyworkflow.errors import (
    ConcurrencyError,
    ConfigError,
    HookNotFoundError,
    RunNotFoundError,
    StorageUnavailableError,
)
from pyworkflow.models import (
    Event,
    EventType,
    HookRecord,
    NewEvent,
    Run,
    RunPage,
    RunPatch,
    RunStatus,
    StepLease,
)
from pyworkflow.redaction import redact_text, redact_url
from pyworkflow.storage.background import BackgroundTasks
from pyworkflow.storage.base import Storage, command_mode
from pyworkflow.storage.rows import (
    EVENT_COLUMNS,
    HOOK_COLUMNS,
    RUN_COLUMNS,
    STEP_LEASE_COLUMNS,
    dump_payload,
    event_from_row,
    event_rows,
    from_epoch,
    hook_from_row,
    hook_to_values,
    patch_values,
    run_from_row,
    run_to_values,
    step_lease_from_row,
    step_lease_to_values,
)
from pyworkflow.storage.rules import decode_cursor, hook_changes, hook_conflict_error, page_from
from pyworkflow_postgres.connection import Backoff, is_retryable
from pyworkflow_postgres.listener import WakeListener
from pyworkflow_postgres.migrations import LATEST, migrate, schema_version
from pyworkflow_postgres.settings import PostgresSettings, parse_url

__all__ = ["PostgresStorage"]

T = TypeVar("T")
_tables = SQLModel.metadata.tables
RUNS = _tables["pyworkflow_runs"]
EVENTS = _tables["pyworkflow_events"]
HOOKS = _tables["pyworkflow_hooks"]
LEASES = _tables["pyworkflow_step_leases"]
_RUN_COLS = [RUNS.c[name] for name in RUN_COLUMNS]
_EVENT_COLS = [EVENTS.c[name] for name in EVENT_COLUMNS]
_HOOK_COLS = [HOOKS.c[name] for name in HOOK_COLUMNS]
_LEASE_COLS = [LEASES.c[name] for name in STEP_LEASE_COLUMNS]
_Tx = Callable[[AsyncConnection], Awaitable[T]]


def _event_rows(run_id: str, after: int, events: Sequence[NewEvent]) -> list[dict[str, Any]]:
    return [dict(zip(EVENT_COLUMNS, row, strict=True)) for row in event_rows(run_id, after, events)]


def _run(row: Row[Any]) -> Run:
    return run_from_row(tuple(row))


def _patch_values(patch: RunPatch, owner: str | None, values: dict[str, Any]) -> float | None:
    """Add ``patch``'s assignments to ``values``; returns the wake time it sets, if any."""
    changes = patch_values(patch)
    values.update(changes)
    wake: float | None = changes.get("wake_at")
    if patch.release_lease and owner is not None:
        # SET expressions see the old row, so both test the lease being released.
        held = RUNS.c.lease_owner == owner
        values["lease_owner"] = case((held, null()), else_=RUNS.c.lease_owner)
        values["lease_expires_at"] = case((held, null()), else_=RUNS.c.lease_expires_at)
    return wake


class PostgresStorage(Storage):
    """Runs and events in PostgreSQL, safe for any number of worker processes and hosts.

    Tables (``pyworkflow_runs``, ``pyworkflow_events``, ``pyworkflow_hooks``,
    ``pyworkflow_step_leases``) are the SQLModel definitions shared with the
    SQLite backend, created and upgraded at :meth:`open` by a versioned
    migration runner (table ``pyworkflow_schema_version``). Every operation
    is one transaction; while the database is unreachable it is retried with
    backoff for ``reconnect_timeout`` seconds (``command_timeout`` in a
    one-shot command, see :func:`pyworkflow.storage.base.set_command_mode`),
    then fails with :class:`~pyworkflow.errors.StorageUnavailableError`
    naming the server it tried (password hidden).
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
        self._engine: AsyncEngine | None = None
        self._listener: WakeListener | None = None
        self._background: BackgroundTasks | None = None
        #: Seconds to keep retrying an unreachable database, and which option set it.
        self._retry_for, self._retry_option = self.settings.reconnect_timeout, "reconnect_timeout"

    # ----- lifecycle -----

    def _connect_args(self) -> dict[str, Any]:
        return {
            "server_settings": {"search_path": self.schema, "application_name": "pyworkflow"},
            "timeout": min(self.settings.connect_timeout, self._retry_for),
        }

    async def open(self, task_group: anyio.abc.TaskGroup | None = None) -> None:
        """Connect, create or check the schema, and LISTEN for wake-ups in ``task_group``.

        The ``LISTEN`` loop (with ``notify``) runs in ``task_group``, the
        runtime's; :meth:`close` ends it. Opened without a task group, the
        storage does not listen (its wake-ups are still sent to others).
        """
        if self._engine is not None:
            return
        if command_mode():  # a CLI command: fail in seconds, not after a worker's patience
            self._retry_for, self._retry_option = self.settings.command_timeout, "command_timeout"
        else:
            self._retry_for = self.settings.reconnect_timeout
            self._retry_option = "reconnect_timeout"
        self._engine = create_async_engine(
            self.sa_url,
            pool_size=self.settings.pool_size,
            max_overflow=self.settings.max_overflow,
            connect_args=self._connect_args(),
        )
        try:
            await self._tx(self._prepare_schema)
        except BaseException:
            await self._engine.dispose()
            self._engine = None
            raise
        if self.settings.notify and task_group is not None:
            self._listener = WakeListener(
                self._listen_connection, self.channel, self.wake_listeners
            )
            self._background = BackgroundTasks(task_group, owner=self.log_url)
            await self._background.start(
                self._listener.run, name=f"pyworkflow-listen:{self.channel}"
            )

    async def _prepare_schema(self, conn: AsyncConnection) -> None:
        if self.settings.migrate:
            applied = await migrate(conn, self.schema)
            if applied:
                self.log.info("schema {!r} migrated to version {}", self.schema, applied[-1])
            return
        version = await schema_version(conn)
        if version != LATEST:
            raise ConfigError(
                f"the PyWorkflow tables in schema {self.schema!r} are at version {version}, "
                f"this pyworkflow-postgres needs {LATEST}; run it once with migrate = true "
                "or apply the migration yourself"
            )

    async def _listen_connection(self) -> Any:
        import asyncpg

        assert self._engine is not None
        _, kwargs = self._engine.dialect.create_connect_args(self.sa_url)
        kwargs.update(self._connect_args())
        return await asyncpg.connect(**kwargs)

    async def close(self) -> None:
        """Stop listening (the LISTEN task has ended when this returns), close the pool."""
        background, engine = self._background, self._engine
        self._background, self._engine, self._listener = None, None, None
        if background is not None:
            await background.aclose()
        if engine is not None:
            with anyio.CancelScope(shield=True):
                await engine.dispose()

    # ----- plumbing -----

    async def _read(self, fn: _Tx[T]) -> T:
        """Run read-only ``fn`` without a transaction (autocommit: no BEGIN/ROLLBACK trips)."""
        return await self._tx(fn, read_only=True)

    async def _tx(
        self, fn: _Tx[T], verify: _Tx[T | None] | None = None, *, read_only: bool = False
    ) -> T:
        """Run ``fn`` in a transaction, rerunning it while the database is unreachable.

        If the connection drops during COMMIT the write may have landed:
        ``verify`` (in a fresh transaction) then returns its result if so,
        and None to run ``fn`` again. A pooled connection that died with a
        server restart fails its first statement; the retry then gets a new
        one (SQLAlchemy drops the whole pool on a disconnect), so no
        pre-ping round trip is spent on every checkout.
        """
        engine = self._engine
        if engine is None:
            raise RuntimeError(f"storage {self.log_url} is not open")
        backoff = Backoff(timeout=self._retry_for)  # 0.05 s doubling to 2 s, last wait cut short
        ambiguous = False
        while True:
            committing = False
            try:
                async with engine.connect() as conn:
                    if read_only:
                        conn = await conn.execution_options(isolation_level="AUTOCOMMIT")
                        return await fn(conn)
                    if ambiguous and verify is not None:
                        done = await verify(conn)
                        await conn.rollback()
                        if done is not None:
                            return done
                    result = await fn(conn)  # in the transaction the first statement began
                    committing = True
                    await conn.commit()
                    return result
            except Exception as exc:
                if not is_retryable(exc):
                    raise
                ambiguous = ambiguous or committing
                delay = backoff.next_delay()
                if delay is None:
                    message = self._unreachable(exc, backoff.attempts + 1)
                    raise StorageUnavailableError(message) from exc
                if backoff.attempts == 1:
                    self.log.warning("database unreachable ({}); retrying", type(exc).__name__)
                await anyio.sleep(delay)

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

    async def _last_seq(self, conn: AsyncConnection, run_id: str) -> int:
        seq = await conn.scalar(select(RUNS.c.last_seq).where(RUNS.c.run_id == run_id))
        if seq is None:
            raise RunNotFoundError(f"no run with id {run_id!r} in {self.log_url}")
        return int(seq)

    async def _notify(self, conn: AsyncConnection, wake_at: float | None) -> None:
        if self.settings.notify and wake_at is not None:
            await conn.execute(select(func.pg_notify(self.channel, repr(wake_at))))

    async def _apply_hooks(
        self, conn: AsyncConnection, run_id: str, created: list[HookRecord], disposed: list[str]
    ) -> None:
        """Apply the rule of ``hook_changes``: this run's disposed hooks go first, then inserts."""
        if disposed:
            await conn.execute(
                delete(HOOKS).where(HOOKS.c.token.in_(disposed), HOOKS.c.run_id == run_id)
            )
        if not created:
            return
        rows = [dict(zip(HOOK_COLUMNS, hook_to_values(h), strict=True)) for h in created]
        result = await conn.execute(
            pg_insert(HOOKS).values(rows).on_conflict_do_nothing().returning(HOOKS.c.token)
        )
        inserted = set(result.scalars())
        for hook in created:
            if hook.token not in inserted:
                owner = await conn.scalar(select(HOOKS.c.run_id).where(HOOKS.c.token == hook.token))
                raise hook_conflict_error(hook.token, str(owner))

    async def _event_at(self, conn: AsyncConnection, run_id: str, seq: int) -> Row[Any] | None:
        stmt = select(*_EVENT_COLS).where(EVENTS.c.run_id == run_id, EVENTS.c.seq == seq)
        return (await conn.execute(stmt)).first()

    # ----- runs and events -----

    async def create_run(self, run: Run, events: Sequence[NewEvent]) -> tuple[Run, bool]:
        stored = attrs.evolve(run, last_seq=len(events))
        values = dict(zip(RUN_COLUMNS, run_to_values(stored), strict=True))
        rows = _event_rows(run.run_id, 0, events)
        created, disposed = hook_changes(run.run_id, events)
        key = run.idempotency_key

        async def write(conn: AsyncConnection) -> tuple[Run, bool]:
            if key is None:
                await conn.execute(insert(RUNS).values(values))
            else:
                stmt = (
                    pg_insert(RUNS)
                    .values(values)
                    .on_conflict_do_nothing(constraint="uq_pyworkflow_runs_idempotency_key")
                    .returning(RUNS.c.run_id)
                )
                if (await conn.execute(stmt)).first() is None:
                    found = select(*_RUN_COLS).where(RUNS.c.idempotency_key == key)
                    return _run((await conn.execute(found)).one()), False
            if rows:
                await conn.execute(insert(EVENTS), rows)
            await self._apply_hooks(conn, run.run_id, created, disposed)
            await self._notify(conn, values["wake_at"])
            return stored, True

        async def landed(conn: AsyncConnection) -> tuple[Run, bool] | None:
            row = (
                await conn.execute(select(*_RUN_COLS).where(RUNS.c.run_id == run.run_id))
            ).first()
            return None if row is None else (_run(row), True)

        return await self._tx(write, landed)

    async def get_run(self, run_id: str) -> Run:
        async def read(conn: AsyncConnection) -> Run:
            row = (await conn.execute(select(*_RUN_COLS).where(RUNS.c.run_id == run_id))).first()
            if row is None:
                raise RunNotFoundError(f"no run with id {run_id!r} in {self.log_url}")
            return _run(row)

        return await self._read(read)

    async def list_runs(
        self,
        *,
        status: RunStatus | None = None,
        workflow: str | None = None,
        limit: int = 100,
        cursor: str | None = None,
    ) -> RunPage:
        stmt = select(*_RUN_COLS)
        if status is not None:
            stmt = stmt.where(RUNS.c.status == status.value)
        if workflow is not None:
            stmt = stmt.where(RUNS.c.workflow_name == workflow)
        if cursor is not None:
            created, after = decode_cursor(cursor)
            stmt = stmt.where(
                or_(
                    RUNS.c.created_at < created,
                    (RUNS.c.created_at == created) & (RUNS.c.run_id < after),
                )
            )
        stmt = stmt.order_by(RUNS.c.created_at.desc(), RUNS.c.run_id.desc()).limit(limit + 1)

        async def read(conn: AsyncConnection) -> list[Run]:
            return [_run(row) for row in await conn.execute(stmt)]

        return page_from(await self._read(read), limit)

    async def get_events(self, run_id: str, after_seq: int = 0) -> list[Event]:
        stmt = (
            select(*_EVENT_COLS)
            .where(EVENTS.c.run_id == run_id, EVENTS.c.seq > after_seq)
            .order_by(EVENTS.c.seq)
        )

        async def read(conn: AsyncConnection) -> list[Event]:
            rows = (await conn.execute(stmt)).all()
            if not rows:
                await self._last_seq(conn, run_id)  # RunNotFoundError for an unknown run
            return [event_from_row(tuple(row)) for row in rows]

        return await self._read(read)

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
        values: dict[str, Any] = {"last_seq": last, "updated_at": time.time()}
        wake = None if patch is None else _patch_values(patch, owner, values)
        stmt = (
            update(RUNS)
            .where(RUNS.c.run_id == run_id, RUNS.c.last_seq == expected_seq)
            .values(values)
        )
        rows = _event_rows(run_id, expected_seq, events)
        created, disposed = hook_changes(run_id, events)

        async def write(conn: AsyncConnection) -> int:
            if (await conn.execute(stmt)).rowcount != 1:
                raise ConcurrencyError(run_id, expected_seq, await self._last_seq(conn, run_id))
            if rows:
                await conn.execute(insert(EVENTS), rows)
            await self._apply_hooks(conn, run_id, created, disposed)
            await self._notify(conn, wake)
            return last

        async def landed(conn: AsyncConnection) -> int | None:
            # An empty append is idempotent (the same UPDATE matches again).
            if not rows:
                return None
            row = await self._event_at(conn, run_id, expected_seq + 1)
            first = rows[0]
            if row is not None and (row.type, row.timestamp) == (first["type"], first["timestamp"]):
                return last
            return None

        return await self._tx(write, landed)

    async def append_hook_payload(
        self, token: str, payload: Mapping[str, Any], now: datetime
    ) -> tuple[str, int]:
        at = now.timestamp()
        data = dump_payload(payload)

        async def find(conn: AsyncConnection) -> HookRecord:
            row = (await conn.execute(select(*_HOOK_COLS).where(HOOKS.c.token == token))).first()
            if row is None:
                raise HookNotFoundError(f"no live hook with token {token!r}")
            return hook_from_row(tuple(row))

        async def write(conn: AsyncConnection) -> tuple[str, int]:
            hook = await find(conn)
            seq = await conn.scalar(
                update(RUNS)
                .where(RUNS.c.run_id == hook.run_id)
                .values(last_seq=RUNS.c.last_seq + 1, updated_at=at, wake_at=at)
                .returning(RUNS.c.last_seq)
            )
            if seq is None:
                raise HookNotFoundError(f"no live hook with token {token!r}")
            # The run row is locked now: a hook disposed meanwhile is seen as gone.
            await find(conn)
            await conn.execute(
                insert(EVENTS).values(
                    run_id=hook.run_id,
                    seq=seq,
                    type=EventType.HOOK_RECEIVED.value,
                    correlation_id=hook.correlation_id,
                    timestamp=at,
                    payload=data,
                )
            )
            await self._notify(conn, at)
            return hook.run_id, int(seq)

        async def landed(conn: AsyncConnection) -> tuple[str, int] | None:
            stmt = select(EVENTS.c.run_id, EVENTS.c.seq).where(
                EVENTS.c.type == EventType.HOOK_RECEIVED.value,
                EVENTS.c.timestamp == at,
                EVENTS.c.payload == data,
                EVENTS.c.run_id
                == select(HOOKS.c.run_id).where(HOOKS.c.token == token).scalar_subquery(),
            )
            row = (await conn.execute(stmt)).first()
            return None if row is None else (str(row.run_id), int(row.seq))

        return await self._tx(write, landed)

    # ----- claims and leases -----

    async def claim_runs(
        self, owner: str, now: datetime, limit: int, lease_for: timedelta
    ) -> list[Run]:
        at = now.timestamp()
        due = (
            select(RUNS.c.run_id)
            .where(
                RUNS.c.wake_at <= at,
                or_(RUNS.c.lease_owner.is_(None), RUNS.c.lease_expires_at < at),
            )
            .order_by(RUNS.c.wake_at)
            .limit(limit)
            .with_for_update(skip_locked=True)
            .cte("due")
        )
        stmt = (
            update(RUNS)
            .where(RUNS.c.run_id == due.c.run_id)
            .values(lease_owner=owner, lease_expires_at=at + lease_for.total_seconds())
            .returning(*_RUN_COLS)
        )

        async def write(conn: AsyncConnection) -> list[Run]:
            return [_run(row) for row in await conn.execute(stmt)]

        runs = await self._tx(write)
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
        free = [RUNS.c.lease_owner.is_(None), RUNS.c.lease_expires_at < at]
        if take_over_prefix is not None:
            free.append(RUNS.c.lease_owner.startswith(take_over_prefix, autoescape=True))
        stmt = (
            update(RUNS)
            .where(RUNS.c.run_id == run_id, RUNS.c.wake_at <= at, or_(*free))
            .values(lease_owner=owner, lease_expires_at=at + lease_for.total_seconds())
            .returning(*_RUN_COLS)
        )

        async def write(conn: AsyncConnection) -> Run | None:
            row = (await conn.execute(stmt)).first()
            return None if row is None else _run(row)

        return await self._tx(write)

    async def renew_lease(self, run_id: str, owner: str, until: datetime) -> bool:
        stmt = (
            update(RUNS)
            .where(RUNS.c.run_id == run_id, RUNS.c.lease_owner == owner)
            .values(lease_expires_at=until.timestamp())
        )

        async def write(conn: AsyncConnection) -> bool:
            return bool((await conn.execute(stmt)).rowcount == 1)

        return await self._tx(write)

    async def release_lease(self, run_id: str, owner: str) -> None:
        stmt = (
            update(RUNS)
            .where(RUNS.c.run_id == run_id, RUNS.c.lease_owner == owner)
            .values(lease_owner=None, lease_expires_at=None)
        )

        async def write(conn: AsyncConnection) -> None:
            await conn.execute(stmt)

        await self._tx(write)

    async def next_wake_at(self) -> datetime | None:
        async def read(conn: AsyncConnection) -> float | None:
            value = await conn.scalar(select(func.min(RUNS.c.wake_at)))
            return None if value is None else float(value)

        return from_epoch(await self._read(read))

    async def due_timers(self, now: datetime, limit: int) -> list[tuple[str, datetime]]:
        stmt = (
            select(RUNS.c.run_id, RUNS.c.wake_at)
            .where(RUNS.c.wake_at <= now.timestamp())
            .order_by(RUNS.c.wake_at)
            .limit(limit)
        )

        async def read(conn: AsyncConnection) -> list[tuple[str, float]]:
            return [(str(r), float(w)) for r, w in await conn.execute(stmt)]

        tz = now.tzinfo
        return [(r, datetime.fromtimestamp(w, tz=tz)) for r, w in await self._read(read)]

    # ----- hooks -----

    async def get_hook(self, token: str) -> HookRecord:
        async def read(conn: AsyncConnection) -> HookRecord:
            row = (await conn.execute(select(*_HOOK_COLS).where(HOOKS.c.token == token))).first()
            if row is None:
                raise HookNotFoundError(f"no live hook with token {token!r}")
            return hook_from_row(tuple(row))

        return await self._read(read)

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
        key = (LEASES.c.run_id == run_id, LEASES.c.step_id == step_id)
        stmt: Any
        if owner is None:
            stmt = delete(LEASES).where(*key)
            if if_owner is not None:
                stmt = stmt.where(LEASES.c.owner == if_owner)
        elif if_owner is not None:
            assert until is not None
            stmt = (
                update(LEASES)
                .where(*key, LEASES.c.owner == if_owner)
                .values(owner=owner, lease_until=until.timestamp())
            )
        else:
            assert until is not None
            values = dict(
                zip(
                    STEP_LEASE_COLUMNS,
                    step_lease_to_values(StepLease(run_id, step_id, owner, until)),
                    strict=True,
                )
            )
            stmt = (
                pg_insert(LEASES)
                .values(values)
                .on_conflict_do_update(
                    index_elements=[LEASES.c.run_id, LEASES.c.step_id],
                    set_={"owner": owner, "lease_until": values["lease_until"]},
                )
            )

        async def write(conn: AsyncConnection) -> bool:
            count = (await conn.execute(stmt)).rowcount
            return if_owner is None or count == 1

        return await self._tx(write)

    async def get_step_leases(self, run_id: str) -> dict[str, StepLease]:
        stmt = select(*_LEASE_COLS).where(LEASES.c.run_id == run_id)

        async def read(conn: AsyncConnection) -> list[StepLease]:
            return [step_lease_from_row(tuple(row)) for row in await conn.execute(stmt)]

        return {lease.step_id: lease for lease in await self._read(read)}

    async def expired_step_leases(self, now: datetime, limit: int) -> list[StepLease]:
        stmt = (
            select(*_LEASE_COLS)
            .where(LEASES.c.lease_until < now.timestamp())
            .order_by(LEASES.c.lease_until, LEASES.c.run_id, LEASES.c.step_id)
            .limit(limit)
        )

        async def read(conn: AsyncConnection) -> list[StepLease]:
            return [step_lease_from_row(tuple(row)) for row in await conn.execute(stmt)]

        return await self._read(read)
