"""Parse durations: ``"5s"``, ``"2h"``, ``"3d"``, ``"1h30m"``, numbers, timedeltas."""

from __future__ import annotations

import re
from datetime import timedelta

__all__ = ["Duration", "parse_duration"]

Duration = str | int | float | timedelta

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
_PART = re.compile(r"(\d+(?:\.\d+)?)\s*(ms|sec|min|s|m|h|d|w)")


def parse_duration(value: Duration, *, what: str = "duration") -> timedelta:
    """Turn ``value`` into a non-negative ``timedelta``.

    Strings are one or more ``<number><unit>`` parts with units ms, s, m, h,
    d, w (``"1h30m"``); numbers are seconds.
    """
    if isinstance(value, timedelta):
        seconds = value.total_seconds()
    elif isinstance(value, bool):
        raise ValueError(f"invalid {what} {value!r}: expected a duration")
    elif isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str):
        text = value.strip().lower()
        pos, seconds = 0, 0.0
        for match in _PART.finditer(text):
            if match.start() != pos and text[pos : match.start()].strip():
                break
            seconds += float(match.group(1)) * _UNITS[match.group(2)]
            pos = match.end()
        if not text or text[pos:].strip() or pos == 0:
            raise ValueError(
                f"invalid {what} {value!r}: use e.g. '30s', '5m', '2h', '3d' or '1h30m'"
            )
    else:
        raise ValueError(f"invalid {what} {value!r} of type {type(value).__name__}")
    if seconds < 0:
        raise ValueError(f"invalid {what} {value!r}: must not be negative")
    return timedelta(seconds=seconds)
