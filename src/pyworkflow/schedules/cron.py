"""Cron expressions: validate one and compute its ticks in a time zone, daylight saving included.

A :class:`CronSpec` is an expression plus an IANA time zone. The expression is read on the
zone's local wall clock (``0 9 * * mon-fri`` is 09:00 in Paris when the zone is
``Europe/Paris``) and every tick is returned as an aware UTC datetime.

Accepted expressions:

- five fields, ``minute hour day-of-month month day-of-week``, with the usual forms: ``*``,
  values, ranges (``1-5``), steps (``*/15``, ``0-30/10``), lists (``1,15``) and the names of
  months and days (``jan``-``dec``, ``sun``-``sat``, any case). When both day-of-month and
  day-of-week are restricted a day matches if either does (classic cron);
- six fields whose FIRST field is the second (Quartz/Spring style):
  ``second minute hour day-of-month month day-of-week``; ``*/1 * * * * *`` is every second;
- the shortcuts ``@hourly``, ``@daily`` (= ``@midnight``), ``@weekly`` (Sunday 00:00),
  ``@monthly``, ``@yearly`` (= ``@annually``);
- croniter's deterministic extensions are passed through: ``L`` (last day of the month),
  ``day#n`` (n-th weekday of the month), ``?`` (same as ``*``).

Rejected with :class:`ValueError` (the message names the expression, and the field when one
field is at fault): any other number of fields, other shortcuts (``@reboot``), out-of-range
values (minute ``61``), unknown names, a zero step, a day that never occurs in the months given
(``0 0 31 2 *``), and croniter's hashed (``H``) and random (``R``) forms, which would not give
every worker the same ticks. An unknown time zone is a :class:`ValueError` naming it; a
non-string expression or zone is a :class:`TypeError`.

Daylight saving time. Ticks are computed on local naive wall-clock times, each converted to UTC
by zoneinfo's ``fold=0`` reading:

- A local time that does not exist (the clocks spring forward over it) fires once, at the
  instant the same wall-clock offset later: it is read with the offset in force before the
  change. In Europe/Paris on 2026-03-29 the clocks jump from 02:00 to 03:00, so ``30 2 * * *``
  fires at 03:30 CEST (01:30 UTC). If that instant is also another tick, it is one tick:
  hourly ``0 * * * *`` gives 02:00 -> 03:00 CEST, the same instant as the 03:00 tick, so that
  day has one tick at 01:00 UTC, then 02:00 UTC, with no hole and no duplicate in UTC.
- A local time that occurs twice (the clocks fall back over it) fires once, at its first
  occurrence (the offset in force before the change). In Europe/Paris on 2026-10-25, 02:30
  happens at 00:30 UTC (CEST) and again at 01:30 UTC (CET); ``30 2 * * *`` fires at 00:30 UTC
  only, and hourly ``0 * * * *`` fires at 00:00 UTC (02:00 CEST) then 02:00 UTC (03:00 CET),
  nothing at 01:00 UTC (02:00 CET, the second occurrence).
- Ticks are strictly increasing in UTC and never repeated, and :meth:`CronSpec.next_after`
  honours these rules wherever ``after`` falls, including inside the repeated hour.
"""

from __future__ import annotations

import heapq
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, tzinfo
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import attrs
from croniter import croniter as _croniter  # typed by types-croniter (a dev dependency)

from pyworkflow.schedules.interval import require_aware

__all__ = ["SHORTCUTS", "CronSpec"]

#: The accepted ``@`` shortcuts and the five-field expression each stands for.
SHORTCUTS: dict[str, str] = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}

_FIELDS_5 = ("minute", "hour", "day-of-month", "month", "day-of-week")
_FIELDS_6 = ("second", *_FIELDS_5)
_FORMS = (
    "use 5 fields (minute hour day-of-month month day-of-week), 6 with seconds first "
    "(second minute hour day-of-month month day-of-week), or one of " + ", ".join(SHORTCUTS)
)
# A lone ``H`` or ``R`` (not part of a name such as ``thu`` or ``mar``): croniter's hashed and
# random forms.
_HASH_OR_RANDOM = re.compile(r"(?<![a-z])[hr](?![a-z])", re.IGNORECASE)
# How far back `next_after` looks for a smaller UTC offset: a time skipped by a spring-forward
# change can fire after `after` although its wall clock is earlier than `after`'s. No zone
# has skipped more than 24 hours (Samoa, 2011).
_LOOKBACK_HOURS = 25
_ONE_MICROSECOND = timedelta(microseconds=1)


def _strip_expression(value: object) -> str:
    """The expression without surrounding whitespace; a :class:`TypeError` if it is not text."""
    if not isinstance(value, str):
        raise TypeError(f"a cron expression must be a str, not {type(value).__name__}: {value!r}")
    return value.strip()


def _check_timezone(value: object) -> str:
    """The zone name unchanged; a :class:`TypeError` if it is not text."""
    if not isinstance(value, str):
        raise TypeError(
            f"a time zone must be a str (an IANA name), not {type(value).__name__}: {value!r}"
        )
    return value


def _load_zone(name: str) -> ZoneInfo:
    """The zone called `name`, or a :class:`ValueError` naming it."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(
            f"unknown time zone {name!r}: use an IANA name such as 'UTC', 'Europe/Paris' "
            "or 'America/New_York'"
        ) from None


def _compile(expression: str) -> tuple[str, bool]:
    """The expression croniter evaluates and whether its first field is seconds; validates it."""
    if not expression:
        raise ValueError(f"the cron expression is empty: {_FORMS}")
    if expression.startswith("@"):
        cron = SHORTCUTS.get(expression.lower())
        if cron is None:
            raise ValueError(f"cron expression {expression!r}: unknown shortcut; {_FORMS}")
        return cron, False
    fields = expression.split()
    if len(fields) not in (5, 6):
        raise ValueError(f"cron expression {expression!r} has {len(fields)} field(s): {_FORMS}")
    seconds = len(fields) == 6
    names = _FIELDS_6 if seconds else _FIELDS_5
    for name, field in zip(names, fields, strict=True):
        if _HASH_OR_RANDOM.search(field):
            raise ValueError(
                f"cron expression {expression!r}: the {name} field {field!r} uses a hashed (H) "
                "or random (R) value, which is not supported (every worker must compute the "
                "same ticks)"
            )
    cron = " ".join(fields)
    try:
        _croniter.expand(cron, second_at_beginning=seconds, strict=True)
    except ValueError as exc:  # croniter's errors are ValueErrors
        for index, (name, field) in enumerate(zip(names, fields, strict=True)):
            # The field at fault, if one is: the expression with only that field kept.
            probe = ["*"] * len(fields)
            probe[index] = field
            try:
                _croniter.expand(" ".join(probe), second_at_beginning=seconds)
            except ValueError as field_exc:
                raise ValueError(
                    f"cron expression {expression!r}: the {name} field {field!r} is invalid "
                    f"({field_exc})"
                ) from None
        raise ValueError(f"cron expression {expression!r} is invalid ({exc})") from None
    return cron, seconds


@attrs.frozen
class CronSpec:
    """A cron expression read on the wall clock of an IANA time zone; see the module docstring.

    Construct with :meth:`parse` (or directly: both validate). Equality and hashing use the two
    public fields.
    """

    #: The expression as given, without surrounding whitespace.
    expression: str = attrs.field(converter=_strip_expression)
    #: The IANA time zone the expression is read in, such as ``"Europe/Paris"``.
    timezone: str = attrs.field(default="UTC", converter=_check_timezone)
    _cron: str = attrs.field(init=False, repr=False, eq=False)
    _seconds: bool = attrs.field(init=False, repr=False, eq=False)
    _zone: ZoneInfo = attrs.field(init=False, repr=False, eq=False)

    def __attrs_post_init__(self) -> None:
        """Validate the expression and the zone, keeping what evaluation needs."""
        cron, seconds = _compile(self.expression)
        zone = _load_zone(self.timezone)
        # The documented way to set fields of a frozen attrs class after validation.
        object.__setattr__(self, "_cron", cron)
        object.__setattr__(self, "_seconds", seconds)
        object.__setattr__(self, "_zone", zone)

    @classmethod
    def parse(cls, expression: str, timezone: str = "UTC") -> CronSpec:
        """Validate `expression` and `timezone` and return the spec.

        Raises :class:`ValueError` naming the expression (and the field at fault when there is
        one) or the unknown time zone, and :class:`TypeError` when either is not a str.
        """
        return cls(expression, timezone)

    @property
    def has_seconds(self) -> bool:
        """Whether the expression has a seconds field (6 fields, seconds first)."""
        return self._seconds

    def next_after(self, after: datetime) -> datetime:
        """The first tick strictly after `after` (an aware datetime), as an aware UTC datetime."""
        return next(self._iter_after(require_aware(after, "after")))

    def ticks(self, start: datetime, end: datetime, limit: int) -> list[datetime]:
        """The ticks ``t`` with ``start <= t <= end``, oldest first, at most the `limit` oldest.

        `start` and `end` are aware datetimes; the ticks are aware UTC datetimes. An `end` before
        `start`, or a `limit` of 0, gives an empty list.
        """
        start_utc = require_aware(start, "start")
        end_utc = require_aware(end, "end")
        if isinstance(limit, bool) or not isinstance(limit, int):
            raise TypeError(f"limit must be an int, not {type(limit).__name__}: {limit!r}")
        if limit < 0:
            raise ValueError(f"limit must be 0 or more, got {limit}")
        found: list[datetime] = []
        if limit == 0 or end_utc < start_utc:
            return found
        # Ticks fall on whole seconds, so "after start - 1 µs" is "at or after start".
        for tick in self._iter_after(start_utc - _ONE_MICROSECOND):
            if tick > end_utc:
                break
            found.append(tick)
            if len(found) == limit:
                break
        return found

    def _iter_after(self, after: datetime) -> Iterator[datetime]:
        """The ticks strictly after the aware UTC `after`, in increasing order, without end.

        The naive wall-clock times croniter gives map to UTC in increasing order except the
        skipped ones (a spring-forward gap): those land in the hour after the change, among
        the images of the times after it. They wait in a heap until a later ordinary time is
        reached, so the two sorted streams merge; equal instants are given once.
        """
        zone = self._zone
        cron = _croniter(
            self._cron,
            self._naive_start(after),
            ret_type=datetime,
            second_at_beginning=self._seconds,
        )
        skipped: list[datetime] = []
        last = after
        while True:
            naive: datetime = cron.get_next()
            instant = naive.replace(tzinfo=zone).astimezone(UTC)  # fold=0: the first reading
            if instant.astimezone(zone).replace(tzinfo=None) != naive:
                heapq.heappush(skipped, instant)  # a wall-clock time the zone skips
                continue
            while skipped and skipped[0] <= instant:
                earlier = heapq.heappop(skipped)
                if earlier > last:
                    yield earlier
                    last = earlier
            if instant > last:
                yield instant
                last = instant

    def _naive_start(self, after: datetime) -> datetime:
        """The naive wall-clock time croniter starts from so no tick after `after` is missed.

        That is `after`'s wall clock, or earlier when the zone's offset was smaller in the
        hours before (a time skipped by that change can fire after `after`).
        """
        zone: tzinfo = self._zone
        offset = min(
            _offset(after - timedelta(hours=hours), zone) for hours in range(_LOOKBACK_HOURS + 1)
        )
        return (after + offset).replace(tzinfo=None)


def _offset(instant: datetime, zone: tzinfo) -> timedelta:
    """The UTC offset of `zone` at the aware `instant`."""
    offset = instant.astimezone(zone).utcoffset()
    return offset if offset is not None else timedelta(0)  # never None for a ZoneInfo
