"""The ``pyworkflow`` command line (Typer)."""

from __future__ import annotations

from pyworkflow.cli import hooks_cmd, queues_cmd, replay_cmd, runs, schedules_cmd, storage_cmd
from pyworkflow.cli.app import app, main

__all__ = [
    "app",
    "hooks_cmd",
    "main",
    "queues_cmd",
    "replay_cmd",
    "runs",
    "schedules_cmd",
    "storage_cmd",
]
