r"""The raking of a Dask or Polars frame on its cells: :func:`rake_frame` (``raking.rake``'s door).

The steps of :func:`raking.survey.frontend.rake`, with the rows replaced by the groups of their
codes (:mod:`raking.survey.frames`): the same option checks, targets, row checks (missing
values, unknown levels, design weights: the same errors and messages, rows named by a second
pass over the data), scaling of the design weights, totals, level checks, and the same solver
(:func:`raking.survey.weights._rake_units`) on the cells. The result is a
:class:`raking.survey.frame_results.FrameRakeResult`.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Hashable, Mapping
from typing import Any

import numpy as np
import pandas as pd

from raking.survey.codes import _NA_HINT, _UNKNOWN_HINT, _parse_targets, column
from raking.survey.design import Coded, Stage, SurveyDesign, _label
from raking.survey.frame_results import FrameDesign, FrameRakeResult, FrameState, _labels
from raking.survey.frames import (
    MAX_CELLS,
    CellPlan,
    _Coding,
    _decode_keys,
    check_frame_weights,
    check_radix,
    frame_kind,
    raise_row_errors,
    rows_of,
)
from raking.survey.frontend import _check_levels, _check_weight_total, _ldexp, _plain
from raking.survey.results import varies_within_levels
from raking.survey.weights import (
    _level_sums,
    _rake_units,
    _Units,
    code_dtype,
    design_scale,
    scaled_targets,
)
from raking.validation import (
    NA_OPTIONS,
    UNKNOWN_OPTIONS,
    check_bounds,
    check_lonely_psu,
    check_option,
    check_positive_int,
    check_steps,
    check_tol,
    listed,
    raise_fpc_not_constant,
    raise_fpc_out_of_range,
    raise_single_unit,
    resolve_total,
    stage_columns,
)

__all__ = ["rake_frame"]


def rake_frame(
    data: Any,
    targets: Mapping,
    *,
    weights: Hashable | None = None,
    steps: int | None = None,
    tol: float = 1e-10,
    max_iter: int = 1000,
    bounds: tuple[float, float] | None = None,
    total: float | None = None,
    na: str = "error",
    unknown: str = "error",
    strata: Hashable | list | None = None,
    cluster: Hashable | list | None = None,
    fpc: Hashable | list | None = None,
    lonely_psu: str = "error",
    nest: bool = False,
    **unsupported: Any,
) -> FrameRakeResult:
    """:func:`raking.rake` on a Dask DataFrame, a Polars DataFrame / LazyFrame or a PyArrow table.

    The arguments are :func:`raking.rake`'s; ``unsupported`` holds the replicate options, which
    must be unset (``replicates=None``). See :mod:`raking.survey.frames`.
    """
    _refuse(unsupported)
    na = check_option(na, options=NA_OPTIONS, name="na", hint=_NA_HINT)
    unknown = check_option(unknown, options=UNKNOWN_OPTIONS, name="unknown", hint=_UNKNOWN_HINT)
    steps = check_steps(steps)
    tol = check_tol(tol)
    max_iter = check_positive_int(max_iter, name="max_iter")
    bounds = check_bounds(bounds)
    lonely_psu = check_lonely_psu(lonely_psu)
    stage_strata, stage_cluster, stage_fpc = stage_columns(strata, cluster, fpc)
    if len(stage_cluster) > 1:
        raise NotImplementedError(
            f"cluster={cluster!r} is a {len(stage_cluster)}-stage design; a {frame_kind(data)} "
            "frame is raked with one-stage designs only (strata=, cluster=, fpc= of the first "
            "stage). Pass the PSU column alone (the ultimate-cluster variance, which is the "
            "multi-stage one without fpc), or rake a pandas DataFrame for the multi-stage SEs."
        )
    rows = rows_of(data)
    variables = _parse_targets(targets, rows.meta)
    name = "weights" if weights is None else f"weights (column {weights!r})"
    check_frame_weights(rows, weights, name)
    for owner, col in (("strata", stage_strata[0]), ("cluster", stage_cluster[0])):
        if col is not None:
            column(rows.meta, col, owner)
    if stage_fpc[0] is not None:
        column(rows.meta, stage_fpc[0], "fpc")
    coding = _Coding(
        tuple((cols, tuple(levels)) for cols, levels, _ in variables.values()), na, weights, name
    )
    radix = tuple(len(levels) + 2 for _, levels in coding.variables)
    check_radix(radix)
    groups = rows.groups(coding, radix)
    if int(groups["n"].sum()) == 0:
        raise ValueError("data has no rows; raking needs a sample.")
    keys = groups["key"].to_numpy(dtype=np.int64)
    codes = _decode_keys(keys, radix)
    dropped, zeroed = raise_row_errors(rows, coding, groups, codes, variables, unknown)
    raked = ~(dropped | zeroed)
    if not raked.any():
        raise ValueError("no row of data is left to rake after na='drop' / unknown='zero'.")
    if weights is not None:
        _check_bad_weights(rows, coding, groups, keys, raked, radix, name)
    # the cells in the pandas path's order (its mixed-radix key, first variable fastest), so
    # that the solver sums them in the same order
    order = np.flatnonzero(raked)
    order = order[np.argsort(_pandas_key(codes[:, order], radix), kind="stable")]
    counts = groups["n"].to_numpy(dtype=np.int64)[order]
    n_cells = int(raked.sum())
    if n_cells > MAX_CELLS:
        raise ValueError(
            f"the raked columns have {n_cells:,} non-empty cells (crossed levels), more than "
            f"the {MAX_CELLS:,} a {rows.kind} frame is raked on (raking.survey.frames.MAX_CELLS): "
            "the cell table would be as large as the data. Merge levels (e.g. age bands "
            "instead of ages), or rake a pandas DataFrame, which rakes the rows."
        )
    n = int(counts.sum())
    t_raw = [t for _, _, t in variables.values()]
    shift = 0
    if weights is not None:
        raw = groups["d"].to_numpy(dtype=np.float64)[order]
        lo = float(groups["dmin"].to_numpy()[raked].min())
        hi = float(groups["dmax"].to_numpy()[raked].max())
        shift = design_scale(np.array([lo, hi]), name=name, labels=["(smallest)", "(largest)"])[1]
        cell_d = np.ldexp(raw, -shift)
        default = _ldexp(float(cell_d.sum()), shift)
    else:
        default = float(n)
    total_value, known = resolve_total(list(variables), [t.sum() for t in t_raw], total, default)
    _check_weight_total(total_value, n, known, total, name)
    t = [tv * (total_value / tv.sum()) for tv in t_raw]
    n_levels = [tv.size for tv in t]
    design0 = total_value / n
    if weights is None:
        cell_d = counts * design0
    cell_codes = np.ascontiguousarray(codes[:, order], dtype=code_dtype(n_levels))
    units = _Units(cell_codes, cell_d, counts, np.arange(n_cells))
    n_rows, sample = _level_sums(units, n_levels)
    t_run = scaled_targets(t, shift, bounds, names=list(variables))
    _check_levels(variables, n_rows, sample, t, t_run, bounds)
    result = _rake_units(
        units,
        np.ones(n_cells),
        t_run,
        steps=steps,
        tol=tol,
        max_iter=max_iter,
        bounds=bounds,
        shift=shift if bounds is not None else 0,
    )
    cell = np.full(keys.size, -1, dtype=np.int64)
    cell[order] = np.arange(n_cells)
    cell[dropped] = -2
    plan = CellPlan(keys, cell, result.weights, shift, design0 if weights is None else 1.0, radix)
    rows.attach(coding, plan)
    d2 = groups["d2"].to_numpy(dtype=np.float64)[order] if weights is not None else None
    spread = _spread(groups, order, cell_codes, n_levels) if weights is not None else False
    state = FrameState(
        rows=rows,
        coding=coding,
        plan=plan,
        cell_codes=cell_codes,
        n_levels=tuple(n_levels),
        cell_design=cell_d,
        cell_design2=np.ldexp(d2, -2 * shift) if d2 is not None else counts * design0**2,
        counts=counts,
        n_sampled=int(groups["n"].to_numpy()[~dropped].sum()),
        n_total=int(groups["n"].sum()),
        steps=steps,
        varies_within_levels=spread,
        design=functools.partial(
            _frame_design,
            rows,
            int(groups["n"].to_numpy()[~dropped].sum()),
            stage_strata[0],
            stage_cluster[0],
            stage_fpc[0],
            lonely_psu,
            nest,
        ),
    )
    state.design_now()  # the design's errors at the door, as the pandas path
    return FrameRakeResult.build(
        variables, result, t, n_rows, sample, known, bounds, rows.weights(plan, coding), state
    )


def _refuse(unsupported: dict[str, Any]) -> None:
    """Replicate weights are not offered for frames (a clear error, never a wrong SE)."""
    given = {k: v for k, v in unsupported.items() if v is not None and v is not False}
    if not given:
        return
    names = ", ".join(f"{k}=" for k in given)
    raise NotImplementedError(
        f"{names}: replicate weights are not offered for Dask or Polars frames (each replicate "
        "would need its own pass over the rows); the SEs come from the linearisation of the "
        "one-stage design (strata=, cluster=, fpc=). For replicate SEs, rake a pandas "
        "DataFrame (e.g. a sample of the data, or ddf.compute() when it fits in memory)."
    )


def _pandas_key(codes: np.ndarray, radix: tuple[int, ...]) -> np.ndarray:
    """The key of :func:`raking.survey.weights.cells_from_codes` (first variable fastest)."""
    key = np.zeros(codes.shape[1], dtype=np.int64)  # fits: check_radix bounds the product
    stride = 1
    for c, r in zip(codes, radix, strict=True):
        key += c.astype(np.int64) * stride
        stride *= r - 2
    return key


def _check_bad_weights(
    rows: Any,
    coding: _Coding,
    groups: pd.DataFrame,
    keys: np.ndarray,
    raked: np.ndarray,
    radix: tuple[int, ...],
    name: str,
) -> None:
    """Missing, non-positive or non-finite design weights of raked rows: the pandas message."""
    bad = groups["bad"].to_numpy(dtype=np.int64)
    count = int(bad[raked].sum())
    if not count:
        return
    from raking.survey.frames import _group_keys

    raked_keys = keys[raked]

    def mask(part: pd.DataFrame) -> np.ndarray:
        in_raked = np.isin(_group_keys(coding.codes(part), radix), raked_keys)
        d = coding.design(part)
        return in_raked & ~(np.isfinite(d) & (d > 0))

    where = rows.first_rows(mask, [*coding.columns, coding.weights], value=coding.weights)
    labels, values = where
    example = math.nan if pd.isna(values[0]) else float(values[0])
    raise ValueError(
        f"{name} has {count} missing, non-positive or non-finite value(s) at rows "
        f"{listed(labels if count <= len(labels) else [*labels, '...'])} (e.g. "
        f"{example!r}); design weights are inverse inclusion probabilities and must be "
        "> 0. Drop those rows or fix their weights first."
    )


def _spread(
    groups: pd.DataFrame, order: np.ndarray, cell_codes: np.ndarray, n_levels: list[int]
) -> bool:
    """Whether the design weights vary within some level (as ``RakeResult``'s check)."""
    lo_c = groups["dmin"].to_numpy(dtype=np.float64)[order]
    hi_c = groups["dmax"].to_numpy(dtype=np.float64)[order]
    return varies_within_levels(cell_codes, n_levels, lo_c, hi_c)


# ------------------------------------------------------------------------------------------
# The one-stage design, from one pass over the sampled rows
# ------------------------------------------------------------------------------------------


def _design_chunk(
    arrays: dict[str, Any], strata: Hashable | None, cluster: Hashable | None, fpc: Hashable | None
) -> pd.DataFrame:
    """Rows per (stratum, PSU, fpc) among the sampled rows of a chunk (labels as objects)."""
    sampled = arrays["sampled"]
    out = {}
    for key, col in (("s", strata), ("c", cluster), ("f", fpc)):
        out[key] = _labels(arrays, col, sampled, int(sampled.sum()))
    out["rows"] = np.ones(int(sampled.sum()), dtype=np.int64)
    frame = pd.DataFrame(out)
    return frame.groupby(["s", "c", "f"], dropna=False, sort=False).sum().reset_index()


def _frame_design(
    rows: Any,
    n_sampled: int,
    strata: Hashable | None,
    cluster: Hashable | None,
    fpc: Hashable | None,
    lonely_psu: str,
    nest: bool,
) -> FrameDesign:
    """The design of the SEs from the table of (stratum, PSU, fpc) groups of sampled rows.

    Clustered: the groups are pseudo-rows whose PSU totals are the design's PSU totals, so
    :meth:`SurveyDesign.from_codes` on them checks the nesting, the fpc and lonely PSUs as the
    pandas path and its variance of the group totals is the design's. Rows as PSUs: one stage
    whose units are the rows, counted per stratum (its sums of squares come from the rows).
    """
    columns = [c for c in (strata, cluster, fpc) if c is not None]
    if not columns:  # one stratum of rows: no pass over the data
        table = pd.DataFrame({k: np.zeros(1, dtype=np.int8) for k in ("s", "c", "f")})
        table["rows"] = n_sampled
        stage = Stage(None, np.zeros(1, np.intp), np.array([n_sampled]), None, np.zeros(1, np.intp))
        return FrameDesign(SurveyDesign((stage,), lonely_psu), table, None, None, None, True)
    chunk = functools.partial(_design_chunk, strata=strata, cluster=cluster, fpc=fpc)
    table = rows.map_reduce(columns, chunk, ["s", "c", "f"], weights=False)
    for key, owner, col in (("s", "strata", strata), ("c", "cluster", cluster), ("f", "fpc", fpc)):
        missing = pd.isna(table[key]).to_numpy() if col is not None else np.zeros(len(table), bool)
        if missing.any():
            count = int(table["rows"].to_numpy()[missing].sum())
            labels = rows.labels_where([col], functools.partial(_missing_in, column=col))
            raise ValueError(
                f"{owner} column {col!r} has {count} missing value(s) among the raked "
                f"rows, at rows {labels}{' ...' if count > 10 else ''}; fill "
                "them first (every sampled row needs its stratum, PSU and fpc)."
            )
    table = table.sort_values(["s", "c", "f"], ignore_index=True, key=_sort_key)
    s_codes, s_labels = pd.factorize(table["s"])
    fpc_values = None if fpc is None else table["f"].to_numpy(dtype=np.float64)
    if cluster is not None:
        c_codes, c_labels = pd.factorize(table["c"])
        sampling = SurveyDesign.from_codes(
            len(table),
            strata=[None if strata is None else Coded(strata, s_codes, list(s_labels))],
            cluster=[Coded(cluster, c_codes, list(c_labels))],
            fpc=[None if fpc is None else (fpc, fpc_values)],
            lonely_psu=lonely_psu,
            nest=nest,
        )
        return FrameDesign(sampling, table, strata, cluster, fpc, rows_as_units=False)
    n_units = np.bincount(s_codes, weights=table["rows"].to_numpy(np.float64)).astype(np.int64)
    fraction = None
    if fpc is not None:
        fraction = _fractions(s_codes, s_labels, fpc_values, n_units, fpc, strata)
    stage = Stage(
        unit=None,
        stratum=np.arange(n_units.size),
        n_units=n_units,
        fraction=fraction,
        parent=np.zeros(n_units.size, dtype=np.intp),
    )
    sampling = SurveyDesign((stage,), lonely_psu)
    if lonely_psu == "error" and strata is not None:
        lonely = np.flatnonzero(sampling._terms[0].lonely)
        if lonely.size:
            raise_single_unit(
                stage=1,
                stratum=_plain(s_labels[lonely[0]]),
                stratified=True,
                cluster=None,
                parent=None,
            )
    return FrameDesign(sampling, table, strata, cluster, fpc, rows_as_units=True)


def _missing_in(arrays: dict[str, Any], column: Hashable) -> np.ndarray:
    """Sampled rows of a chunk with a missing value in ``column``."""
    return arrays["sampled"] & arrays[column].isna().to_numpy()


def _sort_key(values: pd.Series) -> pd.Series:
    """Labels sorted by their text (mixed types sort too)."""
    return values.map(lambda x: (type(x).__name__, str(x)))


def _fractions(
    s_codes: np.ndarray,
    s_labels: Any,
    values: np.ndarray,
    n_units: np.ndarray,
    fpc: Hashable,
    strata: Hashable | None,
) -> np.ndarray:
    """Sampling fraction per stratum (rows as units), checked as the pandas path."""

    def where(h: int) -> str:
        return f"stratum {_label(s_labels[h])}" if strata is not None else "the sample"

    first = np.full(n_units.size, np.nan)
    for h, v in zip(s_codes, values, strict=True):
        if np.isnan(first[h]):
            first[h] = v
        elif v != first[h]:
            values = (float(first[h]), float(v))
            raise_fpc_not_constant(stage=1, column=fpc, where=where(h), values=values)
    with np.errstate(divide="ignore", invalid="ignore"):
        fraction = np.where(first <= 1, first, n_units / first)
    bad = np.flatnonzero(~((fraction >= 0) & (fraction <= 1)))
    if bad.size:
        h = int(bad[0])
        raise_fpc_out_of_range(
            stage=1, column=fpc, where=where(h), value=float(first[h]), n_units=int(n_units[h])
        )
    return fraction
