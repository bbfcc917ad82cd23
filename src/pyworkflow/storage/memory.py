"""In-process storage (``memory://``): for tests and throw-away runs."""

from __future__ import annotations

import base64
import threading
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

import attrs

from pyworkflow.errors import (
    ConcurrencyError,
    HookNotFoundError,
    RunNotFoundError,
)
from pyworkflow.models import (
    Event,
    EventType,
    HookRecord,
    NewEvent,
    Run,
    RunPage,
    RunPatch,
    RunStatus,
    StepLease,
    utcnow,
)
from pyworkflow.storage.base import Storage, check_hook_conflicts, hook_changes

__all__ = ["MemoryStorage"]


def apply_patch(
    run: Run, patch: RunPatch | None, owner: str | None, now: datetime, last_seq: int
) -> Run:
    """Return ``run`` with ``patch`` applied (shared by simple backends)."""
    changes: dict[str, Any] = {"updated_at": now, "last_seq": last_seq}
    if patch is None:
        return attrs.evolve(run, **changes)
    if patch.clear_outcome:
        changes.update(result=None, error=None, error_message=None, completed_at=None)
    for name in ("status", "result", "error", "error_message", "completed_at"):
        value = getattr(patch, name)
        if value is not None:
            changes[name] = value
    if patch.set_wake:
        changes["wake_at"] = patch.wake_at
    if patch.release_lease and run.lease_owner == owner:
        changes["lease_owner"] = None
        changes["lease_expires_at"] = None
    return attrs.evolve(run, **changes)


def encode_cursor(run: Run) -> str:
    raw = f"{run.created_at.timestamp()!r}|{run.run_id}"
    return base64.urlsafe_b64encode(raw.encode()).decode()


def decode_cursor(cursor: str) -> tuple[float, str]:
    try:
        ts, run_id = base64.urlsafe_b64decode(cursor.encode()).decode().split("|", 1)
        return float(ts), run_id
    except Exception as exc:
        raise ValueError(f"invalid cursor {cursor!r}") from exc


def page_from(runs: list[Run], limit: int) -> RunPage:
    """The page of ``runs`` (fetched with ``limit + 1`` rows, in order) and its next cursor."""
    page = runs[:limit]
    return RunPage(page, encode_cursor(page[-1]) if len(runs) > limit and page else None)


def page_of(
    runs: list[Run],
    status: RunStatus | None,
    workflow: str | None,
    limit: int,
    cursor: str | None,
) -> RunPage:
    """One ``list_runs`` page out of all runs, for backends that filter in Python."""
    runs = sorted(runs, key=lambda r: (r.created_at.timestamp(), r.run_id), reverse=True)
    if status is not None:
        runs = [r for r in runs if r.status == status]
    if workflow is not None:
        runs = [r for r in runs if r.workflow_name == workflow]
    if cursor is not None:
        after = decode_cursor(cursor)
        runs = [r for r in runs if (r.created_at.timestamp(), r.run_id) < after]
    return page_from(runs, limit)


def can_claim(run: Run, now: datetime, take_over_prefix: str | None = None) -> bool:
    """Whether ``run`` is due at ``now`` and its lease is free, expired or taken over."""
    if run.wake_at is None or run.wake_at > now:
        return False
    if run.lease_owner is None or (run.lease_expires_at or now) < now:
        return True
    return take_over_prefix is not None and run.lease_owner.startswith(take_over_prefix)


def claimable(runs: Iterable[Run], now: datetime, limit: int) -> list[Run]:
    """Up to ``limit`` runs due at ``now`` whose lease is free or expired, earliest first."""
    due = (r for r in runs if can_claim(r, now))
    return sorted(due, key=lambda r: r.wake_at or now)[:limit]


def swap_step_lease(
    current: StepLease | None,
    run_id: str,
    step_id: str,
    owner: str | None,
    until: datetime | None,
    if_owner: str | None,
) -> tuple[bool, StepLease | None]:
    """The compare-and-set rule of ``Storage.set_step_lease``: (written, new lease)."""
    if if_owner is not None and (current is None or current.owner != if_owner):
        return False, current
    if owner is None:
        return current is not None or if_owner is None, None
    if until is None:
        raise ValueError("a step lease needs an expiry time")
    return True, StepLease(run_id, step_id, owner, until)


def expired_of(leases: Iterable[StepLease], now: datetime, limit: int) -> list[StepLease]:
    """Up to ``limit`` of ``leases`` expired at ``now``, oldest first."""
    return sorted((lease for lease in leases if lease.until < now), key=lambda x: x.until)[:limit]


class MemoryStorage(Storage):
    """Runs and events in dicts, guarded by a lock; lost when the process ends."""

    #: A second instance would not see this one's runs; the lock makes sharing safe.
    shared_with_threads = True

    def __init__(self, url: str = "memory://") -> None:
        self.url = url
        self._lock = threading.Lock()
        self._runs: dict[str, Run] = {}
        self._events: dict[str, list[Event]] = {}
        self._keys: dict[str, str] = {}
        self._hooks: dict[str, HookRecord] = {}
        self._step_leases: dict[tuple[str, str], StepLease] = {}

    def _run(self, run_id: str) -> Run:
        try:
            return self._runs[run_id]
        except KeyError:
            raise RunNotFoundError(f"no run with id {run_id!r} in {self.url}") from None

    async def create_run(self, run: Run, events: Sequence[NewEvent]) -> tuple[Run, bool]:
        with self._lock:
            key = run.idempotency_key
            if key is not None and key in self._keys:
                return self._runs[self._keys[key]], False
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
            return self._run(run_id)

    async def list_runs(
        self,
        *,
        status: RunStatus | None = None,
        workflow: str | None = None,
        limit: int = 100,
        cursor: str | None = None,
    ) -> RunPage:
        with self._lock:
            runs = list(self._runs.values())
        return page_of(runs, status, workflow, limit, cursor)

    async def get_events(self, run_id: str, after_seq: int = 0) -> list[Event]:
        with self._lock:
            self._run(run_id)
            return self._events[run_id][after_seq:]

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
            run = self._run(run_id)
            if run.last_seq != expected_seq:
                raise ConcurrencyError(run_id, expected_seq, run.last_seq)
            self._apply_hooks(run_id, events)
            log = self._events[run_id]
            log.extend(_to_event(run_id, expected_seq + i, e) for i, e in enumerate(events, 1))
            self._runs[run_id] = apply_patch(run, patch, owner, utcnow(), len(log))
            return len(log)

    def _apply_hooks(self, run_id: str, events: Sequence[NewEvent]) -> None:
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


def _to_event(run_id: str, seq: int, event: NewEvent) -> Event:
    return Event(run_id, seq, event.type, event.correlation_id, event.timestamp, event.payload)
