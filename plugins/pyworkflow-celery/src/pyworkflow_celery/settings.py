"""``[tool.pyworkflow.celery]``: the Celery executor's options."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import attrs

from pyworkflow.config import Settings
from pyworkflow.errors import ConfigError

__all__ = ["CelerySettings"]


def _text(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise TypeError("a non-empty string")
    return value.strip()


def _optional_text(value: Any) -> str | None:
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    return _text(value)


def _seconds(value: Any) -> float:
    if isinstance(value, bool):
        raise TypeError("a positive number of seconds")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise TypeError("a positive number of seconds") from None
    if number <= 0:
        raise TypeError("a positive number of seconds")
    return number


def _names(value: Any) -> tuple[str, ...]:
    items = value.split(",") if isinstance(value, str) else value
    if not isinstance(items, list | tuple) or not all(isinstance(i, str) for i in items):
        raise TypeError("a list of module names (or a comma-separated string)")
    return tuple(i.strip() for i in items if i.strip())


@attrs.frozen(kw_only=True)
class CelerySettings:
    """Options of the Celery executor, from ``[tool.pyworkflow.celery]``.

    Every option can also come from ``PYWORKFLOW_CELERY__<OPTION>`` or
    ``configure(celery={...})``.
    """

    #: Celery broker URL.
    broker_url: str = "redis://127.0.0.1:6379/0"
    #: Celery result backend; PyWorkflow keeps results in its storage, so none by default.
    result_backend: str | None = None
    #: Queue of activations (replays of workflow code): light, short tasks.
    workflow_queue: str = "pyworkflow.workflows"
    #: Queue of step bodies.
    step_queue: str = "pyworkflow.steps"
    #: Seconds between sweeps (Celery beat) for due timers, expired leases and lost steps.
    sweep_interval: float = 5.0
    #: Timers due within this many seconds get a Celery message with ``eta``;
    #: later ones are left to the sweep (Redis redelivers long-``eta`` messages).
    eta_horizon: float = 600.0
    #: Seconds a dispatched step may wait in the queue before it is sent again.
    dispatch_timeout: float = 300.0
    #: Extra modules the workers import (besides ``modules`` of ``[tool.pyworkflow]``).
    modules: tuple[str, ...] = ()

    @classmethod
    def from_settings(cls, settings: Settings) -> CelerySettings:
        """Parse the ``celery`` plugin table; a bad key or value is a ConfigError naming it."""
        table: Mapping[str, Any] = settings.plugin_tables.get("celery", {})
        parsers: dict[str, Callable[[Any], Any]] = {
            "broker_url": _text,
            "result_backend": _optional_text,
            "workflow_queue": _text,
            "step_queue": _text,
            "sweep_interval": _seconds,
            "eta_horizon": _seconds,
            "dispatch_timeout": _seconds,
            "modules": _names,
        }
        values: dict[str, Any] = {}
        for key, raw in table.items():
            source = settings.source_of(f"celery.{key}")
            parse = parsers.get(key)
            if parse is None:
                raise ConfigError(
                    f"unknown option {key!r} in [tool.pyworkflow.celery] (from {source}); "
                    f"valid options: {', '.join(sorted(parsers))}"
                )
            try:
                values[key] = parse(raw)
            except TypeError as exc:
                raise ConfigError(
                    f"option {key!r} of [tool.pyworkflow.celery] (from {source}) must be "
                    f"{exc}, got {raw!r}"
                ) from None
        return cls(**values)
