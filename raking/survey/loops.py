r"""The driver of :mod:`raking.survey.weights`: unbounded and bounded steps, stopping, passes.

Step ``k`` adjusts variable ``v = (k - 1) mod p``. Unbounded: one pass ``w *= t_v / m_v`` fused
with the group sums needed next. Bounded: :func:`_solve_levels` solves every level's
piecewise-linear equation by safeguarded Newton (one pass per iteration), then one update pass.
With ``steps=None`` the error (share of the total) is measured in the last pass of a sweep: every
sweep for bounded raking; for unbounded raking only when the sweep looks converged (see
:func:`_run_unbounded`). Iteration stops at ``tol``, at ``max_iter`` sweeps, or on a stall (no new
best below ``_STALL_GAIN`` times the earlier best for ``_STALL_SWEEPS`` sweeps).

The passes are NumPy (``numpy.bincount``) here and compiled in :mod:`raking.survey.compiled`, with
the same signatures; :func:`_passes` picks one. No validation happens here.

Replicates: :func:`_run_unbounded_batch` and :func:`_run_bounded_batch` rake ``R`` copies of the
units with their own design weights at once (a leading replicate axis, margins as products with
one-hot level matrices), with the same steps and, per replicate, the same stopping rule; their
compiled twin is :func:`raking.survey.compiled.rake_batch`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import NamedTuple

import numpy as np

_NUMBA_MIN_UNITS = 100_000  # fewer units: NumPy passes, and numba is never imported
_STALL_SWEEPS = 20
_STALL_GAIN = 0.99
_NEWTON_MAX = 200
_NEWTON_RTOL = 1e-13  # bounded step solved to this fraction of the total
_CHECK_MARGIN = 10.0  # full check once the predicted error is below this many times tol


class _Passes(NamedTuple):
    scale_count: Callable[..., np.ndarray]
    clip_eval: Callable[..., tuple[np.ndarray, np.ndarray]]
    clip_update: Callable[..., np.ndarray]
    name: str


class _Run(NamedTuple):
    w: np.ndarray
    margins: np.ndarray
    steps: int
    converged: bool
    stalled: bool


def _stalled(history: list[float], error: float) -> bool:
    """No new best below ``_STALL_GAIN`` times the earlier best for ``_STALL_SWEEPS`` sweeps."""
    if len(history) < _STALL_SWEEPS:
        return False
    recent = min(min(history[-_STALL_SWEEPS + 1 :], default=error), error)
    return recent > _STALL_GAIN * min(history[: -_STALL_SWEEPS + 1])


def _max_error(margins: np.ndarray, targets: Sequence[np.ndarray], total: float) -> float:
    return float(np.max(np.abs(margins - np.concatenate(targets)))) / total


def _ratio(target: np.ndarray, margin: np.ndarray) -> np.ndarray:
    return np.divide(target, margin, out=np.ones_like(target), where=margin > 0)


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
    only when that prediction is at most ``_CHECK_MARGIN * tol`` does the sweep's last pass sum
    every variable (a full pass costs ``p`` single sums). The stop at ``tol`` is always decided
    on the full check; stalls and NaN are decided on the proxies, then the margins are summed
    once.
    """
    p = len(targets)
    w = d.copy()
    limit = steps if steps is not None else max_iter * p
    margin = passes.scale_count(codes, offsets, w, -1, None, 0, 1)
    history: list[float] = []
    before = [math.inf] * p  # each variable's error just before its latest step
    previous = math.inf
    for k in range(1, limit + 1):
        v, nxt = (k - 1) % p, k % p
        check = k == limit
        if steps is None:
            before[v] = _max_error(margin, [targets[v]], total)
            if nxt == 0:
                proxy = max(before)
                rate = min(1.0, proxy / previous) if 0.0 < previous < math.inf else 1.0
                check = check or p == 1 or proxy * rate <= _CHECK_MARGIN * tol
                previous = proxy
        first, last = (0, p) if check else (nxt, nxt + 1)
        out = passes.scale_count(codes, offsets, w, v, _ratio(targets[v], margin), first, last)
        margin = out[offsets[nxt] - offsets[first] : offsets[nxt + 1] - offsets[first]]
        if check:
            error = _max_error(out, targets, total)
            done = _done(steps, error, tol, history)
            if done is not None or k == limit:
                return _finish(w, out, k, steps, error, tol, done)
        elif steps is None and nxt == 0:
            done = _done(steps, proxy, -1.0, history)  # stall or NaN, never "tol"
            if done is not None:
                out = passes.scale_count(codes, offsets, w, -1, None, 0, p)
                return _finish(w, out, k, steps, _max_error(out, targets, total), tol, done)
    raise AssertionError("unreachable")  # pragma: no cover


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
    p = len(targets)
    lo, hi = bounds
    q = np.ones_like(d)
    w = np.empty_like(d)
    passes.clip_update(codes, offsets, -1, q, d, None, lo, hi, w, 0, 0)
    limit = steps if steps is not None else max_iter * p
    history: list[float] = []
    for k in range(1, limit + 1):
        v = (k - 1) % p
        rho = _solve_levels(passes, codes, v, q, d, targets[v], bounds, _NEWTON_RTOL * total)
        check = k == limit or (steps is None and k % p == 0)
        last = p if check else 0
        out = passes.clip_update(codes, offsets, v, q, d, rho, lo, hi, w, 0, last)
        if check:
            error = _max_error(out, targets, total)
            done = _done(steps, error, tol, history)
            if done is not None or k == limit:
                return _finish(w, out, k, steps, error, tol, done)
    raise AssertionError("unreachable")  # pragma: no cover


def _done(steps: int | None, error: float, tol: float, history: list[float]) -> str | None:
    """After a sweep's check: ``"tol"``, ``"nan"``, ``"stall"`` or ``None`` (go on)."""
    if steps is not None:
        return None
    if error <= tol:
        return "tol"
    if not math.isfinite(error):
        return "nan"
    if _stalled(history, error):
        return "stall"
    history.append(error)
    return None


def _finish(
    w: np.ndarray,
    margins: np.ndarray,
    k: int,
    steps: int | None,
    error: float,
    tol: float,
    done: str | None,
) -> _Run:
    converged = math.isfinite(error) if steps is not None else done == "tol"
    return _Run(w, margins, k, converged, done == "stall")


def _solve_levels(
    passes: _Passes,
    codes: np.ndarray,
    v: int,
    q: np.ndarray,
    d: np.ndarray,
    t: np.ndarray,
    bounds: tuple[float, float],
    atol: float,
) -> np.ndarray:
    r"""Factors :math:`\rho_j` with :math:`\sum_{i \in j} d_i \operatorname{clip}(q_i\rho_j) = t_j`.

    :math:`F_j(\rho)` is continuous, non-decreasing and piecewise linear in :math:`\rho`. Each
    iteration (one pass over the units, all levels at once) shrinks the bracket ``[a, b]`` and
    takes the Newton step if it stays inside, else the (geometric) midpoint, or quadruples
    :math:`\rho` while there is no upper end. Levels with target 0 get :math:`\rho = 0`.
    """
    lo, hi = bounds
    zero = t == 0
    rho = np.where(zero, 0.0, 1.0)
    a = np.zeros_like(t)
    b = np.full_like(t, np.inf)
    for _ in range(_NEWTON_MAX):
        f, fp = passes.clip_eval(codes, v, q, d, rho, lo, hi)
        g = f - t
        done = zero | (np.abs(g) <= atol) | (np.isfinite(b) & (b - a <= 4e-16 * b))
        if done.all():
            break
        a = np.where(g < 0, np.maximum(a, rho), a)
        b = np.where(g > 0, np.minimum(b, rho), b)
        with np.errstate(divide="ignore", invalid="ignore"):
            newton = rho - g / fp
            middle = np.where(a > 0, np.sqrt(a * b), 0.5 * b)
        middle = np.where(np.isinf(b), 4.0 * a, middle)
        ok = np.isfinite(newton) & (newton > a) & (newton < b)
        rho = np.where(done, rho, np.where(ok, newton, middle))
    return rho


def _passes(backend: str | None, n_units: int) -> _Passes:
    if backend is None:
        backend = "numpy"
        if n_units >= _NUMBA_MIN_UNITS:
            from raking.survey.compiled import numba_available

            backend = "numba" if numba_available() else "numpy"
    if backend == "numba":
        from raking.survey import compiled as nb

        return _Passes(nb.scale_count, nb.clip_eval, nb.clip_update, "numba")
    return _Passes(_np_scale_count, _np_clip_eval, _np_clip_update, "numpy")


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


# --------------------------------------------------------------------------------------------
# Batched: R replicates of the same units at once (a leading replicate axis)
# --------------------------------------------------------------------------------------------


class _BatchRun(NamedTuple):
    """Per replicate: raked unit weights ``(R, m)``, margins ``(R, sum L)``, and how it ended."""

    w: np.ndarray
    margins: np.ndarray
    steps: np.ndarray  # (R,) int64: single-variable adjustments done
    converged: np.ndarray  # (R,) bool
    stalled: np.ndarray  # (R,) bool
    errors: np.ndarray  # (R,) max |margin - target| / total at the end


def _one_hot(codes: np.ndarray, offsets: np.ndarray) -> list[np.ndarray]:
    """Per variable, the ``(m, L_v)`` 0/1 matrix of the units' levels (margins by a GEMM)."""
    m = codes.shape[1]
    out = []
    for v in range(codes.shape[0]):
        e = np.zeros((m, int(offsets[v + 1] - offsets[v])))
        e[np.arange(m), codes[v]] = 1.0
        out.append(e)
    return out


class _BatchStop:
    """The stopping rule of :func:`_done` per replicate (``tol``, NaN, stall; fixed steps)."""

    def __init__(self, n_rep: int, steps: int | None, tol: float, total: float) -> None:
        self.steps, self.tol, self.total = steps, tol, total
        self.active = np.ones(n_rep, dtype=bool)
        self.k = np.zeros(n_rep, dtype=np.int64)
        self.converged = np.zeros(n_rep, dtype=bool)
        self.stalled = np.zeros(n_rep, dtype=bool)
        self.errors = np.full(n_rep, np.nan)
        self.history: list[np.ndarray] = []  # per sweep: the error, or the proxy, of each

    def error(self, out: np.ndarray, t: np.ndarray) -> np.ndarray:
        """Max ``|margin - target|`` over ``total`` of each replicate (NaN propagates)."""
        with np.errstate(invalid="ignore"):
            return np.max(np.abs(out - t), axis=1) / self.total

    def decide(self, value: np.ndarray, measured: np.ndarray, last: bool) -> np.ndarray:
        """Replicates that stop after a sweep judged on ``value``, as :func:`_done`.

        ``value``: the error where ``measured`` (it may meet ``tol``), else the sweep's proxy
        (only NaN or a stall can stop on it); ``last``: the last step allowed.
        """
        if self.steps is not None:
            stop = self.active.copy() if last else np.zeros_like(self.active)
            self.converged |= stop & np.isfinite(value)
            return stop
        with np.errstate(invalid="ignore"):
            tol_ok = measured & (value <= self.tol)
            bad = ~np.isfinite(value)
            stall = np.zeros_like(tol_ok)
            if len(self.history) >= _STALL_SWEEPS:
                past = np.stack(self.history)
                recent = np.minimum(past[-_STALL_SWEEPS + 1 :].min(axis=0), value)
                stall = recent > _STALL_GAIN * past[: -_STALL_SWEEPS + 1].min(axis=0)
        stop = self.active & (tol_ok | bad | stall | last)
        self.converged |= self.active & tol_ok
        self.stalled |= self.active & ~tol_ok & ~bad & stall
        self.history.append(value)
        return stop

    def record(
        self, stop: np.ndarray, k: int, out: np.ndarray, t: np.ndarray, margins: np.ndarray
    ) -> None:
        """Stop the replicates ``stop`` at step ``k``, with their margins ``out``."""
        self.k[stop] = k
        self.errors[stop] = self.error(out, t)[stop]
        margins[stop] = out[stop]
        self.active &= ~stop


def _run_unbounded_batch(
    codes: np.ndarray,
    offsets: np.ndarray,
    targets: Sequence[np.ndarray],
    d: np.ndarray,
    total: float,
    steps: int | None,
    tol: float,
    max_iter: int,
) -> _BatchRun:
    """:func:`_run_unbounded` for ``R`` replicates of design weights ``d`` (``(R, m)``) at once.

    Vectorised over the ``(R, m)`` matrix (margins as products with the units' one-hot level
    matrices), with the same checks per replicate: each variable's error just before its step,
    the sweep's proxy and its predicted error, a full check only for the replicates whose
    prediction is within ``_CHECK_MARGIN * tol`` (all margins are summed when one of them needs
    it), the stop at ``tol`` decided on the full check, NaN and stalls on the proxies. A stopped
    replicate is carried with factors 1. The same algorithm as
    :func:`raking.survey.compiled.rake_batch`.
    """
    p, n_rep = len(targets), d.shape[0]
    t = np.concatenate(targets)
    onehot = _one_hot(codes, offsets)
    w = d.copy()
    margins = np.zeros((n_rep, t.size))
    stop = _BatchStop(n_rep, steps, tol, total)
    limit = steps if steps is not None else max_iter * p
    before = np.full((p, n_rep), np.inf)  # each variable's error just before its latest step
    previous = np.full(n_rep, np.inf)
    proxy = np.full(n_rep, np.nan)
    margin = w @ onehot[0]
    for k in range(1, limit + 1):
        v, nxt = (k - 1) % p, k % p
        end = k == limit or (steps is None and nxt == 0)
        need = stop.active.copy() if k == limit else np.zeros(n_rep, dtype=bool)
        if steps is None:
            before[v] = stop.error(margin, targets[v])
            if nxt == 0:
                proxy = before.max(axis=0)
                known = (previous > 0) & (previous < np.inf)
                with np.errstate(invalid="ignore"):
                    rate = np.where(known, np.minimum(1.0, proxy / np.where(known, previous, 1)), 1)
                    need |= stop.active & ((p == 1) | (proxy * rate <= _CHECK_MARGIN * tol))
                previous = proxy
        ratio = _ratio(np.broadcast_to(targets[v], margin.shape), margin)
        ratio[~stop.active] = 1.0
        w *= np.take(ratio, codes[v], axis=1)
        out = None
        if need.any():
            out = np.concatenate([w @ e for e in onehot], axis=1)
            margin = out[:, offsets[nxt] : offsets[nxt + 1]]
        else:
            margin = w @ onehot[nxt]
        if end:
            value = proxy.copy()
            if out is not None:
                value[need] = stop.error(out, t)[need]
            ends = stop.decide(value, need, k == limit)
            if ends.any():
                if out is None:
                    out = np.concatenate([w @ e for e in onehot], axis=1)
                stop.record(ends, k, out, t, margins)
            if not stop.active.any():
                break
    return _BatchRun(w, margins, stop.k, stop.converged, stop.stalled, stop.errors)


def _run_bounded_batch(
    codes: np.ndarray,
    offsets: np.ndarray,
    targets: Sequence[np.ndarray],
    d: np.ndarray,
    total: float,
    steps: int | None,
    tol: float,
    max_iter: int,
    bounds: tuple[float, float],
) -> _BatchRun:
    """:func:`_run_bounded` for ``R`` replicates (``d``: ``(R, m)``) at once, as the unbounded."""
    p, n_rep = len(targets), d.shape[0]
    lo, hi = bounds
    t = np.concatenate(targets)
    onehot = _one_hot(codes, offsets)
    q = np.ones_like(d)
    w = d * np.clip(q, lo, hi)
    margins = np.zeros((n_rep, t.size))
    stop = _BatchStop(n_rep, steps, tol, total)
    limit = steps if steps is not None else max_iter * p
    for k in range(1, limit + 1):
        v = (k - 1) % p
        with np.errstate(over="ignore", invalid="ignore"):  # q -> inf: unreachable, clipped
            rho = _solve_levels_batch(
                codes[v], onehot[v], q, d, targets[v], bounds, _NEWTON_RTOL * total, stop.active
            )
            rho[~stop.active] = 1.0
            q *= np.take(rho, codes[v], axis=1)
        np.multiply(d, np.clip(q, lo, hi), out=w)
        if k == limit or (steps is None and k % p == 0):
            out = np.concatenate([w @ e for e in onehot], axis=1)
            ends = stop.decide(stop.error(out, t), stop.active, k == limit)
            stop.record(ends, k, out, t, margins)
            if not stop.active.any():
                break
    return _BatchRun(w, margins, stop.k, stop.converged, stop.stalled, stop.errors)


def _solve_levels_batch(
    c: np.ndarray,
    onehot: np.ndarray,
    q: np.ndarray,
    d: np.ndarray,
    t: np.ndarray,
    bounds: tuple[float, float],
    atol: float,
    active: np.ndarray,
) -> np.ndarray:
    """:func:`_solve_levels` for every replicate at once: ``rho`` of shape ``(R, L)``."""
    lo, hi = bounds
    zero = np.broadcast_to(t == 0, (q.shape[0], t.size))
    rho = np.where(zero, 0.0, 1.0)
    a = np.zeros_like(rho)
    b = np.full_like(rho, np.inf)
    for _ in range(_NEWTON_MAX):
        r = q * np.take(rho, c, axis=1)
        f = (d * np.clip(r, lo, hi)) @ onehot
        fp = np.where((r >= lo) & (r < hi), d * q, 0.0) @ onehot
        g = f - t
        done = zero | (np.abs(g) <= atol) | (np.isfinite(b) & (b - a <= 4e-16 * b))
        done |= ~active[:, None]
        if done.all():
            break
        a = np.where(g < 0, np.maximum(a, rho), a)
        b = np.where(g > 0, np.minimum(b, rho), b)
        with np.errstate(divide="ignore", invalid="ignore"):
            newton = rho - g / fp
            middle = np.where(a > 0, np.sqrt(a * b), 0.5 * b)
        middle = np.where(np.isinf(b), 4.0 * a, middle)
        ok = np.isfinite(newton) & (newton > a) & (newton < b)
        rho = np.where(done, rho, np.where(ok, newton, middle))
    return rho
