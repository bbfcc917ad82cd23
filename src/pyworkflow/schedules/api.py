"""Schedules at run time: create, list, pause, resume, trigger and delete (sync and ``a`` twins)."""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

import attrs

from pyworkflow.durations import Duration
from pyworkflow.errors import ScheduleExistsError
from pyworkflow.models import CatchupPolicy, OverlapPolicy, Schedule, utcnow
from pyworkflow.runtime import Runtime, get_runtime
from pyworkflow.schedules.spec import (
    DEFAULT_CATCHUP,
    DEFAULT_CATCHUP_WINDOW,
    DEFAULT_GRACE,
    DEFAULT_OVERLAP,
    Timing,
    check_policies,
    check_schedule_name,
    parse_timing,
)
from pyworkflow.serialization import dumps_limited
from pyworkflow.workflow import definition_of

__all__ = [
    "acreate_schedule",
    "adelete_schedule",
    "aget_schedule",
    "alist_schedules",
    "apause_schedule",
    "aresume_schedule",
    "atrigger_schedule",
    "build_schedule",
    "check_timing",
    "create_schedule",
    "delete_schedule",
    "get_schedule",
    "list_schedules",
    "pause_schedule",
    "resume_schedule",
    "trigger_schedule",
]


def check_timing(
    cron: str | None, every: Duration | None, anchor: datetime | None, timezone: str
) -> Timing:
    """The timing given by exactly one of ``cron`` and ``every`` (with ``anchor``), checked.

    Raises ``TypeError`` when both or neither is given and for values of the wrong type, and
    ``ValueError`` naming a bad expression, interval, anchor or time zone.
    """
    from pyworkflow.schedules.interval import IntervalSpec

    if not isinstance(timezone, str):
        raise TypeError(f"timezone must be a string, got {type(timezone).__name__}")
    if cron is not None and every is not None:
        raise TypeError(
            "give either cron (a cron expression) or every (an interval such as '15m'), not both"
        )
    if cron is None and every is None:
        raise TypeError(
            "a schedule needs its ticks: give cron (a cron expression such as '0 * * * *') or "
            "every (an interval such as '15m')"
        )
    if every is not None:
        if timezone != "UTC":
            raise ValueError(
                f"an interval schedule takes no time zone (got {timezone!r}): it is elapsed "
                "time; give the anchor as an aware datetime in that zone instead"
            )
        return IntervalSpec.of(every, anchor)
    if not isinstance(cron, str):
        raise TypeError(f"cron must be a string, got {type(cron).__name__}")
    if anchor is not None:
        raise TypeError("anchor applies to an interval schedule (every=...), not to a cron one")
    return parse_timing(cron, timezone)


def build_schedule(
    runtime: Runtime,
    name: str,
    workflow: Any,
    cron: str | None = None,
    *,
    every: Duration | None = None,
    anchor: datetime | None = None,
    args: Sequence[Any] = (),
    kwargs: Mapping[str, Any] | None = None,
    timezone: str = "UTC",
    overlap: OverlapPolicy | str = DEFAULT_OVERLAP,
    catchup: CatchupPolicy | str = DEFAULT_CATCHUP,
    grace: Duration = DEFAULT_GRACE,
    catchup_window: Duration = DEFAULT_CATCHUP_WINDOW,
    queue: str | None = None,
    paused: bool = False,
    origin: str = "api",
) -> Schedule:
    """A new schedule row, every option checked; its first tick is the first after now.

    Raises ``TypeError``/``ValueError`` naming the option at fault, and
    ``WorkflowNotFoundError`` for a workflow this process does not know.
    """
    from pyworkflow.queues import check_queue_name

    check_schedule_name(name)
    definition = definition_of(workflow)
    if not definition.durable:
        raise ValueError(
            f"workflow {definition.name!r} is transient (durable=False): a schedule starts "
            "stored runs from a worker, which a transient workflow never has; schedule a "
            "durable workflow"
        )
    spec = check_timing(cron, every, anchor, timezone)
    overlap_p, catchup_p, grace_s, window_s = check_policies(
        overlap, catchup, grace, catchup_window
    )
    if queue is not None:
        check_queue_name(queue)
    if not isinstance(paused, bool):
        raise TypeError(f"paused must be a bool, got {type(paused).__name__}")
    args, kwargs = tuple(args), dict(kwargs or {})
    definition.check_arguments(args, kwargs)
    data = dumps_limited(
        runtime.serializer,
        {"args": args, "kwargs": kwargs},
        limit=runtime.settings.max_payload_bytes,
        what=f"input of schedule {name!r}",
    )
    now = utcnow()
    return Schedule(
        name=name,
        workflow_name=definition.name,
        cron=spec.expression,
        timezone=spec.timezone,
        input=data,
        serializer=runtime.serializer.name,
        created_at=now,
        updated_at=now,
        next_fire_at=spec.next_after(now),
        overlap=overlap_p,
        catchup=catchup_p,
        grace=grace_s,
        catchup_window=window_s,
        queue=queue,
        paused=paused,
        origin=origin,
    )


async def _create(runtime: Runtime, schedule: Schedule, replace: bool) -> Schedule:
    # timed again here, on the runtime's loop: its clock (virtual under the test harness)
    now = utcnow()
    first = parse_timing(schedule.cron, schedule.timezone).next_after(now)
    schedule = attrs.evolve(schedule, created_at=now, updated_at=now, next_fire_at=first)
    storage = runtime.storage
    if replace:
        await storage.put_schedule(schedule)
        stored = schedule
    else:
        stored, created = await storage.create_schedule(schedule)
        if not created:
            raise ScheduleExistsError(
                f"a schedule named {schedule.name!r} exists already; delete it first or pass "
                "replace=True"
            )
    _wake_firer(runtime)
    return stored


def _wake_firer(runtime: Runtime) -> None:
    """Let this process's worker look at schedules on its next pass."""
    wake = getattr(runtime.executor, "schedules_changed", None)
    if callable(wake):
        wake()


async def acreate_schedule(
    name: str,
    workflow: Any,
    cron: str | None = None,
    *,
    every: Duration | None = None,
    anchor: datetime | None = None,
    args: Sequence[Any] = (),
    kwargs: Mapping[str, Any] | None = None,
    timezone: str = "UTC",
    overlap: OverlapPolicy | str = DEFAULT_OVERLAP,
    catchup: CatchupPolicy | str = DEFAULT_CATCHUP,
    grace: Duration = DEFAULT_GRACE,
    catchup_window: Duration = DEFAULT_CATCHUP_WINDOW,
    queue: str | None = None,
    paused: bool = False,
    replace: bool = False,
) -> Schedule:
    """Create a schedule that starts a run of ``workflow`` at each tick of ``cron`` or ``every``.

    Give exactly one of them. ``cron`` has 5 fields (minute hour day month
    weekday), or 6 with seconds first, or is ``@hourly``/``@daily``/...; it is
    read in ``timezone`` (an IANA name). ``every`` is an interval (``"15m"``,
    seconds or a timedelta; whole seconds, at least 1 s): ticks at ``anchor``
    + k * ``every`` (k = 0, 1, ...; an aware datetime; default the Unix epoch,
    so ``"15m"`` ticks at :00, :15, :30, :45 UTC). ``overlap`` (``skip``,
    ``allow``, ``cancel_previous``) says what a tick does while the previous
    tick's run is still running; ``catchup`` (``none``, ``latest``, ``all``
    within ``catchup_window``) what happens to ticks missed by more than
    ``grace`` (docs/schedules.md). Each tick starts
    exactly one run, whatever the number of workers. Raises
    :class:`~pyworkflow.errors.ScheduleExistsError` if ``name`` is taken,
    unless ``replace``.
    """
    runtime = get_runtime()
    schedule = build_schedule(
        runtime,
        name,
        workflow,
        cron,
        every=every,
        anchor=anchor,
        args=args,
        kwargs=kwargs,
        timezone=timezone,
        overlap=overlap,
        catchup=catchup,
        grace=grace,
        catchup_window=catchup_window,
        queue=queue,
        paused=paused,
    )
    return await runtime.acall(_create, runtime, schedule, replace)


def create_schedule(
    name: str,
    workflow: Any,
    cron: str | None = None,
    *,
    every: Duration | None = None,
    anchor: datetime | None = None,
    args: Sequence[Any] = (),
    kwargs: Mapping[str, Any] | None = None,
    timezone: str = "UTC",
    overlap: OverlapPolicy | str = DEFAULT_OVERLAP,
    catchup: CatchupPolicy | str = DEFAULT_CATCHUP,
    grace: Duration = DEFAULT_GRACE,
    catchup_window: Duration = DEFAULT_CATCHUP_WINDOW,
    queue: str | None = None,
    paused: bool = False,
    replace: bool = False,
) -> Schedule:
    """Sync form of :func:`acreate_schedule`.

    ```python
    from pyworkflow import create_schedule

    create_schedule("nightly-report", nightly_report, "0 3 * * *", timezone="Europe/Paris")
    create_schedule("sync-crm", sync_contacts, every="15m", kwargs={"source": "crm"}, replace=True)
    ```
    """
    runtime = get_runtime()
    schedule = build_schedule(
        runtime,
        name,
        workflow,
        cron,
        every=every,
        anchor=anchor,
        args=args,
        kwargs=kwargs,
        timezone=timezone,
        overlap=overlap,
        catchup=catchup,
        grace=grace,
        catchup_window=catchup_window,
        queue=queue,
        paused=paused,
    )
    return runtime.call(_create, runtime, schedule, replace)


async def _get(runtime: Runtime, name: str) -> Schedule:
    return await runtime.storage.get_schedule(check_schedule_name(name))


async def aget_schedule(name: str) -> Schedule:
    """The schedule named ``name``; raises :class:`~pyworkflow.errors.ScheduleNotFoundError`."""
    runtime = get_runtime()
    return await runtime.acall(_get, runtime, name)


def get_schedule(name: str) -> Schedule:
    """Sync form of :func:`aget_schedule`."""
    runtime = get_runtime()
    return runtime.call(_get, runtime, name)


async def _list(runtime: Runtime) -> list[Schedule]:
    return await runtime.storage.list_schedules()


async def alist_schedules() -> list[Schedule]:
    """Every schedule, by name."""
    runtime = get_runtime()
    return await runtime.acall(_list, runtime)


def list_schedules() -> list[Schedule]:
    """Sync form of :func:`alist_schedules`."""
    runtime = get_runtime()
    return runtime.call(_list, runtime)


async def _set_paused(runtime: Runtime, name: str, paused: bool) -> Schedule:
    schedule = await _get(runtime, name)
    if schedule.paused == paused:
        return schedule
    now = utcnow()
    changes: dict[str, Any] = {"paused": paused, "updated_at": now}
    if not paused:  # resumed: the ticks of the pause are not caught up
        changes["next_fire_at"] = parse_timing(schedule.cron, schedule.timezone).next_after(now)
    schedule = attrs.evolve(schedule, **changes)
    await runtime.storage.put_schedule(schedule)
    _wake_firer(runtime)
    return schedule


async def apause_schedule(name: str) -> Schedule:
    """Stop firing ``name`` until resumed; runs already started go on."""
    runtime = get_runtime()
    return await runtime.acall(_set_paused, runtime, name, True)


def pause_schedule(name: str) -> Schedule:
    """Sync form of :func:`apause_schedule`."""
    runtime = get_runtime()
    return runtime.call(_set_paused, runtime, name, True)


async def aresume_schedule(name: str) -> Schedule:
    """Fire ``name`` again from its next tick after now (ticks of the pause are not caught up)."""
    runtime = get_runtime()
    return await runtime.acall(_set_paused, runtime, name, False)


def resume_schedule(name: str) -> Schedule:
    """Sync form of :func:`aresume_schedule`."""
    runtime = get_runtime()
    return runtime.call(_set_paused, runtime, name, False)


async def _delete(runtime: Runtime, name: str) -> bool:
    return await runtime.storage.delete_schedule(check_schedule_name(name))


async def adelete_schedule(name: str) -> bool:
    """Delete ``name`` (its runs stay); False if there was none."""
    runtime = get_runtime()
    return await runtime.acall(_delete, runtime, name)


def delete_schedule(name: str) -> bool:
    """Sync form of :func:`adelete_schedule`."""
    runtime = get_runtime()
    return runtime.call(_delete, runtime, name)


async def _trigger(runtime: Runtime, name: str) -> str:
    from pyworkflow.schedules.firing import start_scheduled_run
    from pyworkflow.workflow import get_workflow

    schedule = await _get(runtime, name)
    definition = get_workflow(schedule.workflow_name)
    stored = await start_scheduled_run(
        runtime, schedule, definition, utcnow(), run_id=uuid.uuid4().hex, triggered=True
    )
    return stored.run_id


async def atrigger_schedule(name: str) -> str:
    """Start a run of the schedule now (whatever its overlap policy and pause); its run id."""
    runtime = get_runtime()
    return await runtime.acall(_trigger, runtime, name)


def trigger_schedule(name: str) -> str:
    """Sync form of :func:`atrigger_schedule`."""
    runtime = get_runtime()
    return runtime.call(_trigger, runtime, name)
