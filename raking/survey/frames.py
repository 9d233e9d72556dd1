r"""Rake data that stay where they are: Dask DataFrames, Polars frames and PyArrow tables.

:func:`rake_frame` (reached through :func:`raking.rake`) rakes the **cells** of the crossed codes
of the raked columns, not the rows: every row of a cell gets the same raking factor :math:`g_c`,
so the raking needs only, per cell, the number of rows and the summed design weight
:math:`D_c = \sum_{i \in c} d_i` -- a table of thousands to a few million cells, however many
rows there are. Only three things touch the rows, each embarrassingly parallel:

1. **counting** -- one aggregation: per group of rows, their count, :math:`\sum d`,
   :math:`\sum d^2`, min and max of :math:`d` and the number of bad design weights;
2. **coding** -- the level of each row in the targets, by the same coder as the pandas path
   (:func:`raking.survey.codes._code_variable`), so a level outside the targets, a missing
   value or a missing column gives the same error, with the same message, as pandas;
3. **mapping back** -- :math:`w_i = g_{c(i)} d_i`, lazily.

The cells are then raked on the client by the solver of the pandas path
(:func:`raking.survey.weights._rake_units` on cell units), so the weights are those of
``raking.rake(pandas_frame)`` to rounding (1e-15 relative measured; the pandas path rakes the
same cells unless they are more than half the rows, when it rakes the rows: the same fixed
point, reached within ``tol``).

Backends (two, on purpose):

- **Dask** (``dask.dataframe.DataFrame``): each partition is a pandas DataFrame, coded by the
  pandas coder itself; the per-partition group sums go through Dask's own groupby-aggregation
  (a tree reduction, ``split_every``), so it runs on any scheduler -- threads, a
  ``distributed.LocalCluster`` or an existing ``Client(address)``. ``result.weights`` is a lazy
  Dask Series with ``ddf``'s partitions and index (``ddf.assign(weight=result.weights)``);
  nothing is computed on the client but the cell table.
- **Polars** (``DataFrame``, ``LazyFrame``; a ``pyarrow.Table`` goes through
  ``polars.from_arrow``, without copying): a ``group_by`` of the raw values of the raked
  columns (null and NaN kept as groups; a lazy frame in streamed batches of ``_GROUP_ROWS``
  rows, the partial tables merged, so memory does not grow with the rows), coded on the client
  by the pandas coder, and a left join of the rows with that small table (null-equal keys) for
  the weights -- the same lazy plan for eager and lazy frames, so a ``LazyFrame`` (e.g.
  ``polars.scan_parquet``) is streamed and ``result.weights`` is a ``LazyFrame`` with one
  column ``weight`` (``result.weights.sink_parquet(path)``); eager input gives a
  ``polars.Series``, a PyArrow table a ``pyarrow.Array``.

Why not ``narwhals`` (one API over pandas, Polars, PyArrow and Dask)? Its Dask backend needs
``dask >= 2024.8`` (this package admits 2024.1), its joins have no null-equal keys (a null or NaN
level must find its factor), and on Dask the pandas coder per partition gives the pandas path's
codes and errors by construction. Two small backends behind one interface (:class:`_Rows`)
keep the raking, the checks and the estimates in one client-side code path.

Estimates (:mod:`raking.survey.frame_results`) read the rows in chunks (Dask partitions, or
streamed batches of a Polars frame, ``_CHUNK_ROWS`` rows each, as pandas frames): each row's
cell and weight come from its coded key looked up in the cell plan (:func:`row_weights`), and
the chunks' group sums are reduced (Dask's tree reduction; for Polars, summed every
``_MERGE`` chunks).

Limits. More than ``MAX_CELLS`` non-empty cells (a raked column with nearly one level per
row) is refused with a message: the cell table would not be small, and a row-level raking of
data that do not fit in memory is not offered. Replicate weights (``replicates=``),
multi-stage designs (a list of several ``cluster`` columns) and design weights given as an
array are refused with a message naming the workaround.
"""

from __future__ import annotations

import functools
import inspect
import math
from collections.abc import Callable, Hashable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from raking.survey.codes import _NA, _UNKNOWN, _code_variable, report_unknown_levels
from raking.validation import check_weights_dtype, raise_on_na

__all__ = ["MAX_CELLS", "frame_kind"]

MAX_CELLS = 10_000_000
"""Most non-empty cells of the crossed codes a Dask or Polars frame is raked on."""

_CHUNK_ROWS = 1_000_000  # rows per chunk when the estimates read a Polars frame
_GROUP_ROWS = 2_500_000  # rows per batch when the cells of a lazy Polars frame are counted
_MERGE = 8  # partial tables of the slices merged at a time
_G = "__raking_g"  # the factor column of the Polars join
_CELL = "__raking_cell"  # the cell column of the Polars join (-1: zeroed, -2: dropped)
_ROW = "__raking_row"


def frame_kind(data: object) -> str | None:
    """``"dask"``, ``"polars"`` (eager or lazy), ``"pyarrow"``, or ``None`` (anything else).

    By the type's module, without importing Dask or Polars.
    """
    module = type(data).__module__.split(".")[0]
    name = type(data).__name__
    if module in ("dask", "dask_expr") and name == "DataFrame":
        return "dask"
    if module == "polars" and name in ("DataFrame", "LazyFrame"):
        return "polars"
    if module == "pyarrow" and name == "Table":
        return "pyarrow"
    return None


@dataclass(frozen=True)
class _Coding:
    """How to code the rows: per variable its columns and target levels; missing values."""

    variables: tuple[tuple[tuple[Hashable, ...], tuple[Any, ...]], ...]
    na: str
    weights: Hashable | None  # the design-weight column, or None (equal weights)
    weights_name: str

    @property
    def columns(self) -> list[Hashable]:
        """Every raked column once, in order."""
        return list(dict.fromkeys(c for cols, _ in self.variables for c in cols))

    def codes(self, part: pd.DataFrame) -> list[np.ndarray]:
        """The level codes of a pandas chunk (``_NA``, ``_UNKNOWN`` as the pandas path)."""
        return [
            _code_variable(part, cols, list(levels), self.na) for cols, levels in self.variables
        ]

    def design(self, part: pd.DataFrame) -> np.ndarray:
        """float64 design weights of a pandas chunk (NaN for missing; 1 without ``weights``)."""
        if self.weights is None:
            return np.ones(len(part))
        from raking.survey.frontend import _as_float
        from raking.validation import as_numbers

        values = _as_float(part[self.weights], self.weights_name)
        return as_numbers(values, name=self.weights_name, labels=part.index)


@dataclass(frozen=True)
class CellPlan:
    """The raked cells and how to give each row its weight (client side, small).

    Attributes
    ----------
    keys : numpy.ndarray of int64, shape ``(G,)``
        Sorted mixed-radix keys of the groups of codes (codes shifted by 2, so that the
        sentinels ``_NA = -2`` and ``_UNKNOWN = -1`` have keys too).
    cell : numpy.ndarray of int64, shape ``(G,)``
        Cell of each group (``-1``: rows of weight 0, ``unknown="zero"``; ``-2``: dropped).
    factor : numpy.ndarray of float64, shape ``(C,)``
        :math:`g_c 2^{e}` of each cell: a row's weight is ``factor[cell] * ldexp(d, -e)``.
    shift : int
        :math:`e` of :func:`raking.survey.weights.design_scale`.
    design0 : float
        The design weight of every row when no ``weights`` column is given (total / n).
    radix : tuple of int
        :math:`L_v + 2` of each variable (the key's digits).
    """

    keys: np.ndarray
    cell: np.ndarray
    factor: np.ndarray
    shift: int
    design0: float
    radix: tuple[int, ...]

    @property
    def drops(self) -> bool:
        """Whether some group is dropped (``na="drop"``): else every row is sampled."""
        return bool(np.any(self.cell == -2))

    def group_factors(self) -> tuple[np.ndarray, np.ndarray]:
        r"""The cell and the factor of each group of ``keys``, and of one more: a group unseen.

        ``factor``: :math:`g_c 2^{e}` of the group's cell, 0 for a zeroed group (cell -1), NaN
        for a dropped one (cell -2) and for the last entry (a group the counting did not see:
        dropped), so that position -1 of :func:`_find_keys` reads the last entry.
        """
        cell = np.append(self.cell, -2)
        factor = np.where(cell >= 0, self.factor[np.maximum(cell, 0)], 0.0)
        factor[cell == -2] = np.nan
        return cell, factor

    def for_rows(self, *, cells: bool) -> RowPlan:
        """What the passes over the rows need (:class:`RowPlan`), with the cells or not."""
        cell, factor = self.group_factors()
        steps = np.diff(self.keys)
        top = int(steps.max()) if steps.size else 0
        kind = next(
            t for t in (np.uint8, np.uint16, np.uint32, np.uint64) if top <= np.iinfo(t).max
        )
        return RowPlan(
            first=int(self.keys[0]),
            steps=steps.astype(kind),
            factor=factor,
            cell=cell.astype(np.int32) if cells else None,
            shift=self.shift,
            design0=self.design0,
            radix=self.radix,
        )


@dataclass(frozen=True)
class RowPlan:
    """The part of a :class:`CellPlan` a pass over the rows reads, compact for the graph.

    Per group of the plan's sorted keys, and one more for a group the counting did not see:
    its factor (:meth:`CellPlan.group_factors`) and, when the pass needs it, its cell (int32).
    The keys travel as the first one and the steps between them in the smallest unsigned
    dtype that holds them (one or two bytes a group where the groups are dense in the key
    space): about 10 bytes a group for the weights, 14 with the cells, not 24, so that a Dask
    graph of 750,000 groups stays under ``distributed``'s 10 MiB warning.
    """

    first: int
    steps: np.ndarray
    factor: np.ndarray
    cell: np.ndarray | None
    shift: int
    design0: float
    radix: tuple[int, ...]

    @property
    def keys(self) -> np.ndarray:
        """The sorted keys of the groups (int64)."""
        keys = np.empty(self.steps.size + 1, dtype=np.int64)
        keys[0] = self.first
        np.cumsum(self.steps, dtype=np.int64, out=keys[1:])
        keys[1:] += self.first
        return keys


def _group_keys(codes: Sequence[np.ndarray], radix: Sequence[int]) -> np.ndarray:
    r"""Mixed-radix int64 key of each row's codes (shifted by 2).

    :math:`k = (\dots((c_1 + 2) r_2 + c_2 + 2) r_3 + \dots) + c_p + 2`, by Horner's rule in
    place on one int64 array, the shifts added once at the end.
    """
    key = np.zeros(codes[0].shape[0] if codes else 0, dtype=np.int64)
    shift = 0
    for c, r in zip(codes, radix, strict=True):
        key *= r
        key += c
        shift = shift * r + 2
    key += shift
    return key


def _decode_keys(keys: np.ndarray, radix: Sequence[int]) -> np.ndarray:
    """The codes ``(p, G)`` of mixed-radix keys (inverse of :func:`_group_keys`)."""
    out = np.empty((len(radix), keys.size), dtype=np.int64)
    rest = keys.copy()
    for v in range(len(radix) - 1, -1, -1):
        out[v] = rest % radix[v] - 2
        rest //= radix[v]
    return out


def check_radix(radix: Sequence[int]) -> None:
    """The groups' keys must fit int64 (else too many cells anyway)."""
    if math.prod(radix) >= 2**62:
        raise ValueError(
            f"the raked variables have {[r - 2 for r in radix]} levels: their crossed cells "
            f"cannot be counted in int64 keys, and a Dask or Polars frame is raked on at most "
            f"{MAX_CELLS:,} cells (raking.survey.frames.MAX_CELLS). Merge levels, or rake a "
            "pandas DataFrame (which rakes the rows when the cells are too many)."
        )


_DENSE_KEYS = 1 << 24  # largest key space looked up through a dense table (int32: 64 MiB)


def _find_keys(keys: np.ndarray, key: np.ndarray, space: int) -> np.ndarray:
    """The position of each ``key`` in the sorted unique ``keys``, or -1 where absent.

    A gather from a dense table over the key space ``[0, space)`` when it is at most
    ``_DENSE_KEYS`` (one random read per row), else a hash lookup (``pandas.Index``): both are
    4-20 times faster than a binary search of the rows in ``keys`` (which misses the cache).
    """
    if space > _DENSE_KEYS:
        return pd.Index(keys).get_indexer(key)
    table = np.full(space, -1, dtype=np.int32)
    table[keys] = np.arange(keys.size, dtype=np.int32)
    return table[key]


def row_weights(
    codes: Sequence[np.ndarray], d: np.ndarray, plan: RowPlan
) -> tuple[np.ndarray, np.ndarray | None]:
    r"""The raked weight :math:`w_i = g_{c(i)} 2^{e} \, 2^{-e} d_i` and the cell of each row.

    Dropped rows (cell -2) get NaN, zeroed rows (cell -1) 0, whatever their design weight (a
    factor 0 marks them). The cells are ``None`` when ``plan`` was made without them.
    """
    where = _find_keys(plan.keys, _group_keys(codes, plan.radix), math.prod(plan.radix))
    w = plan.factor[where]
    zeroed = w == 0.0
    w *= np.ldexp(d, -plan.shift) if plan.shift else d
    if zeroed.any():
        w[zeroed] = 0.0
    return w, None if plan.cell is None else plan.cell[where].astype(np.int64)


# ------------------------------------------------------------------------------------------
# The two backends
# ------------------------------------------------------------------------------------------


class _Rows:
    """The rows of a Dask or Polars frame, as the raking and its estimates read them."""

    kind: str
    meta: pd.DataFrame  # an empty pandas frame with the columns (and, for Dask, the dtypes)

    def groups(self, coding: _Coding, radix: tuple[int, ...]) -> pd.DataFrame:
        """Per group of codes: ``key``, ``n``, ``d``, ``d2``, ``dmin``, ``dmax``, ``bad``.

        ``key``: the mixed-radix key of the codes (:func:`_group_keys`), sorted; ``n`` rows;
        ``d``, ``d2``: sums of the design weights and their squares (1 without ``weights``);
        ``dmin``, ``dmax``; ``bad``: rows whose design weight is missing, <= 0 or not finite.
        """
        raise NotImplementedError

    def weights(self, plan: CellPlan, coding: _Coding) -> Any:
        """The lazy weights (module docstring)."""
        raise NotImplementedError

    def map_reduce(
        self,
        columns: Sequence[Hashable],
        chunk: Callable[[dict[str, Any]], pd.DataFrame],
        keys: Sequence[str],
        *,
        weights: bool = True,
    ) -> pd.DataFrame:
        """``chunk`` on every chunk of rows, then the sums of its output per ``keys``.

        ``chunk`` gets ``{"w": weights, "d": design weights (scaled), "cell": cells,
        "sampled": cell >= -1, "index": row labels, column: pandas Series}`` and returns a
        small pandas DataFrame with the ``keys`` columns and columns to sum. With
        ``weights=False`` it gets only ``"sampled"``, ``"index"`` and the columns, and the
        rows are coded only when some are dropped (else every row is sampled).
        """
        raise NotImplementedError

    def first_rows(
        self, mask: Callable[[pd.DataFrame], np.ndarray], columns: list, value: Any = None
    ) -> tuple[list, list]:
        """The first 10 rows where ``mask``: labels, and the values of column ``value``.

        Labels: the index for Dask, row numbers for Polars (errors only).
        """
        raise NotImplementedError

    def labels_where(
        self, columns: Sequence[Hashable], predicate: Callable[[dict[str, Any]], np.ndarray]
    ) -> list:
        """The 10 smallest row labels where ``predicate(arrays)`` (after raking; errors only)."""
        chunk = functools.partial(_labels_chunk, predicate=predicate)
        table = self.map_reduce(columns, chunk, ["label"])
        return table["label"].tolist()[:10]

    def value_counts(
        self, columns: list, mask: Callable[[pd.DataFrame], np.ndarray], needed: list
    ) -> pd.Series:
        """Counts of the values of ``columns`` over the rows where ``mask`` (errors only).

        ``needed``: the columns ``mask`` reads.
        """
        raise NotImplementedError


def _labels_chunk(
    arrays: dict[str, Any], predicate: Callable[[dict[str, Any]], np.ndarray]
) -> pd.DataFrame:
    hit = predicate(arrays)
    labels = pd.Series(arrays["index"][hit][:10])  # the index's dtype (sorted as numbers)
    return pd.DataFrame({"label": labels, "n": np.ones(labels.size, dtype=np.int64)})


def _sum_groups(frames: list[pd.DataFrame], keys: Sequence[str]) -> pd.DataFrame:
    frame = pd.concat(frames, ignore_index=True)
    return frame.groupby(list(keys), sort=True, dropna=False).sum().reset_index()


_AGG = {"n": "sum", "d": "sum", "d2": "sum", "dmin": "min", "dmax": "max", "bad": "sum"}


def _partition_groups(part: pd.DataFrame, coding: _Coding, radix: tuple[int, ...]) -> pd.DataFrame:
    """Group sums of one pandas chunk by the key of its codes."""
    key = _group_keys(coding.codes(part), radix)
    d = coding.design(part)
    group, uniques = pd.factorize(key)  # hashing once; the sums are bincounts over the groups
    size = uniques.size
    good = np.isfinite(d) & (d > 0)
    dmin = np.full(size, np.inf)
    dmax = np.full(size, -np.inf)
    np.minimum.at(dmin, group, np.where(good, d, np.inf))  # over the good weights (the bad
    np.maximum.at(dmax, group, np.where(good, d, -np.inf))  # ones raise before these are read)
    return pd.DataFrame(
        {
            "key": uniques.astype(np.int64, copy=False),
            "n": np.bincount(group, minlength=size).astype(np.int64, copy=False),
            "d": np.bincount(group, d, minlength=size),
            "d2": np.bincount(group, d * d, minlength=size),
            "dmin": dmin,
            "dmax": dmax,
            "bad": np.bincount(group, ~good, minlength=size).astype(np.int64),
        }
    )


def _empty_groups() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "key": np.zeros(0, dtype=np.int64),
            "n": np.zeros(0, dtype=np.int64),
            **{c: np.zeros(0) for c in ("d", "d2", "dmin", "dmax")},
            "bad": np.zeros(0, dtype=np.int64),
        }
    )


class _DaskRows(_Rows):
    kind = "dask"

    def __init__(self, ddf: Any) -> None:
        self.ddf = ddf
        self.meta = ddf._meta

    def groups(self, coding: _Coding, radix: tuple[int, ...]) -> pd.DataFrame:
        rows = self._read(coding)
        parts = rows.map_partitions(_partition_groups, coding, radix, meta=_empty_groups())
        summed = parts.groupby("key").agg(_AGG, split_every=8, split_out=1)
        return _compute(summed).reset_index().sort_values("key", ignore_index=True)

    def weights(self, plan: CellPlan, coding: _Coding) -> Any:
        import dask

        meta = pd.Series(np.zeros(0), name="weight", index=self.meta.index)
        # the plan (arrays over the groups) travels once, as one key of the graph
        shared = dask.delayed(plan.for_rows(cells=False), traverse=False)
        return self._read(coding).map_partitions(_partition_weights, coding, shared, meta=meta)

    def map_reduce(
        self,
        columns: Sequence[Hashable],
        chunk: Callable[[dict[str, Any]], pd.DataFrame],
        keys: Sequence[str],
        *,
        weights: bool = True,
    ) -> pd.DataFrame:
        empty = chunk(_empty_chunk(self.meta, columns, weights=weights))
        import dask

        code = weights or self._plan.drops
        row_plan = self._plan.for_rows(cells=True) if code else None
        shared = dask.delayed((row_plan, chunk), traverse=False)
        rows = self._read(self._coding if code else None, columns)
        parts = rows.map_partitions(_run_chunk, self._coding, shared, columns, weights, meta=empty)
        summed = parts.groupby(list(keys), dropna=False).sum(split_every=8, split_out=1)
        return _compute(summed).reset_index().sort_values(list(keys), ignore_index=True)

    def attach(self, coding: _Coding, plan: CellPlan) -> None:
        """Remember how to give each row its weight and cell (for :meth:`map_reduce`)."""
        self._coding, self._plan = coding, plan

    def _read(self, coding: _Coding | None, columns: Sequence[Hashable] = ()) -> Any:
        """The columns a pass reads: ``columns``, and the raked ones and the design weights.

        Without ``coding``, only ``columns``. Selected before ``map_partitions``, so that a
        Parquet scan reads only those columns.
        """
        raked = [] if coding is None else coding.columns
        weights = [] if coding is None or coding.weights is None else [coding.weights]
        wanted = list(dict.fromkeys([*raked, *weights, *columns]))
        known = [c for c in wanted if c in self.meta.columns]  # the estimates check the rest
        return self.ddf[known]

    def first_rows(
        self, mask: Callable[[pd.DataFrame], np.ndarray], columns: list, value: Any = None
    ) -> tuple[list, list]:
        def found(part: pd.DataFrame) -> pd.DataFrame:
            hit = mask(part)
            values = part[value].to_numpy()[hit][:10] if value is not None else np.zeros(0)
            return pd.DataFrame(
                {
                    "label": pd.Series(list(part.index[hit][:10]), dtype=object),
                    "value": pd.Series(
                        list(values) or [None] * min(10, int(hit.sum())), dtype=object
                    ),
                }
            )

        meta = pd.DataFrame(
            {"label": pd.Series([], dtype=object), "value": pd.Series([], dtype=object)}
        )
        table = self.ddf.map_partitions(found, meta=meta).compute()
        return table["label"].tolist()[:10], table["value"].tolist()[:10]

    def value_counts(
        self, columns: list, mask: Callable[[pd.DataFrame], np.ndarray], needed: list
    ) -> pd.Series:
        def counts(part: pd.DataFrame) -> pd.DataFrame:
            sub = part.loc[mask(part), columns]
            out = sub.value_counts(dropna=False).rename("count").reset_index()
            return out.astype({c: object for c in columns})

        meta = pd.DataFrame({**{c: pd.Series([], dtype=object) for c in columns}, "count": []})
        per_part = self.ddf.map_partitions(counts, meta=meta).compute()
        return _collect_counts(per_part, columns)


def _compute(collection: Any) -> Any:
    """``collection.compute()``, without distributed's warning about a large graph.

    The cell plan travels in the graph of each pass (about 20 bytes a cell: 15 MiB at 750,000
    cells), as it must; the warning is meant for data embedded by mistake, so its threshold is
    raised to 1 GiB for these computations only. Only where ``distributed`` is loaded (no
    distributed client otherwise): setting its key first would hide its defaults.
    """
    import sys

    import dask

    if "distributed" not in sys.modules:
        return collection.compute()
    with dask.config.set({"distributed.admin.large-graph-warning-threshold": "1GiB"}):
        return collection.compute()


def _collect_counts(per_part: pd.DataFrame, columns: list) -> pd.Series:
    """Counts of the same value combination summed, largest first (``value_counts``' order)."""
    keys = [tuple(row) for row in per_part[columns].itertuples(index=False)]
    totals: dict = {}
    for key, c in zip(keys, per_part["count"].tolist(), strict=True):
        totals[key] = totals.get(key, 0) + int(c)
    ordered = sorted(totals.items(), key=lambda kv: -kv[1])
    return pd.Series([c for _, c in ordered], index=[k for k, _ in ordered], dtype=np.int64)


def _partition_weights(part: pd.DataFrame, coding: _Coding, plan: RowPlan) -> pd.Series:
    codes = coding.codes(part)
    d = coding.design(part) if coding.weights is not None else np.full(len(part), plan.design0)
    w, _ = row_weights(codes, d, plan)
    return pd.Series(w, index=part.index, name="weight")


def _empty_chunk(
    meta: pd.DataFrame, columns: Sequence[Hashable], *, weights: bool = True
) -> dict[str, Any]:
    out: dict[str, Any] = {"sampled": np.zeros(0, dtype=bool), "index": meta.index[:0]}
    if weights:
        out.update(w=np.zeros(0), d=np.zeros(0), cell=np.zeros(0, dtype=np.int64))
    for c in columns:
        out[c] = meta[c].iloc[:0] if c in meta.columns else pd.Series([], dtype=np.float64)
    return out


def _run_chunk(
    part: pd.DataFrame,
    coding: _Coding,
    shared: tuple[RowPlan | None, Callable[[dict[str, Any]], pd.DataFrame]],
    columns: Sequence[Hashable],
    weights: bool = True,
) -> pd.DataFrame:
    """``chunk`` on one pandas partition (``plan`` None: every row sampled, none coded)."""
    plan, chunk = shared
    arrays: dict[str, Any] = {"index": part.index}
    if plan is None:
        arrays["sampled"] = np.ones(len(part), dtype=bool)
    else:
        codes = coding.codes(part)
        design0 = np.full(len(part), plan.design0)
        raw = coding.design(part) if coding.weights is not None else design0
        w, cell = row_weights(codes, raw, plan)
        arrays["sampled"] = cell >= -1
        if weights:
            arrays.update(w=w, d=np.ldexp(raw, -plan.shift), cell=cell)
    for c in columns:
        arrays[c] = part[c]
    return chunk(arrays)


class _PolarsRows(_Rows):
    kind = "polars"

    def __init__(self, data: Any) -> None:
        import polars as pl

        self.source = data
        if frame_kind(data) == "pyarrow":
            data = pl.from_arrow(data)
        self.eager = isinstance(data, pl.DataFrame)
        self.lazy = data.lazy()
        collect = getattr(self.lazy, "collect_schema", None)  # polars >= 1.0
        self.schema = collect() if collect is not None else self.lazy.schema
        self.meta = pd.DataFrame(columns=list(self.schema.keys()))
        self._table: Any = None

    def _design_expr(self, coding: _Coding) -> Any:
        import polars as pl

        return pl.col(coding.weights).cast(pl.Float64)

    def groups(self, coding: _Coding, radix: tuple[int, ...]) -> pd.DataFrame:
        import polars as pl

        cols = coding.columns
        n = pl.len().cast(pl.Int64)
        if coding.weights is None:  # every design weight 1 (polars 1.0 aggregates no literal)
            sums = {"n": n, "d": n.cast(pl.Float64), "d2": n.cast(pl.Float64)}
            sums.update(dmin=pl.lit(1.0), dmax=pl.lit(1.0), bad=pl.lit(0, dtype=pl.Int64))
        else:
            d = self._design_expr(coding)
            good = (d.is_finite() & (d > 0)).fill_null(False)
            sums = {
                "n": n,
                "d": d.sum(),
                "d2": (d * d).sum(),
                "dmin": d.min(),
                "dmax": d.max(),
                "bad": (~good).cast(pl.Int64).sum(),
            }
        read = cols if coding.weights is None else [*cols, coding.weights]
        table = self._grouped(cols, sums, list(dict.fromkeys(read)))
        self._table = table.select(cols)
        part = pd.DataFrame({c: pd.Series(table[c].to_list(), dtype=object) for c in cols})
        codes = coding.codes(part)
        out = pd.DataFrame(
            {
                "key": _group_keys(codes, radix),
                **{c: table[c].to_numpy() for c in ("n", "d", "d2", "dmin", "dmax", "bad")},
                "_group": np.arange(len(part)),
            }
        )
        # one row per group of raw values; several raw groups can share codes (e.g. 1 and 1.0)
        agg = {**_AGG, "_group": "first"}
        return out.groupby("key", sort=True).agg(agg).reset_index()

    def _grouped(self, cols: list[Hashable], sums: dict[str, Any], read: list[Hashable]) -> Any:
        """``sums`` per group of the raw values of ``cols``, a Polars DataFrame.

        A lazy frame is grouped a batch of about ``_GROUP_ROWS`` rows at a time
        (:func:`_batches`) and the partial tables merged every ``_MERGE`` batches, so that the
        memory is bounded by a batch and the groups' table, not by the rows: Polars' streaming
        ``group_by`` of all rows at once grew to 1.5 GiB at 10^8 rows of 750,000 groups.
        """
        import polars as pl

        if self.eager:
            return self.lazy.group_by(cols).agg(**sums).collect()
        merged = {
            key: getattr(pl.col(key), {"dmin": "min", "dmax": "max"}.get(key, "sum"))()
            for key in sums
        }
        parts: list[Any] = []
        for rows in _batches(self.lazy.select(read), _GROUP_ROWS):
            parts.append(rows.group_by(cols).agg(**sums))
            if len(parts) == _MERGE:
                parts = [pl.concat(parts).group_by(cols).agg(**merged)]
        return parts[0] if len(parts) == 1 else pl.concat(parts).group_by(cols).agg(**merged)

    def _joined(self, plan: CellPlan, coding: _Coding) -> Any:
        """The rows with their factor and cell.

        A left join on the raked columns' raw values with the small table of their groups.
        """
        import polars as pl

        params = inspect.signature(pl.LazyFrame.join).parameters
        options: dict[str, Any] = {"how": "left"}
        options["nulls_equal" if "nulls_equal" in params else "join_nulls"] = True
        if "maintain_order" in params:
            options["maintain_order"] = "left"
        return self.lazy.join(self._small(plan, coding).lazy(), on=coding.columns, **options)

    def _small(self, plan: CellPlan, coding: _Coding) -> Any:
        """The groups' raw values with their factor and cell (a small Polars DataFrame, kept)."""
        if getattr(self, "_small_table", None) is None:
            self._small_table = self._small_of(plan, coding)
        return self._small_table

    def _small_of(self, plan: CellPlan, coding: _Coding) -> Any:
        import polars as pl

        part = pd.DataFrame(
            {c: pd.Series(self._table[c].to_list(), dtype=object) for c in coding.columns}
        )
        key = _group_keys(coding.codes(part), plan.radix)
        cells, factors = plan.group_factors()
        where = _find_keys(plan.keys, key, math.prod(plan.radix))
        cell, factor = cells[where], factors[where]
        return self._table.with_columns(
            pl.Series(_G, factor, dtype=pl.Float64), pl.Series(_CELL, cell, dtype=pl.Int64)
        )

    def _weight_expr(self, plan: CellPlan, coding: _Coding) -> Any:
        import polars as pl

        if coding.weights is None:
            d = pl.lit(plan.design0, dtype=pl.Float64)
        else:
            d = pl.col(coding.weights).cast(pl.Float64)
        if plan.shift:
            d = d * math.ldexp(1.0, -plan.shift)
        return (
            pl.when(pl.col(_CELL) == -1)
            .then(pl.lit(0.0, dtype=pl.Float64))
            .otherwise(pl.col(_G) * d)
            .alias("weight")
        )

    def weights(self, plan: CellPlan, coding: _Coding) -> Any:
        lazy = self._joined(plan, coding).select(self._weight_expr(plan, coding))
        if not self.eager:
            return lazy
        series = lazy.collect().to_series()
        return series.to_arrow() if frame_kind(self.source) == "pyarrow" else series

    def attach(self, coding: _Coding, plan: CellPlan) -> None:
        """Remember how to give each row its weight and cell (for :meth:`map_reduce`)."""
        self._coding, self._plan = coding, plan

    def with_weights(self, name: str) -> Any:
        """The frame with its weights as column ``name`` (lazy for a LazyFrame)."""
        joined = self._joined(self._plan, self._coding)
        out = joined.with_columns(self._weight_expr(self._plan, self._coding).alias(name))
        out = out.drop([_G, _CELL])
        if not self.eager:
            return out
        out = out.collect()
        return out.to_arrow() if frame_kind(self.source) == "pyarrow" else out

    def _chunks(self, columns: Sequence[Hashable], weights: bool) -> Any:
        """Batches of about ``_CHUNK_ROWS`` rows as pandas frames (index: the row numbers).

        Each holds ``columns`` and, when the rows must be coded (``weights``, or some rows
        dropped), the raked columns and the design weights.
        """
        import polars as pl

        coding = self._coding
        wanted = list(columns)
        if weights or self._plan.drops:
            extra = [] if coding.weights is None else [coding.weights]
            wanted = [*coding.columns, *extra, *columns]
        wanted = list(dict.fromkeys(wanted))
        offset = 0
        for part in _batches(self.lazy.select([pl.col(c) for c in wanted]), _CHUNK_ROWS):
            index = pd.RangeIndex(offset, offset + part.height)
            yield pd.DataFrame({c: _as_pandas(part[c]).set_axis(index) for c in wanted})
            offset += part.height

    def map_reduce(
        self,
        columns: Sequence[Hashable],
        chunk: Callable[[dict[str, Any]], pd.DataFrame],
        keys: Sequence[str],
        *,
        weights: bool = True,
    ) -> pd.DataFrame:
        code = weights or self._plan.drops
        shared = (self._plan.for_rows(cells=True) if code else None, chunk)
        out: list[pd.DataFrame] = []
        for part in self._chunks(columns, weights):
            out.append(_run_chunk(part, self._coding, shared, columns, weights))
            if len(out) == _MERGE:  # bounded: a chunk's table can be as large as the cells
                out = [_sum_groups(out, keys)]
        return _sum_groups(out, keys)

    def first_rows(
        self, mask: Callable[[pd.DataFrame], np.ndarray], columns: list, value: Any = None
    ) -> tuple[list, list]:
        labels: list = []
        values: list = []
        wanted = list(dict.fromkeys([*columns, *([value] if value is not None else [])]))
        lazy = self.lazy.with_row_index(_ROW).select(_ROW, *wanted)
        for part in _batches(lazy, _CHUNK_ROWS):
            frame = pd.DataFrame({c: _as_pandas(part[c]) for c in wanted})
            hit = mask(frame)
            labels.extend(part[_ROW].to_numpy()[hit].tolist())
            if value is not None:
                values.extend(frame[value].to_numpy()[hit].tolist())
            if len(labels) >= 10:
                break
        return labels[:10], values[:10]

    def value_counts(
        self, columns: list, mask: Callable[[pd.DataFrame], np.ndarray], needed: list
    ) -> pd.Series:
        frames = []
        lazy = self.lazy.select(*dict.fromkeys([*columns, *needed]))
        for part in _batches(lazy, _CHUNK_ROWS):
            frame = pd.DataFrame({c: _as_pandas(part[c]) for c in part.columns})
            sub = frame.loc[mask(frame), columns]
            frames.append(sub.value_counts(dropna=False).rename("count").reset_index())
        return _collect_counts(pd.concat(frames, ignore_index=True), columns)


def _batches(lazy: Any, rows: int) -> Iterator[Any]:
    """The rows of ``lazy`` in order, as Polars DataFrames of about ``rows`` rows (at least one).

    One streaming pass (``LazyFrame.collect_batches``, where polars has it; it holds a few
    batches, not the rows, and stops when the loop does). Older polars get slices
    (``lazy.slice(offset, rows)``): a scan reads only the row groups of its slice, but a frame
    whose rows come from a filter or a join is recomputed from its first row for every slice
    (a filtered ``scan_parquet`` of 10^8 rows: 10.9 s for its 40 slices of 10^6 rows, 0.5 s
    as batches).
    """
    import polars as pl

    if hasattr(pl.LazyFrame, "collect_batches"):
        empty = True
        for batch in lazy.collect_batches(chunk_size=rows, maintain_order=True):
            if batch.height:
                empty = False
                yield batch
        if empty:
            yield lazy.limit(0).collect()
        return
    offset = 0
    while True:
        part = lazy.slice(offset, rows).collect()
        if part.height or offset == 0:
            yield part
        if part.height < rows:
            return
        offset += rows


def _as_pandas(series: Any) -> pd.Series:
    """A Polars Series as pandas: numbers as float64 / int64 (null as NaN), the rest as objects."""
    import polars as pl

    dtype = series.dtype
    if dtype.is_numeric() and series.null_count() == 0:
        return pd.Series(series.to_numpy())
    if dtype.is_numeric():
        return pd.Series(series.cast(pl.Float64).to_numpy())
    return pd.Series(series.to_list(), dtype=object)


def rows_of(data: Any) -> _Rows:
    """The backend of a Dask or Polars frame (or PyArrow table)."""
    kind = frame_kind(data)
    if kind == "dask":
        return _DaskRows(data)
    return _PolarsRows(data)


def polars_dtype_kind(dtype: object) -> object:
    """A NumPy-like ``kind`` of a Polars dtype (for :func:`check_weights_dtype`)."""

    class _Kind:
        def __init__(self, kind: str, text: str) -> None:
            self.kind, self.text = kind, text

        def __str__(self) -> str:
            return self.text

    text = str(dtype)
    if text.startswith("Boolean"):
        return _Kind("b", text)
    if text.startswith(("Datetime", "Date")):
        return _Kind("M", text)
    if text.startswith("Duration"):
        return _Kind("m", text)
    if text.startswith(("String", "Utf8", "Categorical", "Enum", "Object", "List", "Struct")):
        return _Kind("O", text)
    return _Kind("f", text)


def check_frame_weights(rows: _Rows, weights: object, name: str) -> None:
    """The design-weight column of a frame: a column label of a numeric column."""
    from raking.survey.codes import column

    if weights is None:
        return
    if not isinstance(weights, Hashable) or isinstance(weights, tuple) or np.ndim(weights) != 0:
        raise TypeError(
            f"weights must be the label of a column of the {rows.kind} frame for Dask or Polars "
            f"data, got {type(weights).__name__}; add the design weights as a column first "
            "(e.g. ddf.assign(w=...) or frame.with_columns(w=...)) and pass weights='w'."
        )
    column(rows.meta, weights, "weights")
    if rows.kind == "dask":
        check_weights_dtype(rows.meta[weights].dtype, name=name)
        return
    kind = polars_dtype_kind(rows.schema[weights])  # type: ignore[attr-defined]
    check_weights_dtype(kind, name=name)
    if kind.kind == "O":  # type: ignore[attr-defined]
        raise ValueError(
            f"{name} has dtype {kind}, not numbers; cast the column to a float type first "
            "(frame.with_columns(pl.col(...).cast(pl.Float64)))."
        )


def raise_row_errors(
    rows: _Rows,
    coding: _Coding,
    groups: pd.DataFrame,
    codes: np.ndarray,
    variables: dict,
    unknown: str,
) -> tuple[np.ndarray, np.ndarray]:
    """The pandas path's checks of missing values and unknown levels, on the groups.

    Returns the masks (over the groups) of dropped and zeroed groups; raises (naming rows
    through one more pass over the data) as :func:`raking.survey.frontend._row_status`.
    """
    n = groups["n"].to_numpy()
    dropped = np.zeros(codes.shape[1], dtype=bool)
    for v, (key, (cols, levels, _)) in enumerate(variables.items()):
        missing = codes[v] == _NA
        if missing.any() and coding.na == "error":
            sub = _Coding(((cols, tuple(levels)),), coding.na, None, "")

            def mask(part: pd.DataFrame, sub: _Coding = sub) -> np.ndarray:
                return sub.codes(part)[0] == _NA

            labels = rows.first_rows(mask, list(cols))[0]
            col = cols[0]
            for c in cols:

                def one(part: pd.DataFrame, c: Hashable = c) -> np.ndarray:
                    return part[c].isna().to_numpy()

                if rows.first_rows(one, [c])[0]:
                    col = c
                    break
            raise_on_na(key, col, labels, int(n[missing].sum()))
        dropped |= missing
    zeroed = np.zeros_like(dropped)
    for v, (key, (cols, levels, _)) in enumerate(variables.items()):
        unknown_groups = (codes[v] == _UNKNOWN) & ~dropped
        if not unknown_groups.any():
            continue
        everything = _Coding(coding.variables, coding.na, None, "")

        def mask(part: pd.DataFrame, v: int = v, everything: _Coding = everything) -> np.ndarray:
            all_codes = everything.codes(part)
            out = all_codes[v] == _UNKNOWN
            for c in all_codes:
                out &= c != _NA
            return out

        counts = rows.value_counts(list(cols), mask, coding.columns)
        report_unknown_levels(key, counts, levels, raise_=unknown == "error")
        zeroed |= unknown_groups
    return dropped, zeroed
