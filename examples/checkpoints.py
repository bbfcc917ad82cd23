"""Step checkpoints: a long batch step saves its position and a retry resumes from it.

The ``import_records`` step walks 500 records. After each one it saves its
position with ``get_step_context().checkpoint(...)``; PyWorkflow writes at most
one checkpoint per second (``checkpoint_interval``) and keeps the latest in
memory between writes. Its first attempt fails at record 300 (a flaky upstream
API): the latest position is written as the attempt ends, and the retry reads
it from ``get_step_context().last_checkpoint`` and carries on from record 300
instead of starting over. A worker killed mid-step (SIGKILL) resumes the same
way, from the last checkpoint written. See docs/checkpoints.md.
"""

from __future__ import annotations

from pyworkflow import get_result, get_step_context, start, step, workflow

FLAKY_AT = 300


@step(max_retries=3, retry_delay=0.1)
async def import_records(count: int) -> dict[str, int]:
    ctx = get_step_context()
    saved = ctx.last_checkpoint or {"next": 0, "total": 0}
    print(f"attempt {ctx.attempt}: starting at record {saved['next']}")
    total = saved["total"]
    for record in range(saved["next"], count):
        if ctx.attempt == 1 and record == FLAKY_AT:
            raise ConnectionError(f"upstream API timed out at record {record}")
        total += record  # the real work: fetch, transform, store one record
        await ctx.checkpoint({"next": record + 1, "total": total})
    return {"records": count, "total": total, "resumed_at": saved["next"]}


@workflow
async def nightly_import(count: int) -> dict[str, int]:
    return await import_records(count)


if __name__ == "__main__":
    run_id = start(nightly_import, 500)
    summary = get_result(run_id, timeout=60)
    print(
        f"imported {summary['records']} records, total {summary['total']}, "
        f"the retry resumed at record {summary['resumed_at']}"
    )
