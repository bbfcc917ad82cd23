"""Serializers: type-preserving JSON round-trips, errors, payload limits and pickle."""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import json
import re
import socket
import uuid
from collections.abc import Callable
from decimal import Decimal
from typing import Any, NamedTuple

import attrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pyworkflow.default_plugins.serializers import pyworkflow_register_serializers
from pyworkflow.errors import PayloadTooLargeError, SerializationError, StepFailedError
from pyworkflow.serialization import JsonSerializer, PickleSerializer, Serializer, dumps_limited

JSON = JsonSerializer()
PICKLE = PickleSerializer()


# ----- classes the payloads refer to (module level, so importable by path) -----


class Color(enum.Enum):
    RED = "red"
    BLUE = "blue"


class Level(enum.IntEnum):
    LOW = 1
    HIGH = 2


class Mode(enum.StrEnum):
    FAST = "fast"
    SAFE = "safe"


class Pair(NamedTuple):
    left: int
    right: str


@attrs.frozen
class Money:
    amount: Decimal
    currency: str


@attrs.define
class Order:
    id: uuid.UUID
    placed: dt.datetime
    items: tuple[str, ...]
    total: Money
    level: Level
    tags: frozenset[str]
    extra: Any = None
    _secret: int = 0


@dataclasses.dataclass
class Shipment:
    order: Order
    day: dt.date
    eta: dt.timedelta
    mode: Mode
    notes: list[str]
    payload: Any = None
    weight: float = 1.0
    label: str = dataclasses.field(init=False, default="computed")


@dataclasses.dataclass(frozen=True)
class Point:
    x: float
    y: float


class OrderRejected(Exception):
    def __init__(self, order_id: int, reason: str) -> None:
        super().__init__(order_id, reason)
        self.order_id = order_id
        self.reason = reason


class NeedsKeywords(Exception):
    def __init__(self, *, code: int) -> None:
        super().__init__(f"failed with code {code}")
        self.code = code


# ----- helpers and strategies -----


def assert_same(a: Any, b: Any) -> None:
    """``a == b`` with exactly the same type at every level of nesting."""
    assert type(a) is type(b), f"{type(a)!r} is not {type(b)!r} ({a!r} vs {b!r})"
    if isinstance(a, list | tuple):
        assert len(a) == len(b)
        for x, y in zip(a, b, strict=True):
            assert_same(x, y)
    elif isinstance(a, dict):
        assert a == b
        b_keys = {key: key for key in b}
        for key, value in a.items():
            assert_same(key, b_keys[key])
            assert_same(value, b[key])
    elif isinstance(a, set | frozenset):
        assert a == b
        b_items = {item: item for item in b}
        for item in a:
            assert_same(item, b_items[item])
    elif attrs.has(type(a)):
        for field in attrs.fields(type(a)):
            assert_same(getattr(a, field.name), getattr(b, field.name))
    elif dataclasses.is_dataclass(a):
        for f in dataclasses.fields(a):
            assert_same(getattr(a, f.name), getattr(b, f.name))
    else:
        assert a == b


def roundtrip(value: Any, serializer: Serializer = JSON) -> Any:
    text = serializer.dumps(value)
    assert isinstance(text, str)
    return serializer.loads(text)


aware_datetimes = st.datetimes(
    timezones=st.none() | st.just(dt.UTC) | st.timezones(), allow_imaginary=False
)
hashable_leaves = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=False),
    st.text(),
    st.binary(),
    aware_datetimes,
    st.dates(),
    st.times(timezones=st.none() | st.just(dt.UTC)),
    st.timedeltas(),
    st.decimals(allow_nan=False),
    st.uuids(),
    st.sampled_from(Color),
    st.sampled_from(Level),
    st.sampled_from(Mode),
)
hashables = st.recursive(
    hashable_leaves,
    lambda children: st.one_of(
        st.lists(children, max_size=3).map(tuple),
        st.frozensets(children, max_size=3),
        st.builds(Money, amount=st.decimals(allow_nan=False), currency=st.text(max_size=3)),
        st.builds(Point, x=st.floats(allow_nan=False), y=st.floats(allow_nan=False)),
        st.builds(Pair, st.integers(), st.text(max_size=3)),
    ),
    max_leaves=8,
)


def containers(children: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    orders = st.builds(
        Order,
        id=st.uuids(),
        placed=aware_datetimes,
        items=st.lists(st.text(max_size=5), max_size=3).map(tuple),
        total=st.builds(Money, amount=st.decimals(allow_nan=False), currency=st.text()),
        level=st.sampled_from(Level),
        tags=st.frozensets(st.text(max_size=3), max_size=3),
        extra=children,
        secret=st.integers(),
    )
    shipments = st.builds(
        Shipment,
        order=orders,
        day=st.dates(),
        eta=st.timedeltas(),
        mode=st.sampled_from(Mode),
        notes=st.lists(st.text(max_size=5), max_size=3),
        payload=children,
        weight=st.floats(allow_nan=False) | st.integers(),
    )
    return st.one_of(
        st.lists(children, max_size=4),
        st.lists(children, max_size=4).map(tuple),
        st.dictionaries(st.text(max_size=8), children, max_size=4),
        st.dictionaries(hashables, children, max_size=4),
        st.sets(hashables, max_size=4),
        st.frozensets(hashables, max_size=4),
        orders,
        shipments,
    )


values = st.recursive(hashables, containers, max_leaves=12)


# ----- JSON: round-trips -----


@settings(max_examples=300, deadline=None)
@given(values)
def test_json_roundtrip_preserves_value_and_types(value: Any) -> None:
    assert_same(value, roundtrip(value))


@settings(max_examples=100, deadline=None)
@given(values)
def test_json_output_is_compact_stable_json(value: Any) -> None:
    text = JSON.dumps(value)
    json.loads(text)  # strict JSON: no NaN/Infinity literals
    assert text == json.dumps(json.loads(text), separators=(",", ":"))
    assert JSON.dumps(JSON.loads(text)) == text


@pytest.mark.parametrize(
    "value",
    [
        None,
        True,
        0,
        -(2**80),
        1.5,
        float("inf"),
        float("-inf"),
        -0.0,
        "",
        "héllo ☃",
        b"\x00\xff",
        (),
        (1, (2, "x")),
        {1, 2},
        frozenset({"a"}),
        {"a": [1, {"b": None}]},
        {1: "one", (2, 3): "tuple key", None: 0, Color.RED: "enum key"},
        dt.datetime(2024, 5, 1, 12, 30, 45, 123456),
        dt.datetime(2024, 5, 1, 12, 30, tzinfo=dt.timezone(dt.timedelta(hours=-5))),
        dt.date(2024, 2, 29),
        dt.time(23, 59, 59, 999999),
        dt.timedelta(days=-3, microseconds=7),
        Decimal("1.10"),
        Decimal("-Infinity"),
        uuid.UUID(int=42),
        Color.BLUE,
        Level.HIGH,
        Mode.SAFE,
        Pair(1, "x"),
        Money(Decimal("9.99"), "EUR"),
        Point(1.0, 2.5),
    ],
    ids=repr,
)
def test_json_roundtrip_examples(value: Any) -> None:
    assert_same(value, roundtrip(value))


def test_nan_roundtrips_as_nan() -> None:
    loaded = roundtrip(float("nan"))
    assert type(loaded) is float and loaded != loaded


def test_zoneinfo_datetime_keeps_its_zone_and_fold() -> None:
    from zoneinfo import ZoneInfo

    zone = ZoneInfo("Europe/Paris")
    ambiguous = dt.datetime(2024, 10, 27, 2, 30, tzinfo=zone, fold=1)
    loaded = roundtrip(ambiguous)
    assert loaded.tzinfo is zone and loaded.fold == 1
    assert loaded.utcoffset() == ambiguous.utcoffset()


def test_nested_attrs_and_dataclass_fields_keep_their_types() -> None:
    order = Order(
        id=uuid.uuid4(),
        placed=dt.datetime(2024, 1, 2, 3, 4, 5, tzinfo=dt.UTC),
        items=("apple", "pear"),
        total=Money(Decimal("12.50"), "USD"),
        level=Level.LOW,
        tags=frozenset({"x"}),
        extra={"nested": Money(Decimal("1"), "GBP"), "when": dt.date(2024, 1, 1)},
        secret=7,
    )
    shipment = Shipment(order, dt.date(2024, 1, 3), dt.timedelta(hours=5), Mode.FAST, ["n"], (1,))
    shipment.weight = 3  # an int in a float field stays an int
    loaded = roundtrip(shipment)
    assert_same(shipment, loaded)
    assert loaded.label == "computed"
    assert loaded.order._secret == 7


def test_dict_holding_the_tag_key_roundtrips() -> None:
    for value in [
        {"__pw__": "tuple", "v": [1, 2]},
        {"__pw__": "exception", "t": "builtins:ValueError"},
        {"outer": {"__pw__": None}},
        [{"__pw__": "bytes", "v": "AA=="}],
    ]:
        assert_same(value, roundtrip(value))


def test_sets_serialize_deterministically() -> None:
    words = [f"w{i}" for i in range(50)]
    assert JSON.dumps(set(words)) == JSON.dumps(set(reversed(words)))
    assert " " not in JSON.dumps({"a": [1, 2], "b": (3,)})


# ----- JSON: exceptions -----


def _raised(exc: BaseException) -> BaseException:
    try:
        raise exc
    except BaseException as caught:
        return caught


def test_builtin_exception_roundtrips_with_traceback_text() -> None:
    loaded = roundtrip(_raised(ValueError("bad value", 3)))
    assert type(loaded) is ValueError
    assert loaded.args == ("bad value", 3)
    assert "ValueError: ('bad value', 3)" in loaded.__pyworkflow_traceback__
    assert "_raised" in loaded.__pyworkflow_traceback__


def test_custom_exception_roundtrips_with_attributes() -> None:
    loaded = roundtrip([_raised(OrderRejected(17, "out of stock"))])[0]
    assert type(loaded) is OrderRejected
    assert (loaded.order_id, loaded.reason) == (17, "out of stock")
    assert "OrderRejected" in loaded.__pyworkflow_traceback__
    again = roundtrip(loaded)  # the original traceback text survives a second trip
    assert again.__pyworkflow_traceback__ == loaded.__pyworkflow_traceback__


def test_exception_that_cannot_be_rebuilt_becomes_step_failed() -> None:
    loaded = roundtrip(_raised(NeedsKeywords(code=5)))
    assert type(loaded) is StepFailedError
    assert str(loaded) == "failed with code 5"
    assert loaded.error_type == f"{__name__}.NeedsKeywords"
    assert "NeedsKeywords: failed with code 5" in loaded.traceback
    assert loaded.__pyworkflow_traceback__ == loaded.traceback


def test_exception_with_unserializable_args_or_unknown_class_becomes_step_failed() -> None:
    with socket.socket() as sock:
        loaded = roundtrip(RuntimeError(sock))
    assert type(loaded) is StepFailedError
    assert loaded.error_type == "builtins.RuntimeError"

    text = JSON.dumps(ValueError("x")).replace("builtins:ValueError", "gone.module:Missing")
    missing = JSON.loads(text)
    assert type(missing) is StepFailedError
    assert (str(missing), missing.error_type) == ("x", "gone.module.Missing")


def test_step_failed_error_roundtrips() -> None:
    error = StepFailedError("boom", error_type="app.Boom", traceback="tb text")
    loaded = roundtrip(error)
    assert type(loaded) is StepFailedError
    assert (str(loaded), loaded.error_type, loaded.traceback) == ("boom", "app.Boom", "tb text")


# ----- JSON: errors -----


class Plain:
    pass


def _unserializable() -> list[tuple[Any, str]]:
    return [
        (lambda: 1, "'function'"),
        (Plain(), f"'{__name__}.Plain'"),
        ({"deep": [1, (2, object())]}, "'object'"),
        (bytearray(b"x"), "'bytearray'"),
    ]


@pytest.mark.parametrize(("value", "name"), _unserializable())
def test_unserializable_value_names_its_type(value: Any, name: str) -> None:
    with pytest.raises(SerializationError, match=re.escape(name)) as info:
        JSON.dumps(value)
    assert "'json' serializer" in str(info.value)
    assert "pickle" in str(info.value)


def test_unserializable_resources_name_their_type(tmp_path: Any) -> None:
    with (
        socket.socket() as sock,
        pytest.raises(SerializationError, match=re.escape("'socket.socket'")),
    ):
        JSON.dumps({"conn": sock})
    with open(tmp_path / "f.txt", "w") as fh, pytest.raises(SerializationError, match="TextIO"):
        JSON.dumps(fh)


def test_class_defined_in_a_function_is_rejected_at_dumps() -> None:
    @attrs.define
    class Local:
        x: int

    with pytest.raises(SerializationError, match="define it at module level"):
        JSON.dumps(Local(1))


def test_circular_value_is_a_serialization_error() -> None:
    loop: list[Any] = []
    loop.append(loop)
    with pytest.raises(SerializationError, match="circular"):
        JSON.dumps(loop)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "{",
        "not json",
        '{"__pw__":"no-such-kind","v":1}',
        '{"__pw__":"tuple"}',
        '{"__pw__":"bytes","v":"***"}',
        '{"__pw__":"datetime","v":"yesterday"}',
        '{"__pw__":"attrs","t":"no_such_module:Thing","v":{}}',
        f'{{"__pw__":"attrs","t":"{__name__}:Nope","v":{{}}}}',
        f'{{"__pw__":"attrs","t":"{__name__}:Money","v":{{}}}}',
        f'{{"__pw__":"enum","t":"{__name__}:Money","v":1}}',
        f'{{"__pw__":"enum","t":"{__name__}:Color","v":"green"}}',
    ],
)
def test_corrupt_text_is_a_serialization_error(text: str) -> None:
    with pytest.raises(SerializationError):
        JSON.loads(text)


def test_unknown_class_path_is_named() -> None:
    with pytest.raises(SerializationError, match="no_such_module:Thing"):
        JSON.loads('{"__pw__":"dataclass","t":"no_such_module:Thing","v":{}}')


# ----- payload limit -----


def test_dumps_limited_under_and_over_the_limit() -> None:
    assert dumps_limited(JSON, "x" * 10, limit=100, what="step input") == '"' + "x" * 10 + '"'
    with pytest.raises(PayloadTooLargeError) as info:
        dumps_limited(JSON, "x" * 200, limit=100, what="step result")
    message = str(info.value)
    assert "step result is 202 bytes" in message
    assert "100 bytes" in message and "max_payload_bytes" in message
    assert isinstance(info.value, SerializationError)


def test_dumps_limited_counts_utf8_bytes() -> None:
    text = dumps_limited(PICKLE, "é" * 10, limit=10_000, what="x")
    with pytest.raises(PayloadTooLargeError, match=rf"is {len(text.encode())} bytes"):
        dumps_limited(PICKLE, "é" * 10, limit=len(text) - 1, what="x")


# ----- pickle -----


def test_pickle_roundtrips_lambdas_and_closures() -> None:
    factor = 3
    func: Callable[[int], int] = roundtrip(lambda x: x * factor, PICKLE)
    assert func(2) == 6
    text = PICKLE.dumps({"f": Plain, "v": (1, {2})})
    assert text.isascii()
    assert PICKLE.loads(text)["v"] == (1, {2})


def test_pickle_errors_are_serialization_errors() -> None:
    with (
        socket.socket() as sock,
        pytest.raises(SerializationError, match=re.escape("'socket.socket'")),
    ):
        PICKLE.dumps(sock)
    with pytest.raises(SerializationError):
        PICKLE.loads("not base64 !!")
    with pytest.raises(SerializationError):
        PICKLE.loads("aGVsbG8=")  # valid base64, not a pickle


@settings(max_examples=50, deadline=None)
@given(values)
def test_pickle_roundtrip(value: Any) -> None:
    assert_same(value, roundtrip(value, PICKLE))


# ----- protocol and plugin registration -----


def test_builtins_register_through_the_plugin_hook() -> None:
    registered: dict[str, Serializer] = {}

    def register(name: str, serializer: Serializer) -> None:
        registered[name] = serializer

    pyworkflow_register_serializers(register)
    assert sorted(registered) == ["json", "pickle"]
    for name, serializer in registered.items():
        assert isinstance(serializer, Serializer)
        assert serializer.name == name
