r"""One adjustment step of the balancing loop, on the table's storage: the public step functions.

The loop (:mod:`raking.kernel.ipf`) keeps one factor vector per balanced axis and, at each step,
reduces the scaled table to one marginal (:func:`reduce`) and replaces that axis's factor
(:func:`new_factor`); it starts from :func:`initial_factors` and forms the balanced table with
the factors at the end. In the log domain a reduction is a :func:`logsumexp`. These four are
public inside the package: :mod:`raking.torch` runs the same log-domain step on logits
(:mod:`raking.torch._chain`), without validation.

The storage of the table decides how a step reads it: a dense array is reduced by a batched
mat-vec (2-D) or a sum; a 2-D sparse matrix by ``table @ f`` or ``table.T @ f``
(:mod:`raking.kernel.sparse`); a table stored narrower than the factors (float16 / bfloat16
with float32 factors) in blocks of at most :data:`HALF_BLOCK_ELEMENTS` elements cast to the
compute dtype, so the extra memory is one block, not a float32 copy of the table.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

from raking._array_api import Array, is_numpy
from raking.kernel.sparse import is_sparse, sparse_reduce, sparse_scale, table_device

__all__ = ["HALF_BLOCK_ELEMENTS", "initial_factors", "logsumexp", "new_factor", "reduce"]

HALF_BLOCK_ELEMENTS = 2**22
"""Largest block, in table elements, that a reduction of a narrowly stored table casts at once.

A table stored in a narrower dtype than its compute dtype (float16 / bfloat16 with float32
factors) is reduced block by block: each block is cast to the compute dtype (2**22 float32
elements: 16 MiB) and reduced there. The blocks run along the leading axes (batch entries, then
rows of the first balanced axis), so a 2-D m x l table is read in blocks of about
``2**22 // l`` rows. Tables of at most this many elements are one block.
"""


def _expand(vector: Array, axis: int, d: int, *, xp: Any) -> Array:
    """Reshape ``(*batch, n)`` to broadcast along balanced axis ``axis`` of a d-axis table."""
    shape = tuple(vector.shape[:-1]) + tuple(vector.shape[-1] if b == axis else 1 for b in range(d))
    return xp.reshape(vector, shape)


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


def reduce(table: Array, factors: list[Array], axis: int, *, xp: Any, log_domain: bool) -> Array:
    r"""Marginal on ``axis`` of the table scaled by every factor except ``factors[axis]``.

    Linear: :math:`R_a = \sum_{\neg a} K \prod_{b\ne a} f_b`; log: the same with logsumexp.
    Sparse: ``K @ f_1`` (``axis=0``) or ``K.T @ f_0`` (``axis=1``). A table stored narrower than
    the factors (float16 / bfloat16) is reduced in blocks in the factors' dtype
    (:func:`_blocked_reduce`); the result is in the factors' dtype.
    """
    if is_sparse(table):
        return sparse_reduce(table, factors[1 - axis], axis)
    if table.dtype != factors[0].dtype:
        dtype = _block_dtype(table, factors, xp=xp)
        if dtype is not None:
            return _blocked_reduce(table, factors, axis, dtype, xp=xp, log_domain=log_domain)
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


def new_factor(reduced: Array, target: Array, log_target: Array | None, *, xp: Any) -> Array:
    """The factor that makes axis ``a`` match its target: ``t / R`` (log: ``log t - R``).

    Categories without mass (``R = 0``, log ``-inf``) get the neutral factor; they are either
    infeasible (caught by validation) or have a zero target. A NaN reduction (log domain: a
    line of unvalidated logits holding a NaN or ``+inf``, see :func:`logsumexp`) gives a NaN
    factor, never the neutral one.
    """
    if log_target is not None:
        empty = reduced == -math.inf
        safe = xp.where(empty, xp.zeros_like(reduced), reduced)
        return xp.where(empty, xp.zeros_like(reduced), log_target - safe)
    positive = reduced > 0
    safe = xp.where(positive, reduced, xp.ones_like(reduced))
    return xp.where(positive, target / safe, xp.ones_like(reduced))


def initial_factors(
    table: Array, targets: list[Array], *, xp: Any, log_domain: bool, dtype: Any = None
) -> list:
    """Neutral factors (1, log: 0) of ``dtype`` (default: the table's dtype)."""
    d = len(targets)
    batch = tuple(table.shape[: table.ndim - d])
    fill = 0.0 if log_domain else 1.0
    return [
        xp.full(
            (*batch, table.shape[table.ndim - d + a]),
            fill,
            dtype=table.dtype if dtype is None else dtype,
            device=table_device(table),
        )
        for a in range(d)
    ]


def _apply(table: Array, factors: Sequence[Array], *, xp: Any, log_domain: bool) -> Array:
    """``K * f_1 ⊗ ... ⊗ f_d`` (log: ``L + g_1 ⊕ ... ⊕ g_d``), a new array.

    A table stored narrower than the factors gives a result in the table's dtype, formed block
    by block in the factors' dtype (the same products, in the same order, then rounded back).
    """
    if is_sparse(table):
        out = sparse_scale(table, factors, xp=xp)
        return out if out.dtype == table.dtype else out.astype(table.dtype)
    if table.dtype != factors[0].dtype:
        dtype = _block_dtype(table, factors, xp=xp)
        if dtype is not None:

            def leaf(block: Array, block_factors: list[Array]) -> Array:
                scaled = _scale(
                    xp.astype(block, dtype), block_factors, xp=xp, log_domain=log_domain
                )
                return xp.astype(scaled, table.dtype)

            return _over_blocks(
                table,
                list(factors),
                leaf,
                lambda parts, level: xp.concat(parts, axis=level),
            )
    if not log_domain and is_numpy(xp):
        from raking.kernel.compiled import numba_apply, use_numba

        if use_numba(table, factors, 0):  # factors have the targets' shapes and dtype
            return numba_apply(table, factors)
    return _scale(table, factors, xp=xp, log_domain=log_domain)


def _scale(table: Array, factors: Sequence[Array], *, xp: Any, log_domain: bool) -> Array:
    """The product (log: sum) of a dense table with its expanded factors, in axis order."""
    d = len(factors)
    out = table
    for a, f in enumerate(factors):
        e = _expand(f, a, d, xp=xp)
        out = out + e if log_domain else out * e
    return out


def _block_dtype(table: Array, factors: Sequence[Array], *, xp: Any) -> Any:
    """The factors' dtype if ``table`` is stored in a narrower floating dtype, else ``None``."""
    dtype = factors[0].dtype
    floating = xp.isdtype(table.dtype, "real floating") and xp.isdtype(dtype, "real floating")
    if floating and xp.finfo(table.dtype).bits < xp.finfo(dtype).bits:
        return dtype
    return None


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
    """:func:`reduce` of a narrowly stored table, block by block in ``dtype``.

    Each block is cast to ``dtype`` (memory: one block) and reduced with the dense code path (a
    mat-vec for 2-D tables); blocks along a batch axis or the reduced axis are concatenated,
    blocks along a summed axis added (log domain: combined by a logsumexp).
    """
    d = len(factors)
    first = table.ndim - d

    def leaf(block: Array, block_factors: list[Array]) -> Array:
        return reduce(xp.astype(block, dtype), block_factors, axis, xp=xp, log_domain=log_domain)

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
