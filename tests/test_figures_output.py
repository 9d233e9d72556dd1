"""Where generated files go, and that they are byte-reproducible.

A quick run (``raking simulate/figures --quick``, ``gpu/clip_experiment.py --quick``,
``gpu/pmsn_prior.py --quick``, ``simulations/curation.py --quick``) must not overwrite the
committed full-run figures in ``figures/``: by default it writes into ``figures/quick/``, which
git ignores. Saving the same figure twice must give the same bytes (no creation date or version
in the metadata), so a rerun leaves the committed figures unchanged in git.
"""

from __future__ import annotations

import importlib.util
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from raking.cli import main
from raking.plotting import FIGURES, QUICK_FIGURES, output_folder, save_figure
from raking.simulation.experiments import EXPERIMENTS, Options

ROOT = Path(__file__).resolve().parent.parent


def _load(path: Path):
    spec = importlib.util.spec_from_file_location(f"script_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def _figure():
    from matplotlib.figure import Figure

    fig = Figure(figsize=(3, 2), layout="constrained")
    ax = fig.subplots()
    ax.plot([0, 1, 2], [1, 3, 2], label=r"$\sigma_k^2$")
    ax.legend()
    fig.suptitle("byte-reproducible")
    return fig


def test_saving_the_same_figure_twice_gives_identical_bytes(tmp_path, monkeypatch):
    # matplotlib stamps the PDF with SOURCE_DATE_EPOCH (else the clock): two different dates
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1000000000")
    save_figure(_figure(), tmp_path / "a", "fig")
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    save_figure(_figure(), tmp_path / "b", "fig")
    first, second = _files(tmp_path / "a"), _files(tmp_path / "b")
    assert list(first) == ["fig.pdf", "fig.png"]
    assert first == second
    assert b"CreationDate" not in first["fig.pdf"]
    assert b"Matplotlib version" not in first["fig.png"]  # no version: stable across upgrades


def test_an_experiment_figure_is_byte_reproducible(tmp_path, monkeypatch):
    """Every experiment saves through save_figure; one stands for all (the others are slow)."""
    exp = EXPERIMENTS["mse_vs_k"]
    points = exp.grid(Options(quick=True, reps=20))
    seeds = np.random.SeedSequence(3).spawn(len(points))
    frame = pd.DataFrame(
        [r for p, s in zip(points, seeds, strict=True) for r in exp.point(p, s, "numba")]
    )
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1000000000")
    exp.plot(frame, tmp_path / "a")
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    exp.plot(frame, tmp_path / "b")
    assert _files(tmp_path / "a") == _files(tmp_path / "b")


def test_output_folder_defaults():
    assert output_folder(None, quick=False) == FIGURES == Path("figures")
    assert output_folder(None, quick=True) == QUICK_FIGURES == Path("figures/quick")
    assert output_folder("elsewhere", quick=True) == Path("elsewhere")


def test_quick_outputs_are_git_ignored():
    out = subprocess.run(
        ["git", "check-ignore", "figures/quick/dependence.png"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    if out.returncode == 128:
        pytest.skip("not a git checkout")
    assert out.returncode == 0, "figures/quick/ must be in .gitignore"


def _assert_quick_layout(cwd: Path, stem: str) -> None:
    """Everything under figures/quick/, nothing else in figures/."""
    assert [p.name for p in (cwd / "figures").iterdir()] == ["quick"]
    names = {p.name for p in (cwd / "figures" / "quick").iterdir()}
    assert {f"{stem}.csv", f"{stem}.png", f"{stem}.pdf"} <= names


def test_a_quick_simulate_run_does_not_write_into_figures(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["simulate", "mse_vs_k", "--quick", "--reps", "20"]) == 0
    _assert_quick_layout(tmp_path, "mse_vs_k")
    assert "figures/quick/mse_vs_k.csv" in capsys.readouterr().out


def test_a_quick_curation_run_does_not_write_into_figures(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert _load(ROOT / "simulations" / "curation.py").main(["--quick"]) == 0
    _assert_quick_layout(tmp_path, "curation")


def test_a_quick_pmsn_run_does_not_write_into_figures(tmp_path, monkeypatch):
    pytest.importorskip("torch")
    monkeypatch.chdir(tmp_path)
    script = _load(ROOT / "gpu" / "pmsn_prior.py")
    argv = ["--quick", "--steps", "2", "--n", "200", "--n-eval", "100", "--seeds", "1"]
    assert script.main([*argv, "--methods", "swav", "--device", "cpu"]) == 0
    _assert_quick_layout(tmp_path, "pmsn_prior")


def test_a_quick_clip_run_does_not_write_into_figures(tmp_path, monkeypatch):
    pytest.importorskip("torch")
    monkeypatch.chdir(tmp_path)
    script = _load(ROOT / "gpu" / "clip_experiment.py")
    argv = ["--quick", "--iters", "2", "--eval-every", "1", "--n", "300", "--n-eval", "100"]
    assert script.main([*argv, "--steps", "1", "--batch-sizes", "16", "--classes", "5"]) == 0
    _assert_quick_layout(tmp_path, "clip_experiment")


# ------------------------------------------------------------------------------------------------
# README numbers come from the committed CSVs, rounded as printed
# ------------------------------------------------------------------------------------------------

README = ROOT / "README.md"
FIG = ROOT / "figures"


def _readme_table(header_start: str) -> list[list[str]]:
    """The body rows (cells, stripped) of the README table whose header row starts so."""
    lines = README.read_text(encoding="utf-8").splitlines()
    (start,) = [i for i, line in enumerate(lines) if line.startswith(header_start)]
    rows = []
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        rows.append([cell.strip() for cell in line.strip().strip("|").split("|")])
    assert rows, header_start
    return rows


def _same(printed: str, value: float) -> None:
    """``printed`` is ``value`` rounded to the decimals printed (an integer: rounded to units)."""
    printed = printed.replace(",", "")
    decimals = len(printed.split(".")[1]) if "." in printed else 0
    assert printed == f"{value:.{decimals}f}", (printed, value)


def _same_interval(printed: str, value: float, half_width: float) -> None:
    centre, width = printed.split(" ± ")
    _same(centre, value)
    _same(width, half_width)


def test_readme_dependence_tables_match_the_csv():
    frame = pd.read_csv(FIG / "dependence.csv")
    frame = frame[frame["n"] == 1000]
    top_s, low_s = frame["s"].max(), frame["s"].min()

    def row(h_align, s, eps, estimator, k=None):
        sel = frame[
            (frame["h_align"] == h_align)
            & (frame["s"] == s)
            & (frame["eps"] == eps)
            & (frame["estimator"] == estimator)
        ]
        if k is not None:
            sel = sel[sel["k"] == k]
        (index,) = sel.index
        return sel.loc[index]

    table = _readme_table("| ε | MSE empirical |")
    assert [r[0] for r in table] == ["0", "0.01", "0.05", "0.1"]
    for cells in table:
        eps = float(cells[0])
        emp = row(1.0, top_s, eps, "empirical")
        bal = row(1.0, top_s, eps, "balanced", 8)
        _same(cells[1], emp["mse"])
        _same(cells[2], row(1.0, top_s, eps, "ipwi")["mse"])
        _same(cells[3], bal["mse"])
        _same(cells[4], bal["mse"] / emp["mse"])
        _same(cells[5], bal["bias"] ** 2 / bal["mse"])
    table = _readme_table("| h | additive share |")
    assert len(table) == 3
    for cells, a in zip(table, (1.0, 0.5, 0.0), strict=True):
        lo, hi = row(a, low_s, 0.0, "balanced", 8), row(a, top_s, 0.0, "balanced", 8)
        _same(cells[1], lo["additive_share"])
        _same(cells[2], row(a, low_s, 0.0, "empirical")["mse"])
        _same(cells[3], row(a, top_s, 0.0, "empirical")["mse"])
        _same(cells[4], lo["mse"])
        _same(cells[5], hi["mse"])
        _same_interval(cells[6], lo["mse_ratio"], 1.96 * lo["mse_ratio_se"])
        _same_interval(cells[7], hi["mse_ratio"], 1.96 * hi["mse_ratio_se"])
        gain = lo["mse_ratio"] / hi["mse_ratio"]
        rel = np.hypot(lo["mse_ratio_se"] / lo["mse_ratio"], hi["mse_ratio_se"] / hi["mse_ratio"])
        _same_interval(cells[8], gain, 1.96 * gain * rel)
    text = README.read_text(encoding="utf-8")
    theory = [row(a, low_s, 0.0, "balanced", 8)["theory_ratio"] for a in (1.0, 0.5, 0.0)]
    assert "(theory {:.3f}, {:.3f},\n  {:.3f})".format(*theory) in text
    top = row(1.0, top_s, 0.0, "balanced", 8)["mse_ratio"]
    low = row(1.0, low_s, 0.0, "balanced", 8)["mse_ratio"]
    assert f"so {1 / top:.1f}× = {1 / low:.1f}× (additivity) × {low / top:.2f}×" in text


def test_readme_theory_vs_mc_and_mse_vs_k_tables_match_the_csv():
    frame = pd.read_csv(FIG / "theory_vs_mc.csv").set_index(["n", "k"])
    for cells in _readme_table("| k | σ_k² | ratio n = 100 |"):
        k = int(cells[0])
        _same(cells[1], frame.loc[(100, k), "sigma2_k"])
        for cell, n in zip(cells[2:], (100, 1000, 10000), strict=True):
            _same(cell, frame.loc[(n, k), "ratio"])
    frame = pd.read_csv(FIG / "mse_vs_k.csv").set_index(["n", "k"])
    table = _readme_table("| k | σ_k² − σ_∞² | paired gap")
    for cells in table:
        k = int(cells[0])
        _same(cells[1], frame.loc[(1000, k), "gap_theory"])
        for cell, n in zip(cells[2:5], (1000, 10_000, 100_000), strict=True):
            _same_interval(cell, frame.loc[(n, k), "gap_mc"], 2 * frame.loc[(n, k), "gap_mc_se"])
        first = frame.loc[(1000, k)]
        _same_interval(cells[5], first["n_mse"] - first["sigma2_inf"], 2 * first["mc_se"])
    text = README.read_text(encoding="utf-8")
    slopes = [
        np.polyfit(np.log(g["n"]), np.log(g["mse"]), 1)[0]
        for _, g in pd.read_csv(FIG / "mse_vs_n.csv").groupby("k")
    ]
    assert f"slopes −{-max(slopes):.2f} to −{-min(slopes):.2f}" in text
    for n, label in ((1000, "1,000"), (10_000, "10,000"), (100_000, "100,000")):
        ratio = frame.loc[n, "ratio"]
        assert f"{ratio.min():.3f}–{ratio.max():.3f} at n = {label}" in text, n
    tail = frame.loc[1000].loc[8:]
    unpaired = (tail["n_mse"] - tail["sigma2_inf"]) / tail["gap_theory"]
    assert f"lies {unpaired.min():.1f}–{unpaired.max():.1f}× above σ_k² − σ_∞²" in text


def _entropy(p: np.ndarray) -> float:
    q = p[p > 0]
    return float(-(q * np.log(q)).sum())


def test_readme_curation_tables_match_the_csvs():
    keywords = pd.read_csv(FIG / "curation.csv")  # by decreasing count, ties by index
    n_top = int(np.ceil(0.1 * (keywords["count"] > 0).sum()))
    before, after = keywords["observed_share"].to_numpy(), keywords["balanced_share"].to_numpy()
    entropy, top = _readme_table("| | before (observed Q_Y) |")
    _same(entropy[1], _entropy(before))
    _same(entropy[2], _entropy(after))
    _same(top[1], before[:n_top].sum())
    _same(top[2], after[:n_top].sum())
    rules = pd.read_csv(FIG / "curation_rules.csv").set_index("rule")
    table = _readme_table("| rule | captions drawn |")
    names = ["matched", "notebook", "notebook, MetaCLIP's size", "metaclip"]
    assert len(table) == len(names)
    for cells, name in zip(table, names, strict=True):
        row = rules.loc[name]
        for cell, column in zip(cells[1:], ("draws", "distinct", "entropy"), strict=True):
            centre, *interval = cell.split(" [")
            _same(centre, row[column])
            if interval:
                lo, hi = interval[0].rstrip("]").split(", ")
                _same(lo, row[f"{column}_lo"])
                _same(hi, row[f"{column}_hi"])
            else:  # a single number: every curation gave the same
                assert row[f"{column}_lo"] == row[f"{column}_hi"]
    text = README.read_text(encoding="utf-8")
    assert f"total variation {rules.loc['metaclip', 'tv_notebook']:.3f} between" in text
    assert f"(each is {rules.loc['metaclip', 'tv_matched']:.2f} from uniform" in text
    assert f"{rules.loc['notebook', 'tv_matched']:.2f}" == "0.26"


_CLIP_METRICS = {
    "mean per-class recall": "recall",
    "tail recall (rarest 33 classes)": "tail_recall",
    "head recall (commonest 33 classes)": "head_recall",
    "accuracy weighted by training frequency": "weighted_acc",
    "accuracy of the set": "acc1",
}


def _same_gap(cell: str, row: pd.Series, metric: str) -> None:
    """``"+0.085 [+0.071, +0.093]"``: mean and range over seeds of a k = 2 − k = 0 gap."""
    centre, interval = cell.replace("−", "-").split(" [")
    lo, hi = interval.rstrip("]").split(", ")
    for printed, column in ((centre, metric), (lo, f"{metric}_min"), (hi, f"{metric}_max")):
        _same(printed.lstrip("+"), row[column])


def test_readme_clip_tables_match_the_csvs():
    old = pd.read_csv(FIG / "clip_experiment.csv")
    best = old.groupby(["dataset", "batch_size", "steps", "seed"])["recall"].max()
    table = _readme_table("| evaluation set | batch | k = 0 | k = 1 (CLIP) | k = 2 |")
    assert len(table) == 4
    for cells in table:
        dataset = "balanced" if cells[0] == "balanced classes" else cells[0].replace(" = ", "=")
        for cell, k in zip(cells[2:], (0, 1, 2), strict=True):
            per_seed = best.loc[(dataset, int(cells[1]), k)]
            _same_interval(cell, per_seed.mean(), per_seed.std())
    tables = (
        ("clip_longtail", "| evaluation set | "),
        ("clip_alpha2", "| evaluation set, a = 2 | "),
    )
    for stem, header in tables:
        final = pd.read_csv(FIG / f"{stem}_final.csv").set_index(["dataset", "steps"])
        gaps = pd.read_csv(FIG / f"{stem}_gap.csv")
        last = gaps[gaps.iteration == gaps.iteration.max()].set_index("dataset")
        table = _readme_table(f"{header}metric | k = 0 | k = 2 |")
        assert len(table) == 2 * len(_CLIP_METRICS)
        for cells in table:
            metric = _CLIP_METRICS[cells[1]]
            for cell, k in zip(cells[2:4], (0, 2), strict=True):
                row = final.loc[(cells[0], k)]
                _same_interval(cell, row[metric], row[f"{metric}_sd"])
            _same_gap(cells[4], last.loc[cells[0]], metric)
    final = pd.read_csv(FIG / "clip_longtail_final.csv").set_index(["dataset", "steps"])
    gaps = pd.read_csv(FIG / "clip_longtail_gap.csv")
    balanced = gaps[gaps.dataset == "balanced"].set_index("iteration")
    table = _readme_table("| iteration | mean per-class recall | tail recall |")
    assert len(table) == len(balanced)
    for cells in table:
        metrics = ("recall", "tail_recall", "head_recall", "weighted_acc")
        for cell, metric in zip(cells[1:], metrics, strict=True):
            _same_gap(cell, balanced.loc[int(cells[0])], metric)
    noise = pd.read_csv(FIG / "clip_noise_gap.csv")
    noise_final = pd.read_csv(FIG / "clip_noise_final.csv")
    table = _readme_table("| caption noise |")
    assert [c[0] for c in table] == ["0.5", "1.5", "3"]
    for cells in table:
        if cells[0] == "1.5":
            g, f = gaps, final.reset_index()
        else:
            g = noise[noise.caption_noise == float(cells[0])]
            f = noise_final[noise_final.caption_noise == float(cells[0])]
        g = g[g.dataset == "balanced"].set_index("iteration")
        f = f[f.dataset == "balanced"].set_index("steps")
        _same(cells[1], f.loc[0, "recall"])
        _same(cells[2], f.loc[2, "recall"])
        _same_gap(cells[3], g.loc[500], "recall")
        _same_gap(cells[4], g.loc[g.index.max()], "recall")
        _same_gap(cells[5], g.loc[g.index.max()], "tail_recall")
    authors = pd.read_csv(FIG / "clip_authors_gap.csv").set_index(["embedding", "dataset"])
    table = _readme_table("| text embedding | dataset | gap, m = 128 | gap, m = 512 |")
    assert len(table) == len(authors) == 9
    for cells in table:
        row = authors.loc[(cells[0], cells[1])]
        columns = ("gap_128", "gap_512", "first_128", "first_512")
        for cell, column in zip(cells[2:], columns, strict=True):
            _same(cell.replace("−", "-").lstrip("+"), row[column])
    text = README.read_text(encoding="utf-8")
    assert f"larger at batch 128 than at 512 in {int(authors['larger_at_128'].sum())} of 9" in text
    end = authors[["gap_128", "gap_512"]].to_numpy()
    grew = int((end > authors[["first_128", "first_512"]].to_numpy()).sum())
    assert f"than at their first checkpoint in {grew} of 18" in text


_PMSN_ROWS = {
    "raw input": ("input", "-", None),
    "untrained encoder": ("untrained", "-", None),
    "SwAV, uniform": ("swav", "uniform", None),
    "SwAV, power-law": ("swav", "power-law", None),
    "MSN, uniform": ("msn", "uniform", 1.0),
    "MSN, power-law": ("msn", "power-law", 1.0),
    "MSN, power-law, me-max 3": ("msn", "power-law", 3.0),
}


def test_readme_pmsn_tables_match_the_csv():
    pytest.importorskip("scipy")
    from raking.research.pmsn import paired_differences, t_interval

    frame = pd.read_csv(FIG / "pmsn_prior.csv")
    saliences = sorted(frame["salience"].unique(), reverse=True)

    def runs(label, salience):
        method, prior, weight = _PMSN_ROWS[label]
        sel = frame[(frame.method == method) & (frame.prior == prior)]
        if weight is not None:
            sel = sel[sel.me_max_weight == weight]
        return sel[sel.salience == salience].sort_values("seed")

    headers = ("| purity of B |", "| NMI(prototypes, B) |", "| purity of A |")
    for header, metric in zip(headers, ("purity_b", "nmi_b", "purity_a"), strict=True):
        table = _readme_table(header)
        assert len(table) >= 6, header
        for cells in table:
            assert len(cells) == 1 + len(saliences), cells
            for cell, s in zip(cells[1:], saliences, strict=True):
                _same_interval(cell, *t_interval(runs(cells[0], s)[metric]))
    diffs = [paired_differences(frame, metric) for metric in ("purity_b", "nmi_b")]
    table = _readme_table("| power-law − uniform | purity of B, per seed |")
    assert len(table) == 2 * len(saliences)
    for cells in table:
        method, salience = cells[0].split(", salience ")
        for d, (per_seed, mean) in zip(diffs, (cells[1:3], cells[3:5]), strict=True):
            d = d.loc[(float(salience), method.lower())].sort_index()
            per_seed = per_seed.split(" / ")
            assert len(per_seed) == len(d) == frame.seed.nunique(), cells
            for printed, value in zip(per_seed, d, strict=True):
                _same(printed.replace("−", "-").lstrip("+"), value)
            _same_interval(mean.replace("−", "-").lstrip("+"), *t_interval(d))
    table = _readme_table("| prototypes used (of 10), per seed |")
    assert len(table) == 3
    for cells in table:
        for cell, s in zip(cells[1:], saliences, strict=True):
            used = runs(cells[0], s)["clusters_used"].astype(int)
            assert cell == " ".join(map(str, used)), (cells[0], s)
    text = " ".join(README.read_text(encoding="utf-8").split())  # line breaks as spaces
    trained = frame[frame.method.isin(["swav", "msn"])]
    change = (trained.purity_b - trained.purity_b_half).abs()
    steps = int(trained.steps.iloc[0])
    assert f"after {steps // 2} and {steps} steps differs by at most {change.max():.3f}" in text
    assert f"(mean {change.mean():.3f})" in text
    assert f"chance {frame.chance_b.mean():.3f}" in text
    from raking.torch import power_law_prior

    head = -np.log(float(power_law_prior(10, 0.5)[0]))
    assert f"−log π₁ = {head:.2f} nats" in text
