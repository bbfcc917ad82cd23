"""Following a run on the terminal until it ends: ``run --wait`` and ``runs retry --wait``.

On a terminal the live view (:mod:`pyworkflow.cli.live_view`) is redrawn as
events arrive and its countdowns tick between them; off a terminal each new
event is one plain line; with ``--json`` nothing is printed while following.
A run that continues as new is followed into the next run of its chain.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pyworkflow.cli import render

if TYPE_CHECKING:
    from pyworkflow.client import RunInfo
    from pyworkflow.models import Event
    from pyworkflow.runtime import Runtime

__all__ = ["report_end", "watch_run"]


def watch_run(
    runtime: Runtime, run_id: str, *, local: bool, as_json: bool, skip: int = 0
) -> tuple[RunInfo, str]:
    """Follow ``run_id`` (driving it here when ``local``) until its chain ends.

    ``skip`` leaves out the first events of ``run_id`` from the plain lines
    (``runs retry`` shows only what the retry adds; the live view shows the
    whole run). Returns the last run's info and its id.
    """
    from rich.live import Live

    from pyworkflow.cli.drive import RunDriver, follow
    from pyworkflow.cli.live_view import LiveRender, build_model, live_enabled
    from pyworkflow.models import RunStatus

    live = None if as_json or not live_enabled(render.console) else Live(console=render.console)
    seen: list[Event] = []  # the followed run's events, for the live view
    skipping = skip

    def show(event: Event) -> None:
        nonlocal skipping
        if live is not None:
            seen.append(event)
            live.update(LiveRender(build_model(seen)), refresh=True)
        elif skipping > 0:
            skipping -= 1
        elif not as_json:
            stamp = event.timestamp.strftime("%H:%M:%S.%f")[:-3]
            render.print_line(f"{stamp}  {render.event_line(event)}")

    current = run_id
    while True:
        driver = RunDriver(runtime, current) if local else None
        if driver is not None:
            runtime.call(driver.start)
        seen.clear()
        if live is not None:
            live.start()
        try:
            info = follow(current, show, driver=driver)
        finally:
            if live is not None:
                live.stop()
            if driver is not None:
                runtime.call(driver.stop)
        if info.status != RunStatus.CONTINUED or info.continued_to is None:
            return info, current
        if not as_json:
            render.console.print(f"run {current} continued as [bold]{info.continued_to}[/]")
        current = info.continued_to
        skipping = 0


def report_end(run_id: str, info: RunInfo, current: str, *, as_json: bool) -> None:
    """Print how the followed run (chain) ended; exit 1 unless it completed."""
    import typer

    from pyworkflow.models import RunStatus

    if as_json:
        data = {"run_id": run_id, "status": info.status.value, "error": info.error_message}
        if current != run_id:
            data["last_run_id"] = current
        render.print_json(data)
    else:
        style = render.STATUS_STYLE[info.status]
        render.console.print(f"run {current} [{style}]{info.status.value}[/]")
        if info.status == RunStatus.COMPLETED:
            render.print_line(f"result: {info.result!r}")
        elif info.error_message:
            render.print_line(f"error: {info.error_message}")
    if info.status != RunStatus.COMPLETED:
        raise typer.Exit(1)
