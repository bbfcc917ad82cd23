"""Hook payload schemas: strict validation of JSON values, and the text that records a schema.

A hook created with ``schema=...`` stores :func:`schema_ref` of it; a payload sent to the
hook is checked with :func:`validate` against :func:`load_schema` of that text before it
is recorded. Validation never coerces: a JSON value of the wrong type is refused with
its path and the expected type (``$.approved: expected bool, got str "no"``). The only
conversions are the ones JSON cannot express and the schema asks for: an ``int`` where a
``float`` is declared (if a float holds it exactly), ISO 8601 text where a ``datetime``,
``date``, ``time`` or ``timedelta`` is declared, text where a ``UUID`` is declared, and
text or a number where a ``Decimal`` is declared. Records refuse unknown keys and missing
required fields. pydantic models are validated by pydantic, in strict JSON mode.

Schema references are ``module:QualName`` for a class (what older versions stored) and
a type expression over those for everything else: ``list[str]``,
``dict[str, myapp.models:Item]``, ``Union[int, None]``, ``Literal["yes", "no"]``,
``tuple[int, ...]``, ``Any``.
"""

from __future__ import annotations

import collections.abc
import dataclasses
import datetime as dt
import decimal
import enum
import functools
import json
import math
import re
import sys
import threading
import types
import typing
import uuid
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, Literal, NotRequired, Required, Union

import attrs

from pyworkflow.errors import PayloadValidationError, SerializationError
from pyworkflow.serialization import load_class

if TYPE_CHECKING:
    from pydantic import BaseModel

__all__ = ["load_schema", "schema_ref", "validate"]

#: Errors listed in one :class:`PayloadValidationError`; the rest are counted.
MAX_ERRORS = 20


class _Invalid:
    """The result of a check that failed; the reasons are in the caller's error list."""


_INVALID: Any = _Invalid()
_NONE_TYPE = type(None)
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def validate(schema: Any, payload: Any) -> Any:
    """``payload`` (a JSON value) as an instance of ``schema``, or :class:`PayloadValidationError`.

    The error's ``errors`` list one line per problem, each starting with the path of the
    value at fault (``$`` is the payload, ``$.items[2].by`` a field inside it). Raises
    ``TypeError`` if ``schema`` is not a supported schema.
    """
    node = _compile(schema)
    errors: list[str] = []
    try:
        value = node.check(payload, "$", errors, True)
    except RecursionError:
        errors, value = ["$: nested too deeply"], _INVALID
    if value is _INVALID:
        shown = errors[:MAX_ERRORS] or ["$: invalid"]
        if len(errors) > MAX_ERRORS:
            shown.append(f"... and {len(errors) - MAX_ERRORS} more errors")
        raise PayloadValidationError(
            f"payload does not fit {node.label}: " + "; ".join(shown), shown
        )
    return value


def schema_ref(schema: Any) -> str:
    """The text that records ``schema``; :func:`load_schema` turns it back into the schema.

    Raises ``TypeError`` if ``schema`` is not supported, or names a class that cannot be
    imported back by its ``module:QualName`` (a class defined inside a function, say).
    """
    node = _compile(schema)
    for cls in _classes(node):
        path = f"{cls.__module__}:{cls.__qualname__}"
        try:
            ok = load_class(path) is cls
        except SerializationError:
            ok = False
        if not ok:
            raise TypeError(
                f"hook schema {node.label} cannot be recorded: class {cls.__qualname__!r} "
                f"cannot be imported back as {path!r}; define it at module level"
            )
    return node.ref


@functools.lru_cache(maxsize=512)
def load_schema(ref: str) -> Any:
    """The schema recorded as ``ref`` by :func:`schema_ref` (or ``module:QualName``).

    Raises :class:`SerializationError` if the text is malformed, a class in it cannot be
    imported, or it is no longer a supported schema.
    """
    try:
        parser = _RefParser(ref)
        schema = parser.parse()
        parser.end()
        _compile(schema)  # a class may have changed since the schema was recorded
    except (SerializationError, TypeError) as exc:
        raise SerializationError(f"cannot load hook schema {ref!r}: {exc}") from None
    return schema


# ----- compiled schemas -----


class _Node:
    """One compiled schema: checks values, and knows its label and its reference text."""

    label: str = ""
    ref: str = ""
    #: The class this node stands for, when ``ref`` names it (checked by ``schema_ref``).
    cls: type | None = None
    #: Containers (``dict``, ``list``) this node reads: picks the alternative to blame in a union.
    takes: tuple[type, ...] = ()

    def check(self, value: Any, path: str, errors: list[str], coerce: bool) -> Any:
        """``value`` validated, or ``_INVALID`` after appending the reasons to ``errors``.

        ``coerce`` allows the conversions JSON needs (int to float, ISO text to datetime);
        a union first tries its alternatives without them.
        """
        raise NotImplementedError

    def children(self) -> Iterator[_Node]:
        return iter(())

    def fail(self, value: Any, path: str, errors: list[str], expected: str | None = None) -> Any:
        errors.append(f"{path}: expected {expected or self.label}, got {_got(value)}")
        return _INVALID


class _AnyNode(_Node):
    label = ref = "Any"

    def check(self, value: Any, path: str, errors: list[str], coerce: bool) -> Any:
        return value


class _Exact(_Node):
    """``bool``, ``int``, ``str`` and ``None``: the value's type must be exactly this one."""

    def __init__(self, cls: type, name: str) -> None:
        self.exact = cls
        self.label = self.ref = name

    def check(self, value: Any, path: str, errors: list[str], coerce: bool) -> Any:
        return value if type(value) is self.exact else self.fail(value, path, errors)


class _Float(_Node):
    label = ref = "float"

    def check(self, value: Any, path: str, errors: list[str], coerce: bool) -> Any:
        if type(value) is float:
            return value
        if coerce and type(value) is int:
            try:
                number = float(value)
            except OverflowError:
                number = math.inf
            if number == value:
                return number
            errors.append(
                f"{path}: expected float, got int {value} (a float cannot hold it exactly)"
            )
            return _INVALID
        return self.fail(value, path, errors)


class _IntKey(_Node):
    """An ``int`` dictionary key: JSON object keys are text, so decimal digits are read."""

    label = ref = "int"
    _DIGITS = re.compile(r"-?(?:0|[1-9][0-9]*)")

    def check(self, value: Any, path: str, errors: list[str], coerce: bool) -> Any:
        if type(value) is int:
            return value
        if type(value) is str and self._DIGITS.fullmatch(value):
            return int(value)
        return self.fail(value, path, errors, "int (decimal digits)")


_DURATION = re.compile(
    r"(?P<sign>[-+]?)P(?!$)(?:(?P<weeks>\d+(?:\.\d+)?)W)?(?:(?P<days>\d+(?:\.\d+)?)D)?"
    r"(?:T(?=\d)(?:(?P<hours>\d+(?:\.\d+)?)H)?(?:(?P<minutes>\d+(?:\.\d+)?)M)?"
    r"(?:(?P<seconds>\d+(?:\.\d+)?)S)?)?"
)


def _parse_duration(text: str) -> dt.timedelta:
    """ISO 8601 duration without years or months: ``P1DT2H``, ``PT0.5S``, ``-P1W``."""
    match = _DURATION.fullmatch(text)
    if match is None:
        raise ValueError(text)
    parts = {k: float(v) for k, v in match.groupdict().items() if k != "sign" and v is not None}
    delta = dt.timedelta(**parts)
    return -delta if match["sign"] == "-" else delta


def _parse_decimal(value: Any) -> decimal.Decimal:
    if type(value) is int:
        return decimal.Decimal(value)
    number = decimal.Decimal(repr(value) if type(value) is float else value)
    if not number.is_finite():
        raise ValueError(value)
    return number


#: Types JSON has no form for: (label, the JSON types read, how the text or number is read).
_PARSED: dict[type, tuple[str, tuple[type, ...], Callable[[Any], Any]]] = {
    dt.datetime: ("datetime (ISO 8601 text)", (str,), dt.datetime.fromisoformat),
    dt.date: ("date (ISO 8601 text)", (str,), dt.date.fromisoformat),
    dt.time: ("time (ISO 8601 text)", (str,), dt.time.fromisoformat),
    dt.timedelta: ("timedelta (ISO 8601 duration text)", (str,), _parse_duration),
    uuid.UUID: ("UUID (text)", (str,), uuid.UUID),
    decimal.Decimal: ("Decimal (text or number)", (str, int, float), _parse_decimal),
}


class _Parsed(_Node):
    """``datetime``, ``date``, ``time``, ``timedelta``, ``UUID``, ``Decimal``: from JSON text."""

    def __init__(self, cls: type) -> None:
        self.exact = self.cls = cls
        self.label = cls.__name__
        self.ref = f"{cls.__module__}:{cls.__qualname__}"
        self.expected, self.sources, self.parse = _PARSED[cls]

    def check(self, value: Any, path: str, errors: list[str], coerce: bool) -> Any:
        if type(value) is self.exact:
            return value
        if coerce and type(value) in self.sources:
            try:
                return self.parse(value)
            except (ValueError, ArithmeticError):
                pass
        return self.fail(value, path, errors, self.expected)


class _Literal(_Node):
    def __init__(self, values: tuple[Any, ...]) -> None:
        for item in values:
            if type(item) not in (str, int, bool, _NONE_TYPE):
                raise TypeError(
                    f"Literal values in a hook schema must be str, int, bool or None, not {item!r}"
                )
        self.values = values
        self.label = self.ref = "Literal[" + ", ".join(json.dumps(v) for v in values) + "]"

    def check(self, value: Any, path: str, errors: list[str], coerce: bool) -> Any:
        for item in self.values:
            if type(value) is type(item) and value == item:
                return value
        return self.fail(value, path, errors)


class _Enum(_Node):
    """An enum member, sent as its value (of exactly the value's type)."""

    def __init__(self, cls: type[enum.Enum]) -> None:
        self.cls = self.enum = cls
        self.label = cls.__qualname__
        self.ref = _class_ref(cls)
        values = ", ".join(_preview(member.value) for member in cls)
        self.expected = f"{cls.__qualname__} (one of {values})"

    def check(self, value: Any, path: str, errors: list[str], coerce: bool) -> Any:
        if type(value) is self.enum:
            return value
        for member in self.enum:
            if type(member.value) is type(value) and member.value == value:
                return member
        return self.fail(value, path, errors, self.expected)


class _List(_Node):
    takes = (list,)

    def __init__(self, item: _Node) -> None:
        self.item = item
        self.label = f"list[{item.label}]"
        self.ref = f"list[{item.ref}]"

    def children(self) -> Iterator[_Node]:
        yield self.item

    def check(self, value: Any, path: str, errors: list[str], coerce: bool) -> Any:
        if type(value) is not list:
            return self.fail(value, path, errors)
        return _items(self.item, value, path, errors, coerce)


class _Set(_Node):
    takes = (list,)

    def __init__(self, item: _Node, kind: type[set[Any]] | type[frozenset[Any]]) -> None:
        self.item, self.kind = item, kind
        self.label = f"{kind.__name__}[{item.label}]"
        self.ref = f"{kind.__name__}[{item.ref}]"

    def children(self) -> Iterator[_Node]:
        yield self.item

    def check(self, value: Any, path: str, errors: list[str], coerce: bool) -> Any:
        if type(value) not in (list, set, frozenset):
            return self.fail(value, path, errors)
        items = _items(self.item, list(value), path, errors, coerce)
        if items is _INVALID:
            return _INVALID
        try:
            return self.kind(items)
        except TypeError:
            errors.append(f"{path}: the items of {self.label} must be hashable")
            return _INVALID


class _Tuple(_Node):
    takes = (list,)

    def __init__(self, items: list[_Node], variadic: bool) -> None:
        self.items, self.variadic = items, variadic
        inner = [n.label for n in items] + (["..."] if variadic else [])
        refs = [n.ref for n in items] + (["..."] if variadic else [])
        self.label = f"tuple[{', '.join(inner) or '()'}]"
        self.ref = f"tuple[{', '.join(refs) or '()'}]"

    def children(self) -> Iterator[_Node]:
        yield from self.items

    def check(self, value: Any, path: str, errors: list[str], coerce: bool) -> Any:
        if type(value) not in (list, tuple):
            return self.fail(value, path, errors)
        if self.variadic:
            items = _items(self.items[0], list(value), path, errors, coerce)
            return items if items is _INVALID else tuple(items)
        if len(value) != len(self.items):
            expected = f"{self.label} ({len(self.items)} items)"
            errors.append(f"{path}: expected {expected}, got {len(value)} items")
            return _INVALID
        out, ok = [], True
        for index, (node, item) in enumerate(zip(self.items, value, strict=True)):
            checked = node.check(item, f"{path}[{index}]", errors, coerce)
            ok = ok and checked is not _INVALID
            out.append(checked)
        return tuple(out) if ok else _INVALID


def _items(node: _Node, value: list[Any], path: str, errors: list[str], coerce: bool) -> Any:
    out, ok = [], True
    for index, item in enumerate(value):
        checked = node.check(item, f"{path}[{index}]", errors, coerce)
        ok = ok and checked is not _INVALID
        out.append(checked)
    return out if ok else _INVALID


class _Dict(_Node):
    takes = (dict,)

    def __init__(self, key: _Node, value: _Node) -> None:
        self.key, self.value = key, value
        self.label = f"dict[{key.label}, {value.label}]"
        self.ref = f"dict[{key.ref}, {value.ref}]"

    def children(self) -> Iterator[_Node]:
        yield from (self.key, self.value)

    def check(self, value: Any, path: str, errors: list[str], coerce: bool) -> Any:
        if type(value) is not dict:
            return self.fail(value, path, errors)
        out, ok = {}, True
        for key, item in value.items():
            where = _join(path, key)
            checked_key = self.key.check(key, f"{where} (key)", errors, True)
            checked = self.value.check(item, where, errors, coerce)
            if checked_key is _INVALID or checked is _INVALID:
                ok = False
            elif ok:
                try:
                    out[checked_key] = checked
                except TypeError:
                    errors.append(f"{where} (key): expected a hashable {self.key.label}")
                    ok = False
        return out if ok else _INVALID


class _Union(_Node):
    """The first alternative the value fits as it is; then the first with conversions."""

    def __init__(self, alternatives: list[_Node]) -> None:
        self.alternatives = alternatives
        self.label = " | ".join(n.label for n in alternatives)
        self.ref = "Union[" + ", ".join(n.ref for n in alternatives) + "]"

    def children(self) -> Iterator[_Node]:
        yield from self.alternatives

    def check(self, value: Any, path: str, errors: list[str], coerce: bool) -> Any:
        for attempt in (False, True) if coerce else (False,):
            for node in self.alternatives:
                checked = node.check(value, path, [], attempt)
                if checked is not _INVALID:
                    return checked
        # one alternative reads this kind of container: its errors say more than ours
        readers = [node for node in self.alternatives if type(value) in node.takes]
        if len(readers) == 1:
            return readers[0].check(value, path, errors, coerce)
        return self.fail(value, path, errors)


@attrs.frozen
class _Field:
    key: str
    node: _Node
    required: bool
    kwarg: str


class _Record(_Node):
    """attrs classes and dataclasses: a JSON object with exactly their ``init`` fields."""

    takes = (dict,)

    def __init__(self, cls: type) -> None:
        self.cls = self.record = cls
        self.label = cls.__qualname__
        self.ref = _class_ref(cls)
        self.fields: list[_Field] = []
        self.keys: frozenset[str] = frozenset()

    def compile_fields(self) -> None:
        hints = _type_hints(self.record)
        fields: list[_Field] = []
        if attrs.has(self.record):
            for a in attrs.fields(self.record):
                if not a.init:
                    continue
                declared = hints.get(a.name, Any if a.type is None else a.type)
                node = _field_node(self.record, a.name, declared)
                required = a.default is attrs.NOTHING
                fields.append(_Field(a.name, node, required, a.alias or a.name))
        else:
            for f in dataclasses.fields(self.record):
                if not f.init:
                    continue
                node = _field_node(self.record, f.name, hints.get(f.name, Any))
                required = (
                    f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
                )
                fields.append(_Field(f.name, node, required, f.name))
        self.fields = fields
        self.keys = frozenset(f.key for f in fields)

    def children(self) -> Iterator[_Node]:
        yield from (f.node for f in self.fields)

    def check(self, value: Any, path: str, errors: list[str], coerce: bool) -> Any:
        if type(value) is self.record:  # an instance from Python: its fields are checked too
            value = {f.key: getattr(value, f.key) for f in self.fields}
        if type(value) is not dict:
            return self.fail(value, path, errors, f"{self.label} (an object)")
        kwargs = _object_fields(self, self.fields, value, path, errors, coerce)
        if kwargs is _INVALID:
            return _INVALID
        try:
            return self.record(**{f.kwarg: kwargs[f.key] for f in self.fields if f.key in kwargs})
        except Exception as exc:
            errors.append(f"{path}: {self.label} refused the values: {type(exc).__name__}: {exc}")
            return _INVALID


class _TypedDict(_Node):
    """A TypedDict: a JSON object with its keys (``NotRequired`` or ``total=False`` optional)."""

    takes = (dict,)

    def __init__(self, cls: type) -> None:
        self.cls = self.typed = cls
        self.label = cls.__qualname__
        self.ref = _class_ref(cls)
        self.fields: list[_Field] = []
        self.keys: frozenset[str] = frozenset()

    def compile_fields(self) -> None:
        hints = _type_hints(self.typed, include_extras=True)
        required_keys: frozenset[str] = getattr(self.typed, "__required_keys__", frozenset())
        fields = []
        for key, declared in hints.items():
            # NotRequired/Required are read here: with string annotations Python 3.11
            # does not see them when it computes __required_keys__
            required = key in required_keys
            while typing.get_origin(declared) in (Required, NotRequired, typing.Annotated):
                if typing.get_origin(declared) is not typing.Annotated:
                    required = typing.get_origin(declared) is Required
                declared = typing.get_args(declared)[0]
            fields.append(_Field(key, _field_node(self.typed, key, declared), required, key))
        self.fields = fields
        self.keys = frozenset(f.key for f in fields)

    def children(self) -> Iterator[_Node]:
        yield from (f.node for f in self.fields)

    def check(self, value: Any, path: str, errors: list[str], coerce: bool) -> Any:
        if type(value) is not dict:
            return self.fail(value, path, errors, f"{self.label} (an object)")
        return _object_fields(self, self.fields, value, path, errors, coerce)


def _object_fields(
    node: _Record | _TypedDict,
    fields: list[_Field],
    value: dict[Any, Any],
    path: str,
    errors: list[str],
    coerce: bool,
) -> Any:
    """The checked fields of a JSON object, by key; unknown keys and missing ones are errors."""
    ok = True
    for key in value:
        if key not in node.keys:
            known = ", ".join(f.key for f in fields) or "none"
            errors.append(f"{_join(path, key)}: unexpected field ({node.label} has: {known})")
            ok = False
    out: dict[str, Any] = {}
    for f in fields:
        where = _join(path, f.key)
        if f.key in value:
            checked = f.node.check(value[f.key], where, errors, coerce)
            if checked is _INVALID:
                ok = False
            else:
                out[f.key] = checked
        elif f.required:
            errors.append(f"{where}: required field missing (expected {f.node.label})")
            ok = False
    return out if ok else _INVALID


class _Pydantic(_Node):
    """A pydantic model, validated by pydantic itself in strict JSON mode, extra keys refused."""

    takes = (dict,)

    def __init__(self, cls: type[BaseModel]) -> None:
        self.cls = self.model = cls
        self.label = cls.__qualname__
        self.ref = _class_ref(cls)

    def check(self, value: Any, path: str, errors: list[str], coerce: bool) -> Any:
        import pydantic  # present: the schema is a pydantic model

        try:
            try:
                text = json.dumps(value)
            except (TypeError, ValueError):  # Python values JSON has no form for
                return self.model.model_validate(value, strict=True, extra="forbid")
            return self.model.model_validate_json(text, strict=True, extra="forbid")
        except pydantic.ValidationError as exc:
            for error in exc.errors(include_url=False):
                where = path
                for part in error["loc"]:
                    where = f"{where}[{part}]" if type(part) is int else _join(where, part)
                if error["type"] == "missing":
                    errors.append(f"{where}: required field missing")
                elif error["type"] == "extra_forbidden":
                    errors.append(f"{where}: unexpected field")
                else:
                    errors.append(f"{where}: {error['msg']}, got {_got(error.get('input'))}")
            return _INVALID


# ----- compiling -----

_ANY = _AnyNode()
_EXACT: dict[Any, _Node] = {
    bool: _Exact(bool, "bool"),
    int: _Exact(int, "int"),
    str: _Exact(str, "str"),
    _NONE_TYPE: _Exact(_NONE_TYPE, "None"),
    float: _Float(),
}
_LISTS = {list, collections.abc.Sequence, collections.abc.MutableSequence}
_SETS: dict[Any, type[set[Any]] | type[frozenset[Any]]] = {
    set: set,
    frozenset: frozenset,
    collections.abc.Set: frozenset,
    collections.abc.MutableSet: set,
}
_DICTS = {dict, collections.abc.Mapping, collections.abc.MutableMapping}
_KEY_NODES = (_Parsed, _AnyNode)

_COMPILED: dict[Any, _Node] = {}
_LOCK = threading.RLock()

_SUPPORTED = (
    "use an attrs class, dataclass, TypedDict, pydantic model, Enum, Literal, bool, int, "
    "float, str, None, datetime, date, time, timedelta, UUID, Decimal, Any, or list, tuple, "
    "set, frozenset, dict and unions of these"
)


def _compile(schema: Any) -> _Node:
    key = _cache_key(schema)
    with _LOCK:
        try:
            return _COMPILED[key]
        except KeyError:
            pass
        except TypeError:  # unhashable: not cached
            return _build(schema)
        node = _build(schema)
        _COMPILED[key] = node
        return node


def _cache_key(schema: Any) -> Any:
    """``Union[int, float] == Union[float, int]``: the text keeps the order, which matters."""
    return (schema, repr(schema))


def _build(schema: Any) -> _Node:
    if schema is Any or schema is object:
        return _ANY
    if schema is None:
        return _EXACT[_NONE_TYPE]
    origin = typing.get_origin(schema)
    if origin is not None:
        return _build_generic(schema, origin, typing.get_args(schema))
    if not isinstance(schema, type):
        raise TypeError(f"unsupported hook schema {schema!r}: {_SUPPORTED}")
    if schema in _EXACT:
        return _EXACT[schema]
    if schema in _PARSED:
        return _Parsed(schema)
    if _is_pydantic(schema):
        return _Pydantic(schema)
    if issubclass(schema, enum.Enum):
        return _Enum(schema)
    if attrs.has(schema) or dataclasses.is_dataclass(schema):
        return _with_fields(schema, _Record(schema))
    if _is_typeddict(schema):
        return _with_fields(schema, _TypedDict(schema))
    if schema in _LISTS:
        return _List(_ANY)
    if schema in _SETS:
        return _Set(_ANY, _SETS[schema])
    if schema is tuple:
        return _Tuple([_ANY], variadic=True)
    if schema in _DICTS:
        return _Dict(_ANY, _ANY)
    raise TypeError(f"unsupported hook schema {schema.__qualname__!r}: {_SUPPORTED}")


def _with_fields(cls: type, node: _Record | _TypedDict) -> _Node:
    """Register ``node`` before compiling its fields, so a record may contain itself."""
    _COMPILED[_cache_key(cls)] = node
    try:
        node.compile_fields()
    except BaseException:
        del _COMPILED[_cache_key(cls)]
        raise
    return node


def _build_generic(schema: Any, origin: Any, args: tuple[Any, ...]) -> _Node:
    if origin is typing.Annotated:
        return _compile(args[0])
    if origin is Union or origin is types.UnionType:
        alternatives: list[_Node] = []
        for arg in args:
            node = _compile(arg)
            alternatives.extend(node.alternatives if isinstance(node, _Union) else [node])
        return _Union(alternatives)
    if origin is Literal:
        return _Literal(args)
    if origin in _LISTS:
        return _List(_compile(args[0]))
    if origin in _SETS:
        return _Set(_compile(args[0]), _SETS[origin])
    if origin is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            return _Tuple([_compile(args[0])], variadic=True)
        return _Tuple([_compile(arg) for arg in args], variadic=False)
    if origin in _DICTS:
        return _Dict(_key_node(args[0]), _compile(args[1]))
    raise TypeError(f"unsupported hook schema {schema!r}: {_SUPPORTED}")


def _key_node(schema: Any) -> _Node:
    if schema is int:
        return _IntKey()
    node = _compile(schema)
    if isinstance(node, _Literal):
        text = all(type(value) is str for value in node.values)
    elif isinstance(node, _Enum):
        text = all(type(member.value) is str for member in node.enum)
    else:
        text = node is _EXACT[str] or isinstance(node, _KEY_NODES)
    if text:
        return node
    raise TypeError(
        f"unsupported dict key type {node.label!r} in a hook schema: JSON object keys are "
        "text; use str, int, an Enum or Literal of str values, datetime, date, time, "
        "timedelta, UUID or Decimal"
    )


def _field_node(owner: type, name: str, declared: Any) -> _Node:
    try:
        return _compile(declared)
    except TypeError as exc:
        raise TypeError(f"field {name!r} of {owner.__qualname__}: {exc}") from None


def _type_hints(cls: type, include_extras: bool = False) -> dict[str, Any]:
    try:
        return typing.get_type_hints(cls, include_extras=include_extras)
    except Exception as exc:
        raise TypeError(
            f"cannot resolve the field types of {cls.__qualname__}: {type(exc).__name__}: {exc}"
        ) from None


def _is_typeddict(cls: type) -> bool:
    if typing.is_typeddict(cls):
        return True
    extensions = sys.modules.get("typing_extensions")  # its TypedDict is another class
    return extensions is not None and bool(extensions.is_typeddict(cls))


def _is_pydantic(cls: type) -> bool:
    pydantic = sys.modules.get("pydantic")  # a model's class imported it; never import it here
    return pydantic is not None and issubclass(cls, pydantic.BaseModel)


def _class_ref(cls: type) -> str:
    return f"{cls.__module__}:{cls.__qualname__}"


def _classes(root: _Node) -> Iterator[type]:
    """Every class named in ``root``'s reference, each once (records may nest themselves)."""
    seen: set[int] = set()
    stack = [root]
    while stack:
        node = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        if node.cls is not None:
            yield node.cls
        if not isinstance(node, _Record | _TypedDict):  # fields are not part of the reference
            stack.extend(node.children())


# ----- messages -----


def _join(path: str, key: Any) -> str:
    if type(key) is str and _IDENTIFIER.fullmatch(key):
        return f"{path}.{key}"
    return f"{path}[{_preview(key)}]"


def _preview(value: Any, limit: int = 60) -> str:
    try:
        text = json.dumps(value, ensure_ascii=False)
    except (TypeError, ValueError, RecursionError):
        text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _got(value: Any) -> str:
    if value is None:
        return "null"
    return f"{type(value).__name__} {_preview(value)}"


# ----- reading references -----

_TOKEN = re.compile(
    r"\s*(?:(?P<text>\"(?:[^\"\\]|\\.)*\")|(?P<number>-?[0-9]+)|(?P<punct>\.\.\.|\(\)|[\[\],])"
    r"|(?P<name>[A-Za-z_][A-Za-z0-9_.]*(?::[A-Za-z_][A-Za-z0-9_.]*)?))"
)
_ATOMS: dict[str, Any] = {
    "Any": Any,
    "None": None,
    "Union": Union,
    "bool": bool,
    "int": int,
    "float": float,
    "str": str,
    "list": list,
    "tuple": tuple,
    "set": set,
    "frozenset": frozenset,
    "dict": dict,
}
_LITERALS: dict[str, Any] = {"true": True, "false": False, "null": None}


class _RefParser:
    """Reads the type expressions :func:`schema_ref` writes."""

    def __init__(self, text: str) -> None:
        self.tokens: list[tuple[str, str]] = []
        pos, text = 0, text.rstrip()
        while pos < len(text):
            match = _TOKEN.match(text, pos)
            if match is None or match.end() == pos:
                raise SerializationError(f"unexpected text at {text[pos : pos + 20]!r}")
            kind = match.lastgroup
            assert kind is not None
            self.tokens.append((kind, match[kind]))
            pos = match.end()
        self.pos = 0

    def next(self) -> tuple[str, str]:
        if self.pos >= len(self.tokens):
            raise SerializationError("unexpected end")
        token = self.tokens[self.pos]
        self.pos += 1
        return token

    def peek(self) -> str | None:
        return self.tokens[self.pos][1] if self.pos < len(self.tokens) else None

    def expect(self, text: str) -> None:
        _kind, value = self.next()
        if value != text:
            raise SerializationError(f"expected {text!r}, found {value!r}")

    def end(self) -> None:
        if self.pos != len(self.tokens):
            raise SerializationError(f"unexpected {self.tokens[self.pos][1]!r}")

    def parse(self) -> Any:
        kind, text = self.next()
        if kind != "name":
            raise SerializationError(f"expected a type, found {text!r}")
        if text == "Literal":
            return Literal.__getitem__(tuple(self.arguments(self.literal)))
        base: Any = _ATOMS[text] if text in _ATOMS else self.load(text)
        if self.peek() != "[":
            return base
        args = tuple(self.arguments(self.argument))
        try:
            return base[args if len(args) != 1 else args[0]]
        except TypeError as exc:
            raise SerializationError(f"{text} does not take {len(args)} arguments") from exc

    def arguments(self, read: Callable[[], Any]) -> Iterator[Any]:
        self.expect("[")
        while True:
            yield read()
            _kind, text = self.next()
            if text == "]":
                return
            if text != ",":
                raise SerializationError(f"expected ',' or ']', found {text!r}")

    def argument(self) -> Any:
        if self.peek() == "...":
            self.pos += 1
            return Ellipsis
        if self.peek() == "()":
            self.pos += 1
            return ()
        return self.parse()

    def literal(self) -> Any:
        kind, text = self.next()
        if kind == "text":
            return json.loads(text)
        if kind == "number":
            return int(text)
        if text in _LITERALS:
            return _LITERALS[text]
        raise SerializationError(f"expected a JSON literal, found {text!r}")

    @staticmethod
    def load(text: str) -> type:
        if ":" not in text:
            raise SerializationError(f"unknown type {text!r}")
        return load_class(text)
