"""Strict hook payload validation: every schema kind, its refusals, and the schema references."""

from __future__ import annotations

import dataclasses
import datetime as dt
import decimal
import enum
import json
import math
import subprocess
import sys
import textwrap
import typing
import uuid
from typing import Any, Literal, Optional, Union

import attrs
import pydantic
import pytest
import typing_extensions
from hypothesis import given, settings
from hypothesis import strategies as st

from pyworkflow.errors import PayloadValidationError, SerializationError
from pyworkflow.validation import load_schema, schema_ref, validate
from tests.validation_workflows import (
    Attendee,
    Color,
    Decision,
    Flags,
    Level,
    Meeting,
    Order,
    Point,
    Review,
    Slot,
    Tree,
)


def refused(schema: Any, payload: Any) -> list[str]:
    """The error lines for a payload that must be refused."""
    with pytest.raises(PayloadValidationError) as info:
        validate(schema, payload)
    assert str(info.value).startswith("payload does not fit ")
    assert info.value.errors and all(line in str(info.value) for line in info.value.errors)
    return info.value.errors


# ----- the examples -----


@pytest.mark.parametrize(
    ("payload", "line"),
    [
        ({"approved": "no", "by": "mallory"}, '$.approved: expected bool, got str "no"'),
        ({"approved": "false", "by": "m"}, '$.approved: expected bool, got str "false"'),
        ({"approved": 0.5, "by": "m"}, "$.approved: expected bool, got float 0.5"),
        ({"approved": 1, "by": "m"}, "$.approved: expected bool, got int 1"),
        ({"approved": None, "by": "m"}, "$.approved: expected bool, got null"),
        ({"approved": True, "by": ["a"]}, '$.by: expected str, got list ["a"]'),
        ({"approved": True, "by": {"x": 1}}, '$.by: expected str, got dict {"x": 1}'),
        ({"approved": True, "by": 7}, "$.by: expected str, got int 7"),
    ],
)
def test_wrong_json_types_are_refused_with_path_and_expected_type(
    payload: dict[str, Any], line: str
) -> None:
    assert refused(Decision, payload) == [line]


def test_extra_and_missing_fields_are_refused() -> None:
    [extra] = refused(Decision, {"approved": True, "by": "ana", "admin": True})
    assert extra == "$.admin: unexpected field (Decision has: approved, by)"
    [missing] = refused(Decision, {"approved": True})
    assert missing == "$.by: required field missing (expected str)"
    assert refused(Decision, None) == ["$: expected Decision (an object), got null"]
    assert refused(Decision, [True, "ana"]) == [
        '$: expected Decision (an object), got list [true, "ana"]'
    ]


def test_every_error_is_listed_and_the_message_names_the_schema() -> None:
    with pytest.raises(PayloadValidationError) as info:
        validate(Decision, {"approved": "no", "by": 1, "x": 0})
    assert info.value.errors == [
        "$.x: unexpected field (Decision has: approved, by)",
        '$.approved: expected bool, got str "no"',
        "$.by: expected str, got int 1",
    ]
    assert str(info.value).startswith("payload does not fit Decision: $.x: unexpected")
    many = refused(list[int], ["x"] * 50)
    assert len(many) == 21 and many[-1] == "... and 30 more errors"


def test_a_valid_payload_becomes_the_schema_instance() -> None:
    assert validate(Decision, {"approved": False, "by": "ana"}) == Decision(False, "ana")
    review = validate(
        Review, {"decision": {"approved": True, "by": "bo"}, "score": 4, "tags": ["a"]}
    )
    assert review == Review(Decision(True, "bo"), 4.0, ["a"], None)
    assert type(review.score) is float  # int -> float: JSON writes 4.0 as 4
    assert validate(Review, {"decision": {"approved": True, "by": "bo"}, "score": 1.5}).tags == []


def test_nested_paths() -> None:
    payload = {"decision": {"approved": "yes", "by": "bo"}, "score": "high", "tags": ["a", 2]}
    assert refused(Review, payload) == [
        '$.decision.approved: expected bool, got str "yes"',
        '$.score: expected float, got str "high"',
        "$.tags[1]: expected str, got int 2",
    ]
    tree = {"name": "root", "children": [{"name": "a"}, {"name": "b", "children": [{"name": 3}]}]}
    assert refused(Tree, tree) == ["$.children[1].children[0].name: expected str, got int 3"]
    ok = validate(Tree, {"name": "r", "children": [{"name": "a"}]})
    assert ok == Tree("r", [Tree("a")])
    assert refused(dict[str, int], {"a b": "1"}) == ['$["a b"]: expected int, got str "1"']


# ----- scalars: bool is not an int, and only JSON's gaps are converted -----


@pytest.mark.parametrize(
    ("schema", "payload"),
    [
        (int, True),
        (int, False),
        (int, 1.0),
        (int, "1"),
        (float, True),
        (float, "1.5"),
        (float, None),
        (float, 2**53 + 1),  # a float would round it
        (float, 10**400),
        (bool, 0),
        (bool, "true"),
        (str, 1),
        (str, None),
        (str, ["a"]),
        (str, {"x": 1}),
        (type(None), 0),
        (None, ""),
        (list[str], "abc"),
        (list[str], {"a": 1}),
        (list[int], [True]),
        (dict[str, int], [["a", 1]]),
        (dict[str, bool], {"a": 1}),
        (tuple[int, str], [1]),
        (tuple[int, str], [1, "a", 2]),
        (tuple[int, str], ["a", 1]),
        (tuple[int, ...], [1, 2.5]),
        (set[str], "ab"),
        (Optional[int], "1"),  # noqa: UP045  (the typing spelling is a supported schema too)
        (int | str, 1.5),
        (Literal["a", 1], True),
        (Literal["a", 1], "b"),
        (Literal[1, 2], 1.0),
        (Color, "RED"),
        (Color, "blue"),
        (Level, True),
        (Level, 1.0),
        (Level, "1"),
        (dt.datetime, 1700000000),
        (dt.datetime, "yesterday"),
        (dt.date, "2024-01-01T10:00:00"),
        (dt.time, "25:00"),
        (dt.timedelta, 3600),
        (dt.timedelta, "P1Y"),
        (dt.timedelta, "PT"),
        (uuid.UUID, "not-a-uuid"),
        (uuid.UUID, 123),
        (decimal.Decimal, "NaN"),
        (decimal.Decimal, "Infinity"),
        (decimal.Decimal, "1,5"),
        (decimal.Decimal, True),
        (dict[int, str], {"x": "a"}),
        (dict[int, str], {"01": "a"}),
    ],
)
def test_strict_refusals(schema: Any, payload: Any) -> None:
    refused(schema, payload)


@pytest.mark.parametrize(
    ("schema", "payload", "expected"),
    [
        (float, 3, 3.0),
        (float, -0.5, -0.5),
        (int, 10**30, 10**30),
        (Any, {"a": [1, None]}, {"a": [1, None]}),
        (object, "x", "x"),
        (None, None, None),
        (list, [1, "a"], [1, "a"]),
        (dict, {"a": 1}, {"a": 1}),
        (list[float], [1, 2.5], [1.0, 2.5]),
        (tuple[int, str], [1, "a"], (1, "a")),
        (tuple[int, ...], [], ()),
        (set[str], ["a", "b", "a"], {"a", "b"}),
        (frozenset[int], [1], frozenset({1})),
        (dict[int, bool], {"1": True, "-20": False}, {1: True, -20: False}),
        (dict[Color, int], {"red": 1}, {Color.RED: 1}),
        (typing.List[int], [1], [1]),  # noqa: UP006  (old spelling, same schema)
        (typing.Sequence[str], ["a"], ["a"]),
        (typing.Mapping[str, int], {"a": 1}, {"a": 1}),
        (typing.Annotated[int, "meta"], 1, 1),
        (Optional[int], None, None),  # noqa: UP045
        (int | None, 3, 3),
        (Union[int, str], "a", "a"),  # noqa: UP007
        (Literal["a", 1, True, None], True, True),
        (Literal["a", 1, True, None], 1, 1),
        (Color, "red", Color.RED),
        (Level, 2, Level.HIGH),
        (
            dt.datetime,
            "2024-05-01T10:30:00+02:00",
            dt.datetime.fromisoformat("2024-05-01T10:30:00+02:00"),
        ),
        (dt.datetime, "2024-05-01T10:30:00Z", dt.datetime(2024, 5, 1, 10, 30, tzinfo=dt.UTC)),
        (dt.date, "2024-05-01", dt.date(2024, 5, 1)),
        (dt.time, "10:30:05", dt.time(10, 30, 5)),
        (dt.timedelta, "P1DT2H3M4.5S", dt.timedelta(days=1, hours=2, minutes=3, seconds=4.5)),
        (dt.timedelta, "-PT30M", dt.timedelta(minutes=-30)),
        (dt.timedelta, "P2W", dt.timedelta(weeks=2)),
        (
            uuid.UUID,
            "12345678-1234-5678-1234-567812345678",
            uuid.UUID(int=0x12345678123456781234567812345678),
        ),
        (decimal.Decimal, "19.990", decimal.Decimal("19.990")),
        (decimal.Decimal, 5, decimal.Decimal(5)),
        (decimal.Decimal, 0.1, decimal.Decimal("0.1")),
    ],
)
def test_accepted_values_and_the_listed_conversions(
    schema: Any, payload: Any, expected: Any
) -> None:
    value = validate(schema, payload)
    assert value == expected
    assert type(value) is type(expected)


def test_a_union_prefers_the_alternative_the_value_fits_as_it_is() -> None:
    assert type(validate(float | int, 1)) is int
    assert type(validate(int | float, 1.0)) is float
    assert type(validate(dt.datetime | str, "2024-01-01")) is str
    assert validate(list[int] | list[float], [1, 2.5]) == [1.0, 2.5]
    # the one alternative that reads objects explains what is wrong with this one
    assert refused(Decision | None, {"approved": 1, "by": "a"}) == [
        "$.approved: expected bool, got int 1"
    ]
    assert refused(int | str, []) == ["$: expected int | str, got list []"]


# ----- records: dataclasses, TypedDicts, Python instances -----


def test_dataclass() -> None:
    assert validate(Point, {"x": 1, "y": 2}) == Point(1, 2)
    assert refused(Point, {"x": 1, "y": 2.0}) == ["$.y: expected int, got float 2.0"]
    assert refused(Point, {"x": 1}) == ["$.y: required field missing (expected int)"]


def test_typed_dict_total_and_not_required() -> None:
    assert validate(Order, {"id": "o-1", "qty": 2}) == {"id": "o-1", "qty": 2}
    assert validate(Order, {"id": "o-1", "qty": 2, "note": "n"})["note"] == "n"
    assert refused(Order, {"id": "o-1"}) == ["$.qty: required field missing (expected int)"]
    assert refused(Order, {"id": "o-1", "qty": 1, "x": 0})[0].startswith("$.x: unexpected field")
    assert refused(Order, {"id": "o-1", "qty": 1, "note": 5}) == ["$.note: expected str, got int 5"]
    assert validate(Flags, {}) == {}
    assert validate(Flags, {"b": False}) == {"b": False}
    assert refused(Flags, {"a": True}) == ["$.a: expected int, got bool true"]


class Extended(typing_extensions.TypedDict):
    a: int
    b: typing_extensions.NotRequired[str]


def test_typing_extensions_typed_dict() -> None:
    assert validate(Extended, {"a": 1}) == {"a": 1}
    assert refused(Extended, {"a": "1"}) == ['$.a: expected int, got str "1"']
    assert schema_ref(Extended) == "tests.test_validation:Extended"


def test_python_instances_are_checked_field_by_field() -> None:
    assert validate(Decision, Decision(True, "ana")) == Decision(True, "ana")
    unchecked = Decision("no", "ana")  # type: ignore[arg-type]  # attrs does not check types
    assert refused(Decision, unchecked) == ['$.approved: expected bool, got str "no"']
    now = dt.datetime.now(dt.UTC)
    assert validate(dt.datetime, now) is now
    assert validate(Color, Color.GREEN) is Color.GREEN
    refused(dt.date, now)  # a datetime is not a date here


def test_a_class_that_refuses_its_values_is_a_validation_error() -> None:
    assert refused(Guarded, {"n": -1}) == [
        "$: Guarded refused the values: ValueError: 'n' must be >= 0: -1"
    ]


@attrs.frozen
class Guarded:
    n: int = attrs.field(validator=attrs.validators.ge(0))


# ----- pydantic -----


def test_pydantic_models_are_validated_in_strict_mode() -> None:
    payload = {"title": "standup", "seats": 3, "length": 15, "attendees": [{"name": "ana"}]}
    meeting = validate(Meeting, payload)
    assert meeting == Meeting(
        title="standup", seats=3, length=15.0, attendees=[Attendee(name="ana")]
    )
    assert type(meeting.length) is float
    errors = refused(Meeting, {**payload, "seats": "3", "attendees": [{"name": "bo", "vip": "no"}]})
    assert errors == [
        '$.seats: Input should be a valid integer, got str "3"',
        '$.attendees[0].vip: Input should be a valid boolean, got str "no"',
    ]
    assert refused(Meeting, {**payload, "seats": True}) == [
        "$.seats: Input should be a valid integer, got bool true"
    ]
    assert refused(Meeting, {**payload, "x": 1}) == ["$.x: unexpected field"]
    assert refused(Meeting, {"title": "t"})[0] == "$.seats: required field missing"
    # pydantic's JSON mode reads ISO text into datetime and UUID even when strict
    slot = validate(Slot, {"at": "2024-01-01T09:00:00Z", "id": str(uuid.UUID(int=1))})
    assert slot.at == dt.datetime(2024, 1, 1, 9, tzinfo=dt.UTC) and slot.id == uuid.UUID(int=1)
    assert refused(list[Slot], [{"at": 5, "id": "x"}])[0].startswith("$[0].at: ")
    # ... and Unix time written as text (hypothesis found '0'): pydantic's rule, documented
    epoch = validate(Slot, {"at": "0", "id": str(uuid.UUID(int=1))})
    assert epoch.at == dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
    assert exactly(epoch, {"at": "0", "id": str(uuid.UUID(int=1))}, Slot)


def test_core_works_without_pydantic(tmp_path: Any) -> None:
    script = textwrap.dedent(
        """
        import sys
        sys.modules["pydantic"] = None  # import pydantic fails
        import attrs
        from pyworkflow.validation import validate
        from pyworkflow.serialization import JsonSerializer
        from pyworkflow.errors import PayloadValidationError

        @attrs.frozen
        class D:
            ok: bool

        assert validate(D, {"ok": False}) == D(False)
        try:
            validate(D, {"ok": "no"})
        except PayloadValidationError:
            pass
        else:
            raise AssertionError("coerced")
        assert JsonSerializer().loads(JsonSerializer().dumps({"a": (1,)})) == {"a": (1,)}
        print("ok")
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, cwd=tmp_path
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"


# ----- schema references -----


@pytest.mark.parametrize(
    ("schema", "ref"),
    [
        (Decision, "tests.validation_workflows:Decision"),  # what older versions stored
        (Meeting, "tests.validation_workflows:Meeting"),
        (Order, "tests.validation_workflows:Order"),
        (Color, "tests.validation_workflows:Color"),
        (int, "int"),
        (type(None), "None"),
        (Any, "Any"),
        (list[str], "list[str]"),
        (dict[str, Decision], "dict[str, tests.validation_workflows:Decision]"),
        (tuple[int, ...], "tuple[int, ...]"),
        (tuple[()], "tuple[()]"),
        (tuple[int, str], "tuple[int, str]"),
        (frozenset[str], "frozenset[str]"),
        (Optional[Point], "Union[tests.validation_workflows:Point, None]"),  # noqa: UP045
        (Point | None, "Union[tests.validation_workflows:Point, None]"),
        (Literal["a,b]", 1, True, None], 'Literal["a,b]", 1, true, null]'),
        (dt.datetime, "datetime:datetime"),
        (list[uuid.UUID], "list[uuid:UUID]"),
        (typing.Sequence[int], "list[int]"),
        (dict[int, list[Tree]], "dict[int, list[tests.validation_workflows:Tree]]"),
    ],
)
def test_schema_ref_round_trips(schema: Any, ref: str) -> None:
    assert schema_ref(schema) == ref
    loaded = load_schema(ref)
    assert schema_ref(loaded) == ref
    sample = {"Decision": {"approved": True, "by": "a"}}
    if schema is Decision:
        assert validate(loaded, sample["Decision"]) == Decision(True, "a")


def test_a_recorded_class_that_became_unsupported_cannot_be_loaded() -> None:
    with pytest.raises(SerializationError, match=r"cannot load hook schema .*field 'data'"):
        load_schema("tests.test_validation:HasBytes")


def test_old_style_class_refs_still_load() -> None:
    assert load_schema("builtins:int") is int
    assert load_schema("tests.validation_workflows:Decision") is Decision
    assert load_schema("builtins:list") is list


@pytest.mark.parametrize(
    "ref", ["", "list[", "list[str", "nosuch.module:X", "Literal[x]", "str]", "list[str] x", "%"]
)
def test_malformed_refs_raise_serialization_error(ref: str) -> None:
    with pytest.raises(SerializationError, match="cannot load hook schema"):
        load_schema(ref)


@dataclasses.dataclass
class HasBytes:
    data: bytes


def _local_class() -> type:
    @attrs.frozen
    class Local:
        x: int

    return Local


@pytest.mark.parametrize(
    ("schema", "match"),
    [
        (_local_class(), "define it at module level"),
        (list[_local_class()], "define it at module level"),  # type: ignore[misc]
        (lambda payload: payload, "unsupported hook schema"),
        (bytes, "unsupported hook schema 'bytes'"),
        (list[bytes], "unsupported hook schema"),
        (dict[list[str], int], "dict key"),
        (dict[Literal[1], int], "dict key"),
        (dict[Level, int], "dict key"),
        (Literal[1.5], "Literal values"),
        ("Decision", "unsupported hook schema"),
        (HasBytes, "field 'data' of HasBytes"),
    ],
)
def test_unsupported_or_unimportable_schemas_are_refused(schema: Any, match: str) -> None:
    with pytest.raises(TypeError, match=match):
        schema_ref(schema)


# ----- the property: accepted means exactly typed, never converted -----


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=6),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=6), children, max_size=4)
    ),
    max_leaves=12,
)


def _ordinary(cls: Any) -> bool:
    return isinstance(cls, type) and (
        attrs.has(cls) or dataclasses.is_dataclass(cls) or typing.is_typeddict(cls)
    )


def _fields(cls: Any) -> dict[str, tuple[Any, bool, Any]]:
    """name -> (declared type, required, default) of a record, independently of the validator."""
    if isinstance(cls, type) and issubclass(cls, pydantic.BaseModel):
        return {
            name: (f.annotation, f.is_required(), _pydantic_default(f))
            for name, f in cls.model_fields.items()
        }
    hints = typing.get_type_hints(cls, include_extras=True)
    out: dict[str, tuple[Any, bool, Any]] = {}
    if typing.is_typeddict(cls):
        for name, declared in hints.items():
            origin = typing.get_origin(declared)
            required = name in cls.__required_keys__
            if origin in (typing.NotRequired, typing.Required):
                required, declared = origin is typing.Required, typing.get_args(declared)[0]
            out[name] = (declared, required, None)
        return out
    if attrs.has(cls):
        for a in attrs.fields(cls):
            default = a.default
            if isinstance(default, attrs.Factory):
                default = default.factory()
            out[a.name] = (hints[a.name], a.default is attrs.NOTHING, default)
        return out
    for f in dataclasses.fields(cls):
        required = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        out[f.name] = (hints[f.name], required, None if required else f.default)
    return out


def _pydantic_default(field: Any) -> Any:
    return None if field.is_required() else field.get_default(call_default_factory=True)


def _nearest_float(number: int) -> float:
    """pydantic rounds an integer too precise for a float (pyworkflow refuses it)."""
    try:
        return float(number)
    except OverflowError:
        return math.copysign(math.inf, number)


#: Types a pydantic model reads from JSON text by pydantic's own strict JSON rules (ISO text and
#: also Unix time written as text, "0", for datetimes): docs/hooks.md lists them as pydantic's.
_PYDANTIC_TEXT = (dt.datetime, dt.date, dt.time, uuid.UUID)


def _pydantic_text(result: Any, payload: Any, declared: Any) -> bool:
    """A pydantic field read from JSON text: exactly what pydantic's strict JSON mode reads."""
    if type(payload) is not str or type(result) is not declared:
        return False
    adapter = pydantic.TypeAdapter(declared)
    return bool(adapter.validate_json(json.dumps(payload), strict=True) == result)


def exactly(result: Any, payload: Any, schema: Any) -> bool:
    """Whether ``result`` is ``payload`` read as ``schema`` with no conversion but the listed.

    Written apart from the validator: each type is checked with ``type(x) is T``.
    """
    origin, args = typing.get_origin(schema), typing.get_args(schema)
    if schema is Any or schema is object:
        return result is payload
    if schema is None or schema is type(None):
        return result is None and payload is None
    if schema in (bool, int, str):
        return type(payload) is schema and type(result) is schema and result == payload
    if schema is float:
        if type(payload) is int:  # the listed conversion: read as the nearest float
            return type(result) is float and _nearest_float(payload) == result
        return type(result) is float and type(payload) is float and result == payload
    if schema is dt.datetime:
        return (
            type(result) is dt.datetime
            and type(payload) is str
            and dt.datetime.fromisoformat(payload) == result
        )
    if schema is uuid.UUID:
        return type(result) is uuid.UUID and type(payload) is str and uuid.UUID(payload) == result
    if origin is Literal:
        return (
            type(result) is type(payload)
            and result == payload
            and any(type(v) is type(payload) and v == payload for v in args)
        )
    if isinstance(schema, type) and issubclass(schema, enum.Enum):
        return (
            type(result) is schema
            and type(result.value) is type(payload)
            and result.value == payload
        )
    if origin in (Union, type(int | None)):
        return any(exactly(result, payload, alt) for alt in args)
    if origin is list:
        return (
            type(result) is list
            and type(payload) is list
            and len(result) == len(payload)
            and all(exactly(r, p, args[0]) for r, p in zip(result, payload, strict=True))
        )
    if origin is tuple:
        if type(payload) is not list:
            return False
        items = [args[0]] * len(payload) if args[1:] == (...,) else list(args)
        return (
            type(result) is tuple
            and len(items) == len(result) == len(payload)
            and all(exactly(r, p, t) for r, p, t in zip(result, payload, items, strict=True))
        )
    if origin is set:
        return (
            type(result) is set
            and type(payload) is list
            and all(any(exactly(r, p, args[0]) for p in payload) for r in result)
            and all(p in result for p in payload)
        )
    if origin is dict:
        if type(result) is not dict or type(payload) is not dict or len(result) != len(payload):
            return False
        for key, value in payload.items():
            read: Any = key
            if args[0] is int:
                if not (key.isascii() and key.lstrip("-").isdigit()) or str(int(key)) != key:
                    return False
                read = int(key)
            if read not in result or not exactly(result[read], value, args[1]):
                return False
        return True
    if isinstance(schema, type) and (_ordinary(schema) or issubclass(schema, pydantic.BaseModel)):
        if type(payload) is not dict:
            return False
        fields = _fields(schema)
        if not set(payload) <= set(fields):
            return False
        if typing.is_typeddict(schema):
            if type(result) is not dict or set(result) != set(payload):
                return False
            get = result.__getitem__
        else:
            if type(result) is not schema:
                return False
            get = lambda name: getattr(result, name)  # noqa: E731
        for name, (declared, required, default) in fields.items():
            if name in payload:
                if declared in _PYDANTIC_TEXT and issubclass(schema, pydantic.BaseModel):
                    if not _pydantic_text(get(name), payload[name], declared):
                        return False
                elif not exactly(get(name), payload[name], declared):
                    return False
            elif required or (not typing.is_typeddict(schema) and get(name) != default):
                return False
        return True
    raise AssertionError(f"the test has no rule for {schema!r}")


PROPERTY_SCHEMAS: list[Any] = [
    bool, int, float, str, type(None), Any, uuid.UUID, dt.datetime,
    list[str], list[float], dict[str, int], dict[int, bool], tuple[int, str], tuple[float, ...],
    set[str], Optional[int], int | str, float | bool | None, Literal["a", 1, True],  # noqa: UP045
    Color, Level, list[Decision | None],
    Decision, Review, Point, Order, Flags, Tree, Meeting, Attendee, Slot,
]  # fmt: skip


def shaped(schema: Any) -> st.SearchStrategy[Any]:
    """Payloads near ``schema``: its shape with arbitrary (often wrong) values inside."""
    anything: st.SearchStrategy[Any] = json_values
    if isinstance(schema, type) and (_ordinary(schema) or issubclass(schema, pydantic.BaseModel)):
        return st.deferred(lambda: _shaped_record(schema))  # records may contain themselves
    origin, args = typing.get_origin(schema), typing.get_args(schema)
    if origin is list or origin is set or (origin is tuple and args[1:] == (...,)):
        return anything | st.lists(shaped(args[0]), max_size=3)
    if origin is tuple:
        return anything | st.tuples(*(shaped(a) for a in args)).map(list)
    if origin is dict:
        keys = st.integers().map(str) if args[0] is int else st.text(max_size=4)
        return anything | st.dictionaries(keys, shaped(args[1]), max_size=3)
    if origin in (Union, type(int | None)):
        return st.one_of(*(shaped(a) for a in args))
    if schema is bool:
        return anything | st.booleans()
    if schema is str:
        return anything | st.text(max_size=4)
    if schema in (int, float):
        return anything | st.integers(-5, 5) | st.sampled_from([0.5, 1.0, -2.0])
    if schema is dt.datetime:
        return anything | st.datetimes().map(dt.datetime.isoformat)
    if schema is uuid.UUID:
        return anything | st.uuids().map(str)
    if isinstance(schema, type) and issubclass(schema, enum.Enum):
        return anything | st.sampled_from([m.value for m in schema] + ["1", 1.0, "red "])
    if origin is Literal:
        return anything | st.sampled_from([*args, "1", 1.0, False])
    return anything


def _shaped_record(schema: Any) -> st.SearchStrategy[Any]:
    fields = {name: shaped(declared) for name, (declared, _, _) in _fields(schema).items()}
    return (
        json_values
        | st.fixed_dictionaries({}, optional=fields)
        | st.fixed_dictionaries(fields, optional={"extra": json_values})
    )


@pytest.mark.parametrize("schema", PROPERTY_SCHEMAS, ids=repr)
@settings(max_examples=120, deadline=None)
@given(data=st.data())
def test_property_accepted_values_are_exactly_typed_never_coerced(
    schema: Any, data: st.DataObject
) -> None:
    payload = data.draw(shaped(schema), label="payload")
    try:
        result = validate(schema, payload)
    except PayloadValidationError as exc:
        lines = [line for line in exc.errors if not line.startswith("... and ")]
        assert lines and all(line.startswith("$") for line in lines)
        return
    assert exactly(result, payload, schema), (schema, payload, result)


@settings(max_examples=200, deadline=None)
@given(
    approved=st.booleans(),
    by=st.text(),
    score=st.integers(-(2**53), 2**53) | st.floats(allow_nan=False, allow_infinity=False),
)
def test_property_well_typed_payloads_are_accepted(approved: bool, by: str, score: float) -> None:
    payload = {"decision": {"approved": approved, "by": by}, "score": score, "tags": [by]}
    review = validate(Review, payload)
    assert review == Review(Decision(approved, by), float(score), [by])
