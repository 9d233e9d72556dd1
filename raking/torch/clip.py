r"""k-step balanced CLIP losses: k = 0 joint softmax, k = 1 CLIP, k = 2 doubly centred.

``theory.md`` §6 reads CLIP's symmetric InfoNCE loss as one balancing step of the measure
:math:`R(i, j) \propto e^{S_{ij}}` on the batch grid, and the "doubly centred" loss as two;
:func:`balanced_clip_loss` takes any number of steps and :class:`BalancedClipLoss` is a drop-in
for open_clip's ``ClipLoss`` (distributed included). Derivations: ``theory/ssl.md``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.distributed as dist

from raking.torch._chain import clip_chains, no_autocast
from raking.torch._checks import (
    check_loss_steps,
    check_rank,
    check_square,
    check_targets,
    check_tensor,
    compute_dtype,
)
from raking.torch._distributed import Comm, initialised

__all__ = ["BalancedClipLoss", "balanced_clip_loss"]

Targets = tuple[torch.Tensor, torch.Tensor]


def balanced_clip_loss(
    logits: torch.Tensor,
    steps: int = 1,
    targets: Sequence[torch.Tensor] | None = None,
    *,
    checkpoint: bool = False,
) -> torch.Tensor:
    r"""Symmetric k-step balanced contrastive loss of a ``(B, B)`` logit matrix.

    With :math:`P^{(k)}` the measure after :math:`k` alternating log-domain steps from
    :math:`\log R = S` starting with the rows ("X-first") and :math:`Q^{(k)}` the one starting
    with the columns ("Y-first"),

    .. math::

        L_k = -\frac1B \sum_i \tfrac12 \Big[\log \frac{P^{(k)}(i,i)}{t^P_k(i)}
              + \log \frac{Q^{(k)}(i,i)}{t^Q_k(i)}\Big],

    where :math:`t_k` is the target of the axis the chain's last step fixed (so each term is a
    conditional log-likelihood, at most 0), and for :math:`k = 0`, with no step,
    :math:`L_0 = -\frac1B\sum_i [S_{ii} - \operatorname{logsumexp}_{i',j'} S_{i'j'}]`. Hence
    :math:`k=1` is exactly CLIP's symmetric cross-entropy
    :math:`-\frac1{2B}\sum_i[\log\operatorname{softmax}_{\rm row}(S)_{ii}
    + \log\operatorname{softmax}_{\rm col}(S)_{ii}]` and :math:`k=2` the doubly centred loss of
    ``theory.md`` §6 (``theory/ssl.md`` §2).

    Parameters
    ----------
    logits : torch.Tensor, shape ``(B, B)``
        Pair scores :math:`S_{ij}` (e.g. ``scale * image @ text.T``); the diagonal holds the
        observed pairs. float16/bfloat16 are upcast: every log-sum-exp runs in float32 or
        better, also under autocast.
    steps : int
        Balancing steps :math:`k \ge 0` (0 joint softmax, 1 CLIP, 2 doubly centred, ...).
    targets : pair of tensors or None
        Row (image) and column (text) targets ``(a, b)``: positive probability vectors of length
        B. ``None``: uniform :math:`1/B`. They change the loss from :math:`k = 2` on (at
        :math:`k = 1` each chain's conditional does not depend on them). No gradient flows to
        them.
    checkpoint : bool
        What backward keeps. The gradient has a closed form (for :math:`k = 1` it is
        ``cross_entropy``'s, softmax minus target; ``raking.torch._chain._ClipChains``), which
        needs each step's matrix :math:`e^{S + \varphi - r_t}`. ``False``: keep them,
        :math:`2k` matrices and the logits (:math:`(2k + 1) B^2` numbers; the cross-entropy pair
        keeps :math:`2B^2`). ``True``: keep the logits and :math:`2k` vectors per chain and
        recompute each matrix in backward into one buffer (:math:`O(B^2 + kB)`): the same value
        and the same gradient bit for bit, at :math:`2k` more exponential passes. Both are
        twice differentiable (``create_graph=True`` differentiates the unrolled steps).

    Returns
    -------
    torch.Tensor
        0-d loss, float32 for half-precision logits, else their dtype.

    Notes
    -----
    With uniform targets and :math:`k \ge 1`, :math:`L_k` equals the mean of the two
    Kullback-Leibler divergences from the empirical pair measure (mass :math:`1/B` on each
    :math:`(i, i)`) to :math:`P^{(k)}` and :math:`Q^{(k)}`; :math:`L_0` is that divergence plus
    :math:`\log B` (``theory/ssl.md`` §2). ``theory.md`` §6 [CODE] for k = 0, 1, 2.

    Non-finite logits are not rejected (a check would synchronise with the device every step);
    as with :func:`torch.nn.functional.cross_entropy`, a NaN or ``+inf`` logit gives a NaN loss
    and NaN gradients (``+inf`` scores have no normalisable measure), on both backward paths
    and for every ``k``. ``-inf`` is a zero weight: off the diagonal it masks the pair, on the
    diagonal the observed pair becomes impossible and the loss is ``+inf``.

    Examples
    --------
    >>> import torch
    >>> from raking.torch import balanced_clip_loss
    >>> S = torch.tensor([[4.0, 1.0, 0.0], [0.5, 3.0, 1.0], [0.0, 2.0, 5.0]])
    >>> clip = 0.5 * (torch.nn.functional.cross_entropy(S, torch.arange(3))
    ...               + torch.nn.functional.cross_entropy(S.T, torch.arange(3)))
    >>> bool(torch.isclose(balanced_clip_loss(S, steps=1), clip))
    True
    """
    logits = check_square(logits)
    k = check_loss_steps(steps)
    log_a, log_b = check_targets(targets, logits.shape, like=logits)
    return _symmetric_loss(logits, None, (log_a, log_b), k, offset=0, comm=None,
                           checkpoint=checkpoint)  # fmt: skip


def _symmetric_loss(
    image_block: torch.Tensor,
    text_block: torch.Tensor | None,
    targets: Targets,
    steps: int,
    *,
    offset: int,
    comm: Comm | None,
    checkpoint: bool,
) -> torch.Tensor:
    """Mean of the X-first chain on the image rows and the Y-first chain (= X-first on text).

    ``text_block=None``: the text block is ``image_block.T``, and both chains run on
    ``image_block`` (the Y-first chain starting on its columns) in one autograd node, with one
    gradient matrix. ``targets`` are the image block's (rows, columns); a separate text block
    (local loss) has the same ones, its rows being the local texts.
    """
    with no_autocast(image_block.device):
        dtype = compute_dtype(image_block)
        keep = not checkpoint
        if text_block is None:
            terms = clip_chains(image_block.to(dtype), targets, steps, (0, 1), offset=offset,
                                comm=comm, keep=keep)  # fmt: skip
            return -0.5 * (terms[0].mean() + terms[1].mean())
        image, text = (
            clip_chains(block.to(dtype), targets, steps, (0,), offset=offset, comm=comm, keep=keep)
            for block in (image_block, text_block)
        )
        return -0.5 * (image.mean() + text.mean())


class BalancedClipLoss(torch.nn.Module):
    r"""Drop-in for open_clip's ``ClipLoss`` with ``steps`` balancing steps (1 = ``ClipLoss``).

    Same arguments and meaning as ``open_clip.loss.ClipLoss`` (open_clip_torch 3.3.0):
    ``forward(image_features, text_features, logit_scale, logit_bias=None, output_dict=False)``
    builds ``logit_scale * image @ text.T (+ logit_bias)``, gathering features across ranks when
    ``world_size > 1``, and returns :func:`balanced_clip_loss` of it, or
    ``{"contrastive_loss": loss}`` with ``output_dict=True``.

    Parameters
    ----------
    steps : int
        Balancing steps :math:`k \ge 0`; ``steps=1`` gives ``ClipLoss``'s value and gradients.
    local_loss : bool
        Each rank scores only its own images (rows) and texts against the whole gathered batch:
        a ``(B_local, B_global)`` block instead of the full matrix. Exact for every ``k``: a
        column step completes its log-sum-exp over ranks with one all-reduce (MAX, then SUM) of
        a ``B_global`` vector of potentials, never a logit matrix (``theory/ssl.md`` §5).
    gather_with_grad : bool
        Gradients cross ranks: through the gathered features (as open_clip) and through the
        all-reduced potentials. Each rank then gets the gradient of the sum of all ranks'
        losses, which DDP's averaging turns into the gradient of the global-batch loss. Without
        it, other ranks' features and potentials are constants, as in open_clip.
    cache_labels : bool
        Accepted for compatibility; no label tensor is built (the loss reads the diagonal at
        offset ``rank * B_local``).
    rank, world_size : int
        This process's rank and the number of processes (``torch.distributed`` must be
        initialised when ``world_size > 1``; the default process group is used).
    use_horovod : bool
        Must be False (accepted so that open_clip's ``create_loss`` arguments pass through).
    checkpoint : bool
        Memory-saving backward, as in :func:`balanced_clip_loss`.

    Examples
    --------
    >>> import torch
    >>> from raking.torch import BalancedClipLoss
    >>> img = torch.nn.functional.normalize(torch.randn(8, 4), dim=-1)
    >>> txt = torch.nn.functional.normalize(torch.randn(8, 4), dim=-1)
    >>> loss = BalancedClipLoss(steps=2)(img, txt, logit_scale=torch.tensor(10.0))
    >>> loss.shape
    torch.Size([])
    """

    def __init__(
        self,
        steps: int = 1,
        *,
        local_loss: bool = False,
        gather_with_grad: bool = False,
        cache_labels: bool = False,
        rank: int = 0,
        world_size: int = 1,
        use_horovod: bool = False,
        checkpoint: bool = False,
    ) -> None:
        super().__init__()
        if use_horovod:
            raise ValueError(
                "use_horovod=True is not supported; BalancedClipLoss gathers with "
                "torch.distributed. Initialise a torch.distributed process group instead."
            )
        self.steps = check_loss_steps(steps)
        self.rank, self.world_size = check_rank(rank, world_size)
        self.local_loss = bool(local_loss)
        self.gather_with_grad = bool(gather_with_grad)
        self.cache_labels = bool(cache_labels)
        self.checkpoint = bool(checkpoint)

    def extra_repr(self) -> str:
        """The configuration shown by ``repr``."""
        return (
            f"steps={self.steps}, local_loss={self.local_loss}, gather_with_grad="
            f"{self.gather_with_grad}, rank={self.rank}, world_size={self.world_size}"
        )

    def _comm(self) -> Comm | None:
        if self.world_size == 1:
            return None
        if not initialised() or dist.get_world_size() != self.world_size:
            found = (
                f"initialised with {dist.get_world_size()} processes"
                if initialised()
                else "not initialised"
            )
            raise ValueError(
                f"world_size={self.world_size} but torch.distributed is {found}. Call "
                "torch.distributed.init_process_group first and pass its world size, or use "
                "world_size=1 in a single process."
            )
        return Comm(None, self.world_size, self.rank, self.gather_with_grad)

    def get_logits(
        self,
        image_features: torch.Tensor,
        text_features: torch.Tensor,
        logit_scale: torch.Tensor | float,
        logit_bias: torch.Tensor | float | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(logits_per_image, logits_per_text)`` exactly as open_clip's ``ClipLoss``."""
        return self._logits(image_features, text_features, logit_scale, logit_bias, self._comm())

    def _logits(
        self,
        image_features: torch.Tensor,
        text_features: torch.Tensor,
        logit_scale: torch.Tensor | float,
        logit_bias: torch.Tensor | float | None,
        comm: Comm | None,
        *,
        with_text: bool = True,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``(per_image, per_text)``, or ``(per_image, None)`` with ``with_text=False``.

        ``with_text=False`` skips a ``per_text`` that would be ``per_image.T`` (gathered, not
        local), which :func:`_symmetric_loss` reads from ``per_image``. In one process
        ``per_text`` is its own product, as in open_clip (it differs from ``per_image.T`` by
        rounding in low precision), and the loss uses it.
        """
        if comm is None:
            per_image = logit_scale * image_features @ text_features.T
            per_text = logit_scale * text_features @ image_features.T
        else:
            all_image, all_text = self._gather(image_features, text_features, comm)
            if self.local_loss:
                per_image = logit_scale * image_features @ all_text.T
                per_text = logit_scale * text_features @ all_image.T
            else:
                per_image = logit_scale * all_image @ all_text.T
                per_text = per_image.T if with_text else None
        if logit_bias is not None:
            per_image = per_image + logit_bias
            per_text = None if per_text is None else per_text + logit_bias
        return per_image, per_text

    def _gather(
        self, image: torch.Tensor, text: torch.Tensor, comm: Comm
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """open_clip's ``gather_features`` (torch.distributed branch)."""
        if self.gather_with_grad:
            return comm.gather(image), comm.gather(text)
        images, texts = comm.gather_detached(image), comm.gather_detached(text)
        if not self.local_loss:  # keep the local slice differentiable
            images[self.rank], texts[self.rank] = image, text
        return torch.cat(images), torch.cat(texts)

    def forward(
        self,
        image_features: torch.Tensor,
        text_features: torch.Tensor,
        logit_scale: torch.Tensor | float,
        logit_bias: torch.Tensor | float | None = None,
        output_dict: bool = False,
    ) -> torch.Tensor | dict[str, torch.Tensor]:
        """The k-step balanced loss of this batch (``{"contrastive_loss": loss}`` if asked)."""
        check_tensor(image_features, name="image_features", ndim=2)
        check_tensor(text_features, name="text_features", ndim=2)
        if image_features.shape != text_features.shape:
            raise ValueError(
                f"image_features has shape {tuple(image_features.shape)} but text_features has "
                f"{tuple(text_features.shape)}; pass one embedding per pair, same width."
            )
        comm = self._comm()
        local = self.local_loss and comm is not None
        per_image, per_text = self._logits(
            image_features, text_features, logit_scale, logit_bias, comm,
            with_text=comm is None or local,
        )  # fmt: skip
        n_local, n_global = per_image.shape
        rows = per_image.new_full((n_local,), -math.log(n_global), dtype=compute_dtype(per_image))
        cols = rows.new_full((n_global,), -math.log(n_global))
        loss = _symmetric_loss(
            per_image,
            per_text,
            (rows, cols),
            self.steps,
            offset=self.rank * n_local if local else 0,
            comm=comm if local else None,
            checkpoint=self.checkpoint,
        )
        return {"contrastive_loss": loss} if output_dict else loss
