r"""The driver of :mod:`raking.survey.weights`: unbounded and bounded steps, stopping, passes.

One driver rakes ``R`` copies of the same units at once, each with its own design weights (a
leading replicate axis: ``(R, m)``); one rake of the sample is ``R = 1``, replicate weights are
``R`` replicates (:func:`raking.survey.weights._rake_replicates`). Step ``k`` adjusts variable
``v = (k - 1) mod p``. Unbounded: one pass ``w *= t_v / m_v`` fused with the group sums needed
next. Bounded: :func:`_solve_levels` solves every level's piecewise-linear equation by
safeguarded Newton (one pass per iteration), then one update pass. With ``steps=None`` the error
(share of the total) is measured in the last pass of a sweep: every sweep for bounded raking; for
unbounded raking only when the sweep looks converged (see :func:`_run_unbounded`). Each replicate
stops on its own (:class:`_Stop`) at ``tol``, at ``max_iter`` sweeps, or on a stall (no new best
below ``_STALL_GAIN`` times the earlier best for ``_STALL_SWEEPS`` sweeps); a stopped replicate is
carried with factors 1.

The passes over the units (:class:`_Passes`) have the same signatures on ``(R, m)`` arrays: for
one rake, the passes on ``(m,)`` arrays (NumPy ``numpy.bincount`` here, or compiled in
:mod:`raking.survey.compiled`; :func:`_passes` picks one) applied to the single row
(:func:`_one`); for replicates, NumPy products with the units' one-hot level matrices
(:func:`_gemm_passes`). The compiled twin of the driver for replicates is
:func:`raking.survey.compiled.rake_batch` (the whole iteration of 8 replicates per thread in one
compiled call: driven from here, one parallel pass per step, it ran 2.7x slower on a shared
machine). No validation happens here.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import numpy as np

_NUMBA_MIN_UNITS = 100_000  # fewer units: NumPy passes, and numba is never imported
_STALL_SWEEPS = 20
_STALL_GAIN = 0.99
_NEWTON_MAX = 200
_NEWTON_RTOL = 1e-13  # bounded step solved to this fraction of the total
_CHECK_MARGIN = 10.0  # full check once the predicted error is below this many times tol


class _Passes(NamedTuple):
    """The passes over the units; on ``(m,)`` arrays (:func:`_passes`) or ``(R, m)`` (the rest)."""

    scale_count: Callable[..., np.ndarray]
    clip_eval: Callable[..., tuple[np.ndarray, np.ndarray]]
    clip_update: Callable[..., np.ndarray]
    name: str


class _Run(NamedTuple):
    """Per replicate: raked unit weights ``(R, m)``, margins ``(R, sum L)``, and how it ended."""

    w: np.ndarray
    margins: np.ndarray
    steps: np.ndarray  # (R,) int64: single-variable adjustments done
    converged: np.ndarray  # (R,) bool
    stalled: np.ndarray  # (R,) bool
    errors: np.ndarray  # (R,) max |margin - target| / total at the end


def _ratio(target: np.ndarray, margin: np.ndarray) -> np.ndarray:
    return np.divide(target, margin, out=np.ones(margin.shape), where=margin > 0)


class _Stop:
    """The stopping rule per replicate: ``tol``, NaN, stall; or the last of fixed ``steps``."""

    def __init__(self, n_rep: int, steps: int | None, tol: float, total: float) -> None:
        self.steps, self.tol, self.total = steps, tol, total
        self.active = np.ones(n_rep, dtype=bool)
        self.all_active = True
        self.k = np.zeros(n_rep, dtype=np.int64)
        self.converged = np.zeros(n_rep, dtype=bool)
        self.stalled = np.zeros(n_rep, dtype=bool)
        self.errors = np.full(n_rep, np.nan)
        self.history: list[np.ndarray] = []  # per sweep: the error, or the proxy, of each

    def error(self, out: np.ndarray, t: np.ndarray) -> np.ndarray:
        """Max ``|margin - target|`` over ``total`` of each replicate (NaN propagates)."""
        return np.max(np.abs(out - t), axis=1) / self.total

    def decide(self, value: np.ndarray, measured: np.ndarray, last: bool) -> np.ndarray:
        """Replicates that stop after a sweep judged on ``value``.

        ``value``: the error where ``measured`` (it may meet ``tol``), else the sweep's proxy
        (only NaN or a stall can stop on it); ``last``: the last step allowed. With fixed
        ``steps``, every replicate stops at the last step, converged if its error is finite.
        """
        if self.steps is not None:
            stop = self.active.copy() if last else np.zeros_like(self.active)
            self.converged |= stop & np.isfinite(value)
            return stop
        tol_ok = measured & (value <= self.tol)
        stop = tol_ok | ~np.isfinite(value)
        if len(self.history) >= _STALL_SWEEPS:
            past = np.stack(self.history)
            recent = np.minimum(past[-_STALL_SWEEPS + 1 :].min(axis=0), value)
            stall = recent > _STALL_GAIN * past[: -_STALL_SWEEPS + 1].min(axis=0)
            self.stalled |= self.active & ~stop & stall
            stop |= stall
        self.converged |= self.active & tol_ok
        self.history.append(value)
        return self.active & (stop | last)

    def record(
        self, stop: np.ndarray, k: int, out: np.ndarray, t: np.ndarray, margins: np.ndarray
    ) -> None:
        """Stop the replicates ``stop`` at step ``k``, with their margins ``out``."""
        self.k[stop] = k
        self.errors[stop] = self.error(out, t)[stop]
        margins[stop] = out[stop]
        self.active &= ~stop
        self.all_active = bool(self.active.all())

    def run(self, w: np.ndarray, margins: np.ndarray) -> _Run:
        return _Run(w, margins, self.k, self.converged, self.stalled, self.errors)


def _run(
    passes: _Passes,
    codes: np.ndarray,
    offsets: np.ndarray,
    targets: Sequence[np.ndarray],
    d: np.ndarray,
    total: float,
    steps: int | None,
    tol: float,
    max_iter: int,
    bounds: tuple[float, float] | None,
) -> _Run:
    """Rake ``R`` replicates of the units from ``d`` (``(R, m)``); ``steps=0`` only scales.

    Overflow to infinity and NaN raise no warning here: the stopping rule reports them.
    """
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        if steps == 0:
            return _run_scaled(passes, codes, offsets, targets, d, total)
        if bounds is None:
            return _run_unbounded(passes, codes, offsets, targets, d, total, steps, tol, max_iter)
        return _run_bounded(passes, codes, offsets, targets, d, total, steps, tol, max_iter, bounds)


def _run_scaled(
    passes: _Passes,
    codes: np.ndarray,
    offsets: np.ndarray,
    targets: Sequence[np.ndarray],
    d: np.ndarray,
    total: float,
) -> _Run:
    """No step: the design weights scaled to ``total``."""
    n_rep = d.shape[0]
    w = d * (total / d.sum(axis=1, keepdims=True))
    margins = passes.scale_count(codes, offsets, w, -1, None, 0, len(targets))
    stop = _Stop(n_rep, 0, 0.0, total)
    stop.converged = np.isfinite(margins).all(axis=1)
    stop.errors = stop.error(margins, np.concatenate(targets))
    return stop.run(w, margins)


def _run_unbounded(
    passes: _Passes,
    codes: np.ndarray,
    offsets: np.ndarray,
    targets: Sequence[np.ndarray],
    d: np.ndarray,
    total: float,
    steps: int | None,
    tol: float,
    max_iter: int,
) -> _Run:
    """IPF on the units; with ``steps=None``, a full check only when a sweep looks converged.

    Each pass scales one variable and sums the next, so every variable's error just before its
    own step comes free. After a sweep, the largest of those (the sweep's *proxy*), times the
    contraction observed from the previous sweep, predicts the error at the end of the sweep;
    only when that prediction is at most ``_CHECK_MARGIN * tol`` for some replicate does the
    sweep's last pass sum every variable (a full pass costs ``p`` single sums). The stop at
    ``tol`` is always decided on the full check; stalls and NaN are decided on the proxies, then
    the margins are summed once.
    """
    p, n_rep = len(targets), d.shape[0]
    t = np.concatenate(targets)
    w = d.copy()
    margins = np.zeros((n_rep, t.size))
    stop = _Stop(n_rep, steps, tol, total)
    limit = steps if steps is not None else max_iter * p
    before = np.full((p, n_rep), np.inf)  # each variable's error just before its latest step
    previous = np.full(n_rep, np.inf)
    proxy = np.full(n_rep, np.nan)
    margin = passes.scale_count(codes, offsets, w, -1, None, 0, 1)
    for k in range(1, limit + 1):
        v, nxt = (k - 1) % p, k % p
        end = k == limit or (steps is None and nxt == 0)  # a sweep's end: a stop is decided
        if steps is None:
            before[v] = stop.error(margin, targets[v])
        if end:
            need = stop.active & (k == limit)
            if steps is None:
                proxy = before.max(axis=0)
                known = (previous > 0) & (previous < np.inf)
                rate = np.where(known, np.minimum(1.0, proxy / np.where(known, previous, 1)), 1)
                need |= stop.active & ((p == 1) | (proxy * rate <= _CHECK_MARGIN * tol))
                previous = proxy
        ratio = _ratio(targets[v], margin)
        if not stop.all_active:
            ratio[~stop.active] = 1.0
        full = end and bool(need.any())
        first, last = (0, p) if full else (nxt, nxt + 1)
        out = passes.scale_count(codes, offsets, w, v, ratio, first, last)
        margin = out[:, offsets[nxt] - offsets[first] : offsets[nxt + 1] - offsets[first]]
        if end:
            value = proxy.copy()
            if full:
                value[need] = stop.error(out, t)[need]
            ends = stop.decide(value, need, k == limit)
            if ends.any():
                if not full:
                    out = passes.scale_count(codes, offsets, w, -1, None, 0, p)
                stop.record(ends, k, out, t, margins)
            if not stop.active.any():
                break
    return stop.run(w, margins)


def _run_bounded(
    passes: _Passes,
    codes: np.ndarray,
    offsets: np.ndarray,
    targets: Sequence[np.ndarray],
    d: np.ndarray,
    total: float,
    steps: int | None,
    tol: float,
    max_iter: int,
    bounds: tuple[float, float],
) -> _Run:
    """Dual coordinate ascent with bounds: :func:`_solve_levels`, then one update pass."""
    p, n_rep = len(targets), d.shape[0]
    lo, hi = bounds
    t = np.concatenate(targets)
    q, w = np.ones_like(d), np.empty_like(d)
    passes.clip_update(codes, offsets, -1, q, d, None, lo, hi, w, 0, 0)
    margins = np.zeros((n_rep, t.size))
    stop = _Stop(n_rep, steps, tol, total)
    limit = steps if steps is not None else max_iter * p
    for k in range(1, limit + 1):
        v = (k - 1) % p
        levels = functools.partial(passes.clip_eval, codes, v, q, d)
        rho = _solve_levels(levels, targets[v], bounds, _NEWTON_RTOL * total, stop.active)
        if not stop.all_active:
            rho[~stop.active] = 1.0
        check = k == limit or (steps is None and k % p == 0)
        out = passes.clip_update(codes, offsets, v, q, d, rho, lo, hi, w, 0, p if check else 0)
        if check:
            ends = stop.decide(stop.error(out, t), stop.active, k == limit)
            stop.record(ends, k, out, t, margins)
            if not stop.active.any():
                break
    return stop.run(w, margins)


def _solve_levels(
    levels: Callable[..., tuple[np.ndarray, np.ndarray]],
    t: np.ndarray,
    bounds: tuple[float, float],
    atol: float,
    active: np.ndarray,
) -> np.ndarray:
    r"""Factors :math:`\rho_j` with :math:`\sum_{i \in j} d_i \operatorname{clip}(q_i\rho_j) = t_j`.

    Per replicate ``r`` (a row of the result, ``(R, L)``) and level ``j``; ``levels(rho, lo,
    hi)`` returns :math:`F_j(\rho_j)` and its right derivative (one pass over the units).
    :math:`F_j(\rho)` is continuous, non-decreasing and piecewise linear in :math:`\rho`. Each
    iteration (all levels and replicates at once) shrinks the bracket ``[a, b]`` and takes the
    Newton step if it stays inside, else the (geometric) midpoint, or quadruples :math:`\rho`
    while there is no upper end. Levels with target 0 get :math:`\rho = 0`; the replicates
    that are not ``active`` keep :math:`\rho = 1`.
    """
    zero = np.broadcast_to(t == 0, (active.size, t.size))
    if not active.all():
        zero = zero | ~active[:, None]  # "done" from the start: rho stays 1 (set by the caller)
    rho = np.where(zero, 0.0, 1.0)
    a = np.zeros_like(rho)
    b = np.full_like(rho, np.inf)
    for _ in range(_NEWTON_MAX):
        f, fp = levels(rho, *bounds)
        g = f - t
        done = zero | (np.abs(g) <= atol) | (np.isfinite(b) & (b - a <= 4e-16 * b))
        if done.all():
            break
        a = np.where(g < 0, np.maximum(a, rho), a)
        b = np.where(g > 0, np.minimum(b, rho), b)
        newton = rho - g / fp
        middle = np.where(a > 0, np.sqrt(a * b), 0.5 * b)
        middle = np.where(np.isinf(b), 4.0 * a, middle)
        ok = np.isfinite(newton) & (newton > a) & (newton < b)
        rho = np.where(done, rho, np.where(ok, newton, middle))
    return rho


def _passes(backend: str | None, n_units: int) -> _Passes:
    """The passes on ``(m,)`` arrays: NumPy, or compiled from ``_NUMBA_MIN_UNITS`` units."""
    if backend is None:
        backend = "numpy"
        if n_units >= _NUMBA_MIN_UNITS:
            from raking.survey.compiled import numba_available

            backend = "numba" if numba_available() else "numpy"
    if backend == "numba":
        from raking.survey import compiled as nb

        return _Passes(nb.scale_count, nb.clip_eval, nb.clip_update, "numba")
    return _Passes(_np_scale_count, _np_clip_eval, _np_clip_update, "numpy")


def _one(passes: _Passes) -> _Passes:
    """``passes`` on ``(m,)`` arrays applied to the single row of ``(1, m)`` arrays."""

    def row(x: np.ndarray | None) -> np.ndarray | None:
        return None if x is None else x[0]

    def scale_count(
        codes: np.ndarray, offsets: np.ndarray, w: np.ndarray, v: int, ratio: Any, *sums: int
    ) -> np.ndarray:
        return passes.scale_count(codes, offsets, w[0], v, row(ratio), *sums)[None]

    def clip_eval(
        codes: np.ndarray, v: int, q: np.ndarray, d: np.ndarray, rho: np.ndarray, *bounds: float
    ) -> tuple[np.ndarray, np.ndarray]:
        f, fp = passes.clip_eval(codes, v, q[0], d[0], rho[0], *bounds)
        return f[None], fp[None]

    def clip_update(
        codes: np.ndarray, offsets: np.ndarray, v: int, q: np.ndarray, d: np.ndarray, rho: Any,
        lo: float, hi: float, w: np.ndarray, *sums: int,
    ) -> np.ndarray:  # fmt: skip
        out = passes.clip_update(codes, offsets, v, q[0], d[0], row(rho), lo, hi, w[0], *sums)
        return out[None]

    return _Passes(scale_count, clip_eval, clip_update, passes.name)


def _gemm_passes(codes: np.ndarray, offsets: np.ndarray) -> _Passes:
    """NumPy passes on ``(R, m)`` arrays: margins as products with one-hot level matrices."""
    onehot = []  # per variable, the (m, L_v) 0/1 matrix of the units' levels
    for v in range(codes.shape[0]):
        e = np.zeros((codes.shape[1], int(offsets[v + 1] - offsets[v])))
        e[np.arange(codes.shape[1]), codes[v]] = 1.0
        onehot.append(e)

    def sums(w: np.ndarray, first: int, last: int) -> np.ndarray:
        parts = [w @ e for e in onehot[first:last]]
        return np.concatenate(parts, axis=1) if parts else np.zeros((w.shape[0], 0))

    def scale_count(
        codes: np.ndarray,
        offsets: np.ndarray,
        w: np.ndarray,
        v: int,
        ratio: np.ndarray | None,
        first: int,
        last: int,
    ) -> np.ndarray:
        if v >= 0:
            w *= np.take(ratio, codes[v], axis=1)
        return sums(w, first, last)

    def clip_eval(
        codes: np.ndarray,
        v: int,
        q: np.ndarray,
        d: np.ndarray,
        rho: np.ndarray,
        lo: float,
        hi: float,
    ) -> tuple[np.ndarray, np.ndarray]:
        r = q * np.take(rho, codes[v], axis=1)
        f = (d * np.clip(r, lo, hi)) @ onehot[v]
        fp = np.where((r >= lo) & (r < hi), d * q, 0.0) @ onehot[v]
        return f, fp

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
        if v >= 0:
            q *= np.take(rho, codes[v], axis=1)
        np.multiply(d, np.clip(q, lo, hi), out=w)
        return sums(w, first, last)

    return _Passes(scale_count, clip_eval, clip_update, "numpy")


def _group_sums(
    codes: np.ndarray, offsets: np.ndarray, w: np.ndarray, first: int, last: int
) -> np.ndarray:
    sizes = np.diff(offsets)
    parts = [np.bincount(codes[u], weights=w, minlength=sizes[u]) for u in range(first, last)]
    return np.concatenate(parts) if parts else np.zeros(0)


def _np_scale_count(
    codes: np.ndarray,
    offsets: np.ndarray,
    w: np.ndarray,
    v: int,
    ratio: np.ndarray | None,
    first: int,
    last: int,
) -> np.ndarray:
    if v >= 0:
        w *= ratio[codes[v]]  # type: ignore[index]
    return _group_sums(codes, offsets, w, first, last)


def _np_clip_eval(
    codes: np.ndarray,
    v: int,
    q: np.ndarray,
    d: np.ndarray,
    rho: np.ndarray,
    lo: float,
    hi: float,
) -> tuple[np.ndarray, np.ndarray]:
    c = codes[v]
    r = q * rho[c]
    free = (r >= lo) & (r < hi)
    f = np.bincount(c, weights=d * np.clip(r, lo, hi), minlength=rho.size)
    fp = np.bincount(c, weights=np.where(free, d * q, 0.0), minlength=rho.size)
    return f, fp


def _np_clip_update(
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
    if v >= 0:
        q *= rho[codes[v]]  # type: ignore[index]
    np.multiply(d, np.clip(q, lo, hi), out=w)
    return _group_sums(codes, offsets, w, first, last)
