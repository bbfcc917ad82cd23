"""Schedules declared in code (``@workflow(schedule=...)``): kept in step with storage.

A worker creates each declared schedule when it first fires schedules. A
stored schedule declared in code whose definition changed (cron, time zone,
input, policies, queue) is updated; its next fire time is recomputed only
if the cron or time zone changed, and a pause set from the CLI or API stays.
A schedule of that name created through the API is left alone (with a
warning). Removing the declaration does not delete the stored schedule:
``pyworkflow schedules delete NAME`` does.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import attrs
from loguru import logger

from pyworkflow.errors import ScheduleNotFoundError
from pyworkflow.models import Schedule, utcnow
from pyworkflow.workflow import WorkflowDefinition, registered_workflows

if TYPE_CHECKING:
    from pyworkflow.runtime import Runtime

__all__ = ["declared_schedule", "sync_declared_schedules"]

_DEFINITION_FIELDS = (
    "workflow_name",
    "cron",
    "timezone",
    "input",
    "serializer",
    "overlap",
    "catchup",
    "grace",
    "catchup_window",
    "queue",
)


def declared_schedule(runtime: Runtime, definition: WorkflowDefinition) -> Schedule | None:
    """The schedule row ``definition`` declares, as it would be created now (None: none)."""
    spec = definition.schedule
    if spec is None:
        return None
    from pyworkflow.schedules.api import build_schedule  # croniter: only for a declared one

    return build_schedule(
        runtime,
        spec.name or definition.name,
        definition.name,
        spec.expression,
        args=spec.args,
        kwargs=spec.kwargs,
        timezone=spec.timezone,
        overlap=spec.overlap,
        catchup=spec.catchup,
        grace=spec.grace,
        catchup_window=spec.catchup_window,
        queue=spec.queue,
        origin="code",
    )


async def sync_declared_schedules(runtime: Runtime) -> None:
    """Create or update in storage every schedule declared by a registered workflow."""
    storage = runtime.storage
    for definition in list(registered_workflows().values()):
        wanted = declared_schedule(runtime, definition)
        if wanted is None:
            continue
        log = logger.bind(schedule=wanted.name, workflow=definition.name)
        try:
            stored = await storage.get_schedule(wanted.name)
        except ScheduleNotFoundError:
            _, created = await storage.create_schedule(wanted)
            if created:
                log.info("schedule declared in code created ({})", wanted.cron)
            continue
        if stored.origin != "code":
            log.warning(
                "a schedule named {!r} was created through the API; the one declared on "
                "workflow {!r} is not applied (delete one, or name the declared one)",
                wanted.name,
                definition.name,
            )
            continue
        if all(getattr(stored, f) == getattr(wanted, f) for f in _DEFINITION_FIELDS):
            continue
        retimed = (stored.cron, stored.timezone) != (wanted.cron, wanted.timezone)
        updated = attrs.evolve(
            wanted,
            created_at=stored.created_at,
            updated_at=utcnow(),
            paused=stored.paused,
            next_fire_at=wanted.next_fire_at if retimed else stored.next_fire_at,
            last_fire_at=stored.last_fire_at,
            last_run_id=stored.last_run_id,
        )
        await storage.put_schedule(updated)
        log.info("schedule declared in code updated")
