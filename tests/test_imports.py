"""``import raking`` stays light: no heavy optional package is loaded."""

from __future__ import annotations

import json
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
