"""What the list pages read from storage: a page of runs, a search, counts per status.

Storage has no count or search API (and adding one means five backends), so
counts and searches walk ``list_runs`` pages, capped: a count stops at
:data:`COUNT_CAP` runs of a status (shown as "10,000+"), a search looks at
:data:`SEARCH_CAP` runs per request and offers to go on from there. Each walk
is one call into the runtime's loop (``runtime.acall``), as the client's
``a``-prefixed functions do.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import attrs

from pyworkflow.errors import RunNotFoundError
from pyworkflow.models import Run, RunPage, RunStatus
from pyworkflow.runtime import Runtime, get_runtime

__all__ = [
    "COUNT_CAP",
    "PAGE_SIZE",
    "SEARCH_CAP",
    "Count",
    "RunsFound",
    "count_runs",
    "find_runs",
    "list_page",
    "recent_runs",
]

#: Runs per page of the runs table.
PAGE_SIZE = 50
#: A count per status stops here (the page shows "10,000+").
COUNT_CAP = 10_000
#: Runs a search looks at per request (then "Next page" goes on from there).
SEARCH_CAP = 10_000
#: Page size of the storage walks of counts (the JSON API's largest page).
_COUNT_PAGE = 500
#: Page size of the storage walk of a search: a page of results may hold up to
#: ``PAGE_SIZE + _SEARCH_PAGE - 1`` runs (a storage page is never cut: its cursor is opaque).
_SEARCH_PAGE = 100


@attrs.frozen
class Count:
    """How many runs have one status (``capped``: at least ``n``, the walk stopped there)."""

    status: RunStatus
    n: int
    capped: bool = False

    @property
    def label(self) -> str:
        """``"1,234"``, or ``"10,000+"`` when capped."""
        return f"{self.n:,}" + ("+" if self.capped else "")


@attrs.frozen
class RunsFound:
    """A page of the runs table: its runs and the cursor of the next page (None: the last).

    ``scanned`` is how many runs a search looked at; ``capped`` says it stopped
    at :data:`SEARCH_CAP` before the end (the next page goes on from there).
    """

    runs: list[Run]
    next_cursor: str | None
    scanned: int = 0
    capped: bool = False


async def _count(
    runtime: Runtime, workflow: str | None, statuses: tuple[RunStatus, ...]
) -> list[Count]:
    counts: list[Count] = []
    for status in statuses:
        n = 0
        cursor: str | None = None
        while True:
            page = await runtime.storage.list_runs(
                status=status, workflow=workflow, limit=_COUNT_PAGE, cursor=cursor
            )
            n += len(page.runs)
            cursor = page.next_cursor
            if cursor is None or n >= COUNT_CAP:
                break
        counts.append(Count(status, min(n, COUNT_CAP), capped=cursor is not None))
    return counts


async def count_runs(
    workflow: str | None = None, statuses: Iterable[RunStatus] = tuple(RunStatus)
) -> dict[RunStatus, Count]:
    """Runs per status (of ``workflow`` when given), each capped at :data:`COUNT_CAP`."""
    runtime = get_runtime()
    counts = await runtime.acall(_count, runtime, workflow, tuple(statuses))
    return {count.status: count for count in counts}


async def _page(
    runtime: Runtime,
    status: RunStatus | None,
    workflow: str | None,
    limit: int,
    cursor: str | None,
) -> RunPage:
    return await runtime.storage.list_runs(
        status=status, workflow=workflow, limit=limit, cursor=cursor
    )


async def list_page(
    status: RunStatus | None, workflow: str | None, cursor: str | None, limit: int = PAGE_SIZE
) -> RunsFound:
    """A page of runs, newest first; ``ValueError`` for a cursor storage does not know."""
    runtime = get_runtime()
    page = await runtime.acall(_page, runtime, status, workflow, limit, cursor)
    return RunsFound(list(page.runs), page.next_cursor)


def _matches(run: Run, q: str) -> bool:
    return run.run_id.startswith(q) or run.idempotency_key == q


def _fits(run: Run, status: RunStatus | None, workflow: str | None) -> bool:
    return (status is None or run.status == status) and (
        workflow is None or run.workflow_name == workflow
    )


async def _search(
    runtime: Runtime,
    q: str,
    status: RunStatus | None,
    workflow: str | None,
    cursor: str | None,
) -> RunsFound:
    found: list[Run] = []
    if cursor is None:  # the first page: an exact run id first (it may be older than the cap)
        try:
            exact = await runtime.storage.get_run(q)
        except RunNotFoundError:
            pass
        else:
            if _fits(exact, status, workflow):
                found.append(exact)
    seen = {run.run_id for run in found}
    scanned = 0
    while True:
        page = await runtime.storage.list_runs(
            status=status, workflow=workflow, limit=_SEARCH_PAGE, cursor=cursor
        )
        scanned += len(page.runs)
        for run in page.runs:
            if run.run_id not in seen and _matches(run, q):
                found.append(run)
                seen.add(run.run_id)
        cursor = page.next_cursor
        if cursor is None or len(found) >= PAGE_SIZE or scanned >= SEARCH_CAP:
            break
    capped = cursor is not None and len(found) < PAGE_SIZE
    return RunsFound(found, cursor, scanned=scanned, capped=capped)


async def find_runs(
    q: str, status: RunStatus | None, workflow: str | None, cursor: str | None
) -> RunsFound:
    """Runs whose id starts with ``q`` or whose idempotency key is ``q``, newest first.

    Filtered by ``status``/``workflow``; looks at up to :data:`SEARCH_CAP`
    runs from ``cursor`` (``ValueError`` for a cursor storage does not know).
    """
    runtime = get_runtime()
    return await runtime.acall(_search, runtime, q, status, workflow, cursor)


async def _recent(
    runtime: Runtime, names: tuple[str, ...], status: RunStatus | None, limit: int
) -> dict[str, list[Run]]:
    recent: dict[str, list[Run]] = {}
    for name in names:
        page = await runtime.storage.list_runs(status=status, workflow=name, limit=limit)
        recent[name] = list(page.runs)
    return recent


async def recent_runs(
    names: Iterable[str], status: RunStatus | None = None, limit: int = 5
) -> Mapping[str, list[Run]]:
    """The newest ``limit`` runs of each workflow in ``names`` (with ``status`` when given)."""
    runtime = get_runtime()
    return await runtime.acall(_recent, runtime, tuple(names), status, limit)
