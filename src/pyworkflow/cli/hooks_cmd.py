"""``pyworkflow hooks resume``: send a payload to a waiting workflow."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from pyworkflow.cli import render
from pyworkflow.cli.app import app

hooks_app = typer.Typer(help="Send payloads to hooks.", no_args_is_help=True)
app.add_typer(hooks_app, name="hooks")


def read_data(data: str) -> Any:
    """``JSON`` text or ``@file`` holding JSON."""
    text = Path(data[1:]).read_text() if data.startswith("@") else data
    try:
        return json.loads(text)
    except ValueError as exc:
        raise typer.BadParameter(f"--data is not valid JSON: {exc}") from None


@hooks_app.command()
def resume(
    token: str,
    data: Annotated[str, typer.Option(help="The payload: JSON, or @file with JSON.")] = "null",
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Resume the hook TOKEN with a payload."""
    import pyworkflow

    run_id = pyworkflow.resume_hook(token, read_data(data))
    if as_json:
        render.print_json({"token": token, "run_id": run_id})
    else:
        render.console.print(f"payload delivered to run {run_id}")
