r"""The balancing kernel on PyTorch tensors, and its log-domain form on logits.

:func:`balance` is :func:`raking.kernel.ipf.balance` (one kernel for every array library) documented
for tensors; :func:`balance_logits` runs a fixed number of log-domain steps on logits without
validation of values or host synchronisation, as a training loss needs (``theory/ssl.md`` §1).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from raking.kernel import ipf as kernel
from raking.torch._chain import no_autocast, potentials
from raking.torch._checks import (
    check_is_tensor,
    check_loss_steps,
    check_targets,
    check_tensor,
    compute_dtype,
)

__all__ = ["balance", "balance_logits"]


def balance(
    table: torch.Tensor,
    targets: Sequence[torch.Tensor],
    steps: int | None = None,
    *,
    tol: float = 1e-10,
    max_steps: int = 10_000,
    log_domain: bool = False,
    compute_dtype: torch.dtype | str | None = None,
) -> torch.Tensor:
    r"""Balance a tensor with :func:`raking.kernel.ipf.balance` (``theory.md`` §1.2).

    .. math::

        P^{(k)} = P^{(k-1)}\, t_a / P^{(k-1)}_a, \qquad a = (k - 1) \bmod d .

    Parameters
    ----------
    table : torch.Tensor, shape ``(*batch, n_1, ..., n_d)``
        Non-negative weights, or log-weights with ``log_domain=True``. Any device. A
        ``torch.bfloat16`` or ``torch.float16`` table is stored as it is (2 bytes per cell) and
        accumulated in float32 (see ``compute_dtype``).
    targets : sequence of d tensors (or arrays)
        Target marginal of each balanced axis, all with the same total.
    steps, tol, max_steps, log_domain
        As in :func:`raking.kernel.ipf.balance`: ``steps`` counts single-marginal adjustments
        (odd = X-step); ``None`` iterates to ``tol``.
    compute_dtype : torch.float32, torch.float64, "float32", "float64" or None
        The dtype of the factors, targets, sums and errors (:func:`raking.kernel.ipf.balance`).
        ``None``: the table's dtype, float32 for bfloat16 / float16 tables, which each step
        then reads once in blocks of at most :data:`raking.kernel.storage.HALF_BLOCK_ELEMENTS` cells
        cast to float32 (one 16 MiB block of extra memory, never a float32 copy of the table).
        The log domain is handled the same way (block logsumexps in float32).

    Returns
    -------
    torch.Tensor
        The balanced table, same dtype (float32 stays float32, bfloat16 stays bfloat16: each
        block is formed in the compute dtype and rounded back) and device.

    Notes
    -----
    Autograd flows through every step (the kernel never modifies tensors in place), so the
    result can enter a loss; memory then grows with one table per step. The input is validated
    (finite, non-negative, no empty category with a positive target), which copies a few values
    to the host; the final marginal error is always measured (one more synchronisation). For
    losses on logits use :func:`balance_logits` or the losses of :mod:`raking.torch`, which skip
    both.

    Examples
    --------
    >>> import torch
    >>> from raking.torch import balance
    >>> out = balance(torch.tensor([[2.0, 1.0], [1.0, 4.0]]), [torch.full((2,), 0.5)] * 2)
    >>> out.sum(dim=1), out.sum(dim=0)
    (tensor([0.5000, 0.5000]), tensor([0.5000, 0.5000]))
    """
    check_is_tensor(table, name="table")
    return kernel.balance(
        table,
        targets,
        steps,
        tol=tol,
        max_steps=max_steps,
        log_domain=log_domain,
        compute_dtype=compute_dtype,
    )


def balance_logits(
    logits: torch.Tensor,
    steps: int = 1,
    targets: Sequence[torch.Tensor] | None = None,
) -> torch.Tensor:
    r"""Log of the measure after ``steps`` alternating balancing steps, rows first.

    Starting from :math:`\log R = L` (the logits), step :math:`t` adjusts the rows (odd
    :math:`t`) or the columns (even :math:`t`) in the log domain:

    .. math::

        f_i = \log a_i - \operatorname{logsumexp}_j (L_{ij} + g_j), \qquad
        g_j = \log b_j - \operatorname{logsumexp}_i (L_{ij} + f_i),

    and the result is :math:`\log P^{(k)}_{ij} = L_{ij} + f_i + g_j`
    (``theory/ssl.md`` §1). ``steps=1`` gives :math:`\log a_i + \log\operatorname{softmax}_j`.

    Parameters
    ----------
    logits : torch.Tensor, shape ``(*batch, n, m)``
        Log-weights (any real values; ``-inf`` for zero weight).
    steps : int
        Number of single-marginal adjustments :math:`k \ge 0`; 0 returns the logits.
    targets : pair of tensors or None
        Row and column targets ``(a, b)``, positive probability vectors of lengths ``n`` and
        ``m``; ``None``: uniform :math:`1/n, 1/m`. For the column-first chain, transpose the
        logits and swap the targets.

    Returns
    -------
    torch.Tensor
        :math:`\log P^{(k)}`, shape of ``logits``; float32 for float16/bfloat16 logits (every
        log-sum-exp accumulates in float32 or better, also under autocast), else their dtype.

    Notes
    -----
    Equals ``raking.kernel.ipf.balance(logits, targets, steps, log_domain=True)`` (tested to 1e-12)
    but skips the checks of the logits' values and the final error measurement, so with uniform
    targets it never synchronises with the device (given targets are checked on the host).
    Unchecked values propagate: a NaN or ``+inf`` logit makes its line NaN at the next step
    and, from the step after, the whole result; ``-inf`` is a zero weight.
    Autograd flows through every step; targets get no gradient.

    Examples
    --------
    >>> import torch
    >>> from raking.torch import balance_logits
    >>> logp = balance_logits(torch.tensor([[0.0, 1.0], [2.0, 0.5]]), steps=20)
    >>> logp.exp().sum(dim=1), logp.exp().sum(dim=0)
    (tensor([0.5000, 0.5000]), tensor([0.5000, 0.5000]))
    """
    logits = check_tensor(logits, name="logits")
    k = check_loss_steps(steps)
    log_rows, log_cols = check_targets(targets, logits.shape[-2:], like=logits)
    with no_autocast(logits.device):
        block = logits.to(compute_dtype(logits))
        (f, g), _, _ = potentials(block, (log_rows, log_cols), k)
        return block + f[..., :, None] + g[..., None, :]
