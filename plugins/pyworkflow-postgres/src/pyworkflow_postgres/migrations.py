"""The schema version table and the upgrade path: a minimal versioned DDL runner.

Each :class:`Migration` has a version number and a function that runs DDL
on a synchronous SQLAlchemy connection. :func:`migrate` applies the ones
the database has not seen, in order, in one transaction holding a
PostgreSQL advisory lock, so many workers starting at once upgrade the
schema exactly once. A database newer than this code is refused.

Why not Alembic: the tables are defined once, in
``pyworkflow.storage.schema`` (SQLModel), and shared with SQLite; Alembic
would add a dependency, an ``env.py`` and a script directory to ship
inside a library, for a handful of DDL statements. Applications that
manage their own database with Alembic can include these tables'
metadata (``SQLModel.metadata``) instead, and set ``migrate = false``.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import attrs
from sqlalchemy import Column, Connection, Float, Integer, MetaData, String, Table, select, text
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlmodel import SQLModel

from pyworkflow.errors import ConfigError
from pyworkflow.storage.schema import EventRow, HookRow, RunRow, StepLeaseRow

__all__ = ["LATEST", "MIGRATIONS", "Migration", "migrate", "schema_version"]

VERSION_TABLE = "pyworkflow_schema_version"
_metadata = MetaData()
versions = Table(
    VERSION_TABLE,
    _metadata,
    Column("version", Integer, primary_key=True),
    Column("description", String, nullable=False),
    Column("applied_at", Float, nullable=False),
)


@attrs.frozen
class Migration:
    """One step of the schema's history."""

    version: int
    description: str
    apply: Callable[[Connection], None]


def _create_tables(conn: Connection) -> None:
    tables = [
        SQLModel.metadata.tables[str(row.__tablename__)]
        for row in (RunRow, EventRow, HookRow, StepLeaseRow)
    ]
    SQLModel.metadata.create_all(conn, tables=tables)


def _index_parents(conn: Connection) -> None:
    # databases made by version 1 lack it; new ones got it from the metadata in version 1
    conn.execute(
        text(
            "CREATE INDEX IF NOT EXISTS ix_pyworkflow_runs_parent "
            "ON pyworkflow_runs (parent_run_id)"
        )
    )


#: Migration 3's DDL, as text: history does not follow later edits of ``schema.py``.
#: Every statement is idempotent (``IF NOT EXISTS``) because version 1 creates the run
#: table from the current SQLModel metadata, so a fresh database already has the
#: run columns and indexes that a version-2 database gains here. ``priority`` is
#: NOT NULL: it is added with ``DEFAULT 0`` (rows of version 2 read 0, with no table
#: rewrite) and the default is then dropped, as the metadata has none.
_QUEUES_AND_SCHEDULES = (
    "ALTER TABLE pyworkflow_runs "
    "ADD COLUMN IF NOT EXISTS queue VARCHAR, "
    "ADD COLUMN IF NOT EXISTS priority INTEGER NOT NULL DEFAULT 0, "
    "ADD COLUMN IF NOT EXISTS partition_key VARCHAR, "
    "ADD COLUMN IF NOT EXISTS dedup_key VARCHAR, "
    "ADD COLUMN IF NOT EXISTS queue_rank FLOAT, "
    "ADD COLUMN IF NOT EXISTS admitted_at FLOAT, "
    "ADD COLUMN IF NOT EXISTS admitted_by VARCHAR",
    "ALTER TABLE pyworkflow_runs ALTER COLUMN priority DROP DEFAULT",
    "CREATE INDEX IF NOT EXISTS ix_pyworkflow_runs_queue "
    "ON pyworkflow_runs (queue, status, queue_rank)",
    "CREATE INDEX IF NOT EXISTS ix_pyworkflow_runs_admitted "
    "ON pyworkflow_runs (queue, admitted_at)",
    "CREATE INDEX IF NOT EXISTS ix_pyworkflow_runs_dedup ON pyworkflow_runs (dedup_key)",
    # one live run per (queue, dedup_key): create_run's ON CONFLICT DO NOTHING arbiter;
    # no queue counts as the queue named ''
    "CREATE UNIQUE INDEX IF NOT EXISTS uq_pyworkflow_runs_live_dedup "
    "ON pyworkflow_runs ((COALESCE(queue, '')), dedup_key) "
    "WHERE dedup_key IS NOT NULL AND status IN ('queued', 'pending', 'running', 'suspended')",
    "CREATE TABLE IF NOT EXISTS pyworkflow_schedules ("
    "name VARCHAR NOT NULL, "
    "next_fire_at FLOAT, "
    "paused INTEGER NOT NULL, "
    "lease_owner VARCHAR, "
    "lease_expires_at FLOAT, "
    "data VARCHAR NOT NULL, "
    "PRIMARY KEY (name))",
    "CREATE INDEX IF NOT EXISTS ix_pyworkflow_schedules_next "
    "ON pyworkflow_schedules (next_fire_at)",
)


def _queues_and_schedules(conn: Connection) -> None:
    for statement in _QUEUES_AND_SCHEDULES:
        conn.execute(text(statement))


#: Migration 4's DDL (``StepSlotRow`` of ``schema.py`` as it was then), plus a partial index
#: only PostgreSQL has: the places not released, by queue and ``until``, so counting the
#: places held reads those rows and not a day of released ones.
_STEP_SLOTS = (
    "CREATE TABLE IF NOT EXISTS pyworkflow_step_slots ("
    "queue VARCHAR NOT NULL, "
    "holder VARCHAR NOT NULL, "
    "acquired_at FLOAT NOT NULL, "
    "until FLOAT, "
    "PRIMARY KEY (queue, holder))",
    "CREATE INDEX IF NOT EXISTS ix_pyworkflow_step_slots_acquired "
    "ON pyworkflow_step_slots (queue, acquired_at)",
    "CREATE INDEX IF NOT EXISTS ix_pyworkflow_step_slots_held "
    "ON pyworkflow_step_slots (queue, until) WHERE until IS NOT NULL",
)


def _step_slots(conn: Connection) -> None:
    for statement in _STEP_SLOTS:
        conn.execute(text(statement))


#: Migration 5's DDL (``StreamChunkRow`` of ``schema.py`` as it was then): the chunks of
#: durable streams, one per ``(run_id, stream, seq)``, one per dedup key of a stream.
_STREAM_CHUNKS = (
    "CREATE TABLE IF NOT EXISTS pyworkflow_stream_chunks ("
    "run_id VARCHAR NOT NULL, "
    "stream VARCHAR NOT NULL, "
    "seq INTEGER NOT NULL, "
    "data VARCHAR NOT NULL, "
    "step_id VARCHAR, "
    "attempt INTEGER, "
    "chunk_index INTEGER, "
    "chunk_key VARCHAR, "
    "created_at FLOAT NOT NULL, "
    "PRIMARY KEY (run_id, stream, seq))",
    "CREATE UNIQUE INDEX IF NOT EXISTS uq_pyworkflow_stream_chunks_key "
    "ON pyworkflow_stream_chunks (run_id, stream, chunk_key)",
)


def _stream_chunks(conn: Connection) -> None:
    for statement in _STREAM_CHUNKS:
        conn.execute(text(statement))


#: Migration 6's DDL (``StepCheckpointRow`` of ``schema.py`` as it was then): one
#: checkpoint per step of a run, with the attempt that saved it.
_STEP_CHECKPOINTS = (
    "CREATE TABLE IF NOT EXISTS pyworkflow_step_checkpoints ("
    "run_id VARCHAR NOT NULL, "
    "step_id VARCHAR NOT NULL, "
    "attempt INTEGER NOT NULL, "
    "data VARCHAR NOT NULL, "
    "saved_at FLOAT NOT NULL, "
    "PRIMARY KEY (run_id, step_id))",
)


def _step_checkpoints(conn: Connection) -> None:
    for statement in _STEP_CHECKPOINTS:
        conn.execute(text(statement))


#: Every migration, oldest first; append new ones, never edit old ones.
MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "runs, events, hooks and step leases (pyworkflow.storage.schema)", _create_tables),
    Migration(2, "index runs by parent_run_id (list a run's children)", _index_parents),
    Migration(
        3,
        "queue columns of runs, the live dedup_key unique index, the schedules table",
        _queues_and_schedules,
    ),
    Migration(4, "the places of step queues (pyworkflow_step_slots)", _step_slots),
    Migration(5, "the chunks of durable streams (pyworkflow_stream_chunks)", _stream_chunks),
    Migration(6, "step checkpoints (pyworkflow_step_checkpoints)", _step_checkpoints),
)
#: The schema version this code writes and reads.
LATEST = MIGRATIONS[-1].version


async def schema_version(conn: AsyncConnection) -> int:
    """The highest applied version (0 for a database without PyWorkflow tables)."""
    exists = await conn.scalar(
        text("SELECT to_regclass(:name) IS NOT NULL"), {"name": VERSION_TABLE}
    )
    if not exists:
        return 0
    return int(
        await conn.scalar(select(versions.c.version).order_by(versions.c.version.desc())) or 0
    )


async def migrate(
    conn: AsyncConnection,
    schema: str,
    on_applied: Callable[[Migration], None] | None = None,
) -> list[int]:
    """Bring ``schema`` up to :data:`LATEST` inside the caller's transaction.

    Returns the versions applied now (empty if already current), calling
    ``on_applied`` after each. Raises ConfigError if the database was
    migrated by a newer plugin version.
    """
    await conn.execute(
        text("SELECT pg_advisory_xact_lock(hashtext(:key))"), {"key": f"pyworkflow:{schema}"}
    )
    await conn.execute(text(f'CREATE SCHEMA IF NOT EXISTS "{schema}"'))
    await conn.run_sync(lambda sync: _metadata.create_all(sync, tables=[versions]))
    current = await schema_version(conn)
    if current > LATEST:
        raise ConfigError(
            f"the PyWorkflow tables in schema {schema!r} are at version {current}, newer than "
            f"this pyworkflow-postgres knows ({LATEST}); upgrade pyworkflow-postgres"
        )
    applied = []
    for migration in MIGRATIONS:
        if migration.version <= current:
            continue
        await conn.run_sync(migration.apply)
        await conn.execute(
            versions.insert().values(
                version=migration.version,
                description=migration.description,
                applied_at=time.time(),
            )
        )
        applied.append(migration.version)
        if on_applied is not None:
            on_applied(migration)
    return applied
