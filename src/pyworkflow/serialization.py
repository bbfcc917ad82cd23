"""Serializers: type-preserving JSON (the default, built on cattrs) and cloudpickle (opt-in)."""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import decimal
import enum
import importlib
import json
import math
import sys
import traceback
import uuid
import zoneinfo
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import attrs

from pyworkflow.errors import PayloadTooLargeError, SerializationError, StepFailedError

if TYPE_CHECKING:
    import cattrs

__all__ = [
    "JsonSerializer",
    "PickleSerializer",
    "Serializer",
    "dumps_call_limited",
    "dumps_limited",
]

#: Key marking a tagged envelope: ``{"__pw__": "<kind>", "v": ...}``.
TAG = "__pw__"
_PLAIN = (type(None), bool, int, str)
#: The same, as a set: one hash lookup on the hot path.
_PLAIN_TYPES = frozenset(_PLAIN)

#: ``json.dumps(encoded, separators=(",", ":"), allow_nan=False)`` without building an
#: encoder per call. ``_encode`` returns a fresh tree of JSON types with finite floats
#: only, never circular, so the C encoder needs no circular check nor ``default``.
_c_make_encoder: Any = getattr(json.encoder, "c_make_encoder", None)
_to_json: Callable[[Any], str]
if _c_make_encoder is not None:
    _iterencode = _c_make_encoder(
        None, None, json.encoder.encode_basestring_ascii, None, ":", ",", False, False, False
    )

    def _to_json(encoded: Any) -> str:
        return "".join(_iterencode(encoded, 0))

else:  # pragma: no cover  # a Python built without the _json accelerator
    _to_json = json.JSONEncoder(separators=(",", ":"), allow_nan=False).encode

_encode_str: Callable[[str], str] = json.encoder.encode_basestring_ascii
#: How the C encoder writes each ``_PLAIN`` type (the encoder above: ASCII strings).
_WRITE_PLAIN: dict[type, Callable[[Any], str]] = {
    type(None): lambda _: "null",
    bool: lambda value: "true" if value else "false",
    int: int.__repr__,
    str: _encode_str,
}

#: The C scanner ``json.loads`` ends in; payloads the engine wrote need nothing else.
_scan_once: Any = getattr(json.decoder.JSONDecoder(), "scan_once")  # noqa: B009  # untyped


@runtime_checkable
class Serializer(Protocol):
    """Turns values into text and back; ``name`` is recorded with every payload.

    A plugin provides one through the ``pyworkflow_register_serializers``
    hook; ``serializer = "<name>"`` in config selects it for new runs, and
    every run keeps decoding with the serializer it started with.

    ```python
    import json

    from pyworkflow.errors import SerializationError
    from pyworkflow.hookspecs import SerializerRegister, hookimpl

    class PlainJson:
        name = "plain-json"

        def dumps(self, value):
            try:
                return json.dumps(value)
            except TypeError as exc:
                raise SerializationError(str(exc)) from exc

        def loads(self, data):
            return json.loads(data)

    @hookimpl
    def pyworkflow_register_serializers(register: SerializerRegister) -> None:
        register("plain-json", PlainJson())
    ```
    """

    name: str

    def dumps(self, value: Any) -> str:
        """Serialize ``value`` to text; raise :class:`SerializationError` if unsupported."""
        ...

    def loads(self, data: str) -> Any:
        """Rebuild a value from ``dumps`` output; raise :class:`SerializationError` if invalid."""
        ...


def type_name(cls: type) -> str:
    """Dotted name of a class for messages: ``socket.socket``, ``int``."""
    name = cls.__qualname__
    return name if cls.__module__ == "builtins" else f"{cls.__module__}.{name}"


def load_class(path: str) -> type:
    """Import the class stored as ``module:QualName``."""
    module_name, _, qualname = path.partition(":")
    try:
        target: Any = importlib.import_module(module_name)
        for part in qualname.split("."):
            target = getattr(target, part)
    except Exception as exc:
        raise SerializationError(f"cannot load class {path!r}: {exc}") from exc
    if not isinstance(target, type):
        raise SerializationError(f"cannot load class {path!r}: it is not a class")
    return target


def _class_path(cls: type) -> str:
    """``module:QualName`` of ``cls``, checked to import back to the same class."""
    path = f"{cls.__module__}:{cls.__qualname__}"
    if _CHECKED_PATHS.get(cls) == path:
        return path
    try:
        ok = load_class(path) is cls
    except SerializationError:
        ok = False
    if not ok:
        raise SerializationError(
            f"cannot serialize value of type {type_name(cls)!r} with the 'json' serializer: "
            f"its class cannot be imported back as {path!r}; define it at module level"
        )
    _CHECKED_PATHS[cls] = path
    return path


_CHECKED_PATHS: dict[type, str] = {}


def _pydantic_model_class() -> type | None:
    """``pydantic.BaseModel`` if pydantic is imported (never imported here: it is optional)."""
    module = sys.modules.get("pydantic")
    base = getattr(module, "BaseModel", None)
    return base if isinstance(base, type) else None


def _is_record(cls: Any) -> bool:
    return isinstance(cls, type) and (attrs.has(cls) or dataclasses.is_dataclass(cls))


def _identity(value: Any) -> Any:
    return value


def _make_converter() -> cattrs.Converter:
    """A cattrs JSON converter for records whose field values keep their own types.

    Field values are encoded by their runtime type (so ``Any`` and union fields keep
    them) and arrive at ``structure`` already rebuilt; the converter maps the stored
    fields onto the class by its declared fields (aliases, defaults for fields added
    since, nested records stored as plain dicts) and leaves every other value as is.
    Built on first use: cattrs is imported only by processes that store records.
    """
    import cattrs.gen
    import cattrs.preconf.json

    conv = cattrs.preconf.json.make_converter()
    conv.register_unstructure_hook_func(lambda _: True, _identity)
    conv.register_structure_hook_func(lambda _: True, _keep)
    for cls in (bytes, str, int, float, dt.datetime, dt.date):  # its class-keyed hooks
        conv.register_unstructure_hook(cls, _identity)
        conv.register_structure_hook(cls, _keep)

    def record_hook(cls: type) -> Callable[[Any, Any], Any]:
        from_dict: Callable[[Any, Any], Any] = cattrs.gen.make_dict_structure_fn(cls, conv)
        return lambda value, t: from_dict(value, t) if isinstance(value, dict) else value

    conv.register_structure_hook_factory(_is_record, record_hook)
    return conv


def _keep(value: Any, _cls: Any) -> Any:
    return value


class JsonSerializer:
    """Type-preserving JSON: ``loads(dumps(v)) == v`` with the same type at every level.

    JSON natives are written as themselves. Everything else is a tagged envelope
    ``{"__pw__": kind, "v": ...}``: tuples, sets, frozensets, bytes (base64), dicts
    with non-``str`` keys (or holding the tag key), non-finite floats, ``datetime``,
    ``date``, ``time``, ``timedelta``, ``Decimal``, ``UUID``, enum members, named
    tuples, attrs classes and dataclasses (fields structured with cattrs by their
    declared types), pydantic models (field values encoded like any other value,
    rebuilt with ``model_construct``) and exceptions (type, args, message, traceback
    text). Classes are recorded as ``module:QualName`` and must be importable.
    """

    name = "json"

    def __init__(self) -> None:
        self._converter: cattrs.Converter | None = None
        self._unstructure_fns: dict[type, Callable[[Any], dict[str, Any]]] = {}

    @property
    def converter(self) -> cattrs.Converter:
        """The cattrs converter for attrs classes and dataclasses (built on first use)."""
        if self._converter is None:
            self._converter = _make_converter()
        return self._converter

    def dumps(self, value: Any) -> str:
        cls = type(value)
        if cls is int:  # the commonest step values, written as json.dumps writes them
            return int.__repr__(value)
        if cls is str:
            return json.encoder.encode_basestring_ascii(value)
        try:
            encoded = self._encode(value)
        except RecursionError as exc:
            raise SerializationError(
                f"cannot serialize value of type {type_name(type(value))!r} with the 'json' "
                "serializer: it is circular or nested too deeply"
            ) from exc
        return _to_json(encoded)

    def dumps_call(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> str:
        """``dumps({"args": args, "kwargs": kwargs})``: the same text, faster for scalars."""
        plain = _PLAIN_TYPES
        for arg in args:
            if type(arg) not in plain:
                return self.dumps({"args": args, "kwargs": kwargs})
        for arg in kwargs.values():
            if type(arg) not in plain:
                return self.dumps({"args": args, "kwargs": kwargs})
        if TAG in kwargs or type(args) is not tuple or type(kwargs) is not dict:
            return self.dumps({"args": args, "kwargs": kwargs})
        # what _encode makes of it: the tuple tagged, the scalars and str keys as they are,
        # written as the C encoder writes it (its own walk cost about 1 us per step call)
        write = _WRITE_PLAIN
        head = '{"args":{"__pw__":"tuple","v":[' + ",".join([write[type(a)](a) for a in args])
        if not kwargs:
            return head + ']},"kwargs":{}}'
        for key in kwargs:
            if type(key) is not str:
                return _to_json({"args": {TAG: "tuple", "v": list(args)}, "kwargs": kwargs})
        encode = _encode_str
        pairs = ",".join([encode(k) + ":" + write[type(v)](v) for k, v in kwargs.items()])
        return head + ']},"kwargs":{' + pairs + "}}"

    def loads(self, data: str) -> Any:
        try:
            if type(data) is str:
                try:
                    value, end = _scan_once(data, 0)
                except StopIteration:  # not a JSON value where it starts: json.loads says why
                    value, end = json.loads(data), len(data)
                if end != len(data):  # whitespace or extra data after it
                    value = json.loads(data)
            else:
                value = json.loads(data)
            if type(value) in _PLAIN_TYPES:
                return value
            return self._decode(value)
        except SerializationError:
            raise
        except RecursionError as exc:
            raise SerializationError("cannot decode JSON payload: nested too deeply") from exc
        except KeyError as exc:
            raise SerializationError(f"cannot decode JSON payload: missing key {exc}") from exc
        except Exception as exc:
            raise SerializationError(
                f"cannot decode JSON payload: {type(exc).__name__}: {exc}"
            ) from exc

    # ----- encoding -----

    def _encode(self, value: Any) -> Any:
        cls = type(value)
        if cls in _PLAIN_TYPES:
            return value
        if cls is float:
            return value if math.isfinite(value) else {TAG: "float", "v": str(value)}
        plain = _PLAIN_TYPES
        if cls is list:
            return [item if type(item) in plain else self._encode(item) for item in value]
        if cls is dict:
            if TAG not in value:
                out = {}
                for key, item in value.items():
                    if type(key) is not str:
                        break
                    out[key] = item if type(item) in plain else self._encode(item)
                else:
                    return out
            pairs = [[self._encode(k), self._encode(v)] for k, v in value.items()]
            return {TAG: "dict", "v": pairs}
        if cls is tuple:
            items = [item if type(item) in plain else self._encode(item) for item in value]
            return {TAG: "tuple", "v": items}
        if cls is set or cls is frozenset:
            items = sorted((self._encode(item) for item in value), key=_sort_key)
            return {TAG: cls.__name__, "v": items}
        if cls in _LEAF_ENCODERS:
            tag, encode = _LEAF_ENCODERS[cls]
            return {TAG: tag, **encode(value)}
        if isinstance(value, enum.Enum):
            return {TAG: "enum", "t": _class_path(cls), "v": self._encode(value.value)}
        if isinstance(value, BaseException):
            return self._encode_exception(value)
        pydantic_model = _pydantic_model_class()
        if pydantic_model is not None and isinstance(value, pydantic_model):
            return self._encode_pydantic(value)
        if _is_record(cls):
            path = _class_path(cls)
            if cls not in self._unstructure_fns:
                import cattrs.gen

                fn = cattrs.gen.make_dict_unstructure_fn(cls, self.converter)
                self._unstructure_fns[cls] = fn
            kind = "attrs" if attrs.has(cls) else "dataclass"
            return {TAG: kind, "t": path, "v": self._encode(self._unstructure_fns[cls](value))}
        if isinstance(value, tuple) and hasattr(cls, "_fields"):
            items = [self._encode(item) for item in value]
            return {TAG: "namedtuple", "t": _class_path(cls), "v": items}
        raise SerializationError(
            f"cannot serialize value of type {type_name(cls)!r} with the 'json' serializer: "
            "it is not a JSON type, attrs class, dataclass or other supported type; "
            "use an attrs class/dataclass or the 'pickle' serializer"
        )

    def _encode_pydantic(self, model: Any) -> dict[str, Any]:
        """Field values by name (each keeps its type), extra values, and the fields set."""
        cls = type(model)
        fields = {name: getattr(model, name) for name in cls.model_fields}
        encoded = {TAG: "pydantic", "t": _class_path(cls), "v": self._encode(fields)}
        extra = getattr(model, "__pydantic_extra__", None)
        if extra:
            encoded["extra"] = self._encode(dict(extra))
        fields_set = model.model_fields_set
        if fields_set != fields.keys():
            encoded["set"] = sorted(fields_set)
        return encoded

    def _encode_exception(self, exc: BaseException) -> dict[str, Any]:
        tb = getattr(exc, "__pyworkflow_traceback__", None)
        if not isinstance(tb, str):
            tb = "".join(traceback.format_exception(exc))
        try:
            args = self._encode(list(exc.args))
        except SerializationError:
            args = None  # the class cannot be rebuilt from its args: load gives StepFailedError
        try:
            attributes = getattr(exc, "__dict__", {})
            state = self._encode({k: v for k, v in attributes.items() if not k.startswith("__")})
        except SerializationError:
            state = {}
        return {
            TAG: "exception",
            "t": f"{type(exc).__module__}:{type(exc).__qualname__}",
            "args": args,
            "message": _message(exc),
            "traceback": tb,
            "state": state,
        }

    # ----- decoding -----

    def _decode(self, value: Any) -> Any:
        plain = _PLAIN_TYPES
        if isinstance(value, list):
            return [item if type(item) in plain else self._decode(item) for item in value]
        if not isinstance(value, dict):
            return value
        if TAG not in value:
            return {
                key: item if type(item) in plain else self._decode(item)
                for key, item in value.items()
            }
        kind = value[TAG]
        if kind in _LEAF_DECODERS:
            return _LEAF_DECODERS[kind](value)
        if kind == "exception":
            return self._decode_exception(value)
        if kind == "dict":
            return {self._decode(k): self._decode(v) for k, v in value["v"]}
        if kind == "pydantic":
            return self._decode_pydantic(value)
        if kind in _CONTAINERS:
            return _CONTAINERS[kind](self._decode(item) for item in value["v"])
        if kind not in ("enum", "namedtuple", "attrs", "dataclass"):
            raise SerializationError(f"unknown type tag {kind!r} in JSON payload")
        cls = load_class(value["t"])
        if kind == "enum" and issubclass(cls, enum.Enum):
            return cls(self._decode(value["v"]))
        if kind == "namedtuple" and issubclass(cls, tuple):
            return cls(*self._decode(value["v"]))
        if kind in ("attrs", "dataclass") and _is_record(cls):
            fields = self._decode(value["v"])
            try:
                return self.converter.structure(fields, cls)
            except Exception as exc:
                raise SerializationError(
                    f"cannot rebuild {value['t']!r} from its stored fields: {exc!r}"
                ) from exc
        raise SerializationError(f"{value['t']!r} is not a class of kind {kind!r}")

    def _decode_pydantic(self, value: dict[str, Any]) -> Any:
        cls = load_class(value["t"])
        pydantic_model = _pydantic_model_class()  # loading the class imported pydantic
        if pydantic_model is None or not issubclass(cls, pydantic_model):
            raise SerializationError(f"{value['t']!r} is not a pydantic model")
        fields = self._decode(value["v"])
        extra = self._decode(value.get("extra", {}))
        fields_set = set(value["set"]) if "set" in value else None
        model: Any = cls  # a BaseModel subclass, typed as a plain class here
        try:
            return model.model_construct(_fields_set=fields_set, **extra, **fields)
        except Exception as exc:
            raise SerializationError(
                f"cannot rebuild {value['t']!r} from its stored fields: {exc!r}"
            ) from exc

    def _decode_exception(self, value: dict[str, Any]) -> BaseException:
        path, message, tb = str(value["t"]), str(value["message"]), str(value["traceback"])
        exc: BaseException
        try:
            cls = load_class(path)
            if not issubclass(cls, BaseException) or value["args"] is None:
                raise TypeError(f"{path!r} cannot be rebuilt")
            exc = cls(*self._decode(value["args"]))
        except Exception:
            failed = StepFailedError(message, error_type=path.replace(":", "."), traceback=tb)
            return _with_traceback(failed, tb)
        try:
            state = self._decode(value["state"])
        except SerializationError:
            state = {}  # an attribute's class is gone: keep what the constructor set
        for key, item in state.items():
            try:
                setattr(exc, key, item)
            except Exception:
                pass  # a read-only attribute: the constructor already set it
        return _with_traceback(exc, tb)


def _message(exc: BaseException) -> str:
    try:
        return str(exc)
    except Exception:
        return f"<{type(exc).__qualname__}: str() failed>"


def _with_traceback(exc: BaseException, tb: str) -> BaseException:
    """Attach the original traceback text as ``__pyworkflow_traceback__`` when possible."""
    try:
        exc.__pyworkflow_traceback__ = tb  # type: ignore[attr-defined]  # dynamic extra
    except AttributeError:
        pass  # a class with __slots__ and no __dict__: the traceback text is dropped
    return exc


def _sort_key(encoded: Any) -> str:
    return json.dumps(encoded, sort_keys=True)


def _encode_clock(value: dt.datetime | dt.time) -> dict[str, Any]:
    """ISO text; a ``zoneinfo`` zone is kept by key, with ``fold``, not as an offset."""
    tz = value.tzinfo
    if isinstance(tz, zoneinfo.ZoneInfo) and tz.key:
        return {"v": value.replace(tzinfo=None).isoformat(), "tz": tz.key, "fold": value.fold}
    return {"v": value.isoformat(), "fold": value.fold} if value.fold else {"v": value.isoformat()}


def _decode_clock(cls: type[dt.datetime] | type[dt.time], value: dict[str, Any]) -> Any:
    parsed = cls.fromisoformat(value["v"])
    tz = zoneinfo.ZoneInfo(value["tz"]) if "tz" in value else parsed.tzinfo
    return parsed.replace(tzinfo=tz, fold=value.get("fold", 0))


_LEAF_ENCODERS: dict[type, tuple[str, Callable[[Any], dict[str, Any]]]] = {
    bytes: ("bytes", lambda v: {"v": base64.b64encode(v).decode("ascii")}),
    dt.datetime: ("datetime", _encode_clock),
    dt.date: ("date", lambda v: {"v": v.isoformat()}),
    dt.time: ("time", _encode_clock),
    dt.timedelta: ("timedelta", lambda v: {"v": [v.days, v.seconds, v.microseconds]}),
    decimal.Decimal: ("decimal", lambda v: {"v": str(v)}),
    uuid.UUID: ("uuid", lambda v: {"v": str(v)}),
}

_LEAF_DECODERS: dict[str, Callable[[dict[str, Any]], Any]] = {
    "float": lambda e: float(e["v"]),
    "bytes": lambda e: base64.b64decode(e["v"], validate=True),
    "datetime": lambda e: _decode_clock(dt.datetime, e),
    "date": lambda e: dt.date.fromisoformat(e["v"]),
    "time": lambda e: _decode_clock(dt.time, e),
    "timedelta": lambda e: dt.timedelta(*e["v"]),
    "decimal": lambda e: decimal.Decimal(e["v"]),
    "uuid": lambda e: uuid.UUID(e["v"]),
}

_CONTAINERS: dict[str, Callable[[Any], Any]] = {"tuple": tuple, "set": set, "frozenset": frozenset}


class PickleSerializer:
    """cloudpickle, as base64 text: opt-in, and UNSAFE for untrusted data.

    Loading a pickle runs arbitrary code, so use it only when every writer of the
    storage is trusted. It serializes almost anything, lambdas and closures included,
    but payloads break when the pickled code changes.
    """

    name = "pickle"

    def dumps(self, value: Any) -> str:
        import cloudpickle  # type: ignore[import-untyped]  # imported on first use: a fast start

        try:
            return base64.b64encode(cloudpickle.dumps(value)).decode("ascii")
        except Exception as exc:
            raise SerializationError(
                f"cannot serialize value of type {type_name(type(value))!r} with the 'pickle' "
                f"serializer: {exc}"
            ) from exc

    def loads(self, data: str) -> Any:
        import cloudpickle

        try:
            return cloudpickle.loads(base64.b64decode(data, validate=True))
        except Exception as exc:
            raise SerializationError(
                f"cannot decode pickle payload: {type(exc).__name__}: {exc}"
            ) from exc


def dumps_limited(serializer: Serializer, value: Any, *, limit: int, what: str) -> str:
    """Serialize ``value``; over ``limit`` UTF-8 bytes raise :class:`PayloadTooLargeError`."""
    text = serializer.dumps(value)
    size = len(text) if text.isascii() else len(text.encode())
    if size > limit:
        raise _too_large(what, size, limit)
    return text


def dumps_call_limited(
    serializer: Serializer,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    *,
    limit: int,
    what: str,
) -> str:
    """A call's input, ``{"args": args, "kwargs": kwargs}``, as :func:`dumps_limited` writes it.

    The JSON serializer writes arguments that are all JSON scalars without
    walking them (every step call's input): the same text, faster.
    """
    if type(serializer) is JsonSerializer:
        text = serializer.dumps_call(args, kwargs)
    else:
        text = serializer.dumps({"args": args, "kwargs": kwargs})
    size = len(text) if text.isascii() else len(text.encode())
    if size > limit:
        raise _too_large(what, size, limit)
    return text


def _too_large(what: str, size: int, limit: int) -> PayloadTooLargeError:
    return PayloadTooLargeError(
        f"{what} is {size} bytes, over the payload limit of {limit} bytes "
        "(config key 'max_payload_bytes')"
    )
