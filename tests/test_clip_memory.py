"""gpu/clip_memory.py: peak memory of the CLIP loss, in fresh processes, on the CPU."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("torch")

SCRIPT = Path(__file__).resolve().parents[1] / "gpu" / "clip_memory.py"


def test_checkpoint_uses_less_memory_than_the_default_and_rows_are_numbers():
    out = subprocess.run(
        [sys.executable, str(SCRIPT), "--batch", "1536", "--steps", "4", "--device", "cpu"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    rows = [r.split("|")[1:-1] for r in out.splitlines() if r.startswith("| 1536 ")]
    assert [r[2].strip() for r in rows] == ["default (kept exponentials)", "checkpoint"]
    default, checkpoint = (float(r[5]) for r in rows)  # peak / (4 B^2)
    assert 0 < checkpoint < default
    for r in rows:
        seconds, peak, ratio, extra = (float(c) for c in r[3:7])
        assert seconds > 0 and peak > 0
        assert extra == pytest.approx(ratio * 4 * 32768**2 / 2**30, rel=0.02)
