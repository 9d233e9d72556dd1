r"""Rake a pandas DataFrame to population margins: :func:`rake` (also ``raking.rake``).

The applications-layer front end of :mod:`raking.survey.weights`. It integer-codes each raked column
once (``.cat.codes`` for categoricals, ``pandas.factorize`` otherwise), checks the data against the
targets level by level (errors name the column, the level and the fix; the DataFrame is never
modified), rakes the rows or the cells of the crossed codes, and returns a
:class:`~raking.survey.results.RakeResult` that also estimates means, totals and proportions with
standard errors that account for the raking: the linearisation of R ``survey``'s
``calibrate(calfun="raking")`` + ``svymean`` (R's ``rake()`` SE differs where the design weights
vary within levels; see :mod:`raking.survey.linearization`).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from raking.exceptions import ConvergenceWarning
from raking.results import RakingWeights
from raking.survey import replicates as replicate_methods
from raking.survey.codes import (
    _NA,
    _NA_HINT,
    _UNKNOWN,
    _UNKNOWN_HINT,
    _code_variable,
    _parse_targets,
    _raise_na,
    _unknown_levels,
    column,
    has_column,
)
from raking.survey.design import Coded, SurveyDesign
from raking.survey.results import RakeResult, _Design, margin_table
from raking.survey.weights import (
    _level_sums,
    _rake_replicates,
    _rake_units,
    _units,
    design_scale,
    scaled_targets,
)
from raking.validation import (
    MIN_LEVEL_ROWS,
    NA_OPTIONS,
    UNKNOWN_OPTIONS,
    as_numbers,
    check_bounded_levels,
    check_bounds,
    check_columns,
    check_design_weights,
    check_lonely_psu,
    check_option,
    check_positive_int,
    check_replicate_design,
    check_replicate_options,
    check_replicate_scales,
    check_replicate_weights,
    check_replicates,
    check_seed,
    check_steps,
    check_tol,
    check_weights_dtype,
    raise_on_empty_levels,
    resolve_total,
    stage_columns,
    warn_sparse_levels,
)

__all__ = ["rake", "targets_from_frame"]

_TINY = float(np.finfo(np.float64).tiny)  # the smallest normal float64


def rake(
    data: pd.DataFrame,
    targets: Mapping[Hashable, Mapping[Any, float] | pd.Series],
    *,
    weights: str | Sequence[float] | np.ndarray | None = None,
    steps: int | None = None,
    tol: float = 1e-10,
    max_iter: int = 1000,
    bounds: tuple[float, float] | None = None,
    total: float | None = None,
    na: str = "error",
    unknown: str = "error",
    strata: Hashable | list[Hashable | None] | None = None,
    cluster: Hashable | list[Hashable] | None = None,
    fpc: Hashable | list[Hashable | None] | None = None,
    lonely_psu: str = "error",
    nest: bool = False,
    replicates: str | pd.DataFrame | np.ndarray | None = None,
    n_replicates: int | None = None,
    seed: int | np.random.Generator | None = None,
    fay_rho: float | None = None,
    replicate_scale: float | None = None,
    replicate_rscales: Sequence[float] | np.ndarray | None = None,
    replicate_mse: bool = False,
) -> RakeResult:
    r"""Rake the rows of ``data`` so that their weighted level counts match ``targets``.

    Finds weights :math:`w_i = d_i g_i` with :math:`\sum_{i \in \text{level } j \text{ of } v} w_i =
    t_v(j)` for every variable, :math:`g_i = \exp(\sum_v \lambda_v(\text{level}_v(i)))` (clipped to
    ``bounds``): the KL-closest weights to the design weights :math:`d` (see
    :mod:`raking.survey.weights`; R ``survey``: ``rake()``, ``calibrate(calfun="raking",
    bounds=)``).

    Parameters
    ----------
    data : pandas.DataFrame, Dask DataFrame, Polars DataFrame or LazyFrame, or PyArrow Table
        One row per sampled unit; never modified. Dask and Polars data are raked on the cells
        of the crossed levels without collecting the rows, with lazy weights and the same
        numbers as pandas (:mod:`raking.survey.frames`; a
        :class:`~raking.survey.frame_results.FrameRakeResult`; no replicates, one-stage
        designs).
    targets : mapping
        ``{column: {level: target}}`` (or a :class:`pandas.Series` indexed by level) for each
        raking variable, adjusted in this order. A tuple of columns as key rakes to their joint
        (crossed) margin, with tuple levels (or a Series with a MultiIndex); a tuple that is a
        column label (MultiIndex columns) is that column. Targets are
        population counts (one total for all variables) or shares (each summing to 1).
    weights : column label or array, optional
        Design weights (the label of a column of ``data``, of any type: a str, an int, a tuple of
        MultiIndex columns; or an array, or a Series aligned on the index), > 0, the starting
        weights; ``None``: equal. Any numeric dtype (nullable included); text that is not a number,
        flags, dates and time spans are errors naming the rows. ``bounds`` bound :math:`g_i = w_i /
        d_i` relative to them (R's convention). Their scale does not matter: weights near the
        float64 limits (1e307, whose sum overflows, or subnormal ones) are raked as their copies
        divided by a power of two (:func:`raking.survey.weights.design_scale`), which gives the same
        weights; only what cannot be represented is an error (with share targets and no ``total``,
        weights whose sum is not a normal float64; a spread beyond 2**1000 between the largest and
        the smallest).
    steps : int or None
        ``None``: iterate until the max absolute margin error, as a share of the total, is at
        most ``tol``. ``k``: exactly ``k`` single-variable adjustments (the paper's estimator;
        ``0`` gives the design weights scaled to ``total``).
    tol : float
        Tolerance on the margin error as a share of the total.
    max_iter : int
        Maximum number of full sweeps over the variables (R's ``maxit``).
    bounds : (lo, hi), optional
        Bounds on the adjustment factor :math:`g_i`, enforced inside the iteration; an
        unreachable level raises at once, margins that are unreachable together stop with
        ``converged=False`` and a :class:`~raking.exceptions.ConvergenceWarning`.
    total : float, optional
        Population total the weights sum to. Default: the targets' total when they are counts;
        for shares, the sum of the design weights (or the number of rows without ``weights``),
        which is then no known population total (and :meth:`RakeResult.total` refuses).
    na : {"error", "drop", "level"}
        Missing values in a raked column: raise; drop the rows (weight NaN; estimates treat them
        as not sampled); or make missing a level of its own (give it a target under key NaN).
    unknown : {"error", "zero"}
        Sample levels absent from the targets: raise; or give their rows weight 0 (with a
        warning; they stay in the sample as rows outside every target level).
    strata, cluster : column label or list of column labels, optional
        The sampling design, used only for the standard errors (R ``svydesign(id=, strata=)``).
        ``cluster``: the column of the primary sampling units (PSUs), or a list with one column
        per stage, outermost first (``["dnum", "snum"]``: districts, then schools within them;
        R's ``id=~dnum+snum``). ``strata``: the stratum column of the first stage, or a list
        with one per stage (``None`` for an unstratified stage; stages beyond the list are
        unstratified within their parent unit). A list means stages; a tuple is one column
        label (MultiIndex columns). Default: one stratum, each row its own PSU
        (``svydesign(id=~1)``). Labels of a later stage are read within their unit of the
        stage above (a school numbered 1 in two districts is two schools), as R does.
        A sample of one row without a design is raked (its standard errors are NaN).
    fpc : column label or list, optional
        Finite population correction: per stratum, the population number of units (a count
        > 1) or the sampling fraction (at most 1), constant within each stratum; with several
        stages, a list with one entry per stage of ``cluster`` (``None`` for a stage sampled
        with replacement). Default: none (with replacement, the ultimate-cluster variance).
        With an fpc, the later stages add their variance times the sampling fractions above
        them (R ``survey``'s ``multistage``; see :mod:`raking.survey.design`).
    lonely_psu : {"error", "certainty", "remove", "adjust", "average"}
        A stratum with a single sampled PSU (at any stage the variance uses), as R's
        ``options(survey.lonely.psu=)``: ``"error"`` refuses it, naming the stratum;
        ``"certainty"`` and ``"remove"`` let it contribute 0; ``"adjust"`` measures its total
        from 0 rather than from a stratum mean; ``"average"`` gives it the average variance
        of the other strata of its stage. A stratum sampled whole (fpc = its sample size) is
        no lonely stratum: it contributes 0 at its stage.
    nest : bool
        ``True``: PSU labels (and those of every stage) are read within their stratum, so the
        same label in two strata is two units (R's ``nest=TRUE``, for PSUs numbered 1, 2, ...
        in each stratum). ``False`` (R's default): a unit whose rows lie in two strata of its
        stage is an error.
    replicates : {"jk1", "jkn", "bootstrap", "brr", "fay"}, DataFrame or array, optional
        Standard errors from replicate weights instead of the linearisation: replicate design
        weights built from the first-stage design (``strata``, ``cluster``, ``fpc``) as R's
        ``as.svrepdesign(type=)`` -- ``"jk1"`` (unstratified jackknife), ``"jkn"`` (stratified),
        ``"bootstrap"`` (Rao--Wu rescaling bootstrap, R's ``"subbootstrap"``), ``"brr"`` and
        ``"fay"`` (balanced half-samples, two PSUs per stratum, R's Hadamard matrices) -- or a
        table of replicate design weights you have (``n`` rows x ``R`` columns, a DataFrame
        aligned on the index; R's ``svrepdesign(repweights=, combined.weights=TRUE)``). Every
        replicate is raked to the same targets with the same ``steps``, ``tol``, ``max_iter``
        and ``bounds``, all in one batched call; every estimate then takes its SE from the
        replicates, :math:`s \sum_r s_r (\hat\theta_r - c)^2` (R's ``svrVar``; see
        :mod:`raking.survey.replicates` for each method's multipliers and scales). The result's
        ``replicate_weights`` holds the re-raked replicate weights.
    n_replicates : int, optional
        Bootstrap replicates (default 50, as R; >= 2).
    seed : int or numpy.random.Generator, optional
        Seed of the bootstrap draws: the same seed gives the same replicates.
    fay_rho : float, optional
        Fay's factor :math:`\rho` in (0, 1) for ``replicates="fay"`` (default 0.5).
    replicate_scale, replicate_rscales : optional
        For a table of replicate weights: the variance's ``scale`` :math:`s` (default 1) and
        per-replicate ``rscales`` :math:`s_r` (default 1), as R's ``svrepdesign(scale=,
        rscales=)`` (JK1: ``(R - 1) / R``; BRR: ``1 / R``; bootstrap: ``1 / (R - 1)``).
    replicate_mse : bool
        Centre the replicates on the full-sample estimate (R's ``mse=TRUE``) rather than on
        their mean.

    Returns
    -------
    raking.survey.results.RakeResult
        Weights (a Series on ``data.index``), convergence, the margin table, diagnostics, and
        ``mean``/``total``/``proportion`` estimators with linearisation standard errors.

    Raises
    ------
    ValueError
        Naming the column and level: missing values, levels absent from the targets, target
        levels without rows (:class:`~raking.exceptions.EmptyCategoryError`), missing columns,
        bad or inconsistent targets, non-positive design weights, unreachable bounds.

    Examples
    --------
    >>> from raking.survey.data import api_population_margins, load_api
    >>> srs = load_api("apisrs")
    >>> margins = api_population_margins()
    >>> res = rake(srs, {"stype": margins["stype"], "sch.wide": margins["sch.wide"]},
    ...            weights="pw")
    >>> res.converged, round(float(res.weights.sum()))
    (True, 6194)
    >>> round(res.mean("api00").estimate, 2)
    657.79
    """
    if not isinstance(data, pd.DataFrame):
        from raking.survey.frames import frame_kind

        if frame_kind(data) is None:
            raise TypeError(
                f"data must be a pandas.DataFrame, a Dask DataFrame, a Polars DataFrame or "
                f"LazyFrame, or a PyArrow Table, got {type(data).__name__}; wrap it with "
                "pandas.DataFrame(...) (for NumPy codes use raking.survey.weights.rake_codes)."
            )
        from raking.survey.frame_rake import rake_frame

        return rake_frame(  # type: ignore[return-value]
            data,
            targets,
            weights=weights,  # type: ignore[arg-type]
            steps=steps,
            tol=tol,
            max_iter=max_iter,
            bounds=bounds,
            total=total,
            na=na,
            unknown=unknown,
            strata=strata,
            cluster=cluster,
            fpc=fpc,
            lonely_psu=lonely_psu,
            nest=nest,
            replicates=replicates,
            n_replicates=n_replicates,
            seed=seed,
            fay_rho=fay_rho,
            replicate_scale=replicate_scale,
            replicate_rscales=replicate_rscales,
            replicate_mse=replicate_mse,
        )
    if len(data) == 0:
        raise ValueError("data has no rows; raking needs a sample.")
    na = check_option(na, options=NA_OPTIONS, name="na", hint=_NA_HINT)
    unknown = check_option(unknown, options=UNKNOWN_OPTIONS, name="unknown", hint=_UNKNOWN_HINT)
    steps = check_steps(steps)
    tol = check_tol(tol)
    max_iter = check_positive_int(max_iter, name="max_iter")
    bounds = check_bounds(bounds)
    options = _DesignOptions(
        strata=strata,
        cluster=cluster,
        fpc=fpc,
        lonely_psu=lonely_psu,
        nest=nest,
        replicates=replicates,
        n_replicates=n_replicates,
        seed=seed,
        fay_rho=fay_rho,
        replicate_scale=replicate_scale,
        replicate_rscales=replicate_rscales,
        replicate_mse=replicate_mse,
    )
    stage_strata, stage_cluster, stage_fpc = options.stages
    variables = _parse_targets(targets, data)
    codes = [_code_variable(data, cols, levels, na) for cols, levels, _ in variables.values()]
    dropped, raked = _row_status(data, variables, codes, na, unknown)

    d = None if weights is None else _design_weights(data, weights, raked)
    if raked is not None:
        codes = [c[raked] for c in codes]
        d = None if d is None else d[raked]
    n = codes[0].shape[0]
    t_raw = [t for _, _, t in variables.values()]
    shift, d_run = 0, d
    if d is not None:
        labels = data.index if raked is None else data.index[raked]
        d_run, shift = design_scale(d, name=_weights_name(data, weights), labels=labels)
    default = _ldexp(float(d_run.sum()), shift) if d_run is not None else float(n)
    total_value, known = resolve_total(list(variables), [t.sum() for t in t_raw], total, default)
    _check_weight_total(total_value, n, known, total, _weights_name(data, weights))
    t = [tv * (total_value / tv.sum()) for tv in t_raw]
    n_levels = [tv.size for tv in t]
    if d is None:
        d = d_run = np.full(n, total_value / n)
    units = _units(codes, n_levels, d_run, equal=weights is None)
    n_rows, sample = _level_sums(units, n_levels)
    t_run = scaled_targets(t, shift, bounds, names=list(variables))
    _check_levels(variables, n_rows, sample, t, t_run, bounds)

    result = _rake_units(
        units,
        d_run,
        t_run,
        steps=steps,
        tol=tol,
        max_iter=max_iter,
        bounds=bounds,
        shift=shift if bounds is not None else 0,
    )
    if raked is None:
        full, sample_pos = result.weights, np.arange(len(data), dtype=np.intp)
        raked_pos = sample_pos
    else:
        sample_pos = np.flatnonzero(~dropped)
        raked_pos = np.flatnonzero(raked[sample_pos])
        full = np.full(len(data), np.nan)
        full[sample_pos] = 0.0
        full[raked] = result.weights
    columns = _design_columns(
        data, sample_pos, stage_strata, stage_cluster, stage_fpc, options.lonely_psu, nest=nest
    )
    reraked = None
    if options.kind is not None:
        spec = _replicate_design(data, options, columns, sample_pos, raked_pos, d)
        factors, run = _rake_replicates(
            units,
            d_run,
            t_run,
            spec.group,
            spec.multipliers,
            steps=steps,
            tol=tol,
            max_iter=max_iter,
            bounds=bounds,
            shift=shift if bounds is not None else 0,
            start=_unit_factors(units, result.weights, d_run),
        )
        reraked = replicate_methods.RerakedReplicates(
            spec, factors, units.cell_of_row, run.steps, run.converged, run.stalled, run.errors
        )
        _warn_replicates(reraked, steps, bounds)
    design = _Design(
        codes=codes,
        n_levels=tuple(n_levels),
        design=d_run,  # divided by 2**shift when near the float limits: the SEs are scale-free
        final=result.weights,
        raked_pos=raked_pos,
        sample_pos=sample_pos,
        steps=steps,
        **columns,
        replicates=reraked,
    )
    return _result(data, variables, result, t, n_rows, sample, full, design, known, bounds)


def targets_from_frame(
    frame: pd.DataFrame,
    *,
    variable: str = "variable",
    level: str = "level",
    target: str = "target",
) -> dict[str, pd.Series]:
    """Targets for :func:`rake` from a long table with one row per (variable, level).

    For reading targets from a CSV file (``variable,level,target``); crossed margins are not
    supported in this form (give them to :func:`rake` as a Series with a MultiIndex).

    Examples
    --------
    >>> import pandas as pd
    >>> frame = pd.DataFrame({"variable": ["sex", "sex"], "level": ["F", "M"],
    ...                       "target": [0.5, 0.5]})
    >>> targets_from_frame(frame)["sex"].to_dict()
    {'F': 0.5, 'M': 0.5}
    """
    check_columns("targets_from_frame", [variable, level, target], list(frame.columns))
    return {
        str(name): pd.Series(group[target].to_numpy(), index=group[level].to_numpy(), name=name)
        for name, group in frame.groupby(variable, sort=False)
    }


def _design_weights(data: pd.DataFrame, weights: object, rows: np.ndarray | None) -> np.ndarray:
    """Design weights of every row (a column, or an array; a Series is aligned on the index).

    Checked on the rows of the mask ``rows`` (``None``: every row). Any numeric dtype works
    (int8 to int64, float32, nullable ``Int64``/``Float64``, whose missing values are reported
    as such); text that is not a number is reported with its rows.
    """
    values: object = weights
    name = _weights_name(data, weights)
    if _is_weights_column(data, weights):
        values = _as_float(column(data, weights, "weights"), name)  # type: ignore[arg-type]
    elif isinstance(weights, pd.Series):
        values = _as_float(weights.reindex(data.index), name)
    return check_design_weights(values, len(data), name=name, labels=data.index, rows=rows)


def _is_weights_column(data: pd.DataFrame, weights: object) -> bool:
    """``weights`` is a column label (any type: str, int, a MultiIndex tuple), not an array.

    A label of data's columns is a column; so is any other scalar (then reported missing). A
    tuple that is no column is an array of weights unless data has MultiIndex columns with as
    many levels as the tuple has entries (then it is a missing column).
    """
    if weights is None:
        return False
    if has_column(data, weights):
        return True
    if isinstance(weights, tuple):
        return isinstance(data.columns, pd.MultiIndex) and len(weights) == data.columns.nlevels
    return np.ndim(weights) == 0 and not isinstance(weights, pd.Series)


def _weights_name(data: pd.DataFrame, weights: object) -> str:
    """``weights``, and the column when it is one, for messages."""
    if _is_weights_column(data, weights):
        return f"weights (column {weights!r})"
    return "weights"


def _as_float(series: pd.Series, name: str) -> np.ndarray:
    """float64 values (missing as NaN) of a numeric column (nullable, categorical included).

    Flags, dates and time spans are refused (:func:`check_weights_dtype`), although pandas
    would convert them to numbers. Text comes back as objects for :func:`check_design_weights`,
    which accepts numeric text and names the rows that are no numbers.
    """
    dtype = series.dtype
    if isinstance(dtype, pd.CategoricalDtype):
        dtype = dtype.categories.dtype
    check_weights_dtype(dtype, name=name)
    if pd.api.types.is_numeric_dtype(dtype):
        return series.to_numpy(dtype=np.float64, na_value=np.nan)
    return series.to_numpy(dtype=object, na_value=np.nan)


def _ldexp(x: float, e: int) -> float:
    """:math:`x 2^e`, ``inf`` on overflow."""
    try:
        return math.ldexp(x, e)
    except OverflowError:
        return math.inf


def _check_weight_total(
    total_value: float, n: int, known: bool, total: object, weights_name: str
) -> None:
    """The total of the raked weights must be a normal float64, and so their average.

    With share targets and no ``total=``, the raked weights sum to the design weights' total,
    which overflows for weights near 1e308 and is subnormal (few significant digits) for
    subnormal ones; the weights are then not representable as asked, so this raises rather than
    return infinities or zeros. ``known``: the total came from ``total=`` or count targets.
    """
    if math.isfinite(total_value) and total_value / n >= _TINY:
        return
    if not known:
        source = f"the sum of {weights_name}, as the targets are shares"
        fix = (
            "Pass total=N (the population size), or multiply the design weights by a constant "
            "(raking to shares does not depend on their scale)."
        )
    elif total is not None:
        source, fix = f"total={total!r}", "Pass a total of at least n times that float64 limit."
    else:
        source, fix = "the targets' total", "Give the targets in other units, or as shares."
    where = (
        "beyond the largest float64 (1.8e308)"
        if not math.isfinite(total_value)
        else f"{total_value / n:.3g} per row, below the smallest normal float64 ({_TINY:.3g}), "
        "with too few significant digits"
    )
    raise ValueError(
        f"the raked weights would sum to {total_value!r} ({source}) over {n} rows: {where}. {fix}"
    )


def _row_status(
    data: pd.DataFrame, variables: dict, codes: list[np.ndarray], na: str, unknown: str
) -> tuple[np.ndarray | None, np.ndarray | None]:
    """Rows dropped (missing values) and rows raked, as masks; ``(None, None)``: all raked.

    Raises on missing values (``na="error"``) and levels absent from the targets
    (``unknown="error"``); warns for ``unknown="zero"``.
    """
    if all(c.size == 0 or c.min() >= 0 for c in codes):
        return None, None
    dropped = np.zeros(len(data), dtype=bool)
    for key, c in zip(variables, codes, strict=True):
        missing = c == _NA
        if missing.any() and na == "error":
            _raise_na(data, key, variables[key][0], missing)
        dropped |= missing
    zeroed = np.zeros(len(data), dtype=bool)
    for key, c in zip(variables, codes, strict=True):
        unknown_rows = (c == _UNKNOWN) & ~dropped
        if unknown_rows.any():
            _unknown_levels(data, key, variables[key], unknown_rows, raise_=unknown == "error")
            zeroed |= unknown_rows
    raked = ~(dropped | zeroed)
    if not raked.any():
        raise ValueError("no row of data is left to rake after na='drop' / unknown='zero'.")
    return dropped, raked


def _check_levels(
    variables: dict,
    n_rows: list[np.ndarray],
    sample: list[np.ndarray],
    t: list[np.ndarray],
    t_run: list[np.ndarray],
    bounds: Any,
) -> None:
    """Raise on target levels without rows or out of reach of the bounds; warn on sparse ones.

    ``t_run``: the targets on the scale of the design weights ``sample`` was summed from
    (:func:`raking.survey.weights.scaled_targets`), for the bounds.
    """
    for (key, (_, levels, _)), rows, dsum, tv, tv_run in zip(
        variables.items(), n_rows, sample, t, t_run, strict=True
    ):
        empty = np.flatnonzero((rows == 0) & (tv > 0))
        raise_on_empty_levels(key, [levels[j] for j in empty], tv[empty])
        sparse = np.flatnonzero((rows > 0) & (rows < MIN_LEVEL_ROWS))
        warn_sparse_levels(key, [levels[j] for j in sparse], rows[sparse].tolist())
        if bounds is not None:
            check_bounded_levels(key, levels, tv_run, dsum, bounds)


def _design_columns(
    data: pd.DataFrame,
    pos: np.ndarray,
    strata: Sequence[Hashable | None],
    cluster: Sequence[Hashable | None],
    fpc: Sequence[Hashable | None],
    lonely_psu: str = "error",
    *,
    nest: bool = False,
) -> dict[str, Any]:
    """The design of the sampled rows ``pos`` from the columns of each stage (``_Design``'s).

    ``strata``, ``cluster``, ``fpc``: one column label (or ``None``) per stage, as
    :func:`raking.validation.stage_columns` returns them. Reads and codes the columns (missing
    values are errors naming the rows) and builds :class:`raking.survey.design.SurveyDesign`,
    which checks the nesting, the fpc and lonely strata.

    Returns
    -------
    dict
        ``strata`` (first-stage stratum codes of the rows, or None), ``cluster`` (PSU codes, or
        None: rows), ``fraction`` (first-stage sampling fraction per stratum, or None) and
        ``sampling`` (the :class:`~raking.survey.design.SurveyDesign` of every stage).
    """
    labels = data.index[pos]
    for name, cols in (("strata", strata), ("cluster", cluster), ("fpc", fpc)):
        for col in cols:
            missing = None if col is None else column(data, col, name).iloc[pos].isna().to_numpy()
            if missing is not None and missing.any():
                rows = labels[missing]
                raise ValueError(
                    f"{name} column {col!r} has {rows.size} missing value(s) among the raked "
                    f"rows, at rows {list(rows[:10])}{' ...' if rows.size > 10 else ''}; fill "
                    "them first (every sampled row needs its stratum, PSU and fpc)."
                )

    def coded(col: Hashable | None) -> Coded | None:
        if col is None:
            return None
        codes, uniques = pd.factorize(data[col].iloc[pos])
        return Coded(col, codes.astype(np.intp, copy=False), uniques)

    def numbers(col: Hashable | None) -> tuple[Hashable, np.ndarray] | None:
        if col is None:
            return None
        name = f"fpc (column {col!r})"
        return col, as_numbers(_as_float(data[col].iloc[pos], name), name=name, labels=labels)

    sampling = SurveyDesign.from_codes(
        pos.size,
        strata=[coded(c) for c in strata],
        cluster=[coded(c) for c in cluster],
        fpc=[numbers(c) for c in fpc],
        lonely_psu=lonely_psu,
        nest=nest,
    )
    first = sampling.stages[0]
    row_strata = first.stratum if first.unit is None else first.stratum[first.unit]
    return {
        "strata": None if strata[0] is None else row_strata,
        "cluster": first.unit,
        "fraction": first.fraction,
        "sampling": sampling,
    }


def _result(
    data: pd.DataFrame,
    variables: dict,
    result: RakingWeights,
    t: list[np.ndarray],
    n_rows: list[np.ndarray],
    sample: list[np.ndarray],
    full: np.ndarray,
    design: _Design,
    known: bool,
    bounds: tuple[float, float] | None,
) -> RakeResult:
    total = float(t[0].sum())
    margins = margin_table(variables, t, n_rows, sample, result.margins)
    return RakeResult(
        weights=pd.Series(full, index=data.index, name="weight"),
        converged=result.converged,
        iterations=result.sweeps,
        steps=result.steps,
        marginal_error=result.marginal_error,
        variable_errors=pd.Series(result.variable_errors, index=list(variables), name="error"),
        tol=result.tol,
        weight_total=total,
        total_known=known,
        bounds=bounds,
        margins=margins,
        method=result.method,
        stalled=result.stalled,
        _design=design,
        _data=data,
    )


@dataclass(frozen=True)
class _DesignOptions:
    """The design and replicate options of :func:`rake` and ``calibrate``, checked once.

    Built from their keyword arguments as given, which :meth:`keywords` hands on; checking sets
    ``lonely_psu`` to its checked value, ``stages`` (the column of each stage for ``strata``,
    ``cluster`` and ``fpc``, as :func:`raking.validation.stage_columns` returns them), ``kind``
    (the replicate type, ``None`` without replicates: :func:`raking.validation.check_replicates`),
    ``n_rep`` and ``rho`` (bootstrap replicates and Fay's factor, as
    :func:`raking.validation.check_replicate_options` returns them).
    """

    strata: Any
    cluster: Any
    fpc: Any
    lonely_psu: str
    nest: bool
    replicates: Any
    n_replicates: int | None
    seed: Any
    fay_rho: float | None
    replicate_scale: Any
    replicate_rscales: Any
    replicate_mse: bool
    stages: tuple[list[Hashable | None], ...] = field(init=False)
    kind: str | None = field(init=False)
    n_rep: int | None = field(init=False)
    rho: float = field(init=False)

    def __post_init__(self) -> None:
        lonely_psu = check_lonely_psu(self.lonely_psu)
        kind = check_replicates(self.replicates)
        n_rep, rho = check_replicate_options(
            kind,
            n_replicates=self.n_replicates,
            seed=self.seed,
            fay_rho=self.fay_rho,
            replicate_scale=self.replicate_scale,
            replicate_rscales=self.replicate_rscales,
            replicate_mse=self.replicate_mse,
        )
        stages = stage_columns(self.strata, self.cluster, self.fpc)
        for name, value in zip(
            ("lonely_psu", "kind", "n_rep", "rho", "stages"),
            (lonely_psu, kind, n_rep, rho, stages),
            strict=True,
        ):
            object.__setattr__(self, name, value)

    def keywords(self, *, replicates: bool = True) -> dict[str, Any]:
        """The options as :func:`rake`'s keyword arguments (``replicates=False``: the design's)."""
        names = ["strata", "cluster", "fpc", "lonely_psu", "nest"]
        if replicates:
            names += ["replicates", "n_replicates", "seed", "fay_rho", "replicate_scale"]
            names += ["replicate_rscales", "replicate_mse"]
        return {name: getattr(self, name) for name in names}


def _replicate_design(
    data: pd.DataFrame,
    options: _DesignOptions,
    columns: dict[str, Any],
    sample_pos: np.ndarray,
    raked_pos: np.ndarray,
    d: np.ndarray,
) -> replicate_methods.ReplicateDesign:
    """The replicate design weights of the raked rows (multipliers of ``d``), checked.

    Built from the first-stage design of the sampled rows: the first stage's stratum column of
    ``options`` (whose labels number BRR's strata and name them in messages) and
    ``columns["cluster"]`` (PSU codes), ``columns["fraction"]``; or the table of replicate
    weights ``options.replicates``.
    """
    kind, replicates, strata = options.kind, options.replicates, options.stages[0][0]
    mse = bool(options.replicate_mse)
    s = sample_pos.size
    if kind == "given":
        values = replicates
        names: tuple = ()
        if isinstance(values, pd.DataFrame):
            names = tuple(values.columns)
            values = values.reindex(data.index).to_numpy(dtype=np.float64, na_value=np.nan)
        rows = np.zeros(len(data), dtype=bool)
        rows[sample_pos[raked_pos]] = True
        arr = check_replicate_weights(values, len(data), rows, data.index)  # type: ignore[arg-type]
        n_rep = arr.shape[1]
        names = names or tuple(f"r{j + 1}" for j in range(n_rep))
        scale_value, rscale_values = check_replicate_scales(
            options.replicate_scale, options.replicate_rscales, n_rep
        )
        return replicate_methods.given(
            arr[rows], d, names, scale=scale_value, rscales=rscale_values, mse=mse
        )
    h, labels, fraction = None, None, columns["fraction"]
    if strata is not None and columns["strata"] is not None:
        # strata numbered by first appearance (R's order of the jackknife's replicates)
        h, codes = pd.factorize(np.asarray(columns["strata"]))
        first = np.unique(h, return_index=True)[1]
        labels = column(data, strata, "strata").iloc[sample_pos].to_numpy()[first]
        fraction = None if fraction is None else np.asarray(fraction)[codes]
    cluster = columns["cluster"]
    psu = None if cluster is None else pd.factorize(np.asarray(cluster))[0]
    stratum_of_psu = replicate_methods._psus(h, psu, s)[1]
    check_replicate_design(
        kind,
        stratum_of_psu,
        None if labels is None else [_plain(x) for x in labels],
        strata=strata,
        cluster=cluster,
    )
    if kind in ("jk1", "jkn"):
        spec = replicate_methods.jackknife(
            h, psu, fraction, s, stratified=kind == "jkn", mse=mse
        )
        if spec.n_replicates == 0:
            raise ValueError(
                "every stratum was sampled whole (fpc equal to its sample size): the jackknife "
                "has no replicate and the variance is 0; drop fpc= or replicates=."
            )
    elif kind == "bootstrap":
        spec = replicate_methods.bootstrap(
            h, psu, s, n_replicates=options.n_rep, rng=check_seed(options.seed), mse=mse  # type: ignore[arg-type]
        )
    else:
        plain = [_plain(x) for x in labels]  # type: ignore[union-attr]
        spec = replicate_methods.brr(h, psu, plain, s, rho=options.rho, mse=mse)  # type: ignore[arg-type]
    return spec.restrict(raked_pos)


def _unit_factors(units: Any, weights: np.ndarray, d: np.ndarray) -> np.ndarray | None:
    """The full sample's raking factor :math:`w / d` of each unit (cell or row), if finite."""
    g = weights / d
    if not np.isfinite(g).all():
        return None
    if units.cell_of_row is None:
        return g
    out = np.empty(units.design.shape[0])
    out[units.cell_of_row] = g
    return out


def _plain(label: object) -> object:
    """A NumPy scalar label as the Python scalar it holds (for messages and sorting)."""
    return label.item() if isinstance(label, np.generic) else label


def _warn_replicates(
    reraked: replicate_methods.RerakedReplicates,
    steps: int | None,
    bounds: tuple[float, float] | None,
) -> None:
    """Warn when some replicates did not converge to ``tol`` (re-raked or re-calibrated)."""
    bad = np.flatnonzero(~reraked.converged)
    if steps is not None or bad.size == 0:
        return
    stalled = int(np.count_nonzero(reraked.stalled))
    warnings.warn(
        f"{bad.size} of {reraked.design.n_replicates} replicates did not converge when re-weighted "
        f"(replicates {(bad[:10] + 1).tolist()}{' ...' if bad.size > 10 else ''}; max margin "
        f"error {float(np.nanmax(reraked.errors)):.3g} of the total; {stalled} stalled): a "
        "replicate that drops the only rows of a target level cannot meet it"
        + (f", or bounds={bounds} are too tight for it" if bounds else "")
        + ". Their estimates still enter the SE; merge sparse levels or use another method.",
        ConvergenceWarning,
        stacklevel=3,
    )
