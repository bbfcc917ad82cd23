"""Replay recorded histories (`runs export` files) against the workflow code now imported.

:func:`replay` runs each history's workflow against its recorded outcomes, as
an activation replays a run, but with no storage, runtime or executor: nothing
is run (no step body) and nothing is written. It is meant for CI before a
deploy: a history the new code no longer follows fails with
:class:`ReplayMismatchError`, naming the file, the run, the position and both
operations.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeAlias, cast

import attrs

from pyworkflow.errors import (
    ConfigError,
    CorruptDataError,
    SerializationError,
    WorkflowNotFoundError,
)
from pyworkflow.history import History, HistoryFormatError, _bad, load_history

if TYPE_CHECKING:
    from pyworkflow.config import Settings
    from pyworkflow.models import Run
    from pyworkflow.runtime import Runtime
    from pyworkflow.serialization import Serializer
    from pyworkflow.workflow import WorkflowDefinition

__all__ = [
    "HistoryFormatError",
    "HistoryReport",
    "HistorySource",
    "ReplayMismatchError",
    "replay",
    "replay_history",
]

#: A history file's path, or its already-decoded JSON document.
HistorySource: TypeAlias = "str | os.PathLike[str] | Mapping[str, Any]"


@attrs.frozen
class HistoryReport:
    """How one history replayed against the current code.

    ``operations`` counts the recorded operations the code called and found in
    the log (before the divergence if there is one); ``position`` is the
    correlation id (operation number) where it diverged, ``recorded`` and
    ``called`` the operation the log holds there and the one the code calls.
    """

    source: str
    run_id: str
    workflow: str
    deterministic: bool
    operations: int
    position: str | None = None
    recorded: str | None = None
    called: str | None = None
    message: str | None = None

    def describe(self) -> str:
        """One line: ``<source>: ok ...`` or ``<source>: diverged ...``."""
        head = f"{self.source}: run {self.run_id} ({self.workflow})"
        if self.deterministic:
            return f"{head}: ok ({self.operations} operations replayed)"
        return f"{head}: diverged: {self.message}"


class ReplayMismatchError(AssertionError):
    """One or more histories diverge from the current code; ``reports`` holds each of them."""

    def __init__(self, reports: Sequence[HistoryReport]) -> None:
        self.reports = list(reports)
        lines = [f"{len(self.reports)} history(ies) diverge from the current workflow code:"]
        lines += [f"- {r.describe()}" for r in self.reports]
        super().__init__("\n".join(lines))


@attrs.frozen
class _NoExecutor:
    """Nothing is dispatched during a replay."""

    dispatches_steps: bool = False
    dispatch_timeout: float = 300.0


@attrs.frozen
class _Offline:
    """What an activation reads from its runtime, for a replay with nothing behind it.

    No storage, journal or executor: a replay that tried to write would fail
    loudly (``None`` has no ``append``) rather than touch a real backend.
    """

    serializer: Serializer
    settings: Settings
    storage: None = None
    journal: None = None
    executor: _NoExecutor = _NoExecutor()
    step_overrides: Mapping[str, Any] = attrs.field(factory=dict)

    def serializer_for(self, run: Run) -> Serializer:
        return self.serializer


def history_sources(histories: HistorySource | Iterable[HistorySource]) -> list[HistorySource]:
    """One source, or several; a directory stands for the ``*.json`` files in it."""
    items: list[HistorySource]
    if isinstance(histories, (str, os.PathLike, Mapping)):
        items = [histories]
    else:
        items = list(histories)
    out: list[HistorySource] = []
    for item in items:
        if not isinstance(item, Mapping) and Path(item).is_dir():
            out.extend(sorted(Path(item).glob("*.json")))
        elif isinstance(item, (str, os.PathLike, Mapping)):
            out.append(item)
        else:
            raise TypeError(
                f"expected a history file path or a decoded history (a dict), got {item!r}"
            )
    return out


def _definitions(workflows: Iterable[Any] | None) -> dict[str, WorkflowDefinition]:
    from pyworkflow.workflow import definition_of

    return {d.name: d for d in (definition_of(w) for w in workflows or ())}


def workflow_for(
    history: History,
    given: Mapping[str, WorkflowDefinition],
    hint: str = "pass it in workflows=, or import its module",
) -> WorkflowDefinition:
    """The workflow ``history`` names: from ``given`` (by name), else from the registry.

    Raises :class:`~pyworkflow.errors.WorkflowNotFoundError` naming the
    history, its run and the workflows known here, followed by ``hint``.
    """
    from pyworkflow.workflow import registered_workflows

    name = history.run.workflow_name
    known = {**registered_workflows(), **given}
    if name in known:
        return known[name]
    raise WorkflowNotFoundError(
        f"history {history.source}: run {history.run.run_id} is of workflow {name!r}, which is "
        f"not known here (known: {', '.join(sorted(known)) or 'none'}); {hint}"
    )


def replay_history(history: History, definition: WorkflowDefinition) -> HistoryReport:
    """Replay one loaded history against ``definition``; nothing is run or written.

    A payload the run's serializer cannot decode raises
    :class:`HistoryFormatError` naming the history.
    """
    from pyworkflow import plugins
    from pyworkflow.engine.activation import Activation
    from pyworkflow.runtime import current_settings

    run = history.run
    try:
        serializer = plugins.get_serializer(run.serializer)
    except ConfigError as exc:
        raise _bad(history.source, str(exc)) from None
    offline = _Offline(serializer, current_settings())
    activation = Activation(cast("Runtime", offline), run, history.events, owner="replay-file")
    activation.definition = definition
    try:
        report = activation.check()
    except (CorruptDataError, SerializationError) as exc:
        raise _bad(history.source, str(exc)) from None
    return HistoryReport(
        source=history.source,
        run_id=run.run_id,
        workflow=run.workflow_name,
        deterministic=report.deterministic,
        operations=report.operations,
        position=report.position,
        recorded=report.recorded,
        called=report.called,
        message=report.message,
    )


def replay(
    histories: HistorySource | Iterable[HistorySource],
    workflows: Iterable[Any] | None = None,
) -> list[HistoryReport]:
    """Replay recorded histories against the workflow code now imported.

    ``histories`` is a history file's path (or a directory of ``*.json``
    history files), an already-decoded history document, or an iterable of
    those. ``workflows`` lists the ``@workflow`` functions or ``Workflow``
    classes the histories may name; a name not given is looked up among the
    workflows registered in this process.

    Every history is checked. Returns one :class:`HistoryReport` per history
    when all replay; raises :class:`HistoryFormatError` if a file cannot be
    read (naming each such file and what is wrong),
    :class:`~pyworkflow.errors.WorkflowNotFoundError` if a history's workflow
    is unknown here, and :class:`ReplayMismatchError` (an ``AssertionError``)
    naming every history that diverges.
    """
    given = _definitions(workflows)
    loaded: list[History] = []
    problems: list[str] = []
    for source in history_sources(histories):
        try:
            loaded.append(load_history(source))
        except HistoryFormatError as exc:
            problems.append(str(exc))
    if problems:
        raise HistoryFormatError("\n".join(problems))
    missing: list[str] = []
    targets: list[tuple[History, WorkflowDefinition]] = []
    for history in loaded:
        try:
            targets.append((history, workflow_for(history, given)))
        except WorkflowNotFoundError as exc:
            missing.append(str(exc))
    if missing:
        raise WorkflowNotFoundError("\n".join(missing))
    reports = [replay_history(history, definition) for history, definition in targets]
    diverged = [r for r in reports if not r.deterministic]
    if diverged:
        raise ReplayMismatchError(diverged)
    return reports
