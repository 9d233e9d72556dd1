"""Red-team variants for raking.torch: a loss's step count is named as a loss needs it."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
rt = pytest.importorskip("raking.torch")


@pytest.mark.parametrize("steps", [2.5, 2.0, "2", True])
@pytest.mark.parametrize(
    "call",
    [
        lambda s: rt.balanced_clip_loss(torch.randn(3, 3), s),
        lambda s: rt.BalancedClipLoss(steps=s),
        lambda s: rt.balance_logits(torch.randn(3, 3), steps=s),
    ],
)
def test_a_non_integer_step_count_of_a_loss_is_not_offered_none(call, steps):
    """The kernel's hint 'or steps=None to iterate to the tolerance' is refused by a loss."""
    with pytest.raises(TypeError, match=r"non-negative integer \(a fixed k for a loss\)") as info:
        call(steps)
    assert "None" not in str(info.value)
