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

Replicates (:func:`replicate_design`, :func:`rake_batch`): ``R`` replicates of the same units
are raked in one call, each thread taking blocks of ``_BLOCK`` (8) replicates and running the
whole iteration for them with the weights stored unit-major (``(units, 8)``), so that scaling a
unit and adding it to its level's margin are contiguous 8-wide vector operations, with no
gathers; 2.5x faster per step than one replicate at a time (1.3 against 3.3 ns per unit and
replicate, one thread). The bounded twin runs one replicate per iteration of the parallel loop.

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

__all__ = [
    "clip_eval",
    "clip_update",
    "dense_cells",
    "numba_available",
    "rake_batch",
    "replicate_design",
    "scale_count",
]

# Bound to ``numba.prange`` by ``_compiled()`` before the loops are compiled.
prange = range

_ROWS_PER_CHUNK = 32_768  # below this, one chunk: thread start-up costs more than it saves
_LANES = 4  # accumulator copies per chunk (a power of 2: lane = i & (_LANES - 1))
_BLOCK = 8  # replicates raked together by one thread (rake_batch; contiguous per unit)


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


def replicate_design(
    unit_of_row: np.ndarray,
    rows_per_unit: np.ndarray,
    group: np.ndarray,
    d: np.ndarray,
    multipliers: np.ndarray,
) -> np.ndarray:
    r"""Replicate design weight of every unit: :math:`D_{ru} = \sum_{i \in u} d_i a_r(g_i)`.

    Parameters
    ----------
    unit_of_row : numpy.ndarray of int, shape ``(n,)``
        Unit (cell) of each row, in ``[0, C)``.
    rows_per_unit : numpy.ndarray of int, shape ``(C,)``
        Rows in each unit (``_Units.rows``).
    group : numpy.ndarray of int64, shape ``(n,)``
        Group (PSU) of each row, a row of ``multipliers``.
    d : numpy.ndarray of float64, shape ``(n,)``
        Design weights.
    multipliers : numpy.ndarray of float64, shape ``(G, R)``
        :math:`a_r(g)`, C-contiguous.

    Returns
    -------
    numpy.ndarray of float64, shape ``(R, C)``

    Notes
    -----
    The rows are ordered by unit (a counting sort; their PSUs and weights are gathered in that
    order once), then each thread sums blocks of 8 replicates, unit after unit: per row one
    8-wide multiply-add of its PSU's multipliers, read from the block's ``(G, 8)`` slice of
    the multipliers (in cache), and no two threads write the same output. A scatter of the rows
    into each replicate's row of the result took 1.8-2.0 s for 10^6 rows, 28,537 cells and 100
    replicates on 2 shared cores.
    """
    compiled = _compiled()
    starts = np.zeros(rows_per_unit.shape[0] + 1, dtype=np.int64)
    np.cumsum(rows_per_unit, out=starts[1:])
    order = np.empty(unit_of_row.shape[0], dtype=np.int64)
    compiled.order_by_unit(_in(unit_of_row), starts, order)
    n_rep = multipliers.shape[1]
    n_blocks = -(-n_rep // _BLOCK)
    # (blocks, G, 8): one block's multipliers (G x 64 bytes) stay in cache while it is summed
    a = np.zeros((n_blocks * _BLOCK, multipliers.shape[0]))
    a[:n_rep] = multipliers.T
    a = np.ascontiguousarray(a.reshape(n_blocks, _BLOCK, -1).transpose(0, 2, 1))
    out = np.empty((n_rep, rows_per_unit.shape[0]))
    compiled.replicate_design(_in(group[order]), _in(d[order]), starts, a, out)
    return out


def rake_batch(
    codes: np.ndarray,
    offsets: np.ndarray,
    targets: np.ndarray,
    d: np.ndarray,
    total: float,
    steps: int | None,
    tol: float,
    max_iter: int,
    bounds: tuple[float, float] | None,
) -> tuple[np.ndarray, ...]:
    """Rake ``R`` replicates of the same units at once, parallel over replicates.

    The compiled twin of :func:`raking.survey.loops._run_unbounded` and
    :func:`~raking.survey.loops._run_bounded` on ``R`` replicates (same steps, checks and
    stopping rule per replicate; tested equal to 1e-11): each thread rakes whole replicates,
    all of whose passes run over the ``m`` units of one replicate (in cache for cells).

    Parameters
    ----------
    codes : numpy.ndarray of int, shape ``(p, m)``
        Level codes of the units.
    offsets : numpy.ndarray of int64, shape ``(p + 1,)``
        Start of each variable in ``targets``.
    targets : numpy.ndarray of float64, shape ``(sum L,)``
        Concatenated targets (one total ``total``).
    d : numpy.ndarray of float64, shape ``(R, m)``
        Design weight of every unit in every replicate.
    steps, tol, max_iter, bounds
        As :func:`raking.survey.weights.rake_codes`.

    Returns
    -------
    (w, margins, steps, converged, stalled, errors)
        Raked unit weights ``(R, m)``, margins ``(R, sum L)``, and per replicate the steps done,
        convergence, stall and the final error (share of the total).
    """
    from raking.survey.loops import (
        _CHECK_MARGIN,
        _NEWTON_MAX,
        _NEWTON_RTOL,
        _STALL_GAIN,
        _STALL_SWEEPS,
    )

    n_rep = d.shape[0]
    w = np.empty_like(d)
    margins = np.zeros((n_rep, targets.shape[0]))
    k = np.zeros(n_rep, dtype=np.int64)
    flags = np.zeros((n_rep, 2), dtype=np.bool_)
    errors = np.full(n_rep, np.nan)
    rule = (-1 if steps is None else steps, tol, max_iter, total, _STALL_SWEEPS, _STALL_GAIN)
    if bounds is None:
        _compiled().rake_batch(
            _in(codes), offsets, targets, _in(d), *rule, _CHECK_MARGIN, w, margins, k, flags, errors
        )
    else:
        _compiled().rake_batch_bounded(
            _in(codes),
            offsets,
            targets,
            _in(d),
            *rule,
            bounds[0],
            bounds[1],
            _NEWTON_MAX,
            _NEWTON_RTOL * total,
            w,
            margins,
            k,
            flags,
            errors,
        )
    return w, margins, k, flags[:, 0].copy(), flags[:, 1].copy(), errors


class _Compiled(NamedTuple):
    scale_count: Callable[..., None]
    group_sums: Callable[..., None]
    clip_eval: Callable[..., None]
    clip_update: Callable[..., None]
    cell_keys: Callable[..., None]
    cell_index: Callable[..., int]
    cell_rows: Callable[..., None]
    replicate_design: Callable[..., None]
    order_by_unit: Callable[..., None]
    rake_batch: Callable[..., None]
    rake_batch_bounded: Callable[..., None]
    get_num_threads: Callable[[], int]


@functools.cache
def _compiled() -> _Compiled:
    """Jit the loops below on first use (machine code cached on disk)."""
    import numba

    globals()["prange"] = numba.prange
    for helper in (_batch_error, _batch_stop, _block_sums):  # called from the batched loops
        globals()[helper.__name__] = numba.njit(cache=True)(helper)
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
        parallel(_replicate_design_loops),
        serial(_order_by_unit_loops),
        parallel(_rake_batch_loops),
        numba.njit(parallel=True, cache=True, error_model="numpy")(_rake_batch_bounded_loops),
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


def _replicate_design_loops(
    group: np.ndarray, d: np.ndarray, starts: np.ndarray, a: np.ndarray, out: np.ndarray
) -> None:
    n_rep, n_units = out.shape
    for blk in prange(a.shape[0]):
        ab = a[blk]
        r0 = blk * _BLOCK
        size = min(_BLOCK, n_rep - r0)
        acc = np.zeros(_BLOCK)
        for u in range(n_units):
            acc[:] = 0.0
            for k in range(starts[u], starts[u + 1]):
                x = d[k]
                ag = ab[group[k]]
                for b in range(_BLOCK):
                    acc[b] += x * ag[b]
            for b in range(size):
                out[r0 + b, u] = acc[b]


def _order_by_unit_loops(unit_of_row: np.ndarray, starts: np.ndarray, order: np.ndarray) -> None:
    pos = starts[:-1].copy()
    for i in range(unit_of_row.shape[0]):
        u = unit_of_row[i]
        order[pos[u]] = i
        pos[u] += 1


def _batch_error(mg: np.ndarray, t: np.ndarray, total: float) -> float:
    """The largest ``|mg - t|`` over ``total``; NaN if any term is NaN (as ``numpy.max``)."""
    err = 0.0
    nan = False
    for j in range(t.shape[0]):
        e = abs(mg[j] - t[j])
        if e != e:
            nan = True
        elif e > err:
            err = e
    return np.nan if nan else err / total


def _batch_stop(
    err: float,
    k: int,
    limit: int,
    fixed: bool,
    tol: float,
    hist: np.ndarray,
    nh: int,
    stall_sweeps: int,
    stall_gain: float,
) -> tuple[int, bool, bool]:
    """After a check: (0 go on / 1 stop, converged, stalled), as loops._BatchStop."""
    if fixed:
        return (1 if k == limit else 0), (k == limit and np.isfinite(err)), False
    if err <= tol:
        return 1, True, False
    if not np.isfinite(err):
        return 1, False, False
    if nh >= stall_sweeps:
        recent = err
        for s in range(nh - stall_sweeps + 1, nh):
            recent = min(recent, hist[s])
        best = hist[0]
        for s in range(1, nh - stall_sweeps + 1):
            best = min(best, hist[s])
        if recent > stall_gain * best:
            return 1, False, True
    return (1 if k == limit else 0), False, False


def _rake_batch_loops(
    codes: np.ndarray,
    offsets: np.ndarray,
    t: np.ndarray,
    d: np.ndarray,
    steps: int,
    tol: float,
    max_iter: int,
    total: float,
    stall_sweeps: int,
    stall_gain: float,
    check_margin: float,
    w: np.ndarray,
    margins: np.ndarray,
    k_out: np.ndarray,
    flags: np.ndarray,
    errors: np.ndarray,
) -> None:
    n_rep, m = d.shape
    p = codes.shape[0]
    n_t = t.shape[0]
    fixed = steps >= 0
    limit = steps if fixed else max_iter * p
    n_blocks = (n_rep + _BLOCK - 1) // _BLOCK
    for blk in prange(n_blocks):
        r0 = blk * _BLOCK
        size = min(_BLOCK, n_rep - r0)
        wb = np.zeros((m, _BLOCK))  # unit-major: a step is contiguous vector work per unit
        for c in range(m):
            for b in range(size):
                wb[c, b] = d[r0 + b, c]
        acc = np.zeros((_LANES, n_t, _BLOCK))  # lane c & 3: equal codes do not chain the adds
        mg = np.zeros((n_t, _BLOCK))
        ratio = np.ones((n_t, _BLOCK))
        active = np.zeros(_BLOCK, dtype=np.bool_)
        active[:size] = True
        need = np.zeros(_BLOCK, dtype=np.bool_)
        before = np.full((p, _BLOCK), np.inf)  # each variable's error just before its step
        previous = np.full(_BLOCK, np.inf)
        proxy = np.full(_BLOCK, np.nan)
        value = np.zeros(_BLOCK)
        hist = np.empty((max_iter + 1, _BLOCK))
        nh = 0
        _block_sums(codes, offsets, wb, acc, mg, 0, 1)
        for k in range(1, limit + 1):
            v = (k - 1) % p
            nxt = k % p
            base = offsets[v]
            end = k == limit or (not fixed and nxt == 0)
            for b in range(_BLOCK):
                need[b] = active[b] and k == limit
            if not fixed:
                for b in range(size):
                    before[v, b] = _batch_error(
                        mg[base : offsets[v + 1], b], t[base : offsets[v + 1]], total
                    )
                if nxt == 0:
                    for b in range(size):
                        pr = before[0, b]
                        for u in range(1, p):
                            x = before[u, b]
                            if x != x or (pr == pr and x > pr):  # NaN propagates, as np.max
                                pr = x
                        proxy[b] = pr
                        rate = 1.0
                        if previous[b] > 0 and previous[b] < np.inf:
                            rate = min(1.0, pr / previous[b])
                        if active[b] and (p == 1 or pr * rate <= check_margin * tol):
                            need[b] = True
                        previous[b] = pr
            for j in range(base, offsets[v + 1]):
                for b in range(_BLOCK):
                    x = mg[j, b]
                    ratio[j, b] = t[j] / x if active[b] and x > 0 else 1.0
            full = False
            for b in range(_BLOCK):
                full = full or need[b]
            first = 0 if full else nxt
            last = p if full else nxt + 1
            acc[:, offsets[first] : offsets[last], :] = 0.0
            if full:
                for c in range(m):
                    wc = wb[c]
                    rc = ratio[base + codes[v, c]]
                    lane = c & (_LANES - 1)
                    for b in range(_BLOCK):
                        wc[b] *= rc[b]
                    for u in range(p):
                        ac = acc[lane, offsets[u] + codes[u, c]]
                        for b in range(_BLOCK):
                            ac[b] += wc[b]
            else:  # the common step: scale one variable, sum the next (a loop of its own)
                nb = offsets[nxt]
                for c in range(m):
                    wc = wb[c]
                    rc = ratio[base + codes[v, c]]
                    ac = acc[c & (_LANES - 1), nb + codes[nxt, c]]
                    for b in range(_BLOCK):
                        wc[b] *= rc[b]
                    for b in range(_BLOCK):
                        ac[b] += wc[b]
            for j in range(offsets[first], offsets[last]):
                for b in range(_BLOCK):
                    mg[j, b] = acc[0, j, b] + acc[1, j, b] + acc[2, j, b] + acc[3, j, b]
            if not end:
                continue
            any_stop = False
            for b in range(size):
                value[b] = _batch_error(mg[:, b], t, total) if need[b] else proxy[b]
            stops = np.zeros(_BLOCK, dtype=np.bool_)
            for b in range(size):
                if not active[b]:
                    continue
                stop, conv, stall = _batch_stop(
                    value[b],
                    k,
                    limit,
                    fixed,
                    tol if need[b] else -1.0,
                    hist[:, b],
                    nh,
                    stall_sweeps,
                    stall_gain,
                )
                if stop:
                    stops[b] = True
                    any_stop = True
                    flags[r0 + b, 0] = conv
                    flags[r0 + b, 1] = stall
            if not fixed:
                for b in range(_BLOCK):
                    hist[nh, b] = value[b]
                nh += 1
            if any_stop:
                if not full:  # the margins of every variable, for the replicates that stop
                    _block_sums(codes, offsets, wb, acc, mg, 0, p)
                running = False
                for b in range(size):
                    if stops[b]:
                        active[b] = False
                        k_out[r0 + b] = k
                        errors[r0 + b] = _batch_error(mg[:, b], t, total)
                        for j in range(n_t):
                            margins[r0 + b, j] = mg[j, b]
                    running = running or active[b]
                if not running:
                    break
        for c in range(m):
            for b in range(size):
                w[r0 + b, c] = wb[c, b]


def _block_sums(
    codes: np.ndarray,
    offsets: np.ndarray,
    wb: np.ndarray,
    acc: np.ndarray,
    mg: np.ndarray,
    first: int,
    last: int,
) -> None:
    """``mg[j, b]``: the margins of variables ``first .. last - 1`` of a block, no scaling."""
    acc[:, offsets[first] : offsets[last], :] = 0.0
    for c in range(wb.shape[0]):
        lane = c & (_LANES - 1)
        for u in range(first, last):
            ac = acc[lane, offsets[u] + codes[u, c]]
            for b in range(_BLOCK):
                ac[b] += wb[c, b]
    for j in range(offsets[first], offsets[last]):
        for b in range(_BLOCK):
            mg[j, b] = acc[0, j, b] + acc[1, j, b] + acc[2, j, b] + acc[3, j, b]


def _rake_batch_bounded_loops(
    codes: np.ndarray,
    offsets: np.ndarray,
    t: np.ndarray,
    d: np.ndarray,
    steps: int,
    tol: float,
    max_iter: int,
    total: float,
    stall_sweeps: int,
    stall_gain: float,
    lo: float,
    hi: float,
    newton_max: int,
    atol: float,
    w: np.ndarray,
    margins: np.ndarray,
    k_out: np.ndarray,
    flags: np.ndarray,
    errors: np.ndarray,
) -> None:
    n_rep, m = d.shape
    p = codes.shape[0]
    fixed = steps >= 0
    limit = steps if fixed else max_iter * p
    width = 0
    for v in range(p):
        width = max(width, offsets[v + 1] - offsets[v])
    for r in prange(n_rep):
        wr = w[r]
        dr = d[r]
        mg = margins[r]
        q = np.ones(m)
        rho = np.empty(width)
        a = np.empty(width)
        b = np.empty(width)
        f = np.empty(width)
        fp = np.empty(width)
        hist = np.empty(max_iter + 1)
        nh = 0
        for k in range(1, limit + 1):
            v = (k - 1) % p
            base = offsets[v]
            size = offsets[v + 1] - base
            for j in range(size):
                rho[j] = 0.0 if t[base + j] == 0 else 1.0
                a[j] = 0.0
                b[j] = np.inf
            for _ in range(newton_max):
                f[:size] = 0.0
                fp[:size] = 0.0
                for i in range(m):
                    j = codes[v, i]
                    x = q[i] * rho[j]
                    if x < lo:
                        f[j] += dr[i] * lo
                    elif x >= hi:
                        f[j] += dr[i] * hi
                    else:
                        f[j] += dr[i] * x
                        fp[j] += dr[i] * q[i]
                all_done = True
                for j in range(size):
                    g = f[j] - t[base + j]
                    if (
                        t[base + j] == 0
                        or abs(g) <= atol
                        or (np.isfinite(b[j]) and b[j] - a[j] <= 4e-16 * b[j])
                    ):
                        continue
                    all_done = False
                    if g < 0:
                        a[j] = max(a[j], rho[j])
                    if g > 0:
                        b[j] = min(b[j], rho[j])
                    newton = rho[j] - g / fp[j]
                    if np.isinf(b[j]):
                        middle = 4.0 * a[j]
                    elif a[j] > 0:
                        middle = np.sqrt(a[j] * b[j])
                    else:
                        middle = 0.5 * b[j]
                    ok = np.isfinite(newton) and newton > a[j] and newton < b[j]
                    rho[j] = newton if ok else middle
                if all_done:
                    break
            check = k == limit or (not fixed and k % p == 0)
            if check:
                mg[:] = 0.0
            for i in range(m):
                g = q[i] * rho[codes[v, i]]
                q[i] = g
                x = dr[i] * min(max(g, lo), hi)
                wr[i] = x
                if check:
                    for u in range(p):
                        mg[offsets[u] + codes[u, i]] += x
            if check:
                err = _batch_error(mg, t, total)
                stop, conv, stall = _batch_stop(
                    err, k, limit, fixed, tol, hist, nh, stall_sweeps, stall_gain
                )
                if stop:
                    k_out[r] = k
                    flags[r, 0] = conv
                    flags[r, 1] = stall
                    errors[r] = err
                    break
                if not fixed:
                    hist[nh] = err
                    nh += 1
