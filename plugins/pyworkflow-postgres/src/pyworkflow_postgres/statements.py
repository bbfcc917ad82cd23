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

from pyworkflow.storage.rows import EVENT_COLUMNS, HOOK_COLUMNS, RUN_COLUMNS, STEP_LEASE_COLUMNS

__all__ = [
    "APPEND_HOOK_EVENT",
    "CLAIM_RUN",
    "CLAIM_RUNS",
    "CLAIM_RUN_TAKING_OVER",
    "DELETE_HOOKS",
    "DUE_TIMERS",
    "EVENT_AT",
    "EXPIRED_STEP_LEASES",
    "GET_EVENTS",
    "GET_HOOK",
    "GET_RUN",
    "GET_RUN_BY_KEY",
    "GET_STEP_LEASES",
    "HOOK_OWNER",
    "HOOK_PAYLOAD_LANDED",
    "INSERT_HOOKS",
    "INSERT_RUN_UNLESS_KEY",
    "LAST_SEQ",
    "NEXT_WAKE_AT",
    "NOTIFY",
    "RELEASE_LEASE",
    "RENEW_LEASE",
    "SCHEMA_VERSION",
    "SCHEMA_VERSION_EXISTS",
    "SET_STEP_LEASE_IF_OWNER",
    "STEP_LEASE_DELETE",
    "STEP_LEASE_DELETE_IF_OWNER",
    "STEP_LEASE_UPSERT",
    "TOUCH_RUN_FOR_HOOK",
    "append",
    "create_run",
    "event_arrays",
    "list_runs",
]

RUNS = "pyworkflow_runs"
EVENTS = "pyworkflow_events"
HOOKS = "pyworkflow_hooks"
LEASES = "pyworkflow_step_leases"

_RUN = ", ".join(RUN_COLUMNS)
_EVENT = ", ".join(EVENT_COLUMNS)
_HOOK = ", ".join(HOOK_COLUMNS)
_LEASE = ", ".join(STEP_LEASE_COLUMNS)
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
def create_run(notify: bool) -> str:
    """One statement that inserts a run (unless its idempotency key is taken) and its events.

    Parameters: the run's columns (``RUN_COLUMNS`` order), then the events as
    four arrays (types, correlation ids, timestamps, payloads), then the NOTIFY
    channel and payload (``notify``). Returns one row: how many runs were
    inserted (0: a run with that idempotency key exists; nothing was written).
    """
    n = len(RUN_COLUMNS)
    sql = (
        f"WITH r AS ({INSERT_RUN_UNLESS_KEY}), "
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
