r"""Compiled passes (Numba) for the row and cell raking of :mod:`raking.survey.weights`; lazy.

Raking ``n`` units (rows, or cells of the crossed codes) is a sequence of *passes* over the units;
each pass reads the code of one or a few variables and the weights, and is O(n):

- :func:`scale_count`: the unbounded step ``w_i *= r_v[c_v(i)]`` fused with the group sums
  :math:`m_u(j) = \sum_{i: c_u(i) = j} w_i` of the variables that the driver needs next (without
  a step, a loop that only reads ``w``);
- :func:`clip_eval`: for the bounded step, :math:`F_j(\rho_j) = \sum_{i \in j} d_i
  \operatorname{clip}(q_i \rho_j, lo, hi)` and its right derivative for every level ``j`` at once;
- :func:`clip_update`: ``q_i *= rho[c_v(i)]``, ``w_i = d_i clip(q_i, lo, hi)`` fused with group
  sums as in :func:`scale_count`.

:mod:`raking.survey.weights` has the same three passes in NumPy (``np.bincount``); the driver is
shared, so both backends run one algorithm, and ``tests/test_weights.py`` checks that they agree to
1e-12. Each pass runs in parallel over a few contiguous chunks per thread, each chunk summing into
its own slice of a small ``(chunks, lanes, levels)`` array (summed afterwards), so the group sums
never contend. Within a chunk, row ``i`` adds into lane ``i mod 4``: units come sorted by their cell
key, so runs of equal codes would otherwise chain every add on the previous one (store-to-load
latency); four lanes made a pass over 340,000 cells 2.3x faster for the slowest-varying variable
(0.56 -> 0.24 ms, 2 threads). The summation order depends on the number of chunks and lanes: results
agree with the NumPy passes to rounding (about 1e-15 relative), not bitwise.

Writes. A loop writes only into arrays that the driver allocated (the unit weights ``w`` and
factors ``q`` it raked from a copy, the partial sums, the cell arrays); the caller's arrays (level
codes, design weights) are only read. Numba types a read-only array apart from a writable one and
refuses to compile a store into it, even on a branch never taken: pandas 3 hands out read-only
column arrays, so a loop that both may store into ``w`` and is given the design weights fails
(issue 11). Hence the group sums without a step are a loop of their own, and
``tests/test_weights.py`` runs the passes on read-only, strided and every code dtype.

numba is imported only by :func:`_compiled`, on the first pass; :mod:`raking.survey.weights` uses
these loops only for problems of at least 100,000 units (``raking.survey.loops``), so raking a
survey of a few thousand rows never loads numba. JIT cost: about 2 s for the three loops on first
use (2-core AMD EPYC); the machine code is cached on disk (``cache=True``), so a later process pays
about 0.3 s.
"""

from __future__ import annotations

import functools
import importlib
import math
from collections.abc import Callable
from typing import NamedTuple

import numpy as np

__all__ = ["clip_eval", "clip_update", "dense_cells", "numba_available", "scale_count"]

# Bound to ``numba.prange`` by ``_compiled()`` before the loops are compiled.
prange = range

_ROWS_PER_CHUNK = 32_768  # below this, one chunk: thread start-up costs more than it saves
_LANES = 4  # accumulator copies per chunk (a power of 2: lane = i & (_LANES - 1))


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


def _in(a: np.ndarray) -> np.ndarray:
    """A read-only, C-contiguous view of an input array (a copy only if it is strided).

    The loops read their inputs through such views, so each compiles once per dtype whatever the
    caller's flags (a read-only pandas column, a writable copy), and a store into an input is a
    compile error rather than a write into the caller's data.
    """
    view = np.ascontiguousarray(a).view()
    view.flags.writeable = False
    return view


def _partial_sums(offsets: np.ndarray, first: int, last: int, n: int) -> tuple[np.ndarray, int]:
    """Room, per chunk and lane, for the group sums of variables ``first, ..., last - 1``.

    Returns the array and the number of levels summed (its last axis has at least one slot).
    """
    width = int(offsets[last] - offsets[first])
    return np.empty((_n_chunks(n), _LANES, max(width, 1))), width


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
    codes : numpy.ndarray of int (int8, int16 or int32), shape ``(p, n)``
        Level codes of the ``p`` raking variables, C-contiguous.
    offsets : numpy.ndarray of int64, shape ``(p + 1,)``
        ``offsets[u]`` is the position of variable ``u``'s first level in the concatenated margins.
    w : numpy.ndarray of float64, shape ``(n,)``
        Unit weights, updated in place (only read when ``v < 0``: it may then be read-only).
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
    partial, width = _partial_sums(offsets, first, last, w.shape[0])
    if v < 0 or ratio is None:  # read-only: ``w`` may be the caller's (a read-only column)
        _compiled().group_sums(_in(codes), offsets, _in(w), first, last, partial)
    else:
        _compiled().scale_count(_in(codes), offsets, w, v, ratio, first, last, partial)
    return partial.sum(axis=(0, 1))[:width]


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
    _compiled().clip_eval(_in(codes), v, _in(q), _in(d), rho, lo, hi, f, fp)
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
    r = np.ones(1) if rho is None else rho
    partial, width = _partial_sums(offsets, first, last, w.shape[0])
    _compiled().clip_update(_in(codes), offsets, v, q, _in(d), r, lo, hi, w, first, last, partial)
    return partial.sum(axis=(0, 1))[:width]


def dense_cells(
    codes: np.ndarray, n_levels: list[int], max_cells: int | None, code_dtype: np.dtype
) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """The non-empty cells of the crossed codes, by a count over the whole key range.

    The compiled twin of the dense branch of :func:`raking.survey.weights.cells_from_codes` (the
    same integer results, equal exactly; tested): a parallel pass over the rows computes the
    mixed-radix key ``sum_v codes[v] * prod(n_levels[:v])``, a serial one counts the keys, one pass
    over the key range numbers the non-empty keys, then every row gets its cell (parallel) and every
    cell its codes.

    Parameters
    ----------
    codes : numpy.ndarray of int, shape ``(p, n)``, C-contiguous
        Validated level codes.
    n_levels : list of int
        Levels per variable; their product (the key range) must fit in memory as int64 counts.
    max_cells : int or None
        Return ``None`` when there are more non-empty cells than this.
    code_dtype : numpy.dtype
        Integer dtype of the returned cell codes.
    """
    compiled = _compiled()
    radix = math.prod(n_levels)
    strides = np.array([math.prod(n_levels[:v]) for v in range(len(n_levels))], dtype=np.int64)
    n = codes.shape[1]
    # int32 wherever it fits: half the fresh memory (page faults) and half the traffic
    itype = np.int32 if max(radix, n) < 2**31 else np.int64
    key = np.empty(n, dtype=itype)
    compiled.cell_keys(_in(codes), strides, key)
    counts = np.zeros(radix, dtype=itype)
    index = np.empty(radix, dtype=itype)
    uniq = np.empty(radix, dtype=itype)
    m = compiled.cell_index(key, counts, index, uniq)
    if max_cells is not None and m > max_cells:
        return None
    uniq = uniq[:m]
    cell_of_row = np.empty(n, dtype=itype)
    cell_codes = np.empty((len(n_levels), m), dtype=code_dtype)
    compiled.cell_rows(key, index, cell_of_row, uniq, np.asarray(n_levels), cell_codes)
    return cell_codes, cell_of_row, counts[uniq].astype(np.int64)


class _Compiled(NamedTuple):
    scale_count: Callable[..., None]
    group_sums: Callable[..., None]
    clip_eval: Callable[..., None]
    clip_update: Callable[..., None]
    cell_keys: Callable[..., None]
    cell_index: Callable[..., int]
    cell_rows: Callable[..., None]
    get_num_threads: Callable[[], int]


@functools.cache
def _compiled() -> _Compiled:
    """Jit the loops below on first use (machine code cached on disk)."""
    import numba

    globals()["prange"] = numba.prange
    parallel = numba.njit(parallel=True, cache=True, fastmath=False)
    serial = numba.njit(cache=True)
    return _Compiled(
        parallel(_scale_count_loops),
        parallel(_group_sums_loops),
        parallel(_clip_eval_loops),
        parallel(_clip_update_loops),
        parallel(_cell_keys_loops),
        serial(_cell_index_loops),
        parallel(_cell_rows_loops),
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
        start, stop = c * n // chunks, (c + 1) * n // chunks
        if last == first + 1:  # the common step: scale one variable, sum the next
            for i in range(start, stop):  # (2-D indexing and a constant mask: 25% faster than
                x = w[i] * ratio[codes[v, i]]  # row views and a mask read from the shape)
                w[i] = x
                acc[i & (_LANES - 1), codes[first, i]] += x
        else:
            for i in range(start, stop):
                x = w[i] * ratio[codes[v, i]]
                w[i] = x
                for u in range(first, last):
                    acc[i & (_LANES - 1), offsets[u] - base + codes[u, i]] += x


def _group_sums_loops(
    codes: np.ndarray,
    offsets: np.ndarray,
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
            x = w[i]
            for u in range(first, last):
                acc[i & (_LANES - 1), offsets[u] - base + codes[u, i]] += x


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
                acc[i & (_LANES - 1), offsets[u] - base + codes[u, i]] += x


def _cell_keys_loops(codes: np.ndarray, strides: np.ndarray, key: np.ndarray) -> None:
    p, n = codes.shape
    for i in prange(n):
        k = 0
        for v in range(p):
            k += np.int64(codes[v, i]) * strides[v]
        key[i] = k


def _cell_index_loops(
    key: np.ndarray, counts: np.ndarray, index: np.ndarray, uniq: np.ndarray
) -> int:
    for i in range(key.shape[0]):  # a separate loop: fused with the keys it ran 3x slower
        counts[key[i]] += 1
    m = 0
    for k in range(counts.shape[0]):  # branch-free: index of an empty key is never read
        index[k] = m
        uniq[m] = k
        m += counts[k] > 0
    return m


def _cell_rows_loops(
    key: np.ndarray,
    index: np.ndarray,
    cell_of_row: np.ndarray,
    uniq: np.ndarray,
    n_levels: np.ndarray,
    cell_codes: np.ndarray,
) -> None:
    for i in prange(key.shape[0]):
        cell_of_row[i] = index[key[i]]
    for j in prange(uniq.shape[0]):
        q = uniq[j]
        for v in range(n_levels.shape[0]):
            # float division: exact floor for keys below 2**52 (the dense key range is far
            # smaller), and several times faster than an int64 division
            size = n_levels[v]
            quotient = np.int64(np.float64(q) / np.float64(size))
            cell_codes[v, j] = q - quotient * size
            q = quotient
