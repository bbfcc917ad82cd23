"""SQL tables of the SQL backends (SQLModel): runs, events, hooks, leases, schedules, streams...

Their columns are those of the row codec, :mod:`pyworkflow.storage.rows` (a test pins it).
"""

from __future__ import annotations

from sqlalchemy import Index, UniqueConstraint
from sqlmodel import Field, SQLModel

__all__ = [
    "EventRow",
    "HookRow",
    "RunRow",
    "ScheduleRow",
    "StepCheckpointRow",
    "StepLeaseRow",
    "StepSlotRow",
    "StreamChunkRow",
]


class RunRow(SQLModel, table=True):
    """One row per run: the projection of its event log. Times are epoch seconds."""

    __tablename__ = "pyworkflow_runs"
    __table_args__ = (
        UniqueConstraint("idempotency_key", name="uq_pyworkflow_runs_idempotency_key"),
        Index("ix_pyworkflow_runs_wake_at", "wake_at"),
        Index("ix_pyworkflow_runs_created", "created_at", "run_id"),
        Index("ix_pyworkflow_runs_status", "status"),
        Index("ix_pyworkflow_runs_workflow", "workflow_name"),
        Index("ix_pyworkflow_runs_parent", "parent_run_id"),
        Index("ix_pyworkflow_runs_queue", "queue", "status", "queue_rank"),
        Index("ix_pyworkflow_runs_admitted", "queue", "admitted_at"),
        Index("ix_pyworkflow_runs_dedup", "dedup_key"),
    )

    run_id: str = Field(primary_key=True)
    workflow_name: str
    workflow_version: str | None = None
    status: str
    input: str
    serializer: str
    result: str | None = None
    error: str | None = None
    error_message: str | None = None
    created_at: float
    updated_at: float
    completed_at: float | None = None
    idempotency_key: str | None = None
    parent_run_id: str | None = None
    wake_at: float | None = None
    lease_owner: str | None = None
    lease_expires_at: float | None = None
    last_seq: int = 0
    queue: str | None = None
    priority: int = 0
    partition_key: str | None = None
    dedup_key: str | None = None
    queue_rank: float | None = None
    admitted_at: float | None = None
    admitted_by: str | None = None


class EventRow(SQLModel, table=True):
    """One row per event; ``(run_id, seq)`` is the key, ``payload`` JSON text."""

    __tablename__ = "pyworkflow_events"

    run_id: str = Field(primary_key=True)
    seq: int = Field(primary_key=True)
    type: str
    correlation_id: str | None = None
    timestamp: float
    payload: str


class HookRow(SQLModel, table=True):
    """One row per live hook: the token payloads are posted to, and its run."""

    __tablename__ = "pyworkflow_hooks"

    token: str = Field(primary_key=True)
    run_id: str = Field(index=True)
    correlation_id: str
    created_at: float
    schema_path: str | None = None
    secret: str | None = None


class StepLeaseRow(SQLModel, table=True):
    """One row per leased dispatched step: who runs it and until when (epoch seconds)."""

    __tablename__ = "pyworkflow_step_leases"
    __table_args__ = (Index("ix_pyworkflow_step_leases_until", "lease_until"),)

    run_id: str = Field(primary_key=True)
    step_id: str = Field(primary_key=True)
    owner: str
    lease_until: float


class ScheduleRow(SQLModel, table=True):
    """One row per schedule: the indexed fields, its lease, and the whole schedule as JSON."""

    __tablename__ = "pyworkflow_schedules"
    __table_args__ = (Index("ix_pyworkflow_schedules_next", "next_fire_at"),)

    name: str = Field(primary_key=True)
    next_fire_at: float | None = None
    paused: int = 0
    lease_owner: str | None = None
    lease_expires_at: float | None = None
    data: str


class StepSlotRow(SQLModel, table=True):
    """One row per place taken in a step queue (epoch seconds); ``until`` is None once released.

    A place is held while ``until > now``; ``acquired_at`` counts in the queue's rate.
    """

    __tablename__ = "pyworkflow_step_slots"
    __table_args__ = (Index("ix_pyworkflow_step_slots_acquired", "queue", "acquired_at"),)

    queue: str = Field(primary_key=True)
    holder: str = Field(primary_key=True)
    acquired_at: float
    until: float | None = None


class StreamChunkRow(SQLModel, table=True):
    """One row per chunk of a run's stream (``docs/streams.md``); ``created_at`` epoch seconds.

    ``chunk_key`` is the dedup key of :func:`pyworkflow.storage.stream_rules.chunk_key`
    (None: never deduplicated); the unique index keeps one chunk per key of a stream.
    """

    __tablename__ = "pyworkflow_stream_chunks"
    __table_args__ = (
        Index("uq_pyworkflow_stream_chunks_key", "run_id", "stream", "chunk_key", unique=True),
    )

    run_id: str = Field(primary_key=True)
    stream: str = Field(primary_key=True)
    seq: int = Field(primary_key=True)
    data: str
    step_id: str | None = None
    attempt: int | None = None
    chunk_index: int | None = None
    chunk_key: str | None = None
    created_at: float


class StepCheckpointRow(SQLModel, table=True):
    """One row per step that saved a checkpoint (``docs/checkpoints.md``); ``saved_at`` epoch s.

    ``attempt`` is the attempt that saved ``data``; a save by an older attempt
    is refused (:func:`pyworkflow.storage.checkpoint_rules.supersedes`).
    """

    __tablename__ = "pyworkflow_step_checkpoints"

    run_id: str = Field(primary_key=True)
    step_id: str = Field(primary_key=True)
    attempt: int
    data: str
    saved_at: float
