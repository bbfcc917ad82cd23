"""Schedule options checked once, shared by ``@workflow(schedule=...)`` and ``create_schedule``."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta
from typing import Any

import attrs

from pyworkflow.durations import Duration, parse_duration
from pyworkflow.models import CatchupPolicy, OverlapPolicy

__all__ = ["Cron", "check_policies", "check_schedule_name"]

#: Defaults (docs/schedules.md): skip a tick while the previous run is running; after downtime
#: start one run for the missed ticks; a tick more than a minute late counts as missed.
DEFAULT_OVERLAP = OverlapPolicy.SKIP
DEFAULT_CATCHUP = CatchupPolicy.LATEST
DEFAULT_GRACE = timedelta(minutes=1)
DEFAULT_CATCHUP_WINDOW = timedelta(days=1)


def check_schedule_name(name: object) -> str:
    """``name`` if it is a valid schedule name (1-128 printable characters, no ``/``)."""
    if not isinstance(name, str):
        raise TypeError(f"schedule name must be a string, got {type(name).__name__}")
    if not name or len(name) > 128 or not name.isprintable() or "/" in name or name != name.strip():
        raise ValueError(
            f"invalid schedule name {name[:140]!r}: use 1-128 printable characters, "
            "no '/' and no leading or trailing space"
        )
    return name


def check_policies(
    overlap: OverlapPolicy | str,
    catchup: CatchupPolicy | str,
    grace: Duration,
    catchup_window: Duration,
) -> tuple[OverlapPolicy, CatchupPolicy, float, float]:
    """The policies as stored; ``ValueError``/``TypeError`` naming a bad one."""
    if not isinstance(overlap, str):
        raise TypeError(f"overlap must be a string, got {type(overlap).__name__}")
    if not isinstance(catchup, str):
        raise TypeError(f"catchup must be a string, got {type(catchup).__name__}")
    try:
        overlap_policy = OverlapPolicy(overlap)
    except ValueError:
        choices = ", ".join(p.value for p in OverlapPolicy)
        raise ValueError(f"invalid overlap policy {overlap!r}: use one of {choices}") from None
    try:
        catchup_policy = CatchupPolicy(catchup)
    except ValueError:
        choices = ", ".join(p.value for p in CatchupPolicy)
        raise ValueError(f"invalid catchup policy {catchup!r}: use one of {choices}") from None
    grace_s = parse_duration(grace, what="grace").total_seconds()
    window_s = parse_duration(catchup_window, what="catchup_window").total_seconds()
    if window_s <= 0:
        raise ValueError("catchup_window must be a positive duration")
    return overlap_policy, catchup_policy, grace_s, window_s


@attrs.frozen
class Cron:
    """A schedule declared on a workflow: ``@workflow(schedule=Cron("0 3 * * *", ...))``.

    ``@workflow(schedule="0 * * * *")`` is ``Cron("0 * * * *")``. Workers
    create the schedule in storage when they start (named after the
    workflow unless ``name`` is given) and keep it in step with the code.
    ``args``/``kwargs`` are the input of every run it starts.
    """

    expression: str
    timezone: str = "UTC"
    args: tuple[Any, ...] = ()
    kwargs: Mapping[str, Any] = attrs.field(factory=dict)
    name: str | None = None
    overlap: OverlapPolicy | str = DEFAULT_OVERLAP
    catchup: CatchupPolicy | str = DEFAULT_CATCHUP
    grace: Duration = DEFAULT_GRACE
    catchup_window: Duration = DEFAULT_CATCHUP_WINDOW
    queue: str | None = None

    def check(self) -> None:
        """Raise ``ValueError``/``TypeError`` naming what is wrong (called at declaration)."""
        from pyworkflow.queues import check_queue_name
        from pyworkflow.schedules.cron import CronSpec

        CronSpec.parse(self.expression, self.timezone)
        if self.name is not None:
            check_schedule_name(self.name)
        check_policies(self.overlap, self.catchup, self.grace, self.catchup_window)
        if self.queue is not None:
            check_queue_name(self.queue)
        if not isinstance(self.args, tuple):
            raise TypeError(f"schedule args must be a tuple, got {type(self.args).__name__}")
        if not isinstance(self.kwargs, Mapping):
            raise TypeError(f"schedule kwargs must be a mapping, got {type(self.kwargs).__name__}")
