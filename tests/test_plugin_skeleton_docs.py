"""docs/plugins.md shows the plugin skeleton's files as they are (examples/plugin-skeleton/).

Each block of the page marked ``<!-- fragment: the whole of examples/plugin-skeleton/<file> -->``
must be that file, and each marked ``<!-- fragment: excerpt of examples/plugin-skeleton/<file> -->``
a run of its consecutive lines, so the walkthrough cannot drift from the package CI tests.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SKELETON = ROOT / "examples" / "plugin-skeleton"
PAGE = ROOT / "docs" / "plugins.md"

_MARKED = re.compile(
    r"^<!-- fragment: (?P<kind>the whole of|excerpt of) "
    r"examples/plugin-skeleton/(?P<file>\S+) -->\n"
    r"```[a-z]*\n(?P<body>.*?)^```$",
    re.M | re.S,
)


def _shown() -> list[tuple[str, str, str]]:
    return [(m["kind"], m["file"], m["body"]) for m in _MARKED.finditer(PAGE.read_text())]


def test_every_block_shown_from_the_skeleton_is_in_its_file() -> None:
    shown = _shown()
    assert {file for _, file, _ in shown} >= {
        "pyproject.toml",
        "src/pyworkflow_skeleton/plugin.py",
        "src/pyworkflow_skeleton/storage.py",
        "tests/test_skeleton_conformance.py",
    }
    for kind, file, body in shown:
        text = (SKELETON / file).read_text()
        if kind == "the whole of":
            assert body == text, f"docs/plugins.md shows an outdated {file}"
        else:
            assert body.strip() and f"\n{body}" in f"\n{text}", (
                f"docs/plugins.md shows lines that are not in {file}: {body[:200]!r}"
            )


def test_the_skeleton_declares_the_entry_point_the_docs_name() -> None:
    project = tomllib.loads((SKELETON / "pyproject.toml").read_text())["project"]
    assert project["entry-points"]["pyworkflow"] == {"skeleton": "pyworkflow_skeleton.plugin"}
    assert (SKELETON / "src" / "pyworkflow_skeleton" / "py.typed").is_file()
