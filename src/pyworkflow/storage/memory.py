"""In-process storage (``memory://``): for tests and throw-away runs."""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any, cast

import attrs

from pyworkflow.errors import (
    ConcurrencyError,
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

__all__ = ["MemoryStorage"]


class MemoryStorage(Storage):
    """Runs and events in dicts, guarded by a lock; lost when the process ends."""

    #: A second instance would not see this one's runs; the lock makes sharing safe.
    shared_with_threads = True

    def __init__(self, url: str = "memory://") -> None:
        self.url = url
        self._lock = threading.Lock()
        self._runs: dict[str, Run] = {}
        #: Each run's log. An append stores its ``NewEvent``s as they are; they become
        #: ``Event``s when the log is read (:meth:`_log`), most never are while a run runs.
        self._events: dict[str, list[Event | NewEvent]] = {}
        #: How many leading entries of each log are ``Event``s already.
        self._built: dict[str, int] = {}
        self._keys: dict[str, str] = {}
        self._hooks: dict[str, HookRecord] = {}
        self._step_leases: dict[tuple[str, str], StepLease] = {}
        #: Runs whose stored ``Run`` no caller holds: an append without a patch moves its
        #: ``updated_at``/``last_seq`` in place instead of building a new record (a caller
        #: never sees a ``Run`` it was given change).
        self._private: set[str] = set()
        #: Step queue places: queue -> holder -> ``(acquired_at, until or None when released)``.
        self._slots: dict[str, dict[str, tuple[datetime, datetime | None]]] = {}
        #: Schedules by name, with their lease: ``(schedule, lease owner, lease expiry)``.
        self._schedules: dict[str, tuple[Schedule, str | None, datetime | None]] = {}
        #: Each run's streams: run -> stream -> chunks in seq order (seq = position + 1).
        self._streams: dict[str, dict[str, list[StreamChunk]]] = {}
        #: The seq of each stored dedup key: (run, stream, key) -> seq.
        self._chunk_keys: dict[tuple[str, str, str], int] = {}
        #: Each step's checkpoint: (run, step) -> the latest the newest attempt saved.
        self._checkpoints: dict[tuple[str, str], StepCheckpoint] = {}

    def _run(self, run_id: str) -> Run:
        try:
            return self._runs[run_id]
        except KeyError:
            raise RunNotFoundError(f"no run with id {run_id!r} in {self.url}") from None

    def _give(self, run_id: str) -> Run:
        """The stored run, to return to a caller: it is no longer changed in place."""
        run = self._run(run_id)
        self._private.discard(run_id)
        return run

    async def create_run(self, run: Run, events: Sequence[NewEvent]) -> tuple[Run, bool]:
        with self._lock:
            key = run.idempotency_key
            if key is not None and key in self._keys:
                return self._give(self._keys[key]), False
            holder = dedup_holder(self._runs.values(), run)
            if holder is not None:
                return self._give(holder.run_id), False
            stored = attrs.evolve(run, last_seq=len(events))
            self._apply_hooks(run.run_id, events)
            self._runs[run.run_id] = stored
            self._events[run.run_id] = [
                _to_event(run.run_id, i, e) for i, e in enumerate(events, start=1)
            ]
            if key is not None:
                self._keys[key] = run.run_id
            return stored, True

    async def get_run(self, run_id: str) -> Run:
        with self._lock:
            return self._give(run_id)

    async def list_runs(
        self,
        *,
        status: RunStatus | None = None,
        workflow: str | None = None,
        limit: int = 100,
        cursor: str | None = None,
        parent_run_id: str | None = None,
    ) -> RunPage:
        with self._lock:
            runs = list(self._runs.values())
            self._private.clear()
        return page_of(runs, status, workflow, limit, cursor, parent_run_id)

    async def get_events(self, run_id: str, after_seq: int = 0) -> list[Event]:
        with self._lock:
            self._run(run_id)
            return self._log(run_id)[after_seq:]

    def _log(self, run_id: str) -> list[Event]:
        """The run's log with every entry an ``Event`` (seq = position + 1)."""
        log = self._events[run_id]
        built = self._built.get(run_id, 0)
        if built < len(log):
            for i in range(built, len(log)):
                e = log[i]
                log[i] = Event(run_id, i + 1, e.type, e.correlation_id, e.timestamp, e.payload)
            self._built[run_id] = len(log)
        return cast("list[Event]", log)

    async def append_events(
        self,
        run_id: str,
        expected_seq: int,
        events: Sequence[NewEvent],
        patch: RunPatch | None = None,
        *,
        owner: str | None = None,
    ) -> int:
        with self._lock:
            run = self._runs.get(run_id) or self._run(run_id)
            if run.last_seq != expected_seq:
                raise ConcurrencyError(run_id, expected_seq, run.last_seq)
            for event in events:
                if event.type in _HOOK_EVENTS:
                    self._apply_hooks(run_id, events)
                    break
            log = self._events[run_id]
            log.extend(events)  # made Events when read (_log)
            last = len(log)
            if patch is None and run_id in self._private:
                _set(run, "updated_at", utcnow())
                _set(run, "last_seq", last)
            else:
                self._runs[run_id] = apply_patch(run, patch, owner, utcnow(), last)
                self._private.add(run_id)
            return last

    def _apply_hooks(self, run_id: str, events: Sequence[NewEvent]) -> None:
        for event in events:
            if event.type in _HOOK_EVENTS:
                break
        else:
            return  # no hook changes: nothing to check
        created, disposed = hook_changes(run_id, events)
        check_hook_conflicts(run_id, created, disposed, self._hook_holder)
        for token in disposed:
            if token in self._hooks and self._hooks[token].run_id == run_id:
                del self._hooks[token]
        for hook in created:
            self._hooks[hook.token] = hook

    def _hook_holder(self, token: str) -> str | None:
        hook = self._hooks.get(token)
        return None if hook is None else hook.run_id

    async def get_hook(self, token: str) -> HookRecord:
        with self._lock:
            return self._hook(token)

    def _hook(self, token: str) -> HookRecord:
        try:
            return self._hooks[token]
        except KeyError:
            raise HookNotFoundError(f"no live hook with token {token!r}") from None

    async def append_hook_payload(
        self, token: str, payload: Mapping[str, Any], now: datetime
    ) -> tuple[str, int]:
        with self._lock:
            hook = self._hook(token)
            run = self._run(hook.run_id)
            event = NewEvent(EventType.HOOK_RECEIVED, hook.correlation_id, payload, now)
            log = self._events[hook.run_id]
            log.append(_to_event(hook.run_id, run.last_seq + 1, event))
            patch = RunPatch(set_wake=True, wake_at=now)
            self._runs[hook.run_id] = apply_patch(run, patch, None, now, len(log))
            return hook.run_id, len(log)

    async def claim_runs(
        self, owner: str, now: datetime, limit: int, lease_for: timedelta
    ) -> list[Run]:
        with self._lock:
            due = claimable(self._runs.values(), now, limit)
            claimed = []
            for run in due:
                run = attrs.evolve(run, lease_owner=owner, lease_expires_at=now + lease_for)
                self._runs[run.run_id] = run
                self._private.discard(run.run_id)
                claimed.append(run)
            return claimed

    async def claim_run(
        self,
        run_id: str,
        owner: str,
        now: datetime,
        lease_for: timedelta,
        *,
        take_over_prefix: str | None = None,
    ) -> Run | None:
        with self._lock:
            run = self._runs.get(run_id)
            if run is None or not can_claim(run, now, take_over_prefix):
                return None
            run = attrs.evolve(run, lease_owner=owner, lease_expires_at=now + lease_for)
            self._runs[run_id] = run
            self._private.discard(run_id)
            return run

    async def set_step_lease(
        self,
        run_id: str,
        step_id: str,
        owner: str | None,
        until: datetime | None,
        *,
        if_owner: str | None = None,
    ) -> bool:
        key = (run_id, step_id)
        with self._lock:
            written, lease = swap_step_lease(
                self._step_leases.get(key), run_id, step_id, owner, until, if_owner
            )
            if written:
                if lease is None:
                    self._step_leases.pop(key, None)
                else:
                    self._step_leases[key] = lease
            return written

    async def get_step_leases(self, run_id: str) -> dict[str, StepLease]:
        with self._lock:
            return {
                lease.step_id: lease
                for lease in self._step_leases.values()
                if lease.run_id == run_id
            }

    async def expired_step_leases(self, now: datetime, limit: int) -> list[StepLease]:
        with self._lock:
            return expired_of(self._step_leases.values(), now, limit)

    async def renew_lease(self, run_id: str, owner: str, until: datetime) -> bool:
        with self._lock:
            run = self._run(run_id)
            if run.lease_owner != owner:
                return False
            self._runs[run_id] = attrs.evolve(run, lease_expires_at=until)
            return True

    async def release_lease(self, run_id: str, owner: str) -> None:
        with self._lock:
            run = self._run(run_id)
            if run.lease_owner == owner:
                self._runs[run_id] = attrs.evolve(run, lease_owner=None, lease_expires_at=None)

    async def next_wake_at(self) -> datetime | None:
        with self._lock:
            wakes = [r.wake_at for r in self._runs.values() if r.wake_at is not None]
        return min(wakes, default=None)

    async def due_timers(self, now: datetime, limit: int) -> list[tuple[str, datetime]]:
        with self._lock:
            due = [
                (r.run_id, r.wake_at)
                for r in self._runs.values()
                if r.wake_at is not None and r.wake_at <= now
            ]
        due.sort(key=lambda item: item[1])
        return due[:limit]

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
        with self._lock:
            chosen = admit(self._runs.values(), queue, limits, now, limit, worker)
            out = []
            for run in chosen:
                run = admitted_run(run, owner, now, lease_for, worker)
                self._runs[run.run_id] = run
                self._private.discard(run.run_id)
                out.append(run)
            return out

    async def queue_stats(self, since: datetime) -> list[QueueStats]:
        with self._lock:
            return queue_stats_of(self._runs.values(), since)

    # ----- step queues -----

    async def acquire_step_slot(
        self,
        queue: str,
        holder: str,
        limits: QueueLimits,
        now: datetime,
        lease_for: timedelta,
    ) -> bool:
        with self._lock:
            places = self._slots.setdefault(queue, {})
            took = take_step_slot(places, holder, limits, now, lease_for)
            return took

    async def renew_step_slot(self, queue: str, holder: str, until: datetime) -> bool:
        with self._lock:
            place = self._slots.get(queue, {}).get(holder)
            if place is None or place[1] is None:
                return False
            self._slots[queue][holder] = (place[0], until)
            return True

    async def release_step_slot(self, queue: str, holder: str) -> None:
        with self._lock:
            place = self._slots.get(queue, {}).get(holder)
            if place is not None:
                self._slots[queue][holder] = (place[0], None)

    # ----- schedules -----

    async def create_schedule(self, schedule: Schedule) -> tuple[Schedule, bool]:
        with self._lock:
            if schedule.name in self._schedules:
                return self._schedules[schedule.name][0], False
            self._schedules[schedule.name] = (schedule, None, None)
            return schedule, True

    async def put_schedule(self, schedule: Schedule) -> None:
        with self._lock:
            _, owner, until = self._schedules.get(schedule.name, (schedule, None, None))
            self._schedules[schedule.name] = (schedule, owner, until)

    async def get_schedule(self, name: str) -> Schedule:
        with self._lock:
            return self._schedule(name)

    def _schedule(self, name: str) -> Schedule:
        try:
            return self._schedules[name][0]
        except KeyError:
            raise ScheduleNotFoundError(f"no schedule named {name!r} in {self.url}") from None

    async def list_schedules(self) -> list[Schedule]:
        with self._lock:
            return [self._schedules[name][0] for name in sorted(self._schedules)]

    async def delete_schedule(self, name: str) -> bool:
        with self._lock:
            return self._schedules.pop(name, None) is not None

    async def claim_schedules(
        self, owner: str, now: datetime, limit: int, lease_for: timedelta
    ) -> list[Schedule]:
        with self._lock:
            due = [
                s
                for s, _, until in self._schedules.values()
                if schedule_claimable(s.next_fire_at, s.paused, until, now)
            ]
            due.sort(key=lambda s: (s.next_fire_at or now, s.name))
            for s in due[:limit]:
                self._schedules[s.name] = (s, owner, now + lease_for)
            return due[:limit]

    async def advance_schedule(
        self,
        name: str,
        owner: str,
        expected_next_fire_at: datetime,
        next_fire_at: datetime | None,
        last_fire_at: datetime | None,
        last_run_id: str | None,
    ) -> bool:
        with self._lock:
            entry = self._schedules.get(name)
            if entry is None or entry[1] != owner:
                return False
            s = entry[0]
            if s.next_fire_at != expected_next_fire_at:
                self._schedules[name] = (s, None, None)
                return False
            s = attrs.evolve(
                s, next_fire_at=next_fire_at, last_fire_at=last_fire_at, last_run_id=last_run_id
            )
            self._schedules[name] = (s, None, None)
            return True

    async def next_schedule_at(self) -> datetime | None:
        with self._lock:
            times = [
                s.next_fire_at
                for s, _, _ in self._schedules.values()
                if not s.paused and s.next_fire_at is not None
            ]
            return min(times, default=None)

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
        key = chunk_key(step_id, index)
        with self._lock:
            self._run(run_id)
            if key is not None and (run_id, stream, key) in self._chunk_keys:
                return self._chunk_keys[run_id, stream, key]
            chunks = self._streams.setdefault(run_id, {}).setdefault(stream, [])
            seq = len(chunks) + 1
            chunks.append(StreamChunk(run_id, stream, seq, data, step_id, attempt, index, utcnow()))
            if key is not None:
                self._chunk_keys[run_id, stream, key] = seq
            return seq

    async def read_stream(
        self, run_id: str, stream: str, after_seq: int = 0, limit: int = 1000
    ) -> list[StreamChunk]:
        check_read(run_id, stream, after_seq, limit)
        with self._lock:
            self._run(run_id)
            chunks = self._streams.get(run_id, {}).get(stream, [])
            return chunks[after_seq : after_seq + limit]

    async def list_streams(self, run_id: str) -> list[str]:
        with self._lock:
            self._run(run_id)
            return sorted(self._streams.get(run_id, {}))

    # ----- step checkpoints -----

    async def save_step_checkpoint(
        self, run_id: str, step_id: str, attempt: int, data: str
    ) -> bool:
        check_checkpoint(run_id, step_id, attempt, data, self.max_payload_bytes)
        with self._lock:
            self._run(run_id)
            stored = self._checkpoints.get((run_id, step_id))
            if not supersedes(attempt, None if stored is None else stored.attempt):
                return False
            self._checkpoints[run_id, step_id] = StepCheckpoint(
                run_id, step_id, attempt, data, utcnow()
            )
            return True

    async def get_step_checkpoint(self, run_id: str, step_id: str) -> StepCheckpoint | None:
        check_checkpoint_key(run_id, step_id)
        with self._lock:
            return self._checkpoints.get((run_id, step_id))


_HOOK_EVENTS = frozenset({EventType.HOOK_CREATED, EventType.HOOK_DISPOSED})
#: Sets a field of a frozen record this storage alone holds (see ``MemoryStorage._private``).
_set = object.__setattr__


def _to_event(run_id: str, seq: int, event: NewEvent) -> Event:
    return Event(run_id, seq, event.type, event.correlation_id, event.timestamp, event.payload)
