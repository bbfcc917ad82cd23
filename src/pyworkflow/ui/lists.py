"""The list pages of the UI: runs (filters, search, paging, counts, live table), workflows.

Schedules and queues are in :mod:`pyworkflow.ui.flow_pages`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import urlencode

import attrs
from loguru import logger
from starlette.datastructures import QueryParams
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import BaseRoute, Route

from pyworkflow.models import Run, RunStatus
from pyworkflow.server.options import ServerOptions
from pyworkflow.ui import auth, queries
from pyworkflow.ui.app import fragment_etag, render, render_fragment
from pyworkflow.workflow import registered_workflows

__all__ = ["RUNS_FRAGMENT", "RunsQuery", "list_routes", "parse_runs_query"]

#: The ``X-Fragment`` name of the runs table's body (``data-live`` in runs.html).
RUNS_FRAGMENT = "runs-table"
#: Longest workflow name or search text accepted in a query.
MAX_QUERY_TEXT = 300
#: Longest page cursor accepted.
MAX_CURSOR = 2000
#: How many recent failures the workflows page lists per workflow.
RECENT_FAILURES = 5

_log = logger.bind(component="ui")


class BadQuery(ValueError):
    """A query parameter the page cannot use (a 400 with this message)."""


@attrs.frozen
class RunsQuery:
    """The runs page's query: ``status``, ``workflow``, ``q`` (search) and ``cursor``."""

    status: RunStatus | None = None
    workflow: str | None = None
    q: str | None = None
    cursor: str | None = None

    def url(self, **changes: Any) -> str:
        """The query string with ``changes`` (``None`` drops a field); ``""`` when empty."""
        values = attrs.asdict(self) | changes
        params = {k: (v.value if isinstance(v, RunStatus) else v) for k, v in values.items()}
        query = urlencode({k: v for k, v in params.items() if v})
        return f"?{query}" if query else ""


def _one(query: QueryParams, name: str, limit: int) -> str | None:
    values = query.getlist(name)
    if len(values) > 1:
        raise BadQuery(f"the query parameter {name!r} is given {len(values)} times")
    value = values[0].strip() if values else ""
    if len(value) > limit:
        raise BadQuery(f"the query parameter {name!r} is longer than {limit} characters")
    if any(ord(c) < 0x20 or 0xD800 <= ord(c) <= 0xDFFF for c in value):
        raise BadQuery(f"the query parameter {name!r} holds control characters")
    return value or None


def parse_runs_query(query: QueryParams) -> RunsQuery:
    """The :class:`RunsQuery` of a request's query string; :class:`BadQuery` if invalid."""
    raw = _one(query, "status", 40)
    status: RunStatus | None = None
    if raw is not None:
        try:
            status = RunStatus(raw)
        except ValueError:
            allowed = ", ".join(s.value for s in RunStatus)
            raise BadQuery(f"Status must be one of {allowed} (or empty for all)") from None
    return RunsQuery(
        status=status,
        workflow=_one(query, "workflow", MAX_QUERY_TEXT),
        q=_one(query, "q", MAX_QUERY_TEXT),
        cursor=_one(query, "cursor", MAX_CURSOR),
    )


def _table_state(found: queries.RunsFound, query: RunsQuery) -> str:
    """What the live table shows: it changes whenever a row would."""
    rows = ";".join(
        f"{r.run_id}|{r.status.value}|{r.last_seq}|{r.updated_at.isoformat()}" for r in found.runs
    )
    return f"{query.url()}#{found.next_cursor}#{rows}"


async def _find(query: RunsQuery) -> queries.RunsFound:
    try:
        if query.q is not None:
            return await queries.find_runs(query.q, query.status, query.workflow, query.cursor)
        return await queries.list_page(query.status, query.workflow, query.cursor)
    except ValueError:
        raise BadQuery(
            "the page cursor is not valid here: start again from the first page"
        ) from None


def _runs_page() -> Callable[..., Any]:
    async def runs(request: Request) -> Response:
        fragment = request.headers.get("x-fragment")
        names = sorted(registered_workflows())
        try:
            query = parse_runs_query(request.query_params)
            found = await _find(query)
        except BadQuery as exc:
            if fragment is not None:
                return PlainTextResponse(str(exc), status_code=400)
            context = {"query": RunsQuery(), "error": str(exc), "workflows": names}
            return render(request, "runs.html", context, status_code=400)
        state = _table_state(found, query)
        table = {"runs": found.runs, "query": query, "found": found}
        if fragment == RUNS_FRAGMENT:
            return render_fragment(request, "_runs_table.html", table, state)
        if fragment is not None:
            return PlainTextResponse(f"unknown fragment {fragment[:40]!r}", status_code=400)
        counts = await queries.count_runs(query.workflow)
        context = {
            **table,
            "counts": counts,
            "total": _total(counts),
            "workflows": names,
            "statuses": list(RunStatus),
            "etag": fragment_etag(state),
            "next_url": query.url(cursor=found.next_cursor) if found.next_cursor else None,
            "first_url": query.url(cursor=None) if query.cursor else None,
            "count_cap": queries.COUNT_CAP,
        }
        return render(request, "runs.html", context)

    return runs


def _total(counts: dict[RunStatus, queries.Count]) -> str:
    n = sum(c.n for c in counts.values())
    return f"{n:,}" + ("+" if any(c.capped for c in counts.values()) else "")


@attrs.frozen
class WorkflowRow:
    """A row of the workflows page."""

    name: str
    version: str | None
    queue: str | None
    schedule: str | None
    counts: dict[RunStatus, queries.Count]
    failures: list[Run]


def _workflows_page() -> Callable[..., Any]:
    async def workflows(request: Request) -> Response:
        registry = registered_workflows()
        names = sorted(registry)
        failures = await queries.recent_runs(names, RunStatus.FAILED, RECENT_FAILURES)
        rows = []
        for name in names:
            definition = registry[name]
            cron = definition.schedule
            rows.append(
                WorkflowRow(
                    name=name,
                    version=definition.version,
                    queue=definition.queue,
                    schedule=None if cron is None else f"{cron.expression} ({cron.timezone})",
                    counts=await queries.count_runs(name),
                    failures=failures.get(name, []),
                )
            )
        context = {"rows": rows, "statuses": list(RunStatus)}
        return render(request, "workflows.html", context)

    return workflows


def list_routes(options: Callable[[], ServerOptions]) -> list[BaseRoute]:
    """The routes of the list pages (``/ui/runs``, ``/ui/workflows``, schedules, queues)."""
    from pyworkflow.ui.flow_pages import flow_routes

    return [
        Route("/ui/runs", auth.guard(_runs_page(), options), methods=["GET", "HEAD"]),
        Route("/ui/workflows", auth.guard(_workflows_page(), options), methods=["GET", "HEAD"]),
        *flow_routes(options),
    ]
