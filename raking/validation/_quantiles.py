"""Checks of survey quantile inputs (``RakeResult.quantile``).

Plain Python and NumPy only. Every message names the argument, what it received and what to
change.
"""

from __future__ import annotations

import numbers
from collections.abc import Hashable

from raking.validation._scalars import check_option

QUANTILE_RULES = (
    "math",
    "school",
    "shahvaish",
    "hf1",
    "hf2",
    "hf3",
    "hf4",
    "hf5",
    "hf6",
    "hf7",
    "hf8",
    "hf9",
)
QUANTILE_RULE_HINT = (
    "'math' (R survey >= 4.1's default: the smallest value whose weighted CDF reaches q), "
    "'school' (the midpoint of the two values where the CDF is exactly q), 'shahvaish' "
    "(Shah & Vaish 2006), 'hf1'..'hf9' (Hyndman & Fan's types, weighted as R survey does)."
)


def check_quantile_levels(q: object, *, name: str = "q") -> tuple[float, ...]:
    """``q`` as a non-empty tuple of probabilities in ``[0, 1]`` (a number or a sequence)."""
    values = (q,) if isinstance(q, numbers.Real) else q
    try:
        items = list(values)  # type: ignore[call-overload]
    except TypeError:
        items = []
    if not items or not all(isinstance(v, numbers.Real) and not isinstance(v, bool) for v in items):
        raise ValueError(
            f"{name} must be a probability or a non-empty sequence of them, e.g. 0.5 or "
            f"[0.1, 0.5, 0.9]; got {q!r}."
        )
    out = tuple(float(v) for v in items)
    bad = [v for v in out if not 0.0 <= v <= 1.0]
    if bad:
        raise ValueError(
            f"{name} must lie in [0, 1] (a quantile of 0.5 is the median), got {bad[0]!r}; "
            "divide percentiles by 100."
        )
    return out


def check_quantile_rule(qrule: object, *, name: str = "qrule") -> str:
    """One of :data:`QUANTILE_RULES` (R ``svyquantile``'s ``qrule`` names)."""
    return check_option(qrule, options=QUANTILE_RULES, name=name, hint=QUANTILE_RULE_HINT)


def check_alpha(alpha: object, *, name: str = "alpha") -> float:
    """A level ``alpha`` in ``(0, 1)`` (the interval covers ``1 - alpha``)."""
    if (
        isinstance(alpha, bool)
        or not isinstance(alpha, numbers.Real)
        or not 0.0 < float(alpha) < 1.0
    ):
        raise ValueError(
            f"{name} must be in (0, 1): the interval covers 1 - {name} (0.05 for 95%); got "
            f"{alpha!r}."
        )
    return float(alpha)


def raise_non_numeric_quantile_column(
    column: Hashable, dtype: object, *, name: str = "column"
) -> None:
    """The analysis column of a quantile must hold numbers (or booleans)."""
    raise ValueError(
        f"{name} {column!r} has dtype {dtype}; a quantile needs numbers. Convert it "
        f"(pandas.to_numeric(data[{column!r}])) or, for the share of each level, use "
        f"proportion({column!r})."
    )


def raise_on_empty_domain(by: Hashable, level: object, *, name: str = "by") -> None:
    """A domain of ``by`` without a raked row (weight > 0) has no quantile."""
    raise ValueError(
        f"{name}={by!r}: the domain {level!r} has no rows with a positive weight, so it has no "
        f"quantile; drop those rows or merge the level with another before estimating by {by!r}."
    )
