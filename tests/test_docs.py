"""The API reference (``docs/``) covers the package: every public module, every public name.

CI builds the pages with Sphinx (warnings as errors); these checks need no Sphinx. They read the
``.. automodule::`` directives of ``docs/*.rst`` and fail when a public module has no page entry
(a new module added to ``raking/`` without its line in the layer's page) or when a name of
``raking.__all__`` / ``raking.torch.__all__`` would not be described (its defining module is
missing, or listed with ``:no-members:``, or leaves the name out of its ``__all__``).
"""

import importlib
import re
from pathlib import Path

import pytest

import raking

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
PAGES = ("index", "shared", "kernel", "stats", "survey", "torch", "simulation", "research")
DIRECTIVE = re.compile(r"^\.\. automodule:: (\S+)\n((?:[ \t]+:[\w-]+:.*\n)*)", re.MULTILINE)


def automodules(text: str) -> dict[str, set[str]]:
    """Module name -> the options of its ``.. automodule::`` directive, for one page's text."""
    found: dict[str, set[str]] = {}
    for match in DIRECTIVE.finditer(text):
        options = set(re.findall(r":([\w-]+):", match.group(2)))
        assert match.group(1) not in found, f"{match.group(1)} is documented twice"
        found[match.group(1)] = options
    return found


def documented() -> dict[str, set[str]]:
    """Every ``.. automodule::`` of the reference pages, with its options."""
    found: dict[str, set[str]] = {}
    for page in PAGES:
        for module, options in automodules((DOCS / f"{page}.rst").read_text()).items():
            assert module not in found, f"{module} is documented on two pages"
            found[module] = options
    return found


def public_modules() -> list[str]:
    """Dotted names of the modules and packages of ``raking/`` with no ``_private`` part."""
    names = []
    for path in sorted((ROOT / "raking").rglob("*.py")):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        if not any(part.startswith("_") for part in parts):
            names.append(".".join(parts))
    return names


def describes(modules: dict[str, set[str]], owner: str, name: str) -> bool:
    """Whether a page's ``automodule`` of ``owner`` lists ``name`` (autodoc follows ``__all__``)."""
    options = modules.get(owner)
    if options is None or "no-members" in options:
        return False
    return name in getattr(importlib.import_module(owner), "__all__", ())


def where_described(modules: dict[str, set[str]], package: str, name: str) -> bool:
    """``package.name`` is described: at its defining module, or at ``package`` itself."""
    obj = getattr(importlib.import_module(package), name)
    if isinstance(obj, type(raking)):  # a module re-exported as an attribute
        return obj.__name__ in modules
    if "imported-members" in modules.get(package, set()) and describes(modules, package, name):
        return True
    return describes(modules, obj.__module__, name)


def test_the_pages_are_the_layers_and_each_is_in_the_index():
    index = (DOCS / "index.rst").read_text()
    toctree = index.split(".. toctree::", 1)[1].split("\n\n", 2)[1]
    assert [line.strip() for line in toctree.splitlines()] == list(PAGES[1:])
    assert sorted(p.stem for p in DOCS.glob("*.rst")) == sorted(PAGES)


def test_every_public_module_has_an_automodule_entry():
    missing = sorted(set(public_modules()) - set(documented()))
    assert missing == [], f"add '.. automodule:: NAME' to the layer's page in docs/: {missing}"


def test_every_automodule_entry_names_an_existing_module():
    stale = sorted(set(documented()) - set(public_modules()))
    assert stale == [], f"docs/ documents modules that do not exist (any more): {stale}"


def test_every_name_of_raking_all_is_described():
    modules = documented()
    missing = [
        name
        for name in raking.__all__
        if name != "__version__" and not where_described(modules, "raking", name)
    ]
    assert missing == []
    for lazy in ("rake", "calibrate"):  # loaded on first access (raking.__getattr__)
        assert where_described(modules, "raking", lazy), lazy


def test_every_name_of_raking_torch_all_is_described():
    pytest.importorskip("torch")
    torch_api = importlib.import_module("raking.torch")
    modules = documented()
    missing = [n for n in torch_api.__all__ if not where_described(modules, "raking.torch", n)]
    assert missing == []


def test_a_module_left_out_or_without_members_is_reported():
    modules = documented()
    assert where_described(modules, "raking", "balance")
    without_kernel = {k: v for k, v in modules.items() if k != "raking.kernel.ipf"}
    assert not where_described(without_kernel, "raking", "balance")
    no_members = {**modules, "raking.kernel.ipf": {"no-members"}}
    assert not where_described(no_members, "raking", "balance")
    assert automodules(".. automodule:: a.b\n   :no-members:\n\ntext\n") == {"a.b": {"no-members"}}
