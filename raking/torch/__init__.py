r"""``raking.torch``: balancing for self-supervised losses on PyTorch tensors.

``theory.md`` §6 reads CLIP's loss as one balancing step of the batch-grid measure
:math:`R(i,j) \propto e^{S_{ij}}` and SwAV's codes as Sinkhorn balancing of the batch-by-prototype
measure. This module provides

- :func:`balance` (the kernel :func:`raking.kernel.ipf.balance` on tensors) and
  :func:`balance_logits` (a fixed number of log-domain steps on logits, sync-free);
- :func:`balanced_clip_loss` (k = 0 joint softmax, 1 CLIP, 2 doubly centred, any k; optional
  non-uniform targets; optional memory-saving backward) and :class:`BalancedClipLoss`, a drop-in
  for open_clip's ``ClipLoss`` that is exact for every k under ``torch.distributed``;
- :func:`sinkhorn` (SwAV codes with any cluster prior, e.g. :func:`power_law_prior`) and
  :func:`prior_matching_loss` (PMSN / MSN's mean-entropy regulariser).

Gradients flow through every step (the CLIP losses in closed form, the others by autograd);
log-sum-exps accumulate in float32 or better under autocast.
With ``torch.distributed`` initialised, :func:`sinkhorn` and :func:`prior_matching_loss` complete
their marginals across ranks (SwAV-style all-reduces) and :class:`BalancedClipLoss` follows its
``rank`` / ``world_size`` arguments as open_clip does; in one process the results are identical
(:func:`balanced_clip_loss` acts on the matrix it is given). Importing this module never
initialises CUDA, and ``import raking`` never imports it. Derivations: ``theory/ssl.md``.

PyTorch is an optional dependency: without it, importing this module raises a
:class:`ModuleNotFoundError` that names the extra to install (``raking-balance[torch]``).
"""

try:
    import torch as _torch  # the optional dependency, checked before the submodules
except ModuleNotFoundError as exc:  # pragma: no cover - exercised in a subprocess by the tests
    if exc.name != "torch":
        raise
    raise ModuleNotFoundError(
        "raking.torch needs PyTorch, which is not installed (it is an optional dependency). "
        'Install it with the torch extra: pip install "raking-balance[torch]" (a CPU build; '
        "for a GPU, install the torch wheel for your CUDA version from pytorch.org first).",
        name="torch",
    ) from exc

from raking.torch.balancing import balance, balance_logits
from raking.torch.clip import BalancedClipLoss, balanced_clip_loss
from raking.torch.swav import power_law_prior, prior_matching_loss, sinkhorn

del _torch

__all__ = [
    "BalancedClipLoss",
    "balance",
    "balance_logits",
    "balanced_clip_loss",
    "power_law_prior",
    "prior_matching_loss",
    "sinkhorn",
]
