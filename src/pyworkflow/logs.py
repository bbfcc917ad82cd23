"""Turning PyWorkflow's loguru logs on and off (the library is silent until asked)."""

from __future__ import annotations

import sys
import threading
from typing import TYPE_CHECKING, Any

from loguru import logger

from pyworkflow.redaction import redact_settings, redact_text

if TYPE_CHECKING:
    from loguru import Logger, Record

__all__ = [
    "BOUND_KEYS",
    "debug_enabled",
    "disable_logging",
    "enable_logging",
    "get_library_logger",
]

#: Ids bound to log records (``logger.bind(run_id=...)``) that the text format shows.
BOUND_KEYS = ("workflow", "run_id", "step_id")

_LIBRARY = "pyworkflow"
_lock = threading.Lock()
_handlers: list[int] = []
_default_removed = False


def library_packages() -> list[str]:
    """``pyworkflow`` and the top-level packages of installed plugins (entry-point group).

    Their logs are silent until :func:`enable_logging`, like the core's.
    """
    from importlib.metadata import distributions

    names = [_LIBRARY]
    for dist in distributions():
        text = dist.read_text("entry_points.txt")
        if not text or _LIBRARY not in text:  # parse only what may declare one: faster
            continue
        for entry in dist.entry_points.select(group=_LIBRARY):
            root = entry.value.split(":", 1)[0].split(".", 1)[0]
            if root not in names:
                names.append(root)
    return names


def silence_library() -> None:
    """Disable the logs of ``pyworkflow`` and of every installed plugin package."""
    for name in library_packages():
        logger.disable(name)


def _text_format(record: Record) -> str:
    """Time, level, logger name, message, then the bound ids present on this record."""
    ids = " ".join(f"{key}={{extra[{key}]}}" for key in BOUND_KEYS if key in record["extra"])
    return (
        "<green>{time:YYYY-MM-DD HH:mm:ss.SSS}</green> | <level>{level: <8}</level> | "
        "<cyan>{name}</cyan> | <level>{message}</level>"
        + (f" | <dim>{ids}</dim>" if ids else "")
        + "\n{exception}"
    )


def _scrub(record: Record) -> bool:
    """Filter of the sinks added here: hide secrets in the message and the bound fields.

    Passwords in URLs and the values of secret-named fields (``api_token``,
    ...) become ``***`` (:mod:`pyworkflow.redaction`); the record is kept.
    """
    record["message"] = redact_text(record["message"])
    if record["extra"]:
        record["extra"] = redact_settings(record["extra"])
    return True


class _RedactingStream:
    """A text stream that writes what loguru gives it with secrets hidden.

    Catches what the record filter cannot reach: the exception text and
    traceback loguru formats after filtering.
    """

    def __init__(self, stream: Any) -> None:
        self.stream = stream

    def write(self, text: str) -> None:
        self.stream.write(redact_text(text))

    def flush(self) -> None:
        flush = getattr(self.stream, "flush", None)
        if callable(flush):
            flush()

    def isatty(self) -> bool:
        isatty = getattr(self.stream, "isatty", None)
        return bool(isatty()) if callable(isatty) else False


def _redacting(sink: Any) -> Any:
    """``sink`` behind :class:`_RedactingStream` when it is a text stream, else as given."""
    if callable(getattr(sink, "write", None)):
        return _RedactingStream(sink)
    return sink


def enable_logging(level: str = "INFO", *, json: bool = False, sink: Any = sys.stderr) -> int:
    """Show PyWorkflow's logs at ``level`` and above on ``sink``; returns the handler id.

    Text lines show time, level, message and the bound ``workflow``,
    ``run_id`` and ``step_id`` when present; ``json=True`` writes one JSON
    object per line instead (loguru's ``serialize``, ids under
    ``record.extra``). ``sink`` is anything ``loguru.logger.add`` accepts.

    The first call removes loguru's stock stderr handler if it is still
    installed, since it would print every line a second time; the new sink
    takes every loguru record at ``level`` or above, the application's too.

    Secrets never reach the sink: passwords in URLs and the values of
    secret-named bound fields are replaced by ``***`` in messages, extras
    and (for stream sinks) exception texts, and tracebacks do not show
    variable values (``diagnose=False``); see :mod:`pyworkflow.redaction`.

    ```python
    import pyworkflow

    handler = pyworkflow.enable_logging("DEBUG", json=True)  # one JSON object per line
    ...
    pyworkflow.disable_logging(handler)
    ```
    """
    global _default_removed
    with _lock:
        if not _default_removed:
            _default_removed = True
            try:
                logger.remove(0)
            except ValueError:  # the application already removed or replaced it
                pass
        for name in library_packages():
            logger.enable(name)
        options: dict[str, Any] = {"level": level.upper(), "filter": _scrub, "diagnose": False}
        if json:
            handler_id = logger.add(_redacting(sink), serialize=True, **options)
        else:
            handler_id = logger.add(_redacting(sink), format=_text_format, **options)
        _handlers.append(handler_id)
        return handler_id


def disable_logging(handler_id: int | None = None) -> None:
    """Remove a sink added by :func:`enable_logging` (all of them when ``None``).

    PyWorkflow's logs are silenced again once none of those sinks remain.
    """
    with _lock:
        targets = list(_handlers) if handler_id is None else [handler_id]
        for target in targets:
            try:
                logger.remove(target)
            except ValueError:  # already removed by the application
                pass
            if target in _handlers:
                _handlers.remove(target)
        if not _handlers:
            silence_library()


_DEBUG_NO = 10  # loguru's DEBUG severity


def debug_enabled(module: str) -> bool:
    """Whether a DEBUG line logged from ``module`` may reach a sink: a cheap test for hot paths.

    It makes loguru's own first tests, before loguru builds anything for the
    line: no sink takes DEBUG (``min_level``), or ``module`` is disabled
    (loguru's per-module cache, which ``logger.enable``/``disable`` clear).
    When a test cannot be made it answers True and loguru decides.
    """
    core: Any = getattr(logger, "_core", None)
    try:
        if core.min_level > _DEBUG_NO:
            return False
        return core.enabled.get(module) is not False
    except AttributeError:  # another loguru: let it decide
        return True


def get_library_logger(**bind: Any) -> Logger:
    """PyWorkflow's logger with ``bind`` ids attached (``run_id=..., workflow=...``)."""
    return logger.bind(**bind)
