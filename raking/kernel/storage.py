r"""The table's storage behind the balancing loop: dense arrays, half-precision blocks, sparse.

The loop (:func:`raking.kernel.ipf._loop`) is written once against the small interface
:class:`Storage`; :func:`storage_of` picks the implementation once, at entry, from the table
and the compute dtype (the factors' dtype):

- :class:`DenseStorage`: a dense array of any array-API namespace (NumPy, CuPy, PyTorch,
  array-api-strict), stored in the compute dtype; a 2-D reduction is one batched mat-vec;
- :class:`BlockedStorage`: a dense table stored narrower than the compute dtype (float16 /
  bfloat16 with float32 factors, or float32 with float64 factors), read in blocks of at most
  :data:`HALF_BLOCK_ELEMENTS` elements cast to the compute dtype, so that the extra memory is
  one block, not a copy of the table;
- :class:`SparseStorage`: a 2-D SciPy / CuPy sparse matrix, reduced by the mat-vecs
  ``K @ f`` and ``K.T @ f`` and scaled on its stored values (:mod:`raking.kernel.sparse`).

Each gives what the loop needs: the reduction of the scaled table to one marginal (linear
:math:`R_a = \sum_{\neg a} K \prod_{b\ne a} f_b`, log domain the same with a logsumexp), the
balanced table :math:`K f_1 \otimes \dots \otimes f_d` (log: :math:`L + g_1 \oplus \dots \oplus
g_d`), the absorption of factors into a new working table (compute dtype), and the per-table
maxima, support and cells that keep the factors in range (:class:`raking.kernel.ipf._Guard`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any, Protocol

import numpy as np

from raking._array_api import Array, device, is_numpy, to_numpy
from raking.kernel.sparse import is_sparse, sparse_coordinates, sparse_reduce, sparse_scale

__all__ = [
    "HALF_BLOCK_ELEMENTS",
    "BlockedStorage",
    "DenseStorage",
    "SparseStorage",
    "Storage",
    "logsumexp",
    "storage_of",
]

HALF_BLOCK_ELEMENTS = 2**22
"""Largest block, in table elements, that a reduction of a narrowly stored table casts at once.

A table stored in a narrower dtype than its compute dtype (float16 / bfloat16 with float32
factors) is reduced block by block: each block is cast to the compute dtype (2**22 float32
elements: 16 MiB) and reduced there. The blocks run along the leading axes (batch entries, then
rows of the first balanced axis), so a 2-D m x l table is read in blocks of about
``2**22 // l`` rows. Tables of at most this many elements are one block.
"""


class Storage(Protocol):
    """What the balancing loop needs from a stored table (``d`` balanced axes, last).

    ``table`` is the stored object (array or sparse matrix), ``values`` its stored values as an
    array (where it lives: host or accelerator), ``shape`` / ``ndim`` / ``device`` those of the
    table. Factors are arrays of the compute dtype, shape ``(*batch, n_a)`` or ``(n_a,)``.
    """

    table: Any
    values: Array
    shape: tuple[int, ...]
    ndim: int
    device: Any

    def reduce(self, factors: Sequence[Array], axis: int, *, log_domain: bool) -> Array:
        """Marginal on ``axis`` of the table scaled by every factor but ``factors[axis]``."""
        ...

    def scale(self, factors: Sequence[Array], *, log_domain: bool, dtype: Any = None) -> Any:
        """The balanced table (a new object of the table's kind), in ``dtype`` if given."""
        ...

    def absorb(self, factors: Sequence[Array]) -> Storage:
        """The working table ``K * f_1 ⊗ ... ⊗ f_d`` in the factors' dtype (linear domain)."""
        ...

    def cells(self, factors: Sequence[Array]) -> Array:
        """The balanced cells in the factors' dtype, as :meth:`cell_max` reads them."""
        ...

    def cell_max(self, cells: Array) -> Array:
        """The largest of each table's ``cells`` (shape ``(*batch,)``; 0-d for one table)."""
        ...

    def support(self) -> tuple[int, np.ndarray, list[np.ndarray]]:
        """The positive cells on the host: ``(batch, table index, [index on each axis])``."""
        ...


def storage_of(table: Any, dtype: Any, *, xp: Any, d: int) -> Storage:
    """The storage of ``table`` for factors of ``dtype`` (the compute dtype), ``d`` balanced axes.

    A sparse matrix is :class:`SparseStorage`; a dense table stored in a floating dtype
    narrower than ``dtype`` is :class:`BlockedStorage`; any other is :class:`DenseStorage`.
    """
    if is_sparse(table):
        return SparseStorage(table, xp=xp)
    if table.dtype != dtype:
        floating = xp.isdtype(table.dtype, "real floating") and xp.isdtype(dtype, "real floating")
        if floating and xp.finfo(table.dtype).bits < xp.finfo(dtype).bits:
            return BlockedStorage(table, dtype, xp=xp, d=d)
    return DenseStorage(table, xp=xp, d=d)


# --------------------------------------------------------------------------------------------
# Dense arrays
# --------------------------------------------------------------------------------------------


def logsumexp(x: Array, axis: tuple[int, ...], *, xp: Any) -> Array:
    """``log(sum(exp(x)))`` over ``axis``: ``-inf`` where every entry is ``-inf`` (no mass).

    NaN where an entry is NaN or ``+inf``: such a line has no finite normalisation. Validated
    tables never hold either; :mod:`raking.torch` feeds unvalidated logits through this step and
    relies on the NaN reaching the loss, as in ``torch.nn.functional.cross_entropy``.
    """
    top = xp.max(x, axis=axis, keepdims=True)
    shift = xp.where(xp.isfinite(top), top, xp.zeros_like(top))
    total = xp.sum(xp.exp(x - shift), axis=axis)
    top, shift = xp.squeeze(top, axis=axis), xp.squeeze(shift, axis=axis)
    positive = total > 0
    safe = xp.where(positive, total, xp.ones_like(total))
    out = xp.where(positive, xp.log(safe) + shift, xp.full_like(total, -math.inf))
    invalid = xp.isnan(total) | (top == math.inf)
    return xp.where(invalid, xp.full_like(total, math.nan), out)


def _expand(vector: Array, axis: int, d: int, *, xp: Any) -> Array:
    """Reshape ``(*batch, n)`` to broadcast along balanced axis ``axis`` of a d-axis table."""
    shape = tuple(vector.shape[:-1]) + tuple(vector.shape[-1] if b == axis else 1 for b in range(d))
    return xp.reshape(vector, shape)


def dense_reduce(
    table: Array, factors: Sequence[Array], axis: int, *, xp: Any, log_domain: bool
) -> Array:
    r"""The reduction of a dense table (any namespace): a batched mat-vec for 2-D tables.

    Linear: :math:`R_a = \sum_{\neg a} K \prod_{b\ne a} f_b`; log: the same with logsumexp.
    """
    d = len(factors)
    first = table.ndim - d
    if not log_domain and d == 2:
        if axis == 0:
            return xp.matmul(table, factors[1][..., None])[..., 0]
        return xp.matmul(factors[0][..., None, :], table)[..., 0, :]
    others = tuple(first + b for b in range(d) if b != axis)
    scaled = table
    for b in range(d):
        if b != axis:
            f = _expand(factors[b], b, d, xp=xp)
            scaled = scaled + f if log_domain else scaled * f
    if log_domain:
        return logsumexp(scaled, others, xp=xp)
    return xp.sum(scaled, axis=others)


def _scale(table: Array, factors: Sequence[Array], *, xp: Any, log_domain: bool) -> Array:
    """The product (log: sum) of a dense table with its expanded factors, in axis order."""
    d = len(factors)
    out = table
    for a, f in enumerate(factors):
        e = _expand(f, a, d, xp=xp)
        out = out + e if log_domain else out * e
    return out


class DenseStorage:
    """A dense array of any array-API namespace, in the compute dtype (or wider)."""

    def __init__(self, table: Array, *, xp: Any, d: int) -> None:
        self.table = self.values = table
        self.xp, self.d = xp, d
        self.shape, self.ndim = tuple(table.shape), table.ndim

    @property
    def device(self) -> Any:
        """The device of the stored values."""
        return device(self.table)

    def reduce(self, factors: Sequence[Array], axis: int, *, log_domain: bool) -> Array:
        """Marginal on ``axis`` of the table scaled by every factor but ``factors[axis]``."""
        return dense_reduce(self.table, factors, axis, xp=self.xp, log_domain=log_domain)

    def scale(self, factors: Sequence[Array], *, log_domain: bool, dtype: Any = None) -> Array:
        """``K * f_1 ⊗ ... ⊗ f_d``; 2-D NumPy batches in one compiled pass where it is faster."""
        xp, table = self.xp, self.table
        out = None
        if not log_domain and is_numpy(xp):
            from raking.kernel.compiled import numba_apply, use_numba

            if use_numba(table, factors, 0):  # factors have the targets' shapes and dtype
                out = numba_apply(table, factors)
        if out is None:
            out = _scale(table, factors, xp=xp, log_domain=log_domain)
        return out if dtype is None or out.dtype == dtype else xp.astype(out, dtype)

    def absorb(self, factors: Sequence[Array]) -> Storage:
        """The working table ``K * f_1 ⊗ ... ⊗ f_d`` in the factors' dtype (a new storage)."""
        xp, table = self.xp, self.table
        if table.dtype != factors[0].dtype:
            table = xp.astype(table, factors[0].dtype)
        return DenseStorage(_scale(table, factors, xp=xp, log_domain=False), xp=xp, d=self.d)

    def cells(self, factors: Sequence[Array]) -> Array:
        """The balanced cells ``K * f_1 ⊗ ... ⊗ f_d`` in the factors' dtype."""
        table = self.xp.astype(self.table, factors[0].dtype, copy=False)
        return _scale(table, factors, xp=self.xp, log_domain=False)

    def cell_max(self, cells: Array) -> Array:
        """The largest of each table's ``cells``: shape ``(*batch,)``."""
        return self.xp.max(cells, axis=tuple(range(cells.ndim - self.d, cells.ndim)))

    def support(self) -> tuple[int, np.ndarray, list[np.ndarray]]:
        """The positive cells on the host: ``(batch, table index, [index on each axis])``."""
        support = to_numpy(self.table > 0)
        d = self.d
        batch = math.prod(support.shape[: support.ndim - d])
        found = np.nonzero(np.reshape(support, (batch, *support.shape[support.ndim - d :])))
        return batch, found[0], list(found[1:])


# --------------------------------------------------------------------------------------------
# Dense tables stored narrower than the compute dtype: blocks
# --------------------------------------------------------------------------------------------


class BlockedStorage(DenseStorage):
    """A dense table stored narrower than the compute dtype ``dtype``, read in blocks.

    Reductions and the balanced table are formed block by block (:data:`HALF_BLOCK_ELEMENTS`
    elements), each block cast to ``dtype``: the products and sums of the dense path, then the
    balanced block rounded back to the storage dtype. Absorbing factors makes a dense working
    table of ``dtype`` (a copy, only when the factors leave their safe range).
    """

    def __init__(self, table: Array, dtype: Any, *, xp: Any, d: int) -> None:
        super().__init__(table, xp=xp, d=d)
        self.dtype = dtype

    def reduce(self, factors: Sequence[Array], axis: int, *, log_domain: bool) -> Array:
        """Marginal on ``axis`` of the table scaled by every factor but ``factors[axis]``."""
        return _blocked_reduce(
            self.table, list(factors), axis, self.dtype, xp=self.xp, log_domain=log_domain
        )

    def scale(self, factors: Sequence[Array], *, log_domain: bool, dtype: Any = None) -> Array:
        """The balanced table in the storage dtype (or ``dtype``), formed block by block."""
        xp, table = self.xp, self.table
        compute, stored = self.dtype, table.dtype

        def leaf(block: Array, block_factors: list[Array]) -> Array:
            scaled = _scale(xp.astype(block, compute), block_factors, xp=xp, log_domain=log_domain)
            return xp.astype(scaled, stored)

        out = _over_blocks(
            table, list(factors), leaf, lambda parts, level: xp.concat(parts, axis=level)
        )
        return out if dtype is None or out.dtype == dtype else xp.astype(out, dtype)


def _block_plan(shape: tuple[int, ...]) -> tuple[int, int] | None:
    """``(split, chunk)``: blocks take ``chunk`` entries of axis ``split`` and all later axes.

    ``split`` is the last axis whose trailing sub-array (that axis and all after it) exceeds
    :data:`HALF_BLOCK_ELEMENTS`; axes before it are taken one entry at a time. ``None`` when
    the whole table is one block.
    """
    budget = max(1, int(HALF_BLOCK_ELEMENTS))
    inner = 1
    for axis in range(len(shape) - 1, -1, -1):
        if inner * shape[axis] > budget:
            return axis, max(1, budget // inner)
        inner *= shape[axis]
    return None


def _slice_factor(f: Array, level: int, index: slice, *, table_ndim: int, d: int, b: int) -> Array:
    """The part of factor ``b`` that meets the table block ``index`` of axis ``level``.

    Factor ``b`` has shape ``(*batch, n_b)``, its batch axes possibly fewer or broadcast.
    """
    first = table_ndim - d
    if level >= first:
        return f[..., index] if level - first == b else f
    axis = level - (first - (f.ndim - 1))  # the factor's batch axes align on the right
    if axis < 0 or f.shape[axis] == 1:
        return f
    return f[(slice(None),) * axis + (index, ...)]


def _over_blocks(
    table: Array,
    factors: list[Array],
    leaf: Callable[[Array, list[Array]], Array],
    combine: Callable[[list[Array], int], Array],
) -> Array:
    """``leaf`` on every block of ``table`` (with the factors' matching parts), then ``combine``.

    The blocks follow :func:`_block_plan`; ``combine(parts, level)`` joins the results of the
    blocks along table axis ``level`` (concatenate along an axis the result keeps, add along one
    it sums over). Only basic slicing: a block is a view until ``leaf`` casts it.
    """
    plan = _block_plan(tuple(table.shape))
    if plan is None:
        return leaf(table, factors)
    return _blocks(table, factors, leaf, combine, plan=plan, level=0)


def _blocks(
    table: Array,
    factors: list[Array],
    leaf: Callable[[Array, list[Array]], Array],
    combine: Callable[[list[Array], int], Array],
    *,
    plan: tuple[int, int],
    level: int,
) -> Array:
    """The recursion of :func:`_over_blocks`: split axis ``level`` of the (sub-)table."""
    split, chunk = plan
    if level > split:
        return leaf(table, factors)
    n = table.shape[level]
    step = chunk if level == split else 1
    d = len(factors)
    parts = []
    for lo in range(0, n, step):
        index = slice(lo, min(lo + step, n))
        block = table[(slice(None),) * level + (index, ...)]
        block_factors = [
            _slice_factor(f, level, index, table_ndim=table.ndim, d=d, b=b)
            for b, f in enumerate(factors)
        ]
        parts.append(_blocks(block, block_factors, leaf, combine, plan=plan, level=level + 1))
    return parts[0] if len(parts) == 1 else combine(parts, level)


def _blocked_reduce(
    table: Array, factors: list[Array], axis: int, dtype: Any, *, xp: Any, log_domain: bool
) -> Array:
    """The reduction of a narrowly stored table, block by block in ``dtype``.

    Each block is cast to ``dtype`` (memory: one block) and reduced with the dense code path (a
    mat-vec for 2-D tables); blocks along a batch axis or the reduced axis are concatenated,
    blocks along a summed axis added (log domain: combined by a logsumexp).
    """
    d = len(factors)
    first = table.ndim - d

    def leaf(block: Array, block_factors: list[Array]) -> Array:
        return dense_reduce(
            xp.astype(block, dtype), block_factors, axis, xp=xp, log_domain=log_domain
        )

    def combine(parts: list[Array], level: int) -> Array:
        if level < first:
            return xp.concat(parts, axis=level)
        if level - first == axis:
            return xp.concat(parts, axis=-1)
        if log_domain:
            return logsumexp(xp.stack(parts, axis=0), (0,), xp=xp)
        total = parts[0]
        for part in parts[1:]:
            total = total + part
        return total

    return _over_blocks(table, factors, leaf, combine)


# --------------------------------------------------------------------------------------------
# Sparse 2-D tables
# --------------------------------------------------------------------------------------------


class SparseStorage:
    """A 2-D SciPy / CuPy sparse matrix (CSR, CSC, COO), linear domain, no batch axes.

    Reductions are sparse mat-vecs; the balanced table scales the stored values and keeps the
    input's type, format, index arrays and explicit zeros.
    """

    def __init__(self, table: Any, *, xp: Any) -> None:
        self.table, self.values = table, table.data
        self.xp = xp
        self.shape, self.ndim = tuple(table.shape), 2

    @property
    def device(self) -> Any:
        """The device of the stored values."""
        return device(self.values)

    def reduce(self, factors: Sequence[Array], axis: int, *, log_domain: bool) -> Array:
        """Marginal on ``axis`` of the table scaled by every factor but ``factors[axis]``."""
        return sparse_reduce(self.table, factors[1 - axis], axis)

    def scale(self, factors: Sequence[Array], *, log_domain: bool, dtype: Any = None) -> Any:
        """``diag(f_1) K diag(f_2)``, in the table's stored dtype (or ``dtype``)."""
        out = sparse_scale(self.table, factors, xp=self.xp)
        dtype = self.table.dtype if dtype is None else dtype
        return out if out.dtype == dtype else out.astype(dtype)

    def absorb(self, factors: Sequence[Array]) -> Storage:
        """The working table ``K * f_1 ⊗ ... ⊗ f_d`` in the factors' dtype (a new storage)."""
        return SparseStorage(sparse_scale(self.table, factors, xp=self.xp), xp=self.xp)

    def cells(self, factors: Sequence[Array]) -> Array:
        """The balanced cells ``K * f_1 ⊗ ... ⊗ f_d`` in the factors' dtype."""
        return sparse_scale(self.table, factors, xp=self.xp).data

    def cell_max(self, cells: Array) -> Array:
        """The largest stored cell (0-d); 0 when nothing is stored."""
        if cells.shape[0] == 0:  # no stored values: nothing to compare
            return self.xp.zeros((), dtype=cells.dtype, device=device(cells))
        return self.xp.max(cells)

    def support(self) -> tuple[int, np.ndarray, list[np.ndarray]]:
        """The positive stored values on the host: one table, row and column indices."""
        rows, cols = (to_numpy(c) for c in sparse_coordinates(self.table, xp=self.xp))
        keep = to_numpy(self.values) > 0
        return 1, np.zeros(int(keep.sum()), dtype=np.int64), [rows[keep], cols[keep]]
