"""``pyworkflow queues``: depth, load and limits of each queue."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from pyworkflow.cli import render
from pyworkflow.cli.app import app

QUEUES_HEADERS = (
    "queue",
    "waiting",
    "active",
    "admitted/min",
    "concurrency",
    "per worker",
    "per partition",
    "rate",
)


def _limit(value: int | None) -> str:
    return "-" if value is None else str(value)


def _rate(rate: dict[str, Any] | None) -> str:
    return "-" if rate is None else f"{rate['count']}/{rate['period']:g}s"


@app.command()
def queues(as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False) -> None:
    """Each queue: runs waiting, runs active, runs admitted in the last minute, and its limits.

    Lists the queues configured in [tool.pyworkflow.queues.<name>] (even
    empty) and any other queue that holds runs.
    """
    from pyworkflow.flowshape import queues_json
    from pyworkflow.runtime import get_runtime

    runtime = get_runtime()
    rows = runtime.call(queues_json, runtime)
    if as_json:
        render.print_json(rows)
        return
    render.print_table(
        QUEUES_HEADERS,
        [
            [
                row["queue"] if row["configured"] else f"{row['queue']} (not configured)",
                str(row["waiting"]),
                str(row["active"]),
                str(row["admitted"]),
                _limit(row["concurrency"]),
                _limit(row["worker_concurrency"]),
                _limit(row["partition_concurrency"]),
                _rate(row["rate"]),
            ]
            for row in rows
        ],
    )
