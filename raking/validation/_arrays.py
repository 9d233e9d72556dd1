"""Checks of the kernel's inputs: (batched) tables and targets of any array-API library.

Every array keeps its namespace, dtype and device; messages list the offending cells.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np

from raking._array_api import Array, get_xp, is_array, to_float, to_numpy
from raking.exceptions import EmptyCategoryError
from raking.kernel.sparse import (
    SPARSE_FORMATS,
    is_sparse,
    sparse_coordinates,
    sparse_reduce,
    table_device,
)
from raking.validation._messages import _cells, listed


def check_is_array(x: object, *, name: str) -> None:
    """Raise a TypeError unless ``x`` is an array of a library that array-api-compat knows."""
    if not is_array(x):
        raise TypeError(
            f"{name} must be an array (NumPy, CuPy, PyTorch or another array-API library), got "
            f"{type(x).__name__}. Wrap it with numpy.asarray first."
        )


def table_namespace(table: object, *, name: str = "table") -> Any:
    """The array namespace of a dense table, or of a sparse table's stored values.

    A 2-D ``scipy.sparse`` (``cupyx.scipy.sparse``) matrix or array is balanced with NumPy
    (CuPy) factor vectors; anything else must be an array of a library array-api-compat knows.
    """
    if is_sparse(table):
        return get_xp(table.data)
    check_is_array(table, name=name)
    return get_xp(table)


def _float_dtype(xp: Any, x: Array, compute_dtype: Any = None) -> Any:
    """The floating dtype that ``x`` is stored in: floats stay, everything else is float64.

    Integers and booleans become ``compute_dtype`` when one is given (they are copied anyway).
    """
    if xp.isdtype(x.dtype, "real floating"):
        return x.dtype
    if xp.isdtype(x.dtype, ("integral", "bool")):
        return xp.float64 if compute_dtype is None else compute_dtype
    raise TypeError(
        f"expected a real-valued array, got dtype {x.dtype}. Complex tables cannot be balanced."
    )


def is_half(xp: Any, dtype: Any) -> bool:
    """Whether ``dtype`` is a floating dtype narrower than float32 (float16, bfloat16)."""
    if dtype == xp.float32 or dtype == xp.float64:  # the common case, without finfo
        return False
    return bool(xp.isdtype(dtype, "real floating")) and xp.finfo(dtype).bits < 32


def default_compute_dtype(xp: Any, dtype: Any) -> Any:
    """The compute dtype of a table stored in floating ``dtype``: float32 for half precision."""
    return xp.float32 if is_half(xp, dtype) else dtype


def _same_dtype(a: object, b: Any) -> bool:
    """``a == b`` for dtype objects of any library, ``False`` where they cannot be compared."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # array-api-strict warns on foreign dtypes
            return bool(a == b)
    except (TypeError, ValueError):
        return False


def check_compute_dtype(
    compute_dtype: object, table: Any, *, xp: Any, name: str = "compute_dtype"
) -> Any:
    """The dtype the factors, targets, reductions and errors of ``table`` are computed in.

    ``None``: the table's floating dtype (float64 for integer tables), float32 for a float16 or
    bfloat16 table (half-precision *storage*, accumulated in float32). Otherwise ``"float32"``,
    ``"float64"`` or the float32 / float64 dtype of the table's library (``torch.float64``,
    ``numpy.float32``, ...), with at least the precision of the table: the table is never
    rounded to a coarser dtype. An integer table is converted to the compute dtype. ``table`` is
    the caller's (unchecked) array or sparse matrix.
    """
    if compute_dtype is None:
        parsed = None
    elif isinstance(compute_dtype, str) and compute_dtype in ("float32", "float64"):
        parsed = getattr(xp, compute_dtype)
    elif _same_dtype(compute_dtype, xp.float32):
        parsed = xp.float32
    elif _same_dtype(compute_dtype, xp.float64):
        parsed = xp.float64
    else:
        raise ValueError(
            f"{name} must be None, 'float32', 'float64' or the float32 / float64 dtype of the "
            f"table's array library, got {compute_dtype!r}. Pass {name}='float32' (the default "
            f"for float16 and bfloat16 tables) or {name}='float64'; half-precision dtypes are "
            "storage dtypes of the table, never compute dtypes."
        )
    stored = table.dtype
    if xp.isdtype(stored, "real floating"):
        storage = stored
    elif xp.isdtype(stored, ("integral", "bool")):
        storage = xp.float64 if parsed is None else parsed
    else:  # complex, object (LIL): check_table says what is wrong with the table
        return parsed
    if parsed is None:
        return default_compute_dtype(xp, storage)
    if xp.finfo(parsed).bits < xp.finfo(storage).bits:
        raise ValueError(
            f"{name}={compute_dtype!r} has less precision than the table's dtype {storage}; "
            "the factors and sums are never coarser than the stored table. Pass "
            f"{name}=None (the table's dtype) or 'float64', or cast the table to the lower "
            "precision first if that is what you want."
        )
    return parsed


def check_table(
    table: Array,
    *,
    n_axes: int,
    xp: Any,
    log_domain: bool = False,
    name: str = "table",
    compute_dtype: Any = None,
) -> Array:
    """Validate a (batched) table whose last ``n_axes`` axes are balanced.

    Returns the table as a floating array of its own namespace (integers become float64, or
    ``compute_dtype``, a dtype resolved by :func:`check_compute_dtype`, when given). A float16
    or bfloat16 table keeps its dtype and is checked without a float32 copy and without
    overflow (its values are compared by min / max, never summed in half precision). The
    caller's array is never modified. Entries must be finite and non-negative, or, with
    ``log_domain=True``, log-weights: finite or ``-inf`` (zero weight), never NaN or ``+inf``.
    A sparse table is checked by :func:`check_sparse_table`.
    """
    if is_sparse(table):
        return check_sparse_table(
            table,
            n_axes=n_axes,
            xp=xp,
            log_domain=log_domain,
            name=name,
            compute_dtype=compute_dtype,
        )
    check_is_array(table, name=name)
    if table.ndim < n_axes:
        raise ValueError(
            f"{name} has {table.ndim} axes but {n_axes} targets were given; the last {n_axes} "
            f"axes of {name} are balanced, one per target. Give one target per balanced axis."
        )
    if any(n == 0 for n in table.shape):
        raise ValueError(f"{name} has an empty axis (shape {tuple(table.shape)}).")
    table = xp.astype(table, _float_dtype(xp, table, compute_dtype), copy=False)
    if log_domain:
        bad = xp.isnan(table) | (table == math.inf)
        if bool(xp.any(bad)):
            cells = np.argwhere(to_numpy(bad))
            raise ValueError(
                f"{name} holds log-weights, so every entry must be finite or -inf (zero weight); "
                f"found NaN or +inf at {listed(_cells(cells))}. Replace them before "
                "balancing."
            )
        return table
    if is_half(xp, table.dtype):
        # A half-precision sum overflows (float16 at 65504): min and max are exact, and NaN
        # propagates through both.
        low = to_float(xp.min(table))
        finite = math.isfinite(low) and math.isfinite(to_float(xp.max(table)))
    else:
        with np.errstate(over="ignore"):  # finite cells whose sum overflows are fine
            finite = math.isfinite(to_float(xp.sum(table)))
        if not finite:  # NaN / inf in a cell, or only the sum overflowed: look at the cells
            finite = bool(xp.all(xp.isfinite(table)))
        low = None
    if not finite:
        cells = np.argwhere(~np.isfinite(to_numpy(table)))
        raise ValueError(
            f"{name} must be finite, found NaN or inf at cells {listed(_cells(cells))}"
            ". Impute or drop those entries before balancing."
        )
    if (to_float(xp.min(table)) if low is None else low) < 0:
        cells = np.argwhere(to_numpy(table) < 0)
        raise ValueError(
            f"{name} must be non-negative (weights or counts), found negative entries at cells "
            f"{listed(_cells(cells))}. Balancing rescales mass and cannot make it "
            "negative; for log-weights pass log_domain=True."
        )
    return table


def _stored_cells(table: Any, bad: Array, *, xp: Any) -> list[tuple[int, ...]]:
    """``(row, col)`` of the stored values of a sparse table flagged by the vector ``bad``."""
    rows, cols = sparse_coordinates(table, xp=xp)
    mask = to_numpy(bad)
    return _cells(np.stack([to_numpy(rows)[mask], to_numpy(cols)[mask]], axis=-1))


def check_sparse_table(
    table: Any,
    *,
    n_axes: int,
    xp: Any,
    log_domain: bool = False,
    name: str = "table",
    compute_dtype: Any = None,
) -> Any:
    """Validate a sparse 2-D table: two balanced axes, no batch axes, not in the log domain.

    Returns the table with floating stored values (integers become float64, or
    ``compute_dtype`` when given, a copy; a floating table is returned as it is, never
    modified). Only CSR, CSC and COO are accepted; the stored values must be finite and
    non-negative (explicit zeros are allowed).
    """
    fmt = str(table.format)
    if fmt not in SPARSE_FORMATS:
        raise TypeError(
            f"{name} is a sparse matrix in {fmt.upper()} format; the kernel balances CSR, CSC "
            f"and COO tables. Convert it first, e.g. {name}.tocsr()."
        )
    shape = tuple(table.shape)
    if len(shape) != 2:
        raise ValueError(
            f"{name} is a {len(shape)}-D sparse array; sparse tables must be 2-D (rows x "
            "columns). Pass a 2-D sparse matrix, or a dense array for batched or N-D tables."
        )
    if n_axes != 2:
        raise ValueError(
            f"{name} is a 2-D sparse matrix, so it has no batch axes and needs exactly 2 targets "
            f"(row and column marginals), got {n_axes}. Give [p_x, p_y], or pass a dense array "
            "to balance batched tables."
        )
    if log_domain:
        raise ValueError(
            f"log_domain=True is not supported for a sparse {name}: its implicit zeros would "
            "read as log-weight 0 (weight 1). Pass the weights (exp of the log-weights) as a "
            "sparse table with log_domain=False, or a dense log-table."
        )
    if any(n == 0 for n in shape):
        raise ValueError(f"{name} has an empty axis (shape {shape}).")
    dtype = _float_dtype(xp, table.data, compute_dtype)
    if table.data.dtype != dtype:
        table = table.astype(dtype)
    data = table.data
    if data.shape[0] == 0:
        return table
    with np.errstate(over="ignore"):  # finite values whose sum overflows are fine
        finite = math.isfinite(to_float(xp.sum(data)))
    if not finite and not bool(xp.all(xp.isfinite(data))):
        cells = _stored_cells(table, ~xp.isfinite(data), xp=xp)
        raise ValueError(
            f"{name} must be finite, found NaN or inf stored at cells {listed(cells)}. Impute "
            "or drop those entries before balancing."
        )
    if to_float(xp.min(data)) < 0:
        cells = _stored_cells(table, data < 0, xp=xp)
        raise ValueError(
            f"{name} must be non-negative (weights or counts), found negative entries stored at "
            f"cells {listed(cells)}. Balancing rescales mass and cannot make it negative."
        )
    return table


def count_targets(targets: object, *, name: str = "targets") -> int:
    """Number of balanced axes: ``targets`` must be a non-empty sequence of 1-D arrays."""
    if isinstance(targets, (str, bytes)) or not isinstance(targets, Sequence) or not targets:
        raise TypeError(
            f"{name} must be a non-empty sequence (list or tuple) with one 1-D array per balanced "
            f"axis, got {type(targets).__name__}. For a 2-D table pass [p_x, p_y]."
        )
    return len(targets)


def total_tolerance(xp: Any, dtype: Any) -> float:
    """Relative tolerance for "targets have equal totals": ``1e-8`` in float64, ``1e-4`` below.

    ``dtype`` is the compute dtype (the targets' dtype): float32 for a half-precision table.
    """
    return 1e-8 if dtype == xp.float64 else 1e-4


def check_targets(
    targets: Sequence[Array],
    table: Array,
    *,
    xp: Any,
    name: str = "targets",
    dtype: Any = None,
) -> list[Array]:
    """Validate one target marginal per balanced axis of ``table``.

    Each target is a 1-D array of length ``table.shape[-d + i]`` (or has the table's batch axes in
    front), non-negative, finite, with a positive total; all targets share one total (shares summing
    to 1, or population counts). Lists and NumPy arrays are converted to the table's namespace
    and device, and to ``dtype``: the compute dtype, by default the table's dtype (float32 for a
    float16 or bfloat16 table).
    """
    if dtype is None:
        dtype = default_compute_dtype(xp, table.dtype)
    d = count_targets(targets, name=name)
    batch_shape = tuple(table.shape[: table.ndim - d])
    out = []
    totals = []
    for i, target in enumerate(targets):
        label = f"{name}[{i}]"
        n_i = table.shape[table.ndim - d + i]
        try:
            if is_array(target) and not isinstance(target, np.ndarray):
                t = xp.asarray(target, dtype=dtype, device=table_device(table))
            else:
                t = xp.asarray(np.asarray(target, dtype=np.float64), device=table_device(table))
                t = xp.astype(t, dtype, copy=False)  # read only: no copy needed
        except (TypeError, ValueError, RuntimeError) as exc:
            raise TypeError(
                f"{label} could not be converted to the table's array type: {exc}. Pass it as "
                "an array of the same library (and device) as the table."
            ) from exc
        shape = tuple(t.shape)
        if shape not in ((n_i,), (*batch_shape, n_i)):
            raise ValueError(
                f"{label} has shape {shape} but axis {table.ndim - d + i} of the table has "
                f"{n_i} categories; give a 1-D array of length {n_i} (or one with the table's "
                f"batch axes {batch_shape} in front)."
            )
        t_np = to_numpy(t)
        if not np.all(np.isfinite(t_np)):
            raise ValueError(f"{label} must be finite, got {t_np}. Replace NaN/inf entries.")
        if np.any(t_np < 0):
            bad = np.argwhere(t_np < 0)[:, -1].tolist()
            raise ValueError(
                f"{label} has negative entries at categories {listed(bad)}; targets are "
                "shares or counts and must be >= 0."
            )
        with np.errstate(over="ignore"):
            total = t_np.astype(np.float64, copy=False).sum(axis=-1)
        if np.any(total <= 0):
            raise ValueError(f"{label} sums to 0; a target marginal needs positive total mass.")
        _check_total_range(total, xp.finfo(dtype), label=label)
        totals.append(total)
        out.append(t)
    rtol = total_tolerance(xp, dtype)
    for i in range(1, d):
        _check_same_total(totals[i], totals[0], rtol=rtol, name=name, i=i)
        out[i] = _rescaled(out[i], totals[i], totals[0], xp=xp)
    return out


def _check_total_range(total: np.ndarray, info: Any, *, label: str) -> None:
    """Raise unless every total lies in ``[2**-(emax/2), 2**(emax/2)]`` of the compute dtype.

    The kernel keeps its factors within ``2**±(emax/2)`` and its cells near the target total
    ``T``; a total outside that range (below ``7.5e-155`` or above ``1.3e154`` in float64,
    ``5.4e-20`` / ``1.8e19`` in float32) could over- or underflow a cell times a factor, and is
    refused with the fix: shares (divide by the sum) always fit.
    """
    e = math.floor(math.log2(float(info.max)) / 2)
    low, high = 2.0**-e, 2.0**e
    bad = ~((low <= total) & (total <= high))
    if np.any(bad):
        value = float(np.ravel(total)[np.flatnonzero(np.ravel(bad))[0]])
        raise ValueError(
            f"{label} sums to {value!r}, outside the range [{low:.3g}, {high:.3g}] the kernel "
            f"balances to in {info.dtype}; pass shares instead (divide every target by its "
            "sum) and scale the balanced table by the total afterwards."
        )


def _check_same_total(
    total: np.ndarray, first: np.ndarray, *, rtol: float, name: str, i: int
) -> None:
    """Raise unless ``total`` (of ``targets[i]``) equals ``first`` to relative ``rtol``.

    The message names the first batch entry that differs and prints both totals with every
    digit that tells them apart (``repr``), and their relative gap.
    """
    if np.array_equal(total, first):
        return
    total, first = np.broadcast_arrays(total, first)
    close = np.isclose(total, first, rtol=rtol, atol=0)
    if np.all(close):
        return
    where = np.argwhere(~close)[0] if total.ndim else ()
    a, b = float(total[tuple(where)]), float(first[tuple(where)])
    entry = f" (batch entry {tuple(int(j) for j in where)})" if total.ndim else ""
    raise ValueError(
        f"{name}[{i}] sums to {a!r} but {name}[0] sums to {b!r}{entry}, a relative gap of "
        f"{abs(a - b) / max(abs(b), abs(a)):.3g} > {rtol:g}; every target must have the same "
        "total. Divide each by its sum to give shares, or give population counts for all of "
        "them."
    )


def _rescaled(target: Array, total: np.ndarray, first: np.ndarray, *, xp: Any) -> Array:
    """``target * first / total``: a target whose total passed the check, on ``targets[0]``'s.

    Totals accepted as equal (relative gap up to :func:`total_tolerance`) can still differ by
    more than the balancing tolerance, and then no table meets both: every target is brought
    to the total of ``targets[0]`` (per batch entry), which the balanced table then has.
    Unchanged (the same array) where every total is within ``4 eps`` (relative, ``eps`` of the
    target's dtype) of the first's: such a gap is below the attainable tolerance
    (:func:`raking.kernel.ipf.attainable_tol`, ``8 eps``), so no balancing can tell it, and
    shares normalised one by one (``p / p.sum()``) differ by that much. Skipping their rescale
    spares a pass over the targets (2 ms for 10^4 pairs of 50-level targets).
    """
    if np.array_equal(total, first):
        return target
    eps = float(xp.finfo(target.dtype).eps)
    if np.all(np.abs(total - first) <= 4.0 * eps * np.abs(first)):
        return target
    ratio = np.asarray(first / total, dtype=np.float64)[..., None]
    return target * xp.asarray(ratio, dtype=target.dtype, device=table_device(target))


def _balanced_marginal(table: Array, axis: int, n_axes: int, *, xp: Any, log_domain: bool) -> Array:
    """Mass of each category on balanced axis ``axis``, or a stand-in that is zero where it is.

    In the log domain: the max log-weight (``-inf`` exactly where the mass is 0); for a half-
    precision table: the max weight (0 exactly where the mass is, no half-precision sum).
    """
    if is_sparse(table):  # validated: 2-D, not log_domain
        n_other = table.shape[1 - axis]
        ones = xp.ones(n_other, dtype=table.dtype, device=table_device(table))
        return sparse_reduce(table, ones, axis)
    first = table.ndim - n_axes
    others = tuple(first + b for b in range(n_axes) if b != axis)
    if not others:
        return table
    if log_domain or is_half(xp, table.dtype):
        # Log-weights: the largest one; half precision: the largest weight, which is positive
        # exactly when the (non-negative) mass is, with no half-precision sum to overflow.
        return xp.max(table, axis=others)
    if n_axes == 2:  # a mat-vec with ones: one streaming pass (faster than a strided sum)
        with np.errstate(over="ignore"):  # an overflowing sum (inf) is positive all the same
            return _ones_matvec(table, axis, first, xp=xp)
    with np.errstate(over="ignore"):
        return xp.sum(table, axis=others)


def _ones_matvec(table: Array, axis: int, first: int, *, xp: Any) -> Array:
    """The sums of a dense (batched) 2-D table along rows (``axis=0``) or columns, as a mat-vec."""
    n_other = table.shape[first + 1 - axis]
    ones = xp.ones((n_other, 1), dtype=table.dtype, device=table_device(table))
    if axis == 0:
        return xp.matmul(table, ones)[..., 0]
    return xp.matmul(xp.matrix_transpose(ones), table)[..., 0, :]


def find_empty_categories(
    table: Array, targets: Sequence[Array], *, xp: Any, log_domain: bool = False
) -> list[Array]:
    """Boolean masks, one per balanced axis, of the empty categories with a positive target.

    Mask ``i`` has shape ``(*batch, n_i)``; ``True`` marks a category whose row (hyper-slice) of
    the table holds no mass while ``targets[i]`` asks for some: the constraints are infeasible.
    """
    d = len(targets)
    masks = []
    for axis, target in enumerate(targets):
        marg = _balanced_marginal(table, axis, d, xp=xp, log_domain=log_domain)
        empty = (marg == -math.inf) if log_domain else (marg <= 0)
        masks.append(empty & (target > 0))
    return masks


def raise_on_empty_categories(
    table: Array,
    targets: Sequence[Array],
    *,
    xp: Any,
    log_domain: bool = False,
    name: str = "table",
) -> None:
    """Raise :class:`EmptyCategoryError` naming the first empty category with a positive target."""
    d = len(targets)
    axis_names = "XYZ"
    for axis, mask in enumerate(
        find_empty_categories(table, targets, xp=xp, log_domain=log_domain)
    ):
        if not bool(xp.any(mask)):
            continue
        mask_np = to_numpy(mask)
        batch = mask_np.reshape(-1, mask_np.shape[-1])
        first = int(np.argmax(batch.any(axis=-1)))
        cats = tuple(int(c) for c in np.flatnonzero(batch[first]))
        n_bad = int(batch.any(axis=-1).sum())
        where = "" if mask_np.ndim == 1 else f" in batch entry {first} ({n_bad} tables affected)"
        label = axis_names[axis] if d <= 3 else f"axis-{axis}"
        raise EmptyCategoryError(
            f"{name} has no mass in {label} categories {listed(list(cats))} (balanced axis "
            f"{table.ndim - d + axis}){where}, but targets[{axis}] is positive there; raking "
            "cannot rescale an empty category (missing mass). Merge those categories with a "
            "neighbour, set their target to 0, or use the 'empirical' missing-mass policy of "
            "raking.stats.estimators.",
            axis=axis,
            categories=cats,
            batch_index=None if mask_np.ndim == 1 else first,
        )
