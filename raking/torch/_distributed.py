r"""Collectives of :mod:`raking.torch`, used only when ``torch.distributed`` is initialised.

Every collective moves vectors (potentials, marginals) or, for the CLIP feature gather, the
features themselves; never a logit matrix. Gradient convention (``theory/ssl.md`` §5): a rank
receives the gradient of the **sum over ranks** of the per-rank losses, as with open_clip's
``gather_with_grad`` and MSN's ``AllReduce``; DDP's averaging of parameter gradients then gives
the gradient of the loss on the global batch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist


@dataclass(frozen=True, slots=True)
class Comm:
    """A process group and whether gradients cross ranks (``sum_grads``)."""

    group: Any
    world_size: int
    rank: int
    sum_grads: bool

    def logsumexp(self, partial: torch.Tensor) -> torch.Tensor:
        """``logsumexp`` over ranks of each rank's ``partial`` (same shape on every rank)."""
        return _AllLogSumExp.apply(partial, self)

    def sum(self, x: torch.Tensor) -> torch.Tensor:
        """Sum over ranks; backward multiplies by ``world_size`` (identical losses on all ranks)."""
        return _AllSum.apply(x, self)

    def gather(self, x: torch.Tensor) -> torch.Tensor:
        """Concatenate every rank's ``x`` along axis 0 (equal shapes), differentiably."""
        return _AllGather.apply(x, self)

    def gather_detached(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Every rank's ``x`` as a list, without gradient (open_clip's ``dist.all_gather``)."""
        parts = [torch.zeros_like(x) for _ in range(self.world_size)]
        dist.all_gather(parts, x.contiguous(), group=self.group)
        return parts


def initialised() -> bool:
    """Whether ``torch.distributed`` is available and initialised."""
    return dist.is_available() and dist.is_initialized()


def default_comm(group: Any = None, *, sum_grads: bool = True) -> Comm | None:
    """The group's :class:`Comm` when ``torch.distributed`` runs with more than one rank."""
    if not initialised():
        if group is not None:
            raise ValueError(
                "group was given but torch.distributed is not initialised. Call "
                "torch.distributed.init_process_group first, or pass group=None to work in "
                "a single process."
            )
        return None
    world_size = dist.get_world_size(group)
    if world_size == 1:
        return None
    return Comm(group, world_size, dist.get_rank(group), sum_grads)


def global_logsumexp(partial: torch.Tensor, group: Any) -> torch.Tensor:
    r"""``log sum_r exp(partial_r)`` elementwise, by a MAX and a SUM all-reduce (no autograd)."""
    top = partial.detach().clone()
    dist.all_reduce(top, op=dist.ReduceOp.MAX, group=group)
    top = torch.where(torch.isfinite(top), top, torch.zeros_like(top))
    total = torch.exp(partial.detach() - top)
    dist.all_reduce(total, group=group)
    return torch.log(total) + top


class _AllLogSumExp(torch.autograd.Function):
    r"""Forward :func:`global_logsumexp`; backward :math:`\bar p_r = \bar G\, e^{p_r - G}`.

    With ``sum_grads`` the upstream gradient :math:`\bar G` is first summed over ranks (``G`` is
    replicated and every rank's loss uses it); without, other ranks' partials are constants.
    """

    @staticmethod
    def forward(ctx: Any, partial: torch.Tensor, comm: Comm) -> torch.Tensor:
        out = global_logsumexp(partial, comm.group)
        ctx.save_for_backward(partial, out)
        ctx.comm = comm
        return out

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        partial, out = ctx.saved_tensors
        if ctx.comm.sum_grads:
            grad = grad.contiguous().clone()
            dist.all_reduce(grad, group=ctx.comm.group)
        empty = out == -math.inf  # no mass anywhere: zero gradient; a NaN stays NaN
        weight = torch.exp(partial - torch.where(empty, torch.zeros_like(out), out))
        return grad * torch.where(empty, torch.zeros_like(weight), weight), None


class _AllSum(torch.autograd.Function):
    """Forward all-reduce SUM; backward ``world_size * grad`` (MSN's identity, sum convention)."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, comm: Comm) -> torch.Tensor:
        out = x.detach().contiguous().clone()
        dist.all_reduce(out, group=comm.group)
        ctx.world_size = comm.world_size
        return out

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        return grad * ctx.world_size, None


class _AllGather(torch.autograd.Function):
    """Forward all-gather along axis 0; backward reduce-scatter (SUM) of the gradient."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, comm: Comm) -> torch.Tensor:
        parts = [torch.empty_like(x) for _ in range(comm.world_size)]
        dist.all_gather(parts, x.contiguous(), group=comm.group)
        ctx.comm = comm
        return torch.cat(parts)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        comm = ctx.comm
        out = torch.empty(
            (grad.shape[0] // comm.world_size, *grad.shape[1:]),
            dtype=grad.dtype,
            device=grad.device,
        )
        # ``reduce_scatter_single`` replaces the deprecated ``reduce_scatter_tensor``.
        reduce_scatter = getattr(dist, "reduce_scatter_single", None) or dist.reduce_scatter_tensor
        reduce_scatter(out, grad.contiguous(), group=comm.group)
        return out, None
