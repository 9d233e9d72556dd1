r"""Compiled passes (Numba) for row- and cell-level raking in :mod:`raking.weights`; loaded lazily.

Raking ``n`` units (rows, or cells of the crossed codes) is a sequence of *passes* over the units;
each pass reads the code of one or a few variables and the weights, and is O(n):

- :func:`scale_count`: the unbounded step ``w_i *= r_v[c_v(i)]`` fused with the group sums
  :math:`m_u(j) = \sum_{i: c_u(i) = j} w_i` of the variables that the driver needs next;
- :func:`clip_eval`: for the bounded step, :math:`F_j(\rho_j) = \sum_{i \in j} d_i
  \operatorname{clip}(q_i \rho_j, lo, hi)` and its right derivative for every level ``j`` at once;
- :func:`clip_update`: ``q_i *= rho[c_v(i)]``, ``w_i = d_i clip(q_i, lo, hi)`` fused with group
  sums as in :func:`scale_count`.

:mod:`raking.weights` has the same three passes in NumPy (``np.bincount``); the driver is shared,
so both backends run one algorithm, and ``tests/test_weights.py`` checks that they agree to 1e-12.
Each pass runs in parallel over a few contiguous chunks per thread, each chunk summing into its
own row of a small ``(chunks, levels)`` array (summed afterwards), so the group sums never
contend. The summation order depends on the number of chunks: results agree with the NumPy
passes to rounding (about 1e-15 relative), not bitwise.

numba is imported only by :func:`_compiled`, on the first pass; :mod:`raking.weights` uses these
loops only for problems of at least 100,000 units (``raking._weights_loops``), so raking a survey
of a few thousand rows never loads numba. JIT cost: about 2 s for the three loops on first use
(2-core AMD EPYC); the machine code is cached on disk (``cache=True``), so a later process pays
about 0.3 s.
"""

from __future__ import annotations

import functools
import importlib
from collections.abc import Callable
from typing import NamedTuple

import numpy as np

__all__ = ["clip_eval", "clip_update", "numba_available", "scale_count"]

# Bound to ``numba.prange`` by ``_compiled()`` before the loops are compiled.
prange = range

_ROWS_PER_CHUNK = 32_768  # below this, one chunk: thread start-up costs more than it saves


@functools.cache
def numba_available() -> bool:
    """Whether numba can be imported (checked once)."""
    try:
        importlib.import_module("numba")
    except ImportError:
        return False
    return True


def _n_chunks(n: int) -> int:
    threads = _compiled().get_num_threads()
    return int(max(1, min(4 * threads, n // _ROWS_PER_CHUNK)))


def scale_count(
    codes: np.ndarray,
    offsets: np.ndarray,
    w: np.ndarray,
    v: int,
    ratio: np.ndarray | None,
    first: int,
    last: int,
) -> np.ndarray:
    """``w *= ratio[codes[v]]`` in place (skipped for ``v < 0``), then the group sums of ``w``.

    Parameters
    ----------
    codes : numpy.ndarray of int32, shape ``(p, n)``
        Level codes of the ``p`` raking variables, C-contiguous.
    offsets : numpy.ndarray of int64, shape ``(p + 1,)``
        ``offsets[u]`` is the position of variable ``u``'s first level in the concatenated margins.
    w : numpy.ndarray of float64, shape ``(n,)``
        Unit weights, updated in place.
    v : int
        Variable adjusted by this pass; ``-1``: no adjustment.
    ratio : numpy.ndarray of float64 or None
        Factor per level of variable ``v``.
    first, last : int
        Group sums are returned for variables ``first, ..., last - 1``.

    Returns
    -------
    numpy.ndarray of float64, shape ``(offsets[last] - offsets[first],)``
        The concatenated margins of those variables after the update.
    """
    width = int(offsets[last] - offsets[first])
    partial = np.empty((_n_chunks(w.shape[0]), max(width, 1)))
    r = np.ones(1) if ratio is None else ratio
    _compiled().scale_count(codes, offsets, w, v, r, first, last, partial)
    return partial.sum(axis=0)[:width]


def clip_eval(
    codes: np.ndarray,
    v: int,
    q: np.ndarray,
    d: np.ndarray,
    rho: np.ndarray,
    lo: float,
    hi: float,
) -> tuple[np.ndarray, np.ndarray]:
    r"""Per level ``j`` of variable ``v``: :math:`F_j` and its right derivative in :math:`\rho_j`.

    :math:`F_j = \sum_{i \in j} d_i \operatorname{clip}(q_i \rho_j, lo, hi)` and
    :math:`F'_j = \sum_{i \in j,\ lo \le q_i \rho_j < hi} d_i q_i`.
    """
    n_levels = rho.shape[0]
    chunks = _n_chunks(q.shape[0])
    f = np.empty((chunks, n_levels))
    fp = np.empty((chunks, n_levels))
    _compiled().clip_eval(codes, v, q, d, rho, lo, hi, f, fp)
    return f.sum(axis=0), fp.sum(axis=0)


def clip_update(
    codes: np.ndarray,
    offsets: np.ndarray,
    v: int,
    q: np.ndarray,
    d: np.ndarray,
    rho: np.ndarray | None,
    lo: float,
    hi: float,
    w: np.ndarray,
    first: int,
    last: int,
) -> np.ndarray:
    """``q *= rho[codes[v]]`` (skipped for ``v < 0``), ``w = d * clip(q, lo, hi)``, group sums.

    Arguments and return value as in :func:`scale_count`; ``q`` and ``w`` are updated in place.
    """
    width = int(offsets[last] - offsets[first])
    partial = np.empty((_n_chunks(w.shape[0]), max(width, 1)))
    r = np.ones(1) if rho is None else rho
    _compiled().clip_update(codes, offsets, v, q, d, r, lo, hi, w, first, last, partial)
    return partial.sum(axis=0)[:width]


class _Compiled(NamedTuple):
    scale_count: Callable[..., None]
    clip_eval: Callable[..., None]
    clip_update: Callable[..., None]
    get_num_threads: Callable[[], int]


@functools.cache
def _compiled() -> _Compiled:
    """Jit the loops below on first use (machine code cached on disk)."""
    import numba

    globals()["prange"] = numba.prange
    parallel = numba.njit(parallel=True, cache=True, fastmath=False)
    return _Compiled(
        parallel(_scale_count_loops),
        parallel(_clip_eval_loops),
        parallel(_clip_update_loops),
        numba.get_num_threads,
    )


# --------------------------------------------------------------------------------------------
# The loops (plain Python until _compiled() jits them)
# --------------------------------------------------------------------------------------------


def _scale_count_loops(
    codes: np.ndarray,
    offsets: np.ndarray,
    w: np.ndarray,
    v: int,
    ratio: np.ndarray,
    first: int,
    last: int,
    partial: np.ndarray,
) -> None:
    n = w.shape[0]
    chunks = partial.shape[0]
    base = offsets[first]
    for c in prange(chunks):
        acc = partial[c]
        acc[:] = 0.0
        for i in range(c * n // chunks, (c + 1) * n // chunks):
            x = w[i]
            if v >= 0:
                x *= ratio[codes[v, i]]
                w[i] = x
            for u in range(first, last):
                acc[offsets[u] - base + codes[u, i]] += x


def _clip_eval_loops(
    codes: np.ndarray,
    v: int,
    q: np.ndarray,
    d: np.ndarray,
    rho: np.ndarray,
    lo: float,
    hi: float,
    f: np.ndarray,
    fp: np.ndarray,
) -> None:
    n = q.shape[0]
    chunks = f.shape[0]
    for c in prange(chunks):
        fc = f[c]
        fpc = fp[c]
        fc[:] = 0.0
        fpc[:] = 0.0
        for i in range(c * n // chunks, (c + 1) * n // chunks):
            j = codes[v, i]
            r = q[i] * rho[j]
            if r < lo:
                fc[j] += d[i] * lo
            elif r >= hi:
                fc[j] += d[i] * hi
            else:
                fc[j] += d[i] * r
                fpc[j] += d[i] * q[i]


def _clip_update_loops(
    codes: np.ndarray,
    offsets: np.ndarray,
    v: int,
    q: np.ndarray,
    d: np.ndarray,
    rho: np.ndarray,
    lo: float,
    hi: float,
    w: np.ndarray,
    first: int,
    last: int,
    partial: np.ndarray,
) -> None:
    n = w.shape[0]
    chunks = partial.shape[0]
    base = offsets[first]
    for c in prange(chunks):
        acc = partial[c]
        acc[:] = 0.0
        for i in range(c * n // chunks, (c + 1) * n // chunks):
            g = q[i]
            if v >= 0:
                g *= rho[codes[v, i]]
                q[i] = g
            g = min(max(g, lo), hi)
            x = d[i] * g
            w[i] = x
            for u in range(first, last):
                acc[offsets[u] - base + codes[u, i]] += x
