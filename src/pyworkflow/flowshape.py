"""The JSON shapes of schedules and queues: one rule for the CLI's ``--json`` and the HTTP API."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from pyworkflow.jsonshape import jsonable
from pyworkflow.models import Schedule, utcnow

if TYPE_CHECKING:
    from pyworkflow.queues import QueueConfig
    from pyworkflow.runtime import Runtime

__all__ = ["ADMITTED_WINDOW", "queues_json", "schedule_input", "schedule_json"]

#: ``admitted`` in a queue's JSON counts the runs admitted in this window before now.
ADMITTED_WINDOW = timedelta(minutes=1)


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment is not None else None


def schedule_input(runtime: Runtime, schedule: Schedule) -> tuple[Any, Any]:
    """The ``(args, kwargs)`` of every run ``schedule`` starts, made JSON-safe.

    Decoded with the serializer that wrote them; ``(None, None)`` when that
    serializer is not installed here or the text does not decode.
    """
    from pyworkflow import plugins

    try:
        serializer = (
            runtime.serializer
            if schedule.serializer == runtime.serializer.name
            else plugins.get_serializer(schedule.serializer)
        )
        data = serializer.loads(schedule.input)
    except Exception:  # a display helper: an undecodable input is shown as null
        return None, None
    if not isinstance(data, dict):
        return None, None
    return jsonable(list(data.get("args", ()))), jsonable(dict(data.get("kwargs", {})))


def schedule_json(runtime: Runtime, schedule: Schedule) -> dict[str, Any]:
    """A schedule as JSON (the ``Schedule`` schema of the OpenAPI document).

    ``grace`` and ``catchup_window`` are seconds; ``args``/``kwargs`` are the
    decoded input (see :func:`schedule_input`). ``cron`` is the stored timing
    text; for an interval (``@every ...``) ``every`` (seconds) and ``anchor``
    say the same, and are null for a cron schedule.
    """
    args, kwargs = schedule_input(runtime, schedule)
    every, anchor = _interval(schedule.cron)
    return {
        "name": schedule.name,
        "workflow": schedule.workflow_name,
        "cron": schedule.cron,
        "timezone": schedule.timezone,
        "every": every,
        "anchor": anchor,
        "args": args,
        "kwargs": kwargs,
        "overlap": schedule.overlap.value,
        "catchup": schedule.catchup.value,
        "grace": schedule.grace,
        "catchup_window": schedule.catchup_window,
        "queue": schedule.queue,
        "paused": schedule.paused,
        "origin": schedule.origin,
        "next_fire_at": _iso(schedule.next_fire_at),
        "last_fire_at": _iso(schedule.last_fire_at),
        "last_run_id": schedule.last_run_id,
        "created_at": _iso(schedule.created_at),
        "updated_at": _iso(schedule.updated_at),
    }


def _interval(text: str) -> tuple[float | None, str | None]:
    """``(every in seconds, anchor ISO)`` of an interval's text form; ``(None, None)`` otherwise."""
    from pyworkflow.schedules.interval import IntervalSpec, is_interval

    if not is_interval(text):
        return None, None
    try:
        spec = IntervalSpec.parse(text)
    except ValueError:  # a row stored by hand: shown as it is
        return None, None
    return spec.every.total_seconds(), spec.anchor.isoformat()


def _rate_json(config: QueueConfig | None) -> dict[str, Any] | None:
    if config is None or config.rate is None:
        return None
    count, period = config.rate
    return {"count": count, "period": period.total_seconds()}


async def queues_json(runtime: Runtime) -> list[dict[str, Any]]:
    """Every queue, by name: the configured ones (even empty) and any that holds runs.

    ``waiting`` is the depth (runs queued), ``active`` the runs holding a place
    (pending, running, suspended), ``admitted`` the runs admitted in the last
    minute; then the configured limits (null when not set). Runs on
    ``runtime``'s loop.
    """
    stats = {s.queue: s for s in await runtime.storage.queue_stats(utcnow() - ADMITTED_WINDOW)}
    configs = runtime.queue_configs
    rows: list[dict[str, Any]] = []
    for name in sorted(set(stats) | set(configs)):
        stat = stats.get(name)
        config = configs.get(name)
        rows.append(
            {
                "queue": name,
                "configured": config is not None,
                "waiting": stat.waiting if stat else 0,
                "active": stat.active if stat else 0,
                "admitted": stat.admitted if stat else 0,
                "concurrency": config.concurrency if config else None,
                "worker_concurrency": config.worker_concurrency if config else None,
                "partition_concurrency": config.partition_concurrency if config else None,
                "rate": _rate_json(config),
                "priority_aging": config.priority_aging if config else None,
            }
        )
    return rows
