"""``pyworkflow storage``: the storage's schema version, and upgrading it with progress."""

from __future__ import annotations

from typing import Annotated

import typer

from pyworkflow.cli import render
from pyworkflow.cli.app import App, app

storage_app = App(help="The storage's schema: its version, and upgrading it.", no_args_is_help=True)
app.add_typer(storage_app, name="storage")

JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON.")]


def _storage() -> object:
    """The configured storage, not opened (the migration methods connect by themselves)."""
    from pyworkflow import plugins
    from pyworkflow.runtime import current_settings

    settings = current_settings()
    return plugins.create_storage(settings.storage, settings)


def _shown_url() -> str:
    from pyworkflow.redaction import redact_url
    from pyworkflow.runtime import current_settings

    return redact_url(current_settings().storage)


def _no_migrations(as_json: bool) -> None:
    url = _shown_url()
    if as_json:
        render.print_json({"storage": url, "migrations": False})
    else:
        render.print_line(
            f"{url}: this backend has no versioned schema (it creates and upgrades its "
            "tables when opened, or has none); nothing to migrate"
        )


@storage_app.command()
def status(as_json: JsonOption = False) -> None:
    """The schema's version, the latest this code knows, and the migrations pending.

    Exit code 1 when migrations are pending, so a deploy can check first.
    """
    import anyio

    from pyworkflow.storage.migration import MigratingStorage

    storage = _storage()
    if not isinstance(storage, MigratingStorage):
        _no_migrations(as_json)
        return
    found = anyio.run(storage.schema_status)
    url = _shown_url()
    if as_json:
        render.print_json(
            {
                "storage": url,
                "migrations": True,
                "version": found.current,
                "latest": found.latest,
                "pending": [
                    {"version": s.version, "description": s.description} for s in found.pending
                ],
            }
        )
    else:
        render.print_line(f"{url}: schema version {found.current}, latest {found.latest}")
        if found.current > found.latest:
            render.print_line("the database is newer than this code: upgrade the plugin")
        for step in found.pending:
            render.print_line(f"pending {step.version}: {step.description}")
        if found.up_to_date:
            render.print_line("up to date")
    if not found.up_to_date:
        raise typer.Exit(1)


@storage_app.command()
def migrate(as_json: JsonOption = False) -> None:
    """Apply the pending migrations, in order, in one transaction, showing each.

    For deployments whose workers run with ``migrate = false``. Many
    processes may run it at once: the schema is upgraded exactly once.
    """
    import anyio

    from pyworkflow.cli.live_view import live_enabled
    from pyworkflow.storage.migration import MigratingStorage, SchemaStep

    storage = _storage()
    if not isinstance(storage, MigratingStorage):
        _no_migrations(as_json)
        return
    found = anyio.run(storage.schema_status)
    url = _shown_url()
    if as_json or not live_enabled(render.console):

        def line(step: SchemaStep) -> None:
            if not as_json:
                render.print_line(f"applied {step.version}: {step.description}")

        applied = anyio.run(storage.migrate_schema, line)
    else:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

        columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn())
        with Progress(*columns, console=render.console) as progress:
            task = progress.add_task(f"migrating {url}", total=len(found.pending))

            def advance(step: SchemaStep) -> None:
                progress.update(task, advance=1, description=f"{step.version}: {step.description}")

            applied = anyio.run(storage.migrate_schema, advance)
    latest = anyio.run(storage.schema_status)
    if as_json:
        render.print_json({"storage": url, "applied": applied, "version": latest.current})
    elif applied:
        render.print_line(f"{url}: schema version {latest.current} (applied {len(applied)})")
    else:
        render.print_line(f"{url}: schema version {latest.current}, already up to date")
