"""Queue admission and schedule claiming over plain Python rows (Memory and File use them).

The rules are those of :meth:`pyworkflow.storage.base.Storage.admit_queued_runs`
and the schedule methods; SQL and Redis backends express the same rules in
their own language.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from datetime import datetime, timedelta

import attrs

from pyworkflow.models import (
    ACTIVE_STATUSES,
    QueueLimits,
    QueueStats,
    Run,
    RunStatus,
)

__all__ = [
    "admit",
    "admitted_run",
    "dedup_holder",
    "queue_stats_of",
    "schedule_claimable",
    "slot_memory",
    "take_step_slot",
]


def dedup_holder(runs: Iterable[Run], new: Run) -> Run | None:
    """The live run (not ended) holding ``new``'s ``(queue, dedup_key)``, if any."""
    if new.dedup_key is None:
        return None
    for run in runs:
        if run.dedup_key == new.dedup_key and run.queue == new.queue and not run.status.is_terminal:
            return run
    return None


def admit(
    runs: Iterable[Run],
    queue: str,
    limits: QueueLimits,
    now: datetime,
    limit: int,
    worker: str | None,
) -> list[Run]:
    """The waiting runs of ``queue`` to admit now, in admission order (nothing is changed)."""
    mine = [r for r in runs if r.queue == queue]
    active = [r for r in mine if r.status in ACTIVE_STATUSES]
    waiting = sorted(
        (r for r in mine if r.status == RunStatus.QUEUED),
        key=lambda r: (r.queue_rank or 0.0, r.created_at, r.run_id),
    )
    count = len(active)
    by_worker = sum(1 for r in active if worker is not None and r.admitted_by == worker)
    by_key = Counter(r.partition_key for r in active if r.partition_key is not None)
    recent = 0
    if limits.rate is not None:
        since = now - limits.rate[1]
        recent = sum(1 for r in mine if r.admitted_at is not None and r.admitted_at > since)
    chosen: list[Run] = []
    for run in waiting:
        if len(chosen) >= limit:
            break
        if limits.concurrency is not None and count >= limits.concurrency:
            break
        if (
            limits.worker_concurrency is not None
            and worker is not None
            and by_worker >= limits.worker_concurrency
        ):
            break
        if limits.rate is not None and recent >= limits.rate[0]:
            break
        key = run.partition_key
        if (
            limits.partition_concurrency is not None
            and key is not None
            and by_key[key] >= limits.partition_concurrency
        ):
            continue
        chosen.append(run)
        count += 1
        by_worker += 1
        recent += 1
        if key is not None:
            by_key[key] += 1
    return chosen


def admitted_run(
    run: Run, owner: str, now: datetime, lease_for: timedelta, worker: str | None
) -> Run:
    """``run`` as admission stores it: pending, due now, leased to ``owner``."""
    return attrs.evolve(
        run,
        status=RunStatus.PENDING,
        wake_at=now,
        lease_owner=owner,
        lease_expires_at=now + lease_for,
        admitted_at=now,
        admitted_by=worker,
    )


def queue_stats_of(runs: Iterable[Run], since: datetime) -> list[QueueStats]:
    """``Storage.queue_stats`` over ``runs``."""
    waiting: Counter[str] = Counter()
    active: Counter[str] = Counter()
    admitted: Counter[str] = Counter()
    for run in runs:
        if run.queue is None:
            continue
        if run.status == RunStatus.QUEUED:
            waiting[run.queue] += 1
        elif run.status in ACTIVE_STATUSES:
            active[run.queue] += 1
        if run.admitted_at is not None and run.admitted_at >= since:
            admitted[run.queue] += 1
    names = sorted(set(waiting) | set(active) | set(admitted))
    return [QueueStats(n, waiting[n], active[n], admitted[n]) for n in names]


def schedule_claimable(
    next_fire_at: datetime | None,
    paused: bool,
    lease_expires_at: datetime | None,
    now: datetime,
) -> bool:
    """Whether a schedule row is due at ``now`` and free to lease."""
    if paused or next_fire_at is None or next_fire_at > now:
        return False
    return lease_expires_at is None or lease_expires_at < now


#: Released or expired step places older than this may be forgotten.
SLOT_MEMORY = timedelta(days=1)


def slot_memory(limits: QueueLimits) -> timedelta:
    """How old a free step place must be to be forgotten: a day, or the rate period if longer.

    A place a rate window still counts is never forgotten (``rate = "100/7d"``).
    """
    return SLOT_MEMORY if limits.rate is None else max(SLOT_MEMORY, limits.rate[1])


def take_step_slot(
    places: dict[str, tuple[datetime, datetime | None]],
    holder: str,
    limits: QueueLimits,
    now: datetime,
    lease_for: timedelta,
) -> bool:
    """``Storage.acquire_step_slot`` over one queue's places ``{holder: (acquired, until)}``.

    Changes ``places`` in place when the answer is True (and forgets old rows).
    """
    mine = places.get(holder)
    if mine is not None and mine[1] is not None and mine[1] > now:
        places[holder] = (mine[0], now + lease_for)
        return True
    forget_before = now - slot_memory(limits)
    for other, (acquired, until) in list(places.items()):
        if (until is None or until <= now) and acquired <= forget_before:
            del places[other]
    held = sum(
        1 for h, (_, until) in places.items() if h != holder and until is not None and until > now
    )
    if limits.concurrency is not None and held >= limits.concurrency:
        return False
    if limits.rate is not None:
        since = now - limits.rate[1]
        if sum(1 for acquired, _ in places.values() if acquired > since) >= limits.rate[0]:
            return False
    places[holder] = (now, now + lease_for)
    return True
