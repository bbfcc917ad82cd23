"""Griffe extension for the API reference: docstrings' reST roles and ``::`` blocks as Markdown.

The docstrings use Sphinx roles (``:func:`start```, ``:class:`~pyworkflow.storage.base.Storage```,
``:pep:`562```) and ``::`` literal blocks. mkdocstrings renders docstrings as Markdown, where
those would show up verbatim, so this extension rewrites them when griffe loads each object:

- a role to a Python object becomes an *optional* autorefs cross-reference (the element the
  mkdocstrings handler itself emits for signatures): a link when the object is rendered somewhere
  in the reference, plain code otherwise, and never a build warning. Relative names
  (``:func:`acancel```, ``:meth:`set```) are resolved against the enclosing class and module;
- ``:pep:`N``` becomes "PEP N" (no link: the build stays offline);
- a paragraph ending in ``::`` followed by an indented block becomes a fenced ``python`` block.

Loaded by mkdocs.yml (``extensions: [scripts/griffe_rest_roles.py]``, relative to the repository
root where ``mkdocs build`` runs). Nothing here changes the docstrings at runtime.
"""

from __future__ import annotations

import html
import re
import textwrap
from typing import Any

import griffe

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


def _rewrite(obj: griffe.Object) -> None:
    if obj.docstring is not None:
        text = _literal_blocks(obj.docstring.value)
        obj.docstring.value = _ROLE.sub(lambda m: _role(m, obj), text)
    for member in obj.members.values():
        if not member.is_alias:
            _rewrite(member)  # type: ignore[arg-type]  # not an alias, so an Object


class RestRoles(griffe.Extension):
    """Rewrite every docstring of a loaded package from reST to Markdown (see the module)."""

    def on_package(self, *, pkg: griffe.Module, **kwargs: Any) -> None:
        """Called by griffe once a package and its submodules are loaded."""
        _rewrite(pkg)
