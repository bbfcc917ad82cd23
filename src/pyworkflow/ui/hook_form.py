"""The form that resumes a hook from the run page: a JSON textarea, or one input per field.

A hook whose schema is an attrs class gets one labelled input per field
(text, number, a checkbox, or JSON text for other types); any other hook gets
a textarea for a JSON payload. The posted form becomes the payload here;
:func:`pyworkflow.client.aresume_hook` then validates it against the schema
as it validates any payload (nothing is coerced beyond what the inputs say).
"""

from __future__ import annotations

import json
import math
import types
import typing
from typing import Any

import attrs

from pyworkflow.errors import SerializationError
from pyworkflow.validation import load_schema

__all__ = [
    "PAYLOAD_FIELD",
    "FormError",
    "FormField",
    "field_input_name",
    "payload_from_form",
    "schema_fields",
]

#: The textarea of a hook without a form built from its schema.
PAYLOAD_FIELD = "payload"
#: Longest text accepted in one field.
MAX_FIELD_CHARS = 100_000

_KINDS = {str: "text", bool: "bool", int: "int", float: "float"}


class FormError(ValueError):
    """What the user must fix in the form (shown as the flash message)."""


@attrs.frozen
class FormField:
    """One input of a schema-built form."""

    #: The attrs field's name.
    name: str
    #: ``text``, ``int``, ``float``, ``bool`` or ``json`` (JSON text for other types).
    kind: str
    #: The type as written in the schema, shown next to the label.
    type_label: str
    #: No default: the form must give a value.
    required: bool
    #: The field accepts ``None``: an empty input sends ``null``.
    optional: bool = False

    @property
    def input_name(self) -> str:
        """The name of the field's input in the posted form."""
        return field_input_name(self.name)


def field_input_name(name: str) -> str:
    """The posted form's name of the schema field ``name`` (never clashes with ``csrf``)."""
    return f"field.{name}"


def _label(kind: Any) -> str:
    if isinstance(kind, type):
        return kind.__name__
    return str(kind).replace("typing.", "")


def _unwrap_optional(kind: Any) -> tuple[Any, bool]:
    """``X`` and True for ``X | None`` (``Optional[X]``), else ``kind`` and False."""
    if typing.get_origin(kind) in (typing.Union, types.UnionType):
        rest = [a for a in typing.get_args(kind) if a is not type(None)]
        if len(rest) == 1 and len(typing.get_args(kind)) == 2:
            return rest[0], True
    return kind, False


def schema_fields(schema_ref: str | None) -> tuple[FormField, ...] | None:
    """The inputs of a form for a hook whose schema is ``schema_ref``; None: use a textarea.

    None when there is no schema, when it is not an attrs class, or when this
    process cannot load it (the payload is then validated when it is sent).
    """
    if schema_ref is None:
        return None
    try:
        schema = load_schema(schema_ref)
    except SerializationError:
        return None
    if not (isinstance(schema, type) and attrs.has(schema)):
        return None
    try:
        hints = typing.get_type_hints(schema)
    except Exception:  # a forward reference this process cannot resolve
        hints = {}
    fields: list[FormField] = []
    for field in attrs.fields(schema):
        if not field.init:
            continue
        declared = hints.get(field.name, field.type)
        inner, optional = _unwrap_optional(declared)
        kind = _KINDS.get(inner, "json") if isinstance(inner, type) else "json"
        if kind == "bool" and optional:
            kind = "json"  # a checkbox cannot say null
        fields.append(
            FormField(
                name=field.alias or field.name,
                kind=kind,
                type_label=_label(declared),
                required=field.default is attrs.NOTHING,
                optional=optional,
            )
        )
    return tuple(fields)


def _value(field: FormField, raw: str) -> Any:
    """The JSON value of one input, or :class:`FormError`."""
    if field.kind == "text":
        return raw
    text = raw.strip()
    if field.kind == "int":
        try:
            return int(text)
        except ValueError:
            raise FormError(f"{field.name}: enter a whole number, not {text[:40]!r}") from None
    if field.kind == "float":
        try:
            number = float(text)
        except ValueError:
            raise FormError(f"{field.name}: enter a number, not {text[:40]!r}") from None
        if not math.isfinite(number):
            raise FormError(f"{field.name}: enter a finite number")
        return number
    try:
        return json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise FormError(f"{field.name}: not valid JSON ({exc})") from None


def payload_from_form(form: dict[str, str], fields: tuple[FormField, ...] | None) -> Any:
    """The payload a posted hook form stands for; :class:`FormError` saying what to fix.

    Without ``fields``: the ``payload`` textarea as JSON (empty: ``null``).
    With them: an object of the fields given; an empty input leaves out a
    field that has a default, sends ``null`` for an optional one, and is an
    error for a required number or JSON field (an empty text is ``""``).
    """
    if fields is None:
        text = form.get(PAYLOAD_FIELD, "")
        if len(text) > MAX_FIELD_CHARS * 10:
            raise FormError("Payload (JSON): too long")
        if not text.strip():
            return None
        try:
            return json.loads(text)
        except (ValueError, RecursionError) as exc:
            raise FormError(f"Payload (JSON): not valid JSON ({exc})") from None
    payload: dict[str, Any] = {}
    for field in fields:
        raw = form.get(field.input_name)
        if field.kind == "bool":
            payload[field.name] = raw is not None
            continue
        raw = raw or ""
        if len(raw) > MAX_FIELD_CHARS:
            raise FormError(f"{field.name}: too long")
        if raw.strip() or (field.kind == "text" and field.required and not field.optional):
            payload[field.name] = _value(field, raw)
        elif field.optional and field.required:
            payload[field.name] = None
        elif field.required:
            raise FormError(f"{field.name}: required")
    return payload
