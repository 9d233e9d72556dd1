r"""Balanced cluster codes (SwAV's Sinkhorn) with any cluster prior, and prior matching.

``theory.md`` §6: SwAV balances the batch-by-prototype measure :math:`\exp(C^\top Z/\epsilon)` to
uniform marginals with three Sinkhorn iterations; :func:`sinkhorn` allows any cluster prior
(:func:`power_law_prior` for PMSN). :func:`prior_matching_loss` is the PMSN regulariser (MSN's
mean-entropy maximisation for a uniform prior). Derivations: ``theory/ssl.md`` §6-7.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.distributed as dist

from raking.torch._chain import no_autocast, potentials
from raking.torch._checks import (
    check_distribution,
    check_nonnegative,
    check_option,
    check_positive,
    check_positive_int,
    check_tensor,
    compute_dtype,
)
from raking.torch._distributed import default_comm

__all__ = ["power_law_prior", "prior_matching_loss", "sinkhorn"]


def power_law_prior(
    n_clusters: int,
    tau: float,
    *,
    dtype: torch.dtype = torch.float64,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    r"""The power-law cluster prior :math:`\pi_k = k^{-\tau} / \sum_{l=1}^K l^{-\tau}`.

    Parameters
    ----------
    n_clusters : int
        Number of clusters :math:`K`.
    tau : float
        Exponent :math:`\tau \ge 0`; 0 gives the uniform prior (PMSN uses :math:`\tau` near 0.25).
    dtype, device
        Of the returned vector (float64 by default; converted to the scores' dtype when used).

    Examples
    --------
    >>> from raking.torch import power_law_prior
    >>> power_law_prior(3, 1.0)
    tensor([0.5455, 0.2727, 0.1818], dtype=torch.float64)
    """
    n_clusters = check_positive_int(n_clusters, name="n_clusters")
    tau = check_nonnegative(tau, name="tau")
    k = torch.arange(1, n_clusters + 1, dtype=torch.float64)
    weights = k**-tau
    return (weights / weights.sum()).to(dtype=dtype, device=device)


def _prior(prior: object, n_clusters: int, like: torch.Tensor) -> torch.Tensor:
    """The prior as a probability vector in ``like``'s compute dtype; ``None``: uniform."""
    if prior is None:
        dtype = compute_dtype(like)
        return torch.full((n_clusters,), 1.0 / n_clusters, dtype=dtype, device=like.device)
    return check_distribution(prior, n_clusters, name="prior", like=like, positive=False)


def sinkhorn(
    scores: torch.Tensor,
    prior: torch.Tensor | None = None,
    eps: float = 0.05,
    n_iter: int = 3,
    *,
    group: Any = None,
) -> torch.Tensor:
    r"""SwAV's balanced codes: per-sample cluster distributions with cluster marginal ``prior``.

    .. math::

        Q = \operatorname{Diag}(u)\, \exp(\text{scores}/\epsilon)\, \operatorname{Diag}(v),
        \qquad Q\mathbf 1 = \tfrac1B \mathbf 1, \qquad Q^\top \mathbf 1 \approx \pi,

    computed in the log domain (no overflow for small :math:`\epsilon`). Each of the
    ``n_iter`` iterations fixes the cluster marginal, then the sample marginal (SwAV's order:
    :math:`2 n_{\rm iter}` steps of :func:`raking.kernel.ipf.balance`); the codes :math:`B\,Q` are
    returned, so every row sums to 1 exactly and the column means approach :math:`\pi` as
    ``n_iter`` grows.

    Parameters
    ----------
    scores : torch.Tensor, shape ``(B_local, K)``
        Sample-prototype scores :math:`z_i^\top c_k`. No gradient is taken (``torch.no_grad``).
    prior : torch.Tensor or None
        Cluster prior :math:`\pi`, a probability vector of length K (zeros allowed); ``None``:
        uniform :math:`1/K`. See :func:`power_law_prior`.
    eps : float
        Entropic temperature :math:`\epsilon > 0` (SwAV: 0.05).
    n_iter : int
        Sinkhorn iterations, each a cluster step and a sample step (SwAV: 3).
    group : process group or None
        With ``torch.distributed`` initialised (default group when None), the cluster marginals
        are completed across ranks (one MAX and one SUM all-reduce of a K vector per iteration)
        and :math:`B` is the all-reduced row count; ranks may hold different numbers of rows.

    Returns
    -------
    torch.Tensor, shape ``(B_local, K)``
        The codes, rows summing to 1; float32 for half-precision scores, else their dtype.

    Notes
    -----
    ``theory.md`` §6 [SUM/REC]; SwAV's ``distributed_sinkhorn`` in the linear domain gives the
    same codes (tested), and its :math:`B = B_{\rm local} \cdot W` is replaced by the summed row
    count. ``theory/ssl.md`` §6. A NaN or ``+inf`` score makes every code NaN (no host check,
    as in the losses); ``-inf`` is a zero weight.

    Examples
    --------
    >>> import torch
    >>> from raking.torch import power_law_prior, sinkhorn
    >>> scores = torch.randn(6, 3, generator=torch.Generator().manual_seed(0))
    >>> codes = sinkhorn(scores, power_law_prior(3, 1.0), eps=0.5, n_iter=100)
    >>> torch.allclose(codes.sum(dim=1), torch.ones(6)), codes.mean(dim=0)
    (True, tensor([0.5455, 0.2727, 0.1818]))
    """
    scores = check_tensor(scores, name="scores", ndim=2)
    eps = check_positive(eps, name="eps", hint=" SwAV uses 0.05.")
    n_iter = check_positive_int(n_iter, name="n_iter")
    n_local, n_clusters = scores.shape
    log_prior = torch.log(_prior(prior, n_clusters, scores))
    comm = default_comm(group, sum_grads=False)
    with torch.no_grad(), no_autocast(scores.device):
        block = scores.detach().to(compute_dtype(scores))
        # Codes are invariant to one constant added to every score. Where the (global) maximum
        # over eps would overflow, it is subtracted, so that finite scores never become inf;
        # otherwise nothing is subtracted and the codes keep their usual rounding.
        top = torch.amax(block).reshape(1)
        count = torch.full((1,), float(n_local), dtype=block.dtype, device=block.device)
        if comm is not None:
            dist.all_reduce(top, op=dist.ReduceOp.MAX, group=comm.group)
            dist.all_reduce(count, group=comm.group)
        overflow = torch.isfinite(top) & ~torch.isfinite(top / eps)
        block = (block - torch.where(overflow, top, torch.zeros_like(top))) / eps
        log_rows = (-torch.log(count)).expand(n_local)
        (_, g), reductions, _ = potentials(
            block, (log_rows, log_prior), 2 * n_iter, first=1, comm=comm
        )
        return torch.exp(block + g[None, :] - reductions[-1][:, None])


def prior_matching_loss(
    probs: torch.Tensor,
    prior: torch.Tensor | None = None,
    direction: str = "forward",
    *,
    group: Any = None,
) -> torch.Tensor:
    r"""KL divergence between the batch-mean prediction and a cluster prior (PMSN).

    With :math:`\bar p = \frac1B \sum_i p_i`,

    .. math::

        \text{forward: } \mathrm{KL}(\bar p \,\|\, \pi)
        = \sum_k \bar p_k \log\frac{\bar p_k}{\pi_k}, \qquad
        \text{reverse: } \mathrm{KL}(\pi \,\|\, \bar p)
        = \sum_k \pi_k \log\frac{\pi_k}{\bar p_k}.

    For the uniform prior the forward loss is :math:`\log K - H(\bar p)`, MSN's mean-entropy
    maximisation term :math:`-H(\bar p)` up to the constant :math:`\log K`.

    Parameters
    ----------
    probs : torch.Tensor, shape ``(B_local, K)``
        Per-sample cluster probabilities (e.g. softmax outputs); rows are not re-normalised.
    prior : torch.Tensor or None
        Prior :math:`\pi`, a probability vector of length K; ``None``: uniform.
    direction : {"forward", "reverse"}
        Which divergence.
    group : process group or None
        With ``torch.distributed`` initialised, :math:`\bar p` is the mean over all ranks' rows
        (one SUM all-reduce of K + 1 numbers; ranks may hold different numbers of rows). Its
        backward passes the gradient through multiplied by the world size (MSN's identity
        backward): each rank gets the gradient of the sum of the (identical) per-rank losses,
        and DDP's averaging yields the exact gradient of the global loss.

    Returns
    -------
    torch.Tensor
        0-d, :math:`\ge 0`, zero exactly when :math:`\bar p = \pi`; float32 for half inputs.
        NaN (with NaN gradients) when ``probs`` holds a NaN, an infinite or a negative entry:
        such values are not probabilities, and checking them on the host would synchronise
        with the device every step (``torch.nn.functional.cross_entropy`` behaves the same).

    Examples
    --------
    >>> import torch
    >>> from raking.torch import prior_matching_loss
    >>> prior_matching_loss(torch.tensor([[0.5, 0.5], [0.5, 0.5]]))
    tensor(0.)
    """
    probs = check_tensor(probs, name="probs", ndim=2)
    direction = check_option(
        direction,
        options=("forward", "reverse"),
        name="direction",
        hint="'forward' is KL(mean || prior) (PMSN), 'reverse' is KL(prior || mean).",
    )
    n_local, n_clusters = probs.shape
    prior = _prior(prior, n_clusters, probs)
    comm = default_comm(group)
    with no_autocast(probs.device):
        p = probs.to(compute_dtype(probs))
        # A NaN, infinite or negative probability is invalid: NaN out (no host sync to check).
        p = torch.where((p >= 0) & (p < math.inf), p, torch.full_like(p, math.nan))
        stats = torch.cat([p.sum(0), p.new_full((1,), float(n_local))])
        if comm is not None:
            stats = comm.sum(stats)
        mean = stats[:n_clusters] / stats[n_clusters]
        first, second = (mean, prior) if direction == "forward" else (prior, mean)
        xlogy = torch.special.xlogy
        return xlogy(first, first).sum() - xlogy(first, second).sum()
