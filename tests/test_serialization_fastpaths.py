"""The JSON serializer's fast paths write and read exactly what the general path does."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pyworkflow.errors import PayloadTooLargeError, SerializationError
from pyworkflow.serialization import JsonSerializer, dumps_call_limited, dumps_limited

S = JsonSerializer()

scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.text(), st.floats(allow_nan=True))
values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3),
        st.tuples(inner, inner),
        st.dictionaries(st.text(max_size=5), inner, max_size=3),
    ),
    max_leaves=8,
)


def _general(value: Any) -> str:
    """The general path: walk, then the standard library's encoder."""
    return json.dumps(S._encode(value), separators=(",", ":"), allow_nan=False)


@given(values)
def test_dumps_writes_what_the_general_path_writes(value: Any) -> None:
    assert S.dumps(value) == _general(value)


@given(st.lists(values, max_size=4), st.dictionaries(st.text(max_size=6), values, max_size=3))
def test_a_call_input_is_written_as_the_dict_it_stands_for(
    args: list[Any], kwargs: dict[str, Any]
) -> None:
    call = tuple(args)
    expected = S.dumps({"args": call, "kwargs": kwargs})
    assert S.dumps_call(call, kwargs) == expected == _general({"args": call, "kwargs": kwargs})
    assert dumps_call_limited(S, call, kwargs, limit=10**9, what="x") == expected


@pytest.mark.parametrize(
    ("args", "kwargs"),
    [
        ((), {}),
        ((1, "é", None, True, 2**80), {"b": 2}),
        ((1.5,), {}),  # floats take the general path
        ((math.inf,), {}),
        ((), {"__pw__": 1}),  # the tag key as an argument name is escaped
        (((1, 2),), {"k": [1, {"x": (3,)}]}),
    ],
)
def test_call_inputs_round_trip(args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    text = S.dumps_call(args, kwargs)
    assert text == S.dumps({"args": args, "kwargs": kwargs})
    assert S.loads(text) == {"args": args, "kwargs": kwargs}


@given(values)
def test_loads_reads_what_json_loads_reads(value: Any) -> None:
    text = S.dumps(value)
    assert repr(S.loads(text)) == repr(S._decode(json.loads(text)))


@pytest.mark.parametrize("text", [" 5", "5 ", '\n{"a": [1, 2]}\n', '"x"', "[1, 2]"])
def test_loads_accepts_whitespace_like_json_loads(text: str) -> None:
    assert S.loads(text) == json.loads(text)


@pytest.mark.parametrize("text", ["", "5 6", "\ufeff5", "{", "nope"])
def test_loads_refuses_what_json_loads_refuses(text: str) -> None:
    with pytest.raises(SerializationError):
        S.loads(text)


def test_size_limit_counts_utf8_bytes() -> None:
    assert dumps_limited(S, "abc", limit=5, what="v") == '"abc"'
    with pytest.raises(PayloadTooLargeError, match="is 6 bytes"):
        dumps_limited(S, "abcd", limit=5, what="v")
    with pytest.raises(PayloadTooLargeError, match="input of step 'f' is"):
        dumps_call_limited(S, ("x" * 10,), {}, limit=10, what="input of step 'f'")
