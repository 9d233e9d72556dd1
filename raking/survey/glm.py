r"""Generalised linear models on a raked design: :meth:`raking.survey.results.RakeResult.glm`.

The coefficients solve the design-weighted score equations

.. math::

    \sum_i w_i\, x_i\, (y_i - \mu_i)\, \frac{\mu'(\eta_i)}{V(\mu_i)} = 0, \qquad
    \mu_i = g^{-1}(\eta_i),\ \eta_i = x_i^\top \beta,

with :math:`w_i` the raked weights, found by iteratively reweighted least squares (IRLS, the
canonical links: identity, logit, log). Their covariance is R ``survey``'s ``svyglm`` sandwich
(``svy.varcoef``): the influence of row :math:`i` on :math:`\hat\beta` is
:math:`z_i = w_i\, x_i^\top (y_i - \mu_i) \mu'_i / V_i\, A^{-1}`, :math:`A = X^\top
\operatorname{diag}(w \mu'^2 / V) X` (the information, R's ``cov.unscaled``), and its
covariance is that of the :math:`p` estimated totals :math:`\sum_i z_i` under the raking: each
column :math:`z_{\cdot j} / w` goes through the raking's residual operator (as for a mean:
:attr:`RakeResult._projection`, R's ``svyrecvar`` with the calibration's ``postStrata``) and
the design's covariance of totals (:meth:`raking.survey.design.SurveyDesign.covariance`).
With replicate weights, the model is refitted with every replicate's re-raked weights (one
batched IRLS over the replicates, started at :math:`\hat\beta`: ``(R, p, p)`` solves, no Python
loop over replicates) and :math:`\widehat V = s \sum_r s_r (\hat\beta_r - c)(\hat\beta_r -
c)^\top`, R's ``svyglm`` on a replicate design.

``t`` statistics, p-values and intervals use a t distribution on R's residual degrees of
freedom, ``degf + 1 - p`` (``degf``: first-stage PSUs minus strata; with replicates the rank of
the replicate weights minus 1, as R keeps it: :func:`_replicate_df`), as R's ``summary.svyglm``
and ``confint.svyglm``. Gaussian, binomial and Poisson are R's ``gaussian()``,
``quasibinomial()`` and ``quasipoisson()``: the sandwich needs no dispersion, so the quasi and the
plain families give the same coefficients and SEs (a binomial response may be a share in [0, 1],
a Poisson one any count >= 0).

Formulas are read by ``formulaic`` (imported when a model is fitted): ``"api00 ~ ell +
stype"``, treatment coding with the first level (sorted) as reference, as R; names with dots
inside expressions need backticks: ``"I(`comp.imp` == 'Yes') ~ ell"``.
"""

from __future__ import annotations

import html
import re
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from raking.survey.linearization import ResidualNotConverged
from raking.survey.quantiles import rank
from raking.survey.ratios import replicate_deviations
from raking.validation import raise_missing_values

if TYPE_CHECKING:
    from raking.survey.results import RakeResult

__all__ = ["FAMILIES", "GLMResult", "fit_glm"]

_MAX_ITER = 100
_ROW_BLOCK = 16_384  # rows per block of the batched Gram matrices
_REPLICATE_CHUNK = 64  # replicates per batched IRLS: its (B, m) work arrays stay B = 64 wide
_TOL = 1e-12  # |dev - dev_old| <= tol (|dev| + 0.1), then one more step (R's rule, tighter)


@dataclass(frozen=True)
class _Family:
    r"""A family with its canonical link (:math:`\mu'(\eta) = V(\mu)`): link, inverse, variance."""

    name: str
    r_name: str
    link: Callable[[np.ndarray], np.ndarray]
    linkinv: Callable[[np.ndarray], np.ndarray]
    variance: Callable[[np.ndarray], np.ndarray]
    start: Callable[[np.ndarray], np.ndarray]
    unit_deviance: Callable[[np.ndarray, np.ndarray], np.ndarray]


def _logistic(eta: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * eta))  # no overflow warnings


def _ylogy(y: np.ndarray, mu: np.ndarray) -> np.ndarray:
    r""":math:`y \log(y / \mu)`, 0 where :math:`y = 0`."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(y > 0, y * np.log(np.where(y > 0, y, 1.0) / mu), 0.0)


def _clip01(mu: np.ndarray) -> np.ndarray:
    eps = np.finfo(np.float64).eps
    return np.clip(mu, eps, 1.0 - eps)


FAMILIES: dict[str, _Family] = {
    "gaussian": _Family(
        "gaussian",
        "gaussian()",
        link=lambda mu: mu,
        linkinv=lambda eta: eta,
        variance=np.ones_like,
        start=lambda y: y,
        unit_deviance=lambda y, mu: (y - mu) ** 2,
    ),
    "binomial": _Family(
        "binomial",
        "quasibinomial()",
        link=lambda mu: np.log(mu / (1.0 - mu)),
        linkinv=lambda eta: _clip01(_logistic(eta)),
        variance=lambda mu: mu * (1.0 - mu),
        start=lambda y: (y + 0.5) / 2.0,
        unit_deviance=lambda y, mu: 2.0 * (_ylogy(y, mu) + _ylogy(1.0 - y, 1.0 - mu)),
    ),
    "poisson": _Family(
        "poisson",
        "quasipoisson()",
        link=np.log,
        linkinv=lambda eta: np.maximum(np.exp(eta), np.finfo(np.float64).eps),
        variance=lambda mu: mu,
        start=lambda y: y + 0.1,
        unit_deviance=lambda y, mu: 2.0 * (_ylogy(y, mu) - (y - mu)),
    ),
}
"""The families of :meth:`RakeResult.glm` (canonical links), by name."""


@dataclass(frozen=True, eq=False)
class GLMResult:
    r"""A GLM fitted on a raked design, with statsmodels' attribute names.

    Attributes
    ----------
    params : pandas.Series
        The coefficients :math:`\hat\beta`, by the model matrix's column names (formulaic's:
        ``Intercept``, ``stype[T.H]``, ...).
    bse : pandas.Series
        Their standard errors (square roots of the diagonal of :meth:`cov_params`).
    tvalues, pvalues : pandas.Series
        ``params / bse`` and the two-sided p-value on a t distribution with ``df_resid``
        degrees of freedom (NaN when ``df_resid <= 0``).
    nobs : int
        Rows in the fit (raked rows, positive weight).
    df_resid : float
        R's ``degf + 1 - p``.
    df_design : float
        The design's degrees of freedom (R's ``degf``).
    family, formula : str
        As given.
    iterations : int
        IRLS iterations of the full-sample fit.
    se_method : str
        How the covariance was computed.
    notes : tuple of str
        The design, the intervals and anything unusual.
    """

    params: pd.Series
    bse: pd.Series
    tvalues: pd.Series
    pvalues: pd.Series
    nobs: int
    df_resid: float
    df_design: float
    family: str
    formula: str
    iterations: int
    se_method: str
    notes: tuple[str, ...]
    _cov: np.ndarray

    def cov_params(self) -> pd.DataFrame:
        """The design-based covariance matrix of the coefficients (squared units of ``params``)."""
        names = list(self.params.index)
        return pd.DataFrame(self._cov.copy(), index=names, columns=names)

    def conf_int(self, alpha: float = 0.05) -> pd.DataFrame:
        r"""Wald intervals :math:`\hat\beta \pm t_{1 - \alpha/2,\ \text{df\_resid}}\, \text{SE}`.

        R's ``confint.svyglm``; columns ``0`` (lower) and ``1`` (upper), as statsmodels. NaN
        when ``df_resid <= 0``.
        """
        if not 0.0 < alpha < 1.0:
            raise ValueError(
                f"alpha must be in (0, 1) (e.g. 0.05 for 95% intervals); got {alpha!r}."
            )
        q = _t_quantile(1.0 - alpha / 2.0, self.df_resid)
        lo = self.params - q * self.bse
        hi = self.params + q * self.bse
        return pd.DataFrame({0: lo, 1: hi})

    def to_frame(self) -> pd.DataFrame:
        """One row per coefficient: estimate, se, t, p, lower and upper of the 95% interval."""
        ci = self.conf_int()
        return pd.DataFrame(
            {
                "estimate": self.params,
                "se": self.bse,
                "t": self.tvalues,
                "p": self.pvalues,
                "lower": ci[0],
                "upper": ci[1],
            }
        )

    def summary(self) -> str:
        """A coefficient table with the family, the fit, the SE method and the design notes."""
        table = self.to_frame().rename(
            columns={
                "estimate": "coef",
                "se": "std err",
                "p": "P>|t|",
                "lower": "[0.025",
                "upper": "0.975]",
            }
        )
        lines = [
            f"Survey GLM: {self.formula}  (family {self.family}; "
            f"{FAMILIES[self.family].r_name} of R svyglm)",
            f"{self.nobs} rows, {self.params.size} coefficients, IRLS {self.iterations} "
            f"iterations; design df {self.df_design:g}, residual df {self.df_resid:g}",
            table.to_string(float_format="{:.6g}".format),
            f"SE: {self.se_method}",
            *(f"note: {n}" for n in self.notes),
        ]
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.summary()

    def _repr_html_(self) -> str:
        return f"<pre>{html.escape(self.summary())}</pre>"


def fit_glm(result: RakeResult, formula: str, family: str, na: str = "error") -> GLMResult:
    """Fit ``formula`` with the raked weights of ``result`` (see the module docstring).

    ``na="omit"``: the rows where a column of the formula is missing are left out as R's
    ``na.omit`` does in ``svyglm``: the fit is over the other rows, whose influence values
    are those of a domain (0 elsewhere, the design unchanged); the degrees of freedom are
    those of the rows kept (linearisation) or of the whole design (replicates, as R).
    """
    if family not in FAMILIES:
        raise ValueError(
            f"family={family!r} is not a family of glm(); use one of {sorted(FAMILIES)} "
            "(R svyglm's gaussian(), quasibinomial(), quasipoisson())."
        )
    fam = FAMILIES[family]
    s = result._design
    names, x, y, kept = _model(result, formula, na)
    _check_response(y, fam, formula)
    _check_rank(x, names, formula)
    w = s.final[kept]
    beta, iterations = _irls(x, y, w[None, :], fam, None)
    b = beta[0]
    eta = x @ b
    mu = fam.linkinv(eta)
    var = fam.variance(mu)  # = mu'(eta): the links are canonical
    info = x.T @ ((w * var)[:, None] * x)
    a_inv = np.linalg.inv(info)
    notes = list(result._notes())
    notes[0] = notes[0].removesuffix("; normal 95% CI")
    omitted = int(kept.size - np.count_nonzero(kept))
    if omitted:
        notes.append(
            f"na='omit': {omitted} raked row(s) with a missing value in the formula left out "
            "(R svyglm's na.action = na.omit: the design subset to the complete rows, a "
            "domain; the weights are not re-raked)"
        )
    p = b.size
    if s.replicates is not None:
        cov, df_design, replicate_notes = _replicate_cov(result, x, y, fam, b, kept)
        notes += replicate_notes
        se_method = (
            f"replicate: the model refitted with each replicate's re-raked weights; "
            f"{s.replicates.note().removeprefix('replicate: ')}; R svyglm on the replicate design"
        )
    else:
        influence = np.zeros((kept.size, p))  # z / w (m, p): 0 on the rows left out
        influence[kept] = (x * (y - mu)[:, None]) @ a_inv  # mu'/V = 1: canonical links
        cov, lin_notes = _linearised_cov(result, influence)
        notes += lin_notes
        df_design = float(_design_df(result, s.raked_pos[kept] if omitted else None))
        se_method = (
            "design-based sandwich (R svyglm's svy.varcoef): influence functions "
            "w x (y - mu) mu'/V A^-1 through the raking's residual operator, then the design's "
            "covariance of totals; " + result._se_method()
        )
    df_resid = df_design + 1.0 - p
    notes.append(
        f"t statistics, p-values and intervals on df = degf + 1 - p = {df_resid:g} (R summary."
        "svyglm, confint.svyglm)"
    )
    bse = np.sqrt(np.diag(cov))
    with np.errstate(divide="ignore", invalid="ignore"):
        t = b / bse
    return GLMResult(
        params=pd.Series(b, index=names, name="coef"),
        bse=pd.Series(bse, index=names, name="bse"),
        tvalues=pd.Series(t, index=names, name="t"),
        pvalues=pd.Series(_t_two_sided(t, df_resid), index=names, name="p"),
        nobs=int(np.count_nonzero(w > 0)),
        df_resid=df_resid,
        df_design=df_design,
        family=family,
        formula=formula,
        iterations=iterations,
        se_method=se_method,
        notes=tuple(notes),
        _cov=cov,
    )


# ------------------------------------------------------------------------------ the model


def _model(
    result: RakeResult, formula: str, na: str
) -> tuple[list[str], np.ndarray, np.ndarray, np.ndarray]:
    """Column names, model matrix ``(m', p)``, response ``(m',)`` and the raked rows kept.

    A raked row is left out (``na="omit"``; ``"error"`` refuses it) where a data column named
    in the formula is missing -- as R, whose missing values propagate through expressions
    such as ``I(api00 > 700)`` where pandas' comparisons give False -- or where the model
    matrix or the response is NaN.
    """
    from formulaic import model_matrix
    from formulaic.errors import FormulaicError

    if not isinstance(formula, str) or "~" not in formula:
        raise ValueError(
            f"formula={formula!r} needs a response and predictors as text, e.g. "
            '"api00 ~ ell + meals".'
        )
    s = result._design
    frame = result._data.iloc[s.sample_pos[s.raked_pos]]
    labels = frame.index
    frame = frame.reset_index(drop=True)  # model_matrix's index: positions among raked rows
    try:
        lhs, rhs = model_matrix(formula, frame, na_action="drop")
    except (FormulaicError, NameError, SyntaxError) as exc:
        columns = ", ".join(repr(c) for c in list(frame.columns)[:40])
        raise ValueError(
            f"formula={formula!r} could not be evaluated on the data: {exc}. Name existing "
            f"columns (data has {columns}{', ...' if frame.shape[1] > 40 else ''}); inside "
            "expressions, quote names with dots in backticks: I(`comp.imp` == 'Yes')."
        ) from exc
    if lhs.shape[1] != 1:
        raise ValueError(
            f"formula={formula!r} has a response of {lhs.shape[1]} columns "
            f"({list(lhs.columns)}); give one numeric response, e.g. I(column == 'level') "
            "for a binary one."
        )
    used = _formula_columns(formula, list(frame.columns))
    missing = frame[used].isna().any(axis=1).to_numpy() if used else np.zeros(len(frame), bool)
    kept = ~missing
    kept[~np.isin(np.arange(len(frame)), np.asarray(rhs.index))] = False
    if not kept.all() and na == "error":
        named = [c for c in used if frame[c].isna().any()] or [formula]
        raise_missing_values(
            named, int(np.count_nonzero(~kept)), labels[~kept][:10], f"formula={formula!r}"
        )
    if not kept.any():
        raise ValueError(
            f"formula={formula!r}: na='omit' leaves no row (every raked row misses a value of "
            f"{used}); fill some values or use other columns."
        )
    x = np.asarray(rhs.loc[np.flatnonzero(kept)], dtype=np.float64)
    y = np.asarray(lhs.loc[np.flatnonzero(kept)], dtype=np.float64)[:, 0]
    return [str(c) for c in rhs.columns], x, y, kept


def _formula_columns(formula: str, columns: Sequence[Hashable]) -> list[Hashable]:
    """The data columns named in ``formula`` (as whole names, or quoted in backticks)."""
    out = []
    for column in columns:
        if not isinstance(column, str):
            continue
        pattern = rf"(?<![\w.]){re.escape(column)}(?![\w.])"
        if re.search(pattern, formula):
            out.append(column)
    return out


def _check_response(y: np.ndarray, fam: _Family, formula: str) -> None:
    if not np.all(np.isfinite(y)):
        raise ValueError(f"formula={formula!r}: the response has non-finite values; fill them.")
    if fam.name == "binomial" and (np.any(y < 0) or np.any(y > 1)):
        raise ValueError(
            f"formula={formula!r} with family='binomial' needs a response in [0, 1] (got values "
            f"from {y.min():.6g} to {y.max():.6g}); use a 0/1 indicator such as "
            "I(column == 'level'), or a share."
        )
    if fam.name == "poisson" and np.any(y < 0):
        raise ValueError(
            f"formula={formula!r} with family='poisson' needs a response >= 0 (got a minimum "
            f"of {y.min():.6g}); use a count, or family='gaussian'."
        )


def _check_rank(x: np.ndarray, names: list[str], formula: str) -> None:
    """Refuse a model matrix without full column rank, naming the collinear columns."""
    if x.shape[0] < x.shape[1]:
        raise ValueError(
            f"formula={formula!r} has {x.shape[1]} coefficients but only {x.shape[0]} raked "
            "rows; use fewer predictors."
        )
    norms = np.linalg.norm(x, axis=0)
    scaled = x / np.where(norms > 0, norms, 1.0)
    _, sv, vt = np.linalg.svd(scaled, full_matrices=False)
    tol = sv[0] * max(x.shape) * np.finfo(np.float64).eps * 1e3 if sv.size else 0.0
    null = vt[sv <= tol]
    if null.size or np.any(norms == 0):
        weight = np.abs(null).max(axis=0, initial=0.0)
        involved = [n for n, v, c in zip(names, weight, norms, strict=True) if v > 1e-6 or c == 0]
        raise ValueError(
            f"formula={formula!r} gives a singular model matrix (rank {int(np.sum(sv > tol))} "
            f"of {x.shape[1]} columns): {involved} are collinear on the raked "
            "rows; drop one of them (or merge levels that occur only together)."
        )


# ------------------------------------------------------------------------------ fitting


def _irls(
    x: np.ndarray, y: np.ndarray, w: np.ndarray, fam: _Family, start: np.ndarray | None
) -> tuple[np.ndarray, int]:
    r"""IRLS for ``B`` weight vectors at once: ``w`` of shape ``(B, m)``, returns ``(B, p)``.

    Each step solves :math:`(X^\top W_b X) \beta_b = X^\top W_b z_b` for every ``b`` (batched
    ``(B, p, p)`` solves), :math:`W = w \mu'^2 / V`, :math:`z = \eta + (y - \mu) / \mu'`; it
    stops one step after every fit's deviance changed by at most ``1e-12 (|dev| + 0.1)``
    (R's rule with a tighter epsilon), at most 100 steps. A fit whose normal equations are
    singular (a replicate without the rows of some level) is NaN.
    """
    batch = w.shape[0]
    if start is None:
        eta = np.broadcast_to(fam.link(fam.start(y)), w.shape).copy()
    else:
        eta = start @ x.T
    rows = np.triu_indices(x.shape[1])
    dev_old = np.full(batch, np.inf)
    beta = np.full((batch, x.shape[1]), np.nan)
    done = np.zeros(batch, dtype=bool)
    dead = np.zeros(batch, dtype=bool)
    mu = fam.linkinv(eta)
    for it in range(1, _MAX_ITER + 1):
        var = fam.variance(mu)  # = mu'(eta) (canonical links): W = w mu'^2 / V = w V
        ww = w * var
        gram = _gram(ww, x, rows)
        rhs = np.einsum("bm,mp->bp", ww * eta + w * (y - mu), x)  # X^T W z
        dead |= np.linalg.matrix_rank(gram) < x.shape[1]
        beta = np.full_like(rhs, np.nan)
        beta[~dead] = np.linalg.solve(gram[~dead], rhs[~dead][..., None])[..., 0]
        eta = beta @ x.T
        eta[dead] = 0.0  # finite placeholders; their beta stays NaN
        mu = fam.linkinv(eta)
        if np.all(done | dead):
            return beta, it
        dev = np.einsum("bm,bm->b", w, fam.unit_deviance(y, mu))
        done |= np.abs(dev - dev_old) <= _TOL * (np.abs(dev) + 0.1)
        dev_old = dev
    return beta, _MAX_ITER


def _gram(ww: np.ndarray, x: np.ndarray, upper: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    r""":math:`X^\top \operatorname{diag}(w_b) X` for every row ``b`` of ``ww`` (``(B, m)``).

    One product of ``ww`` with the products :math:`x_{ij} x_{ik}` (``j <= k``, ``p (p + 1) / 2``
    columns), formed in blocks of rows, then mirrored: ``(B, p, p)``.
    """
    p = x.shape[1]
    flat = np.zeros((ww.shape[0], upper[0].size))
    for start in range(0, x.shape[0], _ROW_BLOCK):
        block = slice(start, start + _ROW_BLOCK)
        xb = x[block]
        flat += np.einsum("bm,mk->bk", ww[:, block], xb[:, upper[0]] * xb[:, upper[1]])
    gram = np.zeros((ww.shape[0], p, p))
    gram[:, upper[0], upper[1]] = flat
    gram[:, upper[1], upper[0]] = flat
    return gram


# ------------------------------------------------------------------------------ covariance


def _linearised_cov(result: RakeResult, influence: np.ndarray) -> tuple[np.ndarray, list[str]]:
    r"""Covariance of :math:`\hat\beta` from the influence values :math:`z / w` (``(m, p)``)."""
    s = result._design
    p = influence.shape[1]
    if result.stalled and s.steps is None:
        return np.full((p, p), np.nan), [
            "SEs are NaN: raking stopped because the margins are unreachable together, so "
            "there are no converged weights to linearise at; make the targets consistent"
        ]
    ratio, base = 1.0, s.final
    if s.calibrated is not None:  # after trim(): z = w_cal R((w / w_cal) u), as for a mean
        base = s.calibrated
        ratio = np.divide(s.final, base, out=np.zeros_like(base), where=base != 0)
    z = np.zeros((s.sample_pos.size, p))
    for j in range(p):
        try:
            e = result._projection.residual(ratio * influence[:, j], s.steps)
        except ResidualNotConverged as exc:
            return np.full((p, p), np.nan), [
                f"SEs are NaN: the least-squares solve of the SE stopped at relative residual "
                f"{exc.relative_residual:.3g} > {exc.tol:.3g}; the margins are nearly "
                "collinear: merge levels that occur only together"
            ]
        z[s.raked_pos, j] = base * e
    cov = result._sampling.covariance(z)
    return cov, list(result._lonely_psu_notes(float(np.sqrt(cov[0, 0]))))


def _replicate_cov(
    result: RakeResult,
    x: np.ndarray,
    y: np.ndarray,
    fam: _Family,
    beta: np.ndarray,
    kept: np.ndarray,
) -> tuple[np.ndarray, float, list[str]]:
    r""":math:`s \sum_r s_r (\hat\beta_r - c)(\hat\beta_r - c)^\top` of the refitted replicates.

    Each replicate is refitted on the raked rows ``kept`` (R drops the incomplete rows' weights).
    Also the design's degrees of freedom (:func:`_replicate_df`, of the whole design as R's
    ``svyglm`` computes it before dropping rows).
    """
    s = result._design
    reps = s.replicates
    assert reps is not None
    weights = reps.weights(s.design)  # (m, R)
    df = float(_replicate_df(result, weights))
    thetas = _replicate_fits(x, y, weights, kept, fam, beta)
    notes: list[str] = []
    singular = int(np.isnan(thetas).any(axis=1).sum())
    if singular:
        notes.append(
            f"{singular} of {thetas.shape[0]} replicates have a singular model matrix (no "
            "estimate) and were left out of the variance, as R's svrVar"
        )
    found = replicate_deviations(thetas.T, beta, reps.design)
    if found is None:
        return np.full((beta.size, beta.size), np.nan), df, notes
    dev, factors = found
    return (dev * factors) @ dev.T, df, notes


def _replicate_fits(
    x: np.ndarray,
    y: np.ndarray,
    weights: np.ndarray,
    kept: np.ndarray,
    fam: _Family,
    beta: np.ndarray,
) -> np.ndarray:
    r"""The replicates' coefficients ``(R, p)``: :func:`_irls` on chunks of replicates.

    ``weights``: ``(m, R)`` replicate weights of the raked rows, of which the rows ``kept`` are
    fitted. The batched IRLS holds several ``(B, m)`` work arrays (:math:`\eta`, :math:`\mu`,
    the working weights); fitting :data:`_REPLICATE_CHUNK` replicates at a time bounds them at
    ``_REPLICATE_CHUNK x m`` floats whatever ``R``. Each fit is started at :math:`\hat\beta`
    and iterated to the same tolerance, so chunks change the numbers only at rounding level
    (a fit may take one more or fewer step in another batch).
    """
    n_reps = weights.shape[1]
    out = np.empty((n_reps, beta.size))
    for start in range(0, n_reps, _REPLICATE_CHUNK):
        chunk = np.ascontiguousarray(weights[kept, start : start + _REPLICATE_CHUNK].T)
        out[start : start + chunk.shape[0]] = _irls(x, y, chunk, fam, beta[None, :])[0]
    return out


def _design_df(result: RakeResult, rows: np.ndarray | None = None) -> int:
    """R's ``degf``: first-stage PSUs (rows without clusters) minus first-stage strata.

    ``rows``: only the PSUs and strata of these sampled rows (R's ``degf`` of the design
    subset to the complete rows, ``na="omit"``).
    """
    stage = result._sampling.stages[0]
    if rows is None:
        return int(stage.stratum.size - np.count_nonzero(stage.n_units))
    units = rows if stage.unit is None else stage.unit[rows]
    return int(np.unique(units).size - np.unique(stage.stratum[units]).size)


def _replicate_df(result: RakeResult, weights: np.ndarray) -> int:
    """R's ``degf`` of the raked replicate design: a QR rank (tolerance 1e-5) minus 1.

    R keeps ``as.svrepdesign``'s ``degf`` (the rank of the replicate design weights, here of
    the multipliers) through ``calibrate(calfun = "raking" | "logit")`` and a bounded linear
    calibration, but an unbounded linear calibration (``regcalibrate``) recomputes it from the
    calibrated weights ``weights`` (``(m, R)``), whose rank the calibration lowers by up to its
    numeric constraints. (R's ``rake()`` recomputes it too; :func:`raking.rake` follows
    ``calibrate(calfun = "raking")``.)
    """
    s = result._design
    if s.calibration == "linear" and result.bounds is None:
        return rank(weights) - 1
    assert s.replicates is not None
    return rank(s.replicates.design.multipliers) - 1


def _t_quantile(q: float, df: float) -> float:
    from scipy.stats import t as student_t

    return float(student_t.ppf(q, df)) if df > 0 else np.nan


def _t_two_sided(t: np.ndarray, df: float) -> np.ndarray:
    from scipy.stats import t as student_t

    if df <= 0:
        return np.full_like(t, np.nan)
    return 2.0 * student_t.sf(np.abs(t), df)
