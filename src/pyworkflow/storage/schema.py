"""SQL tables of runs and events (SQLModel), shared by the SQL backends."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Index, UniqueConstraint
from sqlmodel import Field, SQLModel

from pyworkflow.errors import CorruptDataError
from pyworkflow.models import (
    Event,
    EventType,
    HookRecord,
    NewEvent,
    Run,
    RunPatch,
    RunStatus,
    StepLease,
)

__all__ = [
    "EVENT_COLUMNS",
    "HOOK_COLUMNS",
    "RUN_COLUMNS",
    "STEP_LEASE_COLUMNS",
    "EventRow",
    "HookRow",
    "RunRow",
    "StepLeaseRow",
    "dump_payload",
    "event_from_row",
    "event_rows",
    "from_epoch",
    "hook_from_row",
    "hook_to_values",
    "patch_values",
    "run_from_row",
    "run_to_values",
    "step_lease_from_row",
    "step_lease_to_values",
    "to_epoch",
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


RUN_COLUMNS = tuple(RunRow.model_fields)
HOOK_COLUMNS = tuple(HookRow.model_fields)
EVENT_COLUMNS = tuple(EventRow.model_fields)
STEP_LEASE_COLUMNS = tuple(StepLeaseRow.model_fields)
_TIMES = frozenset({"created_at", "updated_at", "completed_at", "wake_at", "lease_expires_at"})


def to_epoch(value: datetime | None) -> float | None:
    """An aware datetime as epoch seconds (None stays None)."""
    return None if value is None else value.timestamp()


def from_epoch(value: float | None) -> datetime | None:
    """Epoch seconds as an aware UTC datetime (rounded to the microsecond)."""
    return None if value is None else datetime.fromtimestamp(value, UTC)


def run_to_values(run: Run) -> tuple[Any, ...]:
    """The row values of ``run`` in ``RUN_COLUMNS`` order."""
    values = []
    for name in RUN_COLUMNS:
        value = getattr(run, name)
        if name in _TIMES:
            value = to_epoch(value)
        elif name == "status":
            value = value.value
        values.append(value)
    return tuple(values)


def run_from_row(row: tuple[Any, ...]) -> Run:
    """Build a Run from a row in ``RUN_COLUMNS`` order."""
    data = dict(zip(RUN_COLUMNS, row, strict=True))
    try:
        for name in _TIMES:
            data[name] = from_epoch(data[name])
        data["status"] = RunStatus(data["status"])
        return Run(**data)
    except (ValueError, TypeError, OverflowError) as exc:
        raise CorruptDataError(f"run {data.get('run_id')!r}: corrupt run row: {exc}") from exc


def dump_payload(payload: Mapping[str, Any]) -> str:
    """An event payload as the compact JSON text stored in ``payload``."""
    return json.dumps(dict(payload), separators=(",", ":"))


def event_rows(
    run_id: str, after: int, events: Sequence[NewEvent]
) -> list[tuple[str, int, str, str | None, float, str]]:
    """Rows of ``events`` appended after seq ``after``, in ``EVENT_COLUMNS`` order."""
    return [
        (
            run_id,
            after + i,
            e.type.value,
            e.correlation_id,
            e.timestamp.timestamp(),
            dump_payload(e.payload),
        )
        for i, e in enumerate(events, start=1)
    ]


def patch_values(patch: RunPatch) -> dict[str, Any]:
    """The run columns ``patch`` sets, with their stored values (lease release excluded).

    ``clear_outcome`` nulls the outcome columns first; values the patch also
    sets win.
    """
    values: dict[str, Any] = {}
    if patch.clear_outcome:
        values.update(result=None, error=None, error_message=None, completed_at=None)
    for name in ("result", "error", "error_message"):
        value = getattr(patch, name)
        if value is not None:
            values[name] = value
    if patch.status is not None:
        values["status"] = patch.status.value
    if patch.completed_at is not None:
        values["completed_at"] = to_epoch(patch.completed_at)
    if patch.set_wake:
        values["wake_at"] = to_epoch(patch.wake_at)
    return values


def event_from_row(row: tuple[Any, ...]) -> Event:
    """Build an Event from a row in ``EVENT_COLUMNS`` order."""
    run_id, seq, kind, correlation_id, timestamp, payload = row
    try:
        decoded = json.loads(payload)
        if not isinstance(decoded, dict):
            raise ValueError("payload is not a JSON object")
        return Event(
            run_id, seq, EventType(kind), correlation_id, from_epoch(timestamp) or _never(), decoded
        )
    except (ValueError, TypeError, OverflowError) as exc:
        raise CorruptDataError(
            f"run {run_id}: event seq {seq} ({kind}) cannot be decoded: {exc}"
        ) from exc


def _never() -> datetime:
    raise ValueError("event has no timestamp")


def hook_to_values(hook: HookRecord) -> tuple[Any, ...]:
    """The row values of ``hook`` in ``HOOK_COLUMNS`` order."""
    return (
        hook.token,
        hook.run_id,
        hook.correlation_id,
        hook.created_at.timestamp(),
        hook.schema,
        hook.secret,
    )


def hook_from_row(row: tuple[Any, ...]) -> HookRecord:
    """Build a HookRecord from a row in ``HOOK_COLUMNS`` order."""
    token, run_id, correlation_id, created_at, schema, secret = row
    return HookRecord(
        token, run_id, correlation_id, from_epoch(created_at) or _never(), schema, secret
    )


def step_lease_to_values(lease: StepLease) -> tuple[Any, ...]:
    """The row values of ``lease`` in ``STEP_LEASE_COLUMNS`` order."""
    return (lease.run_id, lease.step_id, lease.owner, lease.until.timestamp())


def step_lease_from_row(row: Sequence[Any]) -> StepLease:
    """Build a StepLease from a row in ``STEP_LEASE_COLUMNS`` order."""
    run_id, step_id, owner, until = row
    try:
        if until is None:
            raise ValueError("the lease has no expiry time")
        return StepLease(run_id, step_id, owner, datetime.fromtimestamp(until, UTC))
    except (ValueError, TypeError, OverflowError) as exc:
        raise CorruptDataError(
            f"run {run_id}: step {step_id!r} has a corrupt lease row: {exc}"
        ) from exc
