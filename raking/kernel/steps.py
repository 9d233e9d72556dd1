r"""One adjustment step of the balancing loop: the public step functions.

The loop (:mod:`raking.kernel.ipf`) keeps one factor vector per balanced axis and, at each step,
reduces the scaled table to one marginal (:func:`reduce`) and replaces that axis's factor
(:func:`new_factor`); it starts from :func:`initial_factors` and forms the balanced table with
the factors at the end. In the log domain a reduction is a :func:`logsumexp`. These four are
public inside the package: :mod:`raking.torch` runs the same log-domain step on logits
(:mod:`raking.torch._chain`), without validation.

How a step reads the table depends on its storage (dense array, half-precision blocks, sparse
matrix): :func:`reduce` hands it to :func:`raking.kernel.storage.storage_of`, which the loop
itself calls once, at entry.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from raking._array_api import Array
from raking.kernel.sparse import table_device
from raking.kernel.storage import logsumexp, storage_of

__all__ = ["initial_factors", "logsumexp", "new_factor", "reduce"]


def reduce(table: Array, factors: list[Array], axis: int, *, xp: Any, log_domain: bool) -> Array:
    r"""Marginal on ``axis`` of the table scaled by every factor except ``factors[axis]``.

    Linear: :math:`R_a = \sum_{\neg a} K \prod_{b\ne a} f_b`; log: the same with logsumexp.
    Sparse: ``K @ f_1`` (``axis=0``) or ``K.T @ f_0`` (``axis=1``). A table stored narrower than
    the factors (float16 / bfloat16) is reduced in blocks in the factors' dtype
    (:class:`raking.kernel.storage.BlockedStorage`); the result is in the factors' dtype.
    """
    store = storage_of(table, factors[0].dtype, xp=xp, d=len(factors))
    return store.reduce(factors, axis, log_domain=log_domain)


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
    """``K * f_1 ⊗ ... ⊗ f_d`` (log: ``L + g_1 ⊕ ... ⊕ g_d``), a new array (or sparse matrix).

    A table stored narrower than the factors gives a result in the table's dtype, formed block
    by block in the factors' dtype (the same products, in the same order, then rounded back).
    """
    store = storage_of(table, factors[0].dtype, xp=xp, d=len(factors))
    return store.scale(factors, log_domain=log_domain)
