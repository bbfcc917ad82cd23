"""Every hook is documented: the hookspecs match the headings of docs/plugins.md."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

from pyworkflow import hookspecs

DOCS = Path(__file__).parent.parent / "docs"


def test_every_hookspec_has_a_heading_and_nothing_else_does() -> None:
    specs = {
        name
        for name, fn in inspect.getmembers(hookspecs, inspect.isfunction)
        if name.startswith("pyworkflow_")
    }
    headings = set(re.findall(r"^## (pyworkflow_\w+)$", (DOCS / "plugins.md").read_text(), re.M))
    assert specs == headings


def test_every_config_key_is_documented() -> None:
    from pyworkflow.config import KEYS

    text = (DOCS / "configuration.md").read_text()
    missing = [key for key in KEYS if f"`{key}`" not in text]
    assert not missing, missing


def test_every_cli_command_is_documented() -> None:
    import typer.main

    from pyworkflow.cli import app

    group = typer.main.get_group(app)
    documented = "\n".join(p.read_text() for p in (DOCS / "cli").glob("*.md"))
    for name, command in group.commands.items():
        sub = getattr(command, "commands", None)
        if sub:
            for child in sub:
                assert f"{name} {child}" in documented, f"{name} {child}"
        else:
            assert f"pyworkflow {name}" in documented, name
