"""``pyworkflow hooks resume``: send a payload to a waiting workflow."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from pyworkflow.cli import render
from pyworkflow.cli.app import App, app

hooks_app = App(help="Send payloads to hooks.", no_args_is_help=True)
app.add_typer(hooks_app, name="hooks")


def read_data(data: str) -> Any:
    """``JSON`` text or ``@file`` holding JSON."""
    from pyworkflow.jsoninput import JsonInputError, loads_strict

    raw = Path(data[1:]).read_bytes() if data.startswith("@") else data
    try:
        return loads_strict(raw)
    except JsonInputError as exc:
        raise typer.BadParameter(f"--data is not acceptable JSON: {exc}") from None


@hooks_app.command()
def resume(
    token: str,
    data: Annotated[str, typer.Option(help="The payload: JSON, or @file with JSON.")] = "null",
    delivery_id: Annotated[
        str | None,
        typer.Option(help="Idempotency id: a repeat with the same id records nothing."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Resume the hook TOKEN with a payload."""
    import pyworkflow

    run_id = pyworkflow.resume_hook(token, read_data(data), delivery_id=delivery_id)
    if as_json:
        render.print_json({"token": token, "run_id": run_id})
    else:
        render.console.print(f"payload delivered to run {run_id}")
