"""Sparse 2-D tables (``scipy.sparse``, ``cupyx.scipy.sparse``) in the balancing kernel.

A sparse table enters the same scaling-form kernel as a dense one (:mod:`raking.kernel.ipf`): the
factors are dense vectors of the library of the table's stored values (NumPy for SciPy, CuPy for
``cupyx``), each step's reduction is one sparse mat-vec, ``table @ f_Y`` (rows) or
``table.T @ f_X`` (columns), and the balanced table scales the stored values,
``data * f_X[row] * f_Y[col]``, so that it keeps the input's format, index arrays and explicit
zeros. Neither SciPy nor CuPy is imported here: a table is recognised by the module of its type.
"""

from __future__ import annotations

from typing import Any

from raking._array_api import Array, device, get_xp

__all__ = [
    "SPARSE_FORMATS",
    "is_sparse",
    "sparse_coordinates",
    "sparse_namespace",
    "sparse_reduce",
    "sparse_scale",
    "stored_values",
    "table_device",
]

SPARSE_FORMATS = ("csr", "csc", "coo")
"""The formats the kernel balances (those whose stored values have explicit row/column indices)."""

_SPARSE_MODULES = ("scipy.sparse", "cupyx.scipy.sparse")


def is_sparse(x: object) -> bool:
    """Whether ``x`` is a SciPy or CuPy sparse matrix/array, without importing either library."""
    module = type(x).__module__
    return module.startswith(_SPARSE_MODULES) and hasattr(x, "format") and hasattr(x, "tocsr")


def sparse_namespace(table: Any, *others: Array) -> Any:
    """The array namespace of a sparse table's stored values (NumPy or CuPy) and ``others``."""
    return get_xp(table.data, *others)


def stored_values(table: Any) -> Array:
    """The values a table stores: a dense table itself, or a sparse table's ``data`` array."""
    return table.data if is_sparse(table) else table


def table_device(table: Any) -> Any:
    """The device of a dense table, or of a sparse table's stored values."""
    return device(stored_values(table))


def sparse_reduce(table: Any, vector: Array, axis: int) -> Array:
    """``table @ vector`` (``axis=0``, one entry per row) or ``table.T @ vector`` (``axis=1``)."""
    return table @ vector if axis == 0 else table.T @ vector


def sparse_coordinates(table: Any, *, xp: Any) -> tuple[Array, Array]:
    """Row and column index of every stored value, in the order of ``table.data``.

    CSR: the row of stored value ``j`` is the last ``i`` with ``indptr[i] <= j`` (a sorted
    search, the same call on NumPy and CuPy); CSC likewise with the roles swapped; COO stores
    both. Only the formats in :data:`SPARSE_FORMATS` reach this function (validation).
    """
    if table.format == "coo":
        return table.row, table.col
    nnz = table.data.shape[0]
    positions = xp.arange(nnz, dtype=table.indptr.dtype, device=device(table.indptr))
    major = xp.searchsorted(table.indptr, positions, side="right") - 1
    if table.format == "csr":
        return major, table.indices
    return table.indices, major


def sparse_scale(table: Any, factors: tuple[Array, Array] | list[Array], *, xp: Any) -> Any:
    r"""The balanced table :math:`\operatorname{diag}(f_X)\, K\, \operatorname{diag}(f_Y)`.

    A new sparse matrix of the same type and format as ``table`` (same index arrays, explicit
    zeros kept); ``table`` itself is not modified.
    """
    rows, cols = sparse_coordinates(table, xp=xp)
    out = table.copy()
    out.data = table.data * xp.take(factors[0], rows) * xp.take(factors[1], cols)
    return out
