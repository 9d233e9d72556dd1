"""Checks of the sampling design of :func:`raking.rake` (``strata=``, ``cluster=``, ``fpc=``).

Plain Python and NumPy (the pandas front end reads the columns and passes labels in). The stages
are given outermost first, one column per stage; the messages name the argument, the stage, the
stratum or unit by its label, and the fix. :mod:`raking.survey.design` builds the stages and
calls the ``raise_*`` functions when the data break a rule.
"""

from __future__ import annotations

from collections.abc import Hashable

import numpy as np

from raking.validation._scalars import check_option

LONELY_PSU_OPTIONS = ("error", "certainty", "remove", "adjust", "average")
"""R ``survey``'s ``options(survey.lonely.psu=)``, with ``"error"`` for R's ``"fail"``."""

LONELY_PSU_HINT = (
    "A stratum with a single sampled PSU has no variance estimate of its own; R survey's "
    "options(survey.lonely.psu=): 'error' refuses it, 'certainty' and 'remove' let it "
    "contribute 0, 'adjust' measures it from 0 (the stratum's total, uncentred), 'average' "
    "gives it the average variance of the other strata."
)


def check_lonely_psu(value: object) -> str:
    """One of :data:`LONELY_PSU_OPTIONS`."""
    return check_option(value, options=LONELY_PSU_OPTIONS, name="lonely_psu", hint=LONELY_PSU_HINT)


def _label(value: object) -> str:
    return repr(value.item() if isinstance(value, np.generic) else value)


def _per_stage(value: object) -> list:
    """A list is one entry per stage; anything else (a label, a tuple label, None) is one."""
    return list(value) if isinstance(value, list) else [value]


def stage_columns(
    strata: object, cluster: object, fpc: object
) -> tuple[list[Hashable | None], list[Hashable | None], list[Hashable | None]]:
    """The column of each stage for ``strata``, ``cluster`` and ``fpc``, outermost first.

    A list gives one entry per stage (a tuple is one label: a MultiIndex column). ``cluster``
    sets the number of stages :math:`K` (``None``: one stage whose units are the rows);
    ``strata`` may be shorter (later stages unstratified within their parent unit) or hold
    ``None`` for an unstratified stage; ``fpc`` is ``None`` or one entry per stage (``None``
    for a stage sampled with replacement, R's ``fpc = Inf``).

    Returns
    -------
    (strata, cluster, fpc) : three lists of length :math:`K`, padded with ``None``.
    """
    if isinstance(cluster, list) and not cluster:
        raise ValueError(
            "cluster=[] names no stage; give one column per stage, outermost first (e.g. "
            "cluster=['dnum', 'snum'] for districts, then schools), or cluster=None when the "
            "rows are the PSUs."
        )
    clusters = _per_stage(cluster)
    if len(clusters) > 1 and any(c is None for c in clusters):
        raise ValueError(
            f"cluster={cluster!r} has a None stage; every stage of a multi-stage design needs "
            "the column of its units (for units that are rows, a column of row identifiers)."
        )
    k = len(clusters)
    stages = f"the {k} stages of cluster={cluster!r}" if k > 1 else "the one stage of cluster="
    stratas = _per_stage(strata)
    if len(stratas) > k:
        raise ValueError(
            f"strata has {len(stratas)} entries for {stages}; give at most one stratum column "
            "per stage, outermost first (None for an unstratified stage; later stages missing "
            "from the list are unstratified within their parent unit)."
        )
    if fpc is None or (isinstance(fpc, list) and all(f is None for f in fpc) and len(fpc) == k):
        fpcs: list = [None] * k
    else:
        fpcs = _per_stage(fpc)
        if len(fpcs) != k:
            example = ", ".join(repr(f"fpc{i + 1}") for i in range(k))
            raise ValueError(
                f"fpc has {len(fpcs)} entr{'y' if len(fpcs) == 1 else 'ies'} for {stages}; give "
                f"one per stage, outermost first (e.g. fpc=[{example}]; None for a stage sampled "
                "with replacement), as R's svydesign(fpc=~fpc1+fpc2) needs one per stage."
            )
    return stratas + [None] * (k - len(stratas)), clusters, fpcs


def raise_single_unit(
    *,
    stage: int,
    stratum: object,
    stratified: bool,
    cluster: Hashable | None,
    parent: str | None,
) -> None:
    """A stratum of ``stage`` (1-based) has one sampled unit and ``lonely_psu="error"``.

    ``stratum``: its label; ``stratified``: whether ``strata=`` names a column at that stage;
    ``cluster``: the column of the stage's units (``None``: rows); ``parent``: how the unit of the
    previous stage holding the stratum is named (stages after the first).
    """
    where = f"stratum {_label(stratum)}" if stratified else "the sample"
    if parent is not None:
        where = (f"{where} of " if stratified else "") + parent
        where = f"stage {stage}: {where}"
    unit = "row" if cluster is None else f"cluster (of column {cluster!r})"
    if stage == 1:
        fix = "merge it with another stratum" if stratified else "drop cluster="
        fix += (
            ", or pass lonely_psu='certainty', 'remove', 'adjust' or 'average' (R's "
            "survey.lonely.psu)"
        )
        raise ValueError(
            f"{where} has a single PSU (one {unit} among the raked rows); the standard errors "
            f"cannot be estimated from it. Every stratum needs at least 2 PSUs: {fix}."
        )
    raise ValueError(
        f"{where} has a single sampled unit (one {unit} among the raked rows), and with a "
        f"finite population correction above it its stage-{stage} variance is needed but "
        "cannot be estimated. Pass lonely_psu='certainty', 'remove', 'adjust' or 'average' "
        "(R's survey.lonely.psu)"
        + (", or merge it with another stratum of its stage." if stratified else ".")
    )


def raise_not_nested(
    *, stage: int, argument: str, column: Hashable, unit: object, strata: tuple[object, object]
) -> None:
    """A unit of ``stage`` lies in two strata of that stage (``nest=False``)."""
    outer = "strata" if stage == 1 else f"strata of stage {stage}"
    raise ValueError(
        f"{argument} column {column!r} (stage {stage}) has unit {_label(unit)} in two {outer}, "
        f"{_label(strata[0])} and {_label(strata[1])}; a sampled unit lies in one stratum. If "
        "the labels are reused across strata (numbered within each stratum), pass nest=True "
        "to read each label within its stratum (R's svydesign(nest=TRUE)); otherwise check "
        "strata=."
    )


def raise_fpc_not_constant(
    *, stage: int, column: Hashable, where: str, values: tuple[float, float]
) -> None:
    """``fpc`` varies within a stratum of ``stage``; ``where`` names the stratum."""
    raise ValueError(
        f"fpc column {column!r} must be constant within each stratum (stage {stage}: {where} "
        f"has {values[0]!r} and {values[1]!r}); it holds the population number of units of "
        "the stratum (or its sampling fraction), one value for all its rows."
    )


def raise_fpc_out_of_range(
    *, stage: int, column: Hashable, where: str, value: float, n_units: int
) -> None:
    """``fpc`` of a stratum is negative, or a count below its ``n_units`` sampled units."""
    unit = "PSUs" if stage == 1 else f"units of stage {stage}"
    if not value >= 0:
        problem = f"is {value!r}, not a population count (> 1) or a sampling fraction in [0, 1]"
    else:
        problem = (
            f"is {value!r}, smaller than the {n_units} sampled {unit} of that stratum "
            "(a sampling fraction above 1)"
        )
    raise ValueError(
        f"fpc column {column!r} gives more sampled {unit} than the population has: stage "
        f"{stage}, {where}: the fpc {problem}. It must hold the population number of {unit} "
        "per stratum (or the sampling fraction, at most 1)."
    )
