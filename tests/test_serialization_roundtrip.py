"""Property tests: the json serializer hands back equal values of the same types."""

from __future__ import annotations

import dataclasses
import datetime as dt
import decimal
import enum
import socket
import uuid
from typing import Any

import attrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pyworkflow.errors import PayloadTooLargeError, SerializationError, StepFailedError
from pyworkflow.serialization import JsonSerializer, PickleSerializer, dumps_limited

json_s = JsonSerializer()


class Color(enum.Enum):
    RED = "red"
    BLUE = "blue"


class Level(enum.IntEnum):
    LOW = 1
    HIGH = 2


@attrs.frozen
class Money:
    amount: decimal.Decimal
    currency: str


@attrs.define
class Order:
    order_id: uuid.UUID
    placed: dt.datetime
    total: Money
    tags: tuple[str, ...]
    color: Color


@dataclasses.dataclass(frozen=True)
class Point:
    x: int
    y: float
    when: dt.date


class OrderRejected(Exception):
    pass


class NeedsKeyword(Exception):
    def __init__(self, *, code: int) -> None:
        super().__init__(f"code {code}")
        self.code = code


def assert_same(a: Any, b: Any) -> None:
    """Equal, and of the same type at every level."""
    assert type(a) is type(b), (a, b)
    if isinstance(a, dict):
        assert list(a) == list(b)
        for key in a:
            assert_same(a[key], b[key])
    elif isinstance(a, list | tuple):
        assert len(a) == len(b)
        for x, y in zip(a, b, strict=True):
            assert_same(x, y)
    else:
        assert a == b


aware = st.datetimes(timezones=st.just(dt.UTC))
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=False),
    st.text(),
    st.binary(),
    st.decimals(allow_nan=False, allow_infinity=False),
    st.uuids(),
    st.datetimes(),
    aware,
    st.dates(),
    st.times(),
    st.timedeltas(),
    st.sampled_from(Color),
    st.sampled_from(Level),
)
hashables = st.one_of(st.integers(), st.text(), st.uuids(), st.tuples(st.integers(), st.text()))
money = st.builds(Money, st.decimals(allow_nan=False, allow_infinity=False), st.text(max_size=3))
orders = st.builds(
    Order, st.uuids(), aware, money, st.lists(st.text(), max_size=3).map(tuple),
    st.sampled_from(Color),
)  # fmt: skip
points = st.builds(Point, st.integers(), st.floats(allow_nan=False), st.dates())
values = st.recursive(
    st.one_of(scalars, money, orders, points),
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.lists(inner, max_size=4).map(tuple),
        st.dictionaries(st.text(), inner, max_size=4),
        st.dictionaries(hashables, inner, max_size=3),
        st.sets(hashables, max_size=4),
        st.frozensets(hashables, max_size=4),
    ),
    max_leaves=12,
)


@settings(max_examples=300, deadline=None)
@given(values)
def test_json_round_trip_keeps_values_and_types(value: Any) -> None:
    assert_same(value, json_s.loads(json_s.dumps(value)))


@settings(max_examples=100, deadline=None)
@given(values)
def test_pickle_round_trip(value: Any) -> None:
    pickle_s = PickleSerializer()
    assert_same(value, pickle_s.loads(pickle_s.dumps(value)))


def test_dict_with_the_tag_key_round_trips() -> None:
    value = {"__pw__": "tuple", "v": [1, 2]}
    assert_same(value, json_s.loads(json_s.dumps(value)))


def test_exceptions_come_back_with_their_type_and_traceback() -> None:
    try:
        raise OrderRejected("order 7 rejected", 7)
    except OrderRejected as exc:
        back = json_s.loads(json_s.dumps(exc))
    assert type(back) is OrderRejected and back.args == ("order 7 rejected", 7)
    assert "raise OrderRejected" in back.__pyworkflow_traceback__
    builtin = json_s.loads(json_s.dumps(ValueError("bad", 3)))
    assert type(builtin) is ValueError and builtin.args == ("bad", 3)


def test_exception_that_cannot_be_rebuilt_becomes_step_failed_error() -> None:
    back = json_s.loads(json_s.dumps(NeedsKeyword(code=4)))
    assert isinstance(back, StepFailedError)
    assert "NeedsKeyword" in back.error_type and "code 4" in str(back)


def test_unserializable_value_names_its_type() -> None:
    with socket.socket() as sock, pytest.raises(SerializationError, match="socket"):
        json_s.dumps({"conn": sock})
    with pytest.raises(SerializationError, match="function"):
        json_s.dumps([lambda: 1])

    class Plain:
        pass

    with pytest.raises(SerializationError, match="Plain"):
        json_s.dumps(Plain())


@pytest.mark.parametrize("text", ["{not json", '{"__pw__": "nope", "v": 1}', '{"__pw__": "attrs"}'])
def test_corrupt_text_raises_serialization_error(text: str) -> None:
    with pytest.raises(SerializationError):
        json_s.loads(text)


def test_pickle_handles_lambdas_and_rejects_garbage() -> None:
    pickle_s = PickleSerializer()
    assert pickle_s.loads(pickle_s.dumps(lambda x: x + 1))(1) == 2
    with pytest.raises(SerializationError):
        pickle_s.loads("not base64 !!")


def test_dumps_limited_names_size_and_limit() -> None:
    with pytest.raises(PayloadTooLargeError) as info:
        dumps_limited(json_s, "x" * 100, limit=50, what="result of step 'big'")
    assert "102" in str(info.value) and "50" in str(info.value) and "big" in str(info.value)
    assert dumps_limited(json_s, "x", limit=50, what="ok") == '"x"'
