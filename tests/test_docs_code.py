"""Every code block in the docs is run by a test or marked as a fragment on purpose.

The rules, for every ``docs/**/*.md`` page and README.md:

- ``python`` blocks are run: all of a page's blocks, in page order, as one script in a fresh
  ``python`` process whose cwd is an empty temporary directory and whose environment has no
  ``PYWORKFLOW_*`` variable (the embedded default applies: SQLite under ``./.pyworkflow/``).
  Each block's lines keep their line numbers in the script, so a traceback's line number is the
  page's. An indented fence (in a list item or an admonition) is dedented by its own indent.
- A block right after ``<!-- fragment: REASON -->`` (on the line just above the fence, no blank
  line between) is not run; the reason must say why.
- ``toml``, ``json`` and ``yaml`` blocks are parsed; a TOML block with a ``[tool.pyworkflow]``
  table is also resolved by :func:`pyworkflow.config.load_settings`.
- Blocks of any other language (``bash``, ``console``, ``text``, none...) must be fragments.
- A page whose first line is ``<!-- tested-by: tests/test_x.py -->`` has its ``python`` and
  ``console`` blocks run by that test instead (the tutorial's test saves the files and replays
  the shell sessions): the file must exist and name the page's path.
- A page whose first line is ``<!-- run-with: pytest -->`` is a test module: its script is run
  by ``python -m pytest`` (the pyworkflow pytest plugin gives it ``workflow_env``), and every
  test in it must pass, none skipped.
- Relative links (README.md and docs pages) point at files that exist, and at headings that
  exist when they carry an ``#anchor``.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import tomllib
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
PAGES = sorted(p.relative_to(ROOT).as_posix() for p in (ROOT / "docs").rglob("*.md"))
PAGES.append("README.md")

PYTHON = {"python", "py", "python3"}
PARSED = {"toml", "json", "yaml", "yml"}
#: What a tested-by page's own test runs, besides python blocks: shell sessions.
TESTED_BY = {"console"}
#: Seconds one page's script may take (a page is meant to run in well under 5 s).
PAGE_TIMEOUT = 60

_FENCE = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>`{3,}|~{3,})(?P<info>.*)$")
_FRAGMENT = re.compile(r"^<!--\s*fragment:(?P<reason>.*?)-->$")
_TESTED_BY = re.compile(r"^<!--\s*tested-by:\s*(?P<path>\S+)\s*-->\s*$")
_RUN_WITH_PYTEST = re.compile(r"^<!--\s*run-with:\s*pytest\s*-->\s*$")
_LINK = re.compile(r"(?<!!)\[[^\]]*\]\((?P<target>[^)\s]+)(?:\s+\"[^\"]*\")?\)")
_IMAGE = re.compile(r"!\[[^\]]*\]\((?P<target>[^)\s]+)(?:\s+\"[^\"]*\")?\)")


@dataclass(frozen=True)
class Block:
    """One fenced code block of a page."""

    line: int  #: 1-based line of the opening fence
    lang: str
    lines: tuple[str, ...]  #: the content, dedented by the fence's indent
    fragment: str | None  #: the marker's reason (maybe empty), None without a marker
    closed: bool


@dataclass(frozen=True)
class Page:
    """A page's blocks, its tested-by target and its text outside code blocks."""

    path: str
    blocks: tuple[Block, ...]
    tested_by: str | None
    prose: tuple[tuple[int, str], ...]  #: (line number, line) outside fences
    stray_markers: tuple[int, ...]  #: fragment markers not right above a fence
    pytest: bool  #: first line ``<!-- run-with: pytest -->``: the script is a pytest module
    total_lines: int


def _dedent(line: str, indent: str) -> str:
    """Strip up to ``len(indent)`` leading blanks (the fence's own indent)."""
    n = 0
    while n < len(indent) and n < len(line) and line[n] in " \t":
        n += 1
    return line[n:]


def parse_page(path: str) -> Page:
    """Split a Markdown page of the repository into its fenced blocks."""
    return parse_text(path, (ROOT / path).read_text(encoding="utf-8"))


def parse_text(path: str, text: str) -> Page:
    """Split Markdown text into its fenced blocks (CommonMark fences, any indent)."""
    lines = text.split("\n")
    blocks: list[Block] = []
    prose: list[tuple[int, str]] = []
    marker_lines: set[int] = set()
    used_markers: set[int] = set()
    i = 0
    while i < len(lines):
        line = lines[i]
        if _FRAGMENT.match(line.strip()):
            marker_lines.add(i + 1)
        m = _FENCE.match(line)
        if m is None or (m["fence"][0] == "`" and "`" in m["info"]):
            prose.append((i + 1, line))
            i += 1
            continue
        indent, fence = m["indent"], m["fence"]
        info = m["info"].strip().lstrip("{").lstrip(".")
        lang = info.split()[0].rstrip("}").lower() if info else ""
        fragment = None
        if i > 0:
            above = _FRAGMENT.match(lines[i - 1].strip())
            if above is not None:
                fragment = above["reason"].strip()
                used_markers.add(i)
        close = re.compile(rf"^[ \t]*{re.escape(fence[0])}{{{len(fence)},}}[ \t]*$")
        j = i + 1
        while j < len(lines) and not close.match(lines[j]):
            j += 1
        content = tuple(_dedent(body, indent) for body in lines[i + 1 : j])
        blocks.append(Block(i + 1, lang, content, fragment, j < len(lines)))
        i = j + 1
    tested_by = _TESTED_BY.match(lines[0].strip()) if lines else None
    return Page(
        path,
        tuple(blocks),
        tested_by["path"] if tested_by else None,
        tuple(prose),
        tuple(sorted(marker_lines - used_markers)),
        bool(lines) and _RUN_WITH_PYTEST.match(lines[0].strip()) is not None,
        len(lines),
    )


def runnable(page: Page) -> list[Block]:
    """The python blocks this checker runs (none on a tested-by page)."""
    if page.tested_by is not None:
        return []
    return [b for b in page.blocks if b.lang in PYTHON and b.fragment is None]


def script_of(page: Page) -> str:
    """The page's runnable blocks as one script, each line at its line number in the page."""
    out = [""] * page.total_lines
    for block in runnable(page):
        for offset, code in enumerate(block.lines):
            out[block.line + offset] = code
    return "\n".join(out) + "\n"


def _check_config(text: str) -> str | None:
    """Resolve a ``[tool.pyworkflow]`` table the way a project's pyproject.toml is read."""
    from pyworkflow.config import load_settings
    from pyworkflow.errors import ConfigError

    with tempfile.TemporaryDirectory() as tmp:
        Path(tmp, "pyproject.toml").write_text(text, encoding="utf-8")
        try:
            load_settings(cwd=Path(tmp), environ={})
        except ConfigError as exc:
            return str(exc)
    return None


def static_problems(page: Page) -> list[str]:
    """Every rule except running the python blocks, as 'page:line: problem' strings."""
    problems: list[str] = []
    where = page.path
    for line in page.stray_markers:
        problems.append(f"{where}:{line}: a fragment marker must be on the line above a fence")
    if page.tested_by is not None:
        test = ROOT / page.tested_by
        if not test.is_file():
            problems.append(f"{where}:1: tested-by names {page.tested_by}, which does not exist")
        elif page.path not in test.read_text(encoding="utf-8"):
            problems.append(f"{where}:1: {page.tested_by} does not mention {page.path}")
    for block in page.blocks:
        at = f"{where}:{block.line}"
        if not block.closed:
            problems.append(f"{at}: the fence is never closed")
            continue
        if block.fragment is not None:
            if not block.fragment:
                problems.append(f"{at}: the fragment marker gives no reason")
            continue
        text = "\n".join(block.lines)
        if block.lang in PYTHON or (page.tested_by is not None and block.lang in TESTED_BY):
            continue
        if page.tested_by is not None and block.lang == "console":
            continue  # the tested-by test runs the page's shell sessions (tests/test_tutorial.py)
        if block.lang not in PARSED:
            problems.append(
                f"{at}: a {block.lang or 'plain'!s} block must be marked "
                "<!-- fragment: REASON --> on the line above it"
            )
        elif block.lang == "toml":
            try:
                document = tomllib.loads(text)
            except tomllib.TOMLDecodeError as exc:
                problems.append(f"{at}: not valid TOML: {exc}")
                continue
            if isinstance(document.get("tool"), dict) and "pyworkflow" in document["tool"]:
                error = _check_config(text)
                if error is not None:
                    problems.append(f"{at}: [tool.pyworkflow] refused by load_settings: {error}")
        elif block.lang == "json":
            try:
                json.loads(text)
            except json.JSONDecodeError as exc:
                problems.append(f"{at}: not valid JSON: {exc}")
        else:
            try:
                yaml.safe_load(text)
            except yaml.YAMLError as exc:
                problems.append(f"{at}: not valid YAML: {exc}")
    return problems


PARSED_PAGES = {path: parse_page(path) for path in PAGES}
RUN_PAGES = [path for path, page in PARSED_PAGES.items() if runnable(page)]


# ----- running the python blocks: every page's script starts at once on a small thread pool


def _clean_env() -> dict[str, str]:
    """The environment without PyWorkflow settings or the outer pytest's options."""
    return {k: v for k, v in os.environ.items() if not k.startswith(("PYWORKFLOW_", "PYTEST_"))}


def _run_page(path: str) -> subprocess.CompletedProcess[str]:
    page = PARSED_PAGES[path]
    tmp = Path(tempfile.mkdtemp(prefix="pw-docs-"))
    try:
        # The file's name is the page's, so a traceback reads "docs/x.md.py", line N (N as in
        # the page).
        name = path.replace("/", "__").replace("-", "_").removesuffix(".md")
        script = tmp / (f"test_{name}.py" if page.pytest else f"{name}.md.py")
        script.write_text(script_of(page), encoding="utf-8")
        command = [sys.executable, script.name]
        if page.pytest:
            command[1:1] = ["-m", "pytest", "-q", "-p", "no:cacheprovider", "-rs"]
        try:
            return subprocess.run(
                command,
                cwd=tmp,
                env=_clean_env(),
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                timeout=PAGE_TIMEOUT,
            )
        except subprocess.TimeoutExpired as exc:  # killed: report what it printed meanwhile
            out, err = (
                part.decode(errors="replace") if isinstance(part, bytes) else part or ""
                for part in (exc.stdout, exc.stderr)
            )
            return subprocess.CompletedProcess(
                command, -9, out, f"{err}\nkilled after {PAGE_TIMEOUT} s (the page's timeout)"
            )
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


@pytest.fixture(scope="session")
def page_runs(request: pytest.FixtureRequest) -> Iterator[dict[str, Future[object]]]:
    """Futures of the collected pages' runs, started together on first use."""
    wanted = [
        item.callspec.params["path"]
        for item in request.session.items
        if getattr(item, "originalname", "") == "test_python_blocks_run"
        and hasattr(item, "callspec")
    ]
    pool = ThreadPoolExecutor(max_workers=min(4, (os.cpu_count() or 1) + 1))
    futures: dict[str, Future[object]] = {path: pool.submit(_run_page, path) for path in wanted}
    yield futures
    pool.shutdown(wait=True, cancel_futures=True)


# ----- the tests


@pytest.mark.parametrize("path", PAGES)
def test_blocks_are_run_or_marked(path: str) -> None:
    """Static rules: fragments have reasons, other languages are fragments, data parses."""
    problems = static_problems(PARSED_PAGES[path])
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("path", RUN_PAGES)
def test_python_blocks_run(path: str, page_runs: dict[str, Future[object]]) -> None:
    """The page's python blocks, concatenated, run to exit code 0 on the embedded default."""
    future = page_runs.get(path)
    out = future.result() if future is not None else _run_page(path)
    assert isinstance(out, subprocess.CompletedProcess)
    lines = ", ".join(str(b.line) for b in runnable(PARSED_PAGES[path]))
    assert out.returncode == 0, (
        f"{path}: its python blocks (fences at lines {lines}) exited {out.returncode}; "
        f"line numbers below are the page's\n{out.stdout[-4000:]}\n{out.stderr[-4000:]}"
    )
    if PARSED_PAGES[path].pytest:
        summary = out.stdout.strip().splitlines()[-1]
        assert re.search(r"\d+ passed", summary) and "skipped" not in summary, out.stdout


def _slug(heading: str) -> str:
    from markdown.extensions.toc import slugify

    text = re.sub(r"`([^`]*)`", r"\1", heading)
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", text)
    text = re.sub(r"\*{1,2}([^*]+)\*{1,2}", r"\1", text)
    return str(slugify(text, "-"))


def _anchors(path: Path) -> set[str]:
    """Heading ids as the toc extension makes them, and mkdocstrings' ``::: name`` objects."""
    page = parse_page(path.relative_to(ROOT).as_posix())
    anchors: set[str] = set()
    for _, line in page.prose:
        directive = re.match(r"^:::\s+([\w.]+)", line)
        if directive:
            anchors.add(directive[1])
        m = re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)
        if m:
            slug = base = _slug(m[1])
            n = 0
            while slug in anchors:
                n += 1
                slug = f"{base}_{n}"
            anchors.add(slug)
    return anchors


def _has_anchor(dest: Path, anchor: str) -> bool:
    """A heading's id, a documented object's, or a member of one (``pyworkflow.Hook.token``)."""
    anchors = _anchors(dest)
    return anchor in anchors or any(anchor.startswith(f"{name}.") for name in anchors)


@pytest.mark.parametrize("path", PAGES)
def test_relative_links_resolve(path: str) -> None:
    """Relative links and images point at files (and headings) that exist."""
    page = PARSED_PAGES[path]
    here = (ROOT / path).parent
    problems = []
    for number, line in page.prose:
        line = re.sub(r"`[^`]*`", "", line)
        for m in [*_LINK.finditer(line), *_IMAGE.finditer(line)]:
            target = m["target"]
            if re.match(r"^[a-z][a-z0-9+.-]*:", target):
                continue
            file_part, _, anchor = target.partition("#")
            dest = (here / file_part).resolve() if file_part else ROOT / path
            if not dest.exists():
                problems.append(f"{path}:{number}: {target}: no such file")
            elif anchor and dest.suffix == ".md" and not _has_anchor(dest, anchor):
                problems.append(f"{path}:{number}: {target}: no heading with that anchor")
    assert not problems, "\n".join(problems)


SAMPLE = """\
# A page

<!-- fragment: shell command -->
```bash
pyworkflow worker
```

!!! note
    <!-- fragment: -->
    ```console
    $ echo hi
    ```

1. A list item:

    ```python
    def f() -> int:
        return 1
    ```

<!-- fragment: a stray marker, a blank line above the fence -->

````python title="x.py"
print(f())  # a ``` inside a longer fence is content
````

```text
unmarked
```

~~~toml
[tool.pyworkflow]
colour = "blue"
~~~
"""


def test_the_checker_reads_fences_markers_and_line_numbers() -> None:
    """The rules themselves, on a page made for it."""
    page = parse_text("docs/sample.md", SAMPLE)
    assert [(b.line, b.lang, b.fragment) for b in page.blocks] == [
        (4, "bash", "shell command"),
        (10, "console", ""),
        (16, "python", None),
        (23, "python", None),
        (27, "text", None),
        (31, "toml", None),
    ]
    # The indented block is dedented by its fence's indent, and keeps its line numbers.
    script = script_of(page).split("\n")
    assert script[16:18] == ["def f() -> int:", "    return 1"]
    assert script[23] == "print(f())  # a ``` inside a longer fence is content"
    assert "".join(script[:16]) == ""
    problems = static_problems(page)
    assert problems[0] == ("docs/sample.md:21: a fragment marker must be on the line above a fence")
    assert problems[1] == "docs/sample.md:10: the fragment marker gives no reason"
    assert problems[2].startswith("docs/sample.md:27: a text block must be marked")
    assert problems[3].startswith("docs/sample.md:31: [tool.pyworkflow] refused by load_settings")
    assert "colour" in problems[3]
    assert len(problems) == 4


def _nav_entries(node: object, section: str = "") -> list[tuple[str, str]]:
    """(top-level section title, page) for every page of a mkdocs ``nav``."""
    out: list[tuple[str, str]] = []
    if isinstance(node, list):
        for item in node:
            out += _nav_entries(item, section)
    elif isinstance(node, dict):
        for title, value in node.items():
            out += _nav_entries(value, section or str(title))
    elif isinstance(node, str):
        out.append((section, node))
    return out


def test_the_nav_lists_every_page_once_in_the_agreed_order() -> None:
    """Every docs page is in the nav once; sections come in the order readers look for them."""

    class Loader(yaml.SafeLoader):
        """Reads mkdocs.yml's ``!!python/name:`` and ``!ENV`` tags as plain values."""

    Loader.add_multi_constructor("", lambda loader, suffix, node: None)
    config = yaml.load((ROOT / "mkdocs.yml").read_text(encoding="utf-8"), Loader=Loader)
    entries = _nav_entries(config["nav"])
    listed = [page for _, page in entries]
    duplicates = sorted({page for page in listed if listed.count(page) > 1})
    assert not duplicates, duplicates
    on_disk = {p.removeprefix("docs/") for p in PAGES if p.startswith("docs/")}
    assert set(listed) == on_disk, (sorted(on_disk - set(listed)), sorted(set(listed) - on_disk))
    sections = list(dict.fromkeys(section for section, _ in entries))
    # Home, Tutorial, How-to guides, the concept and feature pages, Command line, Reference,
    # Plugins, Migrating..., Changelog (docs-conventions of issue 21).
    assert sections[:3] == ["Home", "Tutorial", "How-to guides"], sections
    after = sections[sections.index("Command line") :]
    assert after[:3] == ["Command line", "Reference", "Plugins"], sections
    assert after[-1] == "Changelog", sections
    assert all(s.startswith("Migrat") for s in after[3:-1]), sections
    # The concept and feature pages sit between the how-to guides and the command line.
    between = sections[sections.index("How-to guides") + 1 : sections.index("Command line")]
    assert {page for section, page in entries if section in between} >= {
        "concepts.md",
        "workflows-and-steps.md",
        "configuration.md",
    }
