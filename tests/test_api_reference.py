"""The API reference covers the public surface, and every public name has its own docstring.

The public surface is ``pyworkflow.__all__``, ``pyworkflow.testing.__all__`` and the hook
specifications of ``pyworkflow.hookspecs``; the interfaces plugins implement (``Storage``,
``Executor``) must document each public method.

**When does a name have a docstring?** The text must belong to the object and say something:

- a class: a docstring in its own ``__dict__`` (one inherited from a base, ``object`` or
  ``Exception`` does not count), different from every base class's;
- a function (or a method, or a decorated function): its ``__doc__``; a function never inherits
  one, and ``functools.wraps`` copies the wrapped function's, which documents the same thing;
- anything else (a constant such as ``__version__``, an instance such as ``workflow_logger``,
  a type alias): the docstring written under its assignment in the source (a string literal on
  the next line), as griffe reads it. Such an object's runtime ``__doc__`` is its type's
  (``str``'s, a ``typing`` alias's, a private class's), which is not what the reference shows,
  so it never counts.

In every case the text, stripped, must have at least :data:`MIN_WORDS` words and must not be the
docstring of the object's type.

**When is a name in the reference?** ``docs/reference/*.md`` holds mkdocstrings directives
(``::: identifier`` with an optional indented ``options:`` block). A public name ``N`` of module
``M`` is covered by a directive whose identifier is ``M.N``, by one whose identifier ends in
``.N`` and names the same object (``::: pyworkflow.step.step`` for ``pyworkflow.step``, whose
plain path griffe reads as the submodule), or by a directive on a module or class whose
``members:`` option lists ``N`` and whose ``N`` is the same object.
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
import inspect
import re
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import griffe
import pytest
import yaml

import pyworkflow
import pyworkflow.hookspecs
import pyworkflow.testing
from pyworkflow.executors.base import Executor
from pyworkflow.storage.base import Storage

ROOT = Path(__file__).resolve().parent.parent
REFERENCE = ROOT / "docs" / "reference"

#: A docstring shorter than this many words says nothing (``"Start."``, ``"TODO"``).
MIN_WORDS = 3

_DIRECTIVE = re.compile(r"^::: *(?P<ident>[\w.]+) *$")


# ----- the rules -----


def _meaningful(text: str | None, obj: Any) -> bool:
    """Whether ``text`` is a docstring that says something of its own about ``obj``."""
    if not text or len(text.split()) < MIN_WORDS:
        return False
    generic = {inspect.getdoc(type(obj)), inspect.getdoc(object)}
    return inspect.cleandoc(text) not in generic


@functools.cache
def _griffe_module(module: str) -> Any:
    return griffe.load(module, search_paths=[str(ROOT / "src")])


def _source_docstring(module: str, name: str) -> str | None:
    """The docstring under ``name``'s assignment in ``module``'s source, as griffe reads it."""
    try:
        member = _griffe_module(module)[name]
    except (KeyError, ImportError):
        return None
    target = member.final_target if member.is_alias else member
    return target.docstring.value if target.docstring else None


def own_docstring(obj: Any, module: str, name: str) -> str | None:
    """``obj``'s own, meaningful docstring (see the module docstring), or None."""
    if inspect.isclass(obj):
        text = obj.__dict__.get("__doc__")
        inherited = {inspect.getdoc(base) for base in obj.__mro__[1:]}
        if not isinstance(text, str) or inspect.cleandoc(text) in inherited:
            return None
    elif inspect.isroutine(obj):
        text = obj.__doc__
    else:
        text = _source_docstring(module, name)
    return text if _meaningful(text, obj) else None


def _import(identifier: str) -> Any:
    """The object an mkdocstrings identifier names (longest importable module, then attributes)."""
    parts = identifier.split(".")
    for i in range(len(parts), 0, -1):
        try:
            obj: Any = importlib.import_module(".".join(parts[:i]))
        except ImportError:
            continue
        for attr in parts[i:]:
            obj = getattr(obj, attr)
        return obj
    raise ImportError(identifier)


def directives(pages: dict[str, str]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    """Each ``::: identifier`` of the pages, with its page and its options."""
    for page, text in pages.items():
        lines = text.splitlines()
        for i, line in enumerate(lines):
            match = _DIRECTIVE.match(line)
            if not match:
                continue
            block = []
            for following in lines[i + 1 :]:
                if following.strip() and not following.startswith((" ", "\t")):
                    break
                block.append(following)
            parsed = yaml.safe_load(textwrap.dedent("\n".join(block))) if block else None
            options = (parsed or {}).get("options") or {}
            yield page, match["ident"], options


def covered(module: str, name: str, obj: Any, pages: dict[str, str]) -> list[str]:
    """The pages whose directives render ``module.name`` (see the module docstring)."""
    found = []
    for page, ident, options in directives(pages):
        if ident == f"{module}.{name}":
            found.append(page)
        elif ident.endswith(f".{name}") and _import(ident) is obj:
            found.append(page)
        elif name in (options.get("members") or []) and getattr(_import(ident), name) is obj:
            found.append(page)
    return found


def reference_pages() -> dict[str, str]:
    return {p.name: p.read_text(encoding="utf-8") for p in sorted(REFERENCE.glob("*.md"))}


def public_names() -> list[tuple[str, str]]:
    names = [("pyworkflow", n) for n in pyworkflow.__all__]
    names += [("pyworkflow.testing", n) for n in pyworkflow.testing.__all__]
    return names


def hookspec_names() -> list[str]:
    return [
        n
        for n, f in vars(pyworkflow.hookspecs).items()
        if n.startswith("pyworkflow_") and hasattr(f, "pyworkflow_spec")
    ]


# ----- the public surface -----


@pytest.mark.parametrize(("module", "name"), public_names())
def test_public_name_has_its_own_docstring(module: str, name: str) -> None:
    obj = getattr(importlib.import_module(module), name)
    assert own_docstring(obj, module, name), (
        f"{module}.{name} has no docstring of its own with at least {MIN_WORDS} words: "
        "write one (for a constant or an instance, a string literal under its assignment)"
    )


@pytest.mark.parametrize(("module", "name"), public_names())
def test_public_name_is_in_the_reference(module: str, name: str) -> None:
    obj = getattr(importlib.import_module(module), name)
    pages = covered(module, name, obj, reference_pages())
    assert pages, f"{module}.{name} is on no page of docs/reference/: add `::: {module}.{name}`"


def test_hookspecs_are_documented_and_in_the_reference() -> None:
    specs = hookspec_names()
    assert len(specs) >= 6
    pages = reference_pages()
    for name in specs:
        obj = getattr(pyworkflow.hookspecs, name)
        assert own_docstring(obj, "pyworkflow.hookspecs", name), name
        assert covered("pyworkflow.hookspecs", name, obj, pages), f"hook {name} not in reference"


@pytest.mark.parametrize("cls", [Storage, Executor], ids=lambda c: c.__name__)
def test_plugin_interfaces_document_each_public_method(cls: type) -> None:
    undocumented = [
        name
        for name, value in vars(cls).items()
        if not name.startswith("_")
        and callable(getattr(cls, name))
        and not _meaningful(inspect.getdoc(getattr(cls, name)), value)
    ]
    assert not undocumented, f"{cls.__name__} methods without a docstring: {undocumented}"
    assert covered(cls.__module__, cls.__name__, cls, reference_pages())


def test_every_directive_names_an_importable_object() -> None:
    for page, ident, _ in directives(reference_pages()):
        assert _import(ident) is not None, f"{page}: ::: {ident}"


def test_each_object_is_rendered_once() -> None:
    # two headings for one object would make its cross-references ambiguous
    seen: dict[int, str] = {}
    for page, ident, _ in directives(reference_pages()):
        obj = _import(ident)
        if inspect.isclass(obj) or inspect.isroutine(obj) or inspect.ismodule(obj):
            assert id(obj) not in seen, f"{page}: ::: {ident} is also rendered by {seen[id(obj)]}"
            seen[id(obj)] = f"{page} (::: {ident})"


def test_reference_pages_are_in_the_nav() -> None:
    nav = (ROOT / "mkdocs.yml").read_text(encoding="utf-8")
    for page in reference_pages():
        assert f"reference/{page}" in nav, page


# ----- the rules catch what they should -----


def test_rules_refuse_missing_inherited_generic_and_trivial_docstrings() -> None:
    def bare() -> None:
        pass

    def terse() -> None:
        """Start."""

    class Base:
        """A base class with a docstring of its own."""

    class Child(Base):
        pass

    class Error(Exception):
        pass

    assert own_docstring(bare, "tests", "bare") is None
    assert own_docstring(terse, "tests", "terse") is None
    assert own_docstring(Child, "tests", "Child") is None
    assert own_docstring(Error, "tests", "Error") is None
    assert own_docstring(Base, "tests", "Base")


def test_rules_read_a_constant_from_its_source_not_its_type() -> None:
    # __version__ is a str: its runtime __doc__ is str's, which never counts.
    assert _meaningful(pyworkflow.__version__.__doc__, pyworkflow.__version__) is False
    assert own_docstring(pyworkflow.__version__, "pyworkflow", "__version__")


def test_coverage_needs_a_directive_or_a_members_entry() -> None:
    page = {"x.md": "::: pyworkflow.start\n"}
    assert covered("pyworkflow", "start", pyworkflow.start, page) == ["x.md"]
    assert covered("pyworkflow", "cancel", pyworkflow.cancel, page) == []
    # The plain path of `step` is the submodule to griffe: `pyworkflow.step.step` covers it.
    page = {"x.md": "::: pyworkflow.step.step\n"}
    assert covered("pyworkflow", "step", pyworkflow.step, page) == ["x.md"]
    members = (
        "::: pyworkflow.hookspecs\n    options:\n      members:\n"
        "        - pyworkflow_register_storage\n"
    )
    spec = pyworkflow.hookspecs.pyworkflow_register_storage
    name = "pyworkflow_register_storage"
    assert covered("pyworkflow.hookspecs", name, spec, {"x.md": members}) == ["x.md"]
    other = pyworkflow.hookspecs.pyworkflow_register_executors
    assert (
        covered("pyworkflow.hookspecs", "pyworkflow_register_executors", other, {"x.md": members})
        == []
    )


# ----- the griffe extension that renders our reST docstrings as Markdown -----


def _extension() -> Any:
    path = ROOT / "scripts" / "griffe_rest_roles.py"
    spec = importlib.util.spec_from_file_location("griffe_rest_roles", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_extension_turns_roles_blocks_and_page_mentions_into_markdown(tmp_path: Path) -> None:
    ext = _extension()
    (tmp_path / "queues.md").write_text("# Queues and flow control\n\n## Limits\n")
    (tmp_path / "other.md").write_text("# Other\n\n## Limits\n")
    source = '''
def acancel():
    """Cancel."""

def cancel():
    """Sync form of :func:`acancel`; see :class:`~pyworkflow.storage.base.Storage`.

    :pep:`562` and docs/queues.md (limits). Use it like this::

        cancel()

    Done.
    """
'''
    with griffe.temporary_visited_module(source, module_name="mod") as module:
        ext._rewrite(module, ext._page_titles(tmp_path))
        text = module["cancel"].docstring.value
    assert '<autoref identifier="mod.acancel" optional><code>acancel()</code></autoref>' in text
    assert 'identifier="pyworkflow.storage.base.Storage" optional><code>Storage</code>' in text
    assert "PEP 562" in text
    assert '<autoref identifier="queues-and-flow-control" optional>' in text
    assert "Use it like this:\n\n```python\ncancel()\n```\n" in text
    assert ":func:" not in text and "::" not in text
    # a title whose id another heading shares is left as it is (it could link to the wrong page)
    (tmp_path / "dup.md").write_text("# X\n\n## Queues and flow control\n")
    assert "queues.md" not in ext._page_titles(tmp_path)
