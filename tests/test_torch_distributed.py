"""raking.torch under torch.distributed: two gloo processes equal one process on the whole batch.

One spawn runs every distributed path (BalancedClipLoss with and without ``local_loss``, k = 1
and 2, checkpointed; Sinkhorn with 3 and 5 rows per rank; prior matching) and saves its results;
the tests compare them with the single-process results on the concatenated batch.

Gradient convention (``theory/ssl.md`` §5): with ``gather_with_grad`` a rank gets the gradient of
the sum of all ranks' losses, i.e. ``world_size`` times the single-process gradient of its rows
(DDP's averaging divides it back); without, the gradient of its own loss through its own features.
"""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
dist = pytest.importorskip("torch.distributed")
mp = pytest.importorskip("torch.multiprocessing")

import raking.torch as rt  # noqa: E402

WORLD = 2
B_LOCAL, DIM = 4, 5
ROWS = (3, 5)  # unequal rows per rank for Sinkhorn and prior matching
K = 4
CLIP_CASES = [
    # (steps, local_loss, gather_with_grad, checkpoint)
    (1, False, True, False),
    (1, True, True, False),
    (1, False, False, False),
    (1, True, False, False),
    (2, False, True, False),
    (2, True, True, False),
    (2, True, True, True),
    (2, False, False, False),
    (2, True, False, False),
    (3, True, True, True),
]
DOUBLE = torch.float64


def _features():
    gen = torch.Generator().manual_seed(11)
    n = WORLD * B_LOCAL
    img = torch.nn.functional.normalize(torch.randn(n, DIM, generator=gen, dtype=DOUBLE), dim=-1)
    txt = torch.nn.functional.normalize(torch.randn(n, DIM, generator=gen, dtype=DOUBLE), dim=-1)
    return img, txt, torch.tensor(6.0, dtype=DOUBLE), torch.tensor(-1.5, dtype=DOUBLE)


def _scores_and_probs():
    gen = torch.Generator().manual_seed(12)
    scores = torch.randn(sum(ROWS), K, generator=gen, dtype=DOUBLE)
    probs = torch.softmax(2 * torch.randn(sum(ROWS), K, generator=gen, dtype=DOUBLE), dim=1)
    return scores, probs


def _clip_run(module, img, txt, scale, bias):
    leaves = [x.clone().requires_grad_() for x in (img, txt, scale)]
    loss = module(*leaves, logit_bias=bias)
    loss.backward()
    return loss.detach(), [x.grad for x in leaves]


def _worker(rank, init_file, out_dir):
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=WORLD)
    results = {}
    img, txt, scale, bias = _features()
    rows = slice(rank * B_LOCAL, (rank + 1) * B_LOCAL)
    for case in CLIP_CASES:
        steps, local_loss, with_grad, checkpoint = case
        module = rt.BalancedClipLoss(
            steps, local_loss=local_loss, gather_with_grad=with_grad, rank=rank,
            world_size=WORLD, checkpoint=checkpoint,
        )  # fmt: skip
        results[case] = _clip_run(module, img[rows], txt[rows], scale, bias)
    scores, probs = _scores_and_probs()
    start = sum(ROWS[:rank])
    mine = slice(start, start + ROWS[rank])
    prior = rt.power_law_prior(K, 0.7)
    results["sinkhorn"] = rt.sinkhorn(scores[mine], prior, eps=0.3, n_iter=5)
    for direction in ("forward", "reverse"):
        p = probs[mine].clone().requires_grad_()
        loss = rt.prior_matching_loss(p, prior, direction)
        loss.backward()
        results[direction] = (loss.detach(), p.grad)
    torch.save(results, f"{out_dir}/rank{rank}.pt")
    dist.destroy_process_group()


@pytest.fixture(scope="module")
def ranks(tmp_path_factory):
    path = tmp_path_factory.mktemp("dist")
    mp.spawn(_worker, args=(str(path / "init"), str(path)), nprocs=WORLD, join=True)
    return [torch.load(path / f"rank{r}.pt", weights_only=False) for r in range(WORLD)]


def _close(actual, expected):
    torch.testing.assert_close(actual, expected, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("case", CLIP_CASES, ids=str)
def test_clip_loss_equals_single_process_on_the_whole_batch(ranks, case):
    steps, local_loss, with_grad, _ = case
    img, txt, scale, bias = _features()
    loss, (g_img, g_txt, g_scale) = _clip_run(rt.BalancedClipLoss(steps), img, txt, scale, bias)
    losses = [r[case][0] for r in ranks]
    if local_loss:  # each rank's loss is the mean over its own rows
        _close(sum(losses) / WORLD, loss)
    else:
        for value in losses:
            _close(value, loss)
    if local_loss and not with_grad:
        return  # gradients of each rank's own loss with other ranks held constant (open_clip)
    factor = WORLD if with_grad else 1
    for rank, result in enumerate(ranks):
        rows = slice(rank * B_LOCAL, (rank + 1) * B_LOCAL)
        grads = result[case][1]
        _close(grads[0], factor * g_img[rows])
        _close(grads[1], factor * g_txt[rows])
    # DDP averages the scale's gradient over ranks: the single-process gradient when exact.
    if with_grad:
        _close(sum(r[case][1][2] for r in ranks) / WORLD, g_scale)


def test_sinkhorn_with_unequal_rows_equals_single_process(ranks):
    scores, _ = _scores_and_probs()
    expected = rt.sinkhorn(scores, rt.power_law_prior(K, 0.7), eps=0.3, n_iter=5)
    _close(torch.cat([r["sinkhorn"] for r in ranks]), expected)
    assert [r["sinkhorn"].shape[0] for r in ranks] == list(ROWS)


@pytest.mark.parametrize("direction", ["forward", "reverse"])
def test_prior_matching_with_unequal_rows_equals_single_process(ranks, direction):
    _, probs = _scores_and_probs()
    p = probs.clone().requires_grad_()
    loss = rt.prior_matching_loss(p, rt.power_law_prior(K, 0.7), direction)
    loss.backward()
    for r in ranks:
        _close(r[direction][0], loss.detach())
    _close(torch.cat([r[direction][1] for r in ranks]), WORLD * p.grad)
