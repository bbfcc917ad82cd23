"""enable_logging / disable_logging: loguru sinks for PyWorkflow's logs."""

from __future__ import annotations

import io
import json
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from loguru import logger

from pyworkflow.logs import disable_logging, enable_logging, get_library_logger


def _library_emitter() -> Callable[..., None]:
    """A function whose records carry a ``pyworkflow.*`` module name, like library code."""
    namespace: dict[str, Any] = {"__name__": "pyworkflow._logtest", "logger": logger}
    exec(  # loguru names records after the calling module's __name__
        "def emit(level, message, **bind):\n    logger.bind(**bind).log(level, message)\n",
        namespace,
    )
    emit: Callable[..., None] = namespace["emit"]
    return emit


emit = _library_emitter()


@pytest.fixture(autouse=True)
def _quiet_again() -> Iterator[None]:
    disable_logging()
    yield
    disable_logging()


def test_library_is_quiet_until_enabled() -> None:
    sink = io.StringIO()
    handler = logger.add(sink, level="DEBUG")
    try:
        emit("INFO", "unseen")
        enable_logging(sink=io.StringIO())
        emit("INFO", "visible")
    finally:
        logger.remove(handler)
    assert "unseen" not in sink.getvalue()
    assert "visible" in sink.getvalue()


def test_text_format_shows_bound_ids() -> None:
    sink = io.StringIO()
    handler_id = enable_logging("INFO", sink=sink)
    assert isinstance(handler_id, int)
    emit("INFO", "step done", run_id="r1", workflow="greet", step_id="s1")
    emit("DEBUG", "below the level")
    emit("WARNING", "no {ids} here")
    lines = sink.getvalue().splitlines()
    assert len(lines) == 2
    assert "INFO" in lines[0] and "step done" in lines[0]
    assert "workflow=greet run_id=r1 step_id=s1" in lines[0]
    assert "WARNING" in lines[1] and "no {ids} here" in lines[1] and "run_id=" not in lines[1]


def test_json_lines_include_bound_run_id() -> None:
    sink = io.StringIO()
    enable_logging("DEBUG", json=True, sink=sink)
    emit("DEBUG", "hello", run_id="r2", workflow="greet")
    records = [json.loads(line) for line in sink.getvalue().splitlines()]
    assert len(records) == 1
    record = records[0]["record"]
    assert record["message"] == "hello"
    assert record["level"]["name"] == "DEBUG"
    assert record["name"] == "pyworkflow._logtest"
    assert record["extra"] == {"run_id": "r2", "workflow": "greet"}


def test_get_library_logger_binds() -> None:
    sink = io.StringIO()
    enable_logging(json=True, sink=sink)
    get_library_logger(run_id="r3").info("bound")
    (line,) = sink.getvalue().splitlines()
    assert json.loads(line)["record"]["extra"]["run_id"] == "r3"


def test_disable_logging_removes_sink_and_silences() -> None:
    first, second = io.StringIO(), io.StringIO()
    first_id = enable_logging(sink=first)
    enable_logging(sink=second)
    disable_logging(first_id)
    emit("INFO", "only second")
    assert first.getvalue() == ""
    assert "only second" in second.getvalue()

    disable_logging()
    emit("INFO", "nobody")
    assert "nobody" not in second.getvalue()
    disable_logging()  # idempotent


def test_installed_plugins_are_silent_until_enable_logging() -> None:
    from pyworkflow.logs import library_packages

    plugins = [name for name in library_packages() if name != "pyworkflow"]
    if not plugins:
        pytest.skip("no plugin package installed")
    code = compile("logger.warning('from a plugin')", "<plugin>", "exec")
    seen: list[str] = []
    probe = logger.add(lambda m: seen.append(str(m)), level="DEBUG", format="{name}: {message}")
    try:
        exec(code, {"__name__": f"{plugins[0]}.module", "logger": logger})
        assert seen == []
        handler = enable_logging(sink=lambda m: None)
        try:
            exec(code, {"__name__": f"{plugins[0]}.module", "logger": logger})
            assert seen == [f"{plugins[0]}.module: from a plugin\n"]
        finally:
            disable_logging(handler)
    finally:
        logger.remove(probe)
