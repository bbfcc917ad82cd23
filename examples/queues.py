"""Queues: at most two sends at once, the rest wait their turn, VIP first.

Six newsletter runs go into the ``emails`` queue, limited to two active runs
at once (``configure(queues=...)`` here; ``[tool.pyworkflow.queues.emails]``
in pyproject.toml for an application). The embedded worker admits them two
at a time, the priority-10 run first among those waiting. A second start
with the same ``dedup_key`` while the first is queued or running returns the
same run. See docs/queues.md.
"""

from __future__ import annotations

from pyworkflow import configure, get_result, get_run, sleep, start_workflow, step, workflow


@step()
async def send(user: str) -> str:
    return f"sent to {user}"


@workflow(queue="emails")
async def newsletter(user: str) -> str:
    await sleep("1s")  # a run keeps its place in the queue while it sleeps
    return await send(user)


if __name__ == "__main__":
    configure(queues={"emails": {"concurrency": 2}})
    ids = [start_workflow(newsletter, (f"user{i}",)) for i in range(5)]
    vip = start_workflow(newsletter, ("vip",), priority=10, dedup_key="vip")
    again = start_workflow(newsletter, ("vip",), priority=10, dedup_key="vip")
    print("same run for the same dedup key:", again == vip)
    for run_id in [*ids, vip]:
        print(get_result(run_id, timeout=60))
    runs = [get_run(run_id) for run_id in [*ids, vip]]
    admitted = {r.run_id: r.admitted_at for r in runs if r.admitted_at is not None}
    vip_created = get_run(vip).created_at
    # every run still waiting when the VIP arrived was admitted after it
    waiting_then = [at for run_id, at in admitted.items() if run_id != vip and at > vip_created]
    print(
        "vip went before the runs waiting with it:", all(admitted[vip] <= at for at in waiting_then)
    )
