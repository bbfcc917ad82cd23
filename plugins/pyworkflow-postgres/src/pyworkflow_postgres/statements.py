"""The SQL the storage runs, as text for asyncpg's prepared statements.

Every statement names its tables unqualified: each connection's
``search_path`` is the configured schema. asyncpg prepares a statement the
first time a connection runs its text and keeps it (the connection's
statement cache), so each call after that is one Bind/Execute round trip with
no SQL compiled on either side. The few statements whose text depends on the
call (which columns a :class:`~pyworkflow.models.RunPatch` sets, the filters of
``list_runs``) are built here from a small set of shapes, so they are cached
too.

The tables are those of :mod:`pyworkflow.storage.schema` (created by
:mod:`pyworkflow_postgres.migrations`); the column orders are those of the row
codec, :mod:`pyworkflow.storage.rows`.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache

from pyworkflow.models import ACTIVE_STATUSES, RunStatus
from pyworkflow.storage.rows import (
    EVENT_COLUMNS,
    HOOK_COLUMNS,
    RUN_COLUMNS,
    SCHEDULE_COLUMNS,
    STEP_LEASE_COLUMNS,
)

__all__ = [
    "ADMIT",
    "ADVANCE_SCHEDULE",
    "APPEND_HOOK_EVENT",
    "CLAIM_RUN",
    "CLAIM_RUNS",
    "CLAIM_RUN_TAKING_OVER",
    "CLAIM_SCHEDULES",
    "DELETE_HOOKS",
    "DELETE_SCHEDULE",
    "DROP_SCHEDULE_LEASE",
    "DUE_TIMERS",
    "EVENT_AT",
    "EXPIRED_STEP_LEASES",
    "GET_CHECKPOINT",
    "GET_EVENTS",
    "GET_HOOK",
    "GET_RUN",
    "GET_RUN_BY_DEDUP",
    "GET_RUN_BY_KEY",
    "GET_SCHEDULE",
    "GET_SCHEDULE_AND_LEASE",
    "GET_STEP_LEASES",
    "HOOK_OWNER",
    "HOOK_PAYLOAD_LANDED",
    "INSERT_HOOKS",
    "INSERT_RUN_UNLESS_KEY",
    "INSERT_RUN_UNLESS_TAKEN",
    "INSERT_SCHEDULE_UNLESS_NAME",
    "LAST_SEQ",
    "LIST_SCHEDULES",
    "LOCK_QUEUE",
    "LOCK_SCHEDULE",
    "NEXT_SCHEDULE_AT",
    "NEXT_WAKE_AT",
    "NOTIFY",
    "PARTITION_LOAD",
    "PUT_SCHEDULE",
    "QUEUE_LOAD",
    "QUEUE_STATS",
    "RELEASE_LEASE",
    "RENEW_LEASE",
    "SAVE_CHECKPOINT",
    "SCHEMA_VERSION",
    "SCHEMA_VERSION_EXISTS",
    "SET_STEP_LEASE_IF_OWNER",
    "STEP_LEASE_DELETE",
    "STEP_LEASE_DELETE_IF_OWNER",
    "STEP_LEASE_UPSERT",
    "STEP_SLOT_LOAD",
    "STEP_SLOT_RELEASE",
    "STEP_SLOT_RENEW",
    "STEP_SLOT_TAKE",
    "TOUCH_RUN_FOR_HOOK",
    "WAITING_RUNS",
    "append",
    "create_run",
    "event_arrays",
    "list_runs",
]

RUNS = "pyworkflow_runs"
EVENTS = "pyworkflow_events"
HOOKS = "pyworkflow_hooks"
LEASES = "pyworkflow_step_leases"
SCHEDULES = "pyworkflow_schedules"
SLOTS = "pyworkflow_step_slots"
CHUNKS = "pyworkflow_stream_chunks"
CHECKPOINTS = "pyworkflow_step_checkpoints"

_RUN = ", ".join(RUN_COLUMNS)
_EVENT = ", ".join(EVENT_COLUMNS)
_HOOK = ", ".join(HOOK_COLUMNS)
_LEASE = ", ".join(STEP_LEASE_COLUMNS)
_SCHEDULE = ", ".join(SCHEDULE_COLUMNS)
_RUN_PARAMS = ", ".join(f"${i}" for i in range(1, len(RUN_COLUMNS) + 1))
#: SQL types of the patchable run columns (the parameters' types).
PATCH_TYPES = {
    "status": "text",
    "result": "text",
    "error": "text",
    "error_message": "text",
    "completed_at": "float8",
    "wake_at": "float8",
}

# ----- runs and events -----

GET_RUN = f"SELECT {_RUN} FROM {RUNS} WHERE run_id = $1"
GET_RUN_BY_KEY = f"SELECT {_RUN} FROM {RUNS} WHERE idempotency_key = $1"
LAST_SEQ = f"SELECT last_seq FROM {RUNS} WHERE run_id = $1"
INSERT_RUN_UNLESS_KEY = (
    f"INSERT INTO {RUNS} ({_RUN}) VALUES ({_RUN_PARAMS}) "
    "ON CONFLICT ON CONSTRAINT uq_pyworkflow_runs_idempotency_key DO NOTHING RETURNING run_id"
)
#: The statuses that hold a place in a queue, as an SQL list (``ACTIVE_STATUSES``).
_ACTIVE = ", ".join(f"'{s.value}'" for s in sorted(ACTIVE_STATUSES))
_QUEUED = f"'{RunStatus.QUEUED.value}'"
#: Not ended: the statuses under which a run holds its ``(queue, dedup_key)``. The same
#: predicate as the partial unique index ``uq_pyworkflow_runs_live_dedup`` (migration 3).
_LIVE_DEDUP = f"dedup_key IS NOT NULL AND status IN ({_QUEUED}, {_ACTIVE})"
#: Any unique conflict (the run id, the idempotency key, a live dedup key) skips the insert.
INSERT_RUN_UNLESS_TAKEN = (
    f"INSERT INTO {RUNS} ({_RUN}) VALUES ({_RUN_PARAMS}) ON CONFLICT DO NOTHING RETURNING run_id"
)
#: ``$1``: the queue or '' for none, ``$2``: the dedup key.
GET_RUN_BY_DEDUP = (
    f"SELECT {_RUN} FROM {RUNS} WHERE COALESCE(queue, '') = $1 AND dedup_key = $2 AND {_LIVE_DEDUP}"
)
GET_EVENTS = f"SELECT {_EVENT} FROM {EVENTS} WHERE run_id = $1 AND seq > $2 ORDER BY seq"
EVENT_AT = f"SELECT {_EVENT} FROM {EVENTS} WHERE run_id = $1 AND seq = $2"
NOTIFY = "SELECT pg_notify($1, $2)"


@lru_cache(maxsize=256)
def append(patched: tuple[str, ...], release: bool, notify: bool) -> str:
    """One statement that appends events after an expected seq and updates the run row.

    Parameters: ``$1`` run id, ``$2`` expected seq, ``$3`` new last seq,
    ``$4`` updated_at, ``$5``-``$8`` the events as arrays (types,
    correlation ids, timestamps, payloads), then one parameter per column in
    ``patched``, then the releasing owner (``release``), then the NOTIFY
    channel and payload (``notify``). The ``UPDATE`` checks the expected seq
    (its row lock orders two writers of one run); the events are inserted only
    if it matched, and the notification is sent only then, at commit. Returns
    one row: how many run rows matched (0: a conflict or an unknown run).
    """
    sets = ["last_seq = $3", "updated_at = $4"]
    n = 8
    for column in patched:
        n += 1
        sets.append(f"{column} = ${n}::{PATCH_TYPES[column]}")
    if release:
        n += 1
        # SET expressions see the old row, so both test the lease being released
        held = f"lease_owner = ${n}::text"
        sets.append(f"lease_owner = CASE WHEN {held} THEN NULL ELSE lease_owner END")
        sets.append(f"lease_expires_at = CASE WHEN {held} THEN NULL ELSE lease_expires_at END")
    sql = (
        f"WITH u AS (UPDATE {RUNS} SET {', '.join(sets)} "
        "WHERE run_id = $1 AND last_seq = $2 RETURNING run_id), "
        f"e AS (INSERT INTO {EVENTS} ({_EVENT}) "
        "SELECT u.run_id, $2::int + e.ord::int, e.type, e.cid, e.ts, e.payload "
        "FROM u, unnest($5::text[], $6::text[], $7::float8[], $8::text[]) "
        "WITH ORDINALITY AS e(type, cid, ts, payload, ord))"
    )
    if notify:
        sql += f", n AS (SELECT pg_notify(${n + 1}::text, ${n + 2}::text) FROM u)"
        return sql + " SELECT (SELECT count(*) FROM u), (SELECT count(*) FROM n)"
    return sql + " SELECT (SELECT count(*) FROM u)"


@lru_cache(maxsize=4)
def create_run(notify: bool, dedup: bool = False) -> str:
    """One statement that inserts a run (unless its idempotency key is taken) and its events.

    Parameters: the run's columns (``RUN_COLUMNS`` order), then the events as
    four arrays (types, correlation ids, timestamps, payloads), then the NOTIFY
    channel and payload (``notify``). Returns one row: how many runs were
    inserted (0: a run with that idempotency key exists; nothing was written).
    With ``dedup`` (the run has a ``dedup_key``), any unique conflict skips the
    insert: the idempotency key, a live run holding the dedup key, or the run id.
    """
    n = len(RUN_COLUMNS)
    insert = INSERT_RUN_UNLESS_TAKEN if dedup else INSERT_RUN_UNLESS_KEY
    sql = (
        f"WITH r AS ({insert}), "
        f"e AS (INSERT INTO {EVENTS} ({_EVENT}) "
        "SELECT r.run_id, e.ord::int, e.type, e.cid, e.ts, e.payload "
        f"FROM r, unnest(${n + 1}::text[], ${n + 2}::text[], ${n + 3}::float8[], "
        f"${n + 4}::text[]) WITH ORDINALITY AS e(type, cid, ts, payload, ord))"
    )
    if notify:
        sql += f", n AS (SELECT pg_notify(${n + 5}::text, ${n + 6}::text) FROM r)"
        return sql + " SELECT (SELECT count(*) FROM r), (SELECT count(*) FROM n)"
    return sql + " SELECT (SELECT count(*) FROM r)"


@lru_cache(maxsize=64)
def list_runs(status: bool, workflow: bool, cursor: bool, parent: bool = False) -> str:
    """``list_runs``' query for the filters given; parameters in this order, then the limit."""
    where: list[str] = []
    n = 0
    if status:
        n += 1
        where.append(f"status = ${n}")
    if workflow:
        n += 1
        where.append(f"workflow_name = ${n}")
    if parent:
        n += 1
        where.append(f"parent_run_id = ${n}")
    if cursor:
        where.append(f"(created_at < ${n + 1} OR (created_at = ${n + 1} AND run_id < ${n + 2}))")
        n += 2
    clause = f" WHERE {' AND '.join(where)}" if where else ""
    return f"SELECT {_RUN} FROM {RUNS}{clause} ORDER BY created_at DESC, run_id DESC LIMIT ${n + 1}"


# ----- hooks -----

GET_HOOK = f"SELECT {_HOOK} FROM {HOOKS} WHERE token = $1"
HOOK_OWNER = f"SELECT run_id FROM {HOOKS} WHERE token = $1"
DELETE_HOOKS = f"DELETE FROM {HOOKS} WHERE token = ANY($1::text[]) AND run_id = $2"
INSERT_HOOKS = (
    f"INSERT INTO {HOOKS} ({_HOOK}) "
    "SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::float8[], $5::text[], "
    "$6::text[]) ON CONFLICT DO NOTHING RETURNING token"
)
TOUCH_RUN_FOR_HOOK = (
    f"UPDATE {RUNS} SET last_seq = last_seq + 1, updated_at = $2, wake_at = $2 "
    "WHERE run_id = $1 RETURNING last_seq"
)
APPEND_HOOK_EVENT = f"INSERT INTO {EVENTS} ({_EVENT}) VALUES ($1, $2, $3, $4, $5, $6)"
HOOK_PAYLOAD_LANDED = (
    f"SELECT run_id, seq FROM {EVENTS} WHERE type = $1 AND timestamp = $2 AND payload = $3 "
    f"AND run_id = (SELECT run_id FROM {HOOKS} WHERE token = $4)"
)

# ----- claims and leases -----

CLAIM_RUNS = (
    f"WITH due AS (SELECT run_id FROM {RUNS} "
    "WHERE wake_at <= $1 AND (lease_owner IS NULL OR lease_expires_at < $1) "
    "ORDER BY wake_at LIMIT $2 FOR UPDATE SKIP LOCKED) "
    f"UPDATE {RUNS} AS r SET lease_owner = $3, lease_expires_at = $4 FROM due "
    f"WHERE r.run_id = due.run_id RETURNING {', '.join(f'r.{c}' for c in RUN_COLUMNS)}"
)
_CLAIM_RUN = (
    f"UPDATE {RUNS} SET lease_owner = $2, lease_expires_at = $3 "
    "WHERE run_id = $1 AND wake_at <= $4 AND (lease_owner IS NULL OR lease_expires_at < $4{}) "
    f"RETURNING {_RUN}"
)
CLAIM_RUN = _CLAIM_RUN.format("")
#: ``$5``: the prefix of placeholder owners whose lease counts as free.
CLAIM_RUN_TAKING_OVER = _CLAIM_RUN.format(" OR starts_with(lease_owner, $5)")
RENEW_LEASE = f"UPDATE {RUNS} SET lease_expires_at = $3 WHERE run_id = $1 AND lease_owner = $2"
RELEASE_LEASE = (
    f"UPDATE {RUNS} SET lease_owner = NULL, lease_expires_at = NULL "
    "WHERE run_id = $1 AND lease_owner = $2"
)
NEXT_WAKE_AT = f"SELECT min(wake_at) FROM {RUNS}"
DUE_TIMERS = f"SELECT run_id, wake_at FROM {RUNS} WHERE wake_at <= $1 ORDER BY wake_at LIMIT $2"

# ----- queues -----

#: Serialises the admissions of one queue (``$1``: a text key naming schema and queue)
#: until the transaction ends.
LOCK_QUEUE = "SELECT pg_advisory_xact_lock(hashtext($1))"
#: ``$1`` queue, ``$2`` worker, ``$3`` start of the rate window (NULL: no rate): the
#: queue's active runs, those admitted by the worker, and admissions after ``$3``.
QUEUE_LOAD = (
    f"SELECT count(*) FILTER (WHERE status IN ({_ACTIVE})), "
    f"count(*) FILTER (WHERE status IN ({_ACTIVE}) AND admitted_by = $2), "
    "count(*) FILTER (WHERE admitted_at > $3) "
    f"FROM {RUNS} WHERE queue = $1 AND (status IN ({_ACTIVE}) OR admitted_at > $3)"
)
#: Active runs of queue ``$1`` per partition key.
PARTITION_LOAD = (
    f"SELECT partition_key, count(*) FROM {RUNS} "
    f"WHERE queue = $1 AND status IN ({_ACTIVE}) AND partition_key IS NOT NULL "
    "GROUP BY partition_key"
)
#: Up to ``$4`` waiting runs of queue ``$1`` in admission order, leaving out the
#: partition keys ``$2`` (full) and the run ids ``$3`` (already chosen).
WAITING_RUNS = (
    f"SELECT run_id, partition_key FROM {RUNS} WHERE queue = $1 AND status = {_QUEUED} "
    "AND (partition_key IS NULL OR partition_key <> ALL($2::text[])) "
    "AND run_id <> ALL($3::text[]) "
    "ORDER BY queue_rank, created_at, run_id LIMIT $4"
)
#: Admit the runs ``$1`` (still waiting): pending, due at ``$2``, leased to ``$3`` until
#: ``$4``, admitted at ``$2`` by ``$5``; ``updated_at`` stays.
ADMIT = (
    f"UPDATE {RUNS} SET status = '{RunStatus.PENDING.value}', wake_at = $2, lease_owner = $3, "
    "lease_expires_at = $4, admitted_at = $2, admitted_by = $5 "
    f"WHERE run_id = ANY($1::text[]) AND status = {_QUEUED} RETURNING {_RUN}"
)
#: Per queue: waiting runs, active runs, runs admitted at or after ``$1``.
QUEUE_STATS = (
    f"SELECT queue, count(*) FILTER (WHERE status = {_QUEUED}), "
    f"count(*) FILTER (WHERE status IN ({_ACTIVE})), "
    "count(*) FILTER (WHERE admitted_at >= $1) "
    f"FROM {RUNS} WHERE queue IS NOT NULL "
    f"AND (status IN ({_QUEUED}, {_ACTIVE}) OR admitted_at >= $1) GROUP BY queue"
)

# ----- step queues -----

#: ``$1`` queue, ``$2`` holder, ``$3`` now, ``$4`` start of the rate window (NULL: no
#: rate): whether the holder holds its place, how many places others hold, and how many
#: places were taken after ``$4``. Held means ``until > now``; the held count reads the
#: partial index ``ix_pyworkflow_step_slots_held`` (released rows are not in it), the
#: window count the ``(queue, acquired_at)`` index.
STEP_SLOT_LOAD = (
    f"SELECT EXISTS (SELECT 1 FROM {SLOTS} WHERE queue = $1 AND holder = $2 AND until > $3), "
    f"(SELECT count(*) FROM {SLOTS} WHERE queue = $1 AND until IS NOT NULL AND until > $3 "
    "AND holder <> $2), "
    f"(SELECT count(*) FROM {SLOTS} WHERE queue = $1 AND acquired_at > $4::float8)"
)
#: Give holder ``$2`` a place in queue ``$1`` at ``$3`` until ``$4`` (a place it still
#: holds keeps its ``acquired_at``), and forget the queue's other places released or
#: expired and taken at or before ``$5``. The holder's own row is left out of the
#: DELETE, so the two never touch one row.
STEP_SLOT_TAKE = (
    f"WITH forgotten AS (DELETE FROM {SLOTS} WHERE queue = $1 AND holder <> $2 "
    "AND acquired_at <= $5 AND (until IS NULL OR until <= $3)) "
    f"INSERT INTO {SLOTS} (queue, holder, acquired_at, until) VALUES ($1, $2, $3, $4) "
    "ON CONFLICT (queue, holder) DO UPDATE SET until = EXCLUDED.until, acquired_at = "
    f"CASE WHEN {SLOTS}.until > EXCLUDED.acquired_at THEN {SLOTS}.acquired_at "
    "ELSE EXCLUDED.acquired_at END"
)
#: Move the ``until`` of ``$2``'s place in ``$1`` to ``$3`` unless it was released.
STEP_SLOT_RENEW = (
    f"UPDATE {SLOTS} SET until = $3 WHERE queue = $1 AND holder = $2 AND until IS NOT NULL"
)
STEP_SLOT_RELEASE = f"UPDATE {SLOTS} SET until = NULL WHERE queue = $1 AND holder = $2"

# ----- schedules -----

_SCHEDULE_PARAMS = ", ".join(f"${i}" for i in range(1, len(SCHEDULE_COLUMNS) + 1))
INSERT_SCHEDULE_UNLESS_NAME = (
    f"INSERT INTO {SCHEDULES} ({_SCHEDULE}) VALUES ({_SCHEDULE_PARAMS}) "
    "ON CONFLICT (name) DO NOTHING RETURNING name"
)
#: Insert or replace; a lease on the row stays as it is.
PUT_SCHEDULE = (
    f"INSERT INTO {SCHEDULES} ({_SCHEDULE}) VALUES ({_SCHEDULE_PARAMS}) "
    "ON CONFLICT (name) DO UPDATE SET next_fire_at = EXCLUDED.next_fire_at, "
    "paused = EXCLUDED.paused, data = EXCLUDED.data"
)
GET_SCHEDULE = f"SELECT data FROM {SCHEDULES} WHERE name = $1"
LIST_SCHEDULES = f"SELECT data FROM {SCHEDULES}"
DELETE_SCHEDULE = f"DELETE FROM {SCHEDULES} WHERE name = $1"
#: Lease up to ``$2`` schedules due at ``$1`` to ``$3`` until ``$4``; names compare
#: bytewise (``COLLATE "C"``), as Python compares them.
CLAIM_SCHEDULES = (
    f"WITH due AS (SELECT name FROM {SCHEDULES} "
    "WHERE paused = 0 AND next_fire_at <= $1 "
    "AND (lease_expires_at IS NULL OR lease_expires_at < $1) "
    'ORDER BY next_fire_at, name COLLATE "C" LIMIT $2 FOR UPDATE SKIP LOCKED) '
    f"UPDATE {SCHEDULES} AS s SET lease_owner = $3, lease_expires_at = $4 FROM due "
    "WHERE s.name = due.name RETURNING s.data"
)
GET_SCHEDULE_AND_LEASE = f"SELECT next_fire_at, lease_owner, data FROM {SCHEDULES} WHERE name = $1"
LOCK_SCHEDULE = GET_SCHEDULE_AND_LEASE + " FOR UPDATE"
ADVANCE_SCHEDULE = (
    f"UPDATE {SCHEDULES} SET next_fire_at = $2, data = $3, lease_owner = NULL, "
    "lease_expires_at = NULL WHERE name = $1"
)
DROP_SCHEDULE_LEASE = (
    f"UPDATE {SCHEDULES} SET lease_owner = NULL, lease_expires_at = NULL WHERE name = $1"
)
NEXT_SCHEDULE_AT = f"SELECT min(next_fire_at) FROM {SCHEDULES} WHERE paused = 0"

# ----- dispatched steps -----

STEP_LEASE_DELETE = f"DELETE FROM {LEASES} WHERE run_id = $1 AND step_id = $2"
STEP_LEASE_DELETE_IF_OWNER = STEP_LEASE_DELETE + " AND owner = $3"
SET_STEP_LEASE_IF_OWNER = (
    f"UPDATE {LEASES} SET owner = $3, lease_until = $4 "
    "WHERE run_id = $1 AND step_id = $2 AND owner = $5"
)
STEP_LEASE_UPSERT = (
    f"INSERT INTO {LEASES} ({_LEASE}) VALUES ($1, $2, $3, $4) "
    "ON CONFLICT (run_id, step_id) DO UPDATE SET owner = EXCLUDED.owner, "
    "lease_until = EXCLUDED.lease_until"
)
GET_STEP_LEASES = f"SELECT {_LEASE} FROM {LEASES} WHERE run_id = $1"
EXPIRED_STEP_LEASES = (
    f"SELECT {_LEASE} FROM {LEASES} WHERE lease_until < $1 "
    "ORDER BY lease_until, run_id, step_id LIMIT $2"
)

# ----- schema version (the fast check at open; migrations use SQLAlchemy) -----

SCHEMA_VERSION_EXISTS = "SELECT to_regclass('pyworkflow_schema_version') IS NOT NULL"
SCHEMA_VERSION = "SELECT coalesce(max(version), 0) FROM pyworkflow_schema_version"


def event_arrays(
    rows: Sequence[tuple[str, int, str, str | None, float, str]],
) -> tuple[list[str], list[str | None], list[float], list[str]]:
    """Rows of :func:`pyworkflow.storage.rows.event_rows` as the four arrays statements take."""
    return (
        [row[2] for row in rows],
        [row[3] for row in rows],
        [row[4] for row in rows],
        [row[5] for row in rows],
    )


# ----- streams (``Storage.append_stream_chunk``; the rules of ``storage.stream_rules``) -----

#: Serialises the appends to one stream (``$1``: a text key naming schema, run and stream)
#: until the transaction ends: the seq is the stream's last plus one, without gaps.
LOCK_STREAM = "SELECT pg_advisory_xact_lock(hashtext($1))"
RUN_EXISTS = f"SELECT 1 FROM {RUNS} WHERE run_id = $1"
CHUNK_BY_KEY = f"SELECT seq FROM {CHUNKS} WHERE run_id = $1 AND stream = $2 AND chunk_key = $3"
_CHUNK = "run_id, stream, seq, data, step_id, attempt, chunk_index, created_at"
#: ``$1`` run, ``$2`` stream, ``$3`` data, ``$4`` step id, ``$5`` attempt, ``$6`` index,
#: ``$7`` created_at, ``$8`` dedup key: the chunk with the next seq; returns the seq.
INSERT_CHUNK = (
    f"INSERT INTO {CHUNKS} ({_CHUNK}, chunk_key) "
    "SELECT $1::varchar, $2::varchar, COALESCE(max(seq), 0) + 1, $3::varchar, $4::varchar, "
    "$5::integer, $6::integer, $7::float8, $8::varchar "
    f"FROM {CHUNKS} WHERE run_id = $1 AND stream = $2 RETURNING seq"
)
READ_CHUNKS = (
    f"SELECT {_CHUNK} FROM {CHUNKS} WHERE run_id = $1 AND stream = $2 AND seq > $3 "
    "ORDER BY seq LIMIT $4"
)
STREAM_NAMES = f"SELECT DISTINCT stream FROM {CHUNKS} WHERE run_id = $1 ORDER BY stream"
#: ``$1`` run, ``$2`` step, ``$3`` attempt, ``$4`` data, ``$5`` saved_at: the step's
#: checkpoint, written only over an older or equal attempt's (``checkpoint_rules``);
#: returns a row when written, none when a later attempt's is stored.
SAVE_CHECKPOINT = (
    f"INSERT INTO {CHECKPOINTS} AS c (run_id, step_id, attempt, data, saved_at) "
    "VALUES ($1, $2, $3, $4, $5) ON CONFLICT (run_id, step_id) DO UPDATE SET "
    "attempt = excluded.attempt, data = excluded.data, saved_at = excluded.saved_at "
    "WHERE c.attempt <= excluded.attempt RETURNING 1"
)
GET_CHECKPOINT = (
    f"SELECT attempt, data, saved_at FROM {CHECKPOINTS} WHERE run_id = $1 AND step_id = $2"
)
