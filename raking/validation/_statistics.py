"""Checks of the statistics layer's inputs, as float64 (codes as int64).

Count tables keep the array library they come in (the estimators run on NumPy, CuPy or
PyTorch); everything else is returned as NumPy.

Inputs checked: count tables, category codes, functions h(x, y), probability vectors and joint
pmfs, and pairs of target marginals.
"""

from __future__ import annotations

import numbers

import numpy as np

from raking._array_api import Array, get_xp, is_array, to_numpy
from raking.exceptions import EmptyCategoryError
from raking.validation._arrays import check_table, check_targets, count_targets
from raking.validation._messages import _MAX_LISTED, _where, listed


def check_counts(counts: object, *, name: str = "counts") -> Array:
    """Count table(s) ``(..., m, l)`` as float64: finite, non-negative, every table with mass.

    Arrays of any array-API library (NumPy, CuPy, PyTorch, ...) keep their namespace and device;
    anything else is converted with :func:`numpy.asarray`.
    """
    arr = counts if is_array(counts) else np.asarray(counts)
    if arr.ndim < 2:
        raise ValueError(
            f"{name} must be a count table of shape (..., m, l), got shape {tuple(arr.shape)}. "
            "Build it from integer codes with raking.stats.marginals.counts_from_codes."
        )
    xp = get_xp(arr)
    table = xp.astype(check_table(arr, n_axes=2, xp=xp, name=name), xp.float64)
    totals = xp.sum(table, axis=(-2, -1))
    if bool(xp.any(totals <= 0)):
        first = np.argwhere(np.atleast_1d(to_numpy(totals)) <= 0)[0].tolist()
        raise ValueError(
            f"{name} has a table with no observations (batch index {first}); an estimate needs "
            "n > 0. Drop empty replicates before estimating."
        )
    return table


def check_shape(
    shape: object, *, name: str = "shape", like: tuple[int, ...] | None = None, like_name: str = "h"
) -> tuple[int, int]:
    """A pair ``(m, l)`` of positive integers.

    With ``like`` (the shape of the argument ``like_name``), ``shape`` must equal it.
    """
    ok = (
        isinstance(shape, tuple | list)
        and len(shape) == 2
        and all(
            isinstance(s, numbers.Integral) and not isinstance(s, bool) and s >= 1 for s in shape
        )
    )
    if like is not None and (not ok or tuple(shape) != tuple(like)):  # type: ignore[arg-type]
        raise ValueError(
            f"{name} is {shape!r} but {like_name} has shape {tuple(like)}; {like_name} must give "
            f"one value per (x, y) cell. Drop {name} or pass {like_name} of that shape."
        )
    if not ok:
        raise ValueError(
            f"{name} must be a pair (m, l) of positive integers, got {shape!r}; m and l are the "
            "numbers of categories of x and y."
        )
    return int(shape[0]), int(shape[1])  # type: ignore[index]


def check_codes(
    codes: object, n_categories: int, *, name: str, replicates: bool = True
) -> np.ndarray:
    """Integer category codes in ``[0, n_categories)`` as int64, 1-D (or 2-D with replicates)."""
    arr = np.asarray(codes)
    if arr.ndim != 1 and not (replicates and arr.ndim == 2):
        if replicates:
            raise ValueError(
                f"{name} must be 1-D (one sample) or 2-D (replicates, samples), got shape "
                f"{arr.shape}."
            )
        raise ValueError(
            f"{name} must be 1-D (one sample), got shape {arr.shape}. For replicates, use "
            "counts_from_codes and balanced_estimate."
        )
    if arr.dtype == object:
        arr = _object_codes(arr)
    if arr.size and not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(_codes_dtype_message(arr, name))
    bad = (arr < 0) | (arr >= n_categories)
    if np.any(bad):
        values = np.unique(arr[bad])[:_MAX_LISTED].tolist()
        raise ValueError(
            f"{name} has codes {values} outside [0, {n_categories}); every code must index a "
            f"category. Pass a larger shape or re-encode {name}."
        )
    return arr.astype(np.int64, copy=False)


def _real_array(value: object, *, name: str, what: str) -> np.ndarray:
    """``value`` as a float64 array; a ValueError naming ``name`` if it is not real numbers.

    Complex values are rejected (casting would drop the imaginary part silently), as are
    strings, ``None`` and missing values (pandas ``NA``), with the value NumPy stumbled on.
    """
    if np.iscomplexobj(value):
        raise ValueError(
            f"{name} must hold real numbers ({what}), got complex values. Pass the real part "
            f"({name}.real) if that is what you mean."
        )
    try:
        return np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(
            f"{name} must hold real numbers ({what}), but NumPy cannot convert it to float64: "
            f"{exc}. Encode it as numbers (and missing values as a number or drop them)."
        ) from exc


def _object_codes(arr: np.ndarray) -> np.ndarray:
    """An object array of integers as int64 (pandas < 3 turns nullable integers into these)."""
    if all(isinstance(v, numbers.Integral) and not isinstance(v, bool) for v in arr.flat):
        try:
            return arr.astype(np.int64)
        except OverflowError:  # beyond int64: reported as out of range by the caller's check
            return arr
    return arr


def _is_missing(value: object) -> bool:
    """``None``, a float NaN, or pandas' ``NA`` (recognised without importing pandas)."""
    if value is None or type(value).__name__ == "NAType":
        return True
    return isinstance(value, float | np.floating) and bool(np.isnan(value))


def _codes_dtype_message(arr: np.ndarray, name: str) -> str:
    """Why ``arr`` (not integer) is not codes: missing values, whole floats, or another type."""
    if arr.dtype.kind in "fc":
        missing = np.isnan(arr)
    elif arr.dtype == object:
        missing = np.array([_is_missing(v) for v in arr.flat], dtype=bool).reshape(arr.shape)
    else:
        missing = np.zeros(arr.shape, dtype=bool)
    if np.any(missing):
        return (
            f"{name} has missing values (NaN/None/NA) at positions "
            f"{listed(np.flatnonzero(missing.ravel()).tolist())}; a category code is needed "
            "for every pair. Drop those pairs from x and y (or code the missing values as a "
            "category of their own)."
        )
    if arr.dtype.kind == "f" and np.all(np.isfinite(arr)) and np.all(arr % 1 == 0):
        return (
            f"{name} must hold integer category codes, got dtype {arr.dtype} (whole numbers). "
            f"Cast it with {name}.astype(int)."
        )
    return (
        f"{name} must hold integer category codes, got dtype {arr.dtype}. Encode the "
        "categories as 0, 1, ..., e.g. with numpy.unique(values, return_inverse=True)."
    )


def check_function(
    h: object, shape: tuple[int, ...] | None = None, *, name: str = "h"
) -> np.ndarray:
    """Function values ``h(x, y)`` as a finite float64 ``(m, l)`` array, of ``shape`` if given."""
    arr = _real_array(h, name=name, what=f"the values {name}(x, y)")
    if shape is None and arr.ndim != 2:
        raise ValueError(
            f"{name} must be an (m, l) table of {name}(x, y), got shape {arr.shape}. Give one "
            "value per (x, y) cell, X on the rows and Y on the columns."
        )
    if shape is not None and arr.shape != tuple(shape):
        raise ValueError(
            f"{name} has shape {arr.shape} but the table's last two axes are {tuple(shape)}; "
            f"give {name}(x, y) as an array of shape {tuple(shape)}, X on the rows and Y on the "
            "columns (for a function of x only, broadcast it: np.broadcast_to(f[:, None], "
            "shape))."
        )
    if not np.isfinite(arr.sum()) and not np.all(np.isfinite(arr)):
        raise ValueError(
            f"{name} must be finite, found NaN or inf at cells {_where(~np.isfinite(arr))}. "
            "Replace them: the estimators and the theory need a bounded function."
        )
    return arr


PROBABILITY_TOL = 1e-8
"""Largest accepted ``|sum - 1|`` for a probability vector or joint pmf."""


def check_probability(p: object, *, ndim: int = 1, name: str = "p") -> np.ndarray:
    """A float64 probability vector (``ndim=1``) or joint pmf (``ndim=2``): finite, >= 0, sum 1.

    The sum must be 1 within :data:`PROBABILITY_TOL` (within ``16 eps`` of a narrower float
    dtype that ``p`` is stored in: :func:`_probability_tol`); the array is returned as given,
    not renormalised, except that a narrow-dtype pmf is divided by its float64 sum.
    """
    arr = _real_array(p, name=name, what="probabilities")
    if arr.ndim != ndim or arr.size == 0:
        what, fix = (
            ("1-D probability vector", "Give one probability per category.")
            if ndim == 1
            else (
                f"{ndim}-D joint pmf of shape (m, l)",
                "Pass the joint probabilities as an m x l array (rows X, columns Y).",
            )
        )
        raise ValueError(f"{name} must be a non-empty {what}, got shape {arr.shape}. {fix}")
    if not np.isfinite(arr.sum()) and not np.all(np.isfinite(arr)):
        raise ValueError(
            f"{name} must be finite and non-negative, found NaN or infinite entries at "
            f"{_where(~np.isfinite(arr))}. Replace them; probabilities lie in [0, 1]."
        )
    if arr.min() < 0:
        raise ValueError(
            f"{name} must be finite and non-negative, found negative entries at "
            f"{_where(arr < 0)} (smallest {arr.min():.6g}). Pass probabilities, not centred "
            "or log values."
        )
    total = float(arr.sum())
    tol = _probability_tol(p)
    if abs(total - 1.0) > tol:
        raise ValueError(
            f"{name} sums to {total:.12g}, not 1 (tolerance {tol:g}). Divide {name} "
            f"by its sum ({name} / {name}.sum()) to give probabilities."
        )
    if tol > PROBABILITY_TOL:  # normalised in a narrower dtype: exactly 1 in float64
        arr = arr / total
    return arr


def _probability_tol(p: object) -> float:
    """:data:`PROBABILITY_TOL`, or ``16 eps`` of a narrower float dtype that ``p`` is stored in.

    A float32 pmf divided by its sum in float32 sums to 1 only within a few float32 ``eps``
    (1.2e-7) in float64, so the fix the error suggests could not meet 1e-8; such a pmf is
    accepted and divided by its float64 sum instead.
    """
    try:
        dtype = np.dtype(getattr(p, "dtype", np.float64))
    except TypeError:  # a dtype NumPy does not know (e.g. a torch dtype)
        return PROBABILITY_TOL
    if not np.issubdtype(dtype, np.floating):
        return PROBABILITY_TOL
    return max(PROBABILITY_TOL, 16 * float(np.finfo(dtype).eps))


def check_joint(P: object, *, name: str = "P") -> np.ndarray:
    """A float64 joint pmf ``(m, l)`` with strictly positive marginals.

    An empty row or column raises :class:`EmptyCategoryError`: the conditional means given X (or
    Y) divide by its probability.
    """
    arr = check_probability(P, ndim=2, name=name)
    for axis, label in ((0, "X"), (1, "Y")):
        empty = np.flatnonzero(arr.sum(axis=1 - axis) == 0)
        if empty.size:
            cats = [int(c) for c in empty]
            kind = "rows" if axis == 0 else "columns"
            raise EmptyCategoryError(
                f"{name} has zero probability in {label} categories {listed(cats)}; the "
                f"conditional means given {label} divide by P_{label}, which is 0 there. Drop "
                f"these {kind} from {name} (the rest still sums to 1).",
                axis=axis,
                categories=tuple(cats),
                batch_index=None,
            )
    return arr


def _check_pair(targets: object, shape: tuple[int, ...], *, name: str = "targets") -> None:
    """Raise unless ``targets`` is a pair ``[p_x, p_y]``: one marginal per axis of the table."""
    if isinstance(targets, np.ndarray):
        if targets.ndim == 2 and len(targets) == 2:
            return
        got = f"an array of shape {targets.shape}"
    else:
        n = count_targets(targets, name=name)
        if n == 2:
            return
        got = f"{n} array{'s' if n != 1 else ''}"
    m, l = tuple(shape)[-2:]
    raise ValueError(
        f"{name} must be a pair [p_x, p_y], one target marginal per axis of the (m, l) = "
        f"({m}, {l}) table, got {got}. Pass {name}=[p_x, p_y] with lengths {m} and {l}."
    )


def check_xy_targets(targets: object, table: Array, *, name: str = "targets") -> list[Array]:
    """A pair ``[p_x, p_y]`` of targets (shares or counts) for the ``(..., m, l)`` table.

    Each is ``(n_i,)`` or has the table's batch axes in front; see :func:`check_targets`. The
    result has the table's namespace, dtype and device.
    """
    _check_pair(targets, tuple(table.shape), name=name)
    if isinstance(targets, np.ndarray):
        targets = list(targets)
    return check_targets(targets, table, xp=get_xp(table), name=name)  # type: ignore[arg-type]


def check_marginal_pmfs(
    targets: object, shape: tuple[int, int], *, name: str = "targets"
) -> tuple[np.ndarray, np.ndarray]:
    """A pair of marginal pmfs ``(p_x, p_y)`` of lengths ``shape``, as float64 vectors."""
    _check_pair(targets, shape, name=name)
    out = []
    for i, (t, size) in enumerate(zip(targets, shape, strict=True)):  # type: ignore[call-overload]
        label = f"{name}[{i}]"
        arr = _real_array(t, name=label, what="probabilities")
        if arr.shape != (size,):
            raise ValueError(
                f"{label} must have shape ({size},) to match axis {i} of the table, got "
                f"{arr.shape}. Give one probability per category, in the table's order."
            )
        out.append(check_probability(arr, ndim=1, name=label))
    return out[0], out[1]
