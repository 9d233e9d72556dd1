r"""Linearisation variance of raked survey estimators: residuals on the raking margins.

An estimator :math:`\hat\theta = \sum_i w_i y_i` (a total) or a ratio of two (a mean) computed with
raked weights :math:`w` has the linearised form :math:`\hat\theta - \theta \approx \sum_i d_i e_i`,
where :math:`u_i` is the influence value of the unraked estimator (for a total :math:`u_i = y_i`,
for a mean :math:`u_i = (y_i - \hat\theta) / \sum_l w_l`) and :math:`e = R u` removes what the
raking already fixed:

- ``steps=None`` (raked to convergence, :math:`k = \infty`): :math:`e` is the residual of the
  design-weighted least-squares fit of :math:`u` on the indicators of every raking variable
  (the intercept is in their span). This is Deville & Särndal (1992) and exactly what R
  ``survey`` computes for ``calibrate(calfun="raking")`` (``qr.resid`` on ``sqrt(d) X``).
  R's ``rake()`` (repeated ``postStratify``) computes something else: its ``svyrecvar`` runs 10
  sweeps of ``x <- x - psw * ave(x / psw, margin)`` with ``x = w u`` and ``psw`` the weights stored
  at its last post-stratification (the raked weights, at convergence), i.e. it removes
  *unweighted* level means of :math:`u`. The two agree when the design weights are constant
  within every level of every margin (equal-probability samples such as R's ``apisrs`` and
  ``apiclus1`` checks) and differ when they vary within levels (e.g. ``apistrat``);
- ``steps=k``: :math:`e = T_0 T_1 T_2 \cdots T_k u`, :math:`T_s = I - \Pi_{v(s)}` with
  :math:`\Pi_v` the design-weighted level-mean projection of the variable adjusted at step ``s``
  and :math:`T_0` removing the overall mean (the scaling of the weights to the total): the k-step
  influence function of ``theory.md`` §2.2 [DER] -- the **last** step's projection is applied
  first. By von Neumann's alternating-projection theorem it tends to the :math:`k = \infty`
  residual as :math:`k \to \infty`.

Both cost :math:`O(n + \sum_v L_v)` memory and time: group sums by ``numpy.bincount``, no
indicator or Gram matrix. Every projection is constant within the :math:`C \le n` non-empty cells
of the crossed codes, so after one pass over the rows each of the :math:`k` steps, or each
conjugate-gradient iteration, costs :math:`O(C + \sum_v L_v)`.

The variance is then that of the total :math:`\sum_i z_i`, :math:`z_i = w_i e_i` (the g-weighted
residuals, as in R), under the sampling design: :meth:`raking.survey.design.SurveyDesign.variance`
(multi-stage, stratified, clustered, with or without a finite population correction);
:func:`design_variance` is its one-stage case.

Everything here is NumPy float64 on arrays of the rows that were raked.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import numpy as np

from raking.survey.design import SurveyDesign

__all__ = [
    "CalibrationMatrix",
    "CalibrationProjection",
    "GramInverse",
    "RakingProjection",
    "ResidualNotConverged",
    "design_variance",
]


class ResidualNotConverged(ValueError):
    r"""The least-squares solve of the converged raking residual did not reach its tolerance.

    Attributes
    ----------
    iterations : int
        Conjugate-gradient iterations done.
    relative_residual : float
        Final :math:`\lVert r \rVert / \lVert u \rVert_D` (see :meth:`RakingProjection.residual`).
    tol : float
        The tolerance it had to reach.
    """

    def __init__(
        self, message: str, *, iterations: int, relative_residual: float, tol: float
    ) -> None:
        super().__init__(message)
        self.iterations = iterations
        self.relative_residual = relative_residual
        self.tol = tol


class RakingProjection:
    r"""The residual operators of one raking design: codes, levels and design weights.

    Parameters
    ----------
    codes : sequence of numpy.ndarray of int, each of shape ``(n,)``
        Level of each raked row for each raking variable (in the order the variables were
        adjusted; a crossed margin is one variable whose levels are its cells).
    n_levels : sequence of int
        Number of levels :math:`L_v` of each variable.
    design : numpy.ndarray of float64, shape ``(n,)``
        Design weights :math:`d_i > 0` (the weights of the projections).
    tol : float
        Relative tolerance of the least-squares solve for ``steps=None`` (see :meth:`residual`).
    max_iter : int, optional
        Most conjugate-gradient iterations of that solve; default :math:`10^4 + 4 \sum_v L_v`.
        In exact arithmetic CG ends within :math:`\operatorname{rank} \le \sum_v L_v`
        iterations. Typical designs take a few (4 on the api samples, 8-12 with a variable of
        :math:`10^5` levels); the slowest, margins whose levels overlap in a
        chain (level :math:`j` of one variable meets levels :math:`j` and :math:`j + 1` of the
        other), take about :math:`\sum_v L_v` (measured: 10,635 for two variables of 5,000
        levels, 41,625 for two of 20,000).

    Notes
    -----
    Memory and time are :math:`O(n + \sum_v L_v)` (group sums by ``numpy.bincount``): no
    ``n x levels`` indicator matrix and no ``levels x levels`` Gram matrix is ever formed, so a
    variable with :math:`10^5` levels costs what one with 5 does, per row. The iterations run on
    the non-empty cells of the crossed codes (:math:`C \le n`; the residual is :math:`u` minus a
    value per cell), the rows are read once per estimate and once per convergence check.

    ``steps=None``: the fitted values :math:`X\hat\beta` of the design-weighted least squares of
    :math:`u` on the indicators :math:`X = [X_1, \dots, X_p]` of every variable are found by
    conjugate gradients on the Jacobi-scaled normal equations :math:`S X^\top D X S\,y = S
    X^\top D u`, :math:`S = \operatorname{diag}(W_l^{-1/2})`, :math:`W_l = \sum_{i \in l} d_i`
    (the weight of level :math:`l`; levels without weight get :math:`S_l = 0` and drop out).
    Jacobi scaling is exact block-diagonal preconditioning here, since the indicators of one
    variable are orthogonal. The normal matrix is singular whenever the indicator columns are
    collinear -- always with two or more variables (each sums to the intercept), and further for
    repeated variables, crossed margins that contain a main effect, or levels that occur only
    together. Started at :math:`y = 0`, the iterates stay in the range of the (symmetric) matrix,
    so CG converges to the minimum-norm solution -- the pseudo-inverse solution the former dense
    eigen-decomposition computed -- and the fitted values, which are unique, are the same.
    """

    def __init__(
        self,
        codes: Sequence[np.ndarray] | np.ndarray,
        n_levels: Sequence[int],
        design: np.ndarray,
        *,
        tol: float = 1e-12,
        max_iter: int | None = None,
    ) -> None:
        self.codes = [np.asarray(c) for c in codes]
        self.n_levels = [int(x) for x in n_levels]
        self.design = np.asarray(design, dtype=np.float64)
        self.tol = float(tol)
        self.max_iter = 10_000 + 4 * sum(self.n_levels) if max_iter is None else int(max_iter)
        self._cell, self._cell_codes = _cells(self.codes, self.n_levels)
        self._cell_weight = np.bincount(self._cell, weights=self.design)
        self._level_weight = [
            np.bincount(c, weights=self._cell_weight, minlength=size)
            for c, size in zip(self._cell_codes, self.n_levels, strict=True)
        ]
        self._offsets = np.concatenate([[0], np.cumsum(self.n_levels)]).astype(np.int64)
        weight = np.concatenate(self._level_weight)
        self._scale = np.divide(1.0, np.sqrt(weight), out=np.zeros_like(weight), where=weight > 0)

    @property
    def effective_tol(self) -> float:
        r"""The tolerance the solve must reach: :math:`\max(\text{tol}, 8 \varepsilon \sqrt n)`.

        The level sums of :math:`n` terms that measure the residual are themselves accurate only
        to about :math:`\varepsilon \sqrt n` of :math:`\lVert u \rVert_D` (:math:`\varepsilon`
        the float64 machine epsilon; measured :math:`2 \times 10^{-13}` at :math:`n = 10^7`), so
        ``tol`` is raised to that floor for very large samples (:math:`n > 3 \times 10^5` for the
        default ``tol = 1e-12``).
        """
        return max(self.tol, 8.0 * np.finfo(np.float64).eps * np.sqrt(self.design.shape[0]))

    def residual(self, u: np.ndarray, steps: int | None = None) -> np.ndarray:
        r"""The raking residual :math:`e = R u` after ``steps`` adjustments (``None``: converged).

        Parameters
        ----------
        u : numpy.ndarray of float64, shape ``(n,)``
            Influence values of the unraked estimator.
        steps : int or None
            Single-variable adjustments of the raking (cycling through the variables).

        Returns
        -------
        numpy.ndarray of float64, shape ``(n,)``

        Raises
        ------
        ResidualNotConverged
            ``steps=None`` and the solve did not reach :math:`\lVert r \rVert \le \tau\,
            \lVert u \rVert_D` (:math:`\tau` = :attr:`effective_tol`) in ``max_iter``
            iterations, where :math:`r = S X^\top D e` is the normal-equations residual of the
            returned :math:`e` (recomputed from :math:`e`, not the recursive CG estimate):
            :math:`\lVert r \rVert^2 = \sum_v \lVert \Pi_v e \rVert_D^2`, the squared
            part of :math:`e` that the margins still explain, in the units of :math:`u` times
            :math:`\sqrt{\text{weight}}`, and :math:`\lVert u \rVert_D^2 = \sum_i d_i
            u_i^2`. An SE is never computed from such an :math:`e`.
        """
        u = np.asarray(u, dtype=np.float64)
        top = float(np.max(np.abs(u))) if u.size else 0.0
        if not np.isfinite(top):  # NaN or inf in: NaN out, never a made-up residual
            return np.full_like(u, np.nan)
        if top == 0.0:
            return np.zeros_like(u)
        # R is linear: work on u / 2^m with max |u / 2^m| in [0.5, 1) (exact, no rounding), so
        # that no square or weighted sum can overflow or underflow
        exponent = np.frexp(top)[1]
        return np.ldexp(self._residual(np.ldexp(u, -exponent), steps), exponent)

    def _residual(self, u: np.ndarray, steps: int | None) -> np.ndarray:
        sums = np.bincount(self._cell, weights=self.design * u, minlength=self._cell_weight.size)
        if steps is None:
            return self._least_squares_residual(u, sums)
        # e = u - f[cell]: every projection removes values constant within the cells
        f = np.zeros_like(self._cell_weight)
        p = len(self.n_levels)
        for s in range(steps, 0, -1):  # the last step's projection acts first
            v = (s - 1) % p
            c, w = self._cell_codes[v], self._level_weight[v]
            level = np.bincount(c, weights=sums - self._cell_weight * f, minlength=w.size)
            f += np.divide(level, w, out=np.zeros_like(level), where=w > 0)[c]
        f += np.add.reduce(sums - self._cell_weight * f) / self._cell_weight.sum()
        return u - f[self._cell]

    def _blocks(self) -> zip:
        """``(cell codes, slice of the level vector)`` of each variable."""
        return zip(
            self._cell_codes,
            (slice(a, b) for a, b in itertools.pairwise(self._offsets)),
            strict=True,
        )

    def _expand(self, y: np.ndarray) -> np.ndarray:
        r""":math:`X_c S y` for a vector ``y`` over all levels: values per cell, shape ``(C,)``."""
        sy = self._scale * y
        out = np.zeros(self._cell_weight.size)
        for c, block in self._blocks():
            out += sy[block][c]
        return out

    def _collapse(self, sums: np.ndarray) -> np.ndarray:
        r""":math:`S X_c^\top s`: scaled level sums of weighted cell sums ``s``, all levels."""
        out = np.empty(self._offsets[-1])
        for (c, block), size in zip(self._blocks(), self.n_levels, strict=True):
            out[block] = np.bincount(c, weights=sums, minlength=size)
        out *= self._scale
        return out

    def _row_residual(self, e: np.ndarray) -> np.ndarray:
        r""":math:`S X^\top D e` recomputed from the rows (not the cells), all levels."""
        de = self.design * e
        out = np.empty(self._offsets[-1])
        for c, size, block in zip(
            self.codes,
            self.n_levels,
            (slice(a, b) for a, b in itertools.pairwise(self._offsets)),
            strict=True,
        ):
            out[block] = np.bincount(c, weights=de, minlength=size)
        out *= self._scale
        return out

    def _norm(self, u: np.ndarray) -> float:
        r""":math:`\lVert u \rVert_D = (\sum_i d_i u_i^2)^{1/2}`, the scale of the tolerance."""
        return float(np.sqrt(_dot(self.design * u, u)))

    def _least_squares_residual(self, u: np.ndarray, sums: np.ndarray) -> np.ndarray:
        r"""Residual of the weighted least squares of ``u`` on all indicators, by CG (see Notes).

        ``sums``: the weighted sums :math:`\sum_{i \in c} d_i u_i` of each cell. CG runs on the
        cells; each run starts from the residual recomputed from the rows of ``e``, a run ends
        when its recursive residual meets the tolerance, and ``e`` is returned only if the
        recomputed one does too (otherwise CG restarts from it, within ``max_iter`` iterations
        in all).
        """
        u_norm = self._norm(u)
        target = self.effective_tol * u_norm
        fitted = np.zeros_like(self._cell_weight)  # e = u - fitted[cell]
        e = u
        iterations = 0
        while True:
            r = self._row_residual(e)
            rr = _dot(r, r)
            if np.sqrt(rr) <= target:
                return e
            done = self._conjugate_gradients(fitted, r, rr, target, self.max_iter - iterations)
            if done == 0:  # no budget left, or no direction that still reduces the residual
                break
            iterations += done
            e = u - fitted[self._cell]
        relative = float(np.sqrt(rr) / u_norm)
        raise ResidualNotConverged(
            f"the least-squares solve of the raking residual stopped after {iterations} "
            f"conjugate-gradient iterations at a relative residual {relative:.3g}, above its "
            f"tolerance {self.effective_tol:.3g}; raise max_iter (now {self.max_iter}) or tol "
            f"(now {self.tol:.3g}) of RakingProjection.",
            iterations=iterations,
            relative_residual=relative,
            tol=self.effective_tol,
        )

    def _conjugate_gradients(
        self, fitted: np.ndarray, r: np.ndarray, rr: float, target: float, budget: int
    ) -> int:
        r"""CG on the scaled normal equations, updating the cell ``fitted`` values in place.

        Stops when :math:`\lVert r \rVert \le` ``target`` (recursive estimate), after ``budget``
        iterations, or when the curvature :math:`p^\top S X^\top D X S p` of the next direction
        is not positive (rounding: nothing left to fit). Returns the iterations done.
        """
        direction = r.copy()
        for done in range(budget):
            if np.sqrt(rr) <= target:
                return done
            step = self._expand(direction)
            q = self._collapse(self._cell_weight * step)
            curvature = _dot(direction, q)
            if not curvature > 0:
                return done
            alpha = rr / curvature
            fitted += alpha * step
            r -= alpha * q
            rr_new = _dot(r, r)
            direction *= rr_new / rr
            direction += r
            rr = rr_new
        return budget


class CalibrationMatrix:
    r"""The calibration matrix :math:`X` of :func:`raking.calibrate`, never formed.

    Its :math:`p = \sum_v L_v + q` columns are the level indicators of every categorical
    variable (variable :math:`v`'s :math:`L_v` levels in order, at ``offsets[v]``), then the
    :math:`q` numeric columns. The indicator part is constant within the :math:`C \le n`
    non-empty cells of the crossed codes (found once, as :class:`RakingProjection` does), so
    each product reads the rows once: :math:`X \beta` is one gather of a value per cell (plus
    the numeric columns), :math:`X^\top v` one ``numpy.bincount`` of ``v`` into the cells, and
    the Gram matrix :math:`X^\top \operatorname{diag}(v) X` (:math:`p \times p`) :math:`1 + q`
    of them plus :math:`q(q+1)/2` products of numeric columns; the rest works on the cells.

    Parameters
    ----------
    codes : sequence of numpy.ndarray of int, each of shape ``(n,)``
        Level of each row for each categorical variable; at least one (the intercept alone is a
        variable of one level, code 0 for every row).
    n_levels : sequence of int
        :math:`L_v` of each variable.
    numeric : numpy.ndarray of float64, shape ``(n, q)``, optional
        The numeric calibration columns.
    """

    def __init__(
        self,
        codes: Sequence[np.ndarray],
        n_levels: Sequence[int],
        numeric: np.ndarray | None = None,
    ) -> None:
        if len(codes) == 0:
            raise ValueError(
                "CalibrationMatrix needs at least one categorical variable; for the intercept "
                "alone pass codes=[numpy.zeros(n, dtype=int)], n_levels=[1]."
            )
        self.codes = [np.asarray(c) for c in codes]
        self.n_levels = [int(x) for x in n_levels]
        self.n_rows = n = self.codes[0].shape[0]
        # column-major: each numeric column is read contiguously
        self.numeric = np.asfortranarray(
            np.zeros((n, 0)) if numeric is None else np.asarray(numeric, dtype=np.float64)
        )
        self.offsets = np.concatenate([[0], np.cumsum(self.n_levels, dtype=np.int64)])
        self.n_categorical = int(self.offsets[-1])
        self.n_columns = self.n_categorical + self.numeric.shape[1]
        self._cell, cell_codes = _cells(self.codes, self.n_levels)
        self._cell_codes = [c.astype(np.intp) for c in cell_codes]
        self.n_cells = int(self._cell_codes[0].size)
        self._blocks = list(zip(self._cell_codes, self.n_levels, self.offsets[:-1], strict=True))
        self._pairs = [  # the cross-tabulation key of each pair of variables, on the cells
            ci * lj + cj
            for i, (ci, _, _) in enumerate(self._blocks)
            for cj, lj, _ in self._blocks[i + 1 :]
        ]

    def _cell_sums(self, v: np.ndarray) -> np.ndarray:
        return np.bincount(self._cell, weights=v, minlength=self.n_cells)

    def dot(self, beta: np.ndarray) -> np.ndarray:
        r""":math:`X \beta`, shape ``(n,)``."""
        per_cell = np.zeros(self.n_cells)
        for cc, size, a in self._blocks:
            per_cell += beta[a : a + size][cc]
        out = per_cell[self._cell]
        if self.numeric.shape[1]:
            # einsum, not BLAS: a threaded gemv stalls on an oversubscribed machine (see _dot)
            out += np.einsum("ij,j->i", self.numeric, beta[self.n_categorical :])
        return out

    def tdot(self, v: np.ndarray) -> np.ndarray:
        r""":math:`X^\top v`, shape ``(p,)``: level sums of ``v``, then the numeric sums."""
        out = np.empty(self.n_columns)
        sums = self._cell_sums(v)
        for cc, size, a in self._blocks:
            out[a : a + size] = np.bincount(cc, weights=sums, minlength=size)
        out[self.n_categorical :] = np.einsum("i,ij->j", v, self.numeric)
        return out

    def gram(self, v: np.ndarray) -> np.ndarray:
        r""":math:`X^\top \operatorname{diag}(v) X`, shape ``(p, p)``, symmetric."""
        p, k = self.n_columns, self.n_categorical
        out = np.zeros((p, p))
        sums = self._cell_sums(v)
        vx = self.numeric * v[:, None]
        numeric_sums = [self._cell_sums(vx[:, j]) for j in range(vx.shape[1])]
        keys = iter(self._pairs)
        for i, (ci, li, ai) in enumerate(self._blocks):
            rows = slice(ai, ai + li)
            out[rows, rows] = np.diag(np.bincount(ci, weights=sums, minlength=li))
            for _, lj, aj in self._blocks[i + 1 :]:
                cross = np.bincount(next(keys), weights=sums, minlength=li * lj).reshape(li, lj)
                out[rows, aj : aj + lj] = cross
                out[aj : aj + lj, rows] = cross.T
            for j, cell_sums in enumerate(numeric_sums):
                col = np.bincount(ci, weights=cell_sums, minlength=li)
                out[rows, k + j] = col
                out[k + j, rows] = col
        out[k:, k:] = np.einsum("ij,ik->jk", vx, self.numeric)
        return out


class GramInverse:
    r"""Pseudo-inverse of a symmetric positive semi-definite Gram matrix :math:`G`, Jacobi-scaled.

    :math:`G^+ = S V \Lambda^+ V^\top S` from the eigen-decomposition :math:`S G S = V \Lambda
    V^\top`, :math:`S = \operatorname{diag}(G_{jj}^{-1/2})` (0 for a zero column: a level
    without rows drops out, as R's ``calibrate`` drops it), eigenvalues below ``rtol`` times the
    largest set to zero (the collinear directions: every categorical variable's indicators sum
    to the intercept). For consistent right-hand sides this is the minimum-norm least-squares
    solution, as R's ``MASS::ginv`` in ``grake``.

    Attributes
    ----------
    rank : int
        Eigenvalues kept.
    """

    def __init__(self, gram: np.ndarray, *, rtol: float = 1e-12) -> None:
        diag = np.diag(gram)
        self.scale = np.divide(1.0, np.sqrt(diag), out=np.zeros_like(diag), where=diag > 0)
        values, self.vectors = np.linalg.eigh(gram * np.outer(self.scale, self.scale))
        top = float(values.max()) if values.size else 0.0
        keep = values > rtol * top
        self.inverse_values = np.where(keep, 1.0 / np.where(keep, values, 1.0), 0.0)
        self.rank = int(np.count_nonzero(keep))

    def solve(self, r: np.ndarray) -> np.ndarray:
        r""":math:`G^+ r`."""
        y = self.vectors.T @ (self.scale * r)
        return self.scale * (self.vectors @ (self.inverse_values * y))


class CalibrationProjection:
    r"""Residuals of the design-weighted least squares on a calibration matrix (dense, small p).

    For :func:`raking.calibrate` with numeric totals: :math:`e = u - X \hat\beta`,
    :math:`\hat\beta = (X^\top D X)^+ X^\top D u`, :math:`D = \operatorname{diag}(d)` the design
    weights, :math:`X` the full calibration matrix (every level indicator and every numeric
    column; the intercept is in its span). This is R ``survey``'s ``svyrecvar`` for a calibrated
    design: ``qr.resid(qr(mm * sqrt(d)), x / (g sqrt(d))) * g sqrt(d)`` with ``x = w u`` equals
    :math:`w e` -- R projects with the **design** weights :math:`d` and multiplies the residual
    by the calibrated weights :math:`w = g d`, which :class:`~raking.survey.results.RakeResult`
    does with this residual. The Gram matrix :math:`X^\top D X` (:math:`p \times p`) is formed
    and pseudo-inverted once (:class:`GramInverse`); each residual costs two passes over the rows
    (one step of iterative refinement, so that the fitted part is accurate to rounding even
    when the numeric columns are far from orthogonal to the indicators).

    Parameters
    ----------
    matrix : CalibrationMatrix
        The calibration matrix of the ``n`` calibrated rows.
    design : numpy.ndarray of float64, shape ``(n,)``
        Design weights :math:`d` (any positive scale: the residual does not depend on it).
    """

    def __init__(self, matrix: CalibrationMatrix, design: np.ndarray) -> None:
        self.matrix = matrix
        self.design = np.asarray(design, dtype=np.float64)
        self.inverse = GramInverse(matrix.gram(self.design))

    def residual(self, u: np.ndarray, steps: int | None = None) -> np.ndarray:
        r"""The calibration residual :math:`e` of influence values ``u`` (shape ``(n,)``).

        ``steps`` must be ``None`` (calibration has no finite-step form); it is accepted so that
        this class and :class:`RakingProjection` are interchangeable. NaN or infinite ``u``
        gives NaN.
        """
        if steps is not None:
            raise ValueError("a calibration residual has no step count; pass steps=None.")
        u = np.asarray(u, dtype=np.float64)
        if not np.all(np.isfinite(u)):
            return np.full_like(u, np.nan)
        e = u
        for _ in range(2):
            beta = self.inverse.solve(self.matrix.tdot(self.design * e))
            e = e - self.matrix.dot(beta)
        return e


def _cells(codes: list[np.ndarray], n_levels: list[int]) -> tuple[np.ndarray, list[np.ndarray]]:
    """The non-empty cells of the crossed codes: each row's cell, and each cell's codes.

    Every projection here is constant within a cell, so the iterations run on the ``C <= n``
    cells (a few hundred for a few small variables; about ``n`` for a variable with ``n / 2``
    levels). Mixed-radix keys, compacted before they could overflow int64.
    """
    n = codes[0].shape[0] if codes else 0
    key = np.zeros(n, dtype=np.int64)
    size = 1
    for c, levels in zip(codes, n_levels, strict=True):
        if size * max(levels, 1) >= 2**62:
            size, key = _compact(key, size)
        key = key * max(levels, 1) + c
        size *= max(levels, 1)
    n_cells, cell = _compact(key, size)
    first = np.empty(n_cells, dtype=np.intp)
    first[cell[::-1]] = np.arange(n - 1, -1, -1)  # a row of each cell
    return cell, [c[first] for c in codes]


def _compact(key: np.ndarray, size: int) -> tuple[int, np.ndarray]:
    """Number of distinct keys in ``[0, size)`` and each key's rank among them.

    By a count over the key range when it is at most ``2 n`` (O(n + size) time, at most four
    n-vectors of memory), else by sorting.
    """
    if size <= 2 * key.size + 1024:
        present = np.bincount(key, minlength=size) > 0
        rank = np.cumsum(present, dtype=np.intp)
        rank -= 1
        return int(rank[-1]) + 1, rank[key]
    unique, rank = np.unique(key, return_inverse=True)
    return unique.size, rank.reshape(-1).astype(np.intp, copy=False)


def _dot(a: np.ndarray, b: np.ndarray) -> float:
    """Inner product by an elementwise product and a pairwise sum.

    Not ``numpy.dot``: a multithreaded BLAS ``ddot`` stalls 100-fold on an oversubscribed machine
    (measured: 2 ms instead of 11 us for 10^5 levels with other processes on 2 cores).
    """
    return float(np.add.reduce(a * b))


def design_variance(
    z: np.ndarray,
    *,
    strata: np.ndarray | None = None,
    cluster: np.ndarray | None = None,
    fraction: np.ndarray | None = None,
) -> float:
    r"""Variance of the estimated total :math:`\sum_i z_i` under a one-stage design.

    .. math::

        \widehat{\operatorname{Var}} = \sum_h (1 - f_h)\, \frac{n_h}{n_h - 1}
        \sum_{c \in h} (Z_c - \bar Z_h)^2, \qquad Z_c = \sum_{i \in c} z_i,

    with :math:`n_h` the number of sampled PSUs (clusters, or rows) in stratum :math:`h` and
    :math:`f_h` its sampling fraction (0: with replacement; a stratum with :math:`1 - f_h <
    10^{-7}` contributes 0, as in R). Without strata or clusters this is
    :math:`\frac{n}{n-1}\sum_i (z_i - \bar z)^2`, R's ``svydesign(id=~1, weights=~w)``. The
    one-stage case of :meth:`raking.survey.design.SurveyDesign.variance` (multi-stage designs and
    lonely-PSU options are there).

    Parameters
    ----------
    z : numpy.ndarray of float64, shape ``(n,)``
        Weighted residuals :math:`w_i e_i` of every sampled row (0 for rows outside a domain).
    strata : numpy.ndarray of int, shape ``(n,)``, optional
        Stratum code of each row, in ``[0, H)``.
    cluster : numpy.ndarray of int, shape ``(n,)``, optional
        PSU code of each row, in ``[0, C)``, each PSU within one stratum.
    fraction : numpy.ndarray of float64, shape ``(H,)``, optional
        Sampling fraction :math:`f_h` of each stratum (the finite population correction).

    Returns
    -------
    float
        The variance (NaN if a stratum has a single PSU).
    """
    z = np.asarray(z, dtype=np.float64)
    design = SurveyDesign.one_stage(z.shape[0], strata=strata, cluster=cluster, fraction=fraction)
    return design.variance(z)
