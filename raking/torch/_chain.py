r"""The k-step log-domain chain on a logit block: unrolled (autograd) or checkpointed.

A *block* is an ``(n, m)`` matrix of logits :math:`L`, possibly the local rows of a matrix whose
rows are sharded over ranks. Step :math:`t` adjusts axis :math:`a = (\text{first} + t) \bmod 2`
with the kernel's log-domain step (:func:`raking.kernel.steps.reduce`,
:func:`raking.kernel.steps.new_factor`):

.. math::

    r_t = \operatorname{logsumexp}_{\neg a}(L + \varphi_{\neg a}), \qquad
    \varphi_a = \log t_a - r_t .

On a sharded block a column reduction is completed by a log-sum-exp over ranks of the local
column log-sum-exps (``theory/ssl.md`` §5). The loop is the kernel's ``_ipf`` without its
validation and final error measurement (a loss needs neither); ``tests/test_torch.py`` ties the
two to 1e-12.

Non-finite logits are not validated (that would synchronise with the device every step); they
propagate instead, as in :func:`torch.nn.functional.cross_entropy`: ``-inf`` is a zero weight
(a line of ``-inf`` has no mass and keeps its neutral potential), while a NaN or ``+inf``
logit makes the reduction of its line NaN, and the NaN spreads through the later steps to the
loss and its gradient. ``+inf`` counts as invalid because the measure :math:`e^{L}` it
describes has no normalisation (an overflow upstream, e.g. of the logit scale). The kernel's
log-domain step does exactly this (:func:`raking.kernel.steps.logsumexp`), so the loss reuses it.
"""

from __future__ import annotations

import contextlib
import math
from typing import Any

import torch
import torch.distributed as dist
from torch.autograd.function import once_differentiable

from raking._array_api import get_xp
from raking.kernel.steps import initial_factors, logsumexp, new_factor, reduce
from raking.torch._distributed import Comm

Potentials = tuple[list[torch.Tensor], list[torch.Tensor], list[torch.Tensor]]


def no_autocast(device: torch.device) -> contextlib.AbstractContextManager:
    """Disable autocast on ``device`` (the chain runs in its own float32-or-better dtype)."""
    if torch.amp.is_autocast_available(device.type):
        return torch.autocast(device_type=device.type, enabled=False)
    return contextlib.nullcontext()


def potentials(
    block: torch.Tensor,
    log_targets: tuple[torch.Tensor, torch.Tensor],
    steps: int,
    *,
    first: int = 0,
    comm: Comm | None = None,
) -> Potentials:
    """Run ``steps`` adjustments; return the final potentials, every reduction and potential.

    ``reductions[t]`` is :math:`r_t` and ``produced[t]`` the potential step ``t`` set. Leading
    batch axes of ``block`` are carried along (never with ``comm``).
    """
    xp = get_xp(block)
    factors = initial_factors(block, list(log_targets), xp=xp, log_domain=True)
    reductions, produced = [], []
    for t in range(steps):
        axis = (first + t) % 2
        reduced = reduce(block, factors, axis, xp=xp, log_domain=True)
        if axis == 1 and comm is not None:
            reduced = comm.logsumexp(reduced)
        factors[axis] = new_factor(reduced, None, log_targets[axis], xp=xp)
        reductions.append(reduced)
        produced.append(factors[axis])
    return factors, reductions, produced


def diagonal_terms(
    block: torch.Tensor,
    factors: list[torch.Tensor],
    reductions: list[torch.Tensor],
    *,
    offset: int,
    comm: Comm | None,
) -> torch.Tensor:
    r"""Conditional log-probability of each observed pair :math:`(i, \text{offset} + i)`.

    After :math:`k \ge 1` row-first steps, :math:`L_{ij} + \varphi_{\neg a} - r_k`: the log of
    :math:`P^{(k)}(i, j) / t_a` on the axis :math:`a` of the last step (``theory/ssl.md`` §2).
    For :math:`k = 0`: :math:`L_{ij} - \operatorname{logsumexp}_{\text{all}} L`.
    """
    n = block.shape[0]
    entry = torch.diagonal(block, offset)
    if not reductions:
        total = torch.reshape(logsumexp(block, (0, 1), xp=get_xp(block)), (1,))
        return entry - (total if comm is None else comm.logsumexp(total))
    if len(reductions) % 2 == 1:  # last step on rows
        return entry + factors[1][offset : offset + n] - reductions[-1]
    return entry + factors[0] - reductions[-1][offset : offset + n]


def chain_diagonal(
    block: torch.Tensor,
    log_rows: torch.Tensor,
    log_cols: torch.Tensor,
    steps: int,
    *,
    offset: int = 0,
    comm: Comm | None = None,
    checkpoint: bool = False,
) -> torch.Tensor:
    """The ``(n,)`` diagonal terms of the row-first chain, unrolled or checkpointed."""
    if checkpoint and steps > 0:
        return _CheckpointedChain.apply(block, log_rows, log_cols, steps, offset, comm)
    factors, reductions, _ = potentials(block, (log_rows, log_cols), steps, comm=comm)
    return diagonal_terms(block, factors, reductions, offset=offset, comm=comm)


class _CheckpointedChain(torch.autograd.Function):
    r"""The row-first chain's diagonal terms, storing :math:`L` and :math:`2k` vectors only.

    Backward is reverse-mode through the potential recursion (``theory/ssl.md`` §4): for a row
    step, with :math:`W_{ij} = \bar r_i \exp(L_{ij} + \varphi^{\rm col}_j - r_i)` and
    :math:`\bar r = -\bar\varphi^{\rm row}`, it adds :math:`W` to :math:`\bar L` and its column sums
    to :math:`\bar\varphi^{\rm col}`; a column step likewise, after summing
    :math:`\bar\varphi^{\rm col}` over ranks when gradients cross ranks. One :math:`n \times m`
    temporary at a time. Targets are constants (no gradient); not twice differentiable.
    """

    @staticmethod
    def forward(
        ctx: Any,
        block: torch.Tensor,
        log_rows: torch.Tensor,
        log_cols: torch.Tensor,
        steps: int,
        offset: int,
        comm: Comm | None,
    ) -> torch.Tensor:
        factors, reductions, produced = potentials(block, (log_rows, log_cols), steps, comm=comm)
        ctx.save_for_backward(block, *reductions, *produced)
        ctx.steps, ctx.offset, ctx.comm = steps, offset, comm
        return diagonal_terms(block, factors, reductions, offset=offset, comm=comm)

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad_out: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        block, *saved = ctx.saved_tensors
        k = ctx.steps
        with no_autocast(block.device):
            grad = _backward(block, saved[:k], saved[k:], grad_out, ctx.offset, ctx.comm)
        return grad, None, None, None, None, None


def _backward(
    block: torch.Tensor,
    reductions: list[torch.Tensor],
    produced: list[torch.Tensor],
    grad_out: torch.Tensor,
    offset: int,
    comm: Comm | None,
) -> torch.Tensor:
    n, m = block.shape
    diag = slice(offset, offset + n)
    grad = torch.zeros_like(block)
    torch.diagonal(grad, offset).add_(grad_out)
    bar = [block.new_zeros(n), block.new_zeros(m)]
    # c_i = L_{i,off+i} + phi_row_i + phi_col_{off+i} - log t_last: both potentials at the pair.
    bar[0] += grad_out
    bar[1][diag] += grad_out
    for t in reversed(range(len(reductions))):
        axis = t % 2
        r_bar = -bar[axis]
        if axis == 1 and comm is not None and comm.sum_grads:
            dist.all_reduce(r_bar, group=comm.group)
        bar[axis] = torch.zeros_like(bar[axis])
        r = reductions[t]
        r = torch.where(r == -math.inf, torch.zeros_like(r), r)  # empty line; NaN stays NaN
        if axis == 0:
            w = block - r[:, None] if t == 0 else block + (produced[t - 1][None, :] - r[:, None])
            w = w.exp_().mul_(r_bar[:, None])
            bar[1] += w.sum(0)
        else:
            w = block - r[None, :] if t == 0 else block + (produced[t - 1][:, None] - r[None, :])
            w = w.exp_().mul_(r_bar[None, :])
            bar[0] += w.sum(1)
        grad += w
    return grad
