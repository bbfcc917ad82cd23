"""Interval schedules: a tick every fixed duration, at ``anchor + k * every`` (docs/schedules.md).

An :class:`IntervalSpec` is a duration (``every``, a whole number of seconds, at least one) and an
aware ``anchor`` instant. Its ticks are ``anchor``, ``anchor + every``, ``anchor + 2 * every``...:
none before the anchor. The default anchor is the Unix epoch (1970-01-01 00:00 UTC), so that
``every="15m"`` ticks at :00, :15, :30 and :45 of every hour, ``every="1h"`` on the hour and
``every="1d"`` at midnight UTC, whoever created the schedule and whenever: every worker computes
the same ticks. An interval is elapsed time, not wall-clock time: across a daylight saving
change ``every="1d"`` anchored at 09:00 Paris time fires at 10:00 (or 08:00) local time; use a
cron expression with a time zone for wall-clock times.

The text form, stored in the schedule row's ``cron`` field and shown by the CLI, the HTTP API
and the UI, is ``@every <duration>`` or ``@every <duration> from <ISO 8601 anchor>``, such as
``@every 15m`` or ``@every 1d from 2026-01-05T09:30:00+00:00``; it is accepted wherever a cron
expression is. This module never imports the cron parser.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import attrs

from pyworkflow.durations import Duration, parse_duration

__all__ = ["EPOCH", "MIN_EVERY", "IntervalSpec", "format_every", "is_interval", "require_aware"]

#: The default anchor: ticks fall on whole multiples of ``every`` since the Unix epoch, in UTC.
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
#: The shortest interval accepted (cron's finest tick is a second, too).
MIN_EVERY = timedelta(seconds=1)

_TEXT = re.compile(r"^@every(?:\s+(?P<every>.*?))?(?:\s+from\s+(?P<anchor>\S+))?\s*$", re.I | re.S)
_UNITS = (("w", 604800), ("d", 86400), ("h", 3600), ("m", 60), ("s", 1))


def is_interval(expression: object) -> bool:
    """Whether ``expression`` is the text form of an interval (it starts with ``@every``)."""
    if not isinstance(expression, str):
        return False
    text = expression.strip().lower()
    return text == "@every" or (text.startswith("@every") and text[6:7].isspace())


def format_every(every: timedelta) -> str:
    """Whole seconds as duration text: 900 s -> ``"15m"``, 5400 s -> ``"1h30m"``."""
    left = int(every.total_seconds())
    parts: list[str] = []
    for unit, size in _UNITS:
        count, left = divmod(left, size)
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts) or "0s"


def _check_every(every: object) -> timedelta:
    if isinstance(every, bool) or not isinstance(every, str | int | float | timedelta):
        raise TypeError(
            "every must be a duration: text such as '15m' or '1h30m', a number of seconds or a "
            f"timedelta, not {type(every).__name__}: {every!r}"
        )
    delta = parse_duration(every, what="interval (every)")
    if delta <= timedelta(0):
        raise ValueError(f"interval (every) {every!r} must be positive, such as '30s' or '15m'")
    if delta < MIN_EVERY:
        raise ValueError(
            f"interval (every) {every!r} is too small: the shortest interval is 1 second"
        )
    if delta % MIN_EVERY:
        raise ValueError(
            f"interval (every) {every!r} must be a whole number of seconds, such as '90s' or "
            "'1m30s'"
        )
    return delta


def _check_anchor(anchor: object) -> datetime:
    if anchor is None:
        return EPOCH
    if not isinstance(anchor, datetime):
        raise TypeError(
            f"anchor must be a datetime with a time zone, not {type(anchor).__name__}: {anchor!r}"
        )
    if anchor.tzinfo is None or anchor.utcoffset() is None:
        raise ValueError(
            f"anchor must be an aware datetime (with a tzinfo), got the naive "
            f"{anchor.isoformat()}: pass tzinfo=UTC or a ZoneInfo"
        )
    try:
        return anchor.astimezone(UTC)
    except OverflowError:  # 0001-01-01 with a positive offset, 9999-12-31 with a negative one
        raise ValueError(f"anchor {anchor.isoformat()} is out of range in UTC") from None


def require_aware(value: object, name: str) -> datetime:
    """``value`` as an aware UTC datetime; a :class:`TypeError` or :class:`ValueError` otherwise.

    Shared with :mod:`pyworkflow.schedules.cron` (which imports croniter; this module does not).
    """
    if not isinstance(value, datetime):
        raise TypeError(f"{name} must be a datetime, not {type(value).__name__}: {value!r}")
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(
            f"{name} must be an aware datetime (with a tzinfo), got the naive {value.isoformat()}"
        )
    return value.astimezone(UTC)


@attrs.frozen
class IntervalSpec:
    """Ticks every ``every`` from ``anchor`` on (see the module docstring).

    Build one with :meth:`of` (from user values) or :meth:`parse` (from the text form); both
    validate. ``every`` and ``anchor`` are always normalized (a timedelta of whole seconds, an
    aware UTC datetime).
    """

    #: The interval: a whole number of seconds, at least one.
    every: timedelta
    #: The first tick; the others follow every ``every``. Aware, in UTC.
    anchor: datetime = EPOCH

    def __attrs_post_init__(self) -> None:
        """Validate both fields (direct construction validates too)."""
        object.__setattr__(self, "every", _check_every(self.every))
        object.__setattr__(self, "anchor", _check_anchor(self.anchor))

    @classmethod
    def of(cls, every: Duration, anchor: datetime | None = None) -> IntervalSpec:
        """The spec of ``every`` (``"15m"``, seconds, a timedelta) from ``anchor`` (default: epoch).

        Raises :class:`TypeError` for a value of the wrong type (text is not read as a datetime,
        a bool is not a number) and :class:`ValueError` naming a negative, zero, sub-second or
        fractional-second interval or a naive anchor.
        """
        return cls(_check_every(every), _check_anchor(anchor))

    @classmethod
    def parse(cls, text: str) -> IntervalSpec:
        """The spec written ``@every <duration> [from <ISO 8601 anchor with an offset>]``."""
        if not isinstance(text, str):
            raise TypeError(f"an interval must be a str, not {type(text).__name__}: {text!r}")
        match = _TEXT.match(text.strip())
        if match is None or not match.group("every"):
            raise ValueError(
                f"interval {text.strip()!r}: write '@every <duration>', such as '@every 15m', "
                "optionally followed by 'from <ISO 8601 date-time with an offset>'"
            )
        anchor: datetime | None = None
        if match.group("anchor"):
            raw = match.group("anchor")
            try:
                anchor = datetime.fromisoformat(raw)
            except ValueError:
                raise ValueError(
                    f"interval {text.strip()!r}: the anchor {raw!r} is not an ISO 8601 date-time "
                    "such as 2026-01-05T09:30:00+00:00"
                ) from None
        return cls.of(match.group("every").strip(), anchor)

    @property
    def expression(self) -> str:
        """The text form: ``@every 15m``, with ``from <anchor>`` unless the anchor is the epoch."""
        text = f"@every {format_every(self.every)}"
        if self.anchor != EPOCH:
            text += f" from {self.anchor.isoformat()}"
        return text

    @property
    def timezone(self) -> str:
        """Always ``"UTC"``: an interval is elapsed time; the zone of the anchor is kept in it."""
        return "UTC"

    def next_after(self, after: datetime) -> datetime:
        """The first tick strictly after ``after`` (an aware datetime), as an aware UTC datetime."""
        after_utc = require_aware(after, "after")
        if after_utc < self.anchor:
            return self.anchor
        return self.anchor + ((after_utc - self.anchor) // self.every + 1) * self.every

    def ticks(self, start: datetime, end: datetime, limit: int) -> list[datetime]:
        """The ticks ``t`` with ``start <= t <= end``, oldest first, at most ``limit`` of them."""
        start_utc = require_aware(start, "start")
        end_utc = require_aware(end, "end")
        if isinstance(limit, bool) or not isinstance(limit, int):
            raise TypeError(f"limit must be an int, not {type(limit).__name__}: {limit!r}")
        if limit < 0:
            raise ValueError(f"limit must be 0 or more, got {limit}")
        found: list[datetime] = []
        if start_utc <= self.anchor:
            tick = self.anchor
        else:
            steps = -((self.anchor - start_utc) // self.every)  # ceil((start - anchor) / every)
            tick = self.anchor + steps * self.every
        while len(found) < limit and tick <= end_utc:
            found.append(tick)
            tick += self.every
        return found
