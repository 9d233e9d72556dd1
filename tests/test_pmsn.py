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
    paired_differences,
    pmsn_loss,
    summary_table,
    t_interval,
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


def test_salience_scales_only_b_and_keeps_the_original_world_at_one():
    base = TwoFeatureWorld(seed=2)
    same = TwoFeatureWorld(seed=2, salience=1.0)
    half = TwoFeatureWorld(seed=2, salience=0.5)
    np.testing.assert_array_equal(base.sample(300, seed=1).x, same.sample(300, seed=1).x)
    np.testing.assert_array_equal(half.centres_a, base.centres_a)
    np.testing.assert_allclose(half.centres_b, 0.5 * base.centres_b)
    np.testing.assert_array_equal(half.sample(300, seed=1).b, base.sample(300, seed=1).b)
    # B's raw-input purity falls with its salience and reaches chance at 0; A's does not fall
    purity = {}
    for s in (1.0, 0.3, 0.0):
        d = TwoFeatureWorld(seed=2, salience=s).sample(1500, seed=3)
        purity[s] = knn_purity(d.x, d.a), knn_purity(d.x, d.b)
    assert purity[1.0][1] > purity[0.3][1] + 0.2
    assert abs(purity[0.0][1] - chance_purity(d.b)) < 0.03
    assert purity[0.0][0] >= purity[1.0][0] - 0.01
    for bad in (-0.1, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="salience"):
            TwoFeatureWorld(salience=bad)


def test_t_interval_matches_the_student_t_formula():
    mean, half = t_interval([0.1, 0.2, 0.6])
    assert mean == pytest.approx(0.3)
    # t_{0.975, 2} = 4.302653; sd = sqrt(0.07)
    assert half == pytest.approx(4.302653 * np.sqrt(0.07) / np.sqrt(3), rel=1e-6)
    assert t_interval([0.4, np.nan])[0] == 0.4 and np.isnan(t_interval([0.4])[1])


def test_summary_and_paired_differences_group_by_salience_and_me_max_weight():
    rows = []
    for salience, seed in ((1.0, 0), (1.0, 1), (0.3, 0), (0.3, 1)):
        for prior, weight, value in (
            ("uniform", 1.0, 0.5 + seed),
            ("power-law", 1.0, 0.7 + 2 * seed),
            ("power-law", 3.0, 9.0),
        ):
            rows.append(
                {
                    "salience": salience,
                    "seed": seed,
                    "method": "msn",
                    "prior": prior,
                    "me_max_weight": weight,
                    "purity_a": 0.0,
                    "purity_b": value * salience,
                    "nmi_a": 0.0,
                    "nmi_b": 0.0,
                    "clusters_used": 10,
                }
            )
    frame = pd.DataFrame(rows)
    table = summary_table(frame)
    assert len(table) == 6 and set(table.n_seeds) == {2}
    remedy = table[(table.me_max_weight == 3.0) & (table.salience == 0.3)]
    assert remedy.purity_b.item() == pytest.approx(2.7) and remedy.purity_b_ci.item() == 0
    diff = paired_differences(frame)  # the remedy rows are left out
    assert diff.loc[(1.0, "msn", 0)] == pytest.approx(0.2)
    assert diff.loc[(1.0, "msn", 1)] == pytest.approx(1.2)
    assert diff.loc[(0.3, "msn", 1)] == pytest.approx(0.36)


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
    # MSN's me-max term is weighted; SwAV has none
    ce = float(pmsn_loss(scores, scores, pl, "msn", me_max_weight=0.0))
    one = float(pmsn_loss(scores, scores, pl, "msn"))
    three = float(pmsn_loss(scores, scores, pl, "msn", me_max_weight=3.0))
    assert three - ce == pytest.approx(3 * (one - ce), rel=1e-5) and one > ce
    swav = float(pmsn_loss(scores, scores, pl, "swav"))
    assert float(pmsn_loss(scores, scores, pl, "swav", me_max_weight=3.0)) == swav


@pytest.mark.parametrize("method", ["swav", "msn"])
def test_tiny_training_run_decreases_the_loss(method):
    torch.set_num_threads(1)
    data = TwoFeatureWorld(seed=0).sample(1000, seed=0)
    res = train(data, method=method, prior="power-law", steps=120, batch_size=128, lr=3e-3)
    assert len(res.losses) == 120 and np.all(np.isfinite(res.losses))
    assert np.mean(res.losses[-20:]) < np.mean(res.losses[:20]) - 0.1
    assert res.halfway == {}
    # the halfway evaluation leaves the training unchanged (it draws no random numbers)
    held_out = TwoFeatureWorld(seed=0).sample(200, seed=5)
    short = {"method": method, "prior": "power-law", "steps": 20, "batch_size": 128}
    plain, checked = train(data, **short), train(data, **short, halfway=held_out)
    assert checked.losses == plain.losses and plain.halfway == {}
    assert 0 <= checked.halfway["purity_b"] <= 1 and 1 <= checked.halfway["clusters_used"] <= 10


def test_script_quick_writes_csv_png_pdf(tmp_path):
    args = ["--quick", "--seeds", "1", "--steps", "20", "--n", "600", "--n-eval", "200"]
    rc = _script().main([*args, "--device", "cpu", "--out", str(tmp_path)])
    assert rc == 0
    frame = pd.read_csv(tmp_path / "pmsn_prior.csv")
    trained = frame[frame.method.isin(["swav", "msn"])]
    # per salience (quick: 1 and 0.3): 2 methods x 2 priors + MSN power-law at me-max 3
    assert len(trained) == 10 and set(trained.prior) == {"uniform", "power-law"}
    assert sorted(frame.salience.unique()) == [0.3, 1.0]
    msn = trained[trained.method == "msn"]
    assert sorted(msn.me_max_weight) == [1.0] * 4 + [3.0] * 2
    assert trained[trained.method == "swav"].me_max_weight.isna().all()
    refs = frame[~frame.method.isin(["swav", "msn"])]
    assert sorted(refs.method) == ["input"] * 2 + ["untrained"] * 2
    columns = {"purity_a", "purity_b", "chance_a", "chance_b", "nmi_a", "nmi_b"}
    assert columns | {"purity_b_half", "clusters_used", "clusters_used_half"} <= set(frame)
    assert trained.purity_b_half.between(0, 1).all() and refs.purity_b_half.isna().all()
    assert frame[["purity_a", "purity_b"]].apply(lambda c: c.between(0, 1).all()).all()
    for ext in ("png", "pdf"):
        assert (tmp_path / f"pmsn_prior.{ext}").stat().st_size > 1000
