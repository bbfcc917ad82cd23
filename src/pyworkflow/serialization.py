"""Serializers: type-preserving JSON (default, cattrs) and cloudpickle (opt-in)."""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import decimal
import enum
import importlib
import json
import traceback
import uuid
from collections.abc import Callable
from typing import Any, Protocol, runtime_checkable

import attrs
import cattrs.preconf.json
import cloudpickle  # type: ignore[import-untyped]  # cloudpickle ships no type hints

from pyworkflow.errors import PayloadTooLargeError, SerializationError, StepFailedError
from pyworkflow.hookspecs import hookimpl

__all__ = ["JsonSerializer", "PickleSerializer", "Serializer", "dumps_limited"]

_TAG = "__pw__"


@runtime_checkable
class Serializer(Protocol):
    """Turns values into text and back; ``name`` is recorded with every payload."""

    name: str

    def dumps(self, value: Any) -> str: ...

    def loads(self, data: str) -> Any: ...


def type_path(cls: type) -> str:
    """``module:QualName`` of a class, the form stored in payloads."""
    return f"{cls.__module__}:{cls.__qualname__}"


def load_type(path: str) -> type:
    """Import the class at ``module:QualName``."""
    module_name, _, qualname = path.partition(":")
    try:
        target: Any = importlib.import_module(module_name)
        for part in qualname.split("."):
            target = getattr(target, part)
    except (ImportError, AttributeError, ValueError) as exc:
        raise SerializationError(f"cannot load type {path!r}: {exc}") from exc
    if not isinstance(target, type):
        raise SerializationError(f"{path!r} is not a class")
    return target


class JsonSerializer:
    """JSON that round-trips Python types: loads(dumps(v)) equals v and has its type.

    Handles JSON natives, tuples, sets, frozensets, bytes, dicts with any
    hashable keys, datetime/date/time/timedelta, Decimal, UUID, Enum members,
    attrs classes and dataclasses (through a cattrs converter, field types
    respected) and exceptions (type, args, message and traceback).
    """

    name = "json"

    def __init__(self) -> None:
        self.converter = cattrs.preconf.json.make_converter()

    # ----- encoding -----

    def dumps(self, value: Any) -> str:
        try:
            return json.dumps(self._encode(value), separators=(",", ":"), allow_nan=True)
        except SerializationError:
            raise
        except (TypeError, ValueError, RecursionError) as exc:
            raise SerializationError(
                f"cannot serialize value of type {_type_name(value)!r} with the 'json' "
                f"serializer: {exc}"
            ) from exc

    def _encode(self, value: Any) -> Any:
        if value is None or isinstance(value, bool | str):
            return value
        if isinstance(value, enum.Enum):
            return {_TAG: "enum", "t": type_path(type(value)), "v": self._encode(value.value)}
        if isinstance(value, int | float) and type(value) in (int, float):
            return value
        encoder = _ENCODERS.get(type(value))
        if encoder is not None:
            return encoder(self, value)
        if isinstance(value, dict) and type(value) is dict:
            if all(isinstance(k, str) for k in value) and _TAG not in value:
                return {k: self._encode(v) for k, v in value.items()}
            return {_TAG: "dict", "v": [[self._encode(k), self._encode(v)] for k, v in value.items()]}
        if isinstance(value, BaseException):
            return self._encode_exception(value)
        if attrs.has(type(value)) or dataclasses.is_dataclass(value):
            kind = "attrs" if attrs.has(type(value)) else "dataclass"
            cls = type(value)
            return {_TAG: kind, "t": type_path(cls), "v": self._encode(self.converter.unstructure(value))}
        raise SerializationError(
            f"cannot serialize value of type {_type_name(value)!r} with the 'json' serializer; "
            "use an attrs class or dataclass, or the 'pickle' serializer"
        )

    def _encode_exception(self, exc: BaseException) -> Any:
        tb = getattr(exc, "__pyworkflow_traceback__", None)
        if tb is None:
            tb = "".join(traceback.format_exception(exc))
        try:
            args = self._encode(list(exc.args))
        except SerializationError:
            args = [str(exc)]
        return {
            _TAG: "exception",
            "t": type_path(type(exc)),
            "args": args,
            "message": str(exc),
            "traceback": tb,
            "state": self._encode_state(exc),
        }

    def _encode_state(self, exc: BaseException) -> Any:
        state = {k: v for k, v in vars(exc).items() if not k.startswith("__")}
        try:
            return self._encode(state)
        except SerializationError:
            return {}

    # ----- decoding -----

    def loads(self, data: str) -> Any:
        try:
            raw = json.loads(data)
        except (TypeError, ValueError) as exc:
            raise SerializationError(f"cannot decode JSON payload: {exc}") from exc
        try:
            return self._decode(raw)
        except SerializationError:
            raise
        except Exception as exc:
            raise SerializationError(f"cannot decode JSON payload: {exc!r}") from exc

    def _decode(self, value: Any) -> Any:
        if isinstance(value, list):
            return [self._decode(v) for v in value]
        if not isinstance(value, dict):
            return value
        tag = value.get(_TAG)
        if tag is None:
            return {k: self._decode(v) for k, v in value.items()}
        decoder = _DECODERS.get(tag)
        if decoder is None:
            raise SerializationError(f"unknown type tag {tag!r} in JSON payload")
        return decoder(self, value)

    def _decode_exception(self, value: dict[str, Any]) -> BaseException:
        message = str(value.get("message", ""))
        tb = str(value.get("traceback", ""))
        path = str(value.get("t", ""))
        try:
            cls = load_type(path)
            if not issubclass(cls, BaseException):
                raise SerializationError(f"{path!r} is not an exception")
            exc = cls(*self._decode(value.get("args", [])))
            for key, item in self._decode(value.get("state", {})).items():
                setattr(exc, key, item)
        except Exception:
            exc = StepFailedError(message, error_type=path.replace(":", "."), traceback=tb)
        try:
            exc.__pyworkflow_traceback__ = tb  # type: ignore[attr-defined]  # carried for display
        except AttributeError:
            pass
        return exc


def _type_name(value: Any) -> str:
    cls = type(value)
    return cls.__qualname__ if cls.__module__ == "builtins" else f"{cls.__module__}.{cls.__qualname__}"


def _tagged(tag: str, v: Any) -> dict[str, Any]:
    return {_TAG: tag, "v": v}


_Encoder = Callable[[JsonSerializer, Any], Any]
_Decoder = Callable[[JsonSerializer, dict[str, Any]], Any]

_ENCODERS: dict[type, _Encoder] = {
    list: lambda s, v: [s._encode(x) for x in v],
    tuple: lambda s, v: _tagged("tuple", [s._encode(x) for x in v]),
    set: lambda s, v: _tagged("set", [s._encode(x) for x in v]),
    frozenset: lambda s, v: _tagged("frozenset", [s._encode(x) for x in v]),
    bytes: lambda s, v: _tagged("bytes", base64.b64encode(v).decode()),
    dt.datetime: lambda s, v: _tagged("datetime", v.isoformat()),
    dt.date: lambda s, v: _tagged("date", v.isoformat()),
    dt.time: lambda s, v: _tagged("time", v.isoformat()),
    dt.timedelta: lambda s, v: _tagged("timedelta", [v.days, v.seconds, v.microseconds]),
    decimal.Decimal: lambda s, v: _tagged("decimal", str(v)),
    uuid.UUID: lambda s, v: _tagged("uuid", str(v)),
}


def _decode_structured(s: JsonSerializer, value: dict[str, Any]) -> Any:
    cls = load_type(str(value.get("t")))
    return s.converter.structure(s._decode(value["v"]), cls)


def _decode_enum(s: JsonSerializer, value: dict[str, Any]) -> Any:
    cls = load_type(str(value.get("t")))
    return cls(s._decode(value["v"]))


_DECODERS: dict[str, _Decoder] = {
    "tuple": lambda s, v: tuple(s._decode(v["v"])),
    "set": lambda s, v: set(s._decode(v["v"])),
    "frozenset": lambda s, v: frozenset(s._decode(v["v"])),
    "bytes": lambda s, v: base64.b64decode(v["v"]),
    "datetime": lambda s, v: dt.datetime.fromisoformat(v["v"]),
    "date": lambda s, v: dt.date.fromisoformat(v["v"]),
    "time": lambda s, v: dt.time.fromisoformat(v["v"]),
    "timedelta": lambda s, v: dt.timedelta(*v["v"]),
    "decimal": lambda s, v: decimal.Decimal(v["v"]),
    "uuid": lambda s, v: uuid.UUID(v["v"]),
    "dict": lambda s, v: {s._decode(k): s._decode(x) for k, x in v["v"]},
    "enum": _decode_enum,
    "attrs": _decode_structured,
    "dataclass": _decode_structured,
    "exception": lambda s, v: s._decode_exception(v),
}


class PickleSerializer:
    """cloudpickle, base64 text. Opt-in and UNSAFE for untrusted data.

    Loading a pickle runs arbitrary code: use it only when every writer of
    the storage is trusted. It serializes almost anything, lambdas included.
    """

    name = "pickle"

    def dumps(self, value: Any) -> str:
        try:
            return base64.b64encode(cloudpickle.dumps(value)).decode("ascii")
        except Exception as exc:
            raise SerializationError(
                f"cannot serialize value of type {_type_name(value)!r} with the 'pickle' "
                f"serializer: {exc}"
            ) from exc

    def loads(self, data: str) -> Any:
        try:
            return cloudpickle.loads(base64.b64decode(data.encode("ascii"), validate=True))
        except Exception as exc:
            raise SerializationError(f"cannot decode pickle payload: {exc!r}") from exc


def dumps_limited(serializer: Serializer, value: Any, *, limit: int, what: str) -> str:
    """Serialize ``value``; over ``limit`` bytes raise :class:`PayloadTooLargeError`."""
    text = serializer.dumps(value)
    size = len(text.encode("utf-8"))
    if size > limit:
        raise PayloadTooLargeError(
            f"{what} is {size} bytes, over the payload limit of {limit} bytes "
            "(config key 'max_payload_bytes')"
        )
    return text


@hookimpl
def pyworkflow_register_serializers(register: Callable[[str, Serializer], None]) -> None:
    """Provide ``json`` (the default) and ``pickle``."""
    register("json", JsonSerializer())
    register("pickle", PickleSerializer())
