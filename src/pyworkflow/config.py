"""Settings from defaults < ``[tool.pyworkflow]`` < ``PYWORKFLOW_*`` env vars < ``configure()``."""

from __future__ import annotations

import difflib
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import attrs

from pyworkflow.errors import ConfigError
from pyworkflow.redaction import redact_text, redacted_repr

__all__ = [
    "ENV_PREFIX",
    "KEYS",
    "SQLITE_SYNCHRONOUS",
    "Settings",
    "find_pyproject",
    "load_settings",
]

#: Environment variables ``PYWORKFLOW_<KEY>`` set config key ``<key>``.
ENV_PREFIX = "PYWORKFLOW_"
#: Allowed values of ``sqlite_synchronous``.
SQLITE_SYNCHRONOUS = ("FULL", "NORMAL")

_DEFAULT_SOURCE = "default"
_CONFIGURE_SOURCE = "configure()"


def _check_sqlite_synchronous(
    instance: Settings, attribute: attrs.Attribute[str], value: str
) -> None:
    if value not in SQLITE_SYNCHRONOUS:
        raise ConfigError(
            f"config key 'sqlite_synchronous' must be one of {', '.join(SQLITE_SYNCHRONOUS)}, "
            f"got {value!r}"
        )


@attrs.frozen(kw_only=True)
class Settings:
    """The resolved configuration of this process.

    Build it with :func:`load_settings`; ``sources`` says where each value
    came from and is not part of equality.
    """

    #: Storage URL; its scheme picks the backend plugin (relative SQLite paths are cwd-relative).
    storage: str = "sqlite:///.pyworkflow/pyworkflow.db"
    #: Name of the executor plugin.
    executor: str = "local"
    #: Name of the serializer that writes new payloads.
    serializer: str = "json"
    #: Workflow modules that workers import.
    modules: tuple[str, ...] = ()
    #: Largest serialized input, result, error or hook payload, in bytes.
    max_payload_bytes: int = 2 * 1024 * 1024
    #: How long a worker's claim on a run lasts before another worker may recover it.
    lease_seconds: float = 30.0
    #: Seconds between a worker's polls of storage for due runs.
    poll_interval: float = 1.0
    #: Activations one worker runs at once.
    worker_concurrency: int = 64
    #: Whether ``start()`` in a script runs a worker inside the process.
    embedded_worker: bool = True
    #: Seconds in-flight activations get to finish on shutdown.
    drain_timeout: float = 10.0
    #: Seconds between two writes of a step's checkpoints (``docs/checkpoints.md``); a
    #: checkpoint made sooner is kept in memory and written later (0: every one is written).
    checkpoint_interval: float = 1.0
    #: Largest serialized step checkpoint, in bytes.
    checkpoint_max_bytes: int = 256 * 1024
    #: SQLite ``PRAGMA synchronous``: ``FULL`` (durable) or ``NORMAL`` (faster).
    sqlite_synchronous: str = attrs.field(default="FULL", validator=_check_sqlite_synchronous)
    #: Events in one run's log past which a warning suggests ``continue_as_new`` (once per run).
    event_soft_limit: int = 10_000
    #: Events in one run's log past which the run fails with ``EventLimitError``.
    event_hard_limit: int = 50_000
    #: Base URL where the HTTP server is reachable (for hook URLs).
    public_url: str | None = None
    #: Log level for the CLI and server; ``None`` leaves logging to the caller.
    log_level: str | None = None
    #: Plugin sub-tables such as ``[tool.pyworkflow.celery]``, by table name.
    plugin_tables: Mapping[str, Mapping[str, Any]] = attrs.field(factory=dict, hash=False)
    #: Where each value came from: ``"default"``, ``"pyproject.toml (<path>)"``,
    #: ``"env PYWORKFLOW_<KEY>"`` or ``"configure()"``; plugin keys appear as ``"<table>.<key>"``.
    sources: Mapping[str, str] = attrs.field(factory=dict, eq=False)

    def source_of(self, key: str) -> str:
        """Where config key ``key`` got its value (``"default"`` when unknown)."""
        return self.sources.get(key, _DEFAULT_SOURCE)


# ----- per-key parsing: every error names the key, its source and the expected type -----

_Parser = Callable[[str, Any, str, bool], Any]


def _type_error(key: str, source: str, expected: str, value: Any) -> ConfigError:
    return ConfigError(
        f"config key {key!r} (from {source}) must be {expected}, "
        f"got {redacted_repr(key, value)} of type {type(value).__name__}"
    )


def _parse_str(key: str, value: Any, source: str, from_env: bool) -> str:
    if not isinstance(value, str) or not value.strip():
        raise _type_error(key, source, "a non-empty string", value)
    return value.strip()


def _parse_optional_str(key: str, value: Any, source: str, from_env: bool) -> str | None:
    if value is None or (from_env and value.strip() == ""):
        return None
    if not isinstance(value, str):
        raise _type_error(key, source, "a string", value)
    return value.strip() or None


def _parse_modules(key: str, value: Any, source: str, from_env: bool) -> tuple[str, ...]:
    expected = "a list of module names (or a comma-separated string)"
    if isinstance(value, str):
        items: list[Any] = value.split(",")
    elif isinstance(value, list | tuple):
        items = list(value)
    else:
        raise _type_error(key, source, expected, value)
    if not all(isinstance(item, str) for item in items):
        raise _type_error(key, source, expected, value)
    return tuple(item.strip() for item in items if item.strip())


def _parse_positive_int(key: str, value: Any, source: str, from_env: bool) -> int:
    expected = "a positive integer"
    if from_env and isinstance(value, str):
        try:
            value = int(value.strip().replace("_", ""))
        except ValueError:
            raise _type_error(key, source, expected, value) from None
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise _type_error(key, source, expected, value)
    return value


def _parse_float(key: str, value: Any, source: str, *, from_env: bool, allow_zero: bool) -> float:
    expected = "a number of seconds (>= 0)" if allow_zero else "a positive number of seconds"
    if from_env and isinstance(value, str):
        try:
            value = float(value.strip())
        except ValueError:
            raise _type_error(key, source, expected, value) from None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _type_error(key, source, expected, value)
    number = float(value)
    if number != number or number < 0 or (number == 0 and not allow_zero):  # NaN or out of range
        raise _type_error(key, source, expected, value)
    return number


def _parse_positive_float(key: str, value: Any, source: str, from_env: bool) -> float:
    return _parse_float(key, value, source, from_env=from_env, allow_zero=False)


def _parse_nonnegative_float(key: str, value: Any, source: str, from_env: bool) -> float:
    return _parse_float(key, value, source, from_env=from_env, allow_zero=True)


_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})


def _parse_bool(key: str, value: Any, source: str, from_env: bool) -> bool:
    if from_env and isinstance(value, str):
        lowered = value.strip().lower()
        if lowered in _TRUE:
            return True
        if lowered in _FALSE:
            return False
        raise _type_error(key, source, "a boolean (1/0, true/false, yes/no, on/off)", value)
    if not isinstance(value, bool):
        raise _type_error(key, source, "a boolean (true or false)", value)
    return value


def _parse_sqlite_synchronous(key: str, value: Any, source: str, from_env: bool) -> str:
    if not isinstance(value, str) or value.strip().upper() not in SQLITE_SYNCHRONOUS:
        raise _type_error(key, source, f"one of {', '.join(SQLITE_SYNCHRONOUS)}", value)
    return value.strip().upper()


_PARSERS: dict[str, _Parser] = {
    "storage": _parse_str,
    "executor": _parse_str,
    "serializer": _parse_str,
    "modules": _parse_modules,
    "max_payload_bytes": _parse_positive_int,
    "checkpoint_interval": _parse_nonnegative_float,
    "checkpoint_max_bytes": _parse_positive_int,
    "event_soft_limit": _parse_positive_int,
    "event_hard_limit": _parse_positive_int,
    "lease_seconds": _parse_positive_float,
    "poll_interval": _parse_positive_float,
    "worker_concurrency": _parse_positive_int,
    "embedded_worker": _parse_bool,
    "drain_timeout": _parse_nonnegative_float,
    "sqlite_synchronous": _parse_sqlite_synchronous,
    "public_url": _parse_optional_str,
    "log_level": _parse_optional_str,
}
#: The config keys users may set (every field of :class:`Settings` but the bookkeeping ones).
KEYS: tuple[str, ...] = tuple(sorted(_PARSERS))


def _unknown_key(key: str, where: str, hint: str = "") -> ConfigError:
    close = difflib.get_close_matches(key, KEYS, n=1)
    suggestion = f" (did you mean {close[0]!r}?)" if close else ""
    return ConfigError(
        f"unknown config key {key!r} {where}{suggestion}; valid keys: {', '.join(KEYS)}{hint}"
    )


# ----- the layers -----


def find_pyproject(start: Path) -> Path | None:
    """The nearest ``pyproject.toml`` in ``start`` or one of its parents, if any."""
    start = start.absolute()
    for directory in (start, *start.parents):
        candidate = directory / "pyproject.toml"
        if candidate.is_file():
            return candidate
    return None


def _pyproject_layer(cwd: Path) -> tuple[dict[str, Any], dict[str, dict[str, Any]], str]:
    """``[tool.pyworkflow]`` of the nearest pyproject.toml: (keys, plugin tables, source)."""
    path = find_pyproject(cwd)
    if path is None:
        return {}, {}, ""
    source = f"pyproject.toml ({path})"
    import tomllib  # only where there is a pyproject.toml to read

    try:
        with path.open("rb") as fh:
            document = tomllib.load(fh)
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"cannot read {path}: {exc}") from exc
    table = document.get("tool", {}).get("pyworkflow", {})
    if not isinstance(table, dict):
        raise ConfigError(
            f"[tool.pyworkflow] in {path} must be a table, got {redact_text(repr(table))}"
        )
    keys: dict[str, Any] = {}
    plugin_tables: dict[str, dict[str, Any]] = {}
    for key, value in table.items():
        if key in _PARSERS:
            keys[key] = value
        elif isinstance(value, dict):
            plugin_tables[key] = value
        else:
            raise _unknown_key(
                key,
                f"in [tool.pyworkflow] of {path}",
                "; plugin options go in their own table, e.g. [tool.pyworkflow.celery]",
            )
    return keys, plugin_tables, source


def _env_layer(
    environ: Mapping[str, str],
) -> tuple[dict[str, tuple[str, str]], dict[str, dict[str, tuple[str, str]]]]:
    """``PYWORKFLOW_*`` variables: ({key: (raw, source)}, {table: {option: (raw, source)}}).

    ``PYWORKFLOW_<TABLE>__<OPTION>`` (two underscores) sets an option of a
    plugin table, e.g. ``PYWORKFLOW_CELERY__BROKER_URL``; plugin values stay
    strings, which each plugin parses.
    """
    layer: dict[str, tuple[str, str]] = {}
    tables: dict[str, dict[str, tuple[str, str]]] = {}
    for name, value in sorted(environ.items()):
        if not name.startswith(ENV_PREFIX):
            continue
        key = name[len(ENV_PREFIX) :].lower()
        if "__" in key:
            table, _, option = key.partition("__")
            if table and option:
                tables.setdefault(table, {})[option] = (value, f"env {name}")
                continue
        if key not in _PARSERS:
            raise _unknown_key(
                key,
                f"from environment variable {name}",
                f"; set them as {ENV_PREFIX}<KEY>, or a plugin option as "
                f"{ENV_PREFIX}<PLUGIN>__<OPTION>",
            )
        layer[key] = (value, f"env {name}")
    return layer, tables


def load_settings(
    overrides: Mapping[str, Any] | None = None,
    *,
    cwd: Path | None = None,
    environ: Mapping[str, str] | None = None,
) -> Settings:
    """Resolve the settings of this process, later layers winning.

    Layers: defaults, then ``[tool.pyworkflow]`` of the nearest
    ``pyproject.toml`` in ``cwd`` (default: the current directory) or a
    parent, then ``PYWORKFLOW_<KEY>`` variables of ``environ`` (default:
    ``os.environ``), then ``overrides`` (what ``configure()`` was given).
    Mapping values in pyproject or overrides whose name is not a config key
    are plugin tables (``[tool.pyworkflow.celery]``), merged key by key.

    Raises :class:`~pyworkflow.errors.ConfigError` naming the key and where
    it came from for an unknown key or a value of the wrong type. Plugin
    names (storage scheme, executor, serializer) are checked later, when
    :mod:`pyworkflow.plugins` creates them.
    """
    values: dict[str, Any] = {}
    sources: dict[str, str] = {key: _DEFAULT_SOURCE for key in KEYS}
    plugin_tables: dict[str, dict[str, Any]] = {}

    def set_value(key: str, raw: Any, source: str, *, from_env: bool = False) -> None:
        values[key] = _PARSERS[key](key, raw, source, from_env)
        sources[key] = source

    def merge_table(name: str, table: Mapping[str, Any], source: str) -> None:
        merged = plugin_tables.setdefault(name, {})
        for option, value in table.items():
            merged[option] = value
            sources[f"{name}.{option}"] = source

    file_keys, file_tables, file_source = _pyproject_layer(Path.cwd() if cwd is None else cwd)
    for key, raw in file_keys.items():
        set_value(key, raw, file_source)
    for name, table in file_tables.items():
        merge_table(name, table, file_source)

    env_keys, env_tables = _env_layer(os.environ if environ is None else environ)
    for key, (raw, source) in env_keys.items():
        set_value(key, raw, source, from_env=True)
    for name, options in env_tables.items():
        for option, (raw, source) in options.items():
            merge_table(name, {option: raw}, source)

    for key, raw in (overrides or {}).items():
        if key in _PARSERS:
            set_value(key, raw, _CONFIGURE_SOURCE)
        elif isinstance(raw, Mapping):
            merge_table(key, raw, _CONFIGURE_SOURCE)
        else:
            raise _unknown_key(
                key,
                "passed to configure()",
                "; pass plugin options as a mapping, e.g. configure(celery={...})",
            )

    _check_event_limits(values, sources)
    return Settings(**values, plugin_tables=plugin_tables, sources=sources)


def _check_event_limits(values: Mapping[str, Any], sources: Mapping[str, str]) -> None:
    """``event_soft_limit`` must be below ``event_hard_limit`` (each from any layer)."""
    fields = attrs.fields(Settings)
    soft = values.get("event_soft_limit", fields.event_soft_limit.default)
    hard = values.get("event_hard_limit", fields.event_hard_limit.default)
    if soft >= hard:
        raise ConfigError(
            f"config key 'event_soft_limit' ({soft}, from {sources['event_soft_limit']}) must be "
            f"below 'event_hard_limit' ({hard}, from {sources['event_hard_limit']}): the soft "
            "limit warns before the hard limit fails the run"
        )
