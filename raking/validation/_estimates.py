"""Checks of the arguments of a survey result's estimators (ratio, contrast, intervals, ``na=``)."""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from typing import Any

import numpy as np

__all__ = [
    "CI_OPTIONS",
    "check_ci",
    "check_contrast",
    "check_estimate_na",
    "check_ratio_dtype",
    "raise_empty_domain",
    "raise_missing_values",
    "raise_no_complete_rows",
    "raise_zero_denominator",
]

CI_OPTIONS = ("wald", "logit", "beta")
ESTIMATE_NA_OPTIONS = ("error", "omit")
_NA_OMIT = (
    "pass na='omit' to leave those rows out (R's na.rm=TRUE: the estimate is over the other "
    "rows, a domain of the raked design; the weights are not re-raked)"
)


def check_estimate_na(na: object) -> str:
    """``na=`` of a survey result's estimates: ``"error"`` or ``"omit"``."""
    if not isinstance(na, str) or na not in ESTIMATE_NA_OPTIONS:
        raise ValueError(
            f"na must be 'error' or 'omit', got {na!r}; na='omit' leaves out the rows where an "
            "analysis column is missing (R's na.rm=TRUE, a domain of the other rows), "
            "na='error' refuses missing values."
        )
    return na


def raise_missing_values(
    columns: Sequence[Hashable], count: int, rows: Sequence[Any], what: str = "an estimate"
) -> None:
    """Missing values among the raked rows of analysis ``columns`` with ``na="error"``."""
    names = ", ".join(map(repr, columns))
    found = f"column {names} has {count} missing value(s)"
    if len(columns) > 1:
        found = f"columns {names} have missing values in {count} row(s)"
    raise ValueError(
        f"{found} among the raked rows (rows {list(rows)}); {what} needs every value with "
        f"na='error'. Fill them, {_NA_OMIT}, or rake without those rows."
    )


def raise_no_complete_rows(columns: Sequence[Hashable], by: Hashable | None, level: object) -> None:
    """``na="omit"`` left a domain (or the whole sample) without any row of positive weight."""
    names = ", ".join(map(repr, columns))
    where = "the raked rows"
    if by is not None:
        where += f" of the domain {level!r} of by={by!r}"
    raise ValueError(
        f"na='omit' leaves no row: {names} is missing on every one of {where}, so there is no "
        "estimate; estimate another column, or "
        + ("fill some of its values." if by is None else "leave that domain out (merge levels).")
    )


def check_ci(ci: object) -> str:
    """``ci=`` of ``proportion``: one of ``"wald"``, ``"logit"``, ``"beta"``."""
    if not isinstance(ci, str) or ci not in CI_OPTIONS:
        raise ValueError(
            f"ci must be one of {', '.join(map(repr, CI_OPTIONS))}, got {ci!r}; use "
            "ci='logit' or ci='beta' for an interval that stays inside [0, 1] (small "
            "proportions), 'wald' for the normal one."
        )
    return ci


def check_ratio_dtype(name: str, column: Hashable, numeric: bool, dtype: object) -> None:
    """``numerator`` / ``denominator`` of ``ratio``: a numeric (or boolean) column."""
    if not numeric:
        raise ValueError(
            f"{name}={column!r} has dtype {dtype}; ratio() needs a numeric column. Convert it "
            f"(e.g. data[{column!r}].astype(float)), or for the share of each level use "
            f"proportion({column!r})."
        )


def raise_zero_denominator(column: Hashable, domain: object | None) -> None:
    """A ratio whose denominator has weighted total 0 (in the domain ``domain``)."""
    where = "" if domain is None else f" in the domain {domain!r}"
    raise ValueError(
        f"denominator={column!r} has a weighted total of 0{where}, so the ratio is undefined; "
        "choose a denominator that is nonzero on the rows estimated (or leave that domain out)."
    )


def raise_empty_domain(by: Hashable, level: object) -> None:
    """A domain (level of ``by``) without any row of positive weight."""
    raise ValueError(
        f"by={by!r}: the domain {level!r} has no row with a positive weight, so it has no "
        "estimate; drop that level from the data (or merge it with another) before estimating "
        "by it."
    )


def check_contrast(
    weights: Mapping[Any, float], labels: Sequence[Any], has_cov: bool, table: str
) -> np.ndarray:
    """``weights`` of ``EstimateTable.contrast``: the coefficient of each label, in order."""
    if not has_cov:
        raise ValueError(
            f"contrast() needs the covariance of the estimates, but {table!r} has none (cov is "
            "None); estimate them jointly: mean(column, by=...) or mean([col1, col2])."
        )
    if not isinstance(weights, Mapping) or not weights:
        raise ValueError(
            f"weights must be a non-empty mapping label -> coefficient, got {weights!r}; e.g. "
            f"{{{labels[0]!r}: 1, {labels[-1]!r}: -1}}."
        )
    unknown = [k for k in weights if k not in labels]
    if unknown:
        raise ValueError(
            f"weights names {unknown!r}, not labels of {table!r}; the labels are {list(labels)!r}."
        )
    c = np.array([float(weights.get(lab, 0.0)) for lab in labels])
    if not np.all(np.isfinite(c)):
        raise ValueError(f"weights must be finite numbers, got {dict(weights)!r}.")
    return c
