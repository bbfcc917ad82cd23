"""SQLite storage (``sqlite:///path``): WAL, one writer thread with group commit."""

from __future__ import annotations

import asyncio
import contextlib
import json
import queue
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar, cast

import anyio.to_thread
import attrs

from pyworkflow.errors import (
    ConcurrencyError,
    ConfigError,
    HookNotFoundError,
    RunNotFoundError,
    ScheduleNotFoundError,
)
from pyworkflow.models import (
    ACTIVE_STATUSES,
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
from pyworkflow.storage.base import Storage
from pyworkflow.storage.checkpoint_rules import (
    check_checkpoint,
    check_checkpoint_key,
)
from pyworkflow.storage.flow_rules import slot_memory
from pyworkflow.storage.rows import (
    EVENT_COLUMNS,
    HOOK_COLUMNS,
    RUN_COLUMNS,
    SCHEDULE_COLUMNS,
    STEP_LEASE_COLUMNS,
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
    step_lease_to_values,
    to_epoch,
)
from pyworkflow.storage.rules import (
    decode_cursor,
    hook_changes,
    hook_conflict_error,
    page_from,
    swap_step_lease,
)
from pyworkflow.storage.stream_rules import check_chunk, check_read, chunk_key

__all__ = [
    "ADDED_COLUMNS",
    "SCHEMA",
    "SCHEMA_OBJECTS",
    "SYNCHRONOUS",
    "SQLiteStorage",
    "path_from_url",
]

T = TypeVar("T")
#: Allowed values of the ``synchronous`` setting.
SYNCHRONOUS = ("FULL", "NORMAL")
#: Most write requests committed in one transaction.
MAX_BATCH = 512
#: Reader connections (and threads) per storage.
READERS = 2
#: How long a connection waits for another process's write lock (ms).
BUSY_TIMEOUT_MS = 30_000
#: First and longest pause (s) between tries for a write lock another process holds.
#: SQLite's own busy handler sleeps 1, 2, 5, 10, 15, 20, 25 ms...: far longer than
#: a commit holds the lock (0.1-0.5 ms), so writers of several processes (a Ray or
#: Celery worker beside ``pyworkflow worker``) would spend most of their time asleep.
LOCK_PAUSE_FIRST = 0.00005
LOCK_PAUSE_MAX = 0.001

_RUNS = "pyworkflow_runs"
_EVENTS = "pyworkflow_events"
_HOOKS = "pyworkflow_hooks"
_STEP_LEASES = "pyworkflow_step_leases"
_SCHEDULES = "pyworkflow_schedules"
_STEP_SLOTS = "pyworkflow_step_slots"
_STREAM_CHUNKS = "pyworkflow_stream_chunks"
_CHECKPOINTS = "pyworkflow_step_checkpoints"
_RUN_SELECT = f"SELECT {', '.join(RUN_COLUMNS)} FROM {_RUNS}"
_INSERT_RUN = (
    f"INSERT INTO {_RUNS} ({', '.join(RUN_COLUMNS)}) VALUES ({', '.join('?' * len(RUN_COLUMNS))})"
)
_EVENT_SELECT = (
    f"SELECT {', '.join(EVENT_COLUMNS)} FROM {_EVENTS} WHERE run_id = ? AND seq > ? ORDER BY seq"
)
#: An append without a run patch: the log's end moves (the seq check is the lock).
_APPEND = f"UPDATE {_RUNS} SET last_seq = ?, updated_at = ? WHERE run_id = ? AND last_seq = ?"
_INSERT_EVENT = f"INSERT INTO {_EVENTS} ({', '.join(EVENT_COLUMNS)}) VALUES (?, ?, ?, ?, ?, ?)"
_HOOK_SELECT = f"SELECT {', '.join(HOOK_COLUMNS)} FROM {_HOOKS} WHERE token = ?"
_INSERT_HOOK = (
    f"INSERT INTO {_HOOKS} ({', '.join(HOOK_COLUMNS)}) "
    f"VALUES ({', '.join('?' * len(HOOK_COLUMNS))})"
)
#: The claim touches only due rows through the wake_at index.
_CLAIM = (
    f"UPDATE {_RUNS} SET lease_owner = ?, lease_expires_at = ? WHERE run_id IN ("
    f"SELECT run_id FROM {_RUNS} WHERE wake_at <= ? "
    "AND (lease_owner IS NULL OR lease_expires_at < ?) ORDER BY wake_at LIMIT ?) "
    f"RETURNING {', '.join(RUN_COLUMNS)}"
)
#: Whether any run is due with a free or expired lease (the claim's own test, read only).
_ANY_DUE = (
    f"SELECT 1 FROM {_RUNS} WHERE wake_at <= ? "
    "AND (lease_owner IS NULL OR lease_expires_at < ?) LIMIT 1"
)
#: One run, due and with a free, expired (or, with a prefix, taken-over) lease.
_CLAIM_ONE = (
    f"UPDATE {_RUNS} SET lease_owner = ?, lease_expires_at = ? "
    "WHERE run_id = ? AND wake_at <= ? AND (lease_owner IS NULL OR lease_expires_at < ?"
)
_TAKE_OVER = " OR substr(lease_owner, 1, ?) = ?"
_RETURNING_RUN = f") RETURNING {', '.join(RUN_COLUMNS)}"
_STEP_LEASE_SELECT = f"SELECT {', '.join(STEP_LEASE_COLUMNS)} FROM {_STEP_LEASES}"
_UPSERT_STEP_LEASE = (
    f"INSERT OR REPLACE INTO {_STEP_LEASES} ({', '.join(STEP_LEASE_COLUMNS)}) "
    f"VALUES ({', '.join('?' * len(STEP_LEASE_COLUMNS))})"
)
#: Expired step leases through the lease_until index, oldest first.
_EXPIRED_STEP_LEASES = (
    f"{_STEP_LEASE_SELECT} WHERE lease_until < ? ORDER BY lease_until, run_id, step_id LIMIT ?"
)
_DUE = f"SELECT run_id, wake_at FROM {_RUNS} WHERE wake_at <= ? ORDER BY wake_at LIMIT ?"


def _sql_list(statuses: Iterable[RunStatus]) -> str:
    """Statuses as an SQL list literal, e.g. ``('pending', 'running')``."""
    return "(" + ", ".join(sorted(f"'{s.value}'" for s in statuses)) + ")"


_ACTIVE = _sql_list(ACTIVE_STATUSES)
_LIVE = _sql_list(s for s in RunStatus if not s.is_terminal)
_QUEUED = RunStatus.QUEUED.value
#: The live run holding a ``(queue, dedup_key)`` (``queue IS ?``: None matches None).
_DEDUP_SELECT = f"{_RUN_SELECT} WHERE dedup_key = ? AND queue IS ? AND status IN {_LIVE} LIMIT 1"
#: Whether a queue has a waiting run (read only, before taking the write lock).
_ANY_QUEUED = f"SELECT 1 FROM {_RUNS} WHERE queue = ? AND status = '{_QUEUED}' LIMIT 1"
#: A queue's active runs, and those of them admitted by one worker.
_ACTIVE_COUNT = (
    f"SELECT COUNT(*), COUNT(CASE WHEN admitted_by = ? THEN 1 END) FROM {_RUNS} "
    f"WHERE queue = ? AND status IN {_ACTIVE}"
)
#: A queue's admissions in the rate window (through the (queue, admitted_at) index).
_ADMITTED_SINCE = f"SELECT COUNT(*) FROM {_RUNS} WHERE queue = ? AND admitted_at > ?"
#: A queue's active runs per partition key.
_ACTIVE_BY_KEY = (
    f"SELECT partition_key, COUNT(*) FROM {_RUNS} WHERE queue = ? AND status IN {_ACTIVE} "
    "AND partition_key IS NOT NULL GROUP BY partition_key"
)
#: A queue's waiting runs in admission order, but those of full partitions (a JSON list).
_WAITING = (
    f"SELECT run_id, partition_key FROM {_RUNS} WHERE queue = ? AND status = '{_QUEUED}' "
    "AND (partition_key IS NULL OR partition_key NOT IN (SELECT value FROM json_each(?))) "
    "ORDER BY queue_rank, created_at, run_id LIMIT ?"
)
#: Admit the waiting runs of a JSON list of run ids.
_ADMIT = (
    f"UPDATE {_RUNS} SET status = '{RunStatus.PENDING.value}', wake_at = ?, lease_owner = ?, "
    "lease_expires_at = ?, admitted_at = ?, admitted_by = ? "
    f"WHERE run_id IN (SELECT value FROM json_each(?)) AND status = '{_QUEUED}' "
    f"RETURNING {', '.join(RUN_COLUMNS)}"
)
#: Per queue: waiting runs, active runs, and runs admitted since a time.
_QUEUE_STATS = (
    f"SELECT queue, COUNT(CASE WHEN status = '{_QUEUED}' THEN 1 END), "
    f"COUNT(CASE WHEN status IN {_ACTIVE} THEN 1 END), "
    "COUNT(CASE WHEN admitted_at >= ? THEN 1 END) "
    f"FROM {_RUNS} WHERE queue IS NOT NULL GROUP BY queue ORDER BY queue"
)
#: Waiting rows read past the room left, when full partitions may be passed over.
_SCAN_SLACK = 32

_SCHEDULE_SELECT = f"SELECT data FROM {_SCHEDULES}"
_SCHEDULE_VALUES = (
    f"({', '.join(SCHEDULE_COLUMNS)}) VALUES ({', '.join('?' * len(SCHEDULE_COLUMNS))})"
)
_INSERT_SCHEDULE = f"INSERT INTO {_SCHEDULES} {_SCHEDULE_VALUES} ON CONFLICT (name) DO NOTHING"
#: Insert, or replace the indexed fields and the data (a lease on the row stays).
_PUT_SCHEDULE = (
    f"INSERT INTO {_SCHEDULES} {_SCHEDULE_VALUES} ON CONFLICT (name) DO UPDATE SET "
    "next_fire_at = excluded.next_fire_at, paused = excluded.paused, data = excluded.data"
)
#: Due and free to lease (the rule of ``flow_rules.schedule_claimable``).
_SCHEDULE_DUE = (
    "paused = 0 AND next_fire_at <= ? AND (lease_expires_at IS NULL OR lease_expires_at < ?)"
)
_ANY_SCHEDULE_DUE = f"SELECT 1 FROM {_SCHEDULES} WHERE {_SCHEDULE_DUE} LIMIT 1"
_CLAIM_SCHEDULES = (
    f"UPDATE {_SCHEDULES} SET lease_owner = ?, lease_expires_at = ? WHERE name IN ("
    f"SELECT name FROM {_SCHEDULES} WHERE {_SCHEDULE_DUE} ORDER BY next_fire_at, name LIMIT ?) "
    "RETURNING next_fire_at, name, data"
)

#: Step queue places (``Storage.acquire_step_slot``; the rule of ``flow_rules.take_step_slot``).
#: Renew a place its holder still holds.
_RENEW_HELD_SLOT = (
    f"UPDATE {_STEP_SLOTS} SET until = ? WHERE queue = ? AND holder = ? AND until > ?"
)
#: Forget the queue's released or expired places acquired before a time (by the index).
_PRUNE_SLOTS = (
    f"DELETE FROM {_STEP_SLOTS} WHERE queue = ? AND acquired_at <= ? "
    "AND (until IS NULL OR until <= ?)"
)
#: Places held by others, counted up to a limit (the scan stops there).
_HELD_SLOTS = (
    f"SELECT COUNT(*) FROM (SELECT 1 FROM {_STEP_SLOTS} "
    "WHERE queue = ? AND holder <> ? AND until > ? LIMIT ?)"
)
#: Places acquired in the rate window, counted up to a limit (a range of the index).
_RECENT_SLOTS = (
    f"SELECT COUNT(*) FROM (SELECT 1 FROM {_STEP_SLOTS} "
    "WHERE queue = ? AND acquired_at > ? LIMIT ?)"
)
_TAKE_SLOT = (
    f"INSERT OR REPLACE INTO {_STEP_SLOTS} (queue, holder, acquired_at, until) VALUES (?, ?, ?, ?)"
)

#: Streams (``Storage.append_stream_chunk``; the rules of ``storage.stream_rules``).
_CHUNK_COLUMNS = "run_id, stream, seq, data, step_id, attempt, chunk_index, created_at"
_CHUNK_BY_KEY = (
    f"SELECT seq FROM {_STREAM_CHUNKS} WHERE run_id = ? AND stream = ? AND chunk_key = ?"
)
_LAST_CHUNK = f"SELECT MAX(seq) FROM {_STREAM_CHUNKS} WHERE run_id = ? AND stream = ?"
_INSERT_CHUNK = (
    f"INSERT INTO {_STREAM_CHUNKS} ({_CHUNK_COLUMNS}, chunk_key) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
_READ_CHUNKS = (
    f"SELECT {_CHUNK_COLUMNS} FROM {_STREAM_CHUNKS} "
    "WHERE run_id = ? AND stream = ? AND seq > ? ORDER BY seq LIMIT ?"
)
_STREAM_NAMES = f"SELECT DISTINCT stream FROM {_STREAM_CHUNKS} WHERE run_id = ? ORDER BY stream"
#: Step checkpoints (``Storage.save_step_checkpoint``; the rules of
#: ``storage.checkpoint_rules``): the upsert writes only over an older or equal attempt.
_SAVE_CHECKPOINT = (
    f"INSERT INTO {_CHECKPOINTS} (run_id, step_id, attempt, data, saved_at) "
    "VALUES (?, ?, ?, ?, ?) ON CONFLICT (run_id, step_id) DO UPDATE SET "
    "attempt = excluded.attempt, data = excluded.data, saved_at = excluded.saved_at "
    f"WHERE {_CHECKPOINTS}.attempt <= excluded.attempt"
)
_GET_CHECKPOINT = (
    f"SELECT attempt, data, saved_at FROM {_CHECKPOINTS} WHERE run_id = ? AND step_id = ?"
)
_RUN_EXISTS = f"SELECT 1 FROM {_RUNS} WHERE run_id = ?"

#: The tables and indexes, as plain DDL run through stdlib ``sqlite3``: the same
#: schema that :mod:`pyworkflow.storage.schema`'s SQLModel tables create (column
#: names, types, nullability, keys, constraint and index names; a test compares
#: the two column by column), without importing SQLAlchemy.
SCHEMA = (
    f"""CREATE TABLE IF NOT EXISTS {_RUNS} (
\trun_id VARCHAR NOT NULL,
\tworkflow_name VARCHAR NOT NULL,
\tworkflow_version VARCHAR,
\tstatus VARCHAR NOT NULL,
\tinput VARCHAR NOT NULL,
\tserializer VARCHAR NOT NULL,
\tresult VARCHAR,
\terror VARCHAR,
\terror_message VARCHAR,
\tcreated_at FLOAT NOT NULL,
\tupdated_at FLOAT NOT NULL,
\tcompleted_at FLOAT,
\tidempotency_key VARCHAR,
\tparent_run_id VARCHAR,
\twake_at FLOAT,
\tlease_owner VARCHAR,
\tlease_expires_at FLOAT,
\tlast_seq INTEGER NOT NULL,
\tqueue VARCHAR,
\tpriority INTEGER NOT NULL,
\tpartition_key VARCHAR,
\tdedup_key VARCHAR,
\tqueue_rank FLOAT,
\tadmitted_at FLOAT,
\tadmitted_by VARCHAR,
\tPRIMARY KEY (run_id),
\tCONSTRAINT uq_pyworkflow_runs_idempotency_key UNIQUE (idempotency_key)
)""",
    f"CREATE INDEX IF NOT EXISTS ix_pyworkflow_runs_workflow ON {_RUNS} (workflow_name)",
    f"CREATE INDEX IF NOT EXISTS ix_pyworkflow_runs_status ON {_RUNS} (status)",
    f"CREATE INDEX IF NOT EXISTS ix_pyworkflow_runs_wake_at ON {_RUNS} (wake_at)",
    f"CREATE INDEX IF NOT EXISTS ix_pyworkflow_runs_created ON {_RUNS} (created_at, run_id)",
    f"CREATE INDEX IF NOT EXISTS ix_pyworkflow_runs_parent ON {_RUNS} (parent_run_id)",
    f"CREATE INDEX IF NOT EXISTS ix_pyworkflow_runs_queue ON {_RUNS} (queue, status, queue_rank)",
    f"CREATE INDEX IF NOT EXISTS ix_pyworkflow_runs_admitted ON {_RUNS} (queue, admitted_at)",
    f"CREATE INDEX IF NOT EXISTS ix_pyworkflow_runs_dedup ON {_RUNS} (dedup_key)",
    f"""CREATE TABLE IF NOT EXISTS {_EVENTS} (
\trun_id VARCHAR NOT NULL,
\tseq INTEGER NOT NULL,
\ttype VARCHAR NOT NULL,
\tcorrelation_id VARCHAR,
\ttimestamp FLOAT NOT NULL,
\tpayload VARCHAR NOT NULL,
\tPRIMARY KEY (run_id, seq)
)""",
    f"""CREATE TABLE IF NOT EXISTS {_HOOKS} (
\ttoken VARCHAR NOT NULL,
\trun_id VARCHAR NOT NULL,
\tcorrelation_id VARCHAR NOT NULL,
\tcreated_at FLOAT NOT NULL,
\tschema_path VARCHAR,
\tsecret VARCHAR,
\tPRIMARY KEY (token)
)""",
    f"CREATE INDEX IF NOT EXISTS ix_pyworkflow_hooks_run_id ON {_HOOKS} (run_id)",
    f"""CREATE TABLE IF NOT EXISTS {_STEP_LEASES} (
\trun_id VARCHAR NOT NULL,
\tstep_id VARCHAR NOT NULL,
\towner VARCHAR NOT NULL,
\tlease_until FLOAT NOT NULL,
\tPRIMARY KEY (run_id, step_id)
)""",
    f"CREATE INDEX IF NOT EXISTS ix_pyworkflow_step_leases_until ON {_STEP_LEASES} (lease_until)",
    f"""CREATE TABLE IF NOT EXISTS {_SCHEDULES} (
\tname VARCHAR NOT NULL,
\tnext_fire_at FLOAT,
\tpaused INTEGER NOT NULL,
\tlease_owner VARCHAR,
\tlease_expires_at FLOAT,
\tdata VARCHAR NOT NULL,
\tPRIMARY KEY (name)
)""",
    f"CREATE INDEX IF NOT EXISTS ix_pyworkflow_schedules_next ON {_SCHEDULES} (next_fire_at)",
    f"""CREATE TABLE IF NOT EXISTS {_STEP_SLOTS} (
\tqueue VARCHAR NOT NULL,
\tholder VARCHAR NOT NULL,
\tacquired_at FLOAT NOT NULL,
\tuntil FLOAT,
\tPRIMARY KEY (queue, holder)
)""",
    f"CREATE INDEX IF NOT EXISTS ix_pyworkflow_step_slots_acquired "
    f"ON {_STEP_SLOTS} (queue, acquired_at)",
    f"""CREATE TABLE IF NOT EXISTS {_STREAM_CHUNKS} (
\trun_id VARCHAR NOT NULL,
\tstream VARCHAR NOT NULL,
\tseq INTEGER NOT NULL,
\tdata VARCHAR NOT NULL,
\tstep_id VARCHAR,
\tattempt INTEGER,
\tchunk_index INTEGER,
\tchunk_key VARCHAR,
\tcreated_at FLOAT NOT NULL,
\tPRIMARY KEY (run_id, stream, seq)
)""",
    f"CREATE UNIQUE INDEX IF NOT EXISTS uq_pyworkflow_stream_chunks_key "
    f"ON {_STREAM_CHUNKS} (run_id, stream, chunk_key)",
    f"""CREATE TABLE IF NOT EXISTS {_CHECKPOINTS} (
\trun_id VARCHAR NOT NULL,
\tstep_id VARCHAR NOT NULL,
\tattempt INTEGER NOT NULL,
\tdata VARCHAR NOT NULL,
\tsaved_at FLOAT NOT NULL,
\tPRIMARY KEY (run_id, step_id)
)""",
)
#: Columns added to existing tables after the first release, as ``ALTER TABLE ADD COLUMN``
#: adds them to a database created before (a NOT NULL one with the value its old rows
#: take): ``(table, column, definition)``, in :data:`SCHEMA`'s column order.
ADDED_COLUMNS = (
    (_RUNS, "queue", "VARCHAR"),
    (_RUNS, "priority", "INTEGER NOT NULL DEFAULT 0"),
    (_RUNS, "partition_key", "VARCHAR"),
    (_RUNS, "dedup_key", "VARCHAR"),
    (_RUNS, "queue_rank", "FLOAT"),
    (_RUNS, "admitted_at", "FLOAT"),
    (_RUNS, "admitted_by", "VARCHAR"),
)
#: Names of the tables and indexes :data:`SCHEMA` creates.
SCHEMA_OBJECTS = frozenset(
    statement.split(" IF NOT EXISTS ", 1)[1].split(None, 1)[0] for statement in SCHEMA
)

#: A request: the function to run on a connection, and the future (of the caller's
#: event loop) that receives its outcome.
_Request = tuple[Callable[[sqlite3.Connection], Any], "asyncio.Future[Any]"]
_Outcome = tuple["asyncio.Future[Any]", Any, BaseException | None]
_EventRow = tuple[str, int, str, str | None, float, str]


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
    """An autocommit connection (explicit BEGIN) usable from any one thread at a time."""
    conn = sqlite3.connect(
        path, isolation_level=None, check_same_thread=False, timeout=BUSY_TIMEOUT_MS / 1000
    )
    _switch_to_wal(conn)
    conn.execute(f"PRAGMA synchronous={synchronous}")
    conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
    return conn


def _switch_to_wal(conn: sqlite3.Connection) -> None:
    """Set WAL mode, retrying while another process creates or switches the file.

    Changing the journal mode can fail with "database is locked" without
    going through the busy handler, so it gets its own bounded retry.
    """
    deadline = time.monotonic() + BUSY_TIMEOUT_MS / 1000
    while True:
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.01)


def _create_schema(conn: sqlite3.Connection) -> None:
    """Create the tables, columns and indexes of :data:`SCHEMA` that the file lacks.

    A file that has them all is left alone without taking the write lock;
    otherwise the missing ones are created in one ``BEGIN IMMEDIATE``
    transaction, so processes opening a new file at once create it once: the
    tables first, then the columns of :data:`ADDED_COLUMNS` that a file made
    by an older version lacks (``ALTER TABLE ADD COLUMN``; a column another
    process added meanwhile is no error), then the indexes, some of which
    cover those columns.
    """
    present = {
        str(name)
        for (name,) in conn.execute(
            "SELECT name FROM sqlite_master WHERE type IN ('table', 'index')"
        )
    }
    if SCHEMA_OBJECTS <= present and not _missing_columns(conn):
        return
    conn.execute("BEGIN IMMEDIATE")
    try:
        tables = [s for s in SCHEMA if s.startswith("CREATE TABLE")]
        for statement in tables:
            conn.execute(statement)
        for table, column, definition in _missing_columns(conn):
            try:
                conn.execute(f"ALTER TABLE {table} ADD COLUMN {column} {definition}")
            except sqlite3.OperationalError as exc:
                if "duplicate column name" not in str(exc):
                    raise
        for statement in SCHEMA:
            if statement not in tables:
                conn.execute(statement)
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
        raise


def _missing_columns(conn: sqlite3.Connection) -> list[tuple[str, str, str]]:
    """The entries of :data:`ADDED_COLUMNS` whose table exists without that column."""
    missing = []
    columns: dict[str, set[str]] = {}
    for table, column, definition in ADDED_COLUMNS:
        if table not in columns:
            columns[table] = {str(r[1]) for r in conn.execute(f"PRAGMA table_info({table})")}
        if columns[table] and column not in columns[table]:
            missing.append((table, column, definition))
    return missing


#: :meth:`_Writer.inline_one` did nothing: the write goes to the writer thread.
_NOT_DONE: Any = object()


class _Busy(Exception):
    """``BEGIN IMMEDIATE`` found the write lock taken by another connection (process)."""


def _is_busy(exc: sqlite3.OperationalError) -> bool:
    return "locked" in str(exc) or "busy" in str(exc)


def _transact(conn: sqlite3.Connection, batch: Sequence[_Request]) -> tuple[bool, list[_Outcome]]:
    """Run ``batch`` in one write transaction; return (committed, outcomes).

    Each request runs inside its own SAVEPOINT when the batch has several, so
    one request's error (a ``ConcurrencyError``, say) rolls back only that
    request; a lone request that fails rolls the transaction back. Raises
    :class:`_Busy` when the write lock cannot be had within the connection's
    busy timeout, and any error of ``BEGIN``/``COMMIT`` after rolling back:
    the connection is left outside a transaction whatever happens.
    """
    try:
        conn.execute("BEGIN IMMEDIATE")
    except sqlite3.OperationalError as exc:
        if _is_busy(exc):
            raise _Busy(str(exc)) from exc
        raise
    outcomes: list[_Outcome] = []
    try:
        if len(batch) == 1:
            fn, future = batch[0]
            try:
                outcomes.append((future, fn(conn), None))
            except Exception as exc:
                conn.execute("ROLLBACK")
                return False, [(future, None, exc)]
        else:
            for fn, future in batch:
                conn.execute("SAVEPOINT request")
                try:
                    outcomes.append((future, fn(conn), None))
                except Exception as exc:
                    conn.execute("ROLLBACK TO request")
                    outcomes.append((future, None, exc))
                conn.execute("RELEASE request")
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
        raise
    return True, outcomes


def _settle(outcomes: Sequence[_Outcome]) -> None:
    """Hand each outcome to its future (on the future's loop); cancelled ones are skipped."""
    for future, result, error in outcomes:
        if future.done():
            continue
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(result)


def _deliver(outcomes: Sequence[_Outcome]) -> None:
    """From a worker thread: settle the futures, one wake-up per event loop."""
    by_loop: dict[asyncio.AbstractEventLoop, list[_Outcome]] = {}
    for outcome in outcomes:
        by_loop.setdefault(outcome[0].get_loop(), []).append(outcome)
    for loop, group in by_loop.items():
        with contextlib.suppress(RuntimeError):  # the caller's loop is closed: nobody waits
            loop.call_soon_threadsafe(_settle, group)


class _Writer(threading.Thread):
    """Owns the write connection; commits every queued request in one transaction.

    The connection is also used on the caller's event loop (``inline``), without
    a thread hop, whenever this thread has nothing queued or in hand: ``lock``
    is held by whichever side runs a transaction. ``busy`` is set while requests
    are queued or being committed here; callers then queue behind them (group
    commit under load, and no overtaking). ``contended`` is set when several
    tasks wrote at once, and cleared when this thread commits a lone request
    with nothing queued: in between, every write comes here, so the loop never
    waits for a commit (an fsync with ``synchronous=FULL``) while other tasks
    have work. A request cancelled while queued is
    skipped; one already running completes. Nothing a request does can stop the
    thread.
    """

    def __init__(self, conn: sqlite3.Connection) -> None:
        super().__init__(name="pyworkflow-sqlite-writer", daemon=True)
        self.conn = conn
        self.lock = threading.Lock()
        self.requests: queue.SimpleQueue[list[_Request] | None] = queue.SimpleQueue()
        self.busy = False
        self.contended = False
        self.commit_count = 0
        self._busy_timeout_ms = BUSY_TIMEOUT_MS

    def submit(self, batch: list[_Request], *, contended: bool = False) -> None:
        """Queue ``batch`` for this thread (callers arriving now queue behind it).

        ``contended``: the batch comes from several tasks at once; writes stay
        off the caller's thread until this thread commits a lone write again.
        """
        if contended:
            self.contended = True
        self.busy = True
        self.requests.put(batch)

    def run(self) -> None:
        stop = False
        try:
            while not stop:
                item = self.requests.get()
                self.busy = True
                batch: list[_Request] = []
                while True:
                    if item is None:
                        stop = True
                        break
                    batch.extend(request for request in item if not request[1].done())
                    if len(batch) >= MAX_BATCH:
                        break
                    try:
                        item = self.requests.get_nowait()
                    except queue.Empty:
                        break
                outcomes: list[_Outcome] = []
                if batch:
                    with self.lock:
                        outcomes = self._commit(batch)
                # Before the callers hear: their next write may go inline.
                self.busy = False
                if not self.requests.empty():
                    self.busy = True
                elif len(batch) == 1:
                    self.contended = False
                _deliver(outcomes)
        finally:
            with self.lock:
                self.conn.close()

    def _commit(self, batch: list[_Request]) -> list[_Outcome]:
        """Commit ``batch``, waiting up to ``BUSY_TIMEOUT_MS`` for other processes.

        The wait is ours, not SQLite's busy handler: ``BEGIN IMMEDIATE`` is tried
        again after pauses growing from :data:`LOCK_PAUSE_FIRST` to
        :data:`LOCK_PAUSE_MAX`, so the lock is taken soon after it is freed.
        """
        self._set_busy_timeout(0)
        deadline = time.monotonic() + BUSY_TIMEOUT_MS / 1000
        pause = LOCK_PAUSE_FIRST
        while True:
            try:
                committed, outcomes = _transact(self.conn, batch)
            except _Busy as exc:
                if time.monotonic() < deadline:
                    time.sleep(pause)
                    pause = min(pause * 2, LOCK_PAUSE_MAX)
                    continue
                error: BaseException = exc.__cause__ or exc
                return [(future, None, error) for _, future in batch]
            except Exception as exc:  # a bug or a failed COMMIT must not strand the callers
                return [(future, None, exc) for _, future in batch]
            self.commit_count += committed
            return outcomes

    def inline_one(self, fn: Callable[[sqlite3.Connection], Any]) -> Any:
        """Commit ``fn`` alone on the calling thread if the write lock is free at once.

        :func:`_transact` of one request, without its batch bookkeeping (the
        path of a lone write). :data:`_NOT_DONE` (nothing done) when this thread
        is busy or contended, or when another process holds the file's write
        lock. An error of ``fn`` is raised after the rollback, as is one of the
        transaction itself.
        """
        if self.busy or self.contended or not self.lock.acquire(blocking=False):
            return _NOT_DONE
        try:
            if self._busy_timeout_ms:
                self._set_busy_timeout(0)
            conn = self.conn
            try:
                conn.execute("BEGIN IMMEDIATE")
            except sqlite3.OperationalError as exc:
                if _is_busy(exc):
                    return _NOT_DONE
                raise
            try:
                result = fn(conn)
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    with contextlib.suppress(sqlite3.Error):
                        conn.execute("ROLLBACK")
                raise
            self.commit_count += 1
            return result
        finally:
            self.lock.release()

    def _set_busy_timeout(self, ms: int) -> None:
        if self._busy_timeout_ms != ms:
            self.conn.execute(f"PRAGMA busy_timeout={ms}")
            self._busy_timeout_ms = ms


class _Reader(threading.Thread):
    """Runs read requests on its own connection (WAL: beside the writer)."""

    def __init__(self, conn: sqlite3.Connection, requests: queue.SimpleQueue[_Request | None]):
        super().__init__(name="pyworkflow-sqlite-reader", daemon=True)
        self.conn = conn
        self.requests = requests

    def run(self) -> None:
        try:
            while (item := self.requests.get()) is not None:
                fn, future = item
                if future.done():
                    continue
                try:
                    outcome: _Outcome = (future, fn(self.conn), None)
                except Exception as exc:
                    outcome = (future, None, exc)
                _deliver([outcome])
        finally:
            self.conn.close()


class SQLiteStorage(Storage):
    """Runs and events in one SQLite file, safe for several processes.

    The schema (tables ``pyworkflow_runs``, ``pyworkflow_events``,
    ``pyworkflow_hooks``, ``pyworkflow_step_leases``; :data:`SCHEMA`) is
    created, and reads and writes run, through stdlib ``sqlite3`` alone:
    SQLAlchemy and SQLModel are not imported. Writes go through one writer
    thread that commits everything queued at once (group commit;
    ``commit_count`` counts the commits); ``BEGIN IMMEDIATE`` serializes
    writers across processes, waiting up to ``BUSY_TIMEOUT_MS``. Reads use a
    small pool of reader connections (WAL lets them run beside the writer).
    ``synchronous`` is ``FULL`` (default: nothing committed is lost on power
    failure) or ``NORMAL`` (faster; the last commits may be lost on power
    failure or OS crash, never corrupted).
    """

    def __init__(self, url: str, *, synchronous: str = "FULL", inline: bool = True) -> None:
        self.url = url
        self.path = path_from_url(url)
        self.synchronous = synchronous.upper()
        if self.synchronous not in SYNCHRONOUS:
            raise ConfigError(
                f"invalid SQLite synchronous mode {synchronous!r}; use one of {SYNCHRONOUS}"
            )
        #: Whether transactions and small reads may run on the caller's event loop
        #: when the threads are idle (False: always through the threads).
        self.inline = inline
        self._writer: _Writer | None = None
        self._readers: list[_Reader] = []
        self._reads: queue.SimpleQueue[_Request | None] = queue.SimpleQueue()
        # The connection small reads use on the caller's loop, under its lock.
        self._loop_reader: sqlite3.Connection | None = None
        self._loop_reader_lock = threading.Lock()
        # The loop whose current pass has written (None: none), whether a write
        # of that pass was committed inline (1) or not (0), and its writes queued
        # for the writer thread at the end of the pass.
        self._pass_loop: asyncio.AbstractEventLoop | None = None
        self._pass_writes = 0
        self._pending: list[_Request] = []
        self._closed_commits = 0

    @property
    def commit_count(self) -> int:
        """Transactions committed by this instance so far (a benchmark reads it)."""
        return self._closed_commits + (self._writer.commit_count if self._writer else 0)

    async def open(self, task_group: anyio.abc.TaskGroup | None = None) -> None:
        if self._writer is not None:
            return
        writer_conn, *reader_conns = await anyio.to_thread.run_sync(self._open_connections)
        self._writer = _Writer(writer_conn)
        self._writer.start()
        self._loop_reader = reader_conns.pop()
        self._readers = [_Reader(conn, self._reads) for conn in reader_conns]
        for reader in self._readers:
            reader.start()

    def _open_connections(self) -> list[sqlite3.Connection]:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            conns = [_connect(self.path, self.synchronous)]  # switches the file to WAL first
        except (OSError, sqlite3.DatabaseError) as exc:
            raise self._open_error(exc) from exc
        try:
            _create_schema(conns[0])
            conns += [_connect(self.path, self.synchronous) for _ in range(READERS + 1)]
        except BaseException as exc:
            for conn in conns:
                conn.close()
            if isinstance(exc, sqlite3.DatabaseError):
                raise self._open_error(exc) from exc
            raise
        return conns

    def _open_error(self, exc: BaseException) -> ConfigError:
        """A ConfigError naming the file, the ``storage`` URL and what to do."""
        path = str(self.path.absolute())
        where = f"SQLite storage file {path!r} (config key 'storage' = {self.url!r})"
        text = str(getattr(exc, "orig", None) or exc)
        if "not a database" in text:
            advice = (
                "the file exists but is not a SQLite database: point 'storage' at a new path "
                "or at a PyWorkflow database, or move that file away"
            )
        elif "malformed" in text:
            advice = "the file is damaged: restore it from a backup, or point 'storage' elsewhere"
        else:
            advice = (
                "check that the path is a file (not a folder) in a folder this process can "
                "create and write to, or point 'storage' elsewhere"
            )
        return ConfigError(f"cannot open {where}: {type(exc).__name__}: {text}; {advice}")

    async def close(self) -> None:
        self._flush()  # writes of this pass: committed here or queued before the stop
        writer, readers = self._writer, self._readers
        self._writer, self._readers = None, []
        threads: list[threading.Thread] = [*readers]
        for _ in readers:
            self._reads.put(None)
        if writer is not None:
            writer.requests.put(None)  # after every request already queued
            threads.append(writer)
        for thread in threads:
            await anyio.to_thread.run_sync(thread.join)
        if writer is not None:
            self._closed_commits += writer.commit_count
        with self._loop_reader_lock:
            if self._loop_reader is not None:
                self._loop_reader.close()
                self._loop_reader = None

    # ----- plumbing -----

    async def _write(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``fn`` in a write transaction; return once it is committed.

        Writes are collected per pass of the event loop. The first write of a
        pass commits at once on the loop's thread (no thread hop) when the
        writer thread is idle and uncontended and the file's write lock is free
        at once; the caller then yields once, as it would have waiting for the
        thread. The pass's other writes, or all of them otherwise, go to the
        writer thread together at the end of the pass: one group commit, while
        the loop goes on. Writes from several tasks in one pass mark the writer
        contended (see :class:`_Writer`).
        """
        writer = self._writer
        if writer is None:
            raise RuntimeError(f"storage {self.url} is not open")
        loop = asyncio.get_running_loop()
        if self._pass_loop is None and self.inline:
            self._pass_loop = loop
            loop.call_soon(self._flush)
            self._pass_writes = 1  # a write of this pass ran here (even if it failed)
            result = writer.inline_one(fn)
            if result is not _NOT_DONE:
                await asyncio.sleep(0)  # a pass for the other tasks, as a hop would give
                return cast(T, result)
            self._pass_writes = 0
        future: asyncio.Future[T] = loop.create_future()
        if self._pass_loop is loop and self.inline:
            self._pending.append((fn, future))
        else:  # inline=False, or another loop's pass is open: no batching with it
            writer.submit([(fn, future)])
        return await future

    def _flush(self) -> None:
        """End the loop's pass: hand its queued writes to the writer thread as one batch."""
        batch = [request for request in self._pending if not request[1].done()]
        contended = self._pass_writes + len(self._pending) > 1
        self._pending, self._pass_loop, self._pass_writes = [], None, 0
        if not batch:
            return
        writer = self._writer
        if writer is None:
            _settle([(f, None, RuntimeError(f"storage {self.url} is not open")) for _, f in batch])
        else:
            writer.submit(batch, contended=contended)

    async def _read(self, fn: Callable[[sqlite3.Connection], T], *, inline: bool = True) -> T:
        """Run ``fn`` on a reader connection: the loop's own when free, else a thread's.

        Reads that may scan many rows pass ``inline=False``.
        """
        if not self._readers:
            raise RuntimeError(f"storage {self.url} is not open")
        if inline and self.inline and self._loop_reader_lock.acquire(blocking=False):
            try:
                conn = self._loop_reader
                if conn is not None:
                    return fn(conn)
            except sqlite3.OperationalError as exc:
                if not _is_busy(exc):
                    raise
            finally:
                self._loop_reader_lock.release()
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._reads.put((fn, future))
        return await future

    def _last_seq(self, conn: sqlite3.Connection, run_id: str) -> int:
        row = conn.execute(f"SELECT last_seq FROM {_RUNS} WHERE run_id = ?", (run_id,)).fetchone()
        if row is None:
            raise RunNotFoundError(f"no run with id {run_id!r} in {self.url}")
        return int(row[0])

    # ----- the Storage interface -----

    async def create_run(self, run: Run, events: Sequence[NewEvent]) -> tuple[Run, bool]:
        stored = attrs.evolve(run, last_seq=len(events))
        values = run_to_values(stored)
        rows = event_rows(run.run_id, 0, events)
        hooks = hook_changes(run.run_id, events)
        key = run.idempotency_key
        dedup = None if run.dedup_key is None else (run.dedup_key, run.queue)

        def write(conn: sqlite3.Connection) -> tuple[Run, bool]:
            if key is not None:
                row = conn.execute(f"{_RUN_SELECT} WHERE idempotency_key = ?", (key,)).fetchone()
                if row is not None:
                    return run_from_row(row), False
            if dedup is not None:
                row = conn.execute(_DEDUP_SELECT, dedup).fetchone()
                if row is not None:
                    return run_from_row(row), False
            conn.execute(_INSERT_RUN, values)
            _insert_events(conn, rows)
            _apply_hooks(conn, run.run_id, *hooks)
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
        parent_run_id: str | None = None,
    ) -> RunPage:
        where: list[str] = []
        params: list[Any] = []
        if status is not None:
            where.append("status = ?")
            params.append(status.value)
        if workflow is not None:
            where.append("workflow_name = ?")
            params.append(workflow)
        if parent_run_id is not None:
            where.append("parent_run_id = ?")
            params.append(parent_run_id)
        if cursor is not None:
            created, run_id = decode_cursor(cursor)
            where.append("(created_at < ? OR (created_at = ? AND run_id < ?))")
            params.extend([created, created, run_id])
        clause = f" WHERE {' AND '.join(where)}" if where else ""
        sql = f"{_RUN_SELECT}{clause} ORDER BY created_at DESC, run_id DESC LIMIT ?"

        def read(conn: sqlite3.Connection) -> list[Run]:
            return [run_from_row(r) for r in conn.execute(sql, (*params, limit + 1))]

        return page_from(await self._read(read, inline=False), limit)

    async def get_events(self, run_id: str, after_seq: int = 0) -> list[Event]:
        def read(conn: sqlite3.Connection) -> list[Event]:
            rows = conn.execute(_EVENT_SELECT, (run_id, after_seq)).fetchall()
            if not rows:
                self._last_seq(conn, run_id)  # RunNotFoundError for an unknown run
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
        # Everything that does not need the database is prepared here, off the writer thread.
        last = expected_seq + len(events)
        now = utcnow().timestamp()
        if patch is None:  # a step's append: one constant statement (cached by sqlite3)
            update, update_params = _APPEND, (last, now, run_id, expected_seq)
        else:
            sets = ["last_seq = ?", "updated_at = ?"]
            params: list[Any] = [last, now]
            _patch_sql(patch, owner, sets, params)
            update = f"UPDATE {_RUNS} SET {', '.join(sets)} WHERE run_id = ? AND last_seq = ?"
            update_params = (*params, run_id, expected_seq)
        rows = event_rows(run_id, expected_seq, events)
        created, disposed = hook_changes(run_id, events)

        def write(conn: sqlite3.Connection) -> int:
            if conn.execute(update, update_params).rowcount != 1:
                raise ConcurrencyError(run_id, expected_seq, self._last_seq(conn, run_id))
            _insert_events(conn, rows)
            if created or disposed:
                _apply_hooks(conn, run_id, created, disposed)
            return last

        return await self._write(write)

    async def claim_runs(
        self, owner: str, now: datetime, limit: int, lease_for: timedelta
    ) -> list[Run]:
        at = now.timestamp()
        if not await self._read(lambda conn: conn.execute(_ANY_DUE, (at, at)).fetchall()):
            return []  # nothing due: no write transaction (the claim itself stays atomic)
        params = (owner, at + lease_for.total_seconds(), at, at, limit)

        def write(conn: sqlite3.Connection) -> list[Any]:
            return conn.execute(_CLAIM, params).fetchall()

        runs = [run_from_row(r) for r in await self._write(write)]
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
        sql = _CLAIM_ONE
        params: tuple[Any, ...] = (owner, at + lease_for.total_seconds(), run_id, at, at)
        if take_over_prefix is not None:
            sql += _TAKE_OVER
            params += (len(take_over_prefix), take_over_prefix)
        sql += _RETURNING_RUN

        def write(conn: sqlite3.Connection) -> Any:
            return conn.execute(sql, params).fetchone()

        row = await self._write(write)
        return None if row is None else run_from_row(row)

    async def set_step_lease(
        self,
        run_id: str,
        step_id: str,
        owner: str | None,
        until: datetime | None,
        *,
        if_owner: str | None = None,
    ) -> bool:
        key = (run_id, step_id)

        def write(conn: sqlite3.Connection) -> bool:
            row = conn.execute(
                f"{_STEP_LEASE_SELECT} WHERE run_id = ? AND step_id = ?", key
            ).fetchone()
            current = None if row is None else step_lease_from_row(row)
            written, lease = swap_step_lease(current, run_id, step_id, owner, until, if_owner)
            if not written:
                return False
            if lease is None:
                conn.execute(f"DELETE FROM {_STEP_LEASES} WHERE run_id = ? AND step_id = ?", key)
            else:
                conn.execute(_UPSERT_STEP_LEASE, step_lease_to_values(lease))
            return True

        return await self._write(write)

    async def get_step_leases(self, run_id: str) -> dict[str, StepLease]:
        def read(conn: sqlite3.Connection) -> list[Any]:
            return conn.execute(f"{_STEP_LEASE_SELECT} WHERE run_id = ?", (run_id,)).fetchall()

        leases = [step_lease_from_row(r) for r in await self._read(read)]
        return {lease.step_id: lease for lease in leases}

    async def expired_step_leases(self, now: datetime, limit: int) -> list[StepLease]:
        params = (now.timestamp(), limit)

        def read(conn: sqlite3.Connection) -> list[Any]:
            return conn.execute(_EXPIRED_STEP_LEASES, params).fetchall()

        return [step_lease_from_row(r) for r in await self._read(read)]

    async def renew_lease(self, run_id: str, owner: str, until: datetime) -> bool:
        params = (until.timestamp(), run_id, owner)

        def write(conn: sqlite3.Connection) -> bool:
            cursor = conn.execute(
                f"UPDATE {_RUNS} SET lease_expires_at = ? WHERE run_id = ? AND lease_owner = ?",
                params,
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

        return from_epoch(await self._read(read))

    async def due_timers(self, now: datetime, limit: int) -> list[tuple[str, datetime]]:
        def read(conn: sqlite3.Connection) -> list[tuple[str, float]]:
            return conn.execute(_DUE, (now.timestamp(), limit)).fetchall()

        tz = now.tzinfo
        return [(r, datetime.fromtimestamp(w, tz=tz)) for r, w in await self._read(read)]

    async def get_hook(self, token: str) -> HookRecord:
        return await self._read(lambda conn: _find_hook(conn, token))

    async def append_hook_payload(
        self, token: str, payload: Mapping[str, Any], now: datetime
    ) -> tuple[str, int]:
        at = now.timestamp()
        data = dump_payload(payload)

        def write(conn: sqlite3.Connection) -> tuple[str, int]:
            hook = _find_hook(conn, token)
            seq = self._last_seq(conn, hook.run_id) + 1
            conn.execute(
                _INSERT_EVENT,
                (hook.run_id, seq, EventType.HOOK_RECEIVED.value, hook.correlation_id, at, data),
            )
            conn.execute(
                f"UPDATE {_RUNS} SET last_seq = ?, updated_at = ?, wake_at = ? WHERE run_id = ?",
                (seq, at, at, hook.run_id),
            )
            return hook.run_id, seq

        return await self._write(write)

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
        if limit <= 0:
            return []
        if not await self._read(lambda conn: conn.execute(_ANY_QUEUED, (queue,)).fetchall()):
            return []  # nothing waiting: no write transaction (admission itself stays atomic)
        at = now.timestamp()
        admit_params = (at, owner, (now + lease_for).timestamp(), at, worker)

        def write(conn: sqlite3.Connection) -> list[Run]:
            room = _admission_room(conn, queue, limits, now, limit, worker)
            per_key: dict[str, int] | None = None
            full: set[str] = set()
            cap = limits.partition_concurrency
            if cap is not None:
                per_key = {str(k): int(n) for k, n in conn.execute(_ACTIVE_BY_KEY, (queue,))}
                full = {k for k, n in per_key.items() if n >= cap}
            admitted: list[Run] = []
            # Each pass reads waiting runs outside the full partitions; every row read is
            # admitted or has its partition fill up, so the next pass reads new rows only.
            while room > 0:
                wanted = room if per_key is None else room + _SCAN_SLACK
                rows = conn.execute(_WAITING, (queue, json.dumps(sorted(full)), wanted)).fetchall()
                chosen: list[str] = []
                for run_id, key in rows:
                    if len(chosen) == room:
                        break
                    if per_key is not None and cap is not None and key is not None:
                        if key in full:
                            continue
                        per_key[key] = per_key.get(key, 0) + 1
                        if per_key[key] >= cap:
                            full.add(key)
                    chosen.append(str(run_id))
                if chosen:
                    order = {run_id: i for i, run_id in enumerate(chosen)}
                    runs = conn.execute(_ADMIT, (*admit_params, json.dumps(chosen))).fetchall()
                    admitted += sorted(map(run_from_row, runs), key=lambda r: order[r.run_id])
                    room -= len(chosen)
                if len(rows) < wanted:
                    break  # no more waiting rows
            return admitted

        return await self._write(write)

    async def queue_stats(self, since: datetime) -> list[QueueStats]:
        def read(conn: sqlite3.Connection) -> list[Any]:
            return conn.execute(_QUEUE_STATS, (since.timestamp(),)).fetchall()

        rows = await self._read(read, inline=False)
        return [QueueStats(str(q), int(w), int(a), int(n)) for q, w, a, n in rows if w or a or n]

    # ----- schedules -----

    async def create_schedule(self, schedule: Schedule) -> tuple[Schedule, bool]:
        values = schedule_to_values(schedule)

        def write(conn: sqlite3.Connection) -> tuple[Schedule, bool]:
            if conn.execute(_INSERT_SCHEDULE, values).rowcount == 1:
                return schedule, True
            return self._find_schedule(conn, schedule.name), False

        return await self._write(write)

    async def put_schedule(self, schedule: Schedule) -> None:
        values = schedule_to_values(schedule)
        await self._write(lambda conn: conn.execute(_PUT_SCHEDULE, values))

    async def get_schedule(self, name: str) -> Schedule:
        return await self._read(lambda conn: self._find_schedule(conn, name))

    def _find_schedule(self, conn: sqlite3.Connection, name: str) -> Schedule:
        row = conn.execute(f"{_SCHEDULE_SELECT} WHERE name = ?", (name,)).fetchone()
        if row is None:
            raise ScheduleNotFoundError(f"no schedule named {name!r} in {self.url}")
        return schedule_from_data(row[0])

    async def list_schedules(self) -> list[Schedule]:
        def read(conn: sqlite3.Connection) -> list[Any]:
            return conn.execute(f"{_SCHEDULE_SELECT} ORDER BY name").fetchall()

        return [schedule_from_data(data) for (data,) in await self._read(read, inline=False)]

    async def delete_schedule(self, name: str) -> bool:
        def write(conn: sqlite3.Connection) -> bool:
            return conn.execute(f"DELETE FROM {_SCHEDULES} WHERE name = ?", (name,)).rowcount == 1

        return await self._write(write)

    async def claim_schedules(
        self, owner: str, now: datetime, limit: int, lease_for: timedelta
    ) -> list[Schedule]:
        at = now.timestamp()
        if limit <= 0 or not await self._read(
            lambda conn: conn.execute(_ANY_SCHEDULE_DUE, (at, at)).fetchall()
        ):
            return []  # nothing due: no write transaction (the claim itself stays atomic)
        params = (owner, at + lease_for.total_seconds(), at, at, limit)

        def write(conn: sqlite3.Connection) -> list[Any]:
            return conn.execute(_CLAIM_SCHEDULES, params).fetchall()

        rows = sorted(await self._write(write), key=lambda row: (row[0], row[1]))
        return [schedule_from_data(data) for _, _, data in rows]

    async def advance_schedule(
        self,
        name: str,
        owner: str,
        expected_next_fire_at: datetime,
        next_fire_at: datetime | None,
        last_fire_at: datetime | None,
        last_run_id: str | None,
    ) -> bool:
        expected = to_epoch(expected_next_fire_at)

        def write(conn: sqlite3.Connection) -> bool:
            row = conn.execute(
                f"SELECT lease_owner, next_fire_at, data FROM {_SCHEDULES} WHERE name = ?",
                (name,),
            ).fetchone()
            if row is None or row[0] != owner:
                return False
            written: bool = row[1] == expected
            data = row[2]
            if written:
                fired = attrs.evolve(
                    schedule_from_data(data),
                    next_fire_at=next_fire_at,
                    last_fire_at=last_fire_at,
                    last_run_id=last_run_id,
                )
                data = schedule_to_data(fired)
            conn.execute(
                f"UPDATE {_SCHEDULES} SET next_fire_at = ?, data = ?, lease_owner = NULL, "
                "lease_expires_at = NULL WHERE name = ?",
                (to_epoch(next_fire_at) if written else row[1], data, name),
            )
            return written

        return await self._write(write)

    async def next_schedule_at(self) -> datetime | None:
        def read(conn: sqlite3.Connection) -> float | None:
            sql = f"SELECT MIN(next_fire_at) FROM {_SCHEDULES} WHERE paused = 0"
            row = conn.execute(sql).fetchone()
            return None if row is None else row[0]

        return from_epoch(await self._read(read))

    # ----- step queues -----

    async def acquire_step_slot(
        self,
        queue: str,
        holder: str,
        limits: QueueLimits,
        now: datetime,
        lease_for: timedelta,
    ) -> bool:
        at = now.timestamp()
        until = (now + lease_for).timestamp()
        forget_before = (now - slot_memory(limits)).timestamp()  # rows no window counts

        def write(conn: sqlite3.Connection) -> bool:
            if conn.execute(_RENEW_HELD_SLOT, (until, queue, holder, at)).rowcount == 1:
                return True  # already held: renewed, nothing else changes
            conn.execute(_PRUNE_SLOTS, (queue, forget_before, at))
            if limits.concurrency is not None:
                held = (queue, holder, at, limits.concurrency)
                if conn.execute(_HELD_SLOTS, held).fetchone()[0] >= limits.concurrency:
                    return False
            if limits.rate is not None:
                count, period = limits.rate
                recent = (queue, (now - period).timestamp(), count)
                if conn.execute(_RECENT_SLOTS, recent).fetchone()[0] >= count:
                    return False
            conn.execute(_TAKE_SLOT, (queue, holder, at, until))
            return True

        return await self._write(write)

    async def renew_step_slot(self, queue: str, holder: str, until: datetime) -> bool:
        params = (until.timestamp(), queue, holder)

        def write(conn: sqlite3.Connection) -> bool:
            cursor = conn.execute(
                f"UPDATE {_STEP_SLOTS} SET until = ? "
                "WHERE queue = ? AND holder = ? AND until IS NOT NULL",
                params,
            )
            return cursor.rowcount == 1

        return await self._write(write)

    async def release_step_slot(self, queue: str, holder: str) -> None:
        def write(conn: sqlite3.Connection) -> None:
            conn.execute(
                f"UPDATE {_STEP_SLOTS} SET until = NULL WHERE queue = ? AND holder = ?",
                (queue, holder),
            )

        await self._write(write)

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
        now = to_epoch(utcnow())

        def write(conn: sqlite3.Connection) -> int:
            self._check_run(conn, run_id)
            if key is not None:
                row = conn.execute(_CHUNK_BY_KEY, (run_id, stream, key)).fetchone()
                if row is not None:
                    return int(row[0])
            seq = int(conn.execute(_LAST_CHUNK, (run_id, stream)).fetchone()[0] or 0) + 1
            values = (run_id, stream, seq, data, step_id, attempt, index, now, key)
            conn.execute(_INSERT_CHUNK, values)
            return seq

        return await self._write(write)

    async def read_stream(
        self, run_id: str, stream: str, after_seq: int = 0, limit: int = 1000
    ) -> list[StreamChunk]:
        check_read(run_id, stream, after_seq, limit)

        def read(conn: sqlite3.Connection) -> list[Any]:
            self._check_run(conn, run_id)
            return conn.execute(_READ_CHUNKS, (run_id, stream, after_seq, limit)).fetchall()

        return [chunk_from_row(row) for row in await self._read(read, inline=limit <= 100)]

    async def list_streams(self, run_id: str) -> list[str]:
        def read(conn: sqlite3.Connection) -> list[Any]:
            self._check_run(conn, run_id)
            return conn.execute(_STREAM_NAMES, (run_id,)).fetchall()

        return [str(row[0]) for row in await self._read(read, inline=False)]

    # ----- step checkpoints -----

    async def save_step_checkpoint(
        self, run_id: str, step_id: str, attempt: int, data: str
    ) -> bool:
        check_checkpoint(run_id, step_id, attempt, data, self.max_payload_bytes)
        now = to_epoch(utcnow())

        def write(conn: sqlite3.Connection) -> bool:
            self._check_run(conn, run_id)
            cursor = conn.execute(_SAVE_CHECKPOINT, (run_id, step_id, attempt, data, now))
            return cursor.rowcount > 0

        written: bool = await self._write(write)
        return written

    async def get_step_checkpoint(self, run_id: str, step_id: str) -> StepCheckpoint | None:
        check_checkpoint_key(run_id, step_id)

        def read(conn: sqlite3.Connection) -> Any:
            return conn.execute(_GET_CHECKPOINT, (run_id, step_id)).fetchone()

        row = await self._read(read, inline=True)
        return None if row is None else checkpoint_from_row((run_id, step_id, *row))

    def _check_run(self, conn: sqlite3.Connection, run_id: str) -> None:
        if conn.execute(_RUN_EXISTS, (run_id,)).fetchone() is None:
            raise RunNotFoundError(f"no run with id {run_id!r} in {self.url}")


def _admission_room(
    conn: sqlite3.Connection,
    queue: str,
    limits: QueueLimits,
    now: datetime,
    limit: int,
    worker: str | None,
) -> int:
    """How many runs ``queue`` may admit now under the limits other than partitions.

    Each admission counts once against the concurrency, the worker's
    concurrency and the rate window alike, so the walk of
    :meth:`Storage.admit_queued_runs` stops after the smallest room left.
    """
    room = limit
    if limits.concurrency is not None or (
        limits.worker_concurrency is not None and worker is not None
    ):
        active, by_worker = conn.execute(_ACTIVE_COUNT, (worker, queue)).fetchone()
        if limits.concurrency is not None:
            room = min(room, limits.concurrency - int(active))
        if limits.worker_concurrency is not None and worker is not None:
            room = min(room, limits.worker_concurrency - int(by_worker))
    if limits.rate is not None and room > 0:
        count, period = limits.rate
        since = (now - period).timestamp()
        (recent,) = conn.execute(_ADMITTED_SINCE, (queue, since)).fetchone()
        room = min(room, count - int(recent))
    return room


def _insert_events(conn: sqlite3.Connection, rows: list[_EventRow]) -> None:
    if len(rows) == 1:
        conn.execute(_INSERT_EVENT, rows[0])
    elif rows:
        conn.executemany(_INSERT_EVENT, rows)


def _patch_sql(patch: RunPatch, owner: str | None, sets: list[str], params: list[Any]) -> None:
    """Add ``patch``'s assignments to an UPDATE."""
    for name, value in patch_values(patch).items():
        sets.append(f"{name} = ?")
        params.append(value)
    if patch.release_lease and owner is not None:
        # SET expressions see the old row, so both test the lease being released.
        sets.append("lease_owner = CASE WHEN lease_owner = ? THEN NULL ELSE lease_owner END")
        sets.append(
            "lease_expires_at = CASE WHEN lease_owner = ? THEN NULL ELSE lease_expires_at END"
        )
        params.extend([owner, owner])


def _apply_hooks(
    conn: sqlite3.Connection, run_id: str, created: list[HookRecord], disposed: list[str]
) -> None:
    """Apply the rule of :func:`hook_changes`: this run's disposed hooks go first, then inserts."""
    for token in disposed:
        conn.execute(f"DELETE FROM {_HOOKS} WHERE token = ? AND run_id = ?", (token, run_id))
    for hook in created:
        try:
            conn.execute(_INSERT_HOOK, hook_to_values(hook))
        except sqlite3.IntegrityError:
            row = conn.execute(_HOOK_SELECT, (hook.token,)).fetchone()
            raise hook_conflict_error(hook.token, row[1] if row else "?") from None


def _find_hook(conn: sqlite3.Connection, token: str) -> HookRecord:
    row = conn.execute(_HOOK_SELECT, (token,)).fetchone()
    if row is None:
        raise HookNotFoundError(f"no live hook with token {token!r}")
    return hook_from_row(row)
