"""Schedules: a workflow started at each tick of a cron expression or interval, once per tick.

``heartbeat`` is declared with a six-field cron (seconds first): every second.
``pulse`` is declared with an interval, ``Every("2s")``: its ticks are whole
multiples of two seconds since the Unix epoch (the default anchor), so even
seconds in UTC. The embedded worker of this script creates both schedules and
fires them; each run reads the tick it was started for with ``scheduled_at()``.
After three heartbeats and two pulses the schedules are deleted. An application
declares ``@workflow(schedule="0 6 * * *")`` or ``schedule=Every("15m")``, or calls
``create_schedule(...)`` (``every="15m"`` for an interval), and runs
``pyworkflow worker``. See docs/schedules.md.
"""

from __future__ import annotations

import time
from datetime import datetime

from pyworkflow import Cron, Every, get_result, list_runs, scheduled_at, workflow
from pyworkflow.schedules import delete_schedule, list_schedules


@workflow(schedule=Cron("* * * * * *", name="heartbeat", overlap="allow"))
async def heartbeat() -> str:
    when = scheduled_at()
    assert when is not None
    return f"tick {when:%H:%M:%S}"


@workflow(schedule=Every("2s", name="pulse", overlap="allow"))
async def pulse() -> str:
    when = scheduled_at()
    assert when is not None
    return when.isoformat()


def runs_of(name: str) -> list[str]:
    return [r.run_id for r in list_runs(workflow=name).runs]


if __name__ == "__main__":
    runs_of("heartbeat")  # starts the runtime: its embedded worker creates the schedules
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and (
        len(runs_of("heartbeat")) < 3 or len(runs_of("pulse")) < 2
    ):
        time.sleep(0.1)
    print("schedules:", sorted(f"{s.name} {s.cron}" for s in list_schedules()))
    delete_schedule("heartbeat")
    delete_schedule("pulse")
    results = sorted(get_result(run_id, timeout=30) for run_id in runs_of("heartbeat"))
    ticks = sorted(set(results))
    print(f"{len(results)} runs, one per tick: {len(ticks) == len(results)}")
    pulses = sorted(datetime.fromisoformat(get_result(r, timeout=30)) for r in runs_of("pulse"))
    on_even_seconds = all(t.timestamp() % 2 == 0 for t in pulses)
    distinct = len(set(pulses)) == len(pulses) >= 2
    print(f"pulses distinct and on even seconds: {distinct and on_even_seconds}")
