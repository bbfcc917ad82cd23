"""The schema version table and the upgrade path: a minimal versioned DDL runner.

Each :class:`Migration` has a version number and DDL statements. :func:`migrate`
applies the ones the database has not seen, in order, while holding a MySQL
named lock (``GET_LOCK``) on the database, so many workers starting at once
upgrade the schema exactly once; each version is recorded in
``pyworkflow_schema_version`` after its statements ran. MySQL commits DDL
statement by statement, so every statement is idempotent (``IF NOT EXISTS``):
a migration cut off half-way is completed by the next start. A database newer
than this code is refused.

The tables are those of :mod:`pyworkflow.storage.schema` (the SQLModel tables
the SQLite and PostgreSQL backends use), written out as MySQL DDL because
MySQL needs lengths and types SQLModel leaves open (a test compares them):

- identifiers, names and keys are ``VARCHAR(255)`` (an index key of utf8mb4
  text may hold 3072 bytes, 768 characters, over all its columns);
  payloads, results, inputs and JSON documents are ``LONGTEXT``;
- times are epoch seconds in ``DOUBLE`` (a Python float round-trips exactly);
  counters and sequence numbers are ``BIGINT``;
- text compares as Python compares it, by code point, case- and
  trailing-space-sensitive: collation ``utf8mb4_nopad_bin`` on MariaDB,
  ``utf8mb4_0900_bin`` on MySQL 8;
- one live run per ``(queue, dedup_key)`` (PostgreSQL's partial unique index) is a
  unique index over two stored generated columns that are NULL once the run ended.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Sequence

import attrs

from pyworkflow.errors import ConfigError
from pyworkflow.models import ACTIVE_STATUSES, RunStatus

__all__ = ["LATEST", "MIGRATIONS", "VERSION_TABLE", "Migration", "migrate"]

VERSION_TABLE = "pyworkflow_schema_version"
#: Seconds a starting process waits for another one's migration.
MIGRATION_LOCK_SECONDS = 300

#: Statuses under which a run holds its ``(queue, dedup_key)``: queued, and the active ones.
_LIVE = ", ".join(
    f"'{s}'" for s in sorted([RunStatus.QUEUED.value, *(a.value for a in ACTIVE_STATUSES)])
)
_LIVE_RUN = f"dedup_key IS NOT NULL AND status IN ({_LIVE})"
_TABLE = "ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE={collation}"
_ID = "VARCHAR(255)"

_VERSION_DDL = (
    f"CREATE TABLE IF NOT EXISTS {VERSION_TABLE} ("
    "version INT NOT NULL PRIMARY KEY, "
    "description VARCHAR(255) NOT NULL, "
    f"applied_at DOUBLE NOT NULL) {_TABLE}"
)

#: Version 1: every table of ``pyworkflow.storage.schema`` as of this plugin's first release.
_TABLES = (
    "CREATE TABLE IF NOT EXISTS pyworkflow_runs ("
    f"run_id {_ID} NOT NULL, "
    f"workflow_name {_ID} NOT NULL, "
    f"workflow_version {_ID} NULL, "
    "status VARCHAR(32) NOT NULL, "
    "input LONGTEXT NOT NULL, "
    "serializer VARCHAR(64) NOT NULL, "
    "result LONGTEXT NULL, "
    "error LONGTEXT NULL, "
    "error_message LONGTEXT NULL, "
    "created_at DOUBLE NOT NULL, "
    "updated_at DOUBLE NOT NULL, "
    "completed_at DOUBLE NULL, "
    f"idempotency_key {_ID} NULL, "
    f"parent_run_id {_ID} NULL, "
    "wake_at DOUBLE NULL, "
    f"lease_owner {_ID} NULL, "
    "lease_expires_at DOUBLE NULL, "
    "last_seq BIGINT NOT NULL, "
    f"queue {_ID} NULL, "
    "priority BIGINT NOT NULL, "
    f"partition_key {_ID} NULL, "
    f"dedup_key {_ID} NULL, "
    "queue_rank DOUBLE NULL, "
    "admitted_at DOUBLE NULL, "
    f"admitted_by {_ID} NULL, "
    f"live_dedup_queue {_ID} GENERATED ALWAYS AS "
    f"(IF({_LIVE_RUN}, COALESCE(queue, ''), NULL)) STORED, "
    f"live_dedup_key {_ID} GENERATED ALWAYS AS (IF({_LIVE_RUN}, dedup_key, NULL)) STORED, "
    "PRIMARY KEY (run_id), "
    "UNIQUE KEY uq_pyworkflow_runs_idempotency_key (idempotency_key), "
    "UNIQUE KEY uq_pyworkflow_runs_live_dedup (live_dedup_queue, live_dedup_key), "
    "KEY ix_pyworkflow_runs_wake_at (wake_at), "
    "KEY ix_pyworkflow_runs_created (created_at, run_id), "
    "KEY ix_pyworkflow_runs_status (status), "
    "KEY ix_pyworkflow_runs_workflow (workflow_name), "
    "KEY ix_pyworkflow_runs_parent (parent_run_id), "
    "KEY ix_pyworkflow_runs_queue (queue, status, queue_rank), "
    "KEY ix_pyworkflow_runs_admitted (queue, admitted_at), "
    f"KEY ix_pyworkflow_runs_dedup (dedup_key)) {_TABLE}",
    "CREATE TABLE IF NOT EXISTS pyworkflow_events ("
    f"run_id {_ID} NOT NULL, "
    "seq BIGINT NOT NULL, "
    "type VARCHAR(64) NOT NULL, "
    f"correlation_id {_ID} NULL, "
    "timestamp DOUBLE NOT NULL, "
    "payload LONGTEXT NOT NULL, "
    f"PRIMARY KEY (run_id, seq)) {_TABLE}",
    "CREATE TABLE IF NOT EXISTS pyworkflow_hooks ("
    f"token {_ID} NOT NULL, "
    f"run_id {_ID} NOT NULL, "
    f"correlation_id {_ID} NOT NULL, "
    "created_at DOUBLE NOT NULL, "
    "schema_path TEXT NULL, "
    "secret TEXT NULL, "
    "PRIMARY KEY (token), "
    f"KEY ix_pyworkflow_hooks_run_id (run_id)) {_TABLE}",
    "CREATE TABLE IF NOT EXISTS pyworkflow_step_leases ("
    f"run_id {_ID} NOT NULL, "
    f"step_id {_ID} NOT NULL, "
    f"owner {_ID} NOT NULL, "
    "lease_until DOUBLE NOT NULL, "
    "PRIMARY KEY (run_id, step_id), "
    f"KEY ix_pyworkflow_step_leases_until (lease_until)) {_TABLE}",
    "CREATE TABLE IF NOT EXISTS pyworkflow_schedules ("
    f"name {_ID} NOT NULL, "
    "next_fire_at DOUBLE NULL, "
    "paused INT NOT NULL, "
    f"lease_owner {_ID} NULL, "
    "lease_expires_at DOUBLE NULL, "
    "data LONGTEXT NOT NULL, "
    "PRIMARY KEY (name), "
    f"KEY ix_pyworkflow_schedules_next (next_fire_at)) {_TABLE}",
    "CREATE TABLE IF NOT EXISTS pyworkflow_step_slots ("
    f"queue {_ID} NOT NULL, "
    f"holder {_ID} NOT NULL, "
    "acquired_at DOUBLE NOT NULL, "
    "until DOUBLE NULL, "
    "PRIMARY KEY (queue, holder), "
    "KEY ix_pyworkflow_step_slots_acquired (queue, acquired_at), "
    f"KEY ix_pyworkflow_step_slots_held (queue, until)) {_TABLE}",
    "CREATE TABLE IF NOT EXISTS pyworkflow_stream_chunks ("
    f"run_id {_ID} NOT NULL, "
    f"stream {_ID} NOT NULL, "
    "seq BIGINT NOT NULL, "
    "data LONGTEXT NOT NULL, "
    f"step_id {_ID} NULL, "
    "attempt BIGINT NULL, "
    "chunk_index BIGINT NULL, "
    f"chunk_key {_ID} NULL, "
    "created_at DOUBLE NOT NULL, "
    "PRIMARY KEY (run_id, stream, seq), "
    f"UNIQUE KEY uq_pyworkflow_stream_chunks_key (run_id, stream, chunk_key)) {_TABLE}",
    "CREATE TABLE IF NOT EXISTS pyworkflow_step_checkpoints ("
    f"run_id {_ID} NOT NULL, "
    f"step_id {_ID} NOT NULL, "
    "attempt BIGINT NOT NULL, "
    "data LONGTEXT NOT NULL, "
    "saved_at DOUBLE NOT NULL, "
    f"PRIMARY KEY (run_id, step_id)) {_TABLE}",
)


@attrs.frozen
class Migration:
    """One step of the schema's history: DDL templates (``{collation}`` is filled in)."""

    version: int
    description: str
    statements: tuple[str, ...]


#: Every migration, oldest first; append new ones, never edit old ones.
MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        1,
        "runs, events, hooks, step leases, schedules, step slots, stream chunks, checkpoints",
        _TABLES,
    ),
)
#: The schema version this code writes and reads.
LATEST = MIGRATIONS[-1].version

#: Runs one statement with ``%s`` parameters and returns its rows.
Execute = Callable[[str, Sequence[object]], Awaitable[list[tuple[object, ...]]]]


async def schema_version(execute: Execute) -> int:
    """The highest applied version (0 for a database without PyWorkflow tables)."""
    rows = await execute(
        "SELECT COUNT(*) FROM information_schema.tables "
        "WHERE table_schema = DATABASE() AND table_name = %s",
        (VERSION_TABLE,),
    )
    if not rows or not rows[0][0]:
        return 0
    rows = await execute(f"SELECT COALESCE(MAX(version), 0) FROM {VERSION_TABLE}", ())
    return int(str(rows[0][0]))


async def migrate(
    execute: Execute,
    database: str,
    collation: str,
    on_applied: Callable[[Migration], None] | None = None,
) -> list[int]:
    """Bring ``database`` (the connection's) up to :data:`LATEST` under a named lock.

    ``execute`` runs one statement in autocommit on one connection (DDL commits
    itself in MySQL). Returns the versions applied now (empty if already
    current), calling ``on_applied`` after each. Raises ConfigError if the
    database was migrated by a newer plugin version, or if another process
    held the lock for :data:`MIGRATION_LOCK_SECONDS`.
    """
    lock = f"pyworkflow:migrate:{database}"[:64]
    rows = await execute("SELECT GET_LOCK(%s, %s)", (lock, MIGRATION_LOCK_SECONDS))
    if not rows or rows[0][0] != 1:
        raise ConfigError(
            f"could not take the migration lock {lock!r} of database {database!r} within "
            f"{MIGRATION_LOCK_SECONDS}s: another process is migrating it, or holds the lock"
        )
    try:
        await execute(_VERSION_DDL.format(collation=collation), ())
        current = await schema_version(execute)
        if current > LATEST:
            raise ConfigError(
                f"the PyWorkflow tables in database {database!r} are at version {current}, "
                f"newer than this pyworkflow-mysql knows ({LATEST}); upgrade pyworkflow-mysql"
            )
        applied = []
        for migration in MIGRATIONS:
            if migration.version <= current:
                continue
            for statement in migration.statements:
                await execute(statement.format(collation=collation), ())
            await execute(
                f"INSERT INTO {VERSION_TABLE} (version, description, applied_at) "
                "VALUES (%s, %s, %s)",
                (migration.version, migration.description, time.time()),
            )
            applied.append(migration.version)
            if on_applied is not None:
                on_applied(migration)
        return applied
    finally:
        await execute("SELECT RELEASE_LOCK(%s)", (lock,))
