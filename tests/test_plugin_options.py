"""The shared parsers of plugin tables: TOML values and environment strings alike."""

from __future__ import annotations

import math
from typing import Any

import pytest

from pyworkflow.config import load_settings
from pyworkflow.errors import ConfigError
from pyworkflow.plugin_options import (
    option_bool,
    option_choice,
    option_names,
    option_optional_text,
    option_positive_int,
    option_seconds,
    option_text,
    parse_plugin_table,
)


@pytest.mark.parametrize(
    ("parse", "raw", "value"),
    [
        (option_text, "  x ", "x"),
        (option_optional_text, "", None),
        (option_optional_text, None, None),
        (option_seconds, "2.5", 2.5),
        (option_seconds, 3, 3.0),
        (option_positive_int, "8", 8),
        (option_bool, "off", False),
        (option_bool, "Yes", True),
        (option_bool, True, True),
        (option_names, "a, b,,c", ("a", "b", "c")),
        (option_names, ["a"], ("a",)),
        (option_choice("fsync", "relaxed"), "RELAXED", "relaxed"),
    ],
)
def test_parsers_accept(parse: Any, raw: Any, value: Any) -> None:
    assert parse(raw) == value


@pytest.mark.parametrize(
    ("parse", "raw"),
    [
        (option_text, ""),
        (option_text, 3),
        (option_seconds, 0),
        (option_seconds, "soon"),
        (option_seconds, math.nan),
        (option_seconds, True),
        (option_positive_int, 0),
        (option_positive_int, 2.5),
        (option_positive_int, "x"),
        (option_bool, "maybe"),
        (option_bool, 1),
        (option_names, 3),
        (option_choice("fsync", "relaxed"), "fast"),
    ],
)
def test_parsers_refuse(parse: Any, raw: Any) -> None:
    with pytest.raises(TypeError):
        parse(raw)


PARSERS = {"size": option_positive_int, "name": option_text}


def test_table_is_parsed_and_errors_name_option_source_and_value(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PYWORKFLOW_DEMO__SIZE", "4")
    assert parse_plugin_table(load_settings(), "demo", PARSERS) == {"size": 4}

    monkeypatch.setenv("PYWORKFLOW_DEMO__SIZE", "-1")
    with pytest.raises(ConfigError) as bad:
        parse_plugin_table(load_settings(), "demo", PARSERS)
    message = str(bad.value)
    assert "'size'" in message and "[tool.pyworkflow.demo]" in message
    assert "PYWORKFLOW_DEMO__SIZE" in message and "'-1'" in message

    monkeypatch.setenv("PYWORKFLOW_DEMO__SIZ", "1")
    monkeypatch.delenv("PYWORKFLOW_DEMO__SIZE")
    with pytest.raises(ConfigError, match=r"unknown option 'siz'.*valid options: name, size"):
        parse_plugin_table(load_settings(), "demo", PARSERS)
