"""Strict JSON from outside the process (HTTP bodies, ``--data`` on the CLI): one rule.

The text must be UTF-8 (no UTF-16/32, no byte order mark), strict JSON (no
``NaN``/``Infinity``), at most ``MAX_JSON_DEPTH`` deep, and its strings must be
valid Unicode text: a lone surrogate escape such as ``"\\ud800"`` is refused,
because it cannot be stored as UTF-8 or sent back in a response.
"""

from __future__ import annotations

import json
from typing import Any

__all__ = ["MAX_JSON_DEPTH", "JsonInputError", "is_text", "loads_strict"]

#: JSON nested deeper than this is refused.
MAX_JSON_DEPTH = 64


class JsonInputError(ValueError):
    """The input is not acceptable JSON; the message says why (never echoes the input)."""


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def is_text(value: str) -> bool:
    """Whether ``value`` is valid Unicode text (encodable as UTF-8: no lone surrogate)."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def check_tree(value: Any) -> None:
    """Refuse ``value`` if it nests deeper than ``MAX_JSON_DEPTH`` or holds a lone surrogate."""
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, str):
            if not is_text(item):
                raise JsonInputError(
                    "a string holds a lone UTF-16 surrogate escape (such as \\ud800): "
                    "it is not valid Unicode text"
                )
        elif isinstance(item, dict | list):
            if level + 1 > MAX_JSON_DEPTH:
                raise JsonInputError(f"JSON nested deeper than {MAX_JSON_DEPTH} levels")
            children = [*item.keys(), *item.values()] if isinstance(item, dict) else item
            stack.extend((child, level + 1) for child in children)


def loads_strict(data: bytes | str) -> Any:
    """Parse ``data`` under the rule above; :class:`JsonInputError` says what is wrong."""
    if isinstance(data, bytes):
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            raise JsonInputError("not UTF-8 text") from None
    else:
        text = data
    if text.startswith("\ufeff"):
        raise JsonInputError("starts with a byte order mark; send plain UTF-8")
    try:
        value = json.loads(text, parse_constant=_reject_constant)
    except RecursionError:
        raise JsonInputError(f"JSON nested deeper than {MAX_JSON_DEPTH} levels") from None
    except ValueError as exc:  # JSONDecodeError, huge ints
        raise JsonInputError(f"not valid JSON: {exc}") from None
    check_tree(value)
    return value
