"""Schedules: start a workflow at each tick of a cron expression or interval (docs/schedules.md).

The names below are imported on first use, so that a worker that fires no
schedule never loads the cron parser.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pyworkflow.schedules.api import (
        acreate_schedule,
        adelete_schedule,
        aget_schedule,
        alist_schedules,
        apause_schedule,
        aresume_schedule,
        atrigger_schedule,
        create_schedule,
        delete_schedule,
        get_schedule,
        list_schedules,
        pause_schedule,
        resume_schedule,
        trigger_schedule,
    )
    from pyworkflow.schedules.spec import Cron, Every

__all__ = [
    "Cron",
    "Every",
    "acreate_schedule",
    "adelete_schedule",
    "aget_schedule",
    "alist_schedules",
    "apause_schedule",
    "aresume_schedule",
    "atrigger_schedule",
    "create_schedule",
    "delete_schedule",
    "get_schedule",
    "list_schedules",
    "pause_schedule",
    "resume_schedule",
    "trigger_schedule",
]


if not TYPE_CHECKING:

    def __getattr__(name: str) -> Any:
        if name in ("Cron", "Every"):
            return getattr(importlib.import_module("pyworkflow.schedules.spec"), name)
        if name in __all__:
            return getattr(importlib.import_module("pyworkflow.schedules.api"), name)
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
