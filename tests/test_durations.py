"""Durations and sleep values: bad ones raise ValueError at the call (issue 12, finding 4)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from pyworkflow import get_result, sleep, start, workflow
from pyworkflow.durations import MAX_DURATION, parse_duration

BAD: list[Any] = [
    float("nan"),
    float("inf"),
    float("-inf"),
    1e20,
    10**400,
    "99999999999d",
    "3000000d",
    "10000000w",
    "\u0661\u0662s",  # Arabic-Indic digits one, two
    "\uff11\uff12s",  # fullwidth digits one, two
    timedelta(days=36526),
    timedelta.max,
]


@pytest.mark.parametrize("value", BAD, ids=[f"bad{i}" for i in range(len(BAD))])
def test_bad_duration_is_a_value_error_naming_value_and_forms(value: Any) -> None:
    with pytest.raises(ValueError) as info:
        parse_duration(value, what="sleep duration")
    message = str(info.value)
    assert "sleep duration" in message
    assert "'30s'" in message and "1h30m" in message and "100 years" in message
    if not isinstance(value, int) or value < 10**100:
        assert repr(value)[:60] in message


@pytest.mark.parametrize("value", BAD[:10], ids=[f"bad{i}" for i in range(10)])
def test_sleep_outside_a_workflow_rejects_bad_values_at_the_call(value: Any) -> None:
    with pytest.raises(ValueError, match="use a number of seconds"):
        sleep(value)


def test_ascii_digits_and_the_bound_itself_are_accepted() -> None:
    assert parse_duration("12s") == timedelta(seconds=12)
    assert parse_duration("1h30m") == timedelta(minutes=90)
    assert parse_duration("36525d") == MAX_DURATION
    assert parse_duration(MAX_DURATION) == MAX_DURATION
    assert parse_duration(0) == timedelta(0)


def test_negative_durations_stay_refused() -> None:
    with pytest.raises(ValueError, match="negative"):
        parse_duration(-1, what="sleep duration")
    with pytest.raises(ValueError, match="negative"):
        parse_duration(timedelta(seconds=-5))


def test_due_time_more_than_100_years_out_is_refused() -> None:
    far = datetime.now(UTC) + MAX_DURATION + timedelta(days=2)
    with pytest.raises(ValueError, match="100 years") as info:
        sleep(far)
    assert far.isoformat() in str(info.value)
    with pytest.raises(ValueError, match="100 years"):
        sleep(datetime(9999, 12, 31, 23, 59, tzinfo=UTC))
    with pytest.raises(ValueError, match="100 years"):
        sleep(datetime.max)  # naive: taken as UTC


@pytest.mark.anyio
async def test_past_due_time_still_returns_at_once() -> None:
    await sleep(datetime(2000, 1, 1))


@workflow
async def sleep_bad_value(index: int) -> str:
    """Sleep on ``BAD[index]`` (index -1: a datetime too far out) and report the error."""
    value: Any = datetime(9999, 1, 1, tzinfo=UTC) if index < 0 else BAD[index]
    try:
        await sleep(value)
    except ValueError as exc:
        return f"ValueError: {exc}"
    return "slept"


@pytest.mark.parametrize("index", [0, 1, 3, 5, 6, 7, 8, -1])
def test_bad_sleep_in_a_workflow_raises_value_error_at_the_call(pw: str, index: int) -> None:
    """The workflow can catch it; the run does not fail with OverflowError or a date error."""
    del pw
    result = get_result(start(sleep_bad_value, index), timeout=20)
    assert result.startswith("ValueError: invalid sleep")
    assert "100 years" in result
    if index >= 0:
        assert repr(BAD[index]) in result


@workflow
async def short_nap() -> str:
    """A valid durable sleep."""
    await sleep("50ms")
    return "done"


def test_ordinary_durable_sleep_still_works(pw: str) -> None:
    del pw
    assert get_result(start(short_nap), timeout=20) == "done"
