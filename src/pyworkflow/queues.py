"""Queues: flow control for runs, configured in ``[tool.pyworkflow.queues.<name>]``.

A run started with ``queue="emails"`` (or of a workflow declared with
``@workflow(queue="emails")``) waits in status ``queued`` when that queue has
limits, and a worker admits it when the limits allow, in the same atomic
storage operation that counts them (``Storage.admit_queued_runs``). A queue
without any configured limit admits at once: its runs start as ``pending``,
yet count as active runs of the queue. See ``docs/queues.md``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import attrs
from loguru import logger

from pyworkflow.config import Settings
from pyworkflow.durations import parse_duration
from pyworkflow.errors import ConfigError
from pyworkflow.models import QueueLimits, Run
from pyworkflow.redaction import redacted_repr

if TYPE_CHECKING:
    from pyworkflow.runtime import Runtime

__all__ = [
    "DEFAULT_PRIORITY_AGING",
    "QueueConfig",
    "admit_queued",
    "check_priority",
    "check_queue_name",
    "parse_rate",
    "placement",
    "queue_configs",
    "queue_rank",
    "waits_in_queue",
]

#: Seconds of waiting one priority point is worth, unless the queue sets ``priority_aging``.
DEFAULT_PRIORITY_AGING = 60.0
#: The table under ``[tool.pyworkflow]`` that holds the queues.
TABLE = "queues"
#: The largest priority (either sign) a run may have.
MAX_PRIORITY = 1_000_000
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}")
_RATE = re.compile(r"\s*([0-9]+)\s*/\s*([0-9]*\.?[0-9]*)\s*([a-z]*)\s*", re.ASCII)
_RATE_UNITS = {
    "ms": 0.001,
    "s": 1.0,
    "sec": 1.0,
    "second": 1.0,
    "m": 60.0,
    "min": 60.0,
    "minute": 60.0,
    "h": 3600.0,
    "hour": 3600.0,
    "d": 86400.0,
    "day": 86400.0,
}
_OPTIONS = ("concurrency", "worker_concurrency", "partition_concurrency", "rate", "priority_aging")


@attrs.frozen
class QueueConfig:
    """One queue's limits, from ``[tool.pyworkflow.queues.<name>]``.

    - ``concurrency``: runs of the queue active at once (pending, running or
      suspended) across all workers.
    - ``worker_concurrency``: of those, admitted by one worker process.
    - ``partition_concurrency``: active at once per ``partition_key``.
    - ``rate``: ``(count, period)``, at most ``count`` runs admitted in any
      window of ``period`` (``rate = "100/min"``).
    - ``priority_aging``: seconds of waiting worth one priority point.
    """

    name: str
    concurrency: int | None = None
    worker_concurrency: int | None = None
    partition_concurrency: int | None = None
    rate: tuple[int, timedelta] | None = None
    priority_aging: float = DEFAULT_PRIORITY_AGING

    @property
    def limits(self) -> QueueLimits:
        """What admission checks for this queue."""
        return QueueLimits(
            self.concurrency, self.worker_concurrency, self.partition_concurrency, self.rate
        )

    @property
    def limited(self) -> bool:
        """Whether any limit is set (a queue without one admits its runs at once)."""
        return any(
            value is not None
            for value in (
                self.concurrency,
                self.worker_concurrency,
                self.partition_concurrency,
                self.rate,
            )
        )


def check_queue_name(name: object, what: str = "queue name") -> str:
    """``name`` if it is a valid queue name; ``TypeError``/``ValueError`` naming it otherwise."""
    if not isinstance(name, str):
        raise TypeError(f"{what} must be a string, got {type(name).__name__}")
    if not _NAME.fullmatch(name):
        raise ValueError(
            f"invalid {what} {name[:140]!r}: use 1-128 letters, digits and _ . : - "
            "(starting with a letter or digit)"
        )
    return name


def parse_rate(value: object, *, what: str = "rate") -> tuple[int, timedelta]:
    """``"100/min"``, ``"20/5s"``, ``"10/second"`` as ``(count, period)``; ValueError otherwise."""
    if not isinstance(value, str):
        raise TypeError(f"{what} must be a string such as '100/min', got {type(value).__name__}")
    match = _RATE.fullmatch(value)
    unit = match.group(3) if match else ""
    factor = _RATE_UNITS.get(unit)
    if factor is None and unit.endswith("s"):  # "seconds", "mins"
        factor = _RATE_UNITS.get(unit[:-1])
    if match is None or factor is None:
        raise ValueError(
            f"invalid {what} {value[:100]!r}: write '<count>/<period>', for example '100/min', "
            "'20/5s' or '3/second' (units ms, s, m, min, h, d)"
        )
    count = int(match.group(1))
    number = float(match.group(2)) if match.group(2) else 1.0
    period = timedelta(seconds=number * factor)
    if count < 1 or period <= timedelta(0) or period > timedelta(days=366):
        raise ValueError(
            f"invalid {what} {value!r}: the count must be at least 1 and the period between "
            "1 ms and a year"
        )
    return count, period


_last_enqueue = 0.0


def queue_rank(created_at: datetime, priority: int, aging: float) -> float:
    """The order key of a waiting run: enqueue time (epoch s) minus ``priority * aging``.

    Runs enqueued by one process at the same instant (a frozen test clock)
    keep their order: each enqueue time is at least a microsecond after the
    previous one of the process.
    """
    global _last_enqueue
    enqueued = max(created_at.timestamp(), _last_enqueue + 1e-6)
    _last_enqueue = enqueued
    return enqueued - priority * aging


def waits_in_queue(runtime: Runtime, queue: str | None) -> bool:
    """Whether a run of ``queue`` must wait to be admitted: its queue has limits here."""
    config = runtime.queue_configs.get(queue) if queue is not None else None
    return config is not None and config.limited


def placement(runtime: Runtime, queue: str | None, priority: int, now: datetime) -> dict[str, Any]:
    """The queue fields of a new run of ``queue`` created at ``now``, for ``Run(**...)``.

    A run of a queue with limits is created ``queued`` and not due (a worker
    admits it); any other run is ``pending`` and due at once. Every run of a
    queue gets its rank (:func:`queue_rank`).
    """
    from pyworkflow.models import RunStatus

    waits = waits_in_queue(runtime, queue)
    rank = None
    if queue is not None:
        config = runtime.queue_configs.get(queue)
        aging = config.priority_aging if config is not None else DEFAULT_PRIORITY_AGING
        rank = queue_rank(now, priority, aging)
    return {
        "status": RunStatus.QUEUED if waits else RunStatus.PENDING,
        "wake_at": None if waits else now,
        "queue": queue,
        "priority": priority,
        "queue_rank": rank,
    }


def check_priority(priority: object) -> int:
    """``priority`` if it is an int within +-1,000,000 (not a bool); a clear error otherwise."""
    if isinstance(priority, bool) or not isinstance(priority, int):
        raise TypeError(f"priority must be an int, got {type(priority).__name__}")
    if abs(priority) > MAX_PRIORITY:
        raise ValueError(f"priority must be between -{MAX_PRIORITY} and {MAX_PRIORITY}")
    return priority


def queue_configs(settings: Settings) -> dict[str, QueueConfig]:
    """The queues configured in ``settings`` (``[tool.pyworkflow.queues.*]``), by name.

    Raises :class:`ConfigError` naming the queue, the option, where it came
    from and the value, for an unknown option or a value of the wrong type
    (values are never coerced from another type; strings from
    ``PYWORKFLOW_QUEUES__<NAME>__<OPTION>`` are parsed).
    """
    table = settings.plugin_tables.get(TABLE)
    if table is None:
        return {}
    grouped: dict[str, dict[str, tuple[Any, str, bool]]] = {}
    for key, value in table.items():
        if isinstance(value, Mapping):  # [tool.pyworkflow.queues.emails] or configure()
            for option, raw in value.items():
                source = settings.source_of(f"{TABLE}.{key}")
                grouped.setdefault(key, {})[str(option)] = (raw, source, False)
            continue
        # PYWORKFLOW_QUEUES__EMAILS__CONCURRENCY=3 arrives as option "emails__concurrency"
        name, sep, option = str(key).rpartition("__")
        source = settings.source_of(f"{TABLE}.{key}")
        if not sep or not name:
            raise ConfigError(
                f"queue option {key!r} (from {source}) must be in a table per queue: "
                "[tool.pyworkflow.queues.<name>] or PYWORKFLOW_QUEUES__<NAME>__<OPTION>"
            )
        grouped.setdefault(name, {})[option] = (value, source, isinstance(value, str))
    return {name: _queue(name, options) for name, options in grouped.items()}


def _queue(name: str, options: Mapping[str, tuple[Any, str, bool]]) -> QueueConfig:
    try:
        check_queue_name(name)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"[tool.pyworkflow.queues]: {exc}") from None
    values: dict[str, Any] = {}
    for option, (raw, source, from_env) in options.items():
        where = f"queues.{name}.{option} (from {source})"
        if option not in _OPTIONS:
            raise ConfigError(
                f"unknown queue option {where}; the options are {', '.join(_OPTIONS)}"
            )
        try:
            if option == "rate":
                values[option] = parse_rate(raw, what=f"queues.{name}.rate")
            elif option == "priority_aging":
                seconds = parse_duration(raw, what=where).total_seconds()
                if seconds <= 0:
                    raise ValueError("must be a positive duration")
                values[option] = seconds
            else:
                values[option] = _positive_int(raw, from_env)
        except (TypeError, ValueError) as exc:
            raise ConfigError(
                f"config {where} is invalid: {exc} (got {redacted_repr(option, raw)})"
            ) from None
    return QueueConfig(name, **values)


def _positive_int(raw: Any, from_env: bool) -> int:
    if from_env and isinstance(raw, str) and raw.strip().isdigit():
        raw = int(raw.strip())
    if isinstance(raw, bool) or not isinstance(raw, int) or raw < 1:
        raise TypeError("expected a positive integer")
    return raw


async def admit_queued(
    runtime: Runtime,
    owner: str,
    now: datetime,
    limit: int,
    lease_for: timedelta,
    *,
    worker: str | None,
) -> list[Run]:
    """Admit waiting runs of every limited queue, up to ``limit`` in all; the admitted runs.

    Each comes back leased to ``owner``: the caller activates it (a worker) or
    sends its activation (a dispatcher). A storage error is logged and
    admits nothing this time (the next pass tries again).
    """
    admitted: list[Run] = []
    for config in runtime.queue_configs.values():
        if not config.limited or len(admitted) >= limit:
            continue
        try:
            admitted += await runtime.storage.admit_queued_runs(
                config.name,
                config.limits,
                owner,
                now,
                limit - len(admitted),
                lease_for,
                worker=worker,
            )
        except Exception:
            logger.bind(queue=config.name).exception(
                "admitting queued runs failed; retrying on the next pass"
            )
    for run in admitted:
        logger.bind(run_id=run.run_id, queue=run.queue).debug("admitted from its queue")
    return admitted
