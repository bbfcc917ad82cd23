"""The ``pyworkflow`` command line (Typer)."""

from __future__ import annotations

from pyworkflow.cli.app import app, main

__all__ = ["app", "main"]
