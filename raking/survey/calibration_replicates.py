r"""Every replicate re-calibrated at once (``calibrate(replicates=)``), and trimmed (``trim``).

Replicate ``r`` has design weights :math:`d_{ir} = d_i a_r(\mathrm{psu}_i)`
(:mod:`raking.survey.replicates`) and is calibrated to the same totals :math:`T` with the same
distance and bounds as the full sample: :math:`g_{ir} = F(x_i^\top \lambda_r)` with
:math:`\sum_i d_{ir} g_{ir} x_i = T`, as R ``survey``'s ``calibrate()`` on an ``svyrep.design``
(``grake`` per replicate, or ``regcalibrate`` for unbounded linear calibration). All ``R``
Newton iterations run together on an ``(R, p)`` matrix of multipliers: per iteration one pass
over the units gives every replicate's misfit :math:`T - X^\top w_r` and Gram matrix
:math:`H_r = X^\top \operatorname{diag}(d_{\cdot r} F'(X \lambda_r)) X` (an ``(R, p, p)``
array), and one batched pseudo-inverse solve (:func:`numpy.linalg.eigh` on the stack, Jacobi
scaled, as :class:`~raking.survey.linearization.GramInverse`: a level that a replicate drops
entirely drops out, as R's ``MASS::ginv``) gives every step. Each replicate halves its own step
until its largest misfit or its dual decreases, and stops when it converges. Unbounded linear
calibration converges in one step (its closed form).

Units: without numeric totals :math:`x_i` depends only on the cell of the crossed codes, so the
units are the ``C`` cells, with unit weights :math:`D_{cr} = \sum_{i \in c} d_{ir}` (one pass over
the rows); with numeric totals the units are the rows, ``D`` is ``(n, R)`` (the size of the
replicate weights themselves) and each iteration holds a few arrays of that size.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from raking.survey.replicates import RerakedReplicates

if TYPE_CHECKING:
    from raking.survey.calibration import _Distance

__all__ = [
    "ReplicateCalibration",
    "TrimmedReplicates",
    "calibrate_replicates",
    "group_sums",
    "trim_columns",
]

_RTOL = 1e-12  # eigenvalues below this share of the largest are dropped (GramInverse's rtol)
_HALVINGS = 50


class _Groups:
    """Sums over axis 0 by integer key in ``[0, size)``: one stable sort, then ``reduceat``.

    Keys that are already sorted (the units after :func:`calibrate_replicates` sorts them by
    cell) are summed in place, without gathering the values.
    """

    def __init__(self, keys: np.ndarray, size: int) -> None:
        ordered = bool(np.all(keys[1:] >= keys[:-1]))
        self.order = None if ordered else np.argsort(keys, kind="stable")
        sorted_keys = keys if self.order is None else keys[self.order]
        first = np.flatnonzero(np.r_[True, sorted_keys[1:] != sorted_keys[:-1]])
        self.starts = first
        self.present = sorted_keys[first]
        self.size = size
        self.n = keys.size

    def __call__(self, values: np.ndarray) -> np.ndarray:
        out = np.zeros((self.size, *values.shape[1:]))
        if self.n:
            ordered = values if self.order is None else values[self.order]
            out[self.present] = np.add.reduceat(ordered, self.starts, axis=0)
        return out


def group_sums(keys: np.ndarray, size: int, values: np.ndarray) -> np.ndarray:
    """Sums of the rows of ``values`` (``(n, ...)``) by ``keys`` in ``[0, size)``."""
    return _Groups(keys, size)(values)


@dataclass(frozen=True)
class ReplicateCalibration:
    """The end of the batched Newton iteration, per replicate.

    ``g`` is ``(U, R)`` (units by replicates); ``steps``, ``converged``, ``stalled`` and
    ``errors`` (largest misfit as a share of each constraint's scale) are ``(R,)``.
    """

    g: np.ndarray
    steps: np.ndarray
    converged: np.ndarray
    stalled: np.ndarray
    errors: np.ndarray


class _Problem:
    """The calibration matrix on the units, with batched products for ``(U, R)`` arrays."""

    def __init__(
        self,
        cell_codes: list[np.ndarray],
        n_levels: list[int],
        unit_cell: np.ndarray | None,
        numeric: np.ndarray | None,
    ) -> None:
        self.cell_codes = cell_codes
        self.n_levels = n_levels
        self.offsets = np.concatenate([[0], np.cumsum(n_levels, dtype=np.int64)])
        self.k = int(self.offsets[-1])
        self.q = 0 if numeric is None else numeric.shape[1]
        self.p = self.k + self.q
        self.numeric = numeric
        self.unit_cell = unit_cell
        n_cells = cell_codes[0].size
        self.cells = None if unit_cell is None else _Groups(unit_cell, n_cells)
        self.levels = [_Groups(c, size) for c, size in zip(cell_codes, n_levels, strict=True)]
        self.pairs = [
            (i, j, _Groups(cell_codes[i] * n_levels[j] + cell_codes[j], n_levels[i] * n_levels[j]))
            for i in range(len(cell_codes))
            for j in range(i + 1, len(cell_codes))
        ]

    def _cell_sums(self, v: np.ndarray) -> np.ndarray:
        return v if self.cells is None else self.cells(v)

    def dot(self, lam: np.ndarray) -> np.ndarray:
        r""":math:`X \lambda_r` for every replicate: ``lam`` ``(R, p)`` -> ``(U, R)``."""
        per_cell = np.zeros((self.cell_codes[0].size, lam.shape[0]))
        for cc, a in zip(self.cell_codes, self.offsets[:-1], strict=True):
            per_cell += lam[:, a + cc].T
        out = per_cell if self.unit_cell is None else per_cell[self.unit_cell]
        if self.q:
            out += np.einsum("uj,rj->ur", self.numeric, lam[:, self.k :])
        return out

    def tdot(self, w: np.ndarray) -> np.ndarray:
        r""":math:`X^\top w_r` for every replicate: ``w`` ``(U, R)`` -> ``(R, p)``."""
        out = np.empty((w.shape[1], self.p))
        sums = self._cell_sums(w)
        for groups, a, size in zip(self.levels, self.offsets[:-1], self.n_levels, strict=True):
            out[:, a : a + size] = groups(sums).T
        if self.q:
            out[:, self.k :] = np.einsum("ur,uj->rj", w, self.numeric)
        return out

    def gram(self, v: np.ndarray) -> np.ndarray:
        r""":math:`X^\top \operatorname{diag}(v_r) X` for every replicate: ``(R, p, p)``."""
        r = v.shape[1]
        out = np.zeros((r, self.p, self.p))
        sums = self._cell_sums(v)
        idx = np.arange(self.p)
        for groups, a, size in zip(self.levels, self.offsets[:-1], self.n_levels, strict=True):
            out[:, idx[a : a + size], idx[a : a + size]] = groups(sums).T
        for i, j, groups in self.pairs:
            ai, aj, li, lj = self.offsets[i], self.offsets[j], self.n_levels[i], self.n_levels[j]
            cross = groups(sums).reshape(li, lj, r).transpose(2, 0, 1)
            out[:, ai : ai + li, aj : aj + lj] = cross
            out[:, aj : aj + lj, ai : ai + li] = cross.transpose(0, 2, 1)
        for j in range(self.q):  # one numeric column at a time: (U, R) temporaries only
            vx = v * self.numeric[:, j, None]
            cell_vx = self._cell_sums(vx)
            for groups, a, size in zip(self.levels, self.offsets[:-1], self.n_levels, strict=True):
                block = groups(cell_vx).T  # (R, L)
                out[:, a : a + size, self.k + j] = block
                out[:, self.k + j, a : a + size] = block
            out[:, self.k + j, self.k :] = np.einsum("ur,uk->rk", vx, self.numeric)
        return out


def _solve(gram: np.ndarray, rhs: np.ndarray) -> np.ndarray:
    r""":math:`H_r^+ m_r` for a stack of symmetric PSD ``(R, p, p)`` and ``(R, p)`` (Jacobi)."""
    diag = np.diagonal(gram, axis1=1, axis2=2)
    scale = np.divide(1.0, np.sqrt(diag), out=np.zeros_like(diag), where=diag > 0)
    values, vectors = np.linalg.eigh(gram * scale[:, :, None] * scale[:, None, :])
    top = values.max(axis=1, keepdims=True)
    keep = values > _RTOL * top
    inverse = np.where(keep, 1.0 / np.where(keep, values, 1.0), 0.0)
    y = np.einsum("rji,rj->ri", vectors, scale * rhs)
    return scale * np.einsum("rij,rj->ri", vectors, inverse * y)


def calibrate_replicates(
    cell_codes: list[np.ndarray],
    n_levels: list[int],
    unit_cell: np.ndarray | None,
    numeric: np.ndarray | None,
    weights: np.ndarray,
    totals: np.ndarray,
    dist: _Distance,
    scale: np.ndarray,
    tol: float,
    max_iter: int,
) -> ReplicateCalibration:
    r"""Calibrate ``R`` sets of unit weights to ``totals`` together (module notes).

    Parameters
    ----------
    cell_codes : list of numpy.ndarray of intp, each ``(C,)``
        The level of each cell of the crossed codes, per categorical variable.
    n_levels : list of int
        :math:`L_v` of each categorical variable.
    unit_cell : numpy.ndarray of intp, shape ``(U,)``, optional
        The cell of each unit (``None``: the units are the cells).
    numeric : numpy.ndarray of float64, shape ``(U, q)``, optional
        The numeric calibration columns of the units (then the units are rows).
    weights : numpy.ndarray of float64, shape ``(U, R)``
        :math:`D_{ur}`: each replicate's design weight of each unit (>= 0, population units).
    totals : numpy.ndarray, shape ``(p,)``
        :math:`T`: level counts of every categorical variable, then the numeric totals.
    dist : raking.survey.calibration._Distance
        :math:`F`, :math:`F'` and :math:`\Psi` of the method and bounds.
    scale : numpy.ndarray, shape ``(p,)``
        Scale of each constraint; a replicate converges when every ``|misfit| / scale <= tol``.
    tol, max_iter
        As :func:`raking.calibrate`.
    """
    perm = None
    if unit_cell is not None:  # rows sorted by cell once: cell sums without a gather
        perm = np.argsort(unit_cell, kind="stable")
        unit_cell, weights = unit_cell[perm], weights[perm]
        numeric = None if numeric is None else numeric[perm]
    problem = _Problem(cell_codes, n_levels, unit_cell, numeric)
    n_rep = weights.shape[1]
    lam = np.zeros((n_rep, problem.p))
    u = np.zeros_like(weights)
    g = dist.g(u)
    misfit = totals - problem.tdot(weights * g)
    err = np.max(np.abs(misfit) / scale, axis=1)
    phi = np.full(n_rep, np.nan)
    steps = np.zeros(n_rep, dtype=np.int64)
    stalled = np.zeros(n_rep, dtype=bool)

    def cols(a: np.ndarray, idx: np.ndarray) -> np.ndarray:
        return a if idx.size == n_rep else a[:, idx]  # no copy when every replicate is in

    def dual(idx: np.ndarray, lam_s: np.ndarray, u_s: np.ndarray) -> np.ndarray:
        return np.einsum("ur->r", cols(weights, idx) * dist.psi(u_s)) - lam_s @ totals

    for _ in range(max_iter):
        active = np.flatnonzero((err > tol) & ~stalled)
        if active.size == 0:
            break
        v = cols(weights, active) * dist.dg(cols(u, active))
        step = _solve(problem.gram(v), misfit[active])
        del v
        alpha = np.ones(active.size)
        pending = np.ones(active.size, dtype=bool)
        for _ in range(_HALVINGS):
            sel = np.flatnonzero(pending)
            rep = active[sel]
            lam_new = lam[rep] + alpha[sel, None] * step[sel]
            u_new = problem.dot(lam_new)
            g_new = dist.g(u_new)
            misfit_new = totals - problem.tdot(cols(weights, rep) * g_new)
            err_new = np.max(np.abs(misfit_new) / scale, axis=1)
            finite = np.isfinite(err_new)
            ok = finite & (err_new < err[rep])
            phi_new = np.full(rep.size, np.nan)
            need = np.flatnonzero(finite & ~ok)  # the dual decides (evaluated only then)
            if need.size:
                unknown = need[np.isnan(phi[rep[need]])]
                if unknown.size:
                    phi[rep[unknown]] = dual(rep[unknown], lam[rep[unknown]], u[:, rep[unknown]])
                with np.errstate(invalid="ignore", over="ignore"):
                    phi_new[need] = dual(rep[need], lam_new[need], u_new[:, need])
                ok[need] = phi_new[need] < phi[rep[need]]
            if ok.all() and rep.size == n_rep:
                lam, u, g, misfit, err, phi = lam_new, u_new, g_new, misfit_new, err_new, phi_new
            else:
                done = rep[ok]
                lam[done], u[:, done], g[:, done] = lam_new[ok], u_new[:, ok], g_new[:, ok]
                misfit[done], err[done], phi[done] = misfit_new[ok], err_new[ok], phi_new[ok]
            steps[rep[ok]] += 1
            pending[sel[ok]] = False
            alpha[sel[~ok]] *= 0.5
            if not pending.any():
                break
        stalled[active[pending]] = True
    converged = err <= tol
    if perm is not None:
        unsorted = np.empty_like(g)
        unsorted[perm] = g
        g = unsorted
    return ReplicateCalibration(g, steps, converged, stalled & ~converged, err)


@dataclass(frozen=True, eq=False)
class TrimmedReplicates(RerakedReplicates):
    """Replicate weights after :meth:`RakeResult.trim`: the ``(m, R)`` table itself.

    Trimming moves each weight by an amount that is not a factor of its design weight (rows
    that a replicate drops get a share of its excess, as R's rule does), so the trimmed
    weights are kept as they are; ``note`` adds the trimming.
    """

    table: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)))
    trim_detail: str = ""

    def weights(self, d: np.ndarray, rows: slice = slice(None)) -> np.ndarray:
        """The trimmed replicate weights of the raked rows ``rows`` (``d`` is not needed)."""
        return self.table[rows]

    def note(self) -> str:
        """The replicates' note, and how they were trimmed."""
        return super().note() + f"; every replicate trimmed as the weights ({self.trim_detail})"


def trim_columns(
    table: np.ndarray, lo: float, hi: float, *, strict: bool, slack: float, max_rounds: int
) -> tuple[np.ndarray, np.ndarray]:
    r"""R's ``trimWeights`` rule on every column of ``table`` (``(m, R)``) at once.

    In each column the weights outside :math:`[lo, hi]` are set to the bound and the excess
    :math:`E_r = \sum_i (w_{ir} - \operatorname{clip}(w_{ir}))` is shared equally among the
    column's weights inside (zeros included: a row that the replicate drops is inside when
    ``lo <= 0`` and takes its share, as R's rule does); ``strict`` repeats while a column has a
    weight outside (at most ``max_rounds`` rounds). Returns the trimmed table and the rounds
    each column took.

    Raises
    ------
    ValueError
        A replicate whose every weight lies outside the bounds (nothing can take the excess).
    """
    w = table.copy()
    rounds = np.zeros(w.shape[1], dtype=np.int64)
    for _ in range(max_rounds):
        outside = (w < lo - slack) | (w > hi + slack)
        cols = np.flatnonzero(outside.any(axis=0) & (strict | (rounds == 0)))
        if cols.size == 0:
            break
        out_c = outside[:, cols]
        inside = np.count_nonzero(~out_c, axis=0)
        if (inside == 0).any():
            bad = cols[inside == 0][:10] + 1
            raise ValueError(
                f"every weight of replicate(s) {bad.tolist()} lies outside [lower, upper] = "
                f"[{lo!r}, {hi!r}], so there is no weight to take the trimmed excess; widen "
                "the bounds."
            )
        block = w[:, cols]
        clipped = np.clip(block, lo, hi)
        share = (block - clipped).sum(axis=0) / inside
        w[:, cols] = clipped + np.where(out_c, 0.0, share)
        rounds[cols] += 1
    if strict:
        w = np.clip(w, lo, hi)  # the last ulps
    return w, rounds
