"""Compiled CPU loops (Numba) for batched small 2-D tables; loaded on first use."""

from __future__ import annotations


def use_numba(table, targets, steps) -> bool:  # noqa: ANN001, D103
    return False


def numba_ipf(table, targets, steps):  # noqa: ANN001, ANN201, D103
    raise NotImplementedError
