"""File storage (``file:///path/to/dir``): one JSONL log per run, file-locked, crash-safe."""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import anyio.to_thread
import attrs
from loguru import logger

from pyworkflow.errors import (
    ConcurrencyError,
    ConfigError,
    CorruptDataError,
    HookNotFoundError,
    RunNotFoundError,
    ScheduleNotFoundError,
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
from pyworkflow.storage.base import Storage
from pyworkflow.storage.checkpoint_rules import (
    check_checkpoint,
    check_checkpoint_key,
    supersedes,
)
from pyworkflow.storage.flow_rules import (
    admit,
    admitted_run,
    dedup_holder,
    queue_stats_of,
    schedule_claimable,
    take_step_slot,
)
from pyworkflow.storage.rows import (
    RUN_COLUMNS,
    SCHEDULE_COLUMNS,
    checkpoint_from_row,
    chunk_from_row,
    event_from_row,
    from_epoch,
    hook_from_row,
    hook_to_values,
    run_from_row,
    run_to_values,
    schedule_from_data,
    schedule_to_values,
    step_lease_from_row,
    step_lease_to_values,
    to_epoch,
)
from pyworkflow.storage.rules import (
    apply_patch,
    can_claim,
    check_hook_conflicts,
    claimable,
    expired_of,
    hook_changes,
    page_of,
    swap_step_lease,
)
from pyworkflow.storage.stream_rules import check_chunk, check_read, chunk_key

__all__ = ["FileStorage"]

T = TypeVar("T")
FSYNC_POLICIES = ("always", "never")


#: Longest run id (UTF-8 bytes) that fits a file name with its suffixes (most systems: 255).
_MAX_NAME_BYTES = 200


def _key(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


class FileStorage(Storage):
    """Runs as files in a directory, safe for several processes on one machine.

    Layout: ``runs/<id>.jsonl`` (the log, one event per line),
    ``runs/<id>.json`` (the run row, replaced atomically), ``hooks/`` and
    ``keys/`` (live hooks and idempotency keys, by hash), ``steps/`` (the
    step leases of a run, one file per run by hash of its id, replaced
    atomically and removed when empty), ``dedup/`` (per hash of a
    ``(queue, dedup_key)``, the id of the run that took it last; it holds the
    key while that run has not ended) and ``schedules/`` (one row per
    schedule by hash of its name: the values of ``SCHEDULE_COLUMNS``,
    replaced atomically) and ``slots/`` (one file per step queue by hash of its
    name: ``{"queue": name, "places": {holder: [acquired_at, until]}}`` in
    epoch seconds, ``until`` null once released; replaced atomically) and ``streams/``
    (per hash of a run id a folder, in it per hash of a stream name a JSONL file, one
    chunk a line: ``[seq, data, step_id, attempt, index, created_at, key]``, the first
    line with the stream's name as an eighth element; a torn last line is ignored and
    cut off by the next append) and ``checkpoints/`` (per hash of a run id a folder, in
    it per hash of a step id a file ``[run_id, step_id, attempt, data, saved_at]``,
    replaced atomically). Every operation
    holds ``.lock`` (``flock``: shared to read, exclusive to write).

    An append writes the log lines, then the row; only then is it
    acknowledged. Log lines past the row's ``last_seq`` (a crash between the
    two writes) and a torn last line are ignored with a warning and cut off
    by the next write. The log is the truth: its first line also holds the
    run's row as created, so a row file that is missing or unreadable is
    rebuilt from the log (with a warning; persisted by the next write, e.g. a
    worker's claim). A run whose row cannot be rebuilt (a log written before
    this, or damaged) is listed as ``failed`` with a ``CorruptDataError``
    message, warned about once per process, and never claimed.
    ``fsync="always"`` (default) syncs both before acknowledging; ``"never"``
    leaves it to the OS (faster; a power failure may lose recent appends, an
    application crash loses nothing).
    """

    def __init__(self, url: str, *, fsync: str = "always") -> None:
        prefix = "file://"
        if not url.startswith(prefix) or len(url) == len(prefix):
            raise ConfigError(
                f"invalid file storage URL {url!r} (config key 'storage'): "
                "use file:///absolute/dir or file://relative/dir"
            )
        self.url = url
        location, _, query = url[len(prefix) :].partition("?")
        for option in filter(None, query.split("&")):
            name, _, value = option.partition("=")
            if name != "fsync":
                raise ConfigError(f"unknown option {name!r} in file storage URL {url!r}; use fsync")
            fsync = value
        if fsync not in FSYNC_POLICIES:
            raise ConfigError(
                f"invalid fsync policy {fsync!r} in {url!r}; use one of {FSYNC_POLICIES}"
            )
        self.root = Path(location)
        self.fsync = fsync
        self._thread_lock = threading.Lock()
        self._exclusive = False  # whether the operation in progress holds the write lock
        self._warned: set[str] = set()  # runs whose broken row was already reported

    async def open(self, task_group: anyio.abc.TaskGroup | None = None) -> None:
        subs = ("runs", "hooks", "keys", "steps", "dedup", "schedules", "slots", "streams")
        for sub in (*subs, "checkpoints"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        (self.root / ".lock").touch()

    # ----- plumbing -----

    @contextlib.contextmanager
    def _locked(self, exclusive: bool) -> Iterator[None]:
        with self._thread_lock, open(self.root / ".lock", "rb") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
            self._exclusive = exclusive
            try:
                yield
            finally:
                self._exclusive = False
                fcntl.flock(fh, fcntl.LOCK_UN)

    async def _run_locked(self, exclusive: bool, fn: Callable[[], T]) -> T:
        def call() -> T:
            with self._locked(exclusive):
                return fn()

        return await anyio.to_thread.run_sync(call)

    def _row_path(self, run_id: str) -> Path:
        return self._run_file(run_id, ".json")

    def _run_file(self, run_id: str, suffix: str) -> Path:
        """The file of ``run_id`` with ``suffix``; an id that cannot name a file names no run.

        (Run ids this library makes are short; a client's lookup of a very long id, or one
        with a NUL or a slash, must be "not found", not an OSError.)
        """
        if (
            not run_id
            or "/" in run_id
            or "\0" in run_id
            or run_id.startswith(".")
            or len(run_id.encode("utf-8", "surrogatepass")) > _MAX_NAME_BYTES
        ):
            raise RunNotFoundError(f"no run with id {run_id[:100]!r} in {self.url}")
        return self.root / "runs" / f"{run_id}{suffix}"

    def _write_json(self, path: Path, data: Any) -> None:
        tmp = path.with_suffix(path.suffix + ".tmp")
        with open(tmp, "w") as fh:
            json.dump(data, fh, separators=(",", ":"))
            if self.fsync == "always":
                fh.flush()
                os.fsync(fh.fileno())
        os.replace(tmp, path)
        if self.fsync == "always":
            dir_fd = os.open(path.parent, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)

    def _load(self, run_id: str) -> tuple[Run, int]:
        """The run row and the byte length of its acknowledged log.

        A row file that is missing (while the log exists) or unreadable is
        rebuilt from the log; ``CorruptDataError`` when it cannot be.
        """
        path = self._row_path(run_id)
        try:
            values = json.loads(path.read_text())
            # The row's columns, then the log size. A row written before the queue
            # columns existed is shorter (run_from_row gives them their defaults).
            return run_from_row(tuple(values[:-1][: len(RUN_COLUMNS)])), int(values[-1])
        except FileNotFoundError:
            problem = "is missing"
        except (ValueError, TypeError, KeyError, IndexError) as exc:
            problem = f"is unreadable ({type(exc).__name__}: {exc})"
        return self._rebuild(run_id, path, problem)

    def _rebuild(self, run_id: str, row_path: Path, problem: str) -> tuple[Run, int]:
        """Rebuild the row of ``run_id`` from its log (the row file ``problem``)."""
        log_path = self._log_path(run_id)
        try:
            data = log_path.read_bytes()
        except FileNotFoundError:
            if problem == "is missing":
                raise RunNotFoundError(f"no run with id {run_id!r} in {self.url}") from None
            raise CorruptDataError(
                f"run {run_id}: its row file {row_path} {problem} and it has no event log "
                f"{log_path}; restore the row file from a backup, or delete it to drop the run"
            ) from None
        size = data.rfind(b"\n") + 1  # complete lines only: a torn last line never counted
        lines = data[:size].split(b"\n")[:-1]
        try:
            start = json.loads(lines[0])[4] if lines else None
            created = run_from_row(tuple(start)) if isinstance(start, list) else None
        except (ValueError, TypeError, KeyError, IndexError):
            created = None
        if created is None or created.run_id != run_id:
            raise CorruptDataError(
                f"run {run_id}: its row file {row_path} {problem}, and its event log {log_path} "
                "does not record the run as created (written by an older version, or damaged), "
                "so the row cannot be rebuilt; restore the row file from a backup, or delete "
                "both files to drop the run"
            )
        events = [self._decode_line(run_id, i, raw) for i, raw in enumerate(lines, 1)]
        run = project_run(created, events)
        logger.bind(run_id=run_id).warning(
            "run row file {} {}; rebuilt it from the event log {} ({} events, status {})",
            row_path,
            problem,
            log_path,
            len(events),
            run.status.value,
        )
        if self._exclusive:
            self._save_run(run, size)
        return run, size

    def _load_run(self, run_id: str) -> Run:
        return self._load(run_id)[0]

    def _log_path(self, run_id: str) -> Path:
        return self._run_file(run_id, ".jsonl")

    def _read_log(self, run: Run, size: int) -> list[Event]:
        """The acknowledged events: the first ``size`` bytes of the log."""
        path = self._log_path(run.run_id)
        with open(path, "rb") as fh:
            data = fh.read(size)
            if fh.read(1):
                logger.bind(run_id=run.run_id).warning(
                    "ignoring log data past the last acknowledged event (torn or unfinished append)"
                )
        lines = data.split(b"\n")[:-1] if data else []
        if len(lines) != run.last_seq:
            raise CorruptDataError(
                f"run {run.run_id}: log has {len(lines)} events, the run row expects {run.last_seq}"
            )
        return [self._decode_line(run.run_id, i, raw) for i, raw in enumerate(lines, 1)]

    @staticmethod
    def _decode_line(run_id: str, seq: int, raw: bytes) -> Event:
        try:
            row = json.loads(raw)
            return event_from_row((run_id, seq, row[0], row[1], row[2], json.dumps(row[3])))
        except (ValueError, IndexError, TypeError) as exc:
            raise CorruptDataError(
                f"run {run_id}: event seq {seq} cannot be decoded: {exc}"
            ) from exc

    def _append_log(
        self, run_id: str, size: int, events: Sequence[NewEvent], created: Run | None = None
    ) -> int:
        """Append after the first ``size`` bytes (cutting any tail); the new size.

        ``created`` (on the first append) is the run's row as created, written
        as a fifth element of the first line so the row can be rebuilt.
        """
        rows: list[list[Any]] = [
            [e.type.value, e.correlation_id, e.timestamp.timestamp(), dict(e.payload)]
            for e in events
        ]
        if created is not None and rows:
            rows[0].append(list(run_to_values(created)))
        lines = b"".join(json.dumps(row, separators=(",", ":")).encode() + b"\n" for row in rows)
        with open(self._log_path(run_id), "ab") as fh:
            if fh.tell() != size:
                fh.truncate(size)  # a torn or unacknowledged tail from a crash
                fh.seek(size)
            fh.write(lines)
            if self.fsync == "always":
                fh.flush()
                os.fsync(fh.fileno())
        return size + len(lines)

    def _save_run(self, run: Run, size: int) -> None:
        self._write_json(self._row_path(run.run_id), [*run_to_values(run), size])

    def _save_lease(self, run_id: str, **changes: Any) -> Run:
        run, size = self._load(run_id)
        run = attrs.evolve(run, **changes)
        self._save_run(run, size)
        return run

    def _apply_hooks(self, run_id: str, events: Sequence[NewEvent]) -> None:
        created, disposed = hook_changes(run_id, events)
        check_hook_conflicts(run_id, created, disposed, self._hook_holder)
        for token in disposed:
            if self._hook_holder(token) == run_id:
                (self.root / "hooks" / _key(token)).unlink()
        for hook in created:
            self._write_json(self.root / "hooks" / _key(hook.token), list(hook_to_values(hook)))

    def _hook_holder(self, token: str) -> str | None:
        """The run id of the live hook holding ``token``, or ``None``."""
        try:
            return str(json.loads((self.root / "hooks" / _key(token)).read_text())[1])
        except FileNotFoundError:
            return None

    def _steps_path(self, run_id: str) -> Path:
        return self.root / "steps" / f"{_key(run_id)}.json"

    def _read_step_leases(self, path: Path) -> list[StepLease]:
        try:
            rows = json.loads(path.read_text())
        except FileNotFoundError:
            return []
        except ValueError as exc:
            raise CorruptDataError(f"corrupt step lease file {path}: {exc}") from exc
        return [step_lease_from_row(row) for row in rows]

    def _all_runs(self) -> list[Run]:
        """Every run: rows, rows rebuilt from logs, and a failed stand-in for broken ones."""
        runs = []
        ids = {path.stem for path in (self.root / "runs").glob("*.json")}
        ids.update(path.stem for path in (self.root / "runs").glob("*.jsonl"))
        for run_id in sorted(ids):
            try:
                runs.append(self._load_run(run_id))
            except RunNotFoundError:
                continue
            except CorruptDataError as exc:
                runs.append(self._stand_in(run_id, exc))
        return runs

    def _dedup_path(self, run: Run) -> Path:
        return self.root / "dedup" / _key(json.dumps([run.queue, run.dedup_key]))

    def _dedup_holder(self, path: Path, run: Run) -> Run | None:
        """The live run holding ``run``'s ``(queue, dedup_key)`` (its marker at ``path``)."""
        try:
            holder = self._load_run(str(json.loads(path.read_text())))
        except (FileNotFoundError, ValueError, RunNotFoundError, CorruptDataError):
            return None  # no marker, or its run was never created or cannot be read
        return dedup_holder([holder], run)

    def _schedule_path(self, name: str) -> Path:
        return self.root / "schedules" / f"{_key(name)}.json"

    def _schedule_row(self, path: Path) -> list[Any] | None:
        """A schedule file's row (``SCHEDULE_COLUMNS`` values), or None if there is none."""
        try:
            row = json.loads(path.read_text())
        except FileNotFoundError:
            return None
        except ValueError as exc:
            raise CorruptDataError(f"corrupt schedule file {path}: {exc}") from exc
        if not isinstance(row, list) or len(row) != len(SCHEDULE_COLUMNS):
            raise CorruptDataError(f"corrupt schedule file {path}: not a schedule row")
        return row

    def _schedule_rows(self) -> list[tuple[Schedule, list[Any]]]:
        """Every schedule with its row, by name."""
        rows = []
        for path in (self.root / "schedules").glob("*.json"):
            row = self._schedule_row(path)
            if row is not None:
                rows.append((schedule_from_data(row[5]), row))
        return sorted(rows, key=lambda pair: pair[0].name)

    def _slots_path(self, queue: str) -> Path:
        return self.root / "slots" / f"{_key(queue)}.json"

    def _read_slots(self, path: Path) -> dict[str, tuple[datetime, datetime | None]]:
        """A step queue's places ``{holder: (acquired_at, until)}`` (none if no file)."""
        try:
            data = json.loads(path.read_text())
            return {
                str(holder): (datetime.fromtimestamp(acquired, UTC), from_epoch(until))
                for holder, (acquired, until) in data["places"].items()
            }
        except FileNotFoundError:
            return {}
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            raise CorruptDataError(f"corrupt step queue file {path}: {exc}") from exc

    def _write_slots(
        self, path: Path, queue: str, places: Mapping[str, tuple[datetime, datetime | None]]
    ) -> None:
        rows = {
            h: [acquired.timestamp(), to_epoch(until)] for h, (acquired, until) in places.items()
        }
        self._write_json(path, {"queue": queue, "places": rows})

    def _stand_in(self, run_id: str, exc: CorruptDataError) -> Run:
        """A failed row to list in place of a run whose row cannot be read or rebuilt.

        It is never written and never due; the worker log says why, once per
        process; ``get_run`` raises the ``CorruptDataError`` itself.
        """
        if run_id not in self._warned:
            self._warned.add(run_id)
            logger.bind(run_id=run_id).error("run cannot be read or rebuilt: {}", exc)
        workflow, created = "?", None
        with contextlib.suppress(OSError, ValueError, TypeError, IndexError, AttributeError):
            with open(self._log_path(run_id), "rb") as fh:
                first = json.loads(fh.readline())
            workflow, created = str(first[3]["workflow"]), from_epoch(float(first[2]))
        if created is None:
            try:
                created = from_epoch(self._row_path(run_id).stat().st_mtime)
            except OSError:
                created = from_epoch(0.0)
        assert created is not None
        return Run(
            run_id=run_id,
            workflow_name=workflow,
            status=RunStatus.FAILED,
            input="",
            serializer="json",
            created_at=created,
            updated_at=created,
            error_message=f"CorruptDataError: {exc}",
        )

    # ----- the Storage interface -----

    async def create_run(self, run: Run, events: Sequence[NewEvent]) -> tuple[Run, bool]:
        def write() -> tuple[Run, bool]:
            key_path = None
            if run.idempotency_key is not None:
                key_path = self.root / "keys" / _key(run.idempotency_key)
                if key_path.exists():
                    return self._load_run(key_path.read_text().strip()), False
            dedup_path = None if run.dedup_key is None else self._dedup_path(run)
            if dedup_path is not None:
                holder = self._dedup_holder(dedup_path, run)
                if holder is not None:
                    return holder, False
            if self._row_path(run.run_id).exists():
                raise ValueError(f"run {run.run_id} already exists")
            if dedup_path is not None:
                # Before the run: a crash in between leaves a marker of no run (a free key).
                self._write_json(dedup_path, run.run_id)
            self._apply_hooks(run.run_id, events)
            stored = attrs.evolve(run, last_seq=len(events))
            size = self._append_log(run.run_id, 0, events, created=stored)
            self._save_run(stored, size)
            if key_path is not None:
                key_path.write_text(run.run_id)
            return stored, True

        return await self._run_locked(True, write)

    async def get_run(self, run_id: str) -> Run:
        return await self._run_locked(False, lambda: self._load_run(run_id))

    async def list_runs(
        self,
        *,
        status: RunStatus | None = None,
        workflow: str | None = None,
        limit: int = 100,
        cursor: str | None = None,
        parent_run_id: str | None = None,
    ) -> RunPage:
        runs = await self._run_locked(False, self._all_runs)
        return page_of(runs, status, workflow, limit, cursor, parent_run_id)

    async def get_events(self, run_id: str, after_seq: int = 0) -> list[Event]:
        def read() -> list[Event]:
            return self._read_log(*self._load(run_id))[after_seq:]

        return await self._run_locked(False, read)

    async def append_events(
        self,
        run_id: str,
        expected_seq: int,
        events: Sequence[NewEvent],
        patch: RunPatch | None = None,
        *,
        owner: str | None = None,
    ) -> int:
        def write() -> int:
            run, size = self._load(run_id)
            if run.last_seq != expected_seq:
                raise ConcurrencyError(run_id, expected_seq, run.last_seq)
            self._apply_hooks(run_id, events)
            size = self._append_log(run_id, size, events)
            last = expected_seq + len(events)
            self._save_run(apply_patch(run, patch, owner, utcnow(), last), size)
            return last

        return await self._run_locked(True, write)

    async def claim_runs(
        self, owner: str, now: datetime, limit: int, lease_for: timedelta
    ) -> list[Run]:
        def write() -> list[Run]:
            due = claimable(self._all_runs(), now, limit)
            until = now + lease_for
            return [
                self._save_lease(r.run_id, lease_owner=owner, lease_expires_at=until) for r in due
            ]

        return await self._run_locked(True, write)

    async def claim_run(
        self,
        run_id: str,
        owner: str,
        now: datetime,
        lease_for: timedelta,
        *,
        take_over_prefix: str | None = None,
    ) -> Run | None:
        def write() -> Run | None:
            try:
                run = self._load_run(run_id)
            except RunNotFoundError:
                return None
            if not can_claim(run, now, take_over_prefix):
                return None
            return self._save_lease(run_id, lease_owner=owner, lease_expires_at=now + lease_for)

        return await self._run_locked(True, write)

    async def set_step_lease(
        self,
        run_id: str,
        step_id: str,
        owner: str | None,
        until: datetime | None,
        *,
        if_owner: str | None = None,
    ) -> bool:
        def write() -> bool:
            path = self._steps_path(run_id)
            leases = {lease.step_id: lease for lease in self._read_step_leases(path)}
            written, lease = swap_step_lease(
                leases.get(step_id), run_id, step_id, owner, until, if_owner
            )
            if not written:
                return False
            if lease is None:
                if leases.pop(step_id, None) is None:
                    return True  # nothing to remove
            else:
                leases[step_id] = lease
            if leases:
                self._write_json(path, [step_lease_to_values(x) for x in leases.values()])
            else:
                path.unlink(missing_ok=True)
            return True

        return await self._run_locked(True, write)

    async def get_step_leases(self, run_id: str) -> dict[str, StepLease]:
        def read() -> list[StepLease]:
            return self._read_step_leases(self._steps_path(run_id))

        return {lease.step_id: lease for lease in await self._run_locked(False, read)}

    async def expired_step_leases(self, now: datetime, limit: int) -> list[StepLease]:
        def read() -> list[StepLease]:
            leases: list[StepLease] = []
            for path in (self.root / "steps").glob("*.json"):
                leases += self._read_step_leases(path)
            return leases

        return expired_of(await self._run_locked(False, read), now, limit)

    async def renew_lease(self, run_id: str, owner: str, until: datetime) -> bool:
        def write() -> bool:
            if self._load_run(run_id).lease_owner != owner:
                return False
            self._save_lease(run_id, lease_expires_at=until)
            return True

        return await self._run_locked(True, write)

    async def release_lease(self, run_id: str, owner: str) -> None:
        def write() -> None:
            if self._load_run(run_id).lease_owner == owner:
                self._save_lease(run_id, lease_owner=None, lease_expires_at=None)

        await self._run_locked(True, write)

    async def next_wake_at(self) -> datetime | None:
        runs = await self._run_locked(False, self._all_runs)
        return min((r.wake_at for r in runs if r.wake_at is not None), default=None)

    async def due_timers(self, now: datetime, limit: int) -> list[tuple[str, datetime]]:
        runs = await self._run_locked(False, self._all_runs)
        due = sorted((r.wake_at, r.run_id) for r in runs if r.wake_at and r.wake_at <= now)
        return [(run_id, wake) for wake, run_id in due[:limit]]

    async def get_hook(self, token: str) -> HookRecord:
        def read() -> HookRecord:
            path = self.root / "hooks" / _key(token)
            try:
                return hook_from_row(tuple(json.loads(path.read_text())))
            except FileNotFoundError:
                raise HookNotFoundError(f"no live hook with token {token!r}") from None

        return await self._run_locked(False, read)

    async def append_hook_payload(
        self, token: str, payload: Mapping[str, Any], now: datetime
    ) -> tuple[str, int]:
        def write() -> tuple[str, int]:
            path = self.root / "hooks" / _key(token)
            try:
                hook = hook_from_row(tuple(json.loads(path.read_text())))
            except FileNotFoundError:
                raise HookNotFoundError(f"no live hook with token {token!r}") from None
            run, size = self._load(hook.run_id)
            event = NewEvent(EventType.HOOK_RECEIVED, hook.correlation_id, payload, now)
            size = self._append_log(run.run_id, size, [event])
            last = run.last_seq + 1
            patch = RunPatch(set_wake=True, wake_at=now)
            self._save_run(apply_patch(run, patch, None, now, last), size)
            return hook.run_id, last

        return await self._run_locked(True, write)

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
        def waiting() -> bool:
            return any(r.queue == queue and r.status == RunStatus.QUEUED for r in self._all_runs())

        if limit <= 0 or not await self._run_locked(False, waiting):
            return []  # nothing waiting: no exclusive lock (admission itself stays atomic)

        def write() -> list[Run]:
            admitted = []
            for run in admit(self._all_runs(), queue, limits, now, limit, worker):
                stored, size = self._load(run.run_id)
                stored = admitted_run(stored, owner, now, lease_for, worker)
                self._save_run(stored, size)
                admitted.append(stored)
            return admitted

        return await self._run_locked(True, write)

    async def queue_stats(self, since: datetime) -> list[QueueStats]:
        runs = await self._run_locked(False, self._all_runs)
        return queue_stats_of(runs, since)

    # ----- step queues -----

    async def acquire_step_slot(
        self,
        queue: str,
        holder: str,
        limits: QueueLimits,
        now: datetime,
        lease_for: timedelta,
    ) -> bool:
        def write() -> bool:
            path = self._slots_path(queue)
            places = self._read_slots(path)
            if not take_step_slot(places, holder, limits, now, lease_for):
                return False  # nothing written (old rows are forgotten by a later taking)
            self._write_slots(path, queue, places)
            return True

        return await self._run_locked(True, write)

    async def renew_step_slot(self, queue: str, holder: str, until: datetime) -> bool:
        def write() -> bool:
            path = self._slots_path(queue)
            places = self._read_slots(path)
            place = places.get(holder)
            if place is None or place[1] is None:
                return False
            places[holder] = (place[0], until)
            self._write_slots(path, queue, places)
            return True

        return await self._run_locked(True, write)

    async def release_step_slot(self, queue: str, holder: str) -> None:
        def write() -> None:
            path = self._slots_path(queue)
            places = self._read_slots(path)
            place = places.get(holder)
            if place is not None and place[1] is not None:
                places[holder] = (place[0], None)
                self._write_slots(path, queue, places)

        await self._run_locked(True, write)

    # ----- schedules -----

    async def create_schedule(self, schedule: Schedule) -> tuple[Schedule, bool]:
        def write() -> tuple[Schedule, bool]:
            path = self._schedule_path(schedule.name)
            row = self._schedule_row(path)
            if row is not None:
                return schedule_from_data(row[5]), False
            self._write_json(path, list(schedule_to_values(schedule)))
            return schedule, True

        return await self._run_locked(True, write)

    async def put_schedule(self, schedule: Schedule) -> None:
        def write() -> None:
            path = self._schedule_path(schedule.name)
            values = list(schedule_to_values(schedule))
            row = self._schedule_row(path)
            if row is not None:
                values[3:5] = row[3:5]  # a lease on the schedule stays as it is
            self._write_json(path, values)

        await self._run_locked(True, write)

    async def get_schedule(self, name: str) -> Schedule:
        def read() -> Schedule:
            row = self._schedule_row(self._schedule_path(name))
            if row is None:
                raise ScheduleNotFoundError(f"no schedule named {name!r} in {self.url}")
            return schedule_from_data(row[5])

        return await self._run_locked(False, read)

    async def list_schedules(self) -> list[Schedule]:
        rows = await self._run_locked(False, self._schedule_rows)
        return [s for s, _ in rows]

    async def delete_schedule(self, name: str) -> bool:
        def write() -> bool:
            path = self._schedule_path(name)
            existed = path.exists()
            path.unlink(missing_ok=True)
            return existed

        return await self._run_locked(True, write)

    async def claim_schedules(
        self, owner: str, now: datetime, limit: int, lease_for: timedelta
    ) -> list[Schedule]:
        def write() -> list[Schedule]:
            due = [
                (s, row)
                for s, row in self._schedule_rows()
                if schedule_claimable(s.next_fire_at, s.paused, from_epoch(row[4]), now)
            ]
            due.sort(key=lambda pair: (pair[0].next_fire_at or now, pair[0].name))
            until = to_epoch(now + lease_for)
            for s, row in due[:limit]:
                self._write_json(self._schedule_path(s.name), [*row[:3], owner, until, row[5]])
            return [s for s, _ in due[:limit]]

        return await self._run_locked(True, write)

    async def advance_schedule(
        self,
        name: str,
        owner: str,
        expected_next_fire_at: datetime,
        next_fire_at: datetime | None,
        last_fire_at: datetime | None,
        last_run_id: str | None,
    ) -> bool:
        def write() -> bool:
            path = self._schedule_path(name)
            row = self._schedule_row(path)
            if row is None or row[3] != owner:
                return False
            written: bool = row[1] == to_epoch(expected_next_fire_at)
            if written:
                fired = attrs.evolve(
                    schedule_from_data(row[5]),
                    next_fire_at=next_fire_at,
                    last_fire_at=last_fire_at,
                    last_run_id=last_run_id,
                )
                self._write_json(path, list(schedule_to_values(fired)))  # its lease free
            else:
                self._write_json(path, [*row[:3], None, None, row[5]])
            return written

        return await self._run_locked(True, write)

    async def next_schedule_at(self) -> datetime | None:
        rows = await self._run_locked(False, self._schedule_rows)
        times = [s.next_fire_at for s, _ in rows if not s.paused and s.next_fire_at is not None]
        return min(times, default=None)

    # ----- streams -----

    def _stream_path(self, run_id: str, stream: str) -> Path:
        return self.root / "streams" / _key(run_id) / f"{_key(stream)}.jsonl"

    @staticmethod
    def _stream_lines(path: Path) -> tuple[bytes, list[bytes]]:
        """The file's bytes and its complete lines (a torn last line is left out)."""
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return b"", []
        return data, data[: data.rfind(b"\n") + 1].split(b"\n")[:-1]

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

        def write() -> int:
            self._load_run(run_id)
            path = self._stream_path(run_id, stream)
            raw, lines = self._stream_lines(path)
            if key is not None and json.dumps(key).encode() in raw:
                for line in lines:
                    row = json.loads(line)
                    if row[6] == key:
                        return int(row[0])
            seq = len(lines) + 1
            row = [seq, data, step_id, attempt, index, utcnow().timestamp(), key]
            if seq == 1:
                row.append(stream)
            path.parent.mkdir(exist_ok=True)
            size = sum(len(line) + 1 for line in lines)
            with open(path, "ab") as fh:
                if fh.tell() != size:
                    fh.truncate(size)  # a torn tail from a crash
                    fh.seek(size)
                fh.write(json.dumps(row, separators=(",", ":")).encode() + b"\n")
                if self.fsync == "always":
                    fh.flush()
                    os.fsync(fh.fileno())
            return seq

        return await self._run_locked(True, write)

    async def read_stream(
        self, run_id: str, stream: str, after_seq: int = 0, limit: int = 1000
    ) -> list[StreamChunk]:
        check_read(run_id, stream, after_seq, limit)

        def read() -> list[StreamChunk]:
            self._load_run(run_id)
            _, lines = self._stream_lines(self._stream_path(run_id, stream))
            chunks = []
            for line in lines[after_seq : after_seq + limit]:
                try:
                    row = json.loads(line)
                except ValueError as exc:
                    raise CorruptDataError(
                        f"run {run_id}: a chunk of stream {stream!r} cannot be decoded: {exc}"
                    ) from exc
                chunks.append(chunk_from_row([run_id, stream, *row[:6]]))
            return chunks

        return await self._run_locked(False, read)

    async def list_streams(self, run_id: str) -> list[str]:
        def read() -> list[str]:
            self._load_run(run_id)
            names = []
            for path in (self.root / "streams" / _key(run_id)).glob("*.jsonl"):
                _, lines = self._stream_lines(path)
                if lines:
                    names.append(str(json.loads(lines[0])[7]))
            return sorted(names)

        return await self._run_locked(False, read)

    # ----- step checkpoints -----

    def _checkpoint_path(self, run_id: str, step_id: str) -> Path:
        return self.root / "checkpoints" / _key(run_id) / f"{_key(step_id)}.json"

    @staticmethod
    def _read_checkpoint(path: Path) -> StepCheckpoint | None:
        try:
            raw = path.read_bytes()
        except FileNotFoundError:
            return None
        try:
            row = json.loads(raw)
        except ValueError as exc:
            raise CorruptDataError(f"checkpoint file {path} cannot be decoded: {exc}") from exc
        return checkpoint_from_row(row)

    async def save_step_checkpoint(
        self, run_id: str, step_id: str, attempt: int, data: str
    ) -> bool:
        check_checkpoint(run_id, step_id, attempt, data, self.max_payload_bytes)

        def write() -> bool:
            self._load_run(run_id)
            path = self._checkpoint_path(run_id, step_id)
            stored = self._read_checkpoint(path)
            if not supersedes(attempt, None if stored is None else stored.attempt):
                return False
            path.parent.mkdir(parents=True, exist_ok=True)
            self._write_json(path, [run_id, step_id, attempt, data, utcnow().timestamp()])
            return True

        return await self._run_locked(True, write)

    async def get_step_checkpoint(self, run_id: str, step_id: str) -> StepCheckpoint | None:
        check_checkpoint_key(run_id, step_id)

        def read() -> StepCheckpoint | None:
            return self._read_checkpoint(self._checkpoint_path(run_id, step_id))

        return await self._run_locked(False, read)


def project_run(created: Run, events: Sequence[Event]) -> Run:
    """The row of a run created as ``created`` after ``events`` (a rebuild from the log).

    A finished run gets its outcome from its last ``workflow_completed``,
    ``workflow_failed`` or ``workflow_cancelled`` event (unless retried since);
    any other run is due at once (at its last event's time) with no lease, so
    a worker replays it and the replay sets its wake-up time and status again.
    A run created ``queued`` whose log has nothing past its creation is queued
    again (not due): an admission the lost row recorded is taken back, and the
    run waits for a place again.
    """
    if created.status == RunStatus.QUEUED and len(events) <= created.last_seq:
        return attrs.evolve(
            created,
            updated_at=events[-1].timestamp if events else created.updated_at,
            wake_at=None,
            lease_owner=None,
            lease_expires_at=None,
            admitted_at=None,
            admitted_by=None,
            last_seq=len(events),
        )
    status = RunStatus.PENDING if len(events) <= 1 else RunStatus.SUSPENDED
    result: str | None = None
    error: str | None = None
    message: str | None = None
    done: datetime | None = None
    for event in events:
        payload = event.payload
        if event.type == EventType.WORKFLOW_COMPLETED:
            status, result, done = RunStatus.COMPLETED, payload.get("result"), event.timestamp
        elif event.type == EventType.WORKFLOW_FAILED:
            status, done = RunStatus.FAILED, event.timestamp
            error, message = payload.get("error"), payload.get("error_message")
        elif event.type == EventType.WORKFLOW_CANCELLED:
            status, done = RunStatus.CANCELLED, event.timestamp
        elif event.type == EventType.WORKFLOW_CONTINUED_AS_NEW:
            status, done = RunStatus.CONTINUED, event.timestamp
        elif event.type == EventType.WORKFLOW_RETRIED:
            status, result, error, message, done = RunStatus.SUSPENDED, None, None, None, None
    updated = events[-1].timestamp if events else created.updated_at
    return attrs.evolve(
        created,
        status=status,
        result=result,
        error=error,
        error_message=message,
        completed_at=done,
        updated_at=updated,
        wake_at=None if status.is_terminal else updated,
        lease_owner=None,
        lease_expires_at=None,
        last_seq=len(events),
    )
