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
  :math:`\mu^A_a, \mu^B_b \sim N(0, I_8)`; the latent :math:`h = (\mu^A_a, \mu^B_b) + 0.3\,\xi`
  (16-d, both features equally salient) goes through a fixed random tanh MLP 16 → 64 → 32, plus
  output noise 0.05. A and B are independent.
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
  probs, prior)`` (weight 1, MSN's me-max weight). Simplification: one network with
  stop-gradient instead of MSN's EMA target encoder and masked ViT.
- **Training**: Adam, lr :math:`10^{-3}`, batch 256, a fixed number of steps.
- **Metric** (:func:`knn_purity`): on held-out clean samples, for each query the fraction of its
  k = 10 nearest neighbours (cosine, query excluded) that share the query's class, averaged;
  chance (:func:`chance_purity`) is :math:`\sum_c n_c (n_c - 1) / (n (n - 1))`. Diagnostic:
  the normalised mutual information (:func:`cluster_nmi`) of the argmax-prototype assignment
  with A and with B, i.e. which feature the K clusters follow.
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
    "plot_pmsn",
    "pmsn_loss",
    "run_grid",
    "summary_table",
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
    ) -> None:
        from raking.torch import power_law_prior

        rng = np.random.default_rng(np.random.SeedSequence([seed, 9_001]))
        self.n_a, self.n_b, self.exponent = n_a, n_b, exponent
        self.freq_b = power_law_prior(n_b, exponent).numpy()
        self.centres_a = rng.standard_normal((n_a, centre_dim))
        self.centres_b = rng.standard_normal((n_b, centre_dim))
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
    scores1: torch.Tensor, scores2: torch.Tensor, prior: torch.Tensor, method: str
) -> torch.Tensor:
    """Symmetrised SwAV (``"swav"``) or MSN-style (``"msn"``) loss of two views' cosines."""
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
        return ce + reg.to(ce.dtype)
    raise ValueError(f"method must be 'swav' or 'msn', got {method!r}.")


@dataclass
class TrainResult:
    """A trained model, its per-step loss and the training wall time (seconds)."""

    model: Any
    losses: list[float] = field(default_factory=list)
    seconds: float = 0.0


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
    device: str = "cpu",
) -> TrainResult:
    """Train :func:`ProtoNet` with :func:`pmsn_loss` on random batches of two views."""
    import torch

    start = time.perf_counter()
    model = ProtoNet(data.x.shape[1], n_prototypes, seed=seed).to(device)
    pi = make_prior(prior, n_prototypes).to(device=device, dtype=torch.float32)
    x = torch.as_tensor(data.x, device=device)
    gen = torch.Generator(device=device).manual_seed(10_000 + seed)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    losses = []
    for _ in range(steps):
        idx = torch.randint(x.shape[0], (batch_size,), generator=gen, device=device)
        xb = x[idx]
        loss = pmsn_loss(model(augment(xb, gen)), model(augment(xb, gen)), pi, method)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(loss.detach())
    losses = [float(v) for v in torch.stack(losses).cpu()] if losses else []
    return TrainResult(model.eval(), losses, time.perf_counter() - start)


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
    methods: Sequence[str] = ("swav", "msn"),
    steps: int = 2000,
    n_train: int = 10_000,
    n_eval: int = 2_000,
    device: str = "cpu",
    log: Any = None,
) -> list[dict[str, Any]]:
    """One row per seed × method × prior, plus reference rows (raw input, untrained encoder).

    The seed sets the world, the samples, the initialisation and the views; both priors of a
    seed share the world, the data and the initial network.
    """
    rows: list[dict[str, Any]] = []
    for seed in seeds:
        world = TwoFeatureWorld(seed=seed)
        data, held_out = world.sample(n_train, seed=seed), world.sample(n_eval, seed=seed + 7_919)
        base = {"seed": seed, "steps": steps, "n_train": n_train, "n_eval": n_eval}
        ref = evaluate(ProtoNet(data.x.shape[1], seed=seed), held_out)
        rows.append({**base, "method": "untrained", "prior": "-", **ref, "seconds": 0.0})
        raw = {
            **ref,
            "purity_a": knn_purity(held_out.x, held_out.a),
            "purity_b": knn_purity(held_out.x, held_out.b),
        }
        raw.update(nmi_a=np.nan, nmi_b=np.nan, clusters_used=np.nan, top_cluster_mass=np.nan)
        rows.append({**base, "method": "input", "prior": "-", **raw, "seconds": 0.0})
        for method, prior in itertools.product(methods, PRIORS):
            res = train(data, method=method, prior=prior, seed=seed, steps=steps, device=device)
            row = {**base, "method": method, "prior": prior, **evaluate(res.model, held_out)}
            row.update(
                seconds=res.seconds,
                loss_first=float(np.mean(res.losses[:50])),
                loss_last=float(np.mean(res.losses[-50:])),
            )
            rows.append(row)
            if log is not None:
                log(
                    f"seed {seed} {method:5s} {prior:9s} purity A {row['purity_a']:.3f} "
                    f"B {row['purity_b']:.3f}  ({res.seconds:.1f} s)"
                )
    return rows


def summary_table(frame: Any) -> Any:
    """Mean ± sd over seeds of purity A / B (and chances) per method × prior."""
    cols = ["purity_a", "purity_b", "nmi_a", "nmi_b", "chance_a", "chance_b", "clusters_used"]
    g = frame.groupby(["method", "prior"], sort=False)[cols]
    mean, sd = g.mean(), g.std()
    out = mean.copy()
    for c in ("purity_a", "purity_b"):
        out[f"{c}_sd"] = sd[c]
    return out[["purity_a", "purity_a_sd", "purity_b", "purity_b_sd", *cols[2:]]]


def _bars(ax: Any, frame: Any, groups: list, metric: str, chance: bool) -> None:
    width = 0.38
    for j, (feat, color) in enumerate((("a", "tab:blue"), ("b", "tab:orange"))):
        means, sds = [], []
        for m, p in groups:
            v = frame[(frame.method == m) & (frame.prior == p)][f"{metric}_{feat}"]
            means.append(v.mean())
            sds.append(v.std() if len(v) > 1 else 0.0)
        label = "A (uniform classes)" if feat == "a" else "B (power law, hidden)"
        pos = np.arange(len(groups)) + (j - 0.5) * width
        ax.bar(pos, means, width, yerr=sds, color=color, label=label, capsize=3)
        if chance:
            ax.axhline(frame[f"chance_{feat}"].mean(), color=color, ls=":", lw=1)
    ax.set_xticks(np.arange(len(groups)), [f"{m}\n{p}" for m, p in groups], fontsize=8)
    ax.set_ylim(0, 1)
    ax.grid(axis="y", alpha=0.3)


def plot_pmsn(frame: Any, folder: str | Path, name: str = "pmsn_prior") -> list[Path]:
    """Left: k-NN purity of A and B per method × prior; right: NMI of the prototype assignment.

    Mean over seeds, error bars: sd over seeds; dotted: chance purity.
    """
    from matplotlib.figure import Figure

    groups = list(dict.fromkeys(zip(frame["method"], frame["prior"], strict=True)))
    trained = [g for g in groups if g[0] not in ("input", "untrained")]
    fig = Figure(figsize=(1.0 * (len(groups) + len(trained)) + 2.5, 3.4), layout="constrained")
    ax_p, ax_n = fig.subplots(1, 2, width_ratios=[len(groups), max(len(trained), 1)], squeeze=True)
    _bars(ax_p, frame, groups, "purity", chance=True)
    _bars(ax_n, frame, trained, "nmi", chance=False)
    ax_p.set_ylabel("10-NN purity of z (held out)")
    ax_n.set_ylabel("NMI(prototype argmax, class)")
    handles, labels = ax_p.get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncols=2, fontsize=8)
    n = frame["seed"].nunique()
    ax_p.set_title("representation: k-NN purity (dotted: chance)", fontsize=9)
    ax_n.set_title("which feature the K clusters follow", fontsize=9)
    fig.suptitle(
        f"PMSN toy, uniform vs power-law (0.5) cluster prior; mean ± sd over {n} seeds", fontsize=9
    )
    from raking.plotting import save_figure

    return save_figure(fig, folder, name)
