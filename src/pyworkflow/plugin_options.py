"""Parsing a plugin's ``[tool.pyworkflow.<plugin>]`` table (shared by every plugin).

Values may come from TOML (typed) or from ``PYWORKFLOW_<PLUGIN>__<OPTION>``
environment variables (strings), so each parser accepts both. A parser
raises ``TypeError("<what was expected>")``; :func:`parse_plugin_table`
turns it into a :class:`~pyworkflow.errors.ConfigError` naming the plugin,
the option, where the value came from and the value.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from pyworkflow.config import Settings
from pyworkflow.errors import ConfigError
from pyworkflow.redaction import redacted_repr

__all__ = [
    "option_bool",
    "option_choice",
    "option_names",
    "option_optional_text",
    "option_positive_int",
    "option_seconds",
    "option_text",
    "parse_plugin_table",
]

_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})


def option_text(value: Any) -> str:
    """A non-empty string, stripped."""
    if not isinstance(value, str) or not value.strip():
        raise TypeError("a non-empty string")
    return value.strip()


def option_optional_text(value: Any) -> str | None:
    """A non-empty string, or None for None/empty."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    return option_text(value)


def option_seconds(value: Any) -> float:
    """A positive number of seconds (``"2.5"`` from the environment too)."""
    if isinstance(value, bool):
        raise TypeError("a positive number of seconds")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise TypeError("a positive number of seconds") from None
    if not number > 0:  # also rejects NaN
        raise TypeError("a positive number of seconds")
    return number


def option_positive_int(value: Any) -> int:
    """A positive integer (``"8"`` from the environment too)."""
    if isinstance(value, bool) or isinstance(value, float):
        raise TypeError("a positive integer")
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise TypeError("a positive integer") from None
    if number <= 0:
        raise TypeError("a positive integer")
    return number


def option_bool(value: Any) -> bool:
    """A boolean (``true/false``, or ``1/0, yes/no, on/off`` as strings)."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        lowered = value.strip().lower()
        if lowered in _TRUE:
            return True
        if lowered in _FALSE:
            return False
    raise TypeError("a boolean (true/false, 1/0, yes/no, on/off)")


def option_names(value: Any) -> tuple[str, ...]:
    """A list of names, or one comma-separated string."""
    items = value.split(",") if isinstance(value, str) else value
    if not isinstance(items, list | tuple) or not all(isinstance(i, str) for i in items):
        raise TypeError("a list of names (or a comma-separated string)")
    return tuple(i.strip() for i in items if i.strip())


def option_choice(*choices: str) -> Callable[[Any], str]:
    """A parser accepting one of ``choices`` (case-insensitive)."""

    def parse(value: Any) -> str:
        if isinstance(value, str) and value.strip().lower() in choices:
            return value.strip().lower()
        raise TypeError(f"one of {', '.join(repr(c) for c in choices)}")

    return parse


def parse_plugin_table(
    settings: Settings, plugin: str, parsers: Mapping[str, Callable[[Any], Any]]
) -> dict[str, Any]:
    """Parse ``[tool.pyworkflow.<plugin>]`` with one parser per option.

    Returns the parsed options that were set (absent ones are left to the
    caller's defaults). An unknown option or a bad value is a ConfigError
    that names it, where it came from, and what is valid.
    """
    table: Mapping[str, Any] = settings.plugin_tables.get(plugin, {})
    values: dict[str, Any] = {}
    for key, raw in table.items():
        source = settings.source_of(f"{plugin}.{key}")
        parse = parsers.get(key)
        if parse is None:
            raise ConfigError(
                f"unknown option {key!r} in [tool.pyworkflow.{plugin}] (from {source}); "
                f"valid options: {', '.join(sorted(parsers))}"
            )
        try:
            values[key] = parse(raw)
        except TypeError as exc:
            raise ConfigError(
                f"option {key!r} of [tool.pyworkflow.{plugin}] (from {source}) must be "
                f"{exc}, got {redacted_repr(key, raw)}"
            ) from None
    return values
