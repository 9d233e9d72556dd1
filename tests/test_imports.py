"""``import raking`` stays light, and no subpackage imports another's private names."""

from __future__ import annotations

import ast
import json
import pathlib
import subprocess
import sys

HEAVY = ["torch", "cupy", "numba", "pandas", "dask", "matplotlib", "scipy"]


def _modules_after(statement: str) -> set[str]:
    code = f"import sys, json; {statement}; print(json.dumps(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return set(json.loads(out.stdout.strip().splitlines()[-1]))


def test_import_raking_loads_no_heavy_package():
    loaded = _modules_after("import raking")
    assert not [name for name in HEAVY if name in loaded]


def test_balancing_numpy_tables_loads_no_heavy_package_but_numba_for_batches():
    loaded = _modules_after(
        "import numpy as np, raking; raking.balance(np.ones((3, 3)), [np.ones(3) / 3] * 2, steps=2)"
    )
    assert not [name for name in HEAVY if name in loaded]


PACKAGE = pathlib.Path(__file__).resolve().parents[1] / "raking"


def _imports(source: str) -> list[tuple[int, str, list[str]]]:
    """``(line, module, names)`` of every absolute import of ``raking``, nested ones too."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.lineno, node.module, [a.name for a in node.names]))
        elif isinstance(node, ast.Import):
            found.extend((node.lineno, a.name, []) for a in node.names)
    return [f for f in found if f[1].split(".")[0] == "raking"]


def _cross_private(source: str, where: pathlib.PurePath) -> list[str]:
    """Imports in ``source`` (the module at ``where``, ``raking/...``) of another subpackage's
    private modules or names.

    The top-level modules of ``raking/`` (``_array_api`` among them) are the shared base every
    layer may use; a subpackage's ``_private`` modules and names are its own.
    """
    home = where.parts[1] if len(where.parts) > 2 else None
    wrong = []
    for line, module, names in _imports(source):
        target = module.split(".")
        if len(target) < 2 or not (PACKAGE / target[1]).is_dir() or target[1] == home:
            continue
        private = [p for p in target[2:] + names if p.startswith("_")]
        if private:
            wrong.append(f"{where.as_posix()}:{line}: {module} {names}")
    return wrong


def test_no_subpackage_imports_another_subpackages_private_names():
    wrong = [
        w
        for path in sorted(PACKAGE.rglob("*.py"))
        for w in _cross_private(path.read_text(encoding="utf-8"), path.relative_to(PACKAGE.parent))
    ]
    assert wrong == []


def test_the_private_import_check_finds_them():
    # The check above must be able to fail: a survey module reaching into validation's internals
    # (nested in a function), or into a private name of the kernel; its own internals are fine.
    source = (
        "from raking.kernel import _ipf\n"
        "from raking.survey.design import _label\n"
        "import raking.stats._x\n"
        "def f():\n"
        "    from raking.validation._design import stage_columns\n"
    )
    assert _cross_private(source, pathlib.PurePath("raking/survey/x.py")) == [
        "raking/survey/x.py:1: raking.kernel ['_ipf']",
        "raking/survey/x.py:3: raking.stats._x []",
        "raking/survey/x.py:5: raking.validation._design ['stage_columns']",
    ]
