"""Schedule options checked once, shared by ``@workflow(schedule=...)`` and ``create_schedule``."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Protocol

import attrs

from pyworkflow.durations import Duration, parse_duration
from pyworkflow.models import CatchupPolicy, OverlapPolicy

if TYPE_CHECKING:
    from pyworkflow.schedules.interval import IntervalSpec

__all__ = ["Cron", "Every", "Timing", "check_policies", "check_schedule_name", "parse_timing"]

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


class Timing(Protocol):
    """When a schedule ticks: a :class:`~pyworkflow.schedules.cron.CronSpec` or an interval."""

    @property
    def expression(self) -> str:
        """The text stored in the schedule's ``cron`` field (``@every ...`` for an interval)."""

    @property
    def timezone(self) -> str:
        """The zone the expression is read in (``UTC`` for an interval)."""

    def next_after(self, after: datetime) -> datetime:
        """The first tick strictly after ``after``, as an aware UTC datetime."""

    def ticks(self, start: datetime, end: datetime, limit: int) -> list[datetime]:
        """The ticks from ``start`` to ``end`` (both included), oldest first, at most ``limit``."""


def parse_timing(expression: str, timezone: str = "UTC") -> Timing:
    """The timing of a stored or given ``cron`` text: a cron expression, or ``@every ...``.

    Raises ``ValueError`` naming what is wrong (an interval read in a time zone other than
    UTC among them) and ``TypeError`` for values that are not text. The cron parser is only
    imported for a cron expression.
    """
    from pyworkflow.schedules.interval import IntervalSpec, is_interval

    if is_interval(expression):
        if not isinstance(timezone, str):
            raise TypeError(f"timezone must be a string, got {type(timezone).__name__}")
        if timezone != "UTC":
            raise ValueError(
                f"an interval schedule ({expression.strip()!r}) is elapsed time and takes no time "
                f"zone (got {timezone!r}): give the anchor as an aware datetime in that zone"
            )
        return IntervalSpec.parse(expression)
    from pyworkflow.schedules.cron import CronSpec

    return CronSpec.parse(expression, timezone)


@attrs.frozen
class Cron:
    """A schedule declared on a workflow: ``@workflow(schedule=Cron("0 3 * * *", ...))``.

    ``@workflow(schedule="0 * * * *")`` is ``Cron("0 * * * *")``; the expression may also be
    an interval's text form (``"@every 15m"``, see :class:`Every`). Workers
    create the schedule in storage when they start (named after the
    workflow unless ``name`` is given) and keep it in step with the code.
    ``args``/``kwargs`` are the input of every run it starts.

    ```python
    from pyworkflow import Cron, scheduled_at, workflow

    @workflow(schedule=Cron("0 3 * * *", timezone="Europe/Paris", overlap="skip"))
    async def nightly_report() -> str:
        return f"report for {scheduled_at():%Y-%m-%d}"  # the tick, even when run late
    ```
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

        parse_timing(self.expression, self.timezone)
        if self.name is not None:
            check_schedule_name(self.name)
        check_policies(self.overlap, self.catchup, self.grace, self.catchup_window)
        if self.queue is not None:
            check_queue_name(self.queue)
        if not isinstance(self.args, tuple):
            raise TypeError(f"schedule args must be a tuple, got {type(self.args).__name__}")
        if not isinstance(self.kwargs, Mapping):
            raise TypeError(f"schedule kwargs must be a mapping, got {type(self.kwargs).__name__}")


class Every(Cron):
    """An interval schedule declared on a workflow: ``@workflow(schedule=Every("15m"))``.

    Ticks at ``anchor``, ``anchor + every``, ``anchor + 2 * every``... (none before the
    anchor); the default anchor is the Unix epoch, so ``Every("15m")`` fires at :00, :15, :30
    and :45 UTC. ``every`` is a duration (``"15m"``, ``"1h30m"``, seconds or a timedelta) of a
    whole number of seconds, at least one; ``anchor`` an aware datetime. The other options are
    :class:`Cron`'s. It is stored as the text ``@every 15m [from <anchor>]``, and the schedule it
    declares behaves like a cron one: one run per tick, the same overlap and catch-up policies.

    ```python
    from pyworkflow import Every, workflow

    @workflow(schedule=Every("15m", kwargs={"source": "crm"}))
    async def sync_contacts(source: str) -> None: ...
    ```
    """

    def __init__(
        self,
        every: Duration,
        *,
        anchor: datetime | None = None,
        args: tuple[Any, ...] = (),
        kwargs: Mapping[str, Any] | None = None,
        name: str | None = None,
        overlap: OverlapPolicy | str = DEFAULT_OVERLAP,
        catchup: CatchupPolicy | str = DEFAULT_CATCHUP,
        grace: Duration = DEFAULT_GRACE,
        catchup_window: Duration = DEFAULT_CATCHUP_WINDOW,
        queue: str | None = None,
    ) -> None:
        """Check ``every`` and ``anchor`` now; the other options when the workflow is declared."""
        from pyworkflow.schedules.interval import IntervalSpec

        spec = IntervalSpec.of(every, anchor)
        super().__init__(
            spec.expression,
            "UTC",
            args,
            {} if kwargs is None else kwargs,
            name,
            overlap,
            catchup,
            grace,
            catchup_window,
            queue,
        )

    @property
    def interval(self) -> IntervalSpec:
        """The interval and its anchor."""
        from pyworkflow.schedules.interval import IntervalSpec

        return IntervalSpec.parse(self.expression)
