"""Schedules: a workflow started at each tick of a cron expression, exactly once per tick.

``heartbeat`` is declared with a six-field cron (seconds first): every second.
The embedded worker of this script creates the schedule and fires it; each
run reads the tick it was started for with ``scheduled_at()``. After three
runs the schedule is deleted. An application declares ``@workflow(schedule=
"0 6 * * *")`` or calls ``create_schedule(...)`` and runs ``pyworkflow worker``.
See docs/schedules.md.
"""

from __future__ import annotations

import time

from pyworkflow import Cron, get_result, list_runs, scheduled_at, workflow
from pyworkflow.schedules import delete_schedule, list_schedules


@workflow(schedule=Cron("* * * * * *", name="heartbeat", overlap="allow"))
async def heartbeat() -> str:
    when = scheduled_at()
    assert when is not None
    return f"tick {when:%H:%M:%S}"


def runs_of_heartbeat() -> list[str]:
    return [r.run_id for r in list_runs(workflow="heartbeat").runs]


if __name__ == "__main__":
    runs_of_heartbeat()  # starts the runtime: its embedded worker creates the schedule
    deadline = time.monotonic() + 60
    while len(runs_of_heartbeat()) < 3 and time.monotonic() < deadline:
        time.sleep(0.1)
    print("schedules:", [s.name for s in list_schedules()])
    delete_schedule("heartbeat")
    results = sorted(get_result(run_id, timeout=30) for run_id in runs_of_heartbeat())
    ticks = sorted(set(results))
    print(f"{len(results)} runs, one per tick: {len(ticks) == len(results)}")
