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
