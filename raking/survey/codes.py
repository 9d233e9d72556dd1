"""Targets and integer codes for :func:`raking.rake`: one pass over each raked column.

Each target variable (a column, or a tuple of columns for a crossed margin) becomes an integer
array (``int8`` up to 128 levels) of level indices into the target's levels: ``.cat.codes`` for
categoricals, otherwise ``pandas.factorize`` (hashing, O(n)), then a small lookup from the
distinct values to the target levels. Values absent from the targets get ``_UNKNOWN``, missing
values ``_NA`` (or the target's NaN level with ``na="level"``). Errors and warnings name the
variable, the column and the levels.
"""

from __future__ import annotations

import warnings
from collections.abc import Hashable, Mapping
from typing import Any

import numpy as np
import pandas as pd

from raking.survey.weights import code_dtype
from raking.validation import (
    check_columns,
    check_target_values,
    raise_on_na,
    raise_on_unknown_levels,
)

_UNKNOWN = -1
_NA = -2

_NA_HINT = (
    "'error' raises on missing values in raked columns, 'drop' rakes without those rows, "
    "'level' makes missing a level of its own."
)
_UNKNOWN_HINT = "'error' raises on levels absent from the targets, 'zero' gives them weight 0."


def _parse_targets(
    targets: object, data: pd.DataFrame
) -> dict[Hashable, tuple[tuple[Hashable, ...], list[Any], np.ndarray]]:
    """``{key: (columns, levels, values)}`` in the order given."""
    if not isinstance(targets, Mapping) or not targets:
        raise TypeError(
            "targets must be a non-empty mapping {column: {level: count or share}}, got "
            f"{type(targets).__name__}; e.g. targets={{'sex': {{'F': 0.51, 'M': 0.49}}}}."
        )
    out = {}
    for key, spec in targets.items():
        cols = tuple(key) if _is_crossed(data, key) else (key,)
        check_columns(f"targets[{key!r}]", list(cols), list(data.columns))
        for col in cols:
            column(data, col, f"targets[{key!r}]")
        if isinstance(spec, pd.Series):
            levels, values = list(spec.index), spec.to_numpy()
        elif isinstance(spec, Mapping):
            levels, values = list(spec.keys()), list(spec.values())
        else:
            raise TypeError(
                f"targets[{key!r}] must map each level to its target (a dict or a pandas.Series "
                f"indexed by level), got {type(spec).__name__}."
            )
        if len(cols) > 1 and not all(isinstance(x, tuple) and len(x) == len(cols) for x in levels):
            raise ValueError(
                f"targets[{key!r}] is a crossed margin of {len(cols)} columns, so each level must "
                f"be a tuple of {len(cols)} values (one per column), got {levels[:3]}."
            )
        out[key] = (cols, levels, check_target_values(key, levels, values))
    return out


def _is_crossed(data: pd.DataFrame, key: object) -> bool:
    """A tuple key is a crossed margin of columns, unless it is itself a column label.

    With MultiIndex columns, a tuple of scalars with one entry per level is a column label
    (then reported missing if data lacks it); a crossed margin of such columns is a tuple of
    tuples.
    """
    if not isinstance(key, tuple) or has_column(data, key):
        return False
    columns = data.columns
    return not (
        isinstance(columns, pd.MultiIndex)
        and len(key) == columns.nlevels
        and not any(isinstance(k, tuple) for k in key)
    )


def has_column(data: pd.DataFrame, key: object) -> bool:
    """Whether ``key`` is a label of ``data``'s columns (a str, an int, a tuple, ...)."""
    try:
        return key in data.columns
    except TypeError:  # unhashable: an array, a list
        return False


def column(data: pd.DataFrame, key: Hashable, owner: str) -> pd.Series:
    """The one column labelled ``key``; errors name ``owner`` (the argument) and the label.

    Any hashable label works, including ints and the tuples of MultiIndex columns. A label that
    selects several columns (duplicated, or the first level of a MultiIndex) is an error.
    """
    check_columns(owner, [key], list(data.columns))
    selected = data[key]
    if isinstance(selected, pd.DataFrame):
        raise ValueError(
            f"{owner} names column {key!r}, but that label selects {selected.shape[1]} columns "
            f"of data ({list(selected.columns)[:5]}); give each column a unique label (e.g. "
            "data.loc[:, ~data.columns.duplicated()]) or name one column in full."
        )
    return selected


def _code_column(series: pd.Series, levels: list[Any], na: str) -> np.ndarray:
    """Index of each row's value in ``levels``; ``_UNKNOWN`` if absent, ``_NA`` if missing.

    The codes come in the smallest signed integer dtype that holds them (``int8`` up to 127
    levels), a new array. A categorical whose categories are ``levels`` in order, without
    missing values, costs one copy of its codes; otherwise one gather from a small lookup.
    """
    if isinstance(series.dtype, pd.CategoricalDtype):
        raw, uniques = series.cat.codes.to_numpy(), series.cat.categories
    else:
        raw, uniques = _factorize(series)
    dtype = code_dtype([len(levels)])
    index = pd.Index(levels, dtype=object)
    lookup = index.get_indexer(pd.Index(uniques, dtype=object))
    if np.array_equal(lookup, np.arange(len(levels))) and (raw.size == 0 or raw.min() >= 0):
        return raw.astype(dtype)  # the categories are the levels, in order
    na_level = [j for j, x in enumerate(levels) if _is_na(x)]
    na_code = na_level[0] if na == "level" and na_level else (_UNKNOWN if na == "level" else _NA)
    return np.append(lookup, na_code).astype(dtype)[raw]


def _factorize(series: pd.Series) -> tuple[np.ndarray, Any]:
    """``pandas.factorize(series)``, or for integers of a small range their offsets in it.

    A NumPy integer column whose values span fewer than ``min(2**16, max(rows, 256))``
    integers is coded by subtracting its minimum (the "uniques" are then the whole range,
    present or not): two passes instead of a hash of every row, 3-4 times faster.
    """
    dtype = series.dtype
    small = isinstance(dtype, np.dtype) and (
        dtype.kind == "i" or (dtype.kind == "u" and dtype.itemsize <= 4)
    )
    if small and len(series):
        values = series.to_numpy()
        lo, hi = int(values.min()), int(values.max())
        if hi - lo < min(1 << 16, max(values.size, 256)):
            return np.subtract(values, lo, dtype=np.intp), np.arange(lo, hi + 1, dtype=dtype)
    return pd.factorize(series)


def _is_na(x: object) -> bool:
    return not isinstance(x, tuple) and bool(pd.isna(x))


def _code_variable(
    data: pd.DataFrame, cols: tuple[Hashable, ...], levels: list[Any], na: str
) -> np.ndarray:
    if len(cols) == 1:
        return _code_column(data[cols[0]], levels, na)
    parts = [list(dict.fromkeys(lv[k] for lv in levels)) for k in range(len(cols))]
    sizes = [len(p) for p in parts]
    key = np.zeros(len(data), dtype=np.int64)
    status = np.zeros(len(data), dtype=np.int64)
    for col, part, size in zip(cols, parts, sizes, strict=True):
        c = _code_column(data[col], part, na)
        status = np.minimum(status, np.minimum(c, 0))  # missing (-2) wins over unknown (-1)
        key = key * size + np.maximum(c, 0)
    lookup = np.full(int(np.prod(sizes)), _UNKNOWN, dtype=np.int64)
    for j, lv in enumerate(levels):
        flat = 0
        for k, size in enumerate(sizes):
            flat = flat * size + parts[k].index(lv[k])
        lookup[flat] = j
    dtype = code_dtype([len(levels)])
    return np.where(status < 0, status, lookup[key]).astype(dtype)


def _raise_na(data: pd.DataFrame, key: Hashable, cols: tuple, missing: np.ndarray) -> None:
    col = next(c for c in cols if data[c].isna().to_numpy()[missing].any())
    rows = data.index[missing]
    raise_on_na(key, col, list(rows[:10]), int(missing.sum()))


def _unknown_levels(
    data: pd.DataFrame, key: Hashable, variable: tuple, rows: np.ndarray, *, raise_: bool
) -> None:
    cols, levels, _ = variable
    sub = pd.DataFrame({k: data[col].to_numpy()[rows] for k, col in enumerate(cols)})
    report_unknown_levels(key, sub.value_counts(dropna=False), levels, raise_=raise_)


def report_unknown_levels(
    key: Hashable, counts: pd.Series, levels: list, *, raise_: bool
) -> None:
    """Raise (``unknown="error"``) or warn (``"zero"``) about levels the targets do not list.

    ``counts``: rows per unknown level, indexed by tuples of the columns' values (a
    categorical's unused categories, with count 0, are left out).
    """
    counts = counts[counts > 0]
    labels = [lv if len(lv) > 1 else lv[0] for lv in counts.index]
    if raise_:
        raise_on_unknown_levels(key, labels, counts.tolist(), levels)
    shown = ", ".join(f"{lv!r} ({c} rows)" for lv, c in zip(labels[:10], counts, strict=False))
    warnings.warn(
        f"unknown='zero': rows with level(s) {shown} of targets[{key!r}], which the targets do "
        "not list, get weight 0.",
        UserWarning,
        stacklevel=5,
    )
