"""The SQL the storage runs, as text with ``%s`` parameters (aiomysql's paramstyle).

Statements run through SQLAlchemy's ``exec_driver_sql``: no SQL is compiled
per call. The few whose text depends on the call (the columns a
:class:`~pyworkflow.models.RunPatch` sets, the filters of ``list_runs``, the
length of an ``IN`` list) are built here from a small set of shapes and cached.
A literal ``%`` is written ``%%``.

MySQL has no ``RETURNING`` on ``UPDATE`` (MariaDB has it on ``INSERT`` and
``DELETE`` only) and no partial indexes: a claim selects the due rows ``FOR
UPDATE SKIP LOCKED``, updates them by key and reads them back in the same
transaction; the live ``(queue, dedup_key)`` is a unique index over generated
columns (:mod:`pyworkflow_mysql.migrations`).
"""

from __future__ import annotations

from functools import lru_cache

from pyworkflow.models import ACTIVE_STATUSES, RunStatus
from pyworkflow.storage.rows import (
    EVENT_COLUMNS,
    HOOK_COLUMNS,
    RUN_COLUMNS,
    SCHEDULE_COLUMNS,
    STEP_LEASE_COLUMNS,
)

RUNS = "pyworkflow_runs"
EVENTS = "pyworkflow_events"
HOOKS = "pyworkflow_hooks"
LEASES = "pyworkflow_step_leases"
SCHEDULES = "pyworkflow_schedules"
SLOTS = "pyworkflow_step_slots"
CHUNKS = "pyworkflow_stream_chunks"

_RUN = ", ".join(RUN_COLUMNS)
_EVENT = ", ".join(EVENT_COLUMNS)
_HOOK = ", ".join(HOOK_COLUMNS)
_LEASE = ", ".join(STEP_LEASE_COLUMNS)
_SCHEDULE = ", ".join(SCHEDULE_COLUMNS)


def params(n: int) -> str:
    """``%s, %s, ...`` (``n`` of them)."""
    return ", ".join(["%s"] * n)


#: The statuses that hold a place in a queue, as an SQL list (``ACTIVE_STATUSES``).
_ACTIVE = ", ".join(f"'{s.value}'" for s in sorted(ACTIVE_STATUSES))
_QUEUED = f"'{RunStatus.QUEUED.value}'"

# ----- runs and events -----

GET_RUN = f"SELECT {_RUN} FROM {RUNS} WHERE run_id = %s"
GET_RUN_BY_KEY = f"SELECT {_RUN} FROM {RUNS} WHERE idempotency_key = %s"
#: ``queue`` ('' for none), ``dedup_key``: the live run holding them (generated columns).
GET_RUN_BY_DEDUP = f"SELECT {_RUN} FROM {RUNS} WHERE live_dedup_queue = %s AND live_dedup_key = %s"
LAST_SEQ = f"SELECT last_seq FROM {RUNS} WHERE run_id = %s"
INSERT_RUN = f"INSERT INTO {RUNS} ({_RUN}) VALUES ({params(len(RUN_COLUMNS))})"
INSERT_EVENT = f"INSERT INTO {EVENTS} ({_EVENT}) VALUES ({params(len(EVENT_COLUMNS))})"
GET_EVENTS = f"SELECT {_EVENT} FROM {EVENTS} WHERE run_id = %s AND seq > %s ORDER BY seq"
EVENT_AT = f"SELECT type, timestamp FROM {EVENTS} WHERE run_id = %s AND seq = %s"
RUN_EXISTS = f"SELECT 1 FROM {RUNS} WHERE run_id = %s"


@lru_cache(maxsize=256)
def append(patched: tuple[str, ...], release: bool) -> str:
    """The run row's update of an append, matched only at the expected seq.

    Parameters: new last seq, updated_at, one per column in ``patched``, then
    the releasing owner twice (``release``), then run id and expected seq. With
    ``CLIENT_FOUND_ROWS`` (SQLAlchemy sets it) the row count is the rows
    matched: 0 is a conflict or an unknown run.
    """
    sets = ["last_seq = %s", "updated_at = %s"]
    sets += [f"{column} = %s" for column in patched]
    if release:
        # MySQL assigns left to right and later SETs see earlier ones: the expiry
        # is cleared first, while lease_owner still holds the old owner
        sets.append("lease_expires_at = IF(lease_owner = %s, NULL, lease_expires_at)")
        sets.append("lease_owner = IF(lease_owner = %s, NULL, lease_owner)")
    return f"UPDATE {RUNS} SET {', '.join(sets)} WHERE run_id = %s AND last_seq = %s"


@lru_cache(maxsize=64)
def list_runs(status: bool, workflow: bool, cursor: bool, parent: bool = False) -> str:
    """``list_runs``' query for the filters given; parameters in this order, then the limit."""
    where: list[str] = []
    if status:
        where.append("status = %s")
    if workflow:
        where.append("workflow_name = %s")
    if parent:
        where.append("parent_run_id = %s")
    if cursor:
        where.append("(created_at < %s OR (created_at = %s AND run_id < %s))")
    clause = f" WHERE {' AND '.join(where)}" if where else ""
    return f"SELECT {_RUN} FROM {RUNS}{clause} ORDER BY created_at DESC, run_id DESC LIMIT %s"


@lru_cache(maxsize=64)
def runs_by_id(n: int) -> str:
    """The rows of ``n`` runs by id."""
    return f"SELECT {_RUN} FROM {RUNS} WHERE run_id IN ({params(n)})"


# ----- hooks -----

GET_HOOK = f"SELECT {_HOOK} FROM {HOOKS} WHERE token = %s"
HOOK_OWNER = f"SELECT run_id FROM {HOOKS} WHERE token = %s"
DELETE_HOOK = f"DELETE FROM {HOOKS} WHERE token = %s AND run_id = %s"
INSERT_HOOK = f"INSERT INTO {HOOKS} ({_HOOK}) VALUES ({params(len(HOOK_COLUMNS))})"
TOUCH_RUN_FOR_HOOK = (
    f"UPDATE {RUNS} SET last_seq = last_seq + 1, updated_at = %s, wake_at = %s WHERE run_id = %s"
)
HOOK_PAYLOAD_LANDED = (
    f"SELECT e.run_id, e.seq FROM {EVENTS} AS e JOIN {HOOKS} AS h ON h.run_id = e.run_id "
    "WHERE h.token = %s AND e.type = %s AND e.timestamp = %s AND e.payload = %s"
)

# ----- claims and leases -----

#: Due runs with a free or expired lease, locked, skipping rows other claimers hold. The
#: scan walks the ``wake_at`` index in order and stops at the limit: a filesort would
#: lock every due row before the LIMIT applies, and other claimers would find none.
DUE_RUNS_LOCKED = (
    f"SELECT run_id FROM {RUNS} FORCE INDEX (ix_pyworkflow_runs_wake_at) "
    "WHERE wake_at <= %s AND (lease_owner IS NULL OR lease_expires_at < %s) "
    "ORDER BY wake_at LIMIT %s FOR UPDATE SKIP LOCKED"
)


@lru_cache(maxsize=64)
def lease_runs(n: int) -> str:
    """Lease ``n`` runs (locked by this transaction) to an owner until a time."""
    return (
        f"UPDATE {RUNS} SET lease_owner = %s, lease_expires_at = %s WHERE run_id IN ({params(n)})"
    )


_CLAIM_RUN = (
    f"UPDATE {RUNS} SET lease_owner = %s, lease_expires_at = %s "
    "WHERE run_id = %s AND wake_at <= %s AND (lease_owner IS NULL OR lease_expires_at < %s{})"
)
CLAIM_RUN = _CLAIM_RUN.format("")
#: The last parameter: the prefix of placeholder owners whose lease counts as free.
CLAIM_RUN_TAKING_OVER = _CLAIM_RUN.format(" OR LEFT(lease_owner, CHAR_LENGTH(%s)) = %s")
RENEW_LEASE = f"UPDATE {RUNS} SET lease_expires_at = %s WHERE run_id = %s AND lease_owner = %s"
RELEASE_LEASE = (
    f"UPDATE {RUNS} SET lease_owner = NULL, lease_expires_at = NULL "
    "WHERE run_id = %s AND lease_owner = %s"
)
NEXT_WAKE_AT = f"SELECT MIN(wake_at) FROM {RUNS}"
DUE_TIMERS = f"SELECT run_id, wake_at FROM {RUNS} WHERE wake_at <= %s ORDER BY wake_at LIMIT %s"

# ----- named locks (queues, step queues); session locks, released after COMMIT -----

GET_LOCK = "SELECT GET_LOCK(%s, %s)"
RELEASE_LOCK = "SELECT RELEASE_LOCK(%s)"

# ----- queues -----

#: ``worker``, ``since`` (NULL: no rate), ``since``, ``queue``, ``since``: the queue's
#: active runs, those admitted by the worker, and admissions after ``since``.
QUEUE_LOAD = (
    f"SELECT COALESCE(SUM(status IN ({_ACTIVE})), 0), "
    f"COALESCE(SUM(status IN ({_ACTIVE}) AND admitted_by = %s), 0), "
    "COALESCE(SUM(%s IS NOT NULL AND admitted_at > %s), 0) "
    f"FROM {RUNS} WHERE queue = %s AND (status IN ({_ACTIVE}) OR admitted_at > %s)"
)
#: Active runs of a queue per partition key.
PARTITION_LOAD = (
    f"SELECT partition_key, COUNT(*) FROM {RUNS} "
    f"WHERE queue = %s AND status IN ({_ACTIVE}) AND partition_key IS NOT NULL "
    "GROUP BY partition_key"
)


@lru_cache(maxsize=256)
def waiting_runs(full: int, chosen: int) -> str:
    """Waiting runs of a queue in admission order, leaving out ``full`` partition keys
    and ``chosen`` run ids; parameters: queue, the keys, the ids, the limit."""
    sql = f"SELECT run_id, partition_key FROM {RUNS} WHERE queue = %s AND status = {_QUEUED} "
    if full:
        sql += f"AND (partition_key IS NULL OR partition_key NOT IN ({params(full)})) "
    if chosen:
        sql += f"AND run_id NOT IN ({params(chosen)}) "
    return sql + "ORDER BY queue_rank, created_at, run_id LIMIT %s"


@lru_cache(maxsize=64)
def lock_waiting(n: int) -> str:
    """Lock ``n`` runs that still wait (``status = 'queued'``); returns their ids."""
    return (
        f"SELECT run_id FROM {RUNS} WHERE run_id IN ({params(n)}) AND status = {_QUEUED} FOR UPDATE"
    )


@lru_cache(maxsize=64)
def admit(n: int) -> str:
    """Admit ``n`` locked waiting runs: parameters wake_at, lease owner, lease until,
    admitted_at, admitted_by, then the ids. ``updated_at`` stays."""
    return (
        f"UPDATE {RUNS} SET status = '{RunStatus.PENDING.value}', wake_at = %s, "
        "lease_owner = %s, lease_expires_at = %s, admitted_at = %s, admitted_by = %s "
        f"WHERE run_id IN ({params(n)})"
    )


#: Per queue: waiting runs, active runs, runs admitted at or after ``since`` (given twice).
QUEUE_STATS = (
    f"SELECT queue, COALESCE(SUM(status = {_QUEUED}), 0), "
    f"COALESCE(SUM(status IN ({_ACTIVE})), 0), "
    "COALESCE(SUM(admitted_at >= %s), 0) "
    f"FROM {RUNS} WHERE queue IS NOT NULL "
    f"AND (status IN ({_QUEUED}, {_ACTIVE}) OR admitted_at >= %s) GROUP BY queue"
)

# ----- step queues -----

#: ``queue``, ``holder``, ``now``: whether the holder holds its place.
STEP_SLOT_MINE = f"SELECT 1 FROM {SLOTS} WHERE queue = %s AND holder = %s AND until > %s"
#: ``queue``, ``now``, ``holder``: the places others hold.
STEP_SLOT_HELD = (
    f"SELECT COUNT(*) FROM {SLOTS} WHERE queue = %s AND until IS NOT NULL AND until > %s "
    "AND holder <> %s"
)
#: ``queue``, ``since``: places taken after ``since`` (the rate window).
STEP_SLOT_RECENT = f"SELECT COUNT(*) FROM {SLOTS} WHERE queue = %s AND acquired_at > %s"
#: Forget the queue's other places released or expired and taken at or before a time:
#: ``queue``, ``holder``, ``forget_before``, ``now``.
STEP_SLOT_FORGET = (
    f"DELETE FROM {SLOTS} WHERE queue = %s AND holder <> %s AND acquired_at <= %s "
    "AND (until IS NULL OR until <= %s)"
)
#: Give ``holder`` a place in ``queue`` at ``now`` until ``until``; a place it still holds
#: keeps its ``acquired_at`` (assigned before ``until``, so it sees the old one).
STEP_SLOT_TAKE = (
    f"INSERT INTO {SLOTS} (queue, holder, acquired_at, until) VALUES (%s, %s, %s, %s) "
    "ON DUPLICATE KEY UPDATE "
    "acquired_at = IF(until > VALUES(acquired_at), acquired_at, VALUES(acquired_at)), "
    "until = VALUES(until)"
)
STEP_SLOT_RENEW = (
    f"UPDATE {SLOTS} SET until = %s WHERE queue = %s AND holder = %s AND until IS NOT NULL"
)
STEP_SLOT_RELEASE = f"UPDATE {SLOTS} SET until = NULL WHERE queue = %s AND holder = %s"

# ----- schedules -----

INSERT_SCHEDULE = f"INSERT INTO {SCHEDULES} ({_SCHEDULE}) VALUES ({params(len(SCHEDULE_COLUMNS))})"
#: Insert or replace; a lease on the row stays as it is.
PUT_SCHEDULE = (
    INSERT_SCHEDULE + " ON DUPLICATE KEY UPDATE next_fire_at = VALUES(next_fire_at), "
    "paused = VALUES(paused), data = VALUES(data)"
)
GET_SCHEDULE = f"SELECT data FROM {SCHEDULES} WHERE name = %s"
LIST_SCHEDULES = f"SELECT data FROM {SCHEDULES}"
DELETE_SCHEDULE = f"DELETE FROM {SCHEDULES} WHERE name = %s"
#: Due schedules (``now`` twice, limit), locked, skipping rows others hold; in the order
#: of the ``next_fire_at`` index (InnoDB appends the primary key, ``name``), no filesort.
DUE_SCHEDULES_LOCKED = (
    f"SELECT name FROM {SCHEDULES} FORCE INDEX (ix_pyworkflow_schedules_next) "
    "WHERE paused = 0 AND next_fire_at <= %s "
    "AND (lease_expires_at IS NULL OR lease_expires_at < %s) "
    "ORDER BY next_fire_at, name LIMIT %s FOR UPDATE SKIP LOCKED"
)


@lru_cache(maxsize=64)
def lease_schedules(n: int) -> str:
    """Lease ``n`` locked schedules: owner, until, then the names."""
    return (
        f"UPDATE {SCHEDULES} SET lease_owner = %s, lease_expires_at = %s "
        f"WHERE name IN ({params(n)})"
    )


@lru_cache(maxsize=64)
def schedules_by_name(n: int) -> str:
    """The data of ``n`` schedules by name."""
    return f"SELECT data FROM {SCHEDULES} WHERE name IN ({params(n)})"


GET_SCHEDULE_AND_LEASE = f"SELECT next_fire_at, lease_owner, data FROM {SCHEDULES} WHERE name = %s"
LOCK_SCHEDULE = GET_SCHEDULE_AND_LEASE + " FOR UPDATE"
ADVANCE_SCHEDULE = (
    f"UPDATE {SCHEDULES} SET next_fire_at = %s, data = %s, lease_owner = NULL, "
    "lease_expires_at = NULL WHERE name = %s"
)
DROP_SCHEDULE_LEASE = (
    f"UPDATE {SCHEDULES} SET lease_owner = NULL, lease_expires_at = NULL WHERE name = %s"
)
NEXT_SCHEDULE_AT = f"SELECT MIN(next_fire_at) FROM {SCHEDULES} WHERE paused = 0"

# ----- dispatched steps -----

STEP_LEASE_DELETE = f"DELETE FROM {LEASES} WHERE run_id = %s AND step_id = %s"
STEP_LEASE_DELETE_IF_OWNER = STEP_LEASE_DELETE + " AND owner = %s"
#: ``owner``, ``until``, ``run_id``, ``step_id``, the expected owner.
SET_STEP_LEASE_IF_OWNER = (
    f"UPDATE {LEASES} SET owner = %s, lease_until = %s "
    "WHERE run_id = %s AND step_id = %s AND owner = %s"
)
STEP_LEASE_UPSERT = (
    f"INSERT INTO {LEASES} ({_LEASE}) VALUES (%s, %s, %s, %s) "
    "ON DUPLICATE KEY UPDATE owner = VALUES(owner), lease_until = VALUES(lease_until)"
)
GET_STEP_LEASES = f"SELECT {_LEASE} FROM {LEASES} WHERE run_id = %s"
EXPIRED_STEP_LEASES = (
    f"SELECT {_LEASE} FROM {LEASES} WHERE lease_until < %s "
    "ORDER BY lease_until, run_id, step_id LIMIT %s"
)

# ----- streams -----

CHUNK_BY_KEY = f"SELECT seq FROM {CHUNKS} WHERE run_id = %s AND stream = %s AND chunk_key = %s"
LAST_CHUNK = f"SELECT COALESCE(MAX(seq), 0) FROM {CHUNKS} WHERE run_id = %s AND stream = %s"
_CHUNK = "run_id, stream, seq, data, step_id, attempt, chunk_index, created_at"
INSERT_CHUNK = f"INSERT INTO {CHUNKS} ({_CHUNK}, chunk_key) VALUES ({params(9)})"
READ_CHUNKS = (
    f"SELECT {_CHUNK} FROM {CHUNKS} WHERE run_id = %s AND stream = %s AND seq > %s "
    "ORDER BY seq LIMIT %s"
)
STREAM_NAMES = f"SELECT DISTINCT stream FROM {CHUNKS} WHERE run_id = %s ORDER BY stream"

# ----- step checkpoints -----

CHECKPOINTS = "pyworkflow_step_checkpoints"
#: ``run_id``, ``step_id``, ``attempt``, ``data``, ``saved_at``: insert, or replace a
#: checkpoint of an older or equal attempt (``checkpoint_rules.supersedes``); a later
#: attempt's stays. ``attempt`` is assigned last: the other SETs see the stored one.
SAVE_CHECKPOINT = (
    f"INSERT INTO {CHECKPOINTS} (run_id, step_id, attempt, data, saved_at) "
    "VALUES (%s, %s, %s, %s, %s) ON DUPLICATE KEY UPDATE "
    "data = IF(attempt <= VALUES(attempt), VALUES(data), data), "
    "saved_at = IF(attempt <= VALUES(attempt), VALUES(saved_at), saved_at), "
    "attempt = GREATEST(attempt, VALUES(attempt))"
)
#: The stored checkpoint's attempt and data (read back under the row lock of the save).
CHECKPOINT_ATTEMPT = f"SELECT attempt, data FROM {CHECKPOINTS} WHERE run_id = %s AND step_id = %s"
GET_CHECKPOINT = (
    f"SELECT attempt, data, saved_at FROM {CHECKPOINTS} WHERE run_id = %s AND step_id = %s"
)

# ----- schema version (the fast check at open) -----

SCHEMA_VERSION_EXISTS = (
    "SELECT COUNT(*) FROM information_schema.tables "
    "WHERE table_schema = DATABASE() AND table_name = 'pyworkflow_schema_version'"
)
SCHEMA_VERSION = "SELECT COALESCE(MAX(version), 0) FROM pyworkflow_schema_version"
