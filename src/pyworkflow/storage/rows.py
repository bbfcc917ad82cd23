"""Row codec of runs, events, hooks, step leases, stream chunks: tuples of JSON/SQL values."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import attrs

from pyworkflow.errors import CorruptDataError
from pyworkflow.models import (
    CatchupPolicy,
    Event,
    EventType,
    HookRecord,
    NewEvent,
    OverlapPolicy,
    Run,
    RunPatch,
    RunStatus,
    Schedule,
    StepCheckpoint,
    StepLease,
    StreamChunk,
)
from pyworkflow.storage.rules import patch_changes

__all__ = [
    "EVENT_COLUMNS",
    "HOOK_COLUMNS",
    "RUN_COLUMNS",
    "SCHEDULE_COLUMNS",
    "STEP_LEASE_COLUMNS",
    "checkpoint_from_row",
    "chunk_from_row",
    "dump_payload",
    "event_from_row",
    "event_rows",
    "from_epoch",
    "hook_from_row",
    "hook_to_values",
    "patch_values",
    "run_from_row",
    "run_to_values",
    "schedule_from_data",
    "schedule_to_data",
    "schedule_to_values",
    "step_lease_from_row",
    "step_lease_to_values",
    "to_epoch",
]

#: Run row columns, in the order of the stored values (File keeps rows as lists in this order).
RUN_COLUMNS = (
    "run_id",
    "workflow_name",
    "workflow_version",
    "status",
    "input",
    "serializer",
    "result",
    "error",
    "error_message",
    "created_at",
    "updated_at",
    "completed_at",
    "idempotency_key",
    "parent_run_id",
    "wake_at",
    "lease_owner",
    "lease_expires_at",
    "last_seq",
    "queue",
    "priority",
    "partition_key",
    "dedup_key",
    "queue_rank",
    "admitted_at",
    "admitted_by",
)
#: Values of the columns added after the first release (queues), for rows stored before them.
_LATER_DEFAULTS: tuple[Any, ...] = (None, 0, None, None, None, None, None)
#: Schedule row columns, in order: the indexed fields, then the whole schedule as JSON.
SCHEDULE_COLUMNS = ("name", "next_fire_at", "paused", "lease_owner", "lease_expires_at", "data")
#: Hook row columns, in order.
HOOK_COLUMNS = ("token", "run_id", "correlation_id", "created_at", "schema_path", "secret")
#: Event row columns, in order.
EVENT_COLUMNS = ("run_id", "seq", "type", "correlation_id", "timestamp", "payload")
#: Step lease row columns, in order.
STEP_LEASE_COLUMNS = ("run_id", "step_id", "owner", "lease_until")
_TIMES = frozenset(
    {"created_at", "updated_at", "completed_at", "wake_at", "lease_expires_at", "admitted_at"}
)


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
    """Build a Run from a row in ``RUN_COLUMNS`` order.

    A row stored before the queue columns existed (shorter by exactly those) reads
    with their defaults.
    """
    missing = len(RUN_COLUMNS) - len(row)
    if 0 < missing <= len(_LATER_DEFAULTS):
        row = (*row, *_LATER_DEFAULTS[len(_LATER_DEFAULTS) - missing :])
    data = dict(zip(RUN_COLUMNS, row, strict=True))
    try:
        for name in _TIMES:
            data[name] = from_epoch(data[name])
        data["status"] = RunStatus(data["status"])
        return Run(**data)
    except (ValueError, TypeError, OverflowError) as exc:
        raise CorruptDataError(f"run {data.get('run_id')!r}: corrupt run row: {exc}") from exc


#: ``json.dumps(value, separators=(",", ":"))`` with its encoder built once (``json.dumps``
#: builds one per call with non-default separators). Payloads are fresh trees the engine
#: builds, never circular, so there is no circular-reference check.
_c_make_encoder: Any = getattr(json.encoder, "c_make_encoder", None)
_dumps: Callable[[Any], str]
if _c_make_encoder is not None:
    _iterencode = _c_make_encoder(
        None,
        json.JSONEncoder().default,  # a value JSON cannot hold: the same TypeError as json.dumps
        json.encoder.encode_basestring_ascii,
        None,
        ":",
        ",",
        False,
        False,
        True,
    )

    def _dumps(value: Any) -> str:
        return "".join(_iterencode(value, 0))

else:  # pragma: no cover  # a Python built without the _json accelerator
    _dumps = json.JSONEncoder(separators=(",", ":")).encode

#: Each event type's stored text (one dict lookup instead of the enum's ``value`` property).
_TYPE_TEXT: dict[EventType, str] = {kind: kind.value for kind in EventType}


def dump_payload(payload: Mapping[str, Any]) -> str:
    """An event payload as the compact JSON text stored in ``payload``."""
    return _dumps(payload if type(payload) is dict else dict(payload))


def event_rows(
    run_id: str, after: int, events: Sequence[NewEvent]
) -> list[tuple[str, int, str, str | None, float, str]]:
    """Rows of ``events`` appended after seq ``after``, in ``EVENT_COLUMNS`` order."""
    text, dumps = _TYPE_TEXT, _dumps
    return [
        (
            run_id,
            after + i,
            text[e.type],
            e.correlation_id,
            e.timestamp.timestamp(),
            dumps(e.payload if type(e.payload) is dict else dict(e.payload)),
        )
        for i, e in enumerate(events, start=1)
    ]


def patch_values(patch: RunPatch) -> dict[str, Any]:
    """The run columns ``patch`` sets (:func:`~pyworkflow.storage.rules.patch_changes`), stored.

    Lease release is excluded: it depends on who holds the lease.
    """
    return {name: _stored(name, value) for name, value in patch_changes(patch).items()}


def _stored(name: str, value: Any) -> Any:
    if name in _TIMES:
        return to_epoch(value)
    if name == "status":
        return value.value
    return value


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


def schedule_to_data(schedule: Schedule) -> str:
    """The whole schedule as the JSON text of its row's ``data`` column."""
    data = attrs.asdict(schedule, recurse=False)
    for name in _SCHEDULE_TIMES:
        data[name] = to_epoch(data[name])
    data["overlap"] = schedule.overlap.value
    data["catchup"] = schedule.catchup.value
    return _dumps(data)


def schedule_from_data(text: str) -> Schedule:
    """Build a Schedule from its row's ``data`` JSON; ``CorruptDataError`` if it cannot be."""
    try:
        data = json.loads(text)
        if not isinstance(data, dict):
            raise ValueError("not a JSON object")
        for name in _SCHEDULE_TIMES:
            data[name] = from_epoch(data.get(name))
        data["overlap"] = OverlapPolicy(data["overlap"])
        data["catchup"] = CatchupPolicy(data["catchup"])
        return Schedule(**data)
    except (ValueError, TypeError, KeyError, OverflowError) as exc:
        raise CorruptDataError(f"corrupt schedule row: {exc}") from exc


def schedule_to_values(schedule: Schedule) -> tuple[Any, ...]:
    """The row values of ``schedule`` in ``SCHEDULE_COLUMNS`` order, its lease free."""
    return (
        schedule.name,
        to_epoch(schedule.next_fire_at),
        int(schedule.paused),
        None,
        None,
        schedule_to_data(schedule),
    )


_SCHEDULE_TIMES = ("created_at", "updated_at", "next_fire_at", "last_fire_at")


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


def chunk_from_row(row: Sequence[Any]) -> StreamChunk:
    """A StreamChunk from ``(run_id, stream, seq, data, step_id, attempt, index, created_at)``."""
    run_id, stream, seq, data, step_id, attempt, index, created_at = row
    try:
        return StreamChunk(
            str(run_id),
            str(stream),
            int(seq),
            str(data),
            None if step_id is None else str(step_id),
            None if attempt is None else int(attempt),
            None if index is None else int(index),
            datetime.fromtimestamp(float(created_at), UTC),
        )
    except (ValueError, TypeError, OverflowError) as exc:
        raise CorruptDataError(
            f"run {run_id}: chunk {seq} of stream {stream!r} has a corrupt row: {exc}"
        ) from exc


def checkpoint_from_row(row: Sequence[Any]) -> StepCheckpoint:
    """A StepCheckpoint from ``(run_id, step_id, attempt, data, saved_at)``."""
    run_id, step_id, attempt, data, saved_at = row
    try:
        return StepCheckpoint(
            str(run_id),
            str(step_id),
            int(attempt),
            str(data),
            datetime.fromtimestamp(float(saved_at), UTC),
        )
    except (ValueError, TypeError, OverflowError) as exc:
        raise CorruptDataError(
            f"run {run_id}: the checkpoint of step {step_id!r} has a corrupt row: {exc}"
        ) from exc
