"""Sphinx configuration of the API reference (``docs/``), built from the numpydoc docstrings.

Build (CI runs the same command, warnings as errors)::

    .venv/bin/python -m pip install -e ".[docs]"
    .venv/bin/python -m sphinx -W --keep-going -b html docs docs/_build/html

The build imports every module of ``raking`` (torch and numba included) on the CPU: it needs
neither a GPU nor the network (no intersphinx inventories are fetched).
"""

import importlib
import os
import sys
from pathlib import Path
from typing import Any

from docutils import nodes
from sphinx.addnodes import pending_xref
from sphinx.application import Sphinx
from sphinx.environment import BuildEnvironment

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the checkout's raking, even without an editable install

# No import during the build may initialise a GPU or reach for one.
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")

project = "raking"
author = "the raking developers"
copyright = "2026, the raking developers (BSD-3-Clause)"
release = importlib.import_module("raking").__version__
version = release

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.mathjax",
    "numpydoc",
]

exclude_patterns = ["_build"]
root_doc = "index"

# autodoc: members follow each module's __all__; signatures keep their type hints, which numpydoc's
# Parameters sections already describe in words, so they are not repeated there.
autodoc_default_options = {"members": True, "member-order": "bysource"}
autodoc_typehints = "signature"
autodoc_preserve_defaults = True
autodoc_inherit_docstrings = False  # torch.nn.Module's own docstrings are not ours to build
add_module_names = False

# numpydoc: the class pages list their methods through autodoc, not a second time through
# numpydoc's member tables (which would describe each method twice).
numpydoc_show_class_members = False
numpydoc_class_members_toctree = False
numpydoc_xref_param_type = False
numpydoc_validation_checks: set[str] = set()  # ruff's pydocstyle (numpy convention) checks them

# Unresolvable type names in signatures (numpy, torch, pandas without intersphinx) stay plain text.
nitpicky = False

# MathJax comes from its CDN when a reader opens a page; the build itself fetches nothing.
html_theme = "furo"
html_title = "raking API reference"
html_static_path: list[str] = []
html_show_sourcelink = False


def _resolve_reexport(
    app: Sphinx, env: BuildEnvironment, node: pending_xref, contnode: nodes.Element
) -> nodes.Element | None:
    """Link a re-exported name (``raking.balance``) to its description (``raking.kernel.ipf``).

    The reference pages describe each object once (at the module that defines it, or at the
    package that re-exports it: ``raking.torch``); the docstrings often name it by another path.
    Import the target and look up the described name of that same object; anything that does not
    resolve stays plain text, as without this hook.
    """
    if node.get("refdomain") != "py":
        return None
    target = node.get("reftarget", "")
    module_name = node.get("py:module") or ""
    candidates = [f"{module_name}.{target}", target] if module_name else [target]
    domain = env.get_domain("py")
    described = _described_objects(env)
    for name in candidates:
        if not name.startswith("raking."):
            continue
        obj = _import_dotted(name)
        canonical = described.get(id(obj)) if obj is not None else None
        if canonical is None or canonical == name:
            continue
        new = node.deepcopy()
        new["reftarget"] = canonical
        new["refspecific"] = False
        found = domain.resolve_xref(
            env, node["refdoc"], app.builder, node["reftype"], canonical, new, contnode
        )
        if found is not None:
            return found
    return None


def _described_objects(env: BuildEnvironment) -> dict[int, str]:
    """``id(object)`` -> the name under which the pages describe it (built once per build)."""
    cache: dict[int, str] | None = getattr(env, "_raking_described", None)
    if cache is None:
        cache = {}
        for name in sorted(env.get_domain("py").objects):  # sorted: the same choice every build
            obj = _import_dotted(name)
            if obj is not None and not isinstance(obj, (int, float, str, tuple, bool)):
                cache.setdefault(id(obj), name)
        env._raking_described = cache  # type: ignore[attr-defined]
    return cache


def _import_dotted(name: str) -> Any:
    """The object at a dotted path such as ``raking.balance``, or ``None``."""
    parts = name.split(".")
    for split in range(len(parts), 0, -1):
        try:
            obj: Any = importlib.import_module(".".join(parts[:split]))
        except ImportError:
            continue
        try:
            for attr in parts[split:]:
                obj = getattr(obj, attr)
        except AttributeError:
            return None
        return obj
    return None


def _array_like_forms() -> list[str]:
    """The ways autodoc spells ``numpy.typing.ArrayLike`` once Python has expanded the alias."""
    from numpy.typing import ArrayLike
    from sphinx.util.typing import stringify_annotation

    modes = ("smart", "fully-qualified-except-typing", "fully-qualified")
    forms = {stringify_annotation(ArrayLike, mode) for mode in modes}  # type: ignore[arg-type]
    return sorted(forms, key=len, reverse=True)


ARRAY_LIKE_FORMS = _array_like_forms()


def _shorten_array_like(
    app: Sphinx,
    what: str,
    name: str,
    obj: Any,
    options: Any,
    signature: str | None,
    return_annotation: str | None,
) -> tuple[str | None, str | None]:
    """Show ``ArrayLike`` for the seven-member union that the modules' annotations evaluate to."""

    def shorten(text: str | None) -> str | None:
        if text is None:
            return None
        for form in ARRAY_LIKE_FORMS:
            text = text.replace(form, "~numpy.typing.ArrayLike")
        return text

    return shorten(signature), shorten(return_annotation)


_documenting: list[str] = []  # the module whose members autodoc is listing now


def _note_module(
    app: Sphinx, what: str, name: str, obj: Any, options: Any, lines: list[str]
) -> None:
    """Remember the module being documented (autodoc lists its members right after this)."""
    if what == "module":
        _documenting[:] = [name]


def _skip_reexport(
    app: Sphinx, what: str, name: str, obj: Any, skip: bool, options: Any
) -> bool | None:
    """Describe each class and function once, at the module that defines it.

    autodoc documents every name of a module's ``__all__``, re-exports included, so a class that
    ``raking.survey.results`` re-exports from ``raking.survey.estimates`` would be described
    twice (and every annotation naming it would find two targets). A package page that shows
    its re-exports on purpose (``raking.torch``, ``raking.validation``,
    ``raking.simulation.experiments``) says ``:imported-members:``.
    """
    if what != "module" or not _documenting or getattr(options, "imported_members", False):
        return None
    owner = getattr(obj, "__module__", None)
    if isinstance(owner, str) and owner.startswith("raking") and owner != _documenting[0]:
        return True
    return None


def setup(app: Sphinx) -> None:
    """Register the re-export resolver and skipper, and the ``ArrayLike`` shortening."""
    app.connect("missing-reference", _resolve_reexport)
    app.connect("autodoc-process-signature", _shorten_array_like)
    app.connect("autodoc-process-docstring", _note_module)
    app.connect("autodoc-skip-member", _skip_reexport)
