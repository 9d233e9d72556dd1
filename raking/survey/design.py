r"""The sampling design of a survey sample and the variance of an estimated total under it.

A design has :math:`K \ge 1` stages, outermost first. At stage :math:`k` the sampled units of
stage :math:`k - 1` (the whole sample for :math:`k = 1`) are split into strata, and in each stratum
:math:`h` a sample of :math:`n_h` units of stage :math:`k` was drawn from :math:`N_h`, with
sampling fraction :math:`f_h = n_h / N_h` (0 without a finite population correction: sampling
with replacement). :class:`SurveyDesign` holds the stages as integer codes of the sampled rows
and computes, for the weighted residuals :math:`z_i` of an estimate,

.. math::

    \widehat V(z) = \sum_{k=1}^{K} \sum_{h \in \text{strata of stage } k} \Big(\prod_{j < k}
    f_{a_j(h)}\Big)\, (1 - f_h)\, \frac{n_h}{n_h - 1} \sum_{c \in h} (Z_c - \bar Z_h)^2,
    \qquad Z_c = \sum_{i \in c} z_i,\ \bar Z_h = \frac{1}{n_h} \sum_{c \in h} Z_c,

where :math:`a_j(h)` is the stratum of stage :math:`j` above :math:`h`. The first stage's term is
the ultimate-cluster variance; a later stage contributes only through the sampling fractions of
the stages above it (none without an fpc: then :math:`\widehat V` is the with-replacement
ultimate-cluster variance whatever :math:`K`). This is R ``survey``'s ``svyrecvar`` /
``multistage`` / ``onestage`` / ``onestrat`` (survey 4.1-1) term by term, including:

- a stratum whose :math:`1 - f_h < 10^{-7}` (sampled whole: certainty units) contributes 0 at its
  stage, and its units' later stages count in full (:math:`f_h = 1`);
- a stratum with a single sampled unit (:math:`n_h = 1`, not a certainty stratum) follows
  ``lonely_psu`` (R's ``options(survey.lonely.psu=)``): ``"error"`` (R's ``"fail"``; here the
  front end refuses it before raking, and :meth:`SurveyDesign.variance` gives NaN),
  ``"certainty"`` and ``"remove"`` (it contributes 0: identical in R's formula),
  ``"adjust"`` (its :math:`(1 - f_h) Z_c^2`, not centred), ``"average"`` (it is left out and the
  sum over the other strata of the same stage and parent unit is multiplied by
  :math:`H / H_\text{ok}`, the number of strata over those with two units or more; NaN when none
  has).

One difference from R, on purpose: R evaluates the later stages whenever an fpc is given, even
below a first stage with an infinite population (``fpc = Inf``), whose factor :math:`f = 0` then
multiplies them; here terms with a zero factor are not evaluated, so a lonely unit there is
neither an error nor (with ``"average"``) a NaN.

Labels are read as R's ``svydesign`` reads them: the units of stage :math:`k \ge 2` within their
unit of stage :math:`k - 1`, the strata of stage :math:`k \ge 2` within their unit of stage
:math:`k - 1`; ``nest=True`` also reads the units of each stage within their stratum (R's
``nest=TRUE``), otherwise a unit found in two strata of its stage is an error (R's check at the
first stage). Everything here is NumPy on the codes of the sampled rows; the front end
(:func:`raking.survey.frontend.rake`) reads the columns.
"""

from __future__ import annotations

import functools
from collections.abc import Hashable, Sequence
from dataclasses import dataclass

import numpy as np

from raking.validation import (
    raise_fpc_not_constant,
    raise_fpc_out_of_range,
    raise_not_nested,
    raise_single_unit,
)

__all__ = ["CERTAINTY_TOL", "Coded", "Stage", "SurveyDesign"]

CERTAINTY_TOL = 1e-7
"""A stratum with :math:`1 - f_h` below this is sampled whole (R ``onestrat``'s threshold)."""


@dataclass(frozen=True)
class Coded:
    """The integer codes of one design column over the sampled rows, with their labels.

    Attributes
    ----------
    column : hashable
        The column's label in the DataFrame (for messages).
    codes : numpy.ndarray of int, shape ``(s,)``
        Code of each sampled row, in ``[0, len(labels))``.
    labels : sequence
        The label of each code.
    """

    column: Hashable
    codes: np.ndarray
    labels: Sequence[object]


@dataclass(frozen=True, eq=False)
class Stage:
    """One stage of the design: the units of the sampled rows and their strata.

    Attributes
    ----------
    unit : numpy.ndarray of intp, shape ``(s,)``, or None
        Unit of each sampled row at this stage, in ``[0, U)``, numbered across the whole sample
        (a unit of a later stage is one unit of its parent); ``None``: the rows are the units.
    stratum : numpy.ndarray of intp, shape ``(U,)``
        Stratum of each unit, in ``[0, S)``, numbered across the whole sample.
    n_units : numpy.ndarray of int64, shape ``(S,)``
        Sampled units :math:`n_h` of each stratum.
    fraction : numpy.ndarray of float64, shape ``(S,)``, or None
        Sampling fraction :math:`f_h` of each stratum; ``None``: no fpc (with replacement).
    parent : numpy.ndarray of intp, shape ``(S,)``
        Unit of the previous stage holding each stratum (zeros at the first stage).
    """

    unit: np.ndarray | None
    stratum: np.ndarray
    n_units: np.ndarray
    fraction: np.ndarray | None
    parent: np.ndarray


@dataclass(frozen=True, eq=False)
class SurveyDesign:
    """A multi-stage stratified cluster design; :meth:`variance` of a total under it.

    Attributes
    ----------
    stages : tuple of Stage
        Outermost first.
    lonely_psu : {"error", "certainty", "remove", "adjust", "average"}
        What a stratum with a single sampled unit contributes (module docstring).
    """

    stages: tuple[Stage, ...]
    lonely_psu: str = "error"

    @classmethod
    def one_stage(
        cls,
        n: int,
        *,
        strata: np.ndarray | None = None,
        cluster: np.ndarray | None = None,
        fraction: np.ndarray | None = None,
        lonely_psu: str = "error",
    ) -> SurveyDesign:
        """A one-stage design from the codes of ``n`` rows (each PSU within one stratum).

        Parameters
        ----------
        n : int
            Sampled rows.
        strata : numpy.ndarray of int, shape ``(n,)``, optional
            Stratum of each row, in ``[0, H)``; default one stratum.
        cluster : numpy.ndarray of int, shape ``(n,)``, optional
            PSU of each row, in ``[0, C)``; default: the rows are the PSUs.
        fraction : numpy.ndarray of float64, shape ``(H,)``, optional
            Sampling fraction of each stratum.
        lonely_psu : str
            See the module docstring.
        """
        h = np.zeros(n, dtype=np.intp) if strata is None else np.asarray(strata, dtype=np.intp)
        unit = None if cluster is None else np.asarray(cluster, dtype=np.intp)
        of_unit = h if unit is None else h[_first_rows(unit, int(unit.max(initial=-1)) + 1)]
        size = max(int(h.max(initial=-1)) + 1, 0 if fraction is None else len(fraction))
        stage = Stage(
            unit=unit,
            stratum=of_unit,
            n_units=np.bincount(of_unit, minlength=size),
            fraction=None if fraction is None else np.asarray(fraction, dtype=np.float64),
            parent=np.zeros(size, dtype=np.intp),
        )
        return cls((stage,), lonely_psu)

    @classmethod
    def from_codes(
        cls,
        n: int,
        *,
        strata: Sequence[Coded | None],
        cluster: Sequence[Coded | None],
        fpc: Sequence[tuple[Hashable, np.ndarray] | None],
        lonely_psu: str = "error",
        nest: bool = False,
    ) -> SurveyDesign:
        r"""The design of ``n`` sampled rows from the coded columns of each stage.

        Parameters
        ----------
        n : int
            Sampled rows.
        strata, cluster : sequence of Coded or None
            One entry per stage, outermost first (as many as stages). ``cluster[0]`` may be
            ``None`` in a one-stage design (the rows are the PSUs); ``strata[k]`` ``None``: the
            stage is unstratified (within its parent unit).
        fpc : sequence of (column, values) or None
            Per stage: the column label and its float64 values over the sampled rows (a count
            :math:`N_h > 1`, or the fraction :math:`f_h \le 1`, constant within each stratum
            of the stage), or ``None`` (with replacement).
        lonely_psu : str
            See the module docstring; ``"error"`` raises here, naming the stratum, when a
            stratum that the variance would use has a single unit (not when no design is
            given: a one-row sample without ``strata``/``cluster`` gets NaN SEs).
        nest : bool
            Read the units of each stage within their stratum (R's ``nest=TRUE``); otherwise a
            unit in two strata is an error.

        Raises
        ------
        ValueError
            A unit in two strata (``nest=False``), an fpc that varies within a stratum or is
            below the stratum's sampled units, a lonely stratum with ``lonely_psu="error"``.
        """
        stages: list[Stage] = []
        firsts: list[np.ndarray] = []  # a row of each stratum, per stage (for messages)
        parent_row = np.zeros(n, dtype=np.intp)
        for k, (s_col, c_col, f_col) in enumerate(zip(strata, cluster, fpc, strict=True)):
            label = np.zeros(n, dtype=np.intp) if s_col is None else s_col.codes
            stratum_row = label if k == 0 else _combine(parent_row, label)
            n_strata = int(stratum_row.max(initial=-1)) + 1
            if c_col is None:
                unit_row = None
                of_unit = stratum_row
            else:
                unit_row = _combine(stratum_row if nest else parent_row, c_col.codes)
                of_unit = _unit_strata(unit_row, stratum_row, k, c_col, s_col, nest)
            first = _first_rows(stratum_row, n_strata)
            firsts.append(first)
            stage = Stage(
                unit=unit_row,
                stratum=of_unit,
                n_units=np.bincount(of_unit, minlength=n_strata),
                fraction=None,
                parent=parent_row[first],
            )
            if f_col is not None:
                where = _Where(k, first, s_col, cluster[k - 1] if k else None)
                fraction = _fractions(stage, stratum_row, first, f_col, where)
                stage = Stage(stage.unit, stage.stratum, stage.n_units, fraction, stage.parent)
            stages.append(stage)
            if unit_row is not None:
                parent_row = unit_row
        design = cls(tuple(stages), lonely_psu)
        given = any(c is not None for c in cluster) or any(s is not None for s in strata)
        if lonely_psu == "error" and given:
            design._raise_on_lonely(strata, cluster, firsts)
        return design

    @functools.cached_property
    def _terms(self) -> tuple[_Terms, ...]:
        r"""The factors of each stratum's sum of squares, per stage evaluated.

        :math:`m_h (1 - f_h) n_h / (n_h - 1)` with :math:`m_h` the product of the fractions
        above, times :math:`H / H_\text{ok}` of its parent unit for ``"average"``; lonely
        strata: 0 (certainty, remove, average), :math:`m_h (1 - f_h)` (adjust, uncentred) or NaN
        (error). The tuple ends before a stage whose factors are all 0 (below a stage sampled
        with replacement), and after the stage whose units are the rows.
        """
        out: list[_Terms] = []
        above = np.ones(1)  # m of each unit of the previous stage (one "unit" above stage 1)
        for stage in self.stages:
            m = above[stage.parent]
            if not m.any():
                break
            n = stage.n_units.astype(np.float64)
            c = np.ones_like(n) if stage.fraction is None else 1.0 - stage.fraction
            certain = c < CERTAINTY_TOL
            lonely = (stage.n_units == 1) & ~certain & (m > 0)
            with np.errstate(divide="ignore", invalid="ignore"):
                coef = np.where(stage.n_units > 1, c * n / (n - 1), 0.0)
            coef[certain] = 0.0
            if self.lonely_psu == "adjust":
                coef[lonely] = c[lonely]
            elif self.lonely_psu == "error":
                coef[lonely] = np.nan
            elif self.lonely_psu == "average":
                coef *= _average_factor(stage.parent, lonely, stage.n_units > 0)
            uncentred = lonely if self.lonely_psu == "adjust" and lonely.any() else None
            out.append(_Terms(np.where(m > 0, m * coef, 0.0), uncentred, lonely))
            if stage.unit is None:
                break
            f = np.zeros_like(n) if stage.fraction is None else stage.fraction
            above = (m * f)[stage.stratum]
        return tuple(out)

    def variance(self, z: np.ndarray) -> float:
        r"""Estimated variance of the total :math:`\sum_i z_i` (module docstring's formula).

        Parameters
        ----------
        z : numpy.ndarray of float64, shape ``(s,)``
            Weighted residuals :math:`w_i e_i` of every sampled row (0 outside a domain), in
            the units of the estimate.

        Returns
        -------
        float
            In squared units of the estimate; NaN for a lonely stratum under ``"error"`` or
            ``"average"`` without a stratum to average, or NaN in ``z``.
        """
        z = np.asarray(z, dtype=np.float64)
        total = 0.0
        for stage, terms in zip(self.stages, self._terms, strict=False):
            size = stage.stratum.shape[0]
            x = z if stage.unit is None else np.bincount(stage.unit, weights=z, minlength=size)
            h = terms.factor.size
            sums = np.bincount(stage.stratum, weights=x, minlength=h)
            with np.errstate(divide="ignore", invalid="ignore"):
                mean = sums / stage.n_units
            if terms.uncentred is not None:
                mean[terms.uncentred] = 0.0
            dev = x - mean[stage.stratum]
            ss = np.bincount(stage.stratum, weights=dev * dev, minlength=h)
            total += float(np.add.reduce(terms.factor * ss))
        return total

    def covariance(self, z: np.ndarray) -> np.ndarray:
        r"""Estimated covariance of the ``p`` totals :math:`\sum_i z_{ij}` (for several estimates).

        The module docstring's formula with :math:`(Z_c - \bar Z_h)(Z_c - \bar Z_h)^\top` in
        place of the square; its diagonal is :meth:`variance` of each column.

        Parameters
        ----------
        z : numpy.ndarray of float64, shape ``(s, p)``
            Weighted residuals of ``p`` estimates for every sampled row.

        Returns
        -------
        numpy.ndarray of float64, shape ``(p, p)``
            In the products of the estimates' units; NaN where :meth:`variance` gives NaN.
        """
        z = np.asarray(z, dtype=np.float64)
        p = z.shape[1]
        total = np.zeros((p, p))
        for stage, terms in zip(self.stages, self._terms, strict=False):
            size = stage.stratum.shape[0]
            h = terms.factor.size
            if stage.unit is None:
                x = z
            else:
                x = np.stack(
                    [np.bincount(stage.unit, weights=z[:, j], minlength=size) for j in range(p)],
                    axis=1,
                )
            sums = np.stack(
                [np.bincount(stage.stratum, weights=x[:, j], minlength=h) for j in range(p)],
                axis=1,
            )
            with np.errstate(divide="ignore", invalid="ignore"):
                mean = sums / stage.n_units[:, None]
            if terms.uncentred is not None:
                mean[terms.uncentred] = 0.0
            dev = x - mean[stage.stratum]
            # sum_h factor_h sum_{c in h} dev_c dev_c^T = sum_c factor_{h(c)} dev_c dev_c^T
            total += (dev * terms.factor[stage.stratum][:, None]).T @ dev
        return total

    @property
    def lonely_strata(self) -> tuple[tuple[int, int], ...]:
        """``(stage, count)``, stage 1-based: strata with one sampled unit that the SEs use.

        Certainty strata (:math:`f_h = 1`) and strata below a stage sampled with replacement
        are not counted: the variance does not need their units.
        """
        return tuple(
            (k + 1, int(np.count_nonzero(t.lonely)))
            for k, t in enumerate(self._terms)
            if t.lonely.any()
        )

    def lonely_psu_notes(self, se: float, *, n_rows: int) -> tuple[str, ...]:
        """What the SE did with strata of a single PSU (``lonely_psu=``), or why it is NaN.

        The variance of a total needs two PSUs per stratum (the factor :math:`n / (n - 1)`). A
        sample of ``n_rows <= 1`` without a design gets a NaN SE, as R ``survey`` with
        ``options(survey.lonely.psu = "fail")``; the other ``lonely_psu`` options are said in a
        note, with why the SE is NaN if it is. Empty with ``lonely_psu="error"`` (such strata
        were refused up front).
        """
        if n_rows <= 1 and np.isnan(se):
            return (
                "SE is NaN: the sample has a single row (one PSU), whose variance cannot be "
                "estimated (n - 1 = 0); rake a sample of at least two rows",
            )
        if not self.lonely_strata or self.lonely_psu == "error":
            return ()
        where = ", ".join(f"{count} at stage {stage}" for stage, count in self.lonely_strata)
        what = {
            "certainty": "contribute 0 (as sampled with certainty)",
            "remove": "contribute 0 (removed from the variance)",
            "adjust": "are measured from 0, not from their stratum mean",
            "average": "get the average variance of the other strata of their stage and unit",
        }[self.lonely_psu]
        note = (
            f"strata with a single sampled unit (PSU at stage 1; {where}) {what}: "
            f"lonely_psu={self.lonely_psu!r}"
        )
        if np.isnan(se):
            note += (
                "; SE is NaN: every stratum of a stage within some unit has a single PSU, so "
                "there is no variance to average (R gives NA too); use another lonely_psu"
            )
        return (note,)

    def _raise_on_lonely(
        self, strata: Sequence[Coded | None], cluster: Sequence[Coded | None], firsts: list
    ) -> None:
        """Raise, naming the first stratum with one unit that the variance would use."""
        for k, terms in enumerate(self._terms):
            bad = np.flatnonzero(terms.lonely)
            if not bad.size:
                continue
            row = firsts[k][bad[0]]
            s_col, c_col = strata[k], cluster[k]
            parent = None
            if k:
                above = cluster[k - 1]
                assert above is not None  # stages after the first have units above them
                label = _label(above.labels[above.codes[row]])
                kind = "PSU" if k == 1 else "unit"
                parent = f"{kind} {label} (of column {above.column!r})"
                outer = strata[k - 1]
                if outer is not None:
                    parent += f" in stratum {_label(outer.labels[outer.codes[row]])}"
            raise_single_unit(
                stage=k + 1,
                stratum=None if s_col is None else s_col.labels[s_col.codes[row]],
                stratified=s_col is not None,
                cluster=None if c_col is None else c_col.column,
                parent=parent,
            )


@dataclass(frozen=True)
class _Terms:
    """What :meth:`SurveyDesign.variance` needs of one stage, per stratum."""

    factor: np.ndarray  # (S,) factor of the stratum's sum of squares
    uncentred: np.ndarray | None  # (S,) lonely strata measured from 0 ("adjust"); None: none
    lonely: np.ndarray  # (S,) strata with one unit that the variance uses


@dataclass(frozen=True)
class _Where:
    """How to name a stratum of stage ``k`` (0-based) in a message: by a row of it."""

    k: int
    first: np.ndarray  # (S,) a row of each stratum
    strata: Coded | None
    parent: Coded | None

    def __call__(self, h: int) -> str:
        row = self.first[h]
        parts = []
        if self.strata is not None:
            parts.append(f"stratum {_label(self.strata.labels[self.strata.codes[row]])}")
        if self.parent is not None:
            unit = _label(self.parent.labels[self.parent.codes[row]])
            parts.append(f"{'within ' if parts else ''}unit {unit} of {self.parent.column!r}")
        return " ".join(parts) if parts else "the sample"


def _label(value: object) -> str:
    return repr(value.item() if isinstance(value, np.generic) else value)


def _combine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Codes in ``[0, G)`` of the distinct pairs ``(a_i, b_i)`` of non-negative codes.

    In the order of the pairs; by a count over the key range when it is at most ``2 n`` (O(n)),
    else by sorting.
    """
    width = int(np.max(b, initial=0)) + 1
    key = np.asarray(a, dtype=np.int64) * width + b
    size = (int(np.max(a, initial=0)) + 1) * width
    if size <= 2 * key.size + 1024:
        rank = np.cumsum(np.bincount(key, minlength=size) > 0, dtype=np.intp) - 1
        return rank[key]
    return np.unique(key, return_inverse=True)[1].reshape(-1).astype(np.intp, copy=False)


def _first_rows(codes: np.ndarray, size: int) -> np.ndarray:
    """A row (the first) of each code in ``[0, size)``."""
    first = np.zeros(size, dtype=np.intp)
    first[codes[::-1]] = np.arange(codes.size - 1, -1, -1)
    return first


def _unit_strata(
    unit_row: np.ndarray,
    stratum_row: np.ndarray,
    k: int,
    c_col: Coded,
    s_col: Coded | None,
    nest: bool,
) -> np.ndarray:
    """The stratum of each unit; a unit in two strata is an error (``nest=False``)."""
    n_units = int(unit_row.max(initial=-1)) + 1
    of_unit = stratum_row[_first_rows(unit_row, n_units)]
    if not nest:
        split = np.flatnonzero(of_unit[unit_row] != stratum_row)
        if split.size:
            row = split[0]
            other = _first_rows(unit_row, n_units)[unit_row[row]]
            names = (None, None) if s_col is None else (s_col.codes[other], s_col.codes[row])
            raise_not_nested(
                stage=k + 1,
                argument="cluster",
                column=c_col.column,
                unit=c_col.labels[c_col.codes[row]],
                strata=tuple(  # type: ignore[arg-type]
                    None if s_col is None else s_col.labels[i] for i in names
                ),
            )
    return of_unit


def _fractions(
    stage: Stage,
    stratum_row: np.ndarray,
    first: np.ndarray,
    fpc: tuple[Hashable, np.ndarray],
    where: _Where,
) -> np.ndarray:
    """The sampling fraction of each stratum from the fpc values of its rows."""
    column, values = fpc
    value = values[first]
    varies = np.flatnonzero(values != value[stratum_row])
    if varies.size:
        h = stratum_row[varies[0]]
        raise_fpc_not_constant(
            stage=where.k + 1,
            column=column,
            where=where(h),
            values=(float(value[h]), float(values[varies[0]])),
        )
    with np.errstate(divide="ignore", invalid="ignore"):
        fraction = np.where(value <= 1, value, stage.n_units / value)
    bad = np.flatnonzero(~((fraction >= 0) & (fraction <= 1)))
    if bad.size:
        h = bad[0]
        raise_fpc_out_of_range(
            stage=where.k + 1,
            column=column,
            where=where(h),
            value=float(value[h]),
            n_units=int(stage.n_units[h]),
        )
    return fraction


def _average_factor(parent: np.ndarray, lonely: np.ndarray, present: np.ndarray) -> np.ndarray:
    r"""Per stratum, :math:`H / H_\text{ok}` of its parent unit, 0 for a lonely stratum.

    :math:`H` counts the ``present`` strata (with sampled units) of the parent unit,
    :math:`H_\text{ok}` those of them that are not ``lonely``. NaN for every stratum of a parent
    unit whose strata are all lonely (R: ``0 * H / 0``).
    """
    size = int(parent.max(initial=-1)) + 1
    n_strata = np.bincount(parent, weights=present.astype(np.float64), minlength=size)
    n_ok = np.bincount(parent, weights=(present & ~lonely).astype(np.float64), minlength=size)
    ratio = np.divide(n_strata, n_ok, out=np.full(size, np.nan), where=n_ok > 0)[parent]
    return np.where(lonely & ~np.isnan(ratio), 0.0, ratio)
