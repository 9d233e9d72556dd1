r"""PMSN toy: does a uniform cluster prior suppress a long-tailed feature? (``theory.md`` §6).

Assran et al. (2023), "The hidden uniform cluster prior in self-supervised learning", argue that
SwAV / MSN-style objectives (balanced Sinkhorn codes, mean-entropy maximisation) carry a hidden
*uniform* cluster prior: with data that have a feature with uniformly distributed classes and a
"hidden" feature whose classes follow a power law, the learned representation keeps the uniform
feature and suppresses the long-tailed one; matching the prior to the power law (PMSN) keeps it.
This module holds the reusable parts of that toy; ``gpu/pmsn_prior.py`` runs the grid.

Design, chosen once before any run (documented assumptions, not the paper's exact toy):

- **Data** (:class:`TwoFeatureWorld`). Feature A has ``n_a = 10`` uniformly distributed classes,
  feature B has ``n_b = 10`` classes with :math:`p_c \propto c^{-0.5}` (the spec's exponent;
  frequencies from :func:`raking.torch.power_law_prior`). Each class has a random centre
  :math:`\mu^A_a, \mu^B_b \sim N(0, I_8)`; the latent
  :math:`h = (\mu^A_a, s\,\mu^B_b) + 0.3\,\xi` (16-d) goes through a fixed random tanh MLP
  16 → 64 → 32, plus output noise 0.05. A and B are independent. The **salience** :math:`s`
  (added after the first runs, issue 16)
  scales B's signal relative to A's (:math:`s = 1`: equally salient, the original toy, in which
  B is as easy to read off the raw input as A, so nothing can push it out; a sweep over
  :math:`s` finds where training suppresses B).
- **Views**: Gaussian noise (sd 0.3) and random masking (each coordinate zeroed with
  probability 0.3), drawn independently for the two views.
- **Model** (:class:`ProtoNet`): encoder MLP 32 → 128 → 128 → 32 (the representation z; its
  L2-normalised version is evaluated), K = 10 learnable L2-normalised prototypes (K = number
  of classes of each feature, so the K clusters can follow one feature but not both), scores
  :math:`\cos(z, c_k)`.
- **Losses** (:func:`pmsn_loss`), prior :math:`\pi` = uniform or ``power_law_prior(K, 0.5)``:
  ``"swav"``: codes ``sinkhorn(scores_other_view, prior, eps=0.05, n_iter=3)``, swapped
  prediction cross-entropy with temperature 0.1, symmetrised. ``"msn"``: target = the other
  view's softmax sharpened with temperature 0.025 (MSN's target temperature), no gradient;
  anchor = softmax with temperature 0.1; cross-entropy + ``prior_matching_loss(mean anchor
  probs, prior)`` with weight :math:`\lambda` (MSN's me-max weight, 1 by default; under the
  power-law prior the forward KL rewards mass on the head prototypes and MSN partly collapses,
  which a larger :math:`\lambda` prevents). Simplification: one network with stop-gradient
  instead of MSN's EMA target encoder and masked ViT.
- **Training**: Adam, lr :math:`10^{-3}`, batch 256, a fixed number of steps.
- **Metric** (:func:`knn_purity`): on held-out clean samples, for each query the fraction of its
  k = 10 nearest neighbours (cosine, query excluded) that share the query's class, averaged;
  chance (:func:`chance_purity`) is :math:`\sum_c n_c (n_c - 1) / (n (n - 1))`. Diagnostic:
  the normalised mutual information (:func:`cluster_nmi`) of the argmax-prototype assignment
  with A and with B, i.e. which feature the K clusters follow, and the prototypes used (those
  holding more than 1% of the held-out points). Intervals over seeds: :func:`t_interval`.
"""

from __future__ import annotations

import itertools
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import torch

__all__ = [
    "PRIORS",
    "ProtoNet",
    "TrainResult",
    "TwoFeatureData",
    "TwoFeatureWorld",
    "augment",
    "chance_purity",
    "cluster_nmi",
    "evaluate",
    "knn_purity",
    "make_prior",
    "paired_differences",
    "plot_pmsn",
    "pmsn_loss",
    "run_grid",
    "summary_table",
    "t_interval",
    "train",
]

PRIORS = ("uniform", "power-law")
TAU_SWAV, TAU_TARGET, EPS, N_ITER = 0.1, 0.025, 0.05, 3


@dataclass(frozen=True)
class TwoFeatureData:
    """Samples ``x (n, d)`` float32 with the classes of feature A ``a (n,)`` and B ``b (n,)``."""

    x: np.ndarray
    a: np.ndarray
    b: np.ndarray


class TwoFeatureWorld:
    r"""Seeded two-feature world: uniform feature A, power-law feature B, random nonlinear map.

    The world (class centres, map) depends only on ``seed``; samples on the seed given to
    :meth:`sample`. See the module docstring for the defaults and why.
    """

    def __init__(
        self,
        *,
        n_a: int = 10,
        n_b: int = 10,
        exponent: float = 0.5,
        seed: int = 0,
        centre_dim: int = 8,
        dim: int = 32,
        sigma_latent: float = 0.3,
        sigma_out: float = 0.05,
        salience: float = 1.0,
    ) -> None:
        from raking.torch import power_law_prior

        if not (math.isfinite(salience) and salience >= 0):
            raise ValueError(
                f"salience must be a finite number >= 0 (1: B as salient as A), got {salience!r}."
            )
        rng = np.random.default_rng(np.random.SeedSequence([seed, 9_001]))
        self.n_a, self.n_b, self.exponent = n_a, n_b, exponent
        self.salience = salience
        self.freq_b = power_law_prior(n_b, exponent).numpy()
        self.centres_a = rng.standard_normal((n_a, centre_dim))
        # B's signal scaled by the salience; the same draws at every salience, so a sweep
        # changes only how far apart B's centres are (1: the original, equally salient world)
        self.centres_b = salience * rng.standard_normal((n_b, centre_dim))
        self.sigma = (sigma_latent, sigma_out)
        dims = (2 * centre_dim, 64, dim)
        self.layers = [
            (rng.standard_normal((i, o)) / math.sqrt(i), 0.1 * rng.standard_normal(o))
            for i, o in itertools.pairwise(dims)
        ]

    def sample(self, n: int, *, seed: int = 0) -> TwoFeatureData:
        """Draw ``n`` samples (A uniform, B power law, independent)."""
        rng = np.random.default_rng(np.random.SeedSequence([seed, 9_002]))
        a = rng.integers(self.n_a, size=n)
        b = rng.choice(self.n_b, size=n, p=self.freq_b)
        h = np.concatenate([self.centres_a[a], self.centres_b[b]], axis=1)
        h = h + self.sigma[0] * rng.standard_normal(h.shape)
        for w, bias in self.layers:
            h = np.tanh(h @ w + bias)
        x = h + self.sigma[1] * rng.standard_normal(h.shape)
        return TwoFeatureData(x.astype(np.float32), a.astype(np.int64), b.astype(np.int64))


def augment(
    x: torch.Tensor, generator: torch.Generator, *, noise: float = 0.3, mask: float = 0.3
) -> torch.Tensor:
    """One random view: Gaussian noise (sd ``noise``) and coordinates zeroed w.p. ``mask``."""
    import torch

    eps = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
    keep = torch.rand(x.shape, generator=generator, device=x.device) >= mask
    return (x + noise * eps) * keep


def chance_purity(labels: np.ndarray) -> float:
    r"""Expected purity of random neighbours: :math:`\sum_c n_c (n_c-1) / (n(n-1))`."""
    counts = np.bincount(np.asarray(labels)).astype(np.float64)
    n = counts.sum()
    return float((counts * (counts - 1)).sum() / (n * (n - 1)))


def knn_purity(features: np.ndarray, labels: np.ndarray, k: int = 10) -> float:
    """Mean fraction of each point's ``k`` cosine nearest neighbours in its class."""
    f = np.asarray(features, dtype=np.float64)
    labels = np.asarray(labels)
    if f.shape[0] != labels.shape[0] or not 1 <= k < f.shape[0]:
        raise ValueError(f"need n > k >= 1 and matching lengths, got {f.shape}, {labels.shape}.")
    f = f / np.maximum(np.linalg.norm(f, axis=1, keepdims=True), 1e-12)
    sim = f @ f.T
    np.fill_diagonal(sim, -np.inf)
    nn = np.argpartition(-sim, k, axis=1)[:, :k]
    return float((labels[nn] == labels[:, None]).mean())


def cluster_nmi(clusters: np.ndarray, labels: np.ndarray) -> float:
    r"""Normalised mutual information :math:`I / \sqrt{H_1 H_2}` of two labelings (0: constant)."""
    _, ci = np.unique(np.asarray(clusters), return_inverse=True)
    _, li = np.unique(np.asarray(labels), return_inverse=True)
    joint = np.zeros((ci.max() + 1, li.max() + 1))
    np.add.at(joint, (ci, li), 1.0)
    joint /= joint.sum()
    pc, pl = joint.sum(1), joint.sum(0)
    nz = joint > 0
    mi = float((joint[nz] * np.log(joint[nz] / np.outer(pc, pl)[nz])).sum())
    hc, hl = -(pc * np.log(pc)).sum(), -(pl * np.log(pl)).sum()
    return mi / math.sqrt(hc * hl) if hc > 0 and hl > 0 else 0.0


def make_prior(name: str, n_prototypes: int) -> torch.Tensor:
    """``"uniform"`` or ``"power-law"`` (:func:`raking.torch.power_law_prior` with 0.5)."""
    from raking.torch import power_law_prior

    if name not in PRIORS:
        raise ValueError(f"prior must be one of {PRIORS}, got {name!r}.")
    return power_law_prior(n_prototypes, 0.0 if name == "uniform" else 0.5)


def _protonet_class() -> type:
    import torch

    class _ProtoNet(torch.nn.Module):
        def __init__(self, d_in: int, n_prototypes: int, hidden: int, dim: int) -> None:
            super().__init__()
            self.encoder = torch.nn.Sequential(
                torch.nn.Linear(d_in, hidden),
                torch.nn.ReLU(),
                torch.nn.Linear(hidden, hidden),
                torch.nn.ReLU(),
                torch.nn.Linear(hidden, dim),
            )
            self.prototypes = torch.nn.Parameter(torch.randn(n_prototypes, dim))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            z = torch.nn.functional.normalize(self.encoder(x), dim=1)
            c = torch.nn.functional.normalize(self.prototypes, dim=1)
            return z @ c.T

    return _ProtoNet


def ProtoNet(
    d_in: int, n_prototypes: int = 10, *, hidden: int = 128, dim: int = 32, seed: int = 0
) -> torch.nn.Module:
    """Encoder MLP ``d_in → hidden → hidden → dim`` and K prototypes; forward gives cosines."""
    import torch

    torch.manual_seed(seed)
    return _protonet_class()(d_in, n_prototypes, hidden, dim)


def pmsn_loss(
    scores1: torch.Tensor,
    scores2: torch.Tensor,
    prior: torch.Tensor,
    method: str,
    *,
    me_max_weight: float = 1.0,
) -> torch.Tensor:
    r"""Symmetrised SwAV (``"swav"``) or MSN-style (``"msn"``) loss of two views' cosines.

    MSN: cross-entropy to the other view's sharpened target plus
    ``me_max_weight`` :math:`\cdot\,\mathrm{KL}(\bar p \,\|\, \pi)` (MSN's me-max weight
    :math:`\lambda`; 1 in MSN); SwAV ignores ``me_max_weight``.
    """
    import torch

    from raking.torch import prior_matching_loss, sinkhorn

    logp1 = torch.log_softmax(scores1 / TAU_SWAV, dim=1)
    logp2 = torch.log_softmax(scores2 / TAU_SWAV, dim=1)
    if method == "swav":
        q1 = sinkhorn(scores1, prior, eps=EPS, n_iter=N_ITER).to(logp1.dtype)
        q2 = sinkhorn(scores2, prior, eps=EPS, n_iter=N_ITER).to(logp1.dtype)
        return -0.5 * ((q2 * logp1).sum(1).mean() + (q1 * logp2).sum(1).mean())
    if method == "msn":
        with torch.no_grad():
            t1 = torch.softmax(scores1 / TAU_TARGET, dim=1)
            t2 = torch.softmax(scores2 / TAU_TARGET, dim=1)
        ce = -0.5 * ((t2 * logp1).sum(1).mean() + (t1 * logp2).sum(1).mean())
        reg = 0.5 * (
            prior_matching_loss(logp1.exp(), prior) + prior_matching_loss(logp2.exp(), prior)
        )
        return ce + me_max_weight * reg.to(ce.dtype)
    raise ValueError(f"method must be 'swav' or 'msn', got {method!r}.")


@dataclass
class TrainResult:
    """A trained model, its per-step loss, the training time (seconds), halfway metrics.

    ``halfway``: :func:`evaluate`'s metrics after half the steps when asked (convergence).
    """

    model: Any
    losses: list[float] = field(default_factory=list)
    seconds: float = 0.0
    halfway: dict[str, float] = field(default_factory=dict)


def train(
    data: TwoFeatureData,
    *,
    method: str,
    prior: str,
    seed: int = 0,
    steps: int = 2000,
    batch_size: int = 256,
    lr: float = 1e-3,
    n_prototypes: int = 10,
    me_max_weight: float = 1.0,
    halfway: TwoFeatureData | None = None,
    device: str = "cpu",
) -> TrainResult:
    """Train :func:`ProtoNet` with :func:`pmsn_loss` on random batches of two views.

    With ``halfway`` data, the model after ``steps // 2`` steps is evaluated on them
    (:func:`evaluate`; its time is not counted in ``seconds``).
    """
    import torch

    start = time.perf_counter()
    model = ProtoNet(data.x.shape[1], n_prototypes, seed=seed).to(device)
    pi = make_prior(prior, n_prototypes).to(device=device, dtype=torch.float32)
    x = torch.as_tensor(data.x, device=device)
    gen = torch.Generator(device=device).manual_seed(10_000 + seed)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    losses, mid, paused = [], {}, 0.0
    for step in range(steps):
        if halfway is not None and step == steps // 2:
            tic = time.perf_counter()
            mid = evaluate(model.eval(), halfway)
            model.train()
            paused = time.perf_counter() - tic
        idx = torch.randint(x.shape[0], (batch_size,), generator=gen, device=device)
        xb = x[idx]
        views = model(augment(xb, gen)), model(augment(xb, gen))
        loss = pmsn_loss(*views, pi, method, me_max_weight=me_max_weight)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(loss.detach())
    losses = [float(v) for v in torch.stack(losses).cpu()] if losses else []
    return TrainResult(model.eval(), losses, time.perf_counter() - start - paused, mid)


def evaluate(model: Any, data: TwoFeatureData, *, k: int = 10) -> dict[str, float]:
    """k-NN purity of A and B in the (L2-normalised) representation, cluster usage, chances."""
    import torch

    device = next(model.parameters()).device
    with torch.no_grad():
        x = torch.as_tensor(data.x, device=device)
        z = model.encoder(x).cpu().numpy()
        assign = model(x).argmax(1).cpu().numpy()
    usage = np.bincount(assign, minlength=model.prototypes.shape[0])
    usage = np.sort(usage)[::-1] / usage.sum()
    return {
        "purity_a": knn_purity(z, data.a, k),
        "purity_b": knn_purity(z, data.b, k),
        "chance_a": chance_purity(data.a),
        "chance_b": chance_purity(data.b),
        "nmi_a": cluster_nmi(assign, data.a),
        "nmi_b": cluster_nmi(assign, data.b),
        "clusters_used": int((usage > 0.01).sum()),
        "top_cluster_mass": float(usage[0]),
    }


def run_grid(
    *,
    seeds: Sequence[int],
    saliences: Sequence[float] = (1.0,),
    methods: Sequence[str] = ("swav", "msn"),
    steps: int = 2000,
    n_train: int = 10_000,
    n_eval: int = 2_000,
    remedy_weights: Sequence[float] = (),
    device: str = "cpu",
    log: Any = None,
) -> list[dict[str, Any]]:
    """One row per salience × seed × method × prior, plus reference rows (raw input, untrained).

    The seed sets the world, the samples, the initialisation and the views; all runs of a seed
    share the world's draws (B's centres scaled by the salience), the data draws and the initial
    network. ``remedy_weights``: extra MSN runs under the power-law prior with these me-max
    weights (column ``me_max_weight``; 1 in every other MSN row, NaN for SwAV and references).
    Columns ``*_half``: the same metrics after ``steps // 2`` steps (convergence check).
    """
    runs = [(m, p, 1.0) for m, p in itertools.product(methods, PRIORS)]
    if "msn" in methods:
        runs += [("msn", "power-law", float(w)) for w in remedy_weights]
    rows: list[dict[str, Any]] = []
    for salience, seed in itertools.product(saliences, seeds):
        world = TwoFeatureWorld(seed=seed, salience=salience)
        data, held_out = world.sample(n_train, seed=seed), world.sample(n_eval, seed=seed + 7_919)
        base = {
            "seed": seed,
            "salience": salience,
            "steps": steps,
            "n_train": n_train,
            "n_eval": n_eval,
        }
        ref = evaluate(ProtoNet(data.x.shape[1], seed=seed), held_out)
        none = {"me_max_weight": np.nan, "seconds": 0.0}
        rows.append({**base, "method": "untrained", "prior": "-", **ref, **none})
        raw = {
            **ref,
            "purity_a": knn_purity(held_out.x, held_out.a),
            "purity_b": knn_purity(held_out.x, held_out.b),
        }
        raw.update(nmi_a=np.nan, nmi_b=np.nan, clusters_used=np.nan, top_cluster_mass=np.nan)
        rows.append({**base, "method": "input", "prior": "-", **raw, **none})
        for method, prior, weight in runs:
            res = train(
                data,
                method=method,
                prior=prior,
                seed=seed,
                steps=steps,
                me_max_weight=weight,
                halfway=held_out,
                device=device,
            )
            row = {
                **base,
                "method": method,
                "prior": prior,
                "me_max_weight": weight if method == "msn" else np.nan,
                **evaluate(res.model, held_out),
            }
            row.update({f"{k}_half": res.halfway[k] for k in _HALF})
            row.update(
                seconds=res.seconds,
                loss_first=float(np.mean(res.losses[:50])),
                loss_last=float(np.mean(res.losses[-50:])),
            )
            rows.append(row)
            if log is not None:
                log(
                    f"salience {salience:<4} seed {seed} {method:4s} {prior:9s} "
                    f"{f'me-max {weight:g}' if method == 'msn' else '':9s} "
                    f"purity A {row['purity_a']:.3f} B {row['purity_b']:.3f} "
                    f"clusters {row['clusters_used']}  ({res.seconds:.1f} s)"
                )
    return rows


_HALF = ("purity_a", "purity_b", "nmi_b", "clusters_used")
GROUP = ["salience", "method", "prior", "me_max_weight"]


def t_interval(values: Any, level: float = 0.95) -> tuple[float, float]:
    r"""Mean and half-width of the Student-t interval over seeds: :math:`t_{n-1} s / \sqrt n`.

    NaN half-width for a single value.
    """
    from scipy.stats import t

    v = np.asarray(values, dtype=np.float64)
    v = v[~np.isnan(v)]
    if v.size == 0:
        return math.nan, math.nan
    if v.size == 1:
        return float(v[0]), math.nan
    half = t.ppf(0.5 + level / 2, v.size - 1) * v.std(ddof=1) / math.sqrt(v.size)
    return float(v.mean()), float(half)


def summary_table(frame: Any) -> Any:
    """Mean and 95% t-interval half-width over seeds per salience × method × prior × me-max.

    Columns ``<metric>`` (mean) and ``<metric>_ci`` (half-width) for the purities and NMIs of
    A and B and the clusters used, plus ``n_seeds``.
    """
    import pandas as pd

    metrics = ["purity_a", "purity_b", "nmi_a", "nmi_b", "clusters_used"]
    out = []
    for key, g in frame.groupby(GROUP, sort=False, dropna=False):
        row = dict(zip(GROUP, key, strict=True))
        for m in metrics:
            row[m], row[f"{m}_ci"] = t_interval(g[m])
        row["n_seeds"] = g["seed"].nunique()
        out.append(row)
    return pd.DataFrame(out)


def paired_differences(frame: Any, metric: str = "purity_b") -> Any:
    """Per seed, power-law minus uniform prior (me-max weight 1) by salience and method."""
    trained = frame[frame.method.isin(["swav", "msn"])]
    trained = trained[trained.me_max_weight.fillna(1.0) == 1.0]
    wide = trained.pivot_table(index=["salience", "method", "seed"], columns="prior", values=metric)
    return (wide["power-law"] - wide["uniform"]).rename(f"{metric}_diff")


def _bars(ax: Any, frame: Any, groups: list, metric: str, chance: bool) -> None:
    width = 0.38
    for j, (feat, color) in enumerate((("a", "tab:blue"), ("b", "tab:orange"))):
        means, halves = [], []
        for m, p in groups:
            v = frame[(frame.method == m) & (frame.prior == p)][f"{metric}_{feat}"]
            mean, half = t_interval(v)
            means.append(mean)
            halves.append(0.0 if math.isnan(half) else half)
        label = "A (uniform classes)" if feat == "a" else "B (power law, hidden)"
        pos = np.arange(len(groups)) + (j - 0.5) * width
        ax.bar(pos, means, width, yerr=halves, color=color, label=label, capsize=3)
        if chance:
            ax.axhline(frame[f"chance_{feat}"].mean(), color=color, ls=":", lw=1)
    ax.set_xticks(np.arange(len(groups)), [f"{m}\n{p}" for m, p in groups], fontsize=8)
    ax.set_ylim(0, 1)
    ax.grid(axis="y", alpha=0.3)


_STYLE = {
    ("input", "-"): ("k", ":", "raw input"),
    ("untrained", "-"): ("0.5", ":", "untrained encoder"),
    ("swav", "uniform"): ("tab:blue", "-", "SwAV, uniform"),
    ("swav", "power-law"): ("tab:blue", "--", "SwAV, power-law"),
    ("msn", "uniform"): ("tab:red", "-", "MSN, uniform"),
    ("msn", "power-law"): ("tab:red", "--", "MSN, power-law"),
}


def _salience_panel(ax: Any, frame: Any) -> None:
    """Purity of B against salience per method × prior (me-max weight: 1 solid, else dotted)."""
    keys = frame[["method", "prior", "me_max_weight"]].drop_duplicates()  # NaNs compare equal
    n_keys = max(len(keys), 1)
    for i, (method, prior, weight) in enumerate(keys.itertuples(index=False)):
        sel = frame[(frame.method == method) & (frame.prior == prior)]
        same = sel.me_max_weight.isna() if np.isnan(weight) else sel.me_max_weight == weight
        sel = sel[same]
        xs = sorted(sel.salience.unique())
        stats = [t_interval(sel[sel.salience == x].purity_b) for x in xs]
        color, ls, label = _STYLE.get((method, prior), ("tab:green", "-", f"{method}, {prior}"))
        if method == "msn" and weight != 1.0:
            color, ls, label = "tab:purple", "-.", f"{label}, me-max {weight:g}"
        # small horizontal offsets keep the intervals apart
        shift = np.array(xs) * (1 + 0.025 * (i - (n_keys - 1) / 2))
        ax.errorbar(
            shift,
            [m for m, _ in stats],
            yerr=[0.0 if math.isnan(h) else h for _, h in stats],
            color=color,
            ls=ls,
            marker="o",
            ms=3,
            capsize=2,
            lw=1.2,
            label=label,
        )
    ax.axhline(frame.chance_b.mean(), color="tab:orange", ls=":", lw=1)
    ax.set_xscale("log")
    xs = sorted(frame.salience.unique())
    ax.set_xticks(xs, [f"{x:g}" for x in xs])
    ax.minorticks_off()
    ax.set_xlabel("salience of B (scale of its class centres; A: 1)")
    ax.set_ylabel("10-NN purity of B (held out)")
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")


def plot_pmsn(frame: Any, folder: str | Path, name: str = "pmsn_prior") -> list[Path]:
    """Purity of A and B per method × prior at salience 1, NMI, and B's purity vs salience.

    Left two panels: the largest salience, me-max weight 1 (bars: mean over seeds, error bars:
    95% t-interval over seeds; dotted: chance purity). Right: 10-NN purity of B against B's
    salience for every method × prior (and the remedy runs), mean and 95% t-interval.
    """
    from matplotlib.figure import Figure

    top = frame[frame.salience == frame.salience.max()]
    top = top[top.me_max_weight.fillna(1.0) == 1.0]
    groups = list(dict.fromkeys(zip(top["method"], top["prior"], strict=True)))
    trained = [g for g in groups if g[0] not in ("input", "untrained")]
    n_bars = len(groups) + len(trained)
    fig = Figure(figsize=(1.0 * n_bars + 7.0, 3.8), layout="constrained")
    ax_p, ax_n, ax_s = fig.subplots(
        1, 3, width_ratios=[len(groups), max(len(trained), 1), 5.5], squeeze=True
    )
    _bars(ax_p, top, groups, "purity", chance=True)
    _bars(ax_n, top, trained, "nmi", chance=False)
    _salience_panel(ax_s, frame)
    ax_p.set_ylabel("10-NN purity of z (held out)")
    ax_n.set_ylabel("NMI(prototype argmax, class)")
    handles, labels = ax_p.get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower left", ncols=2, fontsize=8)
    n = frame["seed"].nunique()
    s_top = f"{frame.salience.max():g}"
    ax_p.set_title(f"k-NN purity, salience {s_top} (dotted: chance)", fontsize=9)
    ax_n.set_title("which feature the K clusters follow", fontsize=9)
    ax_s.set_title("hidden feature B vs its salience", fontsize=9)
    fig.suptitle(
        f"PMSN toy, uniform vs power-law (0.5) cluster prior; mean and 95% t-interval over "
        f"{n} seeds",
        fontsize=9,
    )
    from raking.plotting import save_figure

    return save_figure(fig, folder, name)
