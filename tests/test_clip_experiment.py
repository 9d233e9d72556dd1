"""Zero-shot CLIP experiment: synthetic generator, loader, metric, training, script (CPU)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("matplotlib")
pytest.importorskip("pandas")

from raking.research.clip_experiment import (  # noqa: E402
    SyntheticWorld,
    authors_gap,
    authors_results,
    batch_loss,
    class_groups,
    final_table,
    gap_table,
    load_embeddings,
    make_heads,
    mean_per_class_recall,
    power_law_frequencies,
    recall_metrics,
    train_heads,
)

SCRIPT = Path(__file__).resolve().parents[1] / "gpu" / "clip_experiment.py"


def _script():
    spec = importlib.util.spec_from_file_location("clip_experiment_script", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_generator_is_reproducible_and_seed_dependent():
    world = SyntheticWorld(20, seed=3)
    a = world.sample(500, alpha=1.0, seed=1)
    b = SyntheticWorld(20, seed=3).sample(500, alpha=1.0, seed=1)
    c = world.sample(500, alpha=1.0, seed=2)
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x, y)
    assert not np.array_equal(a[0], c[0])
    assert a[0].shape == (500, 96) and a[1].shape == (500, 80) and a[2].shape == (500,)
    assert world.prompts.shape == (20, 80)
    assert not np.allclose(SyntheticWorld(20, seed=4).prompts, world.prompts)


def test_class_frequencies_follow_the_power_law():
    p = power_law_frequencies(10, 1.5)
    np.testing.assert_allclose(p[0] / p[3], 4.0**1.5)
    np.testing.assert_allclose(p.sum(), 1.0)
    n = 40_000
    _, _, labels = SyntheticWorld(10, seed=0).sample(n, alpha=1.5, seed=0)
    counts = np.bincount(labels, minlength=10)
    expected = n * p
    chi2 = float(((counts - expected) ** 2 / expected).sum())
    assert chi2 < 30.0  # 9 degrees of freedom: P(chi2 > 30) ≈ 4e-4
    # a uniform law is far off: the check can fail
    assert float(((counts - n / 10) ** 2 / (n / 10)).sum()) > 1_000


def test_mean_per_class_recall_by_hand():
    labels = np.array([0, 0, 0, 0, 1, 1, 2])
    preds = np.array([0, 0, 0, 1, 1, 0, 1])
    # class 0: 3/4, class 1: 1/2, class 2: 0/1; class 3 never appears and is not averaged
    assert mean_per_class_recall(labels, preds) == pytest.approx((0.75 + 0.5 + 0.0) / 3)
    assert mean_per_class_recall(labels, labels) == 1.0


# training counts 50, 30, 10, 5, 3, 1 for classes 0..5: head = {0, 1}, tail = {4, 5}
TRAIN = np.repeat(np.arange(6), [50, 30, 10, 5, 3, 1])


def test_class_groups_are_the_rarest_and_most_frequent_thirds():
    tail, head = class_groups(TRAIN, 6)
    np.testing.assert_array_equal(tail, [4, 5])
    np.testing.assert_array_equal(head, [0, 1])
    # ranks follow the counts, not the ids; an unseen class is the rarest; ties: lower id first
    shuffled = np.repeat([3, 0, 5, 1], [40, 20, 20, 5])
    tail, head = class_groups(shuffled, 6)
    np.testing.assert_array_equal(head, [0, 3])
    np.testing.assert_array_equal(tail, [2, 4])
    with pytest.raises(ValueError, match="fraction"):
        class_groups(TRAIN, 6, fraction=0.6)


def test_recall_metrics_by_hand():
    # 2 images per class; classes 0, 1 (head) always right, 2, 3 one of two, 4, 5 (tail) wrong
    labels = np.repeat(np.arange(6), 2)
    preds = np.array([0, 0, 1, 1, 2, 0, 3, 0, 0, 0, 0, 0])
    m = recall_metrics(labels, preds, TRAIN, 6)
    assert m["recall"] == pytest.approx((1 + 1 + 0.5 + 0.5 + 0 + 0) / 6)
    assert m["head_recall"] == 1.0
    assert m["tail_recall"] == 0.0
    assert m["weighted_acc"] == pytest.approx((50 + 30 + 0.5 * 10 + 0.5 * 5) / 99)
    assert m["acc1"] == pytest.approx(6 / 12)
    assert m["recall"] == pytest.approx(mean_per_class_recall(labels, preds))


def test_mean_recall_cannot_see_the_long_tail_but_the_new_metrics_do():
    # the same per-class recalls (head right, tail wrong) on a balanced and a long-tailed set:
    # mean per-class recall is identical, accuracy is not
    def evaluation(per_class):
        labels = np.repeat(np.arange(6), per_class)
        preds = np.where(labels <= 1, labels, (labels + 1) % 6)
        return recall_metrics(labels, preds, TRAIN, 6)

    balanced, tailed = evaluation([10] * 6), evaluation([50, 30, 10, 5, 3, 1])
    assert balanced["recall"] == pytest.approx(tailed["recall"]) == pytest.approx(2 / 6)
    assert balanced["tail_recall"] == tailed["tail_recall"] == 0.0
    assert balanced["weighted_acc"] == pytest.approx(80 / 99)
    assert tailed["acc1"] == pytest.approx(80 / 99) and balanced["acc1"] == pytest.approx(2 / 6)


def test_recall_metrics_skip_absent_tail_classes():
    labels, preds = np.array([0, 1, 1]), np.array([0, 1, 0])
    m = recall_metrics(labels, preds, TRAIN, 6)
    assert np.isnan(m["tail_recall"]) and m["head_recall"] == pytest.approx(0.75)


@pytest.mark.parametrize("alpha", [-0.5, float("nan"), float("inf")])
def test_bad_power_law_exponent_is_named(alpha):
    with pytest.raises(ValueError, match="alpha"):
        power_law_frequencies(10, alpha)
    with pytest.raises(ValueError, match="alpha"):
        SyntheticWorld(10).sample(10, alpha=alpha)


def test_script_rejects_a_bad_exponent_before_training(capsys):
    with pytest.raises(SystemExit):
        _script().main(["--alpha", "-1", "--out", "/nonexistent-never-written"])
    assert "alpha" in capsys.readouterr().err


def _frame():
    """Two seeds, k = 0 and 2, two checkpoints; k = 2 ahead by 0.3 then 0.1 (seed 1: +0.02)."""
    import pandas as pd

    rows = []
    for seed in (0, 1):
        for k in (0, 2):
            for it, base in ((10, 0.2), (20, 0.6)):
                gain = (0.3 if it == 10 else 0.1) + 0.02 * seed if k == 2 else 0.0
                value = base + gain
                rows.append(
                    {
                        "dataset": "balanced",
                        "batch_size": 8,
                        "steps": k,
                        "seed": seed,
                        "iteration": it,
                        "recall": value,
                        "tail_recall": value - 0.1,
                        "head_recall": value + 0.1,
                        "weighted_acc": value,
                        "acc1": value,
                    }
                )
    return pd.DataFrame(rows)


def test_gap_table_is_the_per_checkpoint_difference_over_seeds():
    gaps = gap_table(_frame()).set_index("iteration")
    assert gaps.loc[10, "recall"] == pytest.approx(0.31)
    assert gaps.loc[20, "tail_recall"] == pytest.approx(0.11)
    assert gaps.loc[20, "recall_min"] == pytest.approx(0.10)
    assert gaps.loc[20, "recall_max"] == pytest.approx(0.12)
    assert (gaps["seeds"] == 2).all()


def test_final_table_reports_the_last_checkpoint_and_the_best():
    final = final_table(_frame()).set_index("steps")
    assert final.loc[2, "recall"] == pytest.approx(0.71)  # iteration 20: 0.7 and 0.72
    assert final.loc[2, "recall_sd"] == pytest.approx(np.std([0.7, 0.72], ddof=1))
    assert final.loc[0, "recall_best"] == pytest.approx(0.6)


def test_authors_results_read_their_json_layout(tmp_path):
    import json

    values = {("joint", ""): 0.5, ("double", ""): 0.7, ("joint", "_b128"): 0.4}
    values[("double", "_b128")] = 0.5
    for (loss, batch), best in values.items():
        folder = tmp_path / f"{loss}_bert{batch}"
        folder.mkdir()
        for it, recall in ((500, best), (1000, best - 0.1)):
            metrics = {"acc1": recall, "mean_per_class_recall": recall}
            (folder / f"cifar10_{it}.json").write_text(json.dumps({"metrics": metrics}))
        (folder / "cifar10.json").write_text(json.dumps({"metrics": metrics}))  # not a checkpoint
    frame = authors_results(tmp_path)
    assert len(frame) == 8 and set(frame["batch_size"]) == {128, 512}
    assert (frame["recall_max"] >= frame["recall"]).all()
    (row,) = authors_gap(frame).to_dict("records")
    assert row["gap_512"] == pytest.approx(0.2) and row["gap_128"] == pytest.approx(0.1)
    assert row["first_512"] == pytest.approx(0.2) and row["first_128"] == pytest.approx(0.1)
    assert not row["larger_at_128"]
    with pytest.raises(ValueError, match="ronakdm/balancing"):
        authors_results(tmp_path / "cifar10")


def _write(folder: Path, n=50, d_img=6, d_txt=4, c=3, **override):
    rng = np.random.default_rng(0)
    arrays = {
        "image.npy": rng.standard_normal((n, d_img)).astype(np.float32),
        "text.npy": rng.standard_normal((n, d_txt)).astype(np.float32),
        "labels.npy": rng.integers(0, c, n),
        "prompts.npy": rng.standard_normal((c, d_txt)).astype(np.float32),
    }
    arrays.update(override)
    for name, arr in arrays.items():
        np.save(folder / name, arr)
    return arrays


def test_loader_round_trips_with_seeded_split(tmp_path):
    arrays = _write(tmp_path)
    data = load_embeddings(tmp_path)
    ((_name, (ev_image, ev_labels)),) = data.eval_sets.items()
    assert len(data.labels) == 45 and len(ev_labels) == 5
    np.testing.assert_array_equal(data.prompts, arrays["prompts.npy"])
    # every pair is in exactly one part, row by row
    both = np.concatenate([data.image, ev_image])
    order = np.lexsort(both.T)
    np.testing.assert_array_equal(
        both[order], arrays["image.npy"][np.lexsort(arrays["image.npy"].T)]
    )
    again = load_embeddings(tmp_path)
    np.testing.assert_array_equal(again.labels, data.labels)


def test_loader_uses_eval_files(tmp_path):
    _write(tmp_path)
    np.save(tmp_path / "eval_image.npy", np.ones((7, 6), dtype=np.float32))
    np.save(tmp_path / "eval_labels.npy", np.array([0, 1, 2, 0, 1, 2, 0]))
    data = load_embeddings(tmp_path, name="mine")
    assert len(data.labels) == 50
    assert data.eval_sets["mine"][0].shape == (7, 6)


@pytest.mark.parametrize(
    ("override", "file"),
    [
        ({"text.npy": np.zeros((49, 4), np.float32)}, "text.npy"),
        ({"prompts.npy": np.zeros((3, 5), np.float32)}, "prompts.npy"),
        ({"labels.npy": np.full(50, 3)}, "labels.npy"),
        ({"labels.npy": np.zeros((50, 1), np.int64)}, "labels.npy"),
        ({"image.npy": np.zeros(50, np.float32)}, "image.npy"),
    ],
)
def test_loader_rejects_mismatched_shapes(tmp_path, override, file):
    _write(tmp_path, **override)
    with pytest.raises(ValueError, match=file.replace(".", r"\.")):
        load_embeddings(tmp_path)


def test_loader_rejects_bad_eval_files(tmp_path):
    _write(tmp_path)
    np.save(tmp_path / "eval_image.npy", np.ones((7, 5), dtype=np.float32))
    with pytest.raises(ValueError, match=r"eval_labels\.npy"):
        load_embeddings(tmp_path)
    np.save(tmp_path / "eval_labels.npy", np.zeros(7, np.int64))
    with pytest.raises(ValueError, match=r"eval_image\.npy"):
        load_embeddings(tmp_path)


def test_training_with_clip_loss_lowers_the_loss():
    world = SyntheticWorld(10, seed=0)
    data = world.dataset(1_000, alpha=1.0, n_eval=200, seed=0)
    image, text = torch.as_tensor(data.image[:256]), torch.as_tensor(data.text[:256])
    with torch.no_grad():
        before = float(batch_loss(make_heads(96, 80, seed=1), image, text, steps=1))
    rows, heads = train_heads(data, steps=1, batch_size=128, iters=60, eval_every=30, seed=1)
    with torch.no_grad():
        after = float(batch_loss(heads, image, text, steps=1))
    assert after < 0.8 * before
    assert rows[-1]["train_loss"] < rows[0]["train_loss"]
    assert {r["iteration"] for r in rows} == {30, 60}
    assert all(r["recall_max"] >= r["recall"] for r in rows)


def test_heads_and_batch_order_do_not_depend_on_k():
    data = SyntheticWorld(5, seed=0).dataset(400, n_eval=100, seed=0)
    a = make_heads(96, 80, seed=2)
    b = make_heads(96, 80, seed=2)
    for p, q in zip(a.parameters(), b.parameters(), strict=True):
        assert torch.equal(p, q)
    r1, _ = train_heads(data, steps=1, batch_size=64, iters=10, eval_every=10, seed=2)
    r2, _ = train_heads(data, steps=1, batch_size=64, iters=10, eval_every=10, seed=2)
    assert [r["recall"] for r in r1] == [r["recall"] for r in r2]


def test_script_tiny_run_writes_outputs(tmp_path, capsys):
    out = tmp_path / "figs"
    argv = [
        "--quick",
        "--iters",
        "30",
        "--eval-every",
        "15",
        "--n",
        "2000",
        "--n-eval",
        "400",
        "--classes",
        "20",
        "--batch-sizes",
        "128",
        "--steps",
        "0",
        "2",
        "--out",
        str(out),
    ]
    assert _script().main(argv) == 0
    for suffix in ("csv", "png", "pdf"):
        assert (out / f"clip_experiment.{suffix}").stat().st_size > 0
    import pandas as pd

    frame = pd.read_csv(out / "clip_experiment.csv")
    assert set(frame["steps"]) == {0, 2} and set(frame["iteration"]) == {15, 30}
    assert frame["dataset"].nunique() == 2
    assert {"tail_recall", "head_recall", "weighted_acc", "caption_noise"} <= set(frame)
    gaps = pd.read_csv(out / "clip_experiment_gap.csv")
    assert set(gaps["iteration"]) == {15, 30}
    final = pd.read_csv(out / "clip_experiment_final.csv")
    assert len(final) == 4 and {"tail_recall_sd", "recall_best"} <= set(final)
    printed = capsys.readouterr().out
    assert "best mean per-class recall" in printed and "wall time" in printed


def test_script_caption_noise_grid(tmp_path):
    out = tmp_path / "figs"
    argv = ["--quick", "--iters", "4", "--eval-every", "2", "--n", "300", "--n-eval", "100"]
    argv += ["--classes", "6", "--batch-sizes", "32", "--steps", "0", "2"]
    assert _script().main([*argv, "--caption-noise", "0.5", "3", "--out", str(out)]) == 0
    import pandas as pd

    frame = pd.read_csv(out / "clip_experiment.csv")
    assert sorted(frame["caption_noise"].unique()) == [0.5, 3.0]
    gaps = pd.read_csv(out / "clip_experiment_gap.csv")
    assert len(gaps) == 2 * 2 * 2  # noise × dataset × checkpoint


def test_script_reads_embedding_folder(tmp_path):
    _write(tmp_path, n=300, c=4)
    out = tmp_path / "figs"
    argv = [
        "--embeddings",
        str(tmp_path),
        "--iters",
        "10",
        "--eval-every",
        "5",
        "--batch-sizes",
        "32",
        "--steps",
        "1",
        "--device",
        "cpu",
        "--out",
        str(out),
    ]
    assert _script().main(argv) == 0
    frame = __import__("pandas").read_csv(out / "clip_experiment.csv")
    assert list(frame["dataset"].unique()) == ["embeddings"]
