"""Griffe extension for the API reference: docstrings' reST roles and ``::`` blocks as Markdown.

The docstrings use Sphinx roles (``:func:`start```, ``:class:`~pyworkflow.storage.base.Storage```,
``:pep:`562```) and ``::`` literal blocks. mkdocstrings renders docstrings as Markdown, where
those would show up verbatim, so this extension rewrites them when griffe loads each object:

- a role to a Python object becomes an *optional* autorefs cross-reference (the element the
  mkdocstrings handler itself emits for signatures): a link when the object is rendered somewhere
  in the reference, plain code otherwise, and never a build warning. Relative names
  (``:func:`acancel```, ``:meth:`set```) are resolved against the enclosing class and module;
- ``:pep:`N``` becomes "PEP N" (no link: the build stays offline);
- a paragraph ending in ``::`` followed by an indented block becomes a fenced ``python`` block;
- a mention of a docs page (``docs/queues.md``) becomes an optional cross-reference to that
  page's title heading, shown as the title ("Queues and flow control"), when that heading's id
  is unique in the site (else the mention stays as it is).

Loaded by mkdocs.yml (``extensions: [scripts/griffe_rest_roles.py]``, relative to the repository
root where ``mkdocs build`` runs). Nothing here changes the docstrings at runtime.
"""

from __future__ import annotations

import html
import re
import textwrap
from collections import Counter
from pathlib import Path
from typing import Any

import griffe
from markdown.extensions.toc import slugify  # type: ignore[import-untyped]  # no Markdown stubs

_ROLE = re.compile(
    r":(?P<role>func|class|meth|attr|mod|data|exc|obj|const|pep|rfc):`(?P<text>[^`]+)`"
)
_TITLED = re.compile(r"^(?P<title>.*?)\s*<(?P<target>[^>]+)>$")


def _resolve(name: str, obj: griffe.Object) -> str:
    """The full path ``name`` refers to from the docstring of ``obj`` (best effort)."""
    if name.startswith("pyworkflow"):
        return name
    head = name.split(".", 1)[0]
    scope: griffe.Object | None = obj
    while scope is not None:
        if head in scope.members:
            return f"{scope.path}.{name}"
        if scope.name == head:
            return f"{scope.path}{name[len(head) :]}"
        scope = scope.parent
    return name


def _role(match: re.Match[str], obj: griffe.Object) -> str:
    role, text = match["role"], match["text"].strip()
    if role == "pep":
        return f"PEP {text}"
    if role == "rfc":
        return f"RFC {text}"
    titled = _TITLED.match(text)
    if titled:
        title, target = titled["title"], titled["target"]
    else:
        target = text.lstrip("~")
        title = target.rsplit(".", 1)[-1] if text.startswith("~") else target
    target = target.lstrip("~").rstrip("()")
    if role in ("func", "meth") and not title.endswith(")"):
        title = f"{title}()"
    identifier = html.escape(_resolve(target, obj), quote=True)
    code = f"<code>{html.escape(title)}</code>"
    return f'<autoref identifier="{identifier}" optional>{code}</autoref>'


def _literal_blocks(text: str) -> str:
    """``Paragraph::`` plus an indented block -> ``Paragraph:`` plus a fenced python block."""
    lines = text.split("\n")
    out: list[str] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.rstrip().endswith("::") and i + 1 < len(lines) and not lines[i + 1].strip():
            j = i + 1
            while j < len(lines) and not lines[j].strip():
                j += 1
            block: list[str] = []
            while j < len(lines) and (not lines[j].strip() or lines[j].startswith((" ", "\t"))):
                block.append(lines[j])
                j += 1
            if block:
                while block and not block[-1].strip():
                    block.pop()
                intro = line.rstrip()[:-1]
                out.extend([intro if intro.strip() != ":" else "", "", "```python"])
                out.extend(textwrap.dedent("\n".join(block)).split("\n"))
                out.extend(["```", ""])
                i = j
                continue
        out.append(line)
        i += 1
    return "\n".join(out)


_DOCS_PAGE = re.compile(r"(?P<code>``)?docs/(?P<path>[\w/.-]+?\.md)(?:#[\w-]+)?(?(code)``)")


_HEADING = re.compile(r"^(?P<level>#{1,6}) +(?P<title>.+?) *#* *$")


def _page_titles(docs: Path) -> dict[str, tuple[str, str]]:
    """Each page (path under ``docs/``) -> (its title heading's id, its title).

    Only pages whose title's id is no other heading's id anywhere in ``docs/`` (lines
    starting with ``#`` inside code blocks count too: a false clash only loses a link).
    """
    found: dict[str, tuple[str, str]] = {}
    ids: Counter[str] = Counter()
    for page in sorted(docs.rglob("*.md")):
        for line in page.read_text(encoding="utf-8").splitlines():
            heading = _HEADING.match(line)
            if heading is None:
                continue
            anchor = slugify(heading["title"].strip(), "-")
            ids[anchor] += 1
            path = page.relative_to(docs).as_posix()
            if heading["level"] == "#" and path not in found:
                found[path] = (anchor, heading["title"].strip())
    return {path: (anchor, title) for path, (anchor, title) in found.items() if ids[anchor] == 1}


def _docs_link(match: re.Match[str], titles: dict[str, tuple[str, str]]) -> str:
    known = titles.get(match["path"])
    if known is None:
        return match[0]
    anchor, title = known
    return f'<autoref identifier="{html.escape(anchor)}" optional>{html.escape(title)}</autoref>'


def _rewrite(obj: griffe.Object, titles: dict[str, tuple[str, str]]) -> None:
    if obj.docstring is not None:
        text = _literal_blocks(obj.docstring.value)
        text = _ROLE.sub(lambda m: _role(m, obj), text)
        obj.docstring.value = _DOCS_PAGE.sub(lambda m: _docs_link(m, titles), text)
    for member in obj.members.values():
        if not member.is_alias:
            _rewrite(member, titles)  # type: ignore[arg-type]  # not an alias, so an Object


class RestRoles(griffe.Extension):
    """Rewrite every docstring of a loaded package from reST to Markdown (see the module)."""

    def on_package(self, *, pkg: griffe.Module, **kwargs: Any) -> None:
        """Called by griffe once a package and its submodules are loaded."""
        docs = Path("docs")  # mkdocs runs in the repository root
        _rewrite(pkg, _page_titles(docs) if docs.is_dir() else {})
