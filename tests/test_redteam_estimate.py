"""Red-team variants of issue 11, finding 2: an SE of 0 that the sample's support forces.

When the sample's observed (x, y) cells contain no cycle (a tree: ``m + l - 1`` cells on ``m``
x- and ``l`` y-categories), the targets determine the plug-in table exactly and every ``h`` is
additive on it, so :math:`\\sigma_\\infty^2(\\hat P) = 0` and the fully raked estimate gets an
SE of exactly 0 with ``converged=True``. That is the plug-in's value, not an estimate of the
sampling error; the notes must say so (as they do for disconnected blocks).
"""

from __future__ import annotations

import numpy as np

import raking


def _estimate(
    cells: list[tuple[int, int]], steps: int | None, p_x: tuple[float, ...] = (0.2, 0.3, 0.5)
) -> raking.Estimate:
    x = np.array([c[0] for c in cells])
    y = np.array([c[1] for c in cells])
    h = np.arange(12.0).reshape(3, 4) ** 1.5  # not additive
    return raking.estimate(x, y, h, [list(p_x), [0.1, 0.2, 0.3, 0.4]], steps=steps)


TREE = [(0, 0), (0, 1), (0, 1), (1, 1), (1, 2), (2, 2), (2, 3), (2, 3)]  # 6 = 3 + 4 - 1 cells


def test_tree_support_gives_zero_se_with_a_note():
    res = _estimate(TREE, None)
    assert res.converged and res.se < 1e-12  # the plug-in's exact value
    assert any("no cycle" in note and "SE of 0" in note for note in res.notes)


def test_support_with_a_cycle_has_no_tree_note():
    res = _estimate([*TREE, (1, 2), (1, 3), (0, 2)], None)  # cycles: (0,1),(1,1),(1,2),(0,2)
    assert res.se > 0.01
    assert not any("no cycle" in note for note in res.notes)


def test_one_cell_blocks_keep_the_blocks_note_only():
    """Blocks {x0, y0}, {x1, y1}, {x2; y2, y3}: both notes; one-cell blocks only: no tree note."""
    res = _estimate([(0, 0), (1, 1), (2, 2), (2, 3)], None, (0.1, 0.2, 0.7))
    assert res.converged and res.se < 1e-12
    assert any("fall into 3 blocks" in note for note in res.notes)
    assert any("no cycle" in note for note in res.notes)
    x = y = np.array([0, 1, 1])
    single = raking.estimate(x, y, [[1.0, 2.0], [3.0, 4.0]], [[0.5] * 2] * 2, steps=None)
    assert not any("no cycle" in note for note in single.notes)
