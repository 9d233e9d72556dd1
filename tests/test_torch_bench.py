"""benchmarks/bench_torch.py runs and prints its table (a small batch; no timing is asserted)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("torch")

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_torch.py"


def test_bench_torch_prints_every_method_and_the_k1_differences():
    out = subprocess.run(
        [sys.executable, str(SCRIPT), "--batch", "48", "--repeats", "2", "--threads", "1"],
        capture_output=True,
        text=True,
        check=True,
        timeout=300,
    ).stdout
    rows = [r.split("|")[1:-1] for r in out.splitlines() if r.startswith(("| (a)", "| bal"))]
    names = [r[0].strip() for r in rows]
    assert names == [
        "(a) cross-entropy pair (ClipLoss)",
        "balanced_clip_loss, k=1",
        "balanced_clip_loss, k=2",
        "balanced_clip_loss, k=3",
        "balanced_clip_loss, k=2, checkpoint",
    ]
    for r in rows:
        best, median, ratio = (float(c) for c in r[1:4])
        assert 0 < best <= median and ratio > 0
        saved = float(r[6])
        assert saved >= 1.0  # every method keeps at least one B x B matrix for backward
    assert float(rows[0][3]) == 1.0
    # k = 1 is the cross-entropy pair: float64 differences at rounding level
    line = next(x for x in out.splitlines() if x.startswith("k=1 vs (a), float64"))
    d_loss, d_grad = (float(v) for v in re.findall(r"diff\| ([0-9.e+-]+)", line))
    assert d_loss < 1e-12 and d_grad < 1e-15
