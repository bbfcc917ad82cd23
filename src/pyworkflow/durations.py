"""Parse durations: ``"5s"``, ``"2h"``, ``"3d"``, ``"1h30m"``, numbers, timedeltas."""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime, timedelta

__all__ = ["MAX_DURATION", "Duration", "check_due_time", "parse_duration"]

Duration = str | int | float | timedelta

#: The longest duration (and the furthest due time from now) accepted: 100 years.
MAX_DURATION = timedelta(days=36525)

_ACCEPTED = (
    "use a number of seconds, a timedelta, or text such as '500ms', '30s', '5m', "
    "'2h', '3d', '1w' or '1h30m' (units ms, s, m, h, d, w; ASCII digits), "
    "from 0 up to 100 years"
)

_UNITS = {
    "ms": 0.001,
    "s": 1.0,
    "sec": 1.0,
    "m": 60.0,
    "min": 60.0,
    "h": 3600.0,
    "d": 86400.0,
    "w": 604800.0,
}
# ``[0-9]``, not ``\d``: ``\d`` also matches other scripts' digits (Arabic-Indic, fullwidth).
_PART = re.compile(r"([0-9]+(?:\.[0-9]+)?)\s*(ms|sec|min|s|m|h|d|w)", re.ASCII)


def _show(value: object) -> str:
    """``repr(value)`` cut to a readable length (a huge int has thousands of digits)."""
    try:
        text = repr(value)
    except ValueError:  # int repr beyond sys.get_int_max_str_digits()
        return f"<{type(value).__name__} too large to print>"
    return text if len(text) <= 100 else f"{text[:97]}..."


def _invalid(what: str, value: object, reason: str) -> ValueError:
    return ValueError(f"invalid {what} {_show(value)}: {reason}; {_ACCEPTED}")


def parse_duration(value: Duration, *, what: str = "duration") -> timedelta:
    """Turn ``value`` into a ``timedelta`` between zero and :data:`MAX_DURATION`.

    Strings are one or more ``<number><unit>`` parts with units ms, s, m, h,
    d, w (``"1h30m"``) written with ASCII digits; numbers are seconds. NaN,
    infinities, negative values and anything longer than 100 years raise
    ``ValueError`` naming the value and the accepted forms.
    """
    if isinstance(value, timedelta):
        seconds = value.total_seconds()
    elif isinstance(value, bool):
        raise _invalid(what, value, "expected a duration, not a bool")
    elif isinstance(value, int | float):
        try:
            seconds = float(value)
        except OverflowError:  # an int too large for a float
            raise _invalid(what, value, "too long") from None
        if math.isnan(seconds):
            raise _invalid(what, value, "not a number")
    elif isinstance(value, str):
        text = value.strip().lower()
        pos, seconds = 0, 0.0
        for match in _PART.finditer(text):
            if match.start() != pos and text[pos : match.start()].strip():
                break
            seconds += float(match.group(1)) * _UNITS[match.group(2)]
            pos = match.end()
        if not text or text[pos:].strip() or pos == 0:
            raise _invalid(what, value, "not a duration")
    else:
        raise _invalid(what, value, f"unsupported type {type(value).__name__}")
    if seconds < 0:
        raise _invalid(what, value, "must not be negative")
    if not seconds <= MAX_DURATION.total_seconds():  # also catches inf
        raise _invalid(what, value, "longer than 100 years")
    return timedelta(seconds=seconds)


def check_due_time(until: datetime, now: datetime, *, what: str = "sleep until") -> datetime:
    """Return ``until`` as an aware datetime (naive is UTC) no further than 100 years from ``now``.

    A due time in the past is accepted (it fires at once); one further out
    than :data:`MAX_DURATION` raises ``ValueError`` naming it.
    """
    aware = until if until.tzinfo else until.replace(tzinfo=UTC)
    if aware - now > MAX_DURATION:
        raise ValueError(
            f"invalid {what} {until.isoformat()!r}: more than 100 years from now; "
            "pass a due time within 100 years, or a duration"
        )
    return aware
