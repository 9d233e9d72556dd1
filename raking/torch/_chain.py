r"""The k-step log-domain chain on a logit block, and the CLIP losses' closed-form gradient.

A *block* is an ``(n, m)`` matrix of logits :math:`L`, possibly the local rows of a matrix whose
rows are sharded over ranks. Step :math:`t` of a chain that starts on axis ``first`` adjusts
axis :math:`a = (\text{first} + t) \bmod 2` with the kernel's log-domain step
(:func:`raking.kernel.steps.reduce`, :func:`raking.kernel.steps.new_factor`):

.. math::

    r_t = \operatorname{logsumexp}_{\neg a}(L + \varphi_{\neg a}), \qquad
    \varphi_a = \log t_a - r_t .

On a sharded block a column reduction is completed by a log-sum-exp over ranks of the local
column log-sum-exps (``theory/ssl.md`` §5). :func:`potentials` is the kernel's ``_ipf`` without
its validation and final error measurement (a loss needs neither); autograd differentiates it
step by step (:func:`raking.torch.balance_logits`, :func:`raking.torch.sinkhorn`), and
``tests/test_torch.py`` ties it to the kernel to 1e-12.

The CLIP losses need only the diagonal of the last conditional, and its gradient has a closed
form, so :class:`_ClipChains` runs the same steps with a hand-written backward instead of
recording every step (``theory/ssl.md`` §4). Its reduction, :func:`_reduce_into`, is
:func:`raking.kernel.steps.reduce` on a 2-D block, the same operations in the same order
(``tests/test_torch.py`` checks the bits, NaN and infinite lines included), written into a
buffer the caller owns, because the backward needs the matrix :math:`e^{L + \varphi - s}` that
the kernel's reduction computes and drops, and because the kernel's reduction allocates three
:math:`n \times m` temporaries per step, which on a CPU costs as much as the arithmetic.

Non-finite logits are not validated (that would synchronise with the device every step); they
propagate instead, as in :func:`torch.nn.functional.cross_entropy`: ``-inf`` is a zero weight
(a line of ``-inf`` has no mass and keeps its neutral potential), while a NaN or ``+inf``
logit makes the reduction of its line NaN, and the NaN spreads through the later steps to the
loss and its gradient. ``+inf`` counts as invalid because the measure :math:`e^{L}` it
describes has no normalisation (an overflow upstream, e.g. of the logit scale). The kernel's
log-domain step does exactly this (:func:`raking.kernel.steps.logsumexp`).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Sequence
from typing import Any

import torch
import torch.distributed as dist

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
    factors: Sequence[torch.Tensor],
    last: torch.Tensor | None,
    last_axis: int,
    *,
    offset: int,
    comm: Comm | None,
) -> torch.Tensor:
    r"""Conditional log-probability of each observed pair :math:`(i, \text{offset} + i)`.

    After :math:`k \ge 1` steps, the last on axis :math:`a` with reduction ``last``
    (:math:`r_k`), :math:`L_{ij} + \varphi_{\neg a} - r_k`: the log of
    :math:`P^{(k)}(i, j) / t_a` (``theory/ssl.md`` §2). For :math:`k = 0` (``last=None``):
    :math:`L_{ij} - \operatorname{logsumexp}_{\text{all}} L`.
    """
    n = block.shape[0]
    entry = torch.diagonal(block, offset)
    if last is None:
        total = torch.reshape(logsumexp(block, (0, 1), xp=get_xp(block)), (1,))
        return entry - (total if comm is None else comm.logsumexp(total))
    if last_axis == 0:
        return entry + factors[1][offset : offset + n] - last
    return entry + factors[0] - last[offset : offset + n]


def clip_chains(
    block: torch.Tensor,
    log_targets: tuple[torch.Tensor, torch.Tensor],
    steps: int,
    firsts: tuple[int, ...],
    *,
    offset: int = 0,
    comm: Comm | None = None,
    keep: bool = True,
) -> torch.Tensor:
    r"""The ``(len(firsts), n)`` diagonal terms of the chains starting on each of ``firsts``.

    ``firsts=(0, 1)`` on a square block gives both chains of the symmetric CLIP loss from one
    matrix (the column-first chain on :math:`L` is the row-first chain on :math:`L^\top`).
    ``keep`` chooses the memory of the backward (:class:`_ClipChains`).
    """
    if steps == 0:
        term = diagonal_terms(block, (), None, 0, offset=offset, comm=comm)
        return term.expand(len(firsts), -1)
    return _ClipChains.apply(block, *log_targets, steps, firsts, offset, comm, keep)


def _reduce_into(
    out: torch.Tensor, block: torch.Tensor, other: torch.Tensor | None, axis: int
) -> tuple[torch.Tensor, torch.Tensor]:
    r""":func:`raking.kernel.steps.reduce` (log domain) of a 2-D block, keeping its exponentials.

    Writes :math:`E = \exp(L + \varphi_{\neg a} - s)` into ``out`` (``block``'s shape; it may
    be a new tensor), where :math:`s` is the line maximum where finite, else 0, and returns
    ``(r, s)`` with :math:`r = s + \log \sum_{\neg a} E` per line of axis ``axis``: ``-inf``
    for a line without mass, NaN for a line holding a NaN or ``+inf`` (the rules of
    :func:`raking.kernel.steps.logsumexp`, applied to the same sums). ``other=None`` is the
    neutral potential of a chain's first step, whose addition (of zeros) is skipped: it changes
    no value that reaches :math:`E` or :math:`r`.
    """
    dim = 1 - axis
    scaled = block if other is None else torch.add(block, other.unsqueeze(axis), out=out)
    top = torch.amax(scaled, dim=dim, keepdim=True)
    shift = torch.nan_to_num(top, nan=0.0, posinf=0.0, neginf=0.0)  # top where finite, else 0
    total = torch.sub(scaled, shift, out=out).exp_().sum(dim)
    top, shift = top.squeeze(dim), shift.squeeze(dim)
    # The kernel's cases in fewer vector operations (the same values, bit for bit): a line
    # without mass has total 0 and shift 0, so log gives -inf; a NaN line has a NaN total;
    # a +inf line has an infinite total (every finite line has 1 <= total <= its length).
    reduced = torch.log(total).add_(shift)
    return reduced.masked_fill_(top == math.inf, math.nan), shift


class _ClipChains(torch.autograd.Function):
    r"""Diagonal terms of k-step chains on one block, with the gradient in closed form.

    Forward runs each chain's steps with :func:`_reduce_into` and
    :func:`raking.kernel.steps.new_factor` and returns the terms :math:`c_i` of
    :func:`diagonal_terms`. Backward is reverse-mode through the potential recursion
    (``theory/ssl.md`` §4), not a second balancing: with :math:`\bar c` the incoming gradient,
    :math:`\bar L` starts at :math:`\bar c` on the pairs and :math:`\bar\varphi_a,
    \bar\varphi_{\neg a}` at :math:`\bar c` on the pairs; then for :math:`t = k-1, \dots, 0`,
    on axis :math:`a` and with :math:`P_t = e^{L + \varphi_{\neg a} - r_t}` (the conditional of
    step :math:`t`: each line sums to one) and :math:`\bar r_t = -\bar\varphi_a`,

    .. math::

        \bar L \mathrel{+}= \bar r_t \odot P_t, \qquad
        \bar\varphi_{\neg a} \mathrel{+}= \textstyle\sum_a \bar r_t \odot P_t, \qquad
        \bar\varphi_a \leftarrow 0,

    (:math:`\bar r_t` broadcast along the lines of axis :math:`a`; a column step first sums
    :math:`\bar r_t` over ranks when gradients cross ranks). For :math:`k = 1` this is
    ``cross_entropy``'s gradient, :math:`\bar L = \bar c \odot (I - P_0)` per chain, i.e.
    softmax minus target times :math:`-\bar c`. :math:`P_t = E_t\, e^{s_t - r_t}` is the matrix
    :func:`_reduce_into` computed, rescaled per line: one multiply-add per step into
    :math:`\bar L` and one mat-vec for :math:`\bar\varphi_{\neg a}` (none at :math:`t = 0`,
    whose other potential is a constant).

    ``keep=True`` saves every :math:`E_t` (:math:`k` matrices per chain, plus :math:`L`);
    ``keep=False`` saves :math:`L` and two vectors per step and recomputes each :math:`E_t`
    into one buffer (the same bits, hence the same gradient). Targets are constants (no
    gradient). Differentiating the gradient again (``create_graph=True``) differentiates the
    unrolled chain (:func:`potentials`) with autograd instead.
    """

    @staticmethod
    def forward(
        ctx: Any,
        block: torch.Tensor,
        log_rows: torch.Tensor,
        log_cols: torch.Tensor,
        steps: int,
        firsts: tuple[int, ...],
        offset: int,
        comm: Comm | None,
        keep: bool,
    ) -> torch.Tensor:
        targets = (log_rows, log_cols)
        xp = get_xp(block)
        work = None if keep else torch.empty_like(block)
        terms, lines, kept = [], [], []
        for first in firsts:
            factors = initial_factors(block, list(targets), xp=xp, log_domain=True)
            reduced = None
            for t in range(steps):
                axis = (first + t) % 2
                out = torch.empty_like(block) if keep else work
                other = factors[1 - axis] if t > 0 else None
                reduced, shift = _reduce_into(out, block, other, axis)
                if axis == 1 and comm is not None:
                    reduced = comm.logsumexp(reduced)
                factors[axis] = new_factor(reduced, None, targets[axis], xp=xp)
                lines += [reduced, shift]
                if keep:
                    kept.append(out)
            last_axis = (first + steps - 1) % 2
            terms.append(diagonal_terms(block, factors, reduced, last_axis, offset=offset,
                                        comm=comm))  # fmt: skip
        ctx.save_for_backward(block, log_rows, log_cols, *lines, *kept)
        ctx.steps, ctx.firsts, ctx.offset, ctx.comm, ctx.keep = steps, firsts, offset, comm, keep
        return torch.stack(terms)

    @staticmethod
    def backward(ctx: Any, grad_terms: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        block, log_rows, log_cols, *saved = ctx.saved_tensors
        k, firsts, offset, comm = ctx.steps, ctx.firsts, ctx.offset, ctx.comm
        nones = (None,) * 7
        if not ctx.needs_input_grad[0]:
            return (None, *nones)
        if torch.is_grad_enabled():  # create_graph=True: differentiate the unrolled chain
            return (_unrolled_gradient(block, (log_rows, log_cols), k, firsts, offset, comm,
                                       grad_terms), *nones)  # fmt: skip
        n_lines = 2 * k * len(firsts)
        lines, kept = saved[:n_lines], saved[n_lines:]
        work = None if ctx.keep else torch.empty_like(block)
        grad = None
        with no_autocast(block.device):
            for c, first in enumerate(firsts):
                chain_lines = lines[2 * k * c : 2 * k * (c + 1)]
                matrices = kept[k * c : k * (c + 1)] if ctx.keep else None
                grad = _chain_backward(
                    block, (log_rows, log_cols), first, chain_lines, matrices, work,
                    grad_terms[c], grad, offset=offset, comm=comm,
                )  # fmt: skip
        return (grad, *nones)


def _chain_backward(
    block: torch.Tensor,
    targets: tuple[torch.Tensor, torch.Tensor],
    first: int,
    lines: Sequence[torch.Tensor],
    matrices: Sequence[torch.Tensor] | None,
    work: torch.Tensor | None,
    grad_out: torch.Tensor,
    grad: torch.Tensor | None,
    *,
    offset: int,
    comm: Comm | None,
) -> torch.Tensor:
    """Add one chain's gradient to ``grad`` (new when ``None``); see :class:`_ClipChains`."""
    xp = get_xp(block)
    n, m = block.shape
    k = len(lines) // 2
    reductions, shifts = lines[0::2], lines[1::2]
    produced = []  # the potential each step set, from its reduction (vectors only)
    for t, reduced in enumerate(reductions):
        produced.append(new_factor(reduced, None, targets[(first + t) % 2], xp=xp))
    bar = [block.new_zeros(n), block.new_zeros(m)]
    bar[0] += grad_out  # c_i holds both potentials at the pair (i, offset + i)
    bar[1][offset : offset + n] += grad_out
    for t in reversed(range(k)):
        axis = (first + t) % 2
        r_bar = -bar[axis]
        if axis == 1 and comm is not None and comm.sum_grads:
            dist.all_reduce(r_bar, group=comm.group)
        bar[axis] = torch.zeros_like(bar[axis])
        other = produced[t - 1] if t > 0 else None
        if matrices is None:
            exps = _reduce_into_exp(work, block, other, shifts[t], axis)
        else:
            exps = matrices[t]
        r = reductions[t]
        r = torch.where(r == -math.inf, torch.zeros_like(r), r)  # empty line; NaN stays NaN
        # e^{s - r} <= 1 (r >= s); the clamp only guards a line empty on this rank alone.
        scale = torch.exp(torch.clamp(shifts[t] - r, max=0.0)) * r_bar
        if t > 0:
            bar[1 - axis] += scale @ exps if axis == 0 else exps @ scale
        if grad is None:
            grad = exps * scale.unsqueeze(1 - axis)
        else:
            grad.addcmul_(exps, scale.unsqueeze(1 - axis))
    torch.diagonal(grad, offset).add_(grad_out)
    return grad


def _reduce_into_exp(
    out: torch.Tensor,
    block: torch.Tensor,
    other: torch.Tensor | None,
    shift: torch.Tensor,
    axis: int,
) -> torch.Tensor:
    """Recompute the :math:`E` of :func:`_reduce_into` (the same operations) into ``out``."""
    scaled = block if other is None else torch.add(block, other.unsqueeze(axis), out=out)
    return torch.sub(scaled, shift.unsqueeze(1 - axis), out=out).exp_()


def _unrolled_gradient(
    block: torch.Tensor,
    targets: tuple[torch.Tensor, torch.Tensor],
    steps: int,
    firsts: tuple[int, ...],
    offset: int,
    comm: Comm | None,
    grad_terms: torch.Tensor,
) -> torch.Tensor:
    """The chains' gradient by autograd through :func:`potentials` (twice differentiable)."""
    terms = []
    with torch.enable_grad():
        for first in firsts:
            factors, reductions, _ = potentials(block, targets, steps, first=first, comm=comm)
            last_axis = (first + steps - 1) % 2
            terms.append(diagonal_terms(block, factors, reductions[-1], last_axis,
                                        offset=offset, comm=comm))  # fmt: skip
        (grad,) = torch.autograd.grad(torch.stack(terms), block, grad_terms, create_graph=True)
    return grad
