"""PMSN toy (raking.research.pmsn, gpu/pmsn_prior.py): generator, k-NN purity, training, script."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("matplotlib")
pd = pytest.importorskip("pandas")

from raking.research.pmsn import (  # noqa: E402
    TwoFeatureWorld,
    chance_purity,
    cluster_nmi,
    knn_purity,
    pmsn_loss,
    train,
)
from raking.torch import power_law_prior  # noqa: E402

SCRIPT = Path(__file__).resolve().parents[1] / "gpu" / "pmsn_prior.py"


def _script():
    spec = importlib.util.spec_from_file_location("pmsn_prior_script", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_generator_is_reproducible_and_seed_dependent():
    a = TwoFeatureWorld(seed=3).sample(500, seed=1)
    b = TwoFeatureWorld(seed=3).sample(500, seed=1)
    c = TwoFeatureWorld(seed=3).sample(500, seed=2)
    d = TwoFeatureWorld(seed=4).sample(500, seed=1)
    np.testing.assert_array_equal(a.x, b.x)
    np.testing.assert_array_equal(a.b, b.b)
    assert a.x.dtype == np.float32 and a.x.shape == (500, 32)
    assert not np.array_equal(a.x, c.x)
    assert not np.allclose(a.x, d.x)  # same labels (same sample seed), different world
    np.testing.assert_array_equal(a.a, d.a)


def test_class_frequencies_follow_the_power_law_and_uniform():
    data = TwoFeatureWorld(seed=0).sample(60_000, seed=0)
    freq_b = np.bincount(data.b, minlength=10) / data.b.size
    expected = np.arange(1, 11) ** -0.5
    expected /= expected.sum()
    np.testing.assert_allclose(expected, power_law_prior(10, 0.5).numpy())
    np.testing.assert_allclose(freq_b, expected, atol=0.006)  # ~4 binomial sds
    # the log-log slope is the exponent
    slope = np.polyfit(np.log(np.arange(1, 11)), np.log(freq_b), 1)[0]
    assert abs(slope + 0.5) < 0.05
    freq_a = np.bincount(data.a, minlength=10) / data.a.size
    np.testing.assert_allclose(freq_a, 0.1, atol=0.006)


def test_knn_purity_perfect_clusters_is_one_and_random_is_chance():
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(5), 40)
    centres = 10.0 * rng.standard_normal((5, 6))
    clustered = centres[labels] + 0.01 * rng.standard_normal((200, 6))
    assert knn_purity(clustered, labels, k=10) == 1.0
    # features independent of labels: purity ≈ chance = sum n_c (n_c-1) / (n(n-1))
    labels = rng.integers(4, size=3000)
    chance = chance_purity(labels)
    assert abs(chance - 0.25) < 0.01
    assert abs(knn_purity(rng.standard_normal((3000, 8)), labels, k=10) - chance) < 0.02
    # a label that only half the features encode lies between the two
    assert chance_purity(np.array([0, 0, 1, 1])) == pytest.approx(1 / 3)
    with pytest.raises(ValueError, match="n > k"):
        knn_purity(clustered[:5], labels[:5], k=10)


def test_cluster_nmi_extremes():
    labels = np.repeat(np.arange(4), 100)
    assert cluster_nmi(labels, labels) == pytest.approx(1.0)
    assert cluster_nmi((labels + 1) % 4, labels) == pytest.approx(1.0)  # permutation
    independent = np.tile(np.arange(4), 100)  # every (cluster, label) cell has 25 points
    assert cluster_nmi(independent, labels) == pytest.approx(0.0, abs=1e-12)
    assert 0.1 < cluster_nmi(labels // 2, labels) < 0.9  # coarser partition: in between
    assert cluster_nmi(np.zeros(400), labels) == 0.0


def test_losses_use_the_prior():
    scores = torch.randn(64, 10, generator=torch.Generator().manual_seed(0))
    uni = power_law_prior(10, 0.0, dtype=torch.float32)
    pl = power_law_prior(10, 0.5, dtype=torch.float32)
    for method in ("swav", "msn"):
        assert pmsn_loss(scores, scores, uni, method) != pmsn_loss(scores, scores, pl, method)
    with pytest.raises(ValueError, match="method"):
        pmsn_loss(scores, scores, uni, "dino")


@pytest.mark.parametrize("method", ["swav", "msn"])
def test_tiny_training_run_decreases_the_loss(method):
    torch.set_num_threads(1)
    data = TwoFeatureWorld(seed=0).sample(1000, seed=0)
    res = train(data, method=method, prior="power-law", steps=120, batch_size=128, lr=3e-3)
    assert len(res.losses) == 120 and np.all(np.isfinite(res.losses))
    assert np.mean(res.losses[-20:]) < np.mean(res.losses[:20]) - 0.1


def test_script_quick_writes_csv_png_pdf(tmp_path):
    args = ["--quick", "--seeds", "1", "--steps", "20", "--n", "600", "--n-eval", "200"]
    rc = _script().main([*args, "--device", "cpu", "--out", str(tmp_path)])
    assert rc == 0
    frame = pd.read_csv(tmp_path / "pmsn_prior.csv")
    trained = frame[frame.method.isin(["swav", "msn"])]
    assert len(trained) == 4 and set(trained.prior) == {"uniform", "power-law"}
    assert {"purity_a", "purity_b", "chance_a", "chance_b", "nmi_a", "nmi_b"} <= set(frame)
    assert frame[["purity_a", "purity_b"]].apply(lambda c: c.between(0, 1).all()).all()
    for ext in ("png", "pdf"):
        assert (tmp_path / f"pmsn_prior.{ext}").stat().st_size > 1000
