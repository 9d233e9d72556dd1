"""Checks of scalar arguments: step counts, tolerances, sizes, noise levels, options, seeds."""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence

import numpy as np


def check_steps(steps: object, *, name: str = "steps") -> int | None:
    """Validate a number of single-marginal adjustments.

    Returns ``None`` for "iterate to tolerance" (``None`` or ``math.inf``), else an ``int >= 0``.
    """
    if steps is None or (isinstance(steps, float) and math.isinf(steps) and steps > 0):
        return None
    if isinstance(steps, bool) or not isinstance(steps, numbers.Integral):
        raise TypeError(
            f"{name} must be a non-negative integer, None or math.inf, got {steps!r}. "
            f"Pass e.g. {name}=4 for four single-marginal adjustments, or {name}=None to "
            "iterate to the tolerance."
        )
    if steps < 0:
        raise ValueError(
            f"{name} must be >= 0, got {steps}. It counts single-marginal adjustments "
            "(odd = X-step, even = Y-step); use 0 for the unbalanced table."
        )
    return int(steps)


def check_steps_or_inf(steps: object, *, name: str = "steps") -> int | float:
    """The paper's k: an ``int >= 0``, or ``math.inf`` for ``math.inf`` / ``None`` (the limit)."""
    k = check_steps(steps, name=name)
    return math.inf if k is None else k


def check_tol(tol: object, *, name: str = "tol") -> float:
    """Validate a positive, finite tolerance."""
    if isinstance(tol, bool) or not isinstance(tol, numbers.Real) or not (0 < tol < math.inf):
        raise ValueError(
            f"{name} must be a positive finite number, got {tol!r}. It is the largest marginal "
            "error accepted, relative to the target total (the share scale: for shares the "
            "absolute error); e.g. 1e-10."
        )
    return float(tol)


def check_positive_int(value: object, *, name: str) -> int:
    """Validate a positive integer (a sample size, a number of replicates or of steps)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}.")
    return int(value)


def check_max_steps(max_steps: object, *, name: str = "max_steps") -> int:
    """Validate a positive cap on the number of single-marginal adjustments."""
    return check_positive_int(max_steps, name=name)


ACCELERATOR_CHECK_SWEEPS = 10
"""Default period, in full sweeps, of the convergence check for a table on an accelerator."""


def check_check_every(
    check_every: object, *, n_axes: int, accelerator: bool = False, name: str = "check_every"
) -> int:
    """Validate the convergence-check period (in single-marginal adjustments).

    ``None``: one full sweep (``n_axes`` steps) on the host; on an accelerator
    (``accelerator=True``), :data:`ACCELERATOR_CHECK_SWEEPS` sweeps, since every check reads the
    error back to the host and so waits for the device: a few extra sweeps past convergence
    cost less than a synchronisation per sweep.
    """
    if check_every is None:
        return n_axes * (ACCELERATOR_CHECK_SWEEPS if accelerator else 1)
    if (
        isinstance(check_every, bool)
        or not isinstance(check_every, numbers.Integral)
        or check_every < 1
    ):
        raise ValueError(
            f"{name} must be a positive integer or None (one full sweep = {n_axes} steps), "
            f"got {check_every!r}."
        )
    return int(check_every)


def check_nonnegative(
    value: object, *, name: str, upper: float = math.inf, hint: str = ""
) -> float:
    """Validate a finite real number in ``[0, upper]``; ``hint`` is appended to the message."""
    if (
        isinstance(value, bool)
        or not isinstance(value, numbers.Real)
        or not math.isfinite(value)
        or not 0 <= value <= upper
    ):
        bound = f"in [0, {upper:g}]" if math.isfinite(upper) else "a finite number >= 0"
        raise ValueError(f"{name} must be {bound}, got {value!r}.{' ' + hint if hint else ''}")
    return float(value)


def check_option(value: object, *, options: Sequence[str], name: str, hint: str = "") -> str:
    """Validate a choice among ``options``; ``hint`` (what each option does) ends the message."""
    if isinstance(value, str) and value in options:
        return value
    raise ValueError(
        f"{name} must be one of {list(options)}, got {value!r}.{' ' + hint if hint else ''}"
    )


MISSING_POLICIES = ("raise", "empirical")
"""The missing-mass policies of the estimators (``theory.md`` §1.2)."""


def check_policy(missing: object, *, name: str = "missing") -> str:
    """Validate a missing-mass policy, one of :data:`MISSING_POLICIES`."""
    return check_option(
        missing,
        options=MISSING_POLICIES,
        name=name,
        hint="'raise' raises EmptyCategoryError on missing mass; 'empirical' falls back to "
        "P_n(h) and flags it.",
    )


def check_seed(seed: object, *, name: str = "seed") -> np.random.Generator:
    """A :class:`numpy.random.Generator` from anything :func:`numpy.random.default_rng` takes."""
    try:
        return np.random.default_rng(seed)  # type: ignore[arg-type]
    except (TypeError, ValueError) as exc:
        raise ValueError(
            f"{name} must be an int, a numpy.random.SeedSequence, a numpy.random.Generator or "
            f"None, got {seed!r} ({exc})."
        ) from exc
