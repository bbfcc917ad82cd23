"""The tutorial (docs/tutorial/*.md) run page by page, in order, as a reader would.

Each page is run in a fresh temporary project directory:

- a fenced block whose info string carries ``title="NAME"`` (```` ```python title="flows.py" ````,
  ```` ```toml title="pyproject.toml" ````) is a file the reader saves: it is written to NAME;
- a ``console`` block is a shell session: each ``$ COMMAND`` line is run with bash (``pyworkflow``,
  ``python`` and ``pytest`` resolve to this interpreter), and the lines after it, up to the next
  ``$``, are output the reader should see. Every such line must appear in the command's output
  (stdout and stderr together), in order; other lines may come between. Run ids, times, dates and
  decimal numbers in them match any value of their kind (a run id the page shows stands for the one
  the reader gets, and is replaced by it in later commands). ``...`` lines only say "more here".
- ``COMMAND &`` starts a long-running process (a worker, the server) in the background, as a shell
  would; the output lines after it are waited for. ``kill %N`` stops job N with SIGTERM
  (``kill -9 %N``: SIGKILL, a crash); the lines after it are looked for in that job's output.
  Jobs are numbered as bash does: one above the highest job not yet killed.
- ``export NAME=VALUE`` sets an environment variable for the commands after it.
- A command whose expected output has a line starting with ``error:`` may exit non-zero; every
  other command must exit 0. A read-only command (``pyworkflow runs list/show/events``, a ``curl``
  GET) is run again until its output matches, as a reader checking on a run would, for up to 20 s.
- Blocks preceded by ``<!-- fragment: REASON -->`` are not run (installing packages, starting
  a Redis server: the test starts its own on a free port, see below, a Celery or Ray deployment).

Ports the pages use (8000 for ``pyworkflow serve``, 6379 for Redis, written ``:PORT`` or
``--port PORT``) are replaced, in files, commands and expected output, by free ports on
127.0.0.1; page 6 gets a real ``redis-server`` (``appendfsync always``) from
:mod:`pyworkflow.testing.servers`, and under ``CI`` a missing ``redis-server`` fails the test
instead of skipping it.
"""

from __future__ import annotations

import itertools
import os
import re
import shlex
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from pyworkflow.testing.fixtures import require_server
from pyworkflow.testing.servers import RedisServer, free_port

ROOT = Path(__file__).resolve().parent.parent
TUTORIAL = ROOT / "docs" / "tutorial"
PAGES = [
    "docs/tutorial/01-install.md",
    "docs/tutorial/02-steps-retries-sleep.md",
    "docs/tutorial/03-webhook.md",
    "docs/tutorial/04-testing.md",
    "docs/tutorial/05-workers-and-ui.md",
    "docs/tutorial/06-distributed.md",
]
TESTED_BY = "<!-- tested-by: tests/test_tutorial.py -->"
FRAGMENT = re.compile(r"^<!-- fragment: \S.* -->$")
FENCE = re.compile(r"^```(\S*)(.*)$")
TITLE = re.compile(r'title="([^"]+)"')
WAIT_SECONDS = 30.0  # for a background job's expected line; a read-only command's retries: 20 s
READ_ONLY = re.compile(
    r"^(pyworkflow runs (list|show|events)\b|curl (?!.*(-X|--request|-d|--data)\b))"
)

pytestmark = [pytest.mark.timeout(180), pytest.mark.slow]


# --------------------------------------------------------------------------- parsing the pages


@dataclass
class Block:
    """One fenced block of a page."""

    lang: str
    title: str | None
    fragment: bool
    lines: list[str]
    line_no: int


@dataclass
class Command:
    """One ``$ COMMAND`` of a console block and the output lines the page shows after it."""

    text: str
    expected: list[str] = field(default_factory=list)
    line_no: int = 0


def parse_blocks(text: str) -> list[Block]:
    """The fenced blocks of a Markdown page, in order (fences of three backticks, not nested)."""
    blocks: list[Block] = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        match = FENCE.match(lines[i])
        if not match:
            i += 1
            continue
        lang, rest = match.group(1), match.group(2)
        title = TITLE.search(rest)
        fragment = i > 0 and bool(FRAGMENT.match(lines[i - 1].strip()))
        body: list[str] = []
        start = i + 1
        i += 1
        while i < len(lines) and lines[i].strip() != "```":
            body.append(lines[i])
            i += 1
        blocks.append(Block(lang, title.group(1) if title else None, fragment, body, start))
        i += 1
    return blocks


def parse_console(block: Block) -> list[Command]:
    """The commands of a console block, each with the output lines shown after it."""
    commands: list[Command] = []
    for offset, line in enumerate(block.lines):
        if line.startswith("$ "):
            commands.append(Command(line[2:].strip(), line_no=block.line_no + offset + 1))
        elif commands and line.strip() and line.strip() != "...":
            commands[-1].expected.append(line.rstrip())
        elif not commands and line.strip():
            raise AssertionError(f"line {block.line_no + offset + 1}: output before any command")
    return commands


# --------------------------------------------------------------------------- matching output

RUN_ID = r"[0-9a-f]{32}"
VARIABLE = re.compile(
    r"(?P<id>\b[0-9a-f]{32}\b)"
    r"|(?P<ts>\d{4}-\d\d-\d\d[T ]\d\d:\d\d:\d\d(?:\.\d+)?(?:\+00:00|Z)?)"
    r"|(?P<date>\d{4}-\d\d-\d\d)"
    r"|(?P<time>\d\d:\d\d:\d\d(?:\.\d+)?)"
    r"|(?P<num>\d+\.\d+)"
)
PATTERNS = {
    "ts": r"\d{4}-\d\d-\d\d[T ]\d\d:\d\d:\d\d(?:\.\d+)?(?:\+00:00|Z)?",
    "date": r"\d{4}-\d\d-\d\d",
    "time": r"\d\d:\d\d:\d\d(?:\.\d+)?",
    "num": r"\d+(?:\.\d+)?",
}


def literal(text: str) -> str:
    """A regex for literal text in which any run of spaces matches any run of spaces."""
    return r"\s+".join(re.escape(part) for part in re.split(r"\s+", text))


def line_pattern(expected: str, ids: dict[str, str]) -> tuple[re.Pattern[str], list[str]]:
    """A regex for one expected line, and the page's run ids it captures (in group order)."""
    parts: list[str] = []
    captured: list[str] = []
    pos = 0
    for match in VARIABLE.finditer(expected):
        parts.append(literal(expected[pos : match.start()]))
        kind = match.lastgroup or ""
        if kind == "id":
            shown = match.group()
            if shown in ids:
                parts.append(re.escape(ids[shown]))
            else:
                parts.append(f"({RUN_ID})")
                captured.append(shown)
        else:
            parts.append(PATTERNS[kind])
        pos = match.end()
    parts.append(literal(expected[pos:]))
    return re.compile(r"\s*" + "".join(parts) + r"\s*"), captured


def match_lines(expected: list[str], actual: list[str], start: int, ids: dict[str, str]) -> int:
    """Match ``expected`` in order within ``actual[start:]``; bind run ids; -1 when one is missing.

    Returns the index after the last matched line.
    """
    pos = start
    found: dict[str, str] = {}
    for line in expected:
        pattern, captured = line_pattern(line, {**ids, **found})
        for i in range(pos, len(actual)):
            match = pattern.fullmatch(actual[i])
            if match:
                found.update(zip(captured, match.groups(), strict=True))
                pos = i + 1
                break
        else:
            return -1
    ids.update(found)
    return pos


# --------------------------------------------------------------------------- running a page


class Job:
    """A background process (``COMMAND &``) whose output is collected line by line."""

    def __init__(self, command: str, cwd: Path, env: dict[str, str]) -> None:
        self.command = command
        self.proc = subprocess.Popen(
            ["bash", "-c", f"exec {command}"],
            cwd=cwd,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        self.lines: list[str] = []
        self.cursor = 0
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    def expect(self, expected: list[str], ids: dict[str, str], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            finished = self.proc.poll() is not None and not self.reader.is_alive()
            end = match_lines(expected, list(self.lines), self.cursor, ids)
            if end >= 0:
                self.cursor = end
                return
            if finished or time.monotonic() > deadline:
                raise AssertionError(
                    f"background job `{self.command}` did not print {expected!r}; it printed:\n"
                    + "\n".join(self.lines)
                )
            time.sleep(0.05)

    def stop(self, sig: signal.Signals) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, sig)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)
        self.reader.join(timeout=10)


class Reader:
    """Runs a page's blocks in one project directory, as a reader at a shell would."""

    def __init__(self, page: str, workdir: Path, ports: dict[str, str]) -> None:
        self.page = page
        self.workdir = workdir
        self.ports = ports
        self.ids: dict[str, str] = {}
        self.jobs: dict[int, Job] = {}  # bash's job numbers, of the jobs not killed
        self.all_jobs: list[Job] = []
        shims = workdir.parent / "bin"
        shims.mkdir(exist_ok=True)
        for name, argv in {
            "pyworkflow": f"{shlex.quote(sys.executable)} -m pyworkflow",
            "python": shlex.quote(sys.executable),
            "pytest": f"{shlex.quote(sys.executable)} -m pytest -p no:cacheprovider",
        }.items():
            shim = shims / name
            shim.write_text(f'#!/bin/sh\nexec {argv} "$@"\n')
            shim.chmod(0o755)
        self.env = {
            k: v for k, v in os.environ.items() if not k.startswith(("PYWORKFLOW_", "PYTEST_"))
        }
        self.env.update(
            PATH=f"{shims}{os.pathsep}{os.environ.get('PATH', '')}",
            PYTHONUNBUFFERED="1",
            NO_COLOR="1",
            COLUMNS="200",
        )

    def substitute(self, text: str) -> str:
        for shown, real in self.ports.items():  # host:PORT, --port PORT
            text = re.sub(rf"(?<=:){shown}\b|(?<=--port ){shown}\b", real, text)
        for shown, real in self.ids.items():
            text = text.replace(shown, real)
        return text

    def where(self, line_no: int) -> str:
        return f"{self.page}:{line_no}"

    def run_page(self, text: str) -> int:
        """Run every block that is not a fragment; returns the number of commands run."""
        commands = 0
        for block in parse_blocks(text):
            if block.fragment:
                continue
            if block.title is not None:
                target = self.workdir / block.title
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_text(self.substitute("\n".join(block.lines) + "\n"))
            elif block.lang == "console":
                for command in parse_console(block):
                    self.run(command)
                    commands += 1
            else:
                raise AssertionError(
                    f'{self.where(block.line_no)}: a `{block.lang}` block with no title="FILE" '
                    "is neither a file to save nor a shell session: mark it <!-- fragment: ... -->"
                )
        return commands

    def run(self, command: Command) -> None:
        text = self.substitute(command.text)
        expected = [self.substitute(line) for line in command.expected]
        if text.endswith("&"):
            # bash numbers a new job one above the highest job still there
            number = max(self.jobs, default=0) + 1
            job = Job(text[:-1].strip(), self.workdir, self.env)
            self.jobs[number] = job
            self.all_jobs.append(job)
            job.expect(expected, self.ids, WAIT_SECONDS)
            return
        kill = re.fullmatch(r"kill(\s+-9)?((?:\s+%\d+)+)", text)
        if kill:
            numbers = [int(n) for n in re.findall(r"%(\d+)", kill.group(2))]
            stopped = [self.jobs.pop(number) for number in numbers]
            for job in stopped:
                job.stop(signal.SIGKILL if kill.group(1) else signal.SIGTERM)
            for job in stopped:
                if expected:
                    job.expect(expected, self.ids, 0)
            return
        export = re.fullmatch(r"export ([A-Z_][A-Z0-9_]*)=(\S*)", text)
        if export:
            self.env[export.group(1)] = export.group(2)
            return
        may_fail = any(line.startswith("error:") for line in expected)
        deadline = time.monotonic() + (20.0 if READ_ONLY.match(command.text) else 0.0)
        while True:
            done = subprocess.run(
                ["bash", "-c", text],
                cwd=self.workdir,
                env=self.env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                timeout=120,
                check=False,
            )
            lines = done.stdout.splitlines()
            matched = match_lines(expected, lines, 0, self.ids) >= 0
            if matched or time.monotonic() > deadline:
                break
            time.sleep(0.3)
        assert matched, (
            f"{self.where(command.line_no)}: `{text}` did not print, in order, {expected!r}. "
            f"It printed (exit code {done.returncode}):\n{done.stdout}"
        )
        assert done.returncode == 0 or may_fail, (
            f"{self.where(command.line_no)}: `{text}` exited {done.returncode}:\n{done.stdout}"
        )

    def close(self) -> None:
        for job in self.all_jobs:
            job.stop(signal.SIGTERM)


# --------------------------------------------------------------------------- the tests


@pytest.fixture
def redis_port(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real redis-server with ``appendfsync always``, as the Redis storage wants by default."""
    directory = tmp_path_factory.mktemp("redis")
    server = require_server(lambda: RedisServer(directory, aof=True))
    try:
        yield str(server.port)
    finally:
        server.stop()


def run_tutorial_page(page: str, tmp_path: Path, ports: dict[str, str]) -> None:
    text = (ROOT / page).read_text()
    assert text.splitlines()[0] == TESTED_BY, f"{page}: the first line must be {TESTED_BY}"
    workdir = tmp_path / "project"
    workdir.mkdir()
    reader = Reader(page, workdir, {"8000": str(free_port()), **ports})
    try:
        assert reader.run_page(text) > 0, f"{page} runs no command"
    finally:
        reader.close()


@pytest.mark.parametrize("page", PAGES[:5])
def test_tutorial_page(page: str, tmp_path: Path) -> None:
    """Pages 1-5: SQLite, the embedded default; real worker and server processes where shown."""
    run_tutorial_page(page, tmp_path, {})


@pytest.mark.redis
def test_tutorial_page_06_distributed(tmp_path: Path, redis_port: str) -> None:
    """Page 6: Redis storage shared by two ``pyworkflow worker`` processes and a client."""
    run_tutorial_page(PAGES[5], tmp_path, {"6379": redis_port})


def test_the_pages_form_a_path() -> None:
    """Every page is listed here and in the nav, in order, and links to the next one."""
    assert sorted(p.name for p in TUTORIAL.glob("*.md")) == [Path(p).name for p in PAGES]
    nav = (ROOT / "mkdocs.yml").read_text()
    positions = [nav.index(page.removeprefix("docs/")) for page in PAGES]
    assert positions == sorted(positions)
    for page, following in itertools.pairwise(PAGES):
        assert f"]({Path(following).name})" in (ROOT / page).read_text(), f"{page}: no next link"


def test_the_matcher_binds_run_ids_and_skips_lines() -> None:
    """The output matcher: ids bind, times and decimals match any value, order matters."""
    ids: dict[str, str] = {}
    shown = "0123456789abcdef0123456789abcdef"
    real = "fedcba9876543210fedcba9876543210"
    actual = ["noise", f"started run {real}", "04:22:49.491  0.0   workflow_started", "end"]
    expected = [f"started run {shown}", "09:00:00.000 12.5 workflow_started"]
    assert match_lines(expected, actual, 0, ids) == 3
    assert ids == {shown: real}
    assert match_lines(["end", "noise"], actual, 0, ids) == -1
    assert match_lines([f"run {shown} failed"], [f"run {'1' * 32} failed"], 0, ids) == -1
