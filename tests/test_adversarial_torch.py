"""Adversarial inputs to raking.torch: NaN/inf/overflow values, degenerate shapes, odd layouts.

The losses never check values on the host (that would synchronise with the device every step),
so non-finite values must propagate like :func:`torch.nn.functional.cross_entropy`: a NaN or
``+inf`` logit gives a NaN loss and NaN gradients on both backward paths, ``-inf`` is a zero
weight. Bad arguments raise an error whose message names the argument. Importing
``raking.torch`` without PyTorch names the extra to install.
"""

from __future__ import annotations

import math
import subprocess
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")
F = torch.nn.functional

import raking.torch as rt  # noqa: E402

NAN, INF = math.nan, math.inf
STEPS = (0, 1, 2, 3, 4)


def _logits(b=5, seed=0, dtype=torch.float64):
    gen = torch.Generator().manual_seed(seed)
    return 2.0 * torch.randn(b, b, generator=gen, dtype=dtype)


def _with(value, cell, b=5, dtype=torch.float64):
    logits = _logits(b, dtype=dtype)
    logits[cell] = value
    return logits.requires_grad_(True)


def _loss_and_grad(logits, steps, checkpoint):
    loss = rt.balanced_clip_loss(logits, steps, checkpoint=checkpoint)
    (grad,) = torch.autograd.grad(loss, logits)
    return loss.detach(), grad


# ------------------------------------------------------------------------------------------------
# Finding 3: NaN in, NaN out (both backward paths, every k), as cross_entropy
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("checkpoint", [False, True], ids=["unrolled", "checkpointed"])
@pytest.mark.parametrize("steps", STEPS)
@pytest.mark.parametrize("cell", [(0, 0), (1, 3), (4, 2)], ids=["diagonal", "off-1-3", "off-4-2"])
@pytest.mark.parametrize("value", [NAN, INF], ids=["nan", "+inf"])
def test_nan_or_plus_inf_logit_gives_nan_loss_and_nan_gradient(value, cell, steps, checkpoint):
    loss, grad = _loss_and_grad(_with(value, cell), steps, checkpoint)
    assert torch.isnan(loss), f"k={steps}: loss {loss} for a {value} logit at {cell}"
    assert torch.isnan(grad).any(), "the gradient of a NaN loss must not be finite"
    assert not torch.isinf(grad).any()


@pytest.mark.parametrize("steps", STEPS)
def test_nan_gradient_pattern_is_the_same_on_both_backward_paths(steps):
    _, unrolled = _loss_and_grad(_with(NAN, (1, 3)), steps, False)
    _, checkpointed = _loss_and_grad(_with(NAN, (1, 3)), steps, True)
    assert torch.equal(torch.isnan(unrolled), torch.isnan(checkpointed))


def test_nan_logit_matches_cross_entropy_at_k1():
    logits = _with(NAN, (1, 3))
    labels = torch.arange(5)
    clip = 0.5 * (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels))
    assert torch.isnan(clip) and torch.isnan(rt.balanced_clip_loss(logits, 1))


@pytest.mark.parametrize("checkpoint", [False, True], ids=["unrolled", "checkpointed"])
@pytest.mark.parametrize("steps", STEPS)
def test_minus_inf_off_diagonal_is_a_zero_weight(steps, checkpoint):
    """-inf masks a pair: the loss equals the limit of a very negative finite logit."""
    masked = _with(-INF, (1, 3))
    loss, grad = _loss_and_grad(masked, steps, checkpoint)
    limit, limit_grad = _loss_and_grad(_with(-1e4, (1, 3)), steps, checkpoint)
    assert torch.isfinite(loss) and torch.all(torch.isfinite(grad))
    torch.testing.assert_close(loss, limit, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(grad, limit_grad, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("steps", STEPS)
def test_minus_inf_on_the_diagonal_makes_the_observed_pair_impossible(steps):
    loss = rt.balanced_clip_loss(_with(-INF, (2, 2)), steps)
    assert loss == INF  # as cross_entropy with a -inf target logit


def test_a_whole_row_of_minus_inf_has_zero_gradient_off_its_diagonal():
    logits = _logits()
    logits[2, :] = -INF
    logits[2, 2] = 0.0  # the observed pair keeps all of the row's mass
    logits.requires_grad_(True)
    for checkpoint in (False, True):
        _, grad = _loss_and_grad(logits, 2, checkpoint)
        assert torch.all(torch.isfinite(grad))
        assert torch.all(grad[2, [0, 1, 3, 4]] == 0)


def test_half_precision_nan_logit_gives_float32_nan():
    logits = _logits(dtype=torch.float32)
    logits[0, 1] = NAN
    for dtype in (torch.float16, torch.bfloat16):
        loss = rt.balanced_clip_loss(logits.to(dtype), 2)
        assert loss.dtype == torch.float32 and torch.isnan(loss)


def test_module_loss_with_nan_features_or_scale_is_nan():
    img = F.normalize(torch.randn(6, 4, dtype=torch.float64), dim=-1)
    txt = F.normalize(torch.randn(6, 4, dtype=torch.float64), dim=-1)
    bad = img.clone()
    bad[3, 0] = NAN
    for steps in (1, 2):
        module = rt.BalancedClipLoss(steps=steps)
        assert torch.isnan(module(bad, txt, logit_scale=10.0))
        assert torch.isnan(module(img, txt, logit_scale=torch.tensor(NAN)))
        assert torch.isfinite(module(img, txt, logit_scale=10.0))


# ------------------------------------------------------------------------------------------------
# The same class in the other functions: balance_logits, sinkhorn, prior_matching_loss
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("value", [NAN, INF], ids=["nan", "+inf"])
def test_balance_logits_propagates_nan_to_the_whole_result(value):
    logits = _logits()
    logits[1, 3] = value
    out = rt.balance_logits(logits, steps=1)
    assert torch.isnan(out[1]).all() and torch.isfinite(out[[0, 2, 3, 4]]).all()
    assert torch.isnan(rt.balance_logits(logits, steps=2)).all()


def test_balance_logits_minus_inf_is_a_zero_weight():
    logits = _logits()
    logits[1, 3] = -INF
    out = rt.balance_logits(logits, steps=1000).exp()
    assert out[1, 3] == 0
    torch.testing.assert_close(out.sum(1), torch.full((5,), 0.2, dtype=torch.float64))
    torch.testing.assert_close(out.sum(0), torch.full((5,), 0.2, dtype=torch.float64))


@pytest.mark.parametrize("value", [NAN, INF], ids=["nan", "+inf"])
def test_sinkhorn_codes_are_nan_for_a_nan_or_plus_inf_score(value):
    scores = torch.randn(6, 3, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    scores[2, 1] = value
    assert torch.isnan(rt.sinkhorn(scores, eps=0.5)).all()


def test_sinkhorn_does_not_overflow_on_large_finite_scores():
    """scores / eps overflowed float32 to inf (NaN codes); codes ignore a common shift."""
    gen = torch.Generator().manual_seed(2)
    scores = 1e37 + 1e35 * torch.rand(6, 4, generator=gen, dtype=torch.float64)
    codes = rt.sinkhorn(scores.float(), eps=0.05)  # 1e37 / 0.05 > float32 max
    assert torch.all(torch.isfinite(codes))
    reference = rt.sinkhorn(scores.float().double(), eps=0.05)  # no overflow in float64
    torch.testing.assert_close(codes.double(), reference, rtol=0, atol=1e-6)
    flat = rt.sinkhorn(torch.full((4, 4), 3e38), eps=0.05)
    torch.testing.assert_close(flat, torch.full((4, 4), 0.25))


@pytest.mark.parametrize("direction", ["forward", "reverse"])
@pytest.mark.parametrize("value", [NAN, INF, -INF, -0.25], ids=["nan", "+inf", "-inf", "negative"])
def test_prior_matching_loss_is_nan_for_an_invalid_probability(value, direction):
    probs = torch.softmax(torch.randn(5, 3, dtype=torch.float64), dim=1)
    probs[1, 2] = value
    probs.requires_grad_(True)
    loss = rt.prior_matching_loss(probs, direction=direction)
    assert torch.isnan(loss), f"{direction} KL of a {value} probability gave {loss}"
    (grad,) = torch.autograd.grad(loss, probs)
    assert torch.isnan(grad).any()


def test_prior_matching_loss_zero_mean_mass_is_a_true_infinity_not_nan():
    probs = torch.tensor([[1.0, 0.0], [1.0, 0.0]], dtype=torch.float64)
    assert rt.prior_matching_loss(probs, direction="reverse") == INF
    assert rt.prior_matching_loss(probs) == pytest.approx(math.log(2))


# ------------------------------------------------------------------------------------------------
# Degenerate shapes, dtypes and arguments: the error names the argument
# ------------------------------------------------------------------------------------------------

BAD_LOGITS = [
    (torch.randn(0, 0), ValueError, "logits has an empty axis"),
    (torch.randn(3, 4), ValueError, "logits must be a square"),
    (torch.randn(3), ValueError, "logits must have 2 axes"),
    (torch.randn(2, 3, 3), ValueError, "logits must have 2 axes"),
    (torch.ones(3, 3, dtype=torch.int64), TypeError, "logits must be a floating-point"),
    (torch.ones(3, 3, dtype=torch.bool), TypeError, "logits must be a floating-point"),
    (np.ones((3, 3)), TypeError, "logits must be a torch.Tensor"),
    ([[1.0, 0.0], [0.0, 1.0]], TypeError, "logits must be a torch.Tensor"),
]


@pytest.mark.parametrize(("logits", "error", "match"), BAD_LOGITS)
def test_bad_logits_name_the_argument(logits, error, match):
    with pytest.raises(error, match=match):
        rt.balanced_clip_loss(logits, 2)


@pytest.mark.parametrize(
    ("steps", "error", "match"),
    [
        (-1, ValueError, "steps must be >= 0"),
        (None, ValueError, "steps must be a fixed integer"),
        (math.inf, ValueError, "steps must be a fixed integer"),
        (1.5, TypeError, "steps must be a non-negative integer"),
        (True, TypeError, "steps must be a non-negative integer"),
        ("2", TypeError, "steps must be a non-negative integer"),
    ],
)
def test_bad_steps_name_the_argument(steps, error, match):
    with pytest.raises(error, match=match):
        rt.balanced_clip_loss(_logits(), steps)
    with pytest.raises(error, match=match):
        rt.balance_logits(_logits(), steps)


QUARTER = torch.full((5,), 0.2, dtype=torch.float64)


@pytest.mark.parametrize(
    ("targets", "match"),
    [
        ((torch.tensor([NAN, 0.25, 0.25, 0.25, 0.25]), QUARTER), r"targets\[0\] must be finite"),
        ((QUARTER, torch.tensor([INF, 0.0, 0.0, 0.0, 0.0])), r"targets\[1\] must be finite"),
        ((torch.tensor([0.0, 0.25, 0.25, 0.25, 0.25]), QUARTER), r"targets\[0\] must be > 0"),
        ((torch.tensor([-0.2, 0.3, 0.3, 0.3, 0.3]), QUARTER), r"targets\[0\] must be > 0"),
        ((QUARTER, torch.full((4,), 0.25)), r"targets\[1\] must have shape \(5,\)"),
        ((QUARTER, torch.full((5,), 0.3)), r"targets\[1\] sums to 1\.5"),
        (QUARTER, "targets must be None"),
        ((QUARTER,), "targets must be None"),
    ],
)
def test_bad_targets_name_the_argument(targets, match):
    with pytest.raises(ValueError, match=match):
        rt.balanced_clip_loss(_logits(), 2, targets)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"eps": 0.0}, "eps must be a positive finite number"),
        ({"eps": NAN}, "eps must be a positive finite number"),
        ({"eps": INF}, "eps must be a positive finite number"),
        ({"n_iter": 0}, "n_iter must be a positive integer"),
        ({"prior": torch.tensor([NAN, 0.5, 0.5])}, "prior must be finite"),
        ({"prior": torch.tensor([-0.5, 1.0, 0.5])}, "prior must be >= 0"),
        ({"prior": torch.tensor([0.5, 0.5])}, r"prior must have shape \(3,\)"),
    ],
)
def test_bad_sinkhorn_arguments_name_the_argument(kwargs, match):
    with pytest.raises(ValueError, match=match):
        rt.sinkhorn(torch.randn(4, 3), **kwargs)


def test_bad_scores_and_probs_name_the_argument():
    with pytest.raises(ValueError, match="scores must have 2 axes"):
        rt.sinkhorn(torch.randn(4))
    with pytest.raises(ValueError, match="probs has an empty axis"):
        rt.prior_matching_loss(torch.randn(0, 3))
    with pytest.raises(ValueError, match="direction must be one of"):
        rt.prior_matching_loss(torch.rand(4, 3), direction="both")


def test_one_pair_batch_has_zero_loss():
    for steps in STEPS:
        for checkpoint in (False, True):
            logits = torch.tensor([[3.0]], dtype=torch.float64, requires_grad=True)
            loss, grad = _loss_and_grad(logits, steps, checkpoint)
            assert loss == 0 and grad.abs().max() == 0


@pytest.mark.parametrize("checkpoint", [False, True], ids=["unrolled", "checkpointed"])
def test_non_contiguous_and_broadcast_logits_equal_their_contiguous_copy(checkpoint):
    base = _logits(6).T  # a transposed view
    expanded = torch.randn(1, 6, dtype=torch.float64).expand(6, 6)  # stride 0, not writable
    for view in (base, expanded, _logits(12)[::2, ::2]):
        leaf = view.detach().requires_grad_(True)
        copy = view.contiguous().detach().requires_grad_(True)
        loss, grad = _loss_and_grad(leaf, 3, checkpoint)
        ref, ref_grad = _loss_and_grad(copy, 3, checkpoint)
        torch.testing.assert_close(loss, ref, rtol=1e-14, atol=0)
        torch.testing.assert_close(grad, ref_grad, rtol=1e-12, atol=1e-15)


def test_large_finite_logits_do_not_overflow_where_the_loss_is_representable():
    """float32 logits of 1e30: the loss (about 1e30) is representable and matches float64."""
    gen = torch.Generator().manual_seed(3)
    logits64 = 1e30 * torch.randn(4, 4, generator=gen, dtype=torch.float64)
    for steps in STEPS:
        loss32 = rt.balanced_clip_loss(logits64.float(), steps)
        loss64 = rt.balanced_clip_loss(logits64.float().double(), steps)
        assert torch.isfinite(loss32)
        torch.testing.assert_close(loss32.double(), loss64, rtol=1e-6, atol=0)


# ------------------------------------------------------------------------------------------------
# Import without PyTorch
# ------------------------------------------------------------------------------------------------


def test_import_without_torch_names_the_extra():
    code = (
        "import sys\n"
        "sys.modules['torch'] = None  # makes 'import torch' fail as if it were not installed\n"
        "import raking\n"
        "try:\n"
        "    import raking.torch\n"
        "except ModuleNotFoundError as exc:\n"
        "    print(type(exc).__name__, exc.name, '|', exc)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    ).stdout
    assert out.startswith("ModuleNotFoundError torch |"), out
    assert 'pip install "raking-balance[torch]"' in out
    assert "raking.torch needs PyTorch" in out
