"""Redis storage (``redis://host:6379/0``): every state-dependent write is one Lua script.

Key layout (``P`` is the prefix, ``pyworkflow`` by default):

======================================  ================================================
``P:run:<run_id>``                      hash: the run's row (fields of ``Run``; times
                                        are epoch seconds as decimal text)
``P:log:<run_id>``                      list: the event log, element *i* is seq *i + 1*
                                        (one JSON object per event)
``P:idem``                              hash: idempotency key -> run id
``P:dedup``                             hash: ``(queue, dedup_key)`` -> the run id that
                                        last took it (it holds it while not ended)
``P:queues``                            set: the names of the queues runs were started in
``P:queue:waiting:<q>``                 sorted set: queued runs by ``queue_rank``; the
                                        member ``<created_at µs>:<run_id>`` orders ties
                                        (kept in the run hash as ``queue_member``)
``P:queue:active:<q>``                  set: the queue's runs that are pending, running
                                        or suspended (updated on every status change)
``P:queue:admitted:<q>``                sorted set: admitted run ids by ``admitted_at``
                                        (the rate window and ``queue_stats``)
``P:stepq:held:<q>``                    sorted set: holders of step queue places not
                                        released, by ``until`` (held while ``until > now``)
``P:stepq:taken:<q>``                   sorted set: holders of step queue places by
                                        ``acquired_at`` (the rate window); kept on release
``P:schedules``                         hash: schedule name -> schedule JSON
``P:schedules:due``                     sorted set: names of the schedules that are not
                                        paused by ``next_fire_at``
``P:schedules:owner`` / ``:until``      hashes: name -> lease owner / lease expiry
``P:hooks``                             hash: live hook token -> hook JSON
``P:timers``                            sorted set: run ids by ``wake_at``
``P:ready``                             sorted set: run ids by when they can be claimed
                                        (``wake_at``, or the lease's expiry if later)
``P:steps:<run_id>``                    hash: step id -> ``[owner, until]`` JSON
``P:stepleases``                        sorted set: step leases by expiry
``P:idx:all`` / ``P:idx:status:<s>``    sorted sets: run ids by ``created_at`` (all runs,
``P:idx:wf:<w>`` /                      per status, per workflow, per status and
``P:idx:wfs:<s>:<w>``                   workflow) for ``list_runs``
``P:idx:parent:<id>``                   sorted set: the run ids of a run's children by
                                        ``created_at`` (``list_runs(parent_run_id=)``)
``P:delivery:<id>``                     string (expires after an hour): the outcome of
                                        one hook delivery, so a retried call does not
                                        append twice
``P:streams:<run_id>``                  hash: stream name -> its number *n* in the run
``P:stream:<run_id>:<n>``               list: the stream's chunks, element *i* is seq
                                        *i + 1* (``[data, step_id, attempt, index,
                                        created_at]`` JSON)
``P:streamkeys:<run_id>:<n>``           hash: dedup key -> seq (``stream_rules.chunk_key``)
``P:checkpoints:<run_id>``              hash: ``a:<step id>`` -> attempt, ``d:<step id>`` ->
                                        ``[attempt, data, saved_at]`` JSON (step
                                        checkpoints, ``checkpoint_rules``)
``P:schema``                            string: the layout version
``P:wake`` (pub/sub channel)            wake-ups: the epoch ``wake_at`` of a run made due
======================================  ================================================
"""

from __future__ import annotations

import contextlib
import json
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import anyio
import anyio.abc
import attrs
import redis.asyncio as aioredis
from loguru import logger
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.commands.core import AsyncScript
from redis.exceptions import (
    AuthenticationError,
    AuthenticationWrongNumberOfArgsError,
    AuthorizationError,
    NoPermissionError,
    ResponseError,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from pyworkflow.backoff import Backoff
from pyworkflow.config import Settings
from pyworkflow.errors import (
    ConcurrencyError,
    ConfigError,
    CorruptDataError,
    HookNotFoundError,
    HookTokenConflictError,
    RunNotFoundError,
    ScheduleNotFoundError,
    StorageUnavailableError,
)
from pyworkflow.models import (
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
from pyworkflow.redaction import redact_text, redact_url
from pyworkflow.storage.background import BackgroundTasks
from pyworkflow.storage.base import Storage
from pyworkflow.storage.checkpoint_rules import check_checkpoint, check_checkpoint_key
from pyworkflow.storage.flow_rules import SLOT_MEMORY
from pyworkflow.storage.rows import (
    RUN_COLUMNS,
    checkpoint_from_row,
    chunk_from_row,
    from_epoch,
    run_from_row,
    run_to_values,
    schedule_from_data,
    schedule_to_data,
)
from pyworkflow.storage.rules import decode_cursor, hook_changes, hook_conflict_error, page_from
from pyworkflow.storage.stream_rules import check_chunk, check_read, chunk_key
from pyworkflow_redis import scripts
from pyworkflow_redis.settings import parse_storage_url

__all__ = ["SCHEMA_VERSION", "RedisStorage"]

T = TypeVar("T")
#: Version of the key layout, kept in ``<prefix>:schema``.
SCHEMA_VERSION = "1"
#: Errors after which a call is retried (the server restarted, the network blipped).
RETRIED = (RedisConnectionError, RedisTimeoutError, ConnectionError, TimeoutError)
#: The server refused the credentials: retrying cannot help (and redis-py makes
#: AuthenticationError a ConnectionError, so these are caught before RETRIED).
AUTHENTICATION = (AuthenticationError, AuthenticationWrongNumberOfArgsError)
#: The user is known but not allowed a command or key PyWorkflow needs.
AUTHORIZATION = (AuthorizationError, NoPermissionError)
#: Seconds the subscriber waits for a message before looking whether it should stop.
_POLL = 1.0
_TIMES = frozenset(
    {"created_at", "updated_at", "completed_at", "wake_at", "lease_expires_at", "admitted_at"}
)
#: Offset added to ``created_at`` in microseconds so that any datetime gives 19 digits
#: (``P:queue:waiting:<q>`` members sort by that text).
_MEMBER_OFFSET = 10**17
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)
_FSYNC_SETTINGS = ("appendonly", "appendfsync", "no-appendfsync-on-rewrite", "maxmemory-policy")


def _text(value: float) -> str:
    """Epoch seconds as the exact decimal text stored in Redis."""
    return repr(value)


def _json(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def _str(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _encode_event(event: NewEvent) -> str:
    return _json(
        {
            "type": event.type.value,
            "cid": event.correlation_id,
            "ts": event.timestamp.timestamp(),
            "payload": dict(event.payload),
        }
    )


def _decode_event(run_id: str, seq: int, raw: bytes) -> Event:
    kind: Any = "?"
    try:
        data = json.loads(raw)
        if not isinstance(data, dict):
            raise ValueError("the event is not a JSON object")
        kind = data.get("type", "?")
        payload = data["payload"]
        if not isinstance(payload, dict):
            raise ValueError("payload is not a JSON object")
        cid = data.get("cid")
        if cid is not None and not isinstance(cid, str):
            raise ValueError(f"correlation id {cid!r} is not a string")
        timestamp = datetime.fromtimestamp(float(data["ts"]), UTC)
        return Event(run_id, seq, EventType(kind), cid, timestamp, payload)
    except (ValueError, TypeError, KeyError, OverflowError, UnicodeDecodeError) as exc:
        raise CorruptDataError(
            f"run {run_id}: event seq {seq} ({kind}) cannot be decoded: {exc!r}"
        ) from exc


def _run_fields(run: Run) -> list[str]:
    """``run`` as field/value pairs of its hash (None fields left out).

    A run of a queue also gets ``queue_member``, its member in the queue's
    waiting set.
    """
    pairs: list[str] = []
    for name, value in zip(RUN_COLUMNS, run_to_values(run), strict=True):
        if value is None:
            continue
        pairs += [name, _text(value) if name in _TIMES else str(value)]
    if run.queue is not None:
        pairs += ["queue_member", _queue_member(run)]
    return pairs


def _queue_member(run: Run) -> str:
    """The member of ``run`` in its queue's waiting set: equal ranks sort by it.

    ``created_at`` in microseconds, zero-padded to 19 digits, then ``:`` and the
    run id, so Redis's byte order of members is the order of
    ``(created_at, run_id)`` (UTF-8 byte order is code point order, as Python's).
    """
    micros = (run.created_at.astimezone(UTC) - _EPOCH) // _MICROSECOND
    return f"{micros + _MEMBER_OFFSET:019d}:{run.run_id}"


def _dedup_field(run: Run) -> str:
    """The field of ``run``'s ``(queue, dedup_key)`` in ``P:dedup`` ('' when it has no key)."""
    if run.dedup_key is None:
        return ""
    scope = "-" if run.queue is None else f"+{len(run.queue)}:{run.queue}"
    return f"{scope}:{run.dedup_key}"


def _then_retry(args: list[str]) -> Callable[[bool], list[str]]:
    """Script arguments: ``args``, then the retry flag."""
    return lambda retry: [*args, "1" if retry else "0"]


def _optional(value: float | None) -> str:
    return "" if value is None else str(value)


def _decode_run(raw: Sequence[Any] | Mapping[Any, Any], run_id: str = "?") -> Run:
    """A Run from HGETALL's reply (a flat list from Lua, a dict from the client)."""
    try:
        if isinstance(raw, Mapping):
            fields = {_str(k): _str(v) for k, v in raw.items()}
        else:
            items = [_str(v) for v in raw]
            fields = dict(zip(items[::2], items[1::2], strict=True))
        run_id = fields.get("run_id", run_id)
        row: list[Any] = []
        for name in RUN_COLUMNS:
            value: Any = fields.get(name)
            if value is not None and name in _TIMES:
                value = float(value)
            elif name == "last_seq":
                value = int(value or 0)
            elif name == "priority":  # absent from runs stored before queues
                value = int(value or 0)
            elif name == "queue_rank" and value is not None:
                value = float(value)
            row.append(value)
    except (ValueError, TypeError, UnicodeDecodeError) as exc:
        raise CorruptDataError(f"run {run_id!r}: corrupt run hash: {exc!r}") from exc
    return run_from_row(tuple(row))


def _decode_hook(token: str, raw: bytes | str) -> HookRecord:
    try:
        data = json.loads(raw)
        return HookRecord(
            token,
            str(data["run_id"]),
            str(data["correlation_id"]),
            datetime.fromtimestamp(float(data["created_at"]), UTC),
            data.get("schema"),
            data.get("secret"),
        )
    except (ValueError, TypeError, KeyError, OverflowError) as exc:
        raise CorruptDataError(f"hook {token!r}: corrupt hook record: {exc!r}") from exc


def _encode_hook(hook: HookRecord) -> str:
    return _json(
        {
            "run_id": hook.run_id,
            "correlation_id": hook.correlation_id,
            "created_at": hook.created_at.timestamp(),
            "schema": hook.schema,
            "secret": hook.secret,
        }
    )


def _decode_step_lease(run_id: str, step_id: str, raw: bytes | str) -> StepLease:
    try:
        owner, until = json.loads(raw)
        return StepLease(run_id, step_id, str(owner), datetime.fromtimestamp(float(until), UTC))
    except (ValueError, TypeError, OverflowError) as exc:
        raise CorruptDataError(
            f"run {run_id}: step {step_id!r} has a corrupt lease: {exc!r}"
        ) from exc


def _patch_json(patch: RunPatch | None) -> str:
    """``patch`` for the append script ('' for none); times as exact decimal text."""
    if patch is None:
        return ""
    data: dict[str, Any] = {}
    if patch.clear_outcome:
        data["clear"] = True
    for name in ("result", "error", "error_message"):
        value = getattr(patch, name)
        if value is not None:
            data[name] = value
    if patch.completed_at is not None:
        data["completed_at"] = _text(patch.completed_at.timestamp())
    if patch.status is not None:
        data["status"] = patch.status.value
    if patch.set_wake:
        data["set_wake"] = True
        if patch.wake_at is not None:
            data["wake_at"] = _text(patch.wake_at.timestamp())
    if patch.release_lease:
        data["release"] = True
    return _json(data)


def _counted(items: Sequence[str]) -> list[str]:
    return [str(len(items)), *items]


def _hook_args(run_id: str, events: Sequence[NewEvent]) -> tuple[list[str], list[str]]:
    created, disposed = hook_changes(run_id, events)
    pairs = [part for hook in created for part in (hook.token, _encode_hook(hook))]
    return pairs, disposed


def _status(reply: Sequence[Any]) -> str:
    return _str(reply[0]) if reply else ""


class RedisStorage(Storage):
    """Runs, event logs, timers, leases and hooks in one Redis server.

    Build it from a URL (``redis://[user:password@]host[:port][/db][?prefix=...]``
    or ``rediss://`` for TLS) and optionally the process settings, whose
    ``[tool.pyworkflow.redis]`` table gives defaults for ``prefix``,
    ``durability`` and ``reconnect_timeout``. ``open()`` refuses a server that
    does not fsync every write unless ``durability = "relaxed"``.

    One Redis server (or a primary with replicas); Redis Cluster is not
    supported: the scripts touch keys they compute from the prefix.
    """

    pushes_wakeups = True

    def __init__(self, url: str, settings: Settings | None = None) -> None:
        self.url = url
        self._connect_url, self.options = parse_storage_url(url, settings)
        self.prefix = self.options.prefix
        self._redis: aioredis.Redis | None = None
        self._scripts: dict[str, AsyncScript] = {}
        self._background: BackgroundTasks | None = None
        self._closing = False
        #: The URL with its password hidden, for logs and errors.
        self.log_url = redact_url(url)
        self.log = logger.bind(storage=self.log_url, prefix=self.prefix)

    # ----- lifecycle -----

    def _key(self, *parts: str) -> str:
        return ":".join((self.prefix, *parts))

    def _client(self) -> aioredis.Redis:
        # redis-py's own retries are off: calls are retried here, knowing which may have
        # gone through (see _call), for up to reconnect_timeout.
        return aioredis.Redis.from_url(
            self._connect_url, decode_responses=False, retry=Retry(NoBackoff(), 0)
        )

    async def open(self, task_group: anyio.abc.TaskGroup | None = None) -> None:
        """Connect, check the server's durability settings, subscribe to wake-ups.

        The wake-up subscriber runs in ``task_group`` (the runtime's) until
        :meth:`close`; without a task group there is none (this storage then
        hears no wake-ups; it still publishes its own).
        """
        if self._redis is not None:
            return
        self._closing = False
        client = self._client()
        self._redis = client
        try:
            await self._call("open", lambda retry: self._check_server(client))
        except BaseException:
            self._redis = None
            with anyio.CancelScope(shield=True):
                await client.aclose()
            raise
        sources = {
            "create_run": scripts.CREATE_RUN,
            "append": scripts.APPEND,
            "hook": scripts.APPEND_HOOK_PAYLOAD,
            "claim_runs": scripts.CLAIM_RUNS,
            "claim_run": scripts.CLAIM_RUN,
            "renew": scripts.RENEW_LEASE,
            "release": scripts.RELEASE_LEASE,
            "step_lease": scripts.SET_STEP_LEASE,
            "expired_step_leases": scripts.EXPIRED_STEP_LEASES,
            "admit": scripts.ADMIT_QUEUED_RUNS,
            "queue_stats": scripts.QUEUE_STATS,
            "acquire_step_slot": scripts.ACQUIRE_STEP_SLOT,
            "renew_step_slot": scripts.RENEW_STEP_SLOT,
            "put_schedule": scripts.PUT_SCHEDULE,
            "claim_schedules": scripts.CLAIM_SCHEDULES,
            "advance_schedule": scripts.ADVANCE_SCHEDULE,
            "append_stream_chunk": scripts.APPEND_STREAM_CHUNK,
            "read_stream": scripts.READ_STREAM,
            "save_step_checkpoint": scripts.SAVE_STEP_CHECKPOINT,
        }
        self._scripts = {name: client.register_script(src) for name, src in sources.items()}
        if task_group is not None:
            self._background = BackgroundTasks(task_group, owner=self.log_url)
            await self._background.start(self._listen, name=f"pyworkflow-redis-wake:{self.prefix}")

    async def close(self) -> None:
        """Stop the subscriber (its task has ended when this returns), close the connections."""
        background, client = self._background, self._redis
        self._background, self._redis, self._scripts = None, None, {}
        self._closing = True
        if background is not None:
            # a cancellation redis-py turns into a read timeout is delivered again by the
            # task's cancel scope; the loop also sees _closing within _POLL seconds
            await background.aclose()
        if client is not None:
            with anyio.CancelScope(shield=True):
                await client.aclose()

    async def _check_server(self, client: aioredis.Redis) -> None:
        await client.ping()
        await self._check_durability(client)
        schema_key = self._key("schema")
        await client.set(schema_key, SCHEMA_VERSION, nx=True)
        found = _str(await client.get(schema_key) or b"")
        if found != SCHEMA_VERSION:
            raise ConfigError(
                f"Redis keys under prefix {self.prefix!r} use layout version {found!r}, "
                f"this pyworkflow-redis writes version {SCHEMA_VERSION}; "
                "upgrade pyworkflow-redis or choose another prefix"
            )

    async def _check_durability(self, client: aioredis.Redis) -> None:
        """Refuse a server that may lose acknowledged writes, unless told to accept it."""
        if self.options.durability == "relaxed":
            return
        opt_out = (
            'or accept the weaker guarantee with durability = "relaxed" in '
            "[tool.pyworkflow.redis] (or PYWORKFLOW_REDIS__DURABILITY=relaxed, or "
            "?durability=relaxed in the storage URL); see docs/storage-redis.md"
        )
        config: dict[str, str] = {}
        try:
            for name in _FSYNC_SETTINGS:
                reply = await client.config_get(name)
                config.update({_str(k): _str(v) for k, v in reply.items()})
        except ResponseError as exc:
            raise ConfigError(
                f"cannot check that Redis at {self.log_url} fsyncs every write: "
                f"CONFIG GET failed ({exc}); managed Redis services often disable the CONFIG "
                "command. If the service keeps an append-only file fsync'd on every write "
                "(appendonly yes, appendfsync always), or you accept losing the last "
                "acknowledged writes on a crash, opt out of this check: set "
                'durability = "relaxed" in [tool.pyworkflow.redis] (or '
                "PYWORKFLOW_REDIS__DURABILITY=relaxed, or ?durability=relaxed in the storage "
                "URL); see docs/storage-redis.md"
            ) from None
        problems = []
        if config.get("appendonly") != "yes":
            problems.append(f"appendonly is {config.get('appendonly')!r} (set appendonly yes)")
        if config.get("appendfsync") != "always":
            problems.append(
                f"appendfsync is {config.get('appendfsync')!r} (set appendfsync always)"
            )
        if config.get("no-appendfsync-on-rewrite") == "yes":
            problems.append(
                "no-appendfsync-on-rewrite is 'yes', which skips fsyncs during AOF "
                "rewrites (set no-appendfsync-on-rewrite no)"
            )
        policy = config.get("maxmemory-policy", "")
        if policy.startswith("allkeys"):
            problems.append(
                f"maxmemory-policy is {policy!r}, which may evict runs when memory is full "
                "(set maxmemory-policy noeviction)"
            )
        if problems:
            raise ConfigError(
                f"Redis at {self.log_url} may lose acknowledged PyWorkflow writes on a "
                f"crash or power loss: {'; '.join(problems)}. Set these in redis.conf (or "
                "CONFIG SET each, then CONFIG REWRITE), " + opt_out
            )

    # ----- plumbing -----

    @property
    def client(self) -> aioredis.Redis:
        """The open redis-py client (RuntimeError before ``open()``)."""
        if self._redis is None:
            raise RuntimeError(f"storage {self.log_url} is not open")
        return self._redis

    async def _call(self, what: str, attempt: Callable[[bool], Awaitable[T]]) -> T:
        """``attempt(retry)``, again with exponential backoff while Redis is unreachable.

        ``retry`` is True from the second attempt on: the scripts then first
        look whether an earlier attempt went through (the reply was lost).
        Gives up after ``reconnect_timeout`` with ``StorageUnavailableError``.
        """
        # 0.05 s doubling to 2 s; gives up rather than sleep past the deadline
        backoff = Backoff(timeout=self.options.reconnect_timeout, at_deadline="give_up")
        retry = False
        while True:
            try:
                return await attempt(retry)
            except AUTHENTICATION + AUTHORIZATION as exc:
                raise self._refused(what, exc) from exc
            except RETRIED as exc:
                delay = backoff.next_delay()
                if delay is None:
                    raise StorageUnavailableError(
                        f"Redis storage {self.log_url} unreachable for "
                        f"{self.options.reconnect_timeout:g}s ({what}): {redact_text(str(exc))}"
                    ) from exc
                self.log.warning("redis unreachable during {}, retrying: {!r}", what, exc)
                await anyio.sleep(delay)
                retry = True

    def _refused(self, what: str, exc: Exception) -> ConfigError:
        """The error for credentials or permissions Redis refused: not retried."""
        detail = redact_text(str(exc)) or type(exc).__name__
        if isinstance(exc, AUTHENTICATION):
            return ConfigError(
                f"Redis storage {self.log_url} refused to authenticate ({what}): {detail}. "
                "Check the user name and password in the storage URL (config key 'storage': "
                "redis://:PASSWORD@host:6379/0, or redis://USER:PASSWORD@host:6379/0 with an "
                "ACL user); special characters in the password must be percent-encoded. "
                "Not retried: a wrong password does not become right"
            )
        return ConfigError(
            f"Redis storage {self.log_url} denied a command or key PyWorkflow needs "
            f"({what}): {detail}. Give the user the keys and channels under prefix "
            f"{self.prefix!r} (ACL ~{self.prefix}:* &{self.prefix}:*) and the commands "
            "PyWorkflow runs (scripting, hashes, sorted sets, pub/sub, and CONFIG GET unless "
            'durability = "relaxed"), or use another user. Not retried'
        )

    async def _script(self, name: str, args: Callable[[bool], list[str]]) -> Any:
        """Run script ``name`` with ``ARGV = [prefix, *args]`` (retried as in :meth:`_call`)."""
        script = self._scripts.get(name)
        if script is None:
            raise RuntimeError(f"storage {self.log_url} is not open")
        return await self._call(name, lambda retry: script(args=[self.prefix, *args(retry)]))

    # ----- runs and the log -----

    async def create_run(self, run: Run, events: Sequence[NewEvent]) -> tuple[Run, bool]:
        stored = attrs.evolve(run, last_seq=len(events))
        created, _ = _hook_args(run.run_id, events)
        fields = _run_fields(stored)
        encoded = [_encode_event(e) for e in events]
        key = run.idempotency_key or ""
        dedup = _dedup_field(run)

        def args(retry: bool) -> list[str]:
            flag = "1" if retry else "0"
            return [
                run.run_id,
                key,
                dedup,
                flag,
                *_counted(fields),
                *_counted(encoded),
                *_counted(created),
            ]

        reply = await self._script("create_run", args)
        status = _status(reply)
        if status == "created":
            return stored, True
        if status == "exists":
            return _decode_run(reply[1]), False
        if status == "hook":
            raise self._hook_conflict(reply)
        if status == "duplicate":
            raise ConcurrencyError(run.run_id, 0, int(reply[1] or 0))
        raise CorruptDataError(f"run {run.run_id}: unexpected reply {reply!r} from create_run")

    @staticmethod
    def _hook_conflict(reply: Sequence[Any]) -> HookTokenConflictError:
        return hook_conflict_error(_str(reply[1]), _str(reply[2]))

    async def get_run(self, run_id: str) -> Run:
        raw = await self._call(
            "get_run", lambda retry: self.client.hgetall(self._key("run", run_id))
        )
        if not raw:
            raise RunNotFoundError(f"no run with id {run_id!r} in {self.log_url}")
        return _decode_run(raw, run_id)

    async def list_runs(
        self,
        *,
        status: RunStatus | None = None,
        workflow: str | None = None,
        limit: int = 100,
        cursor: str | None = None,
        parent_run_id: str | None = None,
    ) -> RunPage:
        if parent_run_id is not None:
            index = self._key("idx", "parent", parent_run_id)
        elif status is not None and workflow is not None:
            index = self._key("idx", "wfs", status.value, workflow)
        elif status is not None:
            index = self._key("idx", "status", status.value)
        elif workflow is not None:
            index = self._key("idx", "wf", workflow)
        else:
            index = self._key("idx", "all")
        top, below = ("+inf", None) if cursor is None else _cursor_bounds(cursor)
        want = limit + 1
        runs: list[Run] = []
        offset = 0
        while len(runs) < want:
            batch = max(want - len(runs), 16)

            async def fetch(retry: bool, start: int = offset, num: int = batch) -> Any:
                return await self.client.zrevrangebyscore(
                    index, top, "-inf", start=start, num=num, withscores=True
                )

            page = await self._call("list_runs", fetch)
            if not page:
                break
            offset += len(page)
            ids = [
                _str(member)
                for member, score in page
                if below is None or score < below[0] or _str(member) < below[1]
            ]
            for run in await self._rows(ids):
                if (
                    (status is None or run.status == status)
                    and (workflow is None or run.workflow_name == workflow)
                    and (parent_run_id is None or run.parent_run_id == parent_run_id)
                ):
                    runs.append(run)
        return page_from(runs, limit)

    async def _rows(self, run_ids: list[str]) -> list[Run]:
        """The rows of ``run_ids`` that exist, in order (one round trip)."""
        if not run_ids:
            return []

        async def fetch(retry: bool) -> list[Any]:
            async with self.client.pipeline(transaction=False) as pipe:
                for run_id in run_ids:
                    pipe.hgetall(self._key("run", run_id))
                return list(await pipe.execute())

        raws = await self._call("list_runs", fetch)
        return [_decode_run(raw, rid) for rid, raw in zip(run_ids, raws, strict=True) if raw]

    async def get_events(self, run_id: str, after_seq: int = 0) -> list[Event]:
        log_key, run_key = self._key("log", run_id), self._key("run", run_id)

        async def fetch(retry: bool) -> tuple[list[bytes], int]:
            async with self.client.pipeline(transaction=False) as pipe:
                pipe.lrange(log_key, max(after_seq, 0), -1)
                pipe.exists(run_key)
                items, exists = await pipe.execute()
            return list(items), int(exists)

        items, exists = await self._call("get_events", fetch)
        if not exists:
            raise RunNotFoundError(f"no run with id {run_id!r} in {self.log_url}")
        first = max(after_seq, 0) + 1
        return [_decode_event(run_id, seq, raw) for seq, raw in enumerate(items, start=first)]

    async def append_events(
        self,
        run_id: str,
        expected_seq: int,
        events: Sequence[NewEvent],
        patch: RunPatch | None = None,
        *,
        owner: str | None = None,
    ) -> int:
        encoded = [_encode_event(e) for e in events]
        created, disposed = _hook_args(run_id, events)
        patch_json = _patch_json(patch)
        now = _text(utcnow().timestamp())

        def args(retry: bool) -> list[str]:
            return [
                run_id,
                str(expected_seq),
                now,
                owner or "",
                "1" if retry else "0",
                patch_json,
                *_counted(encoded),
                *_counted(created),
                *_counted(disposed),
            ]

        reply = await self._script("append", args)
        status = _status(reply)
        if status == "ok":
            return int(reply[1])
        if status == "conflict":
            raise ConcurrencyError(run_id, expected_seq, int(reply[1]))
        if status == "missing":
            raise RunNotFoundError(f"no run with id {run_id!r} in {self.log_url}")
        if status == "hook":
            raise self._hook_conflict(reply)
        raise CorruptDataError(f"run {run_id}: unexpected reply {reply!r} from append")

    # ----- due runs and leases -----

    async def claim_runs(
        self, owner: str, now: datetime, limit: int, lease_for: timedelta
    ) -> list[Run]:
        if limit <= 0:
            return []
        if lease_for <= timedelta(0):
            raise ValueError(f"a lease must last a positive time, got {lease_for}")
        at = _text(now.timestamp())
        until = _text((now + lease_for).timestamp())

        def args(retry: bool) -> list[str]:
            return [owner, at, until, str(limit), "1" if retry else "0"]

        reply = await self._script("claim_runs", args)
        runs = [_decode_run(raw) for raw in reply]
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
        at = _text(now.timestamp())
        until = _text((now + lease_for).timestamp())
        has_prefix = "0" if take_over_prefix is None else "1"

        def args(retry: bool) -> list[str]:
            flag = "1" if retry else "0"
            return [run_id, owner, at, until, has_prefix, take_over_prefix or "", flag]

        reply = await self._script("claim_run", args)
        return _decode_run(reply, run_id) if reply else None

    async def renew_lease(self, run_id: str, owner: str, until: datetime) -> bool:
        at = _text(until.timestamp())
        return bool(await self._script("renew", lambda retry: [run_id, owner, at]))

    async def release_lease(self, run_id: str, owner: str) -> None:
        await self._script("release", lambda retry: [run_id, owner])

    async def next_wake_at(self) -> datetime | None:
        first = await self._call(
            "next_wake_at",
            lambda retry: self.client.zrange(self._key("timers"), 0, 0, withscores=True),
        )
        return from_epoch(float(first[0][1])) if first else None

    async def due_timers(self, now: datetime, limit: int) -> list[tuple[str, datetime]]:
        if limit <= 0:
            return []
        due: Any = await self._call(
            "due_timers",
            lambda retry: self.client.zrangebyscore(
                self._key("timers"), "-inf", _text(now.timestamp()), 0, limit, withscores=True
            ),
        )
        tz = now.tzinfo
        return [(_str(m), datetime.fromtimestamp(float(s), tz=tz)) for m, s in due]

    # ----- hooks -----

    async def get_hook(self, token: str) -> HookRecord:
        raw = await self._call(
            "get_hook", lambda retry: self.client.hget(self._key("hooks"), token)
        )
        if raw is None:
            raise HookNotFoundError(f"no live hook with token {token!r}")
        return _decode_hook(token, raw)

    async def append_hook_payload(
        self, token: str, payload: Mapping[str, Any], now: datetime
    ) -> tuple[str, int]:
        data = _json(dict(payload))
        at = _text(now.timestamp())
        delivery = uuid.uuid4().hex

        def args(retry: bool) -> list[str]:
            return [token, data, at, delivery, "1" if retry else "0"]

        reply = await self._script("hook", args)
        status = _status(reply)
        if status == "missing":
            raise HookNotFoundError(f"no live hook with token {token!r}")
        if status == "ok":
            seq, _, run_id = _str(reply[1]).partition(" ")
            return run_id, int(seq)
        raise CorruptDataError(f"hook {token!r}: corrupt hook record {reply!r}")

    # ----- dispatched steps -----

    async def set_step_lease(
        self,
        run_id: str,
        step_id: str,
        owner: str | None,
        until: datetime | None,
        *,
        if_owner: str | None = None,
    ) -> bool:
        if owner is not None and until is None:
            raise ValueError("a step lease needs an expiry time")
        at = "" if until is None or owner is None else _text(until.timestamp())
        value = "" if owner is None else _json([owner, at])

        def args(retry: bool) -> list[str]:
            return [
                run_id,
                step_id,
                "0" if owner is None else "1",
                value,
                at,
                "0" if if_owner is None else "1",
                if_owner or "",
                "1" if retry else "0",
            ]

        return bool(await self._script("step_lease", args))

    async def get_step_leases(self, run_id: str) -> dict[str, StepLease]:
        raw = await self._call(
            "get_step_leases", lambda retry: self.client.hgetall(self._key("steps", run_id))
        )
        leases = [_decode_step_lease(run_id, _str(k), v) for k, v in raw.items()]
        return {lease.step_id: lease for lease in leases}

    async def expired_step_leases(self, now: datetime, limit: int) -> list[StepLease]:
        if limit <= 0:
            return []
        at = _text(now.timestamp())
        reply = await self._script("expired_step_leases", lambda retry: [at, str(limit)])
        return [
            _decode_step_lease(_str(reply[i]), _str(reply[i + 1]), reply[i + 2])
            for i in range(0, len(reply), 3)
        ]

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
        """Admit waiting runs of ``queue`` within ``limits``: one Lua script counts and admits."""
        if limit <= 0:
            return []
        if lease_for <= timedelta(0):
            raise ValueError(f"a lease must last a positive time, got {lease_for}")
        at = _text(now.timestamp())
        until = _text((now + lease_for).timestamp())
        rate_count, rate_since = "", ""
        if limits.rate is not None:
            rate_count = str(limits.rate[0])
            rate_since = _text((now - limits.rate[1]).timestamp())
        fixed = [
            queue,
            owner,
            at,
            until,
            str(limit),
            "0" if worker is None else "1",
            worker or "",
            _optional(limits.concurrency),
            _optional(limits.worker_concurrency),
            _optional(limits.partition_concurrency),
            rate_count,
            rate_since,
        ]
        reply = await self._script("admit", _then_retry(fixed))
        runs = [_decode_run(raw) for raw in reply]
        # the admission order (a retried call finds its runs in another order)
        return sorted(runs, key=lambda r: (r.queue_rank or 0.0, r.created_at, r.run_id))

    async def queue_stats(self, since: datetime) -> list[QueueStats]:
        at = _text(since.timestamp())
        reply = await self._script("queue_stats", lambda retry: [at])
        stats = [QueueStats(_str(q), int(w), int(a), int(n)) for q, w, a, n in reply]
        return sorted(stats, key=lambda s: s.queue)

    # ----- step queues -----

    async def acquire_step_slot(
        self,
        queue: str,
        holder: str,
        limits: QueueLimits,
        now: datetime,
        lease_for: timedelta,
    ) -> bool:
        """Take (or keep) ``holder``'s place in step queue ``queue``: one script counts and writes.

        Released or expired places and acquisitions older than a day (or than
        the rate's period, if longer) are deleted on the way.
        """
        rate_count, rate_since, forget = "", "", now - SLOT_MEMORY
        if limits.rate is not None:
            rate_count = str(limits.rate[0])
            rate_since = _text((now - limits.rate[1]).timestamp())
            forget = min(forget, now - limits.rate[1])
        args = [
            queue,
            holder,
            _text(now.timestamp()),
            _text((now + lease_for).timestamp()),
            _optional(limits.concurrency),
            rate_count,
            rate_since,
            _text(forget.timestamp()),
        ]
        return bool(await self._script("acquire_step_slot", lambda retry: args))

    async def renew_step_slot(self, queue: str, holder: str, until: datetime) -> bool:
        at = _text(until.timestamp())
        return bool(await self._script("renew_step_slot", lambda retry: [queue, holder, at]))

    async def release_step_slot(self, queue: str, holder: str) -> None:
        key = self._key("stepq", "held", queue)
        await self._call("release_step_slot", lambda retry: self.client.zrem(key, holder))

    # ----- schedules -----

    async def create_schedule(self, schedule: Schedule) -> tuple[Schedule, bool]:
        reply = await self._put_schedule(schedule, only_new=True)
        if _status(reply) == "exists":
            return schedule_from_data(_str(reply[1])), False
        return schedule, True

    async def put_schedule(self, schedule: Schedule) -> None:
        await self._put_schedule(schedule, only_new=False)

    async def _put_schedule(self, schedule: Schedule, *, only_new: bool) -> Any:
        data = schedule_to_data(schedule)
        nxt = "" if schedule.next_fire_at is None else _text(schedule.next_fire_at.timestamp())
        fixed = [
            schedule.name,
            data,
            nxt,
            "1" if schedule.paused else "0",
            "1" if only_new else "0",
        ]
        return await self._script("put_schedule", _then_retry(fixed))

    async def get_schedule(self, name: str) -> Schedule:
        raw = await self._call(
            "get_schedule", lambda retry: self.client.hget(self._key("schedules"), name)
        )
        if raw is None:
            raise ScheduleNotFoundError(f"no schedule named {name!r} in {self.log_url}")
        return schedule_from_data(_str(raw))

    async def list_schedules(self) -> list[Schedule]:
        raw = await self._call(
            "list_schedules", lambda retry: self.client.hgetall(self._key("schedules"))
        )
        return [schedule_from_data(_str(raw[name])) for name in sorted(raw, key=_str)]

    async def delete_schedule(self, name: str) -> bool:
        async def delete(retry: bool) -> bool:
            async with self.client.pipeline(transaction=True) as pipe:
                pipe.hdel(self._key("schedules"), name)
                pipe.zrem(self._key("schedules", "due"), name)
                pipe.hdel(self._key("schedules", "owner"), name)
                pipe.hdel(self._key("schedules", "until"), name)
                removed, *_ = await pipe.execute()
            return bool(removed)

        return await self._call("delete_schedule", delete)

    async def claim_schedules(
        self, owner: str, now: datetime, limit: int, lease_for: timedelta
    ) -> list[Schedule]:
        if limit <= 0:
            return []
        if lease_for <= timedelta(0):
            raise ValueError(f"a lease must last a positive time, got {lease_for}")
        fixed = [owner, _text(now.timestamp()), _text((now + lease_for).timestamp()), str(limit)]
        reply = await self._script("claim_schedules", _then_retry(fixed))
        claimed = [schedule_from_data(_str(raw)) for raw in reply]
        return sorted(claimed, key=lambda s: (s.next_fire_at or now, s.name))

    async def advance_schedule(
        self,
        name: str,
        owner: str,
        expected_next_fire_at: datetime,
        next_fire_at: datetime | None,
        last_fire_at: datetime | None,
        last_run_id: str | None,
    ) -> bool:
        """Record a firing if ``owner`` holds the lease and the tick is still the expected one.

        The row is read, changed here and written back by a script that
        checks it is still the row read (a concurrent ``put_schedule`` makes
        it read again), so the JSON is never re-encoded by Lua.
        """
        while True:
            raw = await self._call(
                "advance_schedule",
                lambda retry: self.client.hget(self._key("schedules"), name),
            )
            if raw is None:
                return False
            seen = _str(raw)
            current = schedule_from_data(seen)
            write = current.next_fire_at == expected_next_fire_at
            new = attrs.evolve(
                current,
                next_fire_at=next_fire_at,
                last_fire_at=last_fire_at,
                last_run_id=last_run_id,
            )
            data = schedule_to_data(new) if write else ""
            nxt = "" if next_fire_at is None else _text(next_fire_at.timestamp())
            fixed = [name, owner, seen, "1" if write else "0", data, nxt]
            fixed.append("1" if new.paused else "0")
            reply = _str(await self._script("advance_schedule", _then_retry(fixed)))
            if reply != "changed":
                return reply == "ok"

    async def next_schedule_at(self) -> datetime | None:
        first = await self._call(
            "next_schedule_at",
            lambda retry: self.client.zrange(self._key("schedules", "due"), 0, 0, withscores=True),
        )
        return from_epoch(float(first[0][1])) if first else None

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
        key = chunk_key(step_id, index) or ""
        chunk = _json([data, step_id, attempt, index, utcnow().timestamp()])
        reply = await self._script(
            "append_stream_chunk", lambda retry: [run_id, stream, chunk, key]
        )
        if _status(reply) == "missing":
            raise RunNotFoundError(f"no run with id {run_id!r} in {self.log_url}")
        return int(reply[1])

    async def read_stream(
        self, run_id: str, stream: str, after_seq: int = 0, limit: int = 1000
    ) -> list[StreamChunk]:
        check_read(run_id, stream, after_seq, limit)
        reply = await self._script(
            "read_stream", lambda retry: [run_id, stream, str(after_seq), str(limit)]
        )
        if _status(reply) == "missing":
            raise RunNotFoundError(f"no run with id {run_id!r} in {self.log_url}")
        chunks = []
        for seq, raw in enumerate(reply[1:], start=after_seq + 1):
            try:
                values = json.loads(raw)
            except ValueError as exc:
                raise CorruptDataError(
                    f"run {run_id}: chunk {seq} of stream {stream!r} cannot be decoded: {exc}"
                ) from exc
            chunks.append(chunk_from_row([run_id, stream, seq, *values]))
        return chunks

    async def list_streams(self, run_id: str) -> list[str]:
        async def fetch(retry: bool) -> list[Any]:
            async with self.client.pipeline(transaction=True) as pipe:
                pipe.hkeys(self._key("streams", run_id))
                pipe.exists(self._key("run", run_id))
                return list(await pipe.execute())

        names, exists = await self._call("list_streams", fetch)
        if not exists:
            raise RunNotFoundError(f"no run with id {run_id!r} in {self.log_url}")
        return sorted(_str(name) for name in names)

    # ----- step checkpoints -----

    async def save_step_checkpoint(
        self, run_id: str, step_id: str, attempt: int, data: str
    ) -> bool:
        check_checkpoint(run_id, step_id, attempt, data, self.max_payload_bytes)
        value = _json([attempt, data, utcnow().timestamp()])
        reply = await self._script(
            "save_step_checkpoint", lambda retry: [run_id, step_id, str(attempt), value]
        )
        status = _status(reply)
        if status == "missing":
            raise RunNotFoundError(f"no run with id {run_id!r} in {self.log_url}")
        return status == "ok"

    async def get_step_checkpoint(self, run_id: str, step_id: str) -> StepCheckpoint | None:
        check_checkpoint_key(run_id, step_id)
        raw = await self._call(
            "get_step_checkpoint",
            lambda retry: self.client.hget(self._key("checkpoints", run_id), f"d:{step_id}"),
        )
        if raw is None:
            return None
        try:
            values = json.loads(raw)
        except ValueError as exc:
            raise CorruptDataError(
                f"run {run_id}: the checkpoint of step {step_id!r} cannot be decoded: {exc}"
            ) from exc
        return checkpoint_from_row([run_id, step_id, *values])

    # ----- wake-ups -----

    async def _listen(self) -> None:
        """Relay ``<prefix>:wake`` messages to the wake listeners; reconnect when cut off.

        After a reconnection the listeners hear ``None`` (look now): wake-ups
        published meanwhile were missed.
        """
        channel = self._key("wake")
        backoff = Backoff()  # 0.05 s doubling to 2 s, for as long as it takes
        missed = False
        while not self._closing:
            client = self._redis
            if client is None:
                return
            pubsub = client.pubsub()
            try:
                await pubsub.subscribe(channel)
                if missed:
                    self.log.info("wake-up subscription restored")
                    self._notify(None)
                    missed = False
                backoff.reset()
                while not self._closing:
                    message = await pubsub.get_message(
                        ignore_subscribe_messages=True, timeout=_POLL
                    )
                    if message is not None and message.get("type") == "message":
                        self._notify(_wake_time(message.get("data")))
            except RETRIED as exc:
                if not missed:
                    self.log.warning("wake-up subscription lost, reconnecting: {!r}", exc)
                missed = True
                delay = backoff.next_delay()
                assert delay is not None  # no timeout: it never gives up
                await anyio.sleep(delay)
            except Exception:
                self.log.exception("wake-up subscription failed; subscribing again")
                missed = True
                await anyio.sleep(backoff.cap)
            finally:
                with contextlib.suppress(Exception), anyio.CancelScope(shield=True):
                    # redis-py's PubSub.aclose has no annotations
                    await pubsub.aclose()  # type: ignore[no-untyped-call]

    def _notify(self, at: datetime | None) -> None:
        try:
            self.wake_listeners(at)
        except Exception:  # a listener's bug must not end the subscription
            self.log.exception("a wake listener failed")


def _wake_time(data: Any) -> datetime | None:
    try:
        return from_epoch(float(_str(data)))
    except (TypeError, ValueError, OverflowError, UnicodeDecodeError):
        return None


def _cursor_bounds(cursor: str) -> tuple[str, tuple[float, str]]:
    """ZREVRANGEBYSCORE's upper bound for a cursor, and the exact (score, id) to stay below."""
    try:
        created, run_id = decode_cursor(cursor)
    except ValueError as exc:
        raise ValueError(f"invalid cursor {cursor!r}: {exc}") from None
    return _text(created), (created, run_id)
