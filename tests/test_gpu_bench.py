"""Smoke test of gpu/bench_balance.py on the CPU: rows, finite times, floor ratios, agreement."""

from __future__ import annotations

import importlib.util
import math
import sys
from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("scipy")

SCRIPT = Path(__file__).resolve().parent.parent / "gpu" / "bench_balance.py"


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    spec = importlib.util.spec_from_file_location("bench_balance", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_balance"] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    out = tmp_path_factory.mktemp("bench") / "table.md"
    argv = ["--device", "cpu", "--quick", "--repeats", "1", "--sizes", "64", "--clip-sizes", "32"]
    code = module.main([*argv, "--out", str(out)])
    return code, out.read_text()


def _rows(text: str, first: str) -> list[list[str]]:
    lines = [ln for ln in text.splitlines() if ln.startswith("| ")]
    return [
        [c.strip() for c in ln.strip("|").split("|")] for ln in lines if ln[2:].startswith(first)
    ]


def test_balancing_rows_have_times_and_floor_ratios(report):
    code, text = report
    assert code == 0
    rows = [r for r in _rows(text, ("dense", "batched", "sparse")) if r[3] == "float32"]
    timed = [r for r in rows if not r[5].startswith("n/a")]
    seen = {(r[0], r[2], r[4]) for r in timed}
    for case in ("dense", "batched"):
        for lib in ("torch/cpu", "numpy/cpu"):
            for method in (
                "naive loop (baseline)",
                "raking.kernel.ipf._ipf (validated)",
                "raking.scaling_factors (public)",
            ):
                assert (case, lib, method) in seen
    assert ("sparse", "numpy/cpu", "raking.kernel.ipf._ipf (validated)") in seen
    for r in timed:
        for cell in (r[5], r[6], r[7], r[8], r[9], r[10]):
            value = float(cell)  # a number, not a placeholder
            assert math.isfinite(value) and value > 0
        if not r[4].startswith("naive"):
            assert float(r[11]) <= 1e-6 or r[4].startswith("POT")


@pytest.mark.parametrize(("lib", "dtype"), [("torch/cpu", "bfloat16"), ("numpy/cpu", "float16")])
def test_half_storage_rows_are_measured(report, lib, dtype):
    _, text = report
    rows = [r for r in _rows(text, "dense") if r[2] == lib and r[3] == dtype]
    assert len(rows) == 1  # one per dense size (--sizes 64)
    row = rows[0]
    assert row[4] == f"raking.kernel.ipf._ipf ({dtype} storage, float32 sums)"
    for cell in row[5:11]:
        value = float(cell)
        assert math.isfinite(value) and value > 0
    # vs the float32 kernel on the same rounded values: one block, the same float32 arithmetic
    assert float(row[11]) <= 1e-5


def test_missing_cells_are_said(report):
    _, text = report
    assert "not supported" not in text
    assert "kernel vs naive loop agree to 0.0001 (float32): yes" in text
    assert "half-storage kernel vs float32 kernel on the rounded table agree to 1e-05: yes" in text
    pot = importlib.util.find_spec("ot") is not None
    assert ("POT ot.sinkhorn" in text) == pot
    assert ("POT not installed" in text) != pot


def test_clip_rows(report):
    _, text = report
    rows = _rows(text, "32 ")
    assert [r[1] for r in rows] == ["1", "2", "4"]
    for r in rows:
        assert float(r[3]) > 0 and float(r[4]) > 0 and float(r[5]) > 0
        assert r[6] == r[7] == "n/a"
