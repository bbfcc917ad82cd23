"""SQLite storage (``sqlite:///path``): WAL, one writer thread with group commit."""

from __future__ import annotations

import asyncio
import json
import queue
import sqlite3
import threading
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import anyio
import anyio.to_thread
import attrs
from sqlalchemy import create_engine
from sqlmodel import SQLModel

from pyworkflow.errors import (
    ConcurrencyError,
    ConfigError,
    HookNotFoundError,
    HookTokenConflictError,
    RunNotFoundError,
)
from pyworkflow.hookspecs import hookimpl
from pyworkflow.models import (
    Event,
    EventType,
    HookRecord,
    NewEvent,
    Run,
    RunPage,
    RunPatch,
    RunStatus,
    utcnow,
)
from pyworkflow.storage.base import Storage, hook_changes
from pyworkflow.storage.memory import decode_cursor, encode_cursor
from pyworkflow.storage.schema import (
    EVENT_COLUMNS,
    HOOK_COLUMNS,
    RUN_COLUMNS,
    EventRow,
    HookRow,
    RunRow,
    event_from_row,
    hook_from_row,
    hook_to_values,
    run_from_row,
    run_to_values,
    to_epoch,
)

__all__ = ["SQLiteStorage", "path_from_url"]

T = TypeVar("T")
_RUNS = "pyworkflow_runs"
_EVENTS = "pyworkflow_events"
_RUN_SELECT = f"SELECT {', '.join(RUN_COLUMNS)} FROM {_RUNS}"
_INSERT_RUN = (
    f"INSERT INTO {_RUNS} ({', '.join(RUN_COLUMNS)}) VALUES ({', '.join('?' * len(RUN_COLUMNS))})"
)
_INSERT_EVENT = f"INSERT INTO {_EVENTS} ({', '.join(EVENT_COLUMNS)}) VALUES (?, ?, ?, ?, ?, ?)"
#: The claim touches only due rows through the wake_at index.
_CLAIM = (
    f"UPDATE {_RUNS} SET lease_owner = ?, lease_expires_at = ? WHERE run_id IN ("
    f"SELECT run_id FROM {_RUNS} WHERE wake_at <= ? "
    "AND (lease_owner IS NULL OR lease_expires_at < ?) ORDER BY wake_at LIMIT ?) "
    f"RETURNING {', '.join(RUN_COLUMNS)}"
)
_DUE = f"SELECT run_id, wake_at FROM {_RUNS} WHERE wake_at <= ? ORDER BY wake_at LIMIT ?"


def path_from_url(url: str) -> Path:
    """``sqlite:///rel/path.db`` -> ``rel/path.db``; ``sqlite:////abs.db`` -> ``/abs.db``."""
    prefix = "sqlite:///"
    if not url.startswith(prefix) or len(url) == len(prefix):
        raise ConfigError(
            f"invalid SQLite storage URL {url!r} (config key 'storage'): "
            "use sqlite:///relative/path.db or sqlite:////absolute/path.db"
        )
    return Path(url[len(prefix) :])


def _connect(path: Path, synchronous: str) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30.0)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute(f"PRAGMA synchronous={synchronous}")
    conn.execute("PRAGMA busy_timeout=30000")
    return conn


_Write = tuple[Callable[[sqlite3.Connection], Any], "Future[Any]"]


class _Writer(threading.Thread):
    """Owns the write connection; commits every queued request in one transaction."""

    def __init__(self, path: Path, synchronous: str) -> None:
        super().__init__(name="pyworkflow-sqlite-writer", daemon=True)
        self.path = path
        self.synchronous = synchronous
        self.requests: queue.SimpleQueue[_Write | None] = queue.SimpleQueue()
        self.commit_count = 0

    def run(self) -> None:
        conn = _connect(self.path, self.synchronous)
        try:
            while True:
                first = self.requests.get()
                if first is None:
                    return
                batch = [first]
                while len(batch) < 512:
                    try:
                        item = self.requests.get_nowait()
                    except queue.Empty:
                        break
                    if item is None:
                        self.requests.put(None)
                        break
                    batch.append(item)
                self._commit(conn, batch)
        finally:
            conn.close()

    def _commit(self, conn: sqlite3.Connection, batch: list[_Write]) -> None:
        outcomes: list[tuple[Future[Any], Any, BaseException | None]] = []
        try:
            conn.execute("BEGIN IMMEDIATE")
            for fn, future in batch:
                conn.execute("SAVEPOINT request")
                try:
                    result = fn(conn)
                except Exception as exc:
                    conn.execute("ROLLBACK TO request")
                    outcomes.append((future, None, exc))
                else:
                    outcomes.append((future, result, None))
                conn.execute("RELEASE request")
            conn.execute("COMMIT")
            self.commit_count += 1
        except sqlite3.Error as exc:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            for _, future in batch:
                future.set_exception(exc)
            return
        for future, result, error in outcomes:
            if error is not None:
                future.set_exception(error)
            else:
                future.set_result(result)


class _Reader(threading.Thread):
    """Runs read requests on its own connection (WAL: beside the writer)."""

    def __init__(self, path: Path, synchronous: str, requests: queue.SimpleQueue[_Write | None]):
        super().__init__(name="pyworkflow-sqlite-reader", daemon=True)
        self.path = path
        self.synchronous = synchronous
        self.requests = requests

    def run(self) -> None:
        conn = _connect(self.path, self.synchronous)
        try:
            while True:
                item = self.requests.get()
                if item is None:
                    return
                fn, future = item
                try:
                    future.set_result(fn(conn))
                except Exception as exc:
                    future.set_exception(exc)
        finally:
            conn.close()


class SQLiteStorage(Storage):
    """Runs and events in one SQLite file, safe for several processes.

    Writes go through one writer thread that commits everything queued at
    once (group commit); ``BEGIN IMMEDIATE`` serializes writers across
    processes. Reads use a small pool of reader connections (WAL lets them
    run beside the writer). ``synchronous`` is ``FULL`` (default: nothing
    committed is lost on power failure) or ``NORMAL`` (faster; the last
    commits may be lost on power failure or OS crash, never corrupted).
    """

    def __init__(self, url: str, *, synchronous: str = "FULL") -> None:
        self.url = url
        self.path = path_from_url(url)
        self.synchronous = synchronous.upper()
        self._writer: _Writer | None = None
        self._readers: list[_Reader] = []
        self._reads: queue.SimpleQueue[_Write | None] = queue.SimpleQueue()

    @property
    def commit_count(self) -> int:
        """Transactions committed by this instance (a benchmark reads it)."""
        return self._writer.commit_count if self._writer else 0

    async def open(self) -> None:
        await anyio.to_thread.run_sync(self._create_schema)
        self._writer = _Writer(self.path, self.synchronous)
        self._writer.start()
        self._readers = [_Reader(self.path, self.synchronous, self._reads) for _ in range(2)]
        for reader in self._readers:
            reader.start()

    def _create_schema(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        conn = _connect(self.path, self.synchronous)
        conn.close()
        engine = create_engine(f"sqlite:///{self.path}")
        try:
            tables = [RunRow.__table__, EventRow.__table__, HookRow.__table__]  # type: ignore[attr-defined]  # SQLModel table classes carry __table__
            SQLModel.metadata.create_all(engine, tables=tables)
        finally:
            engine.dispose()

    async def close(self) -> None:
        threads: list[threading.Thread] = [*self._readers]
        for _ in self._readers:
            self._reads.put(None)
        if self._writer is not None:
            self._writer.requests.put(None)
            threads.append(self._writer)
        self._writer, self._readers = None, []
        for thread in threads:
            await anyio.to_thread.run_sync(thread.join)

    # ----- plumbing -----

    async def _write(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        if self._writer is None:
            raise RuntimeError(f"storage {self.url} is not open")
        future: Future[T] = Future()
        self._writer.requests.put((fn, future))
        return await asyncio.wrap_future(future)

    async def _read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        if not self._readers:
            raise RuntimeError(f"storage {self.url} is not open")
        future: Future[T] = Future()
        self._reads.put((fn, future))
        return await asyncio.wrap_future(future)

    def _last_seq(self, conn: sqlite3.Connection, run_id: str) -> int:
        row = conn.execute(f"SELECT last_seq FROM {_RUNS} WHERE run_id = ?", (run_id,)).fetchone()
        if row is None:
            raise RunNotFoundError(f"no run with id {run_id!r} in {self.url}")
        return int(row[0])

    # ----- the Storage interface -----

    async def create_run(self, run: Run, events: Sequence[NewEvent]) -> tuple[Run, bool]:
        def write(conn: sqlite3.Connection) -> tuple[Run, bool]:
            if run.idempotency_key is not None:
                row = conn.execute(
                    f"{_RUN_SELECT} WHERE idempotency_key = ?", (run.idempotency_key,)
                ).fetchone()
                if row is not None:
                    return run_from_row(row), False
            stored = Run(**{**_fields(run), "last_seq": len(events)})
            conn.execute(_INSERT_RUN, run_to_values(stored))
            _insert_events(conn, run.run_id, 0, events)
            _apply_hooks(conn, run.run_id, events)
            return stored, True

        return await self._write(write)

    async def get_run(self, run_id: str) -> Run:
        def read(conn: sqlite3.Connection) -> Run:
            row = conn.execute(f"{_RUN_SELECT} WHERE run_id = ?", (run_id,)).fetchone()
            if row is None:
                raise RunNotFoundError(f"no run with id {run_id!r} in {self.url}")
            return run_from_row(row)

        return await self._read(read)

    async def list_runs(
        self,
        *,
        status: RunStatus | None = None,
        workflow: str | None = None,
        limit: int = 100,
        cursor: str | None = None,
    ) -> RunPage:
        where: list[str] = []
        params: list[Any] = []
        if status is not None:
            where.append("status = ?")
            params.append(status.value)
        if workflow is not None:
            where.append("workflow_name = ?")
            params.append(workflow)
        if cursor is not None:
            created, run_id = decode_cursor(cursor)
            where.append("(created_at < ? OR (created_at = ? AND run_id < ?))")
            params.extend([created, created, run_id])
        clause = f" WHERE {' AND '.join(where)}" if where else ""
        sql = f"{_RUN_SELECT}{clause} ORDER BY created_at DESC, run_id DESC LIMIT ?"

        def read(conn: sqlite3.Connection) -> list[Run]:
            return [run_from_row(r) for r in conn.execute(sql, (*params, limit + 1))]

        runs = await self._read(read)
        page = runs[:limit]
        more = len(runs) > limit
        return RunPage(page, encode_cursor(page[-1]) if more and page else None)

    async def get_events(self, run_id: str, after_seq: int = 0) -> list[Event]:
        def read(conn: sqlite3.Connection) -> list[Event]:
            rows = conn.execute(
                f"SELECT {', '.join(EVENT_COLUMNS)} FROM {_EVENTS} "
                "WHERE run_id = ? AND seq > ? ORDER BY seq",
                (run_id, after_seq),
            ).fetchall()
            if not rows:
                self._last_seq(conn, run_id)
            return [event_from_row(r) for r in rows]

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
        now = to_epoch(utcnow())

        def write(conn: sqlite3.Connection) -> int:
            actual = self._last_seq(conn, run_id)
            if actual != expected_seq:
                raise ConcurrencyError(run_id, expected_seq, actual)
            _insert_events(conn, run_id, expected_seq, events)
            _apply_hooks(conn, run_id, events)
            last = expected_seq + len(events)
            sets: list[str] = ["last_seq = ?", "updated_at = ?"]
            params: list[Any] = [last, now]
            if patch is not None:
                if patch.clear_outcome:
                    sets.append(
                        "result = NULL, error = NULL, error_message = NULL, completed_at = NULL"
                    )
                for name in ("result", "error", "error_message"):
                    value = getattr(patch, name)
                    if value is not None:
                        sets.append(f"{name} = ?")
                        params.append(value)
                if patch.status is not None:
                    sets.append("status = ?")
                    params.append(patch.status.value)
                if patch.completed_at is not None:
                    sets.append("completed_at = ?")
                    params.append(to_epoch(patch.completed_at))
                if patch.set_wake:
                    sets.append("wake_at = ?")
                    params.append(to_epoch(patch.wake_at))
                if patch.release_lease and owner is not None:
                    sets.append(
                        "lease_owner = CASE WHEN lease_owner = ? THEN NULL ELSE lease_owner END"
                    )
                    sets.append(
                        "lease_expires_at = CASE WHEN lease_owner = ? THEN NULL "
                        "ELSE lease_expires_at END"
                    )
                    params.extend([owner, owner])
            conn.execute(
                f"UPDATE {_RUNS} SET {', '.join(sets)} WHERE run_id = ?", (*params, run_id)
            )
            return last

        return await self._write(write)

    async def claim_runs(
        self, owner: str, now: datetime, limit: int, lease_for: timedelta
    ) -> list[Run]:
        at = now.timestamp()
        params = (owner, at + lease_for.total_seconds(), at, at, limit)

        def write(conn: sqlite3.Connection) -> list[Run]:
            runs = [run_from_row(r) for r in conn.execute(_CLAIM, params).fetchall()]
            return sorted(runs, key=lambda r: r.wake_at or now)

        return await self._write(write)

    async def renew_lease(self, run_id: str, owner: str, until: datetime) -> bool:
        def write(conn: sqlite3.Connection) -> bool:
            cursor = conn.execute(
                f"UPDATE {_RUNS} SET lease_expires_at = ? WHERE run_id = ? AND lease_owner = ?",
                (until.timestamp(), run_id, owner),
            )
            return cursor.rowcount == 1

        return await self._write(write)

    async def release_lease(self, run_id: str, owner: str) -> None:
        def write(conn: sqlite3.Connection) -> None:
            conn.execute(
                f"UPDATE {_RUNS} SET lease_owner = NULL, lease_expires_at = NULL "
                "WHERE run_id = ? AND lease_owner = ?",
                (run_id, owner),
            )

        await self._write(write)

    async def next_wake_at(self) -> datetime | None:
        def read(conn: sqlite3.Connection) -> float | None:
            row = conn.execute(f"SELECT MIN(wake_at) FROM {_RUNS}").fetchone()
            return None if row is None else row[0]

        value = await self._read(read)
        return None if value is None else datetime.fromtimestamp(value, tz=utcnow().tzinfo)

    async def get_hook(self, token: str) -> HookRecord:
        return await self._read(lambda conn: _find_hook(conn, token))

    async def append_hook_payload(
        self, token: str, payload: Mapping[str, Any], now: datetime
    ) -> tuple[str, int]:
        event = NewEvent(EventType.HOOK_RECEIVED, None, payload, now)

        def write(conn: sqlite3.Connection) -> tuple[str, int]:
            hook = _find_hook(conn, token)
            last = self._last_seq(conn, hook.run_id)
            _insert_events(
                conn, hook.run_id, last, [attrs.evolve(event, correlation_id=hook.correlation_id)]
            )
            at = now.timestamp()
            conn.execute(
                f"UPDATE {_RUNS} SET last_seq = ?, updated_at = ?, wake_at = ? WHERE run_id = ?",
                (last + 1, at, at, hook.run_id),
            )
            return hook.run_id, last + 1

        return await self._write(write)

    async def due_timers(self, now: datetime, limit: int) -> list[tuple[str, datetime]]:
        def read(conn: sqlite3.Connection) -> list[tuple[str, float]]:
            return conn.execute(_DUE, (now.timestamp(), limit)).fetchall()

        tz = now.tzinfo
        return [(r, datetime.fromtimestamp(w, tz=tz)) for r, w in await self._read(read)]


_HOOK_SELECT = f"SELECT {', '.join(HOOK_COLUMNS)} FROM pyworkflow_hooks WHERE token = ?"
_INSERT_HOOK = (
    f"INSERT INTO pyworkflow_hooks ({', '.join(HOOK_COLUMNS)}) "
    f"VALUES ({', '.join('?' * len(HOOK_COLUMNS))})"
)


def _apply_hooks(conn: sqlite3.Connection, run_id: str, events: Sequence[NewEvent]) -> None:
    created, disposed = hook_changes(run_id, events)
    for token in disposed:
        conn.execute("DELETE FROM pyworkflow_hooks WHERE token = ? AND run_id = ?", (token, run_id))
    for hook in created:
        try:
            conn.execute(_INSERT_HOOK, hook_to_values(hook))
        except sqlite3.IntegrityError:
            row = conn.execute(_HOOK_SELECT, (hook.token,)).fetchone()
            owner = row[1] if row else "?"
            raise HookTokenConflictError(
                f"hook token {hook.token!r} is already used by a live hook of run {owner}"
            ) from None


def _find_hook(conn: sqlite3.Connection, token: str) -> HookRecord:
    row = conn.execute(_HOOK_SELECT, (token,)).fetchone()
    if row is None:
        raise HookNotFoundError(f"no live hook with token {token!r}")
    return hook_from_row(row)


def _fields(run: Run) -> dict[str, Any]:
    return {name: getattr(run, name) for name in RUN_COLUMNS}


def _insert_events(
    conn: sqlite3.Connection, run_id: str, after: int, events: Sequence[NewEvent]
) -> None:
    conn.executemany(
        _INSERT_EVENT,
        [
            (
                run_id,
                after + i,
                e.type.value,
                e.correlation_id,
                e.timestamp.timestamp(),
                json.dumps(dict(e.payload), separators=(",", ":")),
            )
            for i, e in enumerate(events, start=1)
        ],
    )


@hookimpl
def pyworkflow_register_storage(register: Callable[[str, Callable[..., Storage]], None]) -> None:
    """Serve ``sqlite:///path``."""
    register(
        "sqlite", lambda url, settings: SQLiteStorage(url, synchronous=settings.sqlite_synchronous)
    )
