"""Firing due schedules: each tick starts exactly one run, whoever fires it and however often.

A worker pass (or a Celery sweep) claims due schedule rows under a lease,
starts the run of each tick it fires, then advances the row's next fire time
(``Storage.advance_schedule``). The run's id is derived from (schedule name,
tick time), so a crash between the two, or a second firing, lands on the
same run: each tick yields at most one run by construction (DESIGN §12).
"""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from loguru import logger

from pyworkflow.errors import RunNotFoundError, WorkflowNotFoundError
from pyworkflow.models import CatchupPolicy, OverlapPolicy, Run, Schedule, utcnow

if TYPE_CHECKING:
    from pyworkflow.runtime import Runtime
    from pyworkflow.schedules.spec import Timing
    from pyworkflow.workflow import WorkflowDefinition

__all__ = ["ScheduleFirer", "fire_schedule", "select_ticks", "start_scheduled_run", "tick_run_id"]

#: Most runs one firing of one schedule starts (catch-up ``all`` after a long downtime).
MAX_TICKS_PER_FIRING = 1000
#: Schedules one pass claims at most.
_CLAIM_BATCH = 50
#: (schedule, workflow) pairs whose unknown workflow this process has warned about.
_unknown_told: set[tuple[str, str]] = set()


def tick_run_id(name: str, tick: datetime) -> str:
    """The run id of ``name``'s tick at ``tick``: the same for every worker that fires it."""
    digest = hashlib.sha256(f"{name}\x00{tick.timestamp():.6f}".encode()).hexdigest()
    return f"sched-{digest[:32]}"


def tick_key(name: str, tick: datetime) -> str:
    """The idempotency key of that run (readable in ``runs show``)."""
    return f"schedule:{name}:{tick.isoformat()}"


def _last_before(spec: Timing, before: datetime, floor: datetime) -> datetime | None:
    """The latest tick ``t`` with ``floor <= t < before`` (None: none), by widening windows."""
    width = timedelta(seconds=1)
    while True:
        start = max(floor, before - width)
        found = [t for t in spec.ticks(start, before, MAX_TICKS_PER_FIRING * 10) if t < before]
        if found:
            return found[-1]
        if start <= floor:
            return None
        width *= 8


def select_ticks(schedule: Schedule, spec: Timing, now: datetime) -> list[datetime]:
    """The ticks due at ``now`` (from ``next_fire_at``) that this firing starts runs for.

    A tick is *on time* when ``now - tick <= grace``: those are always fired.
    Older ones were *missed* (no worker ran): ``catchup`` decides: ``none``
    fires none of them, ``latest`` the latest one, ``all`` every one within
    ``catchup_window`` of now. Oldest first, at most :data:`MAX_TICKS_PER_FIRING`
    (the latest ones).
    """
    first = schedule.next_fire_at
    if first is None or first > now:
        return []
    grace = timedelta(seconds=schedule.grace)
    on_time_from = max(first, now - grace)
    on_time = spec.ticks(on_time_from, now, MAX_TICKS_PER_FIRING + 1)
    # a tick exactly on the grace boundary is on time; missed ones are strictly older
    missed: list[datetime] = []
    if first < now - grace:
        if schedule.catchup is CatchupPolicy.LATEST:
            latest = _last_before(spec, on_time_from, first)
            missed = [] if latest is None else [latest]
        elif schedule.catchup is CatchupPolicy.ALL:
            window_from = max(first, now - timedelta(seconds=schedule.catchup_window))
            if window_from < on_time_from:
                missed = [
                    t
                    for t in spec.ticks(window_from, on_time_from, MAX_TICKS_PER_FIRING + 1)
                    if t < on_time_from
                ]
    return (missed + on_time)[-MAX_TICKS_PER_FIRING:]


async def fire_schedule(
    runtime: Runtime, schedule: Schedule, owner: str, now: datetime
) -> list[str]:
    """Fire ``schedule`` (claimed by ``owner``) at ``now``; the ids of the runs it started.

    Then advances its next fire time to the first tick after ``now``. A
    schedule whose workflow this process does not know is left for a worker
    that does (its lease dropped, nothing advanced).
    """
    from pyworkflow.schedules.spec import parse_timing  # croniter: once a cron one is due

    log = logger.bind(schedule=schedule.name)
    expected = schedule.next_fire_at
    assert expected is not None  # claimed schedules are due
    try:
        spec = parse_timing(schedule.cron, schedule.timezone)
    except ValueError as exc:  # stored by hand or by an older version: pause it, say why
        log.error("schedule has an invalid cron expression or interval; it is not fired: {}", exc)
        await runtime.storage.advance_schedule(
            schedule.name, owner, expected, None, schedule.last_fire_at, schedule.last_run_id
        )
        return []
    try:
        from pyworkflow.workflow import get_workflow

        definition = get_workflow(schedule.workflow_name)
    except WorkflowNotFoundError:
        key = (schedule.name, schedule.workflow_name)
        if key not in _unknown_told:  # said once per process: it is met at every poll
            _unknown_told.add(key)
            log.warning(
                "schedule is due but its workflow {!r} is not known in this process; it is "
                "left to a worker that imports it (add its module to 'modules')",
                schedule.workflow_name,
            )
        await runtime.storage.advance_schedule(
            schedule.name, owner, expected, expected, schedule.last_fire_at, schedule.last_run_id
        )
        return []
    started: list[str] = []
    last_fire, last_run = schedule.last_fire_at, schedule.last_run_id
    for tick in select_ticks(schedule, spec, now):
        run_id = await _start_tick(runtime, schedule, definition, tick, last_run)
        last_fire = tick
        if run_id is not None:
            started.append(run_id)
            last_run = run_id
    skipped_to = spec.next_after(now)
    written = await runtime.storage.advance_schedule(
        schedule.name, owner, expected, skipped_to, last_fire, last_run
    )
    if not written:
        log.info("schedule changed while it fired; its new definition stands")
    return started


async def _start_tick(
    runtime: Runtime,
    schedule: Schedule,
    definition: WorkflowDefinition,
    tick: datetime,
    previous: str | None,
) -> str | None:
    from pyworkflow.client import acancel_run

    bound = logger.bind(schedule=schedule.name, tick=tick.isoformat())
    run_id = tick_run_id(schedule.name, tick)
    if previous is not None and previous != run_id and schedule.overlap is not OverlapPolicy.ALLOW:
        prior = await _live(runtime, previous)
        if prior is not None:
            if schedule.overlap is OverlapPolicy.SKIP:
                bound.info("tick skipped: run {} of the previous tick is still running", previous)
                return None
            bound.info("cancelling run {} of the previous tick (overlap cancel_previous)", previous)
            await acancel_run(runtime, previous)
    stored = await start_scheduled_run(
        runtime,
        schedule,
        definition,
        tick,
        run_id=run_id,
        idempotency_key=tick_key(schedule.name, tick),
    )
    bound.bind(run_id=stored.run_id).info("schedule fired")
    return stored.run_id


async def start_scheduled_run(
    runtime: Runtime,
    schedule: Schedule,
    definition: WorkflowDefinition,
    scheduled_at: datetime,
    *,
    run_id: str,
    idempotency_key: str | None = None,
    triggered: bool = False,
) -> Run:
    """Create a run of ``schedule`` for ``scheduled_at`` (a tick, or now when ``triggered``)."""
    from pyworkflow.client import FlowOptions, create_prepared

    started: dict[str, Any] = {"schedule": schedule.name, "scheduled_at": scheduled_at.isoformat()}
    if triggered:
        started["triggered"] = True
    return await create_prepared(
        runtime,
        schedule.workflow_name,
        definition.version,
        schedule.input,
        schedule.serializer,
        run_id=run_id,
        idempotency_key=idempotency_key,
        timeout=definition.timeout,
        flow=FlowOptions(queue=schedule.queue) if schedule.queue else None,
        default_queue=definition.queue,
        started=started,
    )


async def _live(runtime: Runtime, run_id: str) -> Run | None:
    """The run if it has not ended (None: ended or gone)."""
    try:
        run = await runtime.storage.get_run(run_id)
    except RunNotFoundError:
        return None
    return None if run.status.is_terminal else run


class ScheduleFirer:
    """Fires due schedules from a worker's claim passes, at most once per poll interval.

    It remembers the earliest next fire time it saw, so that between polls a
    pass costs nothing unless a schedule is due.
    """

    def __init__(self, runtime: Runtime, owner: str) -> None:
        self.runtime = runtime
        self.owner = owner
        self.lease_for = timedelta(seconds=runtime.settings.lease_seconds)
        self._check_at: datetime | None = None
        self._synced = False

    @property
    def next_check(self) -> datetime | None:
        """When the next pass should look (a hint for the worker's sleep)."""
        return self._check_at

    async def fire_due(self, now: datetime | None = None) -> list[str]:
        """Fire the schedules due now; the ids of the runs started. Storage errors are logged."""
        now = now or utcnow()
        if self._check_at is not None and now < self._check_at:
            return []
        storage = self.runtime.storage
        started: list[str] = []
        try:
            if not self._synced:
                from pyworkflow.schedules.declared import sync_declared_schedules

                await sync_declared_schedules(self.runtime)
                self._synced = True
            upcoming = await storage.next_schedule_at()  # a read: claims only when one is due
            while upcoming is not None and upcoming <= now:
                claimed = await storage.claim_schedules(
                    self.owner, now, _CLAIM_BATCH, self.lease_for
                )
                for schedule in claimed:
                    try:
                        started += await fire_schedule(self.runtime, schedule, self.owner, now)
                    except Exception:
                        logger.bind(schedule=schedule.name).exception(
                            "firing the schedule failed; its lease expires and it fires again"
                        )
                if len(claimed) < _CLAIM_BATCH:
                    upcoming = await storage.next_schedule_at()
                    break
        except NotImplementedError:
            self._check_at = now + timedelta(days=1)  # a storage without schedules
            return started
        except Exception:
            logger.exception("firing schedules failed; retrying after the poll interval")
            upcoming = None
        poll = now + timedelta(seconds=self.runtime.settings.poll_interval)
        # a schedule due but leased elsewhere is looked at again after a poll interval
        self._check_at = poll if upcoming is None or upcoming <= now else min(poll, upcoming)
        return started

    def wake(self) -> None:
        """Look again on the next pass (a schedule was created or changed here)."""
        self._check_at = None
