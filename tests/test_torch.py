"""raking.torch: balanced CLIP losses, Sinkhorn codes and prior matching on CPU tensors.

Each test ties a function to an independent reference: the NumPy kernel (float64, 1e-12),
open_clip's ``ClipLoss`` (re-implemented below), the formulas of ``theory.md`` §6, SwAV's
``distributed_sinkhorn`` in NumPy, or autograd's ``gradcheck``.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")
F = torch.nn.functional

import raking.torch as rt  # noqa: E402
from raking.kernel.ipf import balance as np_balance  # noqa: E402

DOUBLE = torch.float64


def _logits(b=6, seed=0, scale=3.0, m=None):
    gen = torch.Generator().manual_seed(seed)
    return scale * torch.randn(b, b if m is None else m, generator=gen, dtype=DOUBLE)


def _dirichlet(n, seed):
    return np.random.default_rng(seed).dirichlet(np.ones(n) * 2)


def _np_logsumexp(x):
    top = x.max()
    return top + np.log(np.exp(x - top).sum())


# ------------------------------------------------------------------------------------------------
# Independent references
# ------------------------------------------------------------------------------------------------


class OpenClipLoss(torch.nn.Module):
    """open_clip_torch 3.3.0 ``open_clip/loss.py: ClipLoss``, single-process branch, verbatim logic.

    ``get_logits`` with ``world_size == 1`` (including the in-place ``logit_bias``),
    ``get_ground_truth`` and ``forward`` as released; the distributed gather is not copied.
    """

    def __init__(self, cache_labels=False):
        super().__init__()
        self.cache_labels = cache_labels
        self.prev_num_logits = 0
        self.labels = {}

    def get_ground_truth(self, device, num_logits):
        if self.prev_num_logits != num_logits or device not in self.labels:
            labels = torch.arange(num_logits, device=device, dtype=torch.long)
            if self.cache_labels:
                self.labels[device] = labels
                self.prev_num_logits = num_logits
        else:
            labels = self.labels[device]
        return labels

    def get_logits(self, image_features, text_features, logit_scale, logit_bias=None):
        logits_per_image = logit_scale * image_features @ text_features.T
        logits_per_text = logit_scale * text_features @ image_features.T
        if logit_bias is not None:
            logits_per_image += logit_bias
            logits_per_text += logit_bias
        return logits_per_image, logits_per_text

    def forward(
        self, image_features, text_features, logit_scale, logit_bias=None, output_dict=False
    ):
        device = image_features.device
        logits_per_image, logits_per_text = self.get_logits(
            image_features, text_features, logit_scale, logit_bias=logit_bias
        )
        labels = self.get_ground_truth(device, logits_per_image.shape[0])
        total_loss = (
            F.cross_entropy(logits_per_image, labels) + F.cross_entropy(logits_per_text, labels)
        ) / 2
        return {"contrastive_loss": total_loss} if output_dict else total_loss


def symmetric_infonce(S):
    """CLIP: mean of the row and column cross-entropies with the diagonal as labels."""
    return -0.5 * (
        torch.diagonal(S.log_softmax(1)).mean() + torch.diagonal(S.log_softmax(0)).mean()
    )


def doubly_centred(S):
    """``theory.md`` §6, L_2: column log-softmax of the row log-softmax, and vice versa."""
    xy = S.log_softmax(1).log_softmax(0)
    yx = S.log_softmax(0).log_softmax(1)
    return -0.5 * (torch.diagonal(xy).mean() + torch.diagonal(yx).mean())


def joint_softmax(S):
    """``theory.md`` §6, L_0."""
    return -(torch.diagonal(S) - torch.logsumexp(S.flatten(), 0)).mean()


def kernel_loss(S, k, a, b):
    """L_k through the NumPy kernel: conditional log-probability of the last step's axis."""
    if k == 0:
        return -np.mean(np.diag(S) - _np_logsumexp(S))
    log_p = np_balance(S, [a, b], steps=k, log_domain=True)
    log_q = np_balance(S.T, [b, a], steps=k, log_domain=True)
    t_p, t_q = (a, b) if k % 2 else (b, a)
    return -0.5 * (np.mean(np.diag(log_p) - np.log(t_p)) + np.mean(np.diag(log_q) - np.log(t_q)))


def kl_from_pairs(S, k):
    """½[KL(D || P^(k)) + KL(D || Q^(k))], D the empirical pair measure, uniform targets."""
    b = S.shape[0]
    u = np.full(b, 1 / b)
    log_p = np_balance(S, [u, u], steps=k, log_domain=True) - (_np_logsumexp(S) if k == 0 else 0)
    log_q = np_balance(S.T, [u, u], steps=k, log_domain=True) - (_np_logsumexp(S) if k == 0 else 0)
    return 0.5 * (-np.mean(np.diag(log_p)) - np.mean(np.diag(log_q))) - math.log(b)


def swav_sinkhorn(out, eps, n_iter, prior=None):
    """SwAV ``distributed_sinkhorn`` (one process), NumPy float64, prior generalising ``/= K``."""
    q = np.exp(out / eps).T  # K x B
    k, b = q.shape
    prior = np.full(k, 1 / k) if prior is None else prior
    q /= q.sum()
    for _ in range(n_iter):
        q /= q.sum(axis=1, keepdims=True)
        q *= prior[:, None]
        q /= q.sum(axis=0, keepdims=True)
        q /= b
    return (q * b).T


# ------------------------------------------------------------------------------------------------
# Import
# ------------------------------------------------------------------------------------------------


def test_import_leaves_cuda_uninitialised_and_raking_does_not_import_it():
    code = (
        "import json, sys, raking; before = 'raking.torch' in sys.modules; import raking.torch, "
        "torch; print(json.dumps([before, torch.cuda.is_initialized()]))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout.strip().splitlines()[-1]) == [False, False]


# ------------------------------------------------------------------------------------------------
# Equal to the NumPy kernel
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("log_domain", [False, True])
@pytest.mark.parametrize("steps", [0, 1, 4, None])
def test_balance_is_the_numpy_kernel(steps, log_domain):
    table = np.random.default_rng(1).random((2, 4, 5)) + 0.1
    table = np.log(table) if log_domain else table
    targets = [_dirichlet(4, 2), _dirichlet(5, 3)]
    expected = np_balance(table, targets, steps=steps, log_domain=log_domain)
    out = rt.balance(torch.as_tensor(table), [torch.as_tensor(t) for t in targets], steps=steps,
                     log_domain=log_domain)  # fmt: skip
    assert isinstance(out, torch.Tensor) and out.dtype == DOUBLE
    np.testing.assert_allclose(out.numpy(), expected, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("steps", range(6))
def test_balance_logits_is_the_numpy_kernel(steps):
    logits = _logits(4, seed=steps, m=5).reshape(1, 4, 5).repeat(3, 1, 1)
    logits[1] *= -0.5
    targets = [_dirichlet(4, 4), _dirichlet(5, 5)]
    expected = np_balance(logits.numpy(), targets, steps=steps, log_domain=True)
    out = rt.balance_logits(logits, steps, [torch.as_tensor(t) for t in targets])
    np.testing.assert_allclose(out.numpy(), expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("checkpoint", [False, True])
@pytest.mark.parametrize("steps", range(6))
def test_loss_is_the_kernel_measure_conditioned_on_the_last_step(steps, checkpoint):
    S = _logits(7, seed=steps)
    a, b = _dirichlet(7, 10), _dirichlet(7, 11)
    out = rt.balanced_clip_loss(S, steps, (torch.as_tensor(a), torch.as_tensor(b)),
                                checkpoint=checkpoint)  # fmt: skip
    np.testing.assert_allclose(out.item(), kernel_loss(S.numpy(), steps, a, b), rtol=1e-12)


@pytest.mark.parametrize("steps", range(1, 5))
def test_uniform_targets_loss_is_the_mean_kl_from_the_pair_measure(steps):
    S = _logits(6, seed=20 + steps)
    np.testing.assert_allclose(
        rt.balanced_clip_loss(S, steps).item(), kl_from_pairs(S.numpy(), steps), rtol=1e-12
    )
    # k = 0 keeps theory.md's constant: KL + log B.
    np.testing.assert_allclose(
        rt.balanced_clip_loss(S, 0).item(), kl_from_pairs(S.numpy(), 0) + math.log(6), rtol=1e-12
    )


def test_sinkhorn_is_the_numpy_kernel_columns_first():
    scores = _logits(5, seed=3, scale=1.0, m=4)
    prior = rt.power_law_prior(4, 0.7)
    codes = rt.sinkhorn(scores, prior, eps=0.1, n_iter=4)
    balanced = np_balance((scores / 0.1).numpy().T, [prior.numpy(), np.full(5, 0.2)], steps=8,
                          log_domain=True)  # fmt: skip
    np.testing.assert_allclose(codes.numpy(), 5 * np.exp(balanced.T), rtol=1e-12, atol=1e-15)


# ------------------------------------------------------------------------------------------------
# k = 0, 1, 2 are the losses of theory.md §6; k = 1 is open_clip's ClipLoss
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("steps", "reference"), [(0, joint_softmax), (1, symmetric_infonce), (2, doubly_centred)]
)
@pytest.mark.parametrize("checkpoint", [False, True])
def test_first_three_steps_are_the_losses_of_theory_section_6(steps, reference, checkpoint):
    S = _logits(8, seed=steps).requires_grad_()
    value = rt.balanced_clip_loss(S, steps, checkpoint=checkpoint)
    (grad,) = torch.autograd.grad(value, S)
    expected = reference(S)
    (expected_grad,) = torch.autograd.grad(expected, S)
    torch.testing.assert_close(value, expected, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(grad, expected_grad, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("with_bias", [False, True])
def test_steps_1_module_is_open_clip_clip_loss(with_bias):
    gen = torch.Generator().manual_seed(5)

    def leaves():
        img = F.normalize(torch.randn(10, 6, generator=gen, dtype=DOUBLE), dim=-1)
        txt = F.normalize(torch.randn(10, 6, generator=gen, dtype=DOUBLE), dim=-1)
        scale = torch.tensor(14.0, dtype=DOUBLE)
        bias = torch.tensor(-3.0, dtype=DOUBLE)
        return [x.requires_grad_() for x in (img, txt, scale, bias)]

    ours = leaves()
    gen.manual_seed(5)
    theirs = leaves()
    loss = rt.BalancedClipLoss(steps=1, cache_labels=True)(
        *ours[:3], logit_bias=ours[3] if with_bias else None, output_dict=True
    )["contrastive_loss"]
    ref = OpenClipLoss(cache_labels=True)(
        *theirs[:3], logit_bias=theirs[3] if with_bias else None, output_dict=True
    )["contrastive_loss"]
    torch.testing.assert_close(loss, ref, rtol=1e-12, atol=1e-12)
    loss.backward()
    ref.backward()
    for mine, other in zip(ours[: 4 if with_bias else 3], theirs, strict=False):
        torch.testing.assert_close(mine.grad, other.grad, rtol=1e-10, atol=1e-12)


def test_targets_do_not_change_one_step_but_change_two():
    S = _logits(5, seed=9)
    targets = (torch.as_tensor(_dirichlet(5, 1)), torch.as_tensor(_dirichlet(5, 2)))
    one = rt.balanced_clip_loss(S, 1, targets)
    torch.testing.assert_close(one, symmetric_infonce(S), rtol=1e-12, atol=1e-12)
    assert abs(rt.balanced_clip_loss(S, 2, targets) - doubly_centred(S)) > 1e-3


@pytest.mark.parametrize("steps", [1, 2, 3, 8])
def test_loss_is_nonnegative_and_zero_for_separated_pairs(steps):
    assert rt.balanced_clip_loss(_logits(6, seed=steps), steps) > 0
    assert rt.balanced_clip_loss(200.0 * torch.eye(6, dtype=DOUBLE), steps) < 1e-12


# ------------------------------------------------------------------------------------------------
# Gradients: gradcheck, and the memory-saving backward equals the unrolled one
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("checkpoint", [False, True])
@pytest.mark.parametrize("steps", [0, 1, 2, 3])
def test_gradcheck_of_the_clip_loss(steps, checkpoint):
    S = _logits(4, seed=steps, scale=1.0).requires_grad_()
    targets = (torch.as_tensor(_dirichlet(4, 7)), torch.as_tensor(_dirichlet(4, 8)))
    assert torch.autograd.gradcheck(
        lambda s: rt.balanced_clip_loss(s, steps, targets, checkpoint=checkpoint), (S,)
    )


def test_gradcheck_of_balance_logits_and_prior_matching():
    S = _logits(3, seed=1, scale=1.0, m=4).requires_grad_()
    assert torch.autograd.gradcheck(lambda s: rt.balance_logits(s, 3), (S,))
    probs = torch.softmax(_logits(5, seed=2, m=3), dim=1).requires_grad_()
    prior = rt.power_law_prior(3, 0.5)
    for direction in ("forward", "reverse"):
        assert torch.autograd.gradcheck(
            lambda p, d=direction: rt.prior_matching_loss(p, prior, d), (probs,)
        )


@pytest.mark.parametrize("steps", [1, 2, 3, 4])
def test_checkpointed_loss_equals_unrolled_value_and_gradient(steps):
    S = _logits(16, seed=steps, scale=5.0)
    S[0, 3] = -math.inf  # a masked pair stays masked in both
    targets = (torch.as_tensor(_dirichlet(16, 1)), torch.as_tensor(_dirichlet(16, 2)))
    results = []
    for checkpoint in (False, True):
        leaf = S.clone().requires_grad_()
        value = rt.balanced_clip_loss(leaf, steps, targets, checkpoint=checkpoint)
        value.backward()
        results.append((value, leaf.grad))
    torch.testing.assert_close(results[1][0], results[0][0], rtol=1e-13, atol=1e-13)
    torch.testing.assert_close(results[1][1], results[0][1], rtol=1e-11, atol=1e-13)
    assert results[1][1][0, 3] == 0


def _saved_bytes(steps, checkpoint, b=64):
    storages = {}

    def pack(t):
        storages[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t

    S = _logits(b, seed=0).requires_grad_()
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        rt.balanced_clip_loss(S, steps, checkpoint=checkpoint)
    return sum(storages.values())


@pytest.mark.parametrize("steps", [1, 2, 4])
def test_checkpoint_saves_the_logits_and_vectors_only(steps):
    b, matrix = 64, 64 * 64 * 8
    saved = _saved_bytes(steps, True, b)
    assert saved <= matrix + 2 * (2 * steps + 2) * b * 8  # logits + 2k vectors per chain
    # Default: one exponential matrix per step and chain, plus the logits (for create_graph);
    # before the closed-form backward, autograd kept 4k matrices.
    unrolled = _saved_bytes(steps, False, b)
    assert 2 * steps * matrix <= unrolled <= (2 * steps + 1) * matrix + 2 * (2 * steps + 2) * b * 8


def _reference_terms(S, steps, targets, first):
    """Diagonal terms of one chain by the kernel's steps, differentiated by autograd."""
    from raking._array_api import get_xp
    from raking.kernel.steps import new_factor, reduce

    xp = get_xp(S)
    factors = [torch.zeros(S.shape[0], dtype=DOUBLE), torch.zeros(S.shape[1], dtype=DOUBLE)]
    for t in range(steps):
        axis = (first + t) % 2
        reduced = reduce(S, factors, axis, xp=xp, log_domain=True)
        factors[axis] = new_factor(reduced, None, targets[axis], xp=xp)
    if axis == 0:
        return torch.diagonal(S) + factors[1] - reduced
    return torch.diagonal(S) + factors[0] - reduced


@pytest.mark.parametrize("checkpoint", [False, True])
@pytest.mark.parametrize("steps", [1, 2, 3, 5])
def test_closed_form_gradient_is_autograd_through_the_kernel_steps(steps, checkpoint):
    S = _logits(9, seed=30 + steps, scale=4.0)
    S[2, 5] = S[7, 0] = -math.inf  # masked pairs
    a, b = _dirichlet(9, 3), _dirichlet(9, 4)
    targets = (torch.as_tensor(a).log(), torch.as_tensor(b).log())
    ref_leaf = S.clone().requires_grad_()
    # the column-first chain on S is the row-first chain on S.T
    ref = -0.5 * sum(_reference_terms(ref_leaf, steps, targets, f).mean() for f in (0, 1))
    ref.backward()
    leaf = S.clone().requires_grad_()
    loss = rt.balanced_clip_loss(leaf, steps, (torch.as_tensor(a), torch.as_tensor(b)),
                                 checkpoint=checkpoint)  # fmt: skip
    loss.backward()
    torch.testing.assert_close(loss, ref.detach(), rtol=1e-13, atol=1e-13)
    torch.testing.assert_close(leaf.grad, ref_leaf.grad, rtol=1e-11, atol=1e-14)
    assert leaf.grad[2, 5] == 0 and leaf.grad[7, 0] == 0


@pytest.mark.parametrize("steps", [1, 2, 4])
def test_kept_and_recomputed_exponentials_give_the_same_bits(steps):
    S = _logits(12, seed=steps, scale=6.0).float()
    S[3, 1] = -math.inf
    grads = []
    for checkpoint in (False, True):
        leaf = S.clone().requires_grad_()
        rt.balanced_clip_loss(leaf, steps, checkpoint=checkpoint).backward()
        grads.append(leaf.grad)
    assert torch.equal(grads[0], grads[1])


@pytest.mark.parametrize("first_step", [False, True], ids=["later", "first"])
@pytest.mark.parametrize("dtype", [torch.float32, DOUBLE])
@pytest.mark.parametrize("axis", [0, 1])
def test_chain_reduction_is_the_kernel_reduce_bit_for_bit(axis, dtype, first_step):
    """_chain._reduce_into is raking.kernel.steps.reduce computed in place, NaN/inf lines too."""
    from raking._array_api import get_xp
    from raking.kernel.steps import reduce
    from raking.torch._chain import _reduce_into

    block = _logits(7, seed=2, scale=30.0, m=6).to(dtype)
    block[1, :] = -math.inf  # an empty row
    block[:, 4] = -math.inf  # an empty column
    block[3, 2], block[5, 0] = math.nan, math.inf  # invalid lines
    block[6, 3] = -0.0
    other = _logits(1, seed=3, m=6 if axis == 0 else 7)[0].to(dtype)
    if first_step:  # the neutral potential, which _reduce_into takes as None
        other = torch.zeros_like(other)
    zeros = torch.zeros(7 if axis == 0 else 6, dtype=dtype)  # the potential being replaced
    factors = [zeros, other] if axis == 0 else [other, zeros]
    expected = reduce(block, factors, axis, xp=get_xp(block), log_domain=True)
    out = torch.empty_like(block)
    reduced, shift = _reduce_into(out, block, None if first_step else other, axis)
    torch.testing.assert_close(reduced, expected, rtol=0, atol=0, equal_nan=True)
    assert torch.isnan(reduced).sum() == 2 and (reduced == -math.inf).sum() == 1
    scaled = block + other.unsqueeze(axis)  # out holds exp(L + phi - shift)
    torch.testing.assert_close(out, torch.exp(scaled - shift.unsqueeze(1 - axis)), rtol=0, atol=0,
                               equal_nan=True)  # fmt: skip


@pytest.mark.parametrize("checkpoint", [False, True])
@pytest.mark.parametrize("steps", [1, 2, 3])
def test_the_loss_is_twice_differentiable(steps, checkpoint):
    S = _logits(4, seed=steps, scale=1.0).requires_grad_()
    targets = (torch.as_tensor(_dirichlet(4, 5)), torch.as_tensor(_dirichlet(4, 6)))
    assert torch.autograd.gradgradcheck(
        lambda s: rt.balanced_clip_loss(s, steps, targets, checkpoint=checkpoint), (S,)
    )


# ------------------------------------------------------------------------------------------------
# Sinkhorn codes and priors
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("prior", [None, "power"])
def test_sinkhorn_codes_have_the_requested_marginals(prior):
    scores = _logits(40, seed=4, scale=1.0, m=7)
    pi = rt.power_law_prior(7, 1.0) if prior else torch.full((7,), 1 / 7, dtype=DOUBLE)
    codes = rt.sinkhorn(scores, None if prior is None else pi, eps=0.2, n_iter=300)
    torch.testing.assert_close(codes.sum(1), torch.ones(40, dtype=DOUBLE), rtol=0, atol=1e-14)
    torch.testing.assert_close(codes.mean(0), pi, rtol=0, atol=1e-10)
    few = rt.sinkhorn(scores, None if prior is None else pi, eps=0.2, n_iter=1)
    assert (few.mean(0) - pi).abs().max() > 1e-4  # not balanced after one iteration


@pytest.mark.parametrize("prior", [None, "power"])
def test_sinkhorn_matches_swav_reference(prior):
    scores = torch.as_tensor(np.random.default_rng(3).uniform(-1, 1, (12, 5)))
    pi = rt.power_law_prior(5, 0.5) if prior else None
    codes = rt.sinkhorn(scores, pi, eps=0.05, n_iter=3)
    expected = swav_sinkhorn(scores.numpy(), 0.05, 3, None if pi is None else pi.numpy())
    np.testing.assert_allclose(codes.numpy(), expected, rtol=1e-10, atol=1e-13)


def test_sinkhorn_small_eps_half_input_no_gradient_and_zero_prior():
    scores = torch.as_tensor(np.random.default_rng(0).uniform(-1, 1, (6, 4)), dtype=torch.float16)
    scores.requires_grad_()
    prior = torch.tensor([0.5, 0.0, 0.25, 0.25])
    codes = rt.sinkhorn(scores, prior, eps=1e-3, n_iter=50)  # exp(1000) in the linear domain
    assert codes.dtype == torch.float32 and not codes.requires_grad
    assert torch.isfinite(codes).all() and (codes[:, 1] == 0).all()
    torch.testing.assert_close(codes.sum(1), torch.ones(6), rtol=0, atol=1e-6)


def test_power_law_prior():
    torch.testing.assert_close(rt.power_law_prior(4, 0.0), torch.full((4,), 0.25, dtype=DOUBLE))
    p = rt.power_law_prior(5, 2.0, dtype=torch.float32)
    assert p.dtype == torch.float32
    k = np.arange(1, 6.0)
    np.testing.assert_allclose(p.numpy(), k**-2 / np.sum(k**-2), rtol=1e-6)


def test_prior_matching_is_zero_at_the_prior_and_positive_elsewhere():
    prior = rt.power_law_prior(4, 0.8)
    for direction in ("forward", "reverse"):
        assert rt.prior_matching_loss(prior[None, :], prior, direction) == 0
        near = rt.prior_matching_loss(prior.expand(8, 4), prior, direction)
        assert abs(near) <= 1e-15
        probs = torch.softmax(_logits(8, seed=3, m=4), dim=1)
        assert rt.prior_matching_loss(probs, prior, direction) > 0


def test_prior_matching_uniform_is_log_k_minus_mean_entropy_and_reverse_kl():
    probs = torch.softmax(_logits(9, seed=6, m=5), dim=1)
    mean = probs.mean(0)
    entropy = -(mean * mean.log()).sum()
    torch.testing.assert_close(rt.prior_matching_loss(probs), math.log(5) - entropy)
    prior = rt.power_law_prior(5, 1.0)
    torch.testing.assert_close(
        rt.prior_matching_loss(probs, prior, "reverse"), (prior * (prior / mean).log()).sum()
    )
    torch.testing.assert_close(
        rt.prior_matching_loss(probs, prior), (mean * (mean / prior).log()).sum()
    )


# ------------------------------------------------------------------------------------------------
# Half precision and autocast
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("steps", [0, 1, 2, 5])
@pytest.mark.parametrize("checkpoint", [False, True])
def test_bf16_logits_give_a_float32_accurate_loss(steps, checkpoint):
    S = _logits(128, seed=steps, scale=8.0).to(torch.bfloat16)
    loss = rt.balanced_clip_loss(S, steps, checkpoint=checkpoint)
    exact = rt.balanced_clip_loss(S.double(), steps)
    assert loss.dtype == torch.float32
    assert abs(loss.double() - exact) <= 2e-6 * abs(exact)
    S.requires_grad_()
    rt.balanced_clip_loss(S, steps, checkpoint=checkpoint).backward()
    assert S.grad.dtype == torch.bfloat16 and torch.isfinite(S.grad.float()).all()


def test_module_under_cpu_autocast_accumulates_in_float32():
    gen = torch.Generator().manual_seed(0)
    img = F.normalize(torch.randn(64, 16, generator=gen), dim=-1)
    txt = F.normalize(torch.randn(64, 16, generator=gen), dim=-1)
    module = rt.BalancedClipLoss(steps=1)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        per_image, per_text = module.get_logits(img, txt, 30.0)
        loss = module(img, txt, 30.0)
    assert per_image.dtype == torch.bfloat16 and loss.dtype == torch.float32
    labels = torch.arange(64)
    exact = 0.5 * (
        F.cross_entropy(per_image.double(), labels) + F.cross_entropy(per_text.double(), labels)
    )
    assert abs(loss.double() - exact) <= 2e-6 * exact


# ------------------------------------------------------------------------------------------------
# Bad input: ValueError (or TypeError) naming the argument
# ------------------------------------------------------------------------------------------------

GOOD = torch.zeros(3, 3)
UNIFORM = torch.full((3,), 1 / 3)


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (lambda: rt.balanced_clip_loss(torch.zeros(3, 4)), ValueError, "logits must be a square"),
        (lambda: rt.balanced_clip_loss(torch.zeros(3)), ValueError, "logits must have 2 axes"),
        (lambda: rt.balanced_clip_loss(np.zeros((3, 3))), TypeError, "logits must be a torch"),
        (lambda: rt.balanced_clip_loss(torch.zeros(3, 3, dtype=torch.long)), TypeError, "logits"),
        (lambda: rt.balanced_clip_loss(GOOD, -1), ValueError, "steps must be >= 0"),
        (lambda: rt.balanced_clip_loss(GOOD, None), ValueError, "steps must be a fixed"),
        (lambda: rt.balanced_clip_loss(GOOD, 1, UNIFORM), ValueError, "targets must be None"),
        (lambda: rt.balanced_clip_loss(GOOD, 2, (torch.ones(2) / 2, UNIFORM)), ValueError,
         r"targets\[0\] must have shape \(3,\)"),
        (lambda: rt.balanced_clip_loss(GOOD, 2, (UNIFORM, torch.tensor([0.5, 0.5, 0.0]))),
         ValueError, r"targets\[1\] must be > 0"),
        (lambda: rt.balanced_clip_loss(GOOD, 2, (UNIFORM, torch.ones(3))), ValueError,
         r"targets\[1\] sums to 3, not 1"),
        (lambda: rt.balance_logits(GOOD, 1, (UNIFORM, torch.ones(3) * math.nan)), ValueError,
         r"targets\[1\] must be finite"),
        (lambda: rt.sinkhorn(GOOD, eps=0.0), ValueError, "eps must be a positive"),
        (lambda: rt.sinkhorn(GOOD, n_iter=0), ValueError, "n_iter must be a positive"),
        (lambda: rt.sinkhorn(GOOD, torch.tensor([1.5, -0.5, 0.0])), ValueError, "prior must be"),
        (lambda: rt.sinkhorn(GOOD, torch.ones(4) / 4), ValueError, r"prior must have shape"),
        (lambda: rt.sinkhorn(torch.zeros(3)), ValueError, "scores must have 2 axes"),
        (lambda: rt.sinkhorn(GOOD, group=object()), ValueError, "group was given"),
        (lambda: rt.prior_matching_loss(GOOD, direction="both"), ValueError, "direction must be"),
        (lambda: rt.prior_matching_loss(torch.zeros(3)), ValueError, "probs must have 2 axes"),
        (lambda: rt.prior_matching_loss(GOOD, torch.ones(3)), ValueError, "prior sums to 3"),
        (lambda: rt.power_law_prior(3, -1.0), ValueError, "tau must be"),
        (lambda: rt.power_law_prior(0, 1.0), ValueError, "n_clusters must be"),
        (lambda: rt.BalancedClipLoss(rank=2, world_size=2), ValueError, "rank must be < world"),
        (lambda: rt.BalancedClipLoss(world_size=0), ValueError, "world_size must be"),
        (lambda: rt.BalancedClipLoss(steps=-2), ValueError, "steps must be >= 0"),
        (lambda: rt.BalancedClipLoss(use_horovod=True), ValueError, "use_horovod"),
        (lambda: rt.BalancedClipLoss(world_size=2)(GOOD, GOOD, 1.0), ValueError,
         "world_size=2 but torch.distributed is not initialised"),
        (lambda: rt.BalancedClipLoss()(GOOD, torch.zeros(3, 2), 1.0), ValueError,
         "text_features has"),
    ],
)  # fmt: skip
def test_bad_input_names_the_argument(call, error, match):
    with pytest.raises(error, match=match):
        call()
