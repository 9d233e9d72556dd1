"""Checks of the replicate-weight arguments of :func:`raking.rake` (``replicates=`` and friends)."""

from __future__ import annotations

import math
from collections.abc import Hashable, Sequence

import numpy as np

REPLICATE_TYPES = ("jk1", "jkn", "bootstrap", "brr", "fay")
GIVEN = "given"  # replicates= is a matrix of replicate design weights
DEFAULT_BOOTSTRAP_REPLICATES = 50  # R's bootweights / subbootweights default
DEFAULT_FAY_RHO = 0.5

_HINT = (
    f"Pass one of {', '.join(repr(t) for t in REPLICATE_TYPES)}, or a DataFrame / 2-D array of "
    "replicate design weights (one row per row of data, one column per replicate)."
)


def check_replicates(replicates: object) -> str | None:
    """The replicate type (lower case), ``"given"`` for a matrix, or ``None``.

    Raises
    ------
    ValueError
        An unknown name, or something that is neither a name nor a 2-D table.
    """
    if replicates is None:
        return None
    if isinstance(replicates, str):
        kind = replicates.lower()
        if kind not in REPLICATE_TYPES:
            raise ValueError(f"replicates={replicates!r} is not a replicate method. {_HINT}")
        return kind
    if np.ndim(replicates) == 2:  # type: ignore[arg-type]
        return GIVEN
    raise ValueError(
        f"replicates must be a method name or a 2-D table of replicate weights, got "
        f"{type(replicates).__name__} with {np.ndim(replicates)} dimension(s). {_HINT}"  # type: ignore[arg-type]
    )


def check_replicate_options(
    kind: str | None,
    *,
    n_replicates: object,
    seed: object,
    fay_rho: object,
    replicate_scale: object,
    replicate_rscales: object,
    replicate_mse: object,
) -> tuple[int | None, float]:
    """The options that go with ``replicates=``: ``(n_replicates, fay_rho)``, checked.

    Each option is refused (with the method it belongs to) where it would be ignored.
    """
    given = {
        "n_replicates": n_replicates,
        "seed": seed,
        "fay_rho": fay_rho,
        "replicate_scale": replicate_scale,
        "replicate_rscales": replicate_rscales,
    }
    if kind is None:
        extra = [k for k, v in given.items() if v is not None]
        if replicate_mse:
            extra.append("replicate_mse")
        if extra:
            raise ValueError(
                f"{', '.join(extra)} only apply to replicate weights; pass replicates= too "
                "(e.g. replicates='jkn'), or drop them."
            )
        return None, 0.0
    if not isinstance(replicate_mse, bool | np.bool_):
        raise ValueError(f"replicate_mse must be True or False, got {replicate_mse!r}.")
    belongs = {
        "n_replicates": ("bootstrap",),
        "seed": ("bootstrap",),
        "fay_rho": ("fay",),
        "replicate_scale": (GIVEN,),
        "replicate_rscales": (GIVEN,),
    }
    for name, kinds in belongs.items():
        if given[name] is not None and kind not in kinds:
            where = "a matrix of replicate weights" if kinds == (GIVEN,) else f"'{kinds[0]}'"
            raise ValueError(
                f"{name} applies to replicates={where} only, not replicates={kind!r}; drop it"
                + (" (the jackknife has one replicate per PSU)." if name == "n_replicates" else ".")
            )
    n_rep = None
    if kind == "bootstrap":
        n_rep = DEFAULT_BOOTSTRAP_REPLICATES if n_replicates is None else n_replicates
        if isinstance(n_rep, bool) or not isinstance(n_rep, int | np.integer) or n_rep < 2:
            raise ValueError(
                f"n_replicates must be an integer >= 2 (the bootstrap variance divides by R - 1), "
                f"got {n_replicates!r}; 100 to 500 are usual."
            )
        n_rep = int(n_rep)
    rho = 0.0
    if kind == "fay":
        rho = DEFAULT_FAY_RHO if fay_rho is None else fay_rho  # type: ignore[assignment]
        if (
            isinstance(rho, bool)
            or not isinstance(rho, int | float | np.number)
            or not (0 < float(rho) < 1)
        ):
            raise ValueError(
                f"fay_rho must be a number strictly between 0 and 1 (Fay's factor; 0 is plain "
                f"BRR: use replicates='brr'), got {fay_rho!r}; 0.5 is usual."
            )
        rho = float(rho)
    return n_rep, rho


def check_replicate_weights(
    values: np.ndarray, n: int, rows: np.ndarray, labels: Sequence[Hashable]
) -> np.ndarray:
    """A matrix of replicate design weights, float64 ``(n, R)``, checked on the rows ``rows``.

    Every raked row needs finite, non-negative replicate weights, and each replicate a positive
    total (a replicate of zeros cannot be raked).
    """
    try:
        arr = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(
            f"replicates must hold numbers (replicate design weights), but it could not be read "
            f"as floats ({exc}); convert its columns to numbers."
        ) from exc
    if arr.ndim != 2 or arr.shape[0] != n or arr.shape[1] < 2:
        raise ValueError(
            f"replicates must have one row per row of data and at least 2 columns (replicates): "
            f"shape ({n}, R) with R >= 2, got {arr.shape}. A DataFrame is aligned on data's index; "
            "transpose an (R, n) array."
        )
    sub = arr[rows]
    bad = ~np.isfinite(sub) | (sub < 0)
    if bad.any():
        i, r = np.argwhere(bad)[0]
        count = int(bad.any(axis=1).sum())
        raise ValueError(
            f"replicates must be finite and >= 0 on every raked row, but {count} row(s) are not, "
            f"e.g. row {labels[int(np.flatnonzero(rows)[i])]!r}, replicate {int(r)}: "
            f"{sub[i, r]!r}. Fill or drop those rows (replicate weights are design weights)."
        )
    empty = np.flatnonzero(sub.sum(axis=0) <= 0)
    if empty.size:
        raise ValueError(
            f"replicates has {empty.size} replicate(s) whose weights are all 0 on the raked rows "
            f"(columns {empty[:10].tolist()}); drop those columns."
        )
    return arr


def check_replicate_scales(scale: object, rscales: object, n_replicates: int) -> tuple:
    """``(scale, rscales)`` of given replicate weights (R's ``svrepdesign(scale=, rscales=)``).

    Defaults: ``scale = 1``, ``rscales = 1`` (R's ``svrepdesign`` for ``type="other"``).
    """
    s = 1.0 if scale is None else scale
    if (
        isinstance(s, bool)
        or not isinstance(s, int | float | np.number)
        or not (math.isfinite(float(s)) and float(s) > 0)
    ):
        raise ValueError(
            f"replicate_scale must be a finite number > 0 (the factor of the variance, e.g. "
            f"(R - 1) / R for JK1, 1 / R for BRR), got {scale!r}."
        )
    if rscales is None:
        rs = np.ones(n_replicates)
    else:
        try:
            rs = np.asarray(rscales, dtype=np.float64).ravel()
        except (TypeError, ValueError) as exc:
            raise ValueError(f"replicate_rscales must be numbers ({exc}).") from exc
        if rs.size != n_replicates:
            raise ValueError(
                f"replicate_rscales must have one value per replicate ({n_replicates}), got "
                f"{rs.size}; give the per-replicate factors in the order of the columns."
            )
        if not (np.isfinite(rs).all() and (rs >= 0).all()):
            raise ValueError("replicate_rscales must be finite and >= 0.")
    return float(s), rs


def check_replicate_design(
    kind: str,
    stratum_of_psu: np.ndarray,
    stratum_labels: Sequence[Hashable] | None,
    *,
    strata: object,
    cluster: object,
) -> None:
    """The first-stage design that the replicate method ``kind`` needs.

    ``stratum_of_psu``: stratum code of each sampled PSU (rows when ``cluster`` is None).
    """
    if kind == "jk1" and strata is not None:
        raise ValueError(
            f"replicates='jk1' is the jackknife of an unstratified design, but strata={strata!r} "
            "was given; use replicates='jkn' (the stratified jackknife)."
        )
    if kind in ("jkn", "brr", "fay") and strata is None:
        raise ValueError(
            f"replicates={kind!r} needs the strata of the design: pass strata= (and cluster= for "
            "the PSUs); for an unstratified design use replicates='jk1' or 'bootstrap'."
        )
    sizes = np.bincount(stratum_of_psu)
    unit = "rows (no cluster= given: each row is a PSU)" if cluster is None else "PSUs"

    def name(h: int) -> object:
        return "the sample" if stratum_labels is None else f"stratum {stratum_labels[h]!r}"

    if kind in ("brr", "fay"):
        wrong = np.flatnonzero(sizes != 2)
        if wrong.size:
            h = int(wrong[0])
            raise ValueError(
                f"replicates={kind!r} needs exactly two PSUs per stratum, but {name(h)} has "
                f"{sizes[h]} {unit} ({wrong.size} strata differ). Pair PSUs into strata of two "
                "(pseudo-strata), or use replicates='jkn' or 'bootstrap'."
            )
    lonely = np.flatnonzero(sizes < 2)
    if lonely.size:
        h = int(lonely[0])
        raise ValueError(
            f"replicates={kind!r} needs at least two PSUs per stratum, but {name(h)} has "
            f"{sizes[h]}; merge it with another stratum."
        )
