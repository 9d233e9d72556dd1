"""The message builder shared by the checks: positions and values listed, at most ten."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

_MAX_LISTED = 10


def listed(values: Sequence[Any]) -> str:
    """``[a, b, c]`` with at most ``_MAX_LISTED`` entries, then ``...``."""
    shown = ", ".join(str(v) for v in values[:_MAX_LISTED])
    return f"[{shown}{', ...' if len(values) > _MAX_LISTED else ''}]"


def _cells(indices: np.ndarray) -> list[tuple[int, ...]]:
    """Rows of ``np.argwhere`` output as tuples of Python ints."""
    return [tuple(int(i) for i in row) for row in indices]


def _where(mask: np.ndarray) -> str:
    """Positions of the ``True`` entries: indices for a vector, cells for a table."""
    if mask.ndim == 1:
        return listed(np.flatnonzero(mask).tolist())
    return listed(_cells(np.argwhere(mask)))
