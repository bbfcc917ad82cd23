"""``pyworkflow init``: scaffold a project in the current directory (docs/cli/index.md).

It writes a workflows module with a two-step example, a test of it on the
test harness, and the ``[tool.pyworkflow]`` table (appended to an existing
``pyproject.toml``, whose bytes are kept as they are, or in a new one). It
never overwrites: if any file it would write exists, or ``pyproject.toml`` has
a ``[tool.pyworkflow]`` table already, it names them and writes nothing.
"""

from __future__ import annotations

import importlib.util
import json
import tomllib
from pathlib import Path
from typing import Annotated, Any

import attrs
import typer

from pyworkflow.cli import render
from pyworkflow.cli.app import app

__all__ = [
    "EXECUTORS",
    "RUN_COMMAND",
    "STORAGES",
    "TEST_COMMAND",
    "Scaffold",
    "plan_scaffold",
    "write_scaffold",
]

#: The workflows module and its test, written next to pyproject.toml.
WORKFLOWS_FILE = "workflows.py"
TEST_FILE = "test_workflows.py"
PYPROJECT = "pyproject.toml"
#: The two commands ``init`` prints: run the example, run its tests.
RUN_COMMAND = "pyworkflow run workflows:process_order order-1 --wait"
TEST_COMMAND = f"python -m pytest {TEST_FILE}"


@attrs.frozen
class Choice:
    """One value of ``--storage`` or ``--executor``: the config it writes and what it needs."""

    #: Lines of ``[tool.pyworkflow]`` (the key and its comment).
    lines: tuple[str, ...]
    #: The distribution to install, or None for a built-in.
    plugin: str | None = None
    #: The module that plugin provides (to tell whether it is installed here).
    module: str | None = None
    #: An extra table (``[tool.pyworkflow.celery]``...), its lines.
    table: tuple[str, ...] = ()
    #: What to do before running (a server to point at, a worker to start).
    note: str | None = None


def _key(key: str, value: str, comment: str) -> tuple[str, ...]:
    return (f"# {comment}", f"{key} = {json.dumps(value)}")


STORAGES: dict[str, Choice] = {
    "sqlite": Choice(
        _key("storage", "sqlite:///.pyworkflow/pyworkflow.db", "SQLite file (built in)")
    ),
    "file": Choice(
        _key("storage", "file://.pyworkflow/runs", "JSONL files under a directory (built in)")
    ),
    "memory": Choice(
        _key("storage", "memory://", "in memory (built in): runs end with the process"),
        note="memory:// keeps runs in one process only: they are gone when it exits",
    ),
    "redis": Choice(
        _key("storage", "redis://localhost:6379/0", "placeholder: your Redis server"),
        plugin="pyworkflow-redis",
        module="pyworkflow_redis",
        note="point 'storage' at your Redis server (a placeholder URL was written)",
    ),
    "postgres": Choice(
        _key(
            "storage",
            "postgresql://user:password@localhost:5432/pyworkflow",
            "placeholder: your PostgreSQL database",
        ),
        plugin="pyworkflow-postgres",
        module="pyworkflow_postgres",
        note="point 'storage' at your PostgreSQL database (a placeholder URL was written)",
    ),
    "mysql": Choice(
        _key(
            "storage",
            "mysql://user:password@localhost:3306/pyworkflow",
            "placeholder: your MySQL 8.0+ or MariaDB 10.6+ database (or mariadb://)",
        ),
        plugin="pyworkflow-mysql",
        module="pyworkflow_mysql",
        note="point 'storage' at your MySQL or MariaDB database (a placeholder URL was written)",
    ),
}

EXECUTORS: dict[str, Choice] = {
    "local": Choice(_key("executor", "local", "in-process workers (built in)")),
    "celery": Choice(
        _key("executor", "celery", "Celery workers"),
        plugin="pyworkflow-celery",
        module="pyworkflow_celery",
        table=(
            "",
            "[tool.pyworkflow.celery]",
            "# placeholder: your Celery broker",
            'broker_url = "redis://localhost:6379/1"',
        ),
        note="start workers first: celery -A pyworkflow_celery.app worker (and one "
        "'celery -A pyworkflow_celery.app beat'); point broker_url at your broker",
    ),
    "ray": Choice(
        _key("executor", "ray", "steps as Ray tasks"),
        plugin="pyworkflow-ray",
        module="pyworkflow_ray",
        table=(
            "",
            "[tool.pyworkflow.ray]",
            '# "" starts a local Ray; "auto" or "ray://host:10001" joins a cluster',
            'address = ""',
        ),
        note="start a worker first: pyworkflow worker",
    ),
}

WORKFLOWS = '''"""Workflows of this project (scaffolded by `pyworkflow init`).

Run it with `pyworkflow run workflows:process_order order-1 --wait` (or `start(process_order,
"order-1")` from your code); test it with `python -m pytest test_workflows.py`.
"""

from __future__ import annotations

from pyworkflow import step, workflow


@step()
async def fetch_order(order_id: str) -> dict[str, int | str]:
    """Step 1: read the order (a real project calls its database or an API here)."""
    return {"order_id": order_id, "amount": 42}


@step(max_retries=3)
async def send_receipt(order: dict[str, int | str]) -> str:
    """Step 2: send the receipt; retried up to 3 times if it raises."""
    return f"receipt for {order['order_id']}: {order['amount']} EUR"


@workflow()
async def process_order(order_id: str) -> str:
    """Each step's result is recorded: after a crash the run resumes where it was."""
    order = await fetch_order(order_id)
    return await send_receipt(order)
'''

TESTS = '''"""Tests of workflows.py on PyWorkflow's test harness: in memory, on a virtual clock."""

from __future__ import annotations

from pyworkflow.testing import WorkflowEnvironment
from workflows import fetch_order, process_order


def test_process_order() -> None:
    with WorkflowEnvironment() as env:
        assert env.sync.run(process_order, "order-7") == "receipt for order-7: 42 EUR"


def test_process_order_with_a_fake_step() -> None:
    with WorkflowEnvironment() as env:
        fake = env.override_step(fetch_order, lambda order_id: {"order_id": order_id, "amount": 5})
        assert env.sync.run(process_order, "order-8") == "receipt for order-8: 5 EUR"
        assert len(fake.calls) == 1
'''


@attrs.frozen
class Scaffold:
    """What ``init`` writes: new files (path -> text) and text appended to a pyproject.toml."""

    directory: Path
    created: dict[str, str]
    #: The text appended to an existing pyproject.toml (None: it is among ``created``).
    appended: str | None
    storage: Choice
    executor: Choice


def _table(storage: Choice, executor: Choice) -> str:
    lines = [
        "[tool.pyworkflow]",
        "# workflow modules that workers import",
        'modules = ["workflows"]',
        *storage.lines,
        *executor.lines,
        *executor.table,
    ]
    return "\n".join(lines) + "\n"


def plan_scaffold(directory: Path, storage: str, executor: str) -> Scaffold:
    """The files ``init`` would write in ``directory``; raises if any would be overwritten.

    ``ValueError`` for an unknown ``storage``/``executor`` or a combination that
    cannot work; ``FileExistsError`` naming every file in the way.
    """
    if storage not in STORAGES:
        raise ValueError(f"--storage must be one of {', '.join(STORAGES)}; got {storage!r}")
    if executor not in EXECUTORS:
        raise ValueError(f"--executor must be one of {', '.join(EXECUTORS)}; got {executor!r}")
    if storage == "memory" and executor != "local":
        raise ValueError(
            f"--storage memory keeps runs in one process, but {executor} workers run in other "
            "processes: choose sqlite, file, redis, postgres or mysql"
        )
    chosen_storage, chosen_executor = STORAGES[storage], EXECUTORS[executor]
    table = _table(chosen_storage, chosen_executor)
    created = {WORKFLOWS_FILE: WORKFLOWS, TEST_FILE: TESTS}
    in_the_way = [name for name in created if (directory / name).exists()]
    appended: str | None = None
    pyproject = directory / PYPROJECT
    if pyproject.exists():
        appended = _append_to(pyproject, table, in_the_way)
    else:
        created[PYPROJECT] = "# Scaffolded by `pyworkflow init`; see docs/configuration.md.\n\n" + (
            table
        )
    if in_the_way:
        raise FileExistsError(
            f"pyworkflow init writes nothing: {'; '.join(in_the_way)} (in {directory}); "
            "move them away or run it in another directory"
        )
    return Scaffold(directory, created, appended, chosen_storage, chosen_executor)


def _append_to(pyproject: Path, table: str, in_the_way: list[str]) -> str | None:
    """The text to append to ``pyproject``, checked to change nothing but ``[tool.pyworkflow]``.

    It follows the file's line endings (CRLF or LF).
    """
    try:
        raw = pyproject.read_bytes()
        text = raw.decode("utf-8")
        before = tomllib.loads(text)
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        in_the_way.append(f"{PYPROJECT} cannot be read as TOML ({exc})")
        return None
    tool = before.get("tool")
    if isinstance(tool, dict) and "pyworkflow" in tool:
        in_the_way.append(f"{PYPROJECT} has a [tool.pyworkflow] table already")
        return None
    addition = ("" if not text or text.endswith("\n") else "\n") + ("\n" if text else "") + table
    if b"\r\n" in raw:
        addition = addition.replace("\n", "\r\n")
    try:
        after = tomllib.loads(text + addition)
    except tomllib.TOMLDecodeError as exc:  # e.g. tool = {...} as an inline table
        in_the_way.append(f"{PYPROJECT}: a [tool.pyworkflow] table cannot be appended ({exc})")
        return None
    after_tool = after.get("tool", {})
    after_tool.pop("pyworkflow", None)
    if not after_tool and "tool" not in before:
        after.pop("tool", None)
    if after != before:  # a safety net: appending a table never changes other keys
        in_the_way.append(f"{PYPROJECT}: appending [tool.pyworkflow] would change other keys")
        return None
    return addition


def write_scaffold(scaffold: Scaffold) -> None:
    """Write the planned files; a new file is created exclusively (never replaces one)."""
    for name, text in scaffold.created.items():
        with (scaffold.directory / name).open("x", encoding="utf-8") as fh:
            fh.write(text)
    if scaffold.appended is not None:
        with (scaffold.directory / PYPROJECT).open("a", encoding="utf-8", newline="") as fh:
            fh.write(scaffold.appended)


def _installed(choice: Choice) -> bool:
    return choice.module is None or importlib.util.find_spec(choice.module) is not None


def _report(scaffold: Scaffold) -> list[str]:
    lines = [f"created {name}" for name in scaffold.created]
    if scaffold.appended is not None:
        lines.append(f"added [tool.pyworkflow] to {PYPROJECT} (nothing else in it changed)")
    for choice in (scaffold.storage, scaffold.executor):
        if choice.plugin is not None:
            state = "installed here" if _installed(choice) else "not installed here"
            lines.append(f"needs the plugin {choice.plugin} ({state}): pip install {choice.plugin}")
    for choice in (scaffold.storage, scaffold.executor):
        if choice.note is not None:
            lines.append(f"note: {choice.note}")
    lines += [
        "",
        "Run the example:",
        f"  {RUN_COMMAND}",
        "Run its tests:",
        f"  {TEST_COMMAND}",
    ]
    return lines


@app.command()
def init(
    storage: Annotated[
        str,
        typer.Option(
            metavar="|".join(STORAGES),
            help="Where runs are kept; redis, postgres and mysql get a placeholder URL.",
        ),
    ] = "sqlite",
    executor: Annotated[
        str,
        typer.Option(metavar="|".join(EXECUTORS), help="What runs workflows and steps."),
    ] = "local",
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Scaffold a project here: workflows.py, its test and the pyworkflow config table.

    The tool.pyworkflow table is appended to pyproject.toml (created if
    there is none). Nothing is overwritten: if a file is in the way, or
    pyproject.toml has a tool.pyworkflow table already, it says which and
    writes nothing.
    """
    try:
        scaffold = plan_scaffold(Path.cwd(), storage, executor)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    write_scaffold(scaffold)
    if as_json:
        data: dict[str, Any] = {
            "created": sorted(scaffold.created),
            "appended": PYPROJECT if scaffold.appended is not None else None,
            "plugins": [c.plugin for c in (scaffold.storage, scaffold.executor) if c.plugin],
            "commands": [RUN_COMMAND, TEST_COMMAND],
        }
        render.print_json(data)
        return
    for line in _report(scaffold):
        render.print_line(line)
