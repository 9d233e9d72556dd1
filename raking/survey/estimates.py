"""Estimates of a survey result: :class:`SurveyEstimate`, and :class:`EstimateTable` of them.

A :class:`SurveyEstimate` is an :class:`~raking.results.Estimate` with the design effect of the
estimate (R ``svymean(..., deff=TRUE)``, :func:`raking.survey.intervals.srs_variances`) and the
interval rule of a proportion (:func:`raking.survey.intervals.proportion_interval`). An
:class:`EstimateTable` holds one per domain, level or column, with their covariance matrix
``cov`` when they were estimated jointly, and :meth:`EstimateTable.contrast` for a linear
combination of them (R ``svycontrast``).
"""

from __future__ import annotations

import functools
import html
import math
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from raking.results import Estimate
from raking.survey.intervals import proportion_interval
from raking.validation import check_contrast

__all__ = ["EstimateTable", "SurveyEstimate"]

_PRINTED_COV = 12  # largest table whose covariance matrix the summary prints


@dataclass(frozen=True, slots=True)
class SurveyEstimate(Estimate):
    r"""An :class:`~raking.results.Estimate` of a survey result, with its design effect.

    Attributes
    ----------
    deff : float
        Variance over the variance of the same estimate under simple random sampling of as
        many rows **without** replacement (R ``svymean(..., deff=TRUE)``); not the weighting
        design effect ``RakeResult.deff`` (``1 + CV(w)^2``). NaN where not defined.
    deff_replace : float
        The same against SRS **with** replacement (R ``deff="replace"``).
    ci_method : {"wald", "logit", "beta"}
        The rule of :meth:`confint` (``"logit"``, ``"beta"``: proportions, R ``svyciprop``).
    df : float
        Degrees of freedom of the design (PSUs minus strata; of the domain for a domain; set by
        ``proportion(ci="logit" | "beta")``), for the ``t`` quantiles of those intervals.
    rows : int
        Rows of the design (``"beta"``'s ``n``, as R's ``nrow(design)``).
    logit_se : float
        SE of :math:`\operatorname{logit} \hat p` for ``"logit"``: from the replicates' logits
        on a replicate design (R's ``svyglm`` there); NaN: the delta method ``se / (p (1 - p))``.
    """

    deff: float = math.nan
    deff_replace: float = math.nan
    ci_method: str = "wald"
    df: float = math.nan
    rows: int = 0
    logit_se: float = math.nan

    def confint(self, level: float = 0.95) -> tuple[float, float]:
        """The interval of ``ci_method`` at ``level`` (normal ``estimate ± z se`` for "wald")."""
        if self.ci_method == "wald":
            return Estimate.confint(self, level)
        if not 0 < level < 1:
            raise ValueError(f"level must be in (0, 1), got {level!r}; e.g. 0.95.")
        return proportion_interval(
            self.estimate, self.se, self.ci_method, level, self.df, self.rows, self.logit_se
        )

    def summary(self) -> str:
        """As :meth:`Estimate.summary`, with the interval rule and the design effects."""
        text = Estimate.summary(self)
        if self.ci_method != "wald":
            text = text.replace("95% CI:", f"95% CI ({self.ci_method}, df {self.df:g}):", 1)
        first, rest = text.split("\n", 1)
        return (
            f"{first}\ndesign effect: {self.deff:.4g} (vs SRS without replacement), "
            f"{self.deff_replace:.4g} (with replacement)\n{rest}"
        )

    def __str__(self) -> str:
        return self.summary()

    def to_dict(self) -> dict[str, float | int | str | bool | None]:
        """:meth:`Estimate.to_dict` with ``deff``, ``deff_replace`` and ``ci_method``."""
        out = Estimate.to_dict(self)
        out.update(deff=self.deff, deff_replace=self.deff_replace, ci_method=self.ci_method)
        return out

    def to_frame(self) -> pd.DataFrame:
        """One row: estimate, SE, CI, n, deff, deff_replace (as :meth:`EstimateTable.to_frame`)."""
        lo, hi = self.ci
        return pd.DataFrame(
            {
                "estimate": [self.estimate],
                "se": [self.se],
                "ci_low": [lo],
                "ci_high": [hi],
                "n": [self.n],
                "deff": [self.deff],
                "deff_replace": [self.deff_replace],
            }
        )


@dataclass(frozen=True)
class EstimateTable:
    """Estimates for several domains or levels, each an :class:`~raking.results.Estimate`.

    Attributes
    ----------
    name : str
        What was estimated (e.g. ``"mean of api00 by stype"``).
    labels : tuple
        One label per estimate (a level of ``by``, or of the column for proportions; tuples
        ``(domain, level)`` for proportions by domain).
    estimates : tuple of Estimate
    index_name : hashable
        Name of the labels (the ``by`` column, or the pair of columns).
    cov : numpy.ndarray, shape ``(len, len)``, or None
        Covariance matrix of the estimates, in the order of ``labels`` (``mean([a, b])``,
        ``mean(y, by=...)``; R ``vcov`` of ``svymean(~a+b)`` or ``svyby(..., covmat=TRUE)``);
        its diagonal is ``se ** 2``. ``None`` where the estimates were not made jointly.
        Computed on first access (a table's SEs need only its diagonal; the matrix of ``K``
        domains costs ``K`` more residual solves and :math:`O(K^2)` memory).
    """

    name: str
    labels: tuple[Any, ...]
    estimates: tuple[Estimate, ...]
    index_name: Any
    _cov: np.ndarray | Callable[[], np.ndarray] | None = field(
        default=None, compare=False, repr=False
    )

    @functools.cached_property
    def cov(self) -> np.ndarray | None:
        """The covariance matrix of the estimates (class docstring), or None."""
        return self._cov() if callable(self._cov) else self._cov

    def contrast(self, weights: Mapping[Any, float], *, name: str | None = None) -> SurveyEstimate:
        r"""The linear combination :math:`\sum_j c_j \hat\theta_j` with its SE (R ``svycontrast``).

        :math:`SE = \sqrt{c^\top V c}` with :math:`V` = ``cov``; labels left out have weight 0.

        Parameters
        ----------
        weights : mapping
            Label -> coefficient, e.g. ``{"E": 1, "H": -1}`` for the difference of two domains.
        name : str, optional
            How the result is named in its notes (default: the combination written out).

        Raises
        ------
        ValueError
            No ``cov`` (estimates not made jointly), a label not in the table, or no weights.
        """
        c = check_contrast(weights, self.labels, self._cov is not None, self.name)
        estimate = float(np.dot(c, self.estimate.to_numpy()))
        se = math.sqrt(max(float(c @ self.cov @ c), 0.0))  # type: ignore[operator]
        used = [e for e, cj in zip(self.estimates, c, strict=True) if cj != 0]
        what = name or " ".join(
            f"{cj:+g} [{lab!r}]" for lab, cj in zip(self.labels, c, strict=True) if cj != 0
        )
        notes = tuple(dict.fromkeys(n for e in used for n in e.notes))
        return SurveyEstimate(
            estimate=estimate,
            se=se,
            se_method=used[0].se_method,
            n=max(e.n for e in used),
            steps=used[0].steps,
            converged=all(e.converged for e in used),
            marginal_error=used[0].marginal_error,
            notes=(
                f"contrast {what} of {self.name}: SE sqrt(c' V c) from the joint covariance",
                *notes,
            ),
        )

    def _index(self) -> pd.Index:
        if self.labels and isinstance(self.labels[0], tuple):
            return pd.MultiIndex.from_tuples(self.labels, names=list(self.index_name))
        return pd.Index(self.labels, name=self.index_name)

    @property
    def estimate(self) -> pd.Series:
        """The estimates, indexed by label."""
        return pd.Series([e.estimate for e in self.estimates], index=self._index())

    @property
    def se(self) -> pd.Series:
        """The standard errors, indexed by label."""
        return pd.Series([e.se for e in self.estimates], index=self._index())

    @property
    def ci(self) -> pd.DataFrame:
        """95% normal confidence intervals (columns ``lower``, ``upper``)."""
        return self.confint(0.95)

    def confint(self, level: float = 0.95) -> pd.DataFrame:
        """Normal confidence intervals at ``level``."""
        bounds = [e.confint(level) for e in self.estimates]
        return pd.DataFrame(bounds, index=self._index(), columns=["lower", "upper"])

    def __getitem__(self, label: Any) -> Estimate:
        return self.estimates[self.labels.index(label)]

    def __len__(self) -> int:
        return len(self.estimates)

    def __iter__(self) -> Iterator[Any]:
        return iter(self.labels)

    @property
    def deff(self) -> pd.Series:
        """Design effect of each estimate (vs SRS without replacement; R ``deff=TRUE``)."""
        return pd.Series([getattr(e, "deff", np.nan) for e in self.estimates], index=self._index())

    @property
    def deff_replace(self) -> pd.Series:
        """Design effect of each estimate vs SRS with replacement (R ``deff="replace"``)."""
        values = [getattr(e, "deff_replace", np.nan) for e in self.estimates]
        return pd.Series(values, index=self._index())

    def to_frame(self, *, deff: bool = False) -> pd.DataFrame:
        """Estimate, SE, CI and n per label; ``deff=True`` adds ``deff`` and ``deff_replace``."""
        frame = pd.DataFrame({"estimate": self.estimate, "se": self.se})
        frame[["ci_low", "ci_high"]] = self.ci.to_numpy()
        frame["n"] = [e.n for e in self.estimates]
        if deff:
            frame["deff"] = self.deff
            frame["deff_replace"] = self.deff_replace
        return frame

    def summary(self) -> str:
        """The table, the SE method and the notes of every estimate (each note once).

        A note that holds for some labels only (an SE that could not be computed) names them.
        """
        first = self.estimates[0]
        survey = all(isinstance(e, SurveyEstimate) for e in self.estimates)
        frame = self.to_frame(deff=survey)
        lines = [self.name, frame.to_string(float_format=lambda x: f"{x:.6g}")]
        lines.append(f"SE method: {first.se_method}")
        methods = {getattr(e, "ci_method", "wald") for e in self.estimates}
        if methods != {"wald"}:
            lines.append(f"CI: {', '.join(sorted(methods))} (R svyciprop), t on the design's df")
        if self._cov is not None and len(self.labels) > _PRINTED_COV:
            lines.append(
                f"covariance of the estimates: a {len(self.labels)} x "
                f"{len(self.labels)} matrix in .cov (printed up to {_PRINTED_COV})"
            )
        elif self._cov is not None:
            lines.append("covariance of the estimates (.cov):")
            lines.append(
                pd.DataFrame(self.cov, index=self._index(), columns=self._index()).to_string(
                    float_format=lambda x: f"{x:.6g}"
                )
            )
        notes = self._notes()
        lines += [f"  [{i}] {note}" for i, note in enumerate(notes, start=1)]
        return "\n".join(lines)

    def _notes(self) -> list[str]:
        """Each distinct note once, in order; one not common to all estimates names its labels."""
        where: dict[str, list[Any]] = {}
        for label, estimate in zip(self.labels, self.estimates, strict=True):
            for note in estimate.notes:
                where.setdefault(note, []).append(label)
        return [
            note if len(labels) == len(self.labels) else f"{_shown(labels)}: {note}"
            for note, labels in where.items()
        ]

    def __str__(self) -> str:
        return self.summary()

    def _repr_html_(self) -> str:
        return f"<pre>{html.escape(self.summary())}</pre>"


def _shown(labels: list[Any], most: int = 5) -> str:
    """The first ``most`` labels, and how many more."""
    text = ", ".join(repr(lv) for lv in labels[:most])
    return text if len(labels) <= most else f"{text} and {len(labels) - most} more"
