"""Checks of the inputs of :mod:`raking.torch`: argument, value received, fix.

Shapes, dtypes and scalars are checked without touching the tensors' values, so a loss called
every training step never synchronises with the GPU for them. Target and prior vectors are small
and their values are checked (one host copy each).
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence

import numpy as np
import torch

from raking.validation import check_option, check_positive_int, check_steps

__all__ = [
    "check_distribution",
    "check_is_tensor",
    "check_loss_steps",
    "check_nonnegative",
    "check_option",
    "check_positive",
    "check_positive_int",
    "check_rank",
    "check_square",
    "check_targets",
    "check_tensor",
    "compute_dtype",
]

_HALF = (torch.float16, torch.bfloat16)


def compute_dtype(x: torch.Tensor) -> torch.dtype:
    """float32 for half-precision inputs (log-sum-exps accumulate in float32), else the dtype."""
    return torch.float32 if x.dtype in _HALF else x.dtype


def check_is_tensor(x: object, *, name: str) -> torch.Tensor:
    """A :class:`torch.Tensor`, else a TypeError."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(
            f"{name} must be a torch.Tensor, got {type(x).__name__}. Convert it with "
            f"torch.as_tensor({name}) first."
        )
    return x


def check_tensor(x: object, *, name: str, ndim: int | None = None) -> torch.Tensor:
    """A floating-point :class:`torch.Tensor` with ``ndim`` axes (``None``: at least 2)."""
    x = check_is_tensor(x, name=name)
    if not torch.is_floating_point(x):
        raise TypeError(
            f"{name} must be a floating-point tensor, got dtype {x.dtype}. Cast it with "
            f"{name}.float()."
        )
    if (ndim is None and x.ndim < 2) or (ndim is not None and x.ndim != ndim):
        want = "at least 2" if ndim is None else str(ndim)
        raise ValueError(f"{name} must have {want} axes, got shape {tuple(x.shape)}.")
    if any(n == 0 for n in x.shape):
        raise ValueError(f"{name} has an empty axis (shape {tuple(x.shape)}).")
    return x


def check_square(logits: object, *, name: str = "logits") -> torch.Tensor:
    """A square ``(B, B)`` matrix of pair scores (row i and column i form an observed pair)."""
    logits = check_tensor(logits, name=name, ndim=2)
    if logits.shape[0] != logits.shape[1]:
        raise ValueError(
            f"{name} must be a square (B, B) matrix whose diagonal holds the observed pairs, got "
            f"shape {tuple(logits.shape)}. Pass image_features @ text_features.T for one "
            "batch; for sharded batches use BalancedClipLoss(local_loss=True)."
        )
    return logits


def check_loss_steps(steps: object, *, name: str = "steps") -> int:
    """A fixed number of balancing steps ``k >= 0`` (a loss has no "to tolerance" mode)."""
    try:
        k = check_steps(steps, name=name)
    except TypeError:  # its hint offers None, which a loss refuses
        raise TypeError(
            f"{name} must be a non-negative integer (a fixed k for a loss), got {steps!r}. "
            f"Pass e.g. {name}=2."
        ) from None
    if k is None:
        raise ValueError(
            f"{name} must be a fixed integer k >= 0 for a loss, got {steps!r}. Pass e.g. "
            f"{name}=2; raking.torch.balance iterates to a tolerance."
        )
    return k


def check_distribution(
    p: object,
    n: int,
    *,
    name: str,
    like: torch.Tensor,
    positive: bool,
) -> torch.Tensor:
    """A probability vector of length ``n``, as a tensor with ``like``'s dtype and device.

    Entries must be finite and ``> 0`` (``positive``) or ``>= 0``, with sum 1 within ``1e-6``
    (``1e-4`` for a float32 or half-precision tensor).
    """
    tol = 1e-4 if isinstance(p, torch.Tensor) and p.dtype != torch.float64 else 1e-6
    try:
        values = p.detach().cpu().double().numpy() if isinstance(p, torch.Tensor) else p
        values = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"{name} must be a 1-D tensor or array of {n} numbers ({exc}).") from exc
    if values.shape != (n,):
        raise ValueError(
            f"{name} must have shape ({n},), got {values.shape}; give one probability per category."
        )
    if not np.all(np.isfinite(values)):
        raise ValueError(f"{name} must be finite, got {values}. Replace NaN/inf entries.")
    low = values <= 0 if positive else values < 0
    if np.any(low):
        bound = "> 0" if positive else ">= 0"
        why = " (a zero target makes the observed pair impossible)" if positive else ""
        raise ValueError(
            f"{name} must be {bound}{why}, found {values[low][:5]} at "
            f"{np.flatnonzero(low)[:10].tolist()}."
        )
    total = float(values.sum())
    if abs(total - 1.0) > tol:
        raise ValueError(
            f"{name} sums to {total:.6g}, not 1; it is a probability vector. Divide it by its sum."
        )
    return torch.as_tensor(values, dtype=compute_dtype(like), device=like.device)


def check_targets(
    targets: object, shape: Sequence[int], *, like: torch.Tensor, name: str = "targets"
) -> tuple[torch.Tensor, torch.Tensor]:
    """Log row and column targets of an ``(n, m)`` matrix; ``None`` means uniform ``1/n, 1/m``."""
    n, m = shape
    dtype = compute_dtype(like)
    if targets is None:
        return (
            torch.full((n,), -math.log(n), dtype=dtype, device=like.device),
            torch.full((m,), -math.log(m), dtype=dtype, device=like.device),
        )
    if isinstance(targets, (str, bytes)) or not isinstance(targets, Sequence) or len(targets) != 2:
        raise ValueError(
            f"{name} must be None (uniform) or a pair (row_target, column_target) of "
            f"probability vectors of lengths ({n}, {m}), got {type(targets).__name__}."
        )
    rows = check_distribution(targets[0], n, name=f"{name}[0]", like=like, positive=True)
    cols = check_distribution(targets[1], m, name=f"{name}[1]", like=like, positive=True)
    return torch.log(rows), torch.log(cols)


def check_positive(value: object, *, name: str, hint: str = "") -> float:
    """A finite real number ``> 0``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not (0 < value < math.inf):
        raise ValueError(f"{name} must be a positive finite number, got {value!r}.{hint}")
    return float(value)


def check_nonnegative(value: object, *, name: str) -> float:
    """A finite real number ``>= 0``."""
    if (
        isinstance(value, bool)
        or not isinstance(value, numbers.Real)
        or not (0 <= value < math.inf)
    ):
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}.")
    return float(value)


def check_rank(rank: object, world_size: object) -> tuple[int, int]:
    """``world_size >= 1`` and ``0 <= rank < world_size``, as in open_clip's ClipLoss."""
    world_size = check_positive_int(world_size, name="world_size")
    if isinstance(rank, bool) or not isinstance(rank, numbers.Integral) or not 0 <= rank:
        raise ValueError(f"rank must be an integer >= 0, got {rank!r}.")
    if rank >= world_size:
        raise ValueError(
            f"rank must be < world_size={world_size}, got rank={rank}. Pass "
            "torch.distributed.get_rank() and get_world_size()."
        )
    return int(rank), world_size
