r"""Linearisation variance of raked survey estimators: residuals on the raking margins.

An estimator :math:`\hat\theta = \sum_i w_i y_i` (a total) or a ratio of two (a mean) computed with
raked weights :math:`w` has the linearised form :math:`\hat\theta - \theta \approx \sum_i d_i e_i`,
where :math:`u_i` is the influence value of the unraked estimator (for a total :math:`u_i = y_i`,
for a mean :math:`u_i = (y_i - \hat\theta) / \sum_l w_l`) and :math:`e = R u` removes what the
raking already fixed:

- ``steps=None`` (raked to convergence, :math:`k = \infty`): :math:`e` is the residual of the
  design-weighted least-squares fit of :math:`u` on the indicators of every raking variable
  (the intercept is in their span). This is Deville & Särndal (1992) and exactly what R
  ``survey`` computes for ``calibrate(calfun="raking")`` (``qr.resid`` on ``sqrt(d) X``) and,
  to its 10 projection sweeps, for ``rake()`` when the design weights are equal within levels
  (``rake()``'s ``svyrecvar`` takes unweighted level means of ``u``);
- ``steps=k``: :math:`e = T_0 T_1 T_2 \cdots T_k u`, :math:`T_s = I - \Pi_{v(s)}` with
  :math:`\Pi_v` the design-weighted level-mean projection of the variable adjusted at step ``s``
  and :math:`T_0` removing the overall mean (the scaling of the weights to the total): the k-step
  influence function of ``theory.md`` §2.2 [DER] -- the **last** step's projection is applied
  first. By von Neumann's alternating-projection theorem it tends to the :math:`k = \infty`
  residual as :math:`k \to \infty`.

The variance is then that of the total :math:`\sum_i z_i`, :math:`z_i = w_i e_i` (the g-weighted
residuals, as in R), under the sampling design: :func:`design_variance` (with replacement, or with
a finite population correction; one stage, optionally stratified and clustered).

Everything here is NumPy float64 on arrays of the rows that were raked.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["RakingProjection", "design_variance"]


class RakingProjection:
    r"""The residual operators of one raking design: codes, levels and design weights.

    Parameters
    ----------
    codes : numpy.ndarray of int, shape ``(p, n)``
        Level of each raked row for each raking variable (in the order the variables were
        adjusted).
    n_levels : sequence of int
        Number of levels of each variable.
    design : numpy.ndarray of float64, shape ``(n,)``
        Design weights :math:`d_i > 0` (the weights of the projections).

    Notes
    -----
    The least-squares fit uses the normal equations in the indicator space: the Gram matrix
    :math:`X^\top D X` (size :math:`\sum_v L_v`, built from pairwise weighted cross-tabulations of
    the codes, never an ``n x levels`` matrix) is factorised once, by a symmetric
    eigen-decomposition after Jacobi scaling; its null space (one direction per extra variable,
    from the shared intercept, plus any collinear levels) is dropped, which leaves the fitted
    values unique.
    """

    def __init__(self, codes: np.ndarray, n_levels: Sequence[int], design: np.ndarray) -> None:
        self.codes = np.asarray(codes)
        self.n_levels = [int(x) for x in n_levels]
        self.design = np.asarray(design, dtype=np.float64)
        self._offsets = np.concatenate([[0], np.cumsum(self.n_levels)]).astype(np.int64)
        self._level_weight = [
            np.bincount(c, weights=self.design, minlength=size)
            for c, size in zip(self.codes, self.n_levels, strict=True)
        ]
        self._solver: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None

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
        """
        u = np.asarray(u, dtype=np.float64)
        if steps is None:
            return u - self._fitted(u)
        e = u.copy()
        p = len(self.n_levels)
        for s in range(steps, 0, -1):  # the last step's projection acts first
            e -= self._level_mean(e, (s - 1) % p)
        return e - np.dot(self.design, e) / self.design.sum()

    def _level_mean(self, e: np.ndarray, v: int) -> np.ndarray:
        c = self.codes[v]
        sums = np.bincount(c, weights=self.design * e, minlength=self.n_levels[v])
        w = self._level_weight[v]
        means = np.divide(sums, w, out=np.zeros_like(sums), where=w > 0)
        return means[c]

    def _fitted(self, u: np.ndarray) -> np.ndarray:
        keep, scale, inverse = self._factorised()
        rhs = np.concatenate(
            [
                np.bincount(c, weights=self.design * u, minlength=size)
                for c, size in zip(self.codes, self.n_levels, strict=True)
            ]
        )
        beta = np.zeros(self._offsets[-1])
        beta[keep] = scale * (inverse @ (scale * rhs[keep]))
        fitted = np.zeros_like(u)
        for v, c in enumerate(self.codes):
            fitted += beta[self._offsets[v] : self._offsets[v + 1]][c]
        return fitted

    def _factorised(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Pseudo-inverse of the Jacobi-scaled Gram matrix on the levels with weight."""
        if self._solver is None:
            gram = self._gram()
            diag = np.diag(gram)
            keep = np.flatnonzero(diag > 0)
            scale = 1.0 / np.sqrt(diag[keep])
            scaled = gram[np.ix_(keep, keep)] * np.outer(scale, scale)
            values, vectors = np.linalg.eigh(scaled)
            rank = values > values.max() * scaled.shape[0] * 1e-12
            inverse = (vectors[:, rank] / values[rank]) @ vectors[:, rank].T
            self._solver = (keep, scale, inverse)
        return self._solver

    def _gram(self) -> np.ndarray:
        r""":math:`X^\top D X` from weighted cross-tabulations of each pair of variables."""
        size = int(self._offsets[-1])
        gram = np.zeros((size, size))
        p = len(self.n_levels)
        for v in range(p):
            sv = slice(self._offsets[v], self._offsets[v + 1])
            gram[sv, sv] = np.diag(self._level_weight[v])
            for u in range(v + 1, p):
                su = slice(self._offsets[u], self._offsets[u + 1])
                pair = self.codes[v].astype(np.int64) * self.n_levels[u] + self.codes[u]
                block = np.bincount(
                    pair, weights=self.design, minlength=self.n_levels[v] * self.n_levels[u]
                ).reshape(self.n_levels[v], self.n_levels[u])
                gram[sv, su] = block
                gram[su, sv] = block.T
        return gram


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
    :math:`f_h` its sampling fraction (0: with replacement). Without strata or clusters this is
    :math:`\frac{n}{n-1}\sum_i (z_i - \bar z)^2`, R's ``svydesign(id=~1, weights=~w)``.

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
    n = z.shape[0]
    if cluster is None:
        totals = z
        psu_stratum = np.zeros(n, dtype=np.int64) if strata is None else strata
    else:
        totals = np.bincount(cluster, weights=z)
        psu_stratum = np.zeros(totals.size, dtype=np.int64)
        if strata is not None:
            psu_stratum[cluster] = strata
    n_psu = np.bincount(psu_stratum).astype(np.float64)
    mean = np.bincount(psu_stratum, weights=totals) / np.maximum(n_psu, 1)
    ss = np.bincount(psu_stratum, weights=(totals - mean[psu_stratum]) ** 2)
    with np.errstate(divide="ignore", invalid="ignore"):
        per_stratum = n_psu / (n_psu - 1) * ss
    per_stratum = np.where(n_psu > 0, per_stratum, 0.0)
    if fraction is not None:
        per_stratum = per_stratum * (1.0 - np.asarray(fraction, dtype=np.float64))
    return float(per_stratum.sum())
