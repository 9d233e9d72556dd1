"""Checks of the arguments of a survey result's estimators (ratio, contrast, intervals)."""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from typing import Any

import numpy as np

__all__ = [
    "CI_OPTIONS",
    "check_ci",
    "check_contrast",
    "check_ratio_dtype",
    "raise_empty_domain",
    "raise_zero_denominator",
]

CI_OPTIONS = ("wald", "logit", "beta")


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
