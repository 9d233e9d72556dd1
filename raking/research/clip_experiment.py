r"""Zero-shot CLIP experiment of ``theory.md`` §7 on frozen embeddings: data, heads, training.

Two-tower MLP heads (``Linear(in→256)–ReLU–Linear(256→256)–ReLU–Linear(256→128)``, outputs
L2-normalised, logits :math:`= 100 \times` cosine) are trained on frozen image / caption
embeddings with the k-step balanced loss :func:`raking.torch.balanced_clip_loss`
(k = 0 joint softmax, 1 CLIP, 2 doubly centred) and scored zero-shot: each evaluation image is
assigned the class whose prompt (text head applied to the class-prompt feature) has the largest
cosine with the image head's output. Mean per-class recall (the paper's metric) weighs every
class alike, so its expectation is the same on a balanced and on a long-tailed evaluation set;
:func:`recall_metrics` therefore also reports the recall of the **tail** (the rarest third of
the classes in training) and of the **head** (the most frequent third) and the accuracy weighted
by the training class frequencies, the three numbers that can see a long tail.

Data come either from ``.npy`` files (:func:`load_embeddings`) or from the seeded synthetic
bimodal generator (:class:`SyntheticWorld`). The script ``gpu/clip_experiment.py`` runs the grid,
writes the CSV and figure and prints the summary; this module holds the reusable parts. torch
and matplotlib are imported inside the functions that need them, so importing this module costs
only NumPy.

Documented assumptions: AdamW with lr :math:`10^{-2}`, weight decay 0.01, 5000 iterations,
evaluation every 500 (``theory.md`` §7, [CODE-sib]: the authors' follow-up repository, not
confirmed for the paper).
"""

from __future__ import annotations

import itertools
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import torch

__all__ = [
    "BimodalData",
    "SyntheticWorld",
    "authors_gap",
    "authors_results",
    "batch_loss",
    "class_groups",
    "final_table",
    "gap_table",
    "load_embeddings",
    "make_heads",
    "mean_per_class_recall",
    "power_law_frequencies",
    "recall_metrics",
    "split_train_eval",
    "train_heads",
    "zero_shot_predict",
]

METRICS = ("recall", "tail_recall", "head_recall", "weighted_acc", "acc1")

LOGIT_SCALE = 100.0
HIDDEN = 256
OUT_DIM = 128


# ---------------------------------------------------------------------------------------------
# data
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class BimodalData:
    """Paired frozen embeddings: ``image (N, d_img)``, ``text (N, d_txt)``, ``labels (N,)``.

    ``prompts (C, d_txt)`` holds one class-prompt text feature per class; labels are in
    ``0..C-1``. ``eval_sets`` maps a dataset name to ``(image (M, d_img), labels (M,))``.
    """

    image: np.ndarray
    text: np.ndarray
    labels: np.ndarray
    prompts: np.ndarray
    eval_sets: Mapping[str, tuple[np.ndarray, np.ndarray]]


def power_law_frequencies(n_classes: int, alpha: float) -> np.ndarray:
    r"""Class probabilities :math:`p_c \propto c^{-\alpha}`, c = 1..C (``alpha=0``: uniform).

    The exponent ``alpha`` (``--alpha`` of the script) sets the long tail of the training
    captions: at ``alpha = 1`` (the default of :class:`SyntheticWorld`) class 1 is C times as
    frequent as class C.
    """
    if n_classes < 1:
        raise ValueError(f"n_classes must be at least 1, got {n_classes}.")
    if not (isinstance(alpha, int | float) and math.isfinite(alpha) and alpha >= 0):
        raise ValueError(
            f"alpha (the power-law exponent, --alpha) must be a finite number >= 0, got "
            f"{alpha!r}; use 0 for uniform classes and e.g. 1 for p_c ∝ 1/c."
        )
    p = np.arange(1, n_classes + 1, dtype=np.float64) ** (-float(alpha))
    return p / p.sum()


def _random_mlp(
    rng: np.random.Generator, dims: Sequence[int]
) -> list[tuple[np.ndarray, np.ndarray]]:
    return [
        (rng.standard_normal((i, o)) / math.sqrt(i), 0.1 * rng.standard_normal(o))
        for i, o in itertools.pairwise(dims)
    ]


def _apply_mlp(layers: list[tuple[np.ndarray, np.ndarray]], x: np.ndarray) -> np.ndarray:
    for w, b in layers:
        x = np.tanh(x @ w + b)
    return x


class SyntheticWorld:
    r"""Seeded synthetic bimodal "world": latent classes seen through two different encoders.

    Class :math:`c` has a latent :math:`\mu_c \sim N(0, I_{d})` (``latent_dim`` d = 64). A sample
    of class c has an instance latent :math:`z = \mu_c + \sigma_z \varepsilon` shared by the
    image and its caption (what makes a pair a pair beyond its class). Its

    - image feature is :math:`f_{\rm img}(z + \sigma_{\rm img}\xi) + \sigma_{\rm out}\eta`,
    - caption feature is :math:`f_{\rm txt}(z + \sigma_{\rm txt}\xi') + \sigma_{\rm out}\eta'`,

    with :math:`f_{\rm img}` (64 → 128 → 96) and :math:`f_{\rm txt}` (64 → 160 → 80) two
    *different* fixed random two-layer tanh MLPs, and caption noise larger than image noise
    (captions are weak, like Flickr titles). Defaults, chosen once before any run and not tuned
    per loss: :math:`\sigma_z = 1`, :math:`\sigma_{\rm img} = 0.5`, :math:`\sigma_{\rm txt} = 1.5`,
    :math:`\sigma_{\rm out} = 0.05`, 100 classes. The class prompt is :math:`f_{\rm txt}(\mu_c)`,
    without noise. Classes are drawn with :func:`power_law_frequencies` (``alpha``); the world
    (latents and encoders) depends only on ``seed``, the samples on the ``seed`` given to
    :meth:`sample`.
    """

    def __init__(
        self,
        n_classes: int = 100,
        *,
        seed: int = 0,
        latent_dim: int = 64,
        image_dim: int = 96,
        text_dim: int = 80,
        sigma_z: float = 1.0,
        sigma_image: float = 0.5,
        sigma_text: float = 1.5,
        sigma_out: float = 0.05,
    ) -> None:
        rng = np.random.default_rng(np.random.SeedSequence([seed, 7_001]))
        self.n_classes = n_classes
        self.sigma = (sigma_z, sigma_image, sigma_text, sigma_out)
        self.class_latents = rng.standard_normal((n_classes, latent_dim))
        self.image_encoder = _random_mlp(rng, (latent_dim, 128, image_dim))
        self.text_encoder = _random_mlp(rng, (latent_dim, 160, text_dim))

    @property
    def prompts(self) -> np.ndarray:
        """Class-prompt text features ``(C, d_txt)``: the text encoder on each class latent."""
        return _apply_mlp(self.text_encoder, self.class_latents).astype(np.float32)

    def sample(
        self, n: int, *, alpha: float = 1.0, seed: int = 0
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Draw ``n`` pairs: ``(image (n, 96), text (n, 80), labels (n,))``, float32 / int64."""
        rng = np.random.default_rng(np.random.SeedSequence([seed, 7_002]))
        s_z, s_img, s_txt, s_out = self.sigma
        labels = rng.choice(self.n_classes, size=n, p=power_law_frequencies(self.n_classes, alpha))
        z = self.class_latents[labels] + s_z * rng.standard_normal((n, self.class_latents.shape[1]))
        image = _apply_mlp(self.image_encoder, z + s_img * rng.standard_normal(z.shape))
        text = _apply_mlp(self.text_encoder, z + s_txt * rng.standard_normal(z.shape))
        image = image + s_out * rng.standard_normal(image.shape)
        text = text + s_out * rng.standard_normal(text.shape)
        return image.astype(np.float32), text.astype(np.float32), labels.astype(np.int64)

    def dataset(
        self, n: int, *, alpha: float = 1.0, n_eval: int = 10_000, seed: int = 0
    ) -> BimodalData:
        """Training pairs (power law ``alpha``) and two held-out evaluation sets.

        ``"balanced"``: uniform classes; ``"long-tailed (a=alpha)"``: the training power law.
        """
        image, text, labels = self.sample(n, alpha=alpha, seed=seed)
        bal_image, _, bal_labels = self.sample(n_eval, alpha=0.0, seed=seed + 1_000_003)
        tail_image, _, tail_labels = self.sample(n_eval, alpha=alpha, seed=seed + 2_000_003)
        evals = {
            "balanced": (bal_image, bal_labels),
            f"long-tailed (a={alpha:g})": (tail_image, tail_labels),
        }
        return BimodalData(image, text, labels, self.prompts, evals)


def split_train_eval(
    labels: np.ndarray, *, test_size: float = 0.1, seed: int = 42
) -> tuple[np.ndarray, np.ndarray]:
    """Seeded random ``(train_idx, eval_idx)`` split (like ``train_test_split(random_state=42)``).

    The indices are not those of scikit-learn's splitter, only the same recipe.
    """
    n = len(labels)
    perm = np.random.default_rng(seed).permutation(n)
    n_eval = max(1, round(test_size * n))
    return np.sort(perm[n_eval:]), np.sort(perm[:n_eval])


def _load_npy(folder: Path, name: str, ndim: int) -> np.ndarray:
    path = folder / name
    if not path.is_file():
        raise ValueError(
            f"{path} not found; an embeddings folder needs image.npy, text.npy, labels.npy and "
            f"prompts.npy. Save the array there with numpy.save."
        )
    arr = np.load(path, allow_pickle=False)
    if arr.ndim != ndim:
        shape = "(N, d)" if ndim == 2 else "(N,)"
        raise ValueError(
            f"{name} has shape {arr.shape} but must be {ndim}-D {shape}. "
            f"Save it with that shape (e.g. arr.reshape(len(arr), -1) or arr.ravel())."
        )
    if ndim == 2 and not np.isfinite(arr.sum()) and not np.isfinite(arr).all():
        raise ValueError(f"{name} has NaN or infinite entries; remove or impute those rows.")
    return arr


def _check_labels(name: str, labels: np.ndarray, n_classes: int) -> np.ndarray:
    if not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(
            f"{name} has dtype {labels.dtype} but must hold integer class ids; "
            f"save labels.astype(np.int64)."
        )
    if labels.size and (labels.min() < 0 or labels.max() >= n_classes):
        raise ValueError(
            f"{name} holds class ids in [{labels.min()}, {labels.max()}] but prompts.npy has "
            f"{n_classes} rows; ids must be 0..{n_classes - 1}, one prompt row per class."
        )
    return labels.astype(np.int64)


def load_embeddings(
    folder: str | Path, *, test_size: float = 0.1, seed: int = 42, name: str = "embeddings"
) -> BimodalData:
    """Load frozen embeddings from ``folder`` and validate their shapes.

    Files: ``image.npy (N, d_img)``, ``text.npy (N, d_txt)`` (the paired captions),
    ``labels.npy (N,)`` integer class ids, ``prompts.npy (C, d_txt)`` class-prompt text features;
    optionally ``eval_image.npy (M, d_img)`` with ``eval_labels.npy (M,)`` as the held-out
    evaluation set (dataset ``name``). Without them a seeded ``test_size`` split of the pairs is
    held out (``seed=42``, as the authors' ``train_test_split``). Raises ValueError naming the
    file and the fix.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise ValueError(f"--embeddings {folder} is not a folder; give the folder of .npy files.")
    image = _load_npy(folder, "image.npy", 2)
    text = _load_npy(folder, "text.npy", 2)
    labels = _load_npy(folder, "labels.npy", 1)
    prompts = _load_npy(folder, "prompts.npy", 2)
    n = len(image)
    if len(text) != n or len(labels) != n:
        raise ValueError(
            f"image.npy has {n} rows, text.npy {len(text)} and labels.npy {len(labels)}; row i of "
            f"each must be the same image-caption pair. Save the three with the same N."
        )
    if prompts.shape[1] != text.shape[1]:
        raise ValueError(
            f"prompts.npy has {prompts.shape[1]} columns but text.npy has {text.shape[1]}; class "
            f"prompts must be encoded by the same text encoder as the captions."
        )
    labels = _check_labels("labels.npy", labels, len(prompts))
    has = [(folder / f).is_file() for f in ("eval_image.npy", "eval_labels.npy")]
    if any(has) and not all(has):
        missing = "eval_labels.npy" if has[0] else "eval_image.npy"
        raise ValueError(
            f"{missing} is missing but its partner is present; give both eval files or neither."
        )
    if all(has):
        ev_image = _load_npy(folder, "eval_image.npy", 2)
        ev_labels = _check_labels(
            "eval_labels.npy", _load_npy(folder, "eval_labels.npy", 1), len(prompts)
        )
        if ev_image.shape[1] != image.shape[1] or len(ev_labels) != len(ev_image):
            raise ValueError(
                f"eval_image.npy has shape {ev_image.shape} and eval_labels.npy {ev_labels.shape}; "
                f"they need {image.shape[1]} columns (as image.npy) and the same number of rows."
            )
    else:
        train, held = split_train_eval(labels, test_size=test_size, seed=seed)
        ev_image, ev_labels = image[held], labels[held]
        image, text, labels = image[train], text[train], labels[train]
    f32 = np.float32
    return BimodalData(
        image.astype(f32),
        text.astype(f32),
        labels,
        prompts.astype(f32),
        {name: (ev_image.astype(f32), ev_labels)},
    )


# ---------------------------------------------------------------------------------------------
# metric
# ---------------------------------------------------------------------------------------------
def mean_per_class_recall(labels: np.ndarray, predictions: np.ndarray) -> float:
    """Recall of each class present in ``labels``, averaged over those classes."""
    labels = np.asarray(labels)
    predictions = np.asarray(predictions)
    classes, inverse = np.unique(labels, return_inverse=True)
    hits = np.bincount(inverse, weights=(predictions == labels), minlength=len(classes))
    counts = np.bincount(inverse, minlength=len(classes))
    return float(np.mean(hits / counts))


def class_groups(
    train_labels: np.ndarray, n_classes: int, *, fraction: float = 1 / 3
) -> tuple[np.ndarray, np.ndarray]:
    """``(tail, head)`` class ids: the rarest and the most frequent ``fraction`` of the classes.

    Classes are ranked by their count in ``train_labels`` (a class never seen counts 0); each
    group holds ``max(1, floor(fraction · n_classes))`` classes, ties broken by the class id
    (the lower id is the more frequent, as in :func:`power_law_frequencies`).
    """
    if not 0 < fraction <= 0.5:
        raise ValueError(
            f"fraction must be in (0, 0.5] so that tail and head are disjoint, got {fraction}."
        )
    counts = np.bincount(np.asarray(train_labels), minlength=n_classes)
    order = np.lexsort((np.arange(n_classes), -counts))  # most frequent first
    size = max(1, int(fraction * n_classes))
    return np.sort(order[-size:]), np.sort(order[:size])


def recall_metrics(
    labels: np.ndarray, predictions: np.ndarray, train_labels: np.ndarray, n_classes: int
) -> dict[str, float]:
    r"""Zero-shot metrics of one evaluation set, with the class groups of the training set.

    With :math:`r_c` the recall of class c (hits / images of class c in ``labels``) over the
    set :math:`\mathcal{C}` of classes present in ``labels``, and :math:`\hat p_c` the class
    frequency in ``train_labels``:

    - ``recall``: :math:`\frac{1}{|\mathcal{C}|}\sum_{c\in\mathcal{C}} r_c` (the paper's
      mean per-class recall);
    - ``tail_recall`` / ``head_recall``: the same mean over the tail / head classes of
      :func:`class_groups` present in ``labels`` (NaN if none is);
    - ``weighted_acc``: :math:`\sum_{c\in\mathcal{C}} \hat p_c r_c / \sum_{c\in\mathcal{C}}
      \hat p_c`, the accuracy expected on images drawn with the training frequencies;
    - ``acc1``: the plain accuracy of this set (it weighs classes by their frequency *here*).

    All are fractions in [0, 1].
    """
    labels = np.asarray(labels)
    predictions = np.asarray(predictions)
    hits = np.bincount(labels, weights=(predictions == labels), minlength=n_classes)
    counts = np.bincount(labels, minlength=n_classes)
    present = counts > 0
    recall = np.divide(hits, counts, out=np.zeros(n_classes), where=present)
    freq = np.bincount(np.asarray(train_labels), minlength=n_classes).astype(np.float64)
    tail, head = class_groups(train_labels, n_classes)

    def mean_over(group: np.ndarray) -> float:
        group = group[present[group]]
        return float(recall[group].mean()) if len(group) else math.nan

    weight = freq * present
    return {
        "recall": float(recall[present].mean()),
        "tail_recall": mean_over(tail),
        "head_recall": mean_over(head),
        "weighted_acc": float((weight * recall).sum() / weight.sum()) if weight.sum() else math.nan,
        "acc1": float(np.mean(predictions == labels)),
    }


# ---------------------------------------------------------------------------------------------
# model and training (torch imported inside)
# ---------------------------------------------------------------------------------------------
def make_heads(d_image: int, d_text: int, *, seed: int = 0) -> torch.nn.ModuleDict:
    """Image and text heads ``in → 256 → 256 → 128`` (ReLU), seeded; outputs not normalised."""
    import torch

    def mlp(d: int) -> torch.nn.Sequential:
        return torch.nn.Sequential(
            torch.nn.Linear(d, HIDDEN),
            torch.nn.ReLU(),
            torch.nn.Linear(HIDDEN, HIDDEN),
            torch.nn.ReLU(),
            torch.nn.Linear(HIDDEN, OUT_DIM),
        )

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return torch.nn.ModuleDict({"image": mlp(d_image), "text": mlp(d_text)})


def _embed(head: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    import torch

    return torch.nn.functional.normalize(head(x), dim=1)


def batch_loss(
    heads: torch.nn.ModuleDict, image: torch.Tensor, text: torch.Tensor, steps: int
) -> torch.Tensor:
    """``balanced_clip_loss(100 · img_emb @ txt_emb.T, steps)`` of one batch of pairs."""
    from raking.torch import balanced_clip_loss

    logits = LOGIT_SCALE * _embed(heads["image"], image) @ _embed(heads["text"], text).T
    return balanced_clip_loss(logits, steps=steps)


def zero_shot_predict(
    heads: torch.nn.ModuleDict,
    image: torch.Tensor,
    prompts: torch.Tensor,
    *,
    chunk: int = 8192,
) -> np.ndarray:
    """Class of each image: argmax cosine between its image embedding and each class prompt's."""
    import torch

    with torch.no_grad():
        classes = _embed(heads["text"], prompts)
        out = [
            (_embed(heads["image"], image[i : i + chunk]) @ classes.T).argmax(dim=1)
            for i in range(0, len(image), chunk)
        ]
    return torch.cat(out).cpu().numpy()


def resolve_device(device: str) -> str:
    """``"auto"`` → ``"cuda"`` when available, else ``"cpu"``; ``"cuda"`` without one raises."""
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda was given but torch finds no CUDA device; use auto or cpu.")
    if device not in ("cpu", "cuda"):
        raise ValueError(f"device must be auto, cpu or cuda, got {device!r}.")
    return device


def train_heads(
    data: BimodalData,
    *,
    steps: int,
    batch_size: int,
    iters: int = 5000,
    eval_every: int = 500,
    lr: float = 1e-2,
    weight_decay: float = 0.01,
    seed: int = 0,
    device: str = "cpu",
) -> tuple[list[dict[str, Any]], torch.nn.ModuleDict]:
    """Train fresh heads with the ``steps``-step loss; evaluate every ``eval_every`` iterations.

    Initialisation and batch order depend only on ``seed`` (not on ``steps``), so the losses are
    compared on common random numbers. Batches are drawn epoch by epoch without replacement
    (the last incomplete batch of an epoch is dropped), so the training pairs' class frequencies
    (long-tailed for :class:`SyntheticWorld` data) are the frequencies seen in training. Returns
    one row per checkpoint and evaluation set (``dataset, batch_size, steps, seed, iteration,
    train_loss, recall, recall_max, tail_recall, head_recall, weighted_acc, acc1, seconds``; see
    :func:`recall_metrics`; ``train_loss`` is the mean over the interval, ``recall_max`` the
    running max of ``recall`` over checkpoints) and the trained heads.
    """
    import torch

    if batch_size > len(data.labels):
        raise ValueError(
            f"batch_size {batch_size} exceeds the {len(data.labels)} training pairs; "
            f"lower the batch size or give more pairs."
        )
    dev = torch.device(device)
    image = torch.as_tensor(data.image, device=dev)
    text = torch.as_tensor(data.text, device=dev)
    prompts = torch.as_tensor(data.prompts, device=dev)
    evals = {
        name: (torch.as_tensor(x, device=dev), np.asarray(y))
        for name, (x, y) in data.eval_sets.items()
    }
    heads = make_heads(image.shape[1], text.shape[1], seed=seed).to(dev)
    opt = torch.optim.AdamW(heads.parameters(), lr=lr, weight_decay=weight_decay)
    rng = np.random.default_rng(np.random.SeedSequence([seed, batch_size, 7_003]))
    per_epoch = len(data.labels) // batch_size
    order = np.empty(0, dtype=np.int64)
    rows: list[dict[str, Any]] = []
    best = dict.fromkeys(evals, -np.inf)
    running = torch.zeros((), device=dev)
    start = time.perf_counter()
    for it in range(1, iters + 1):
        pos = (it - 1) % per_epoch
        if pos == 0:
            order = torch.as_tensor(rng.permutation(len(data.labels)), device=dev)
        idx = order[pos * batch_size : (pos + 1) * batch_size]
        loss = batch_loss(heads, image[idx], text[idx], steps)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        running += loss.detach()
        if it % eval_every == 0 or it == iters:
            interval = eval_every if it % eval_every == 0 else it % eval_every
            train_loss = float(running) / interval
            running.zero_()
            heads.eval()
            for name, (x, y) in evals.items():
                pred = zero_shot_predict(heads, x, prompts)
                metrics = recall_metrics(y, pred, data.labels, len(data.prompts))
                best[name] = max(best[name], metrics["recall"])
                rows.append(
                    {
                        "dataset": name,
                        "batch_size": batch_size,
                        "steps": steps,
                        "seed": seed,
                        "iteration": it,
                        "train_loss": train_loss,
                        "recall": metrics["recall"],
                        "recall_max": best[name],
                        "tail_recall": metrics["tail_recall"],
                        "head_recall": metrics["head_recall"],
                        "weighted_acc": metrics["weighted_acc"],
                        "acc1": metrics["acc1"],
                        "seconds": time.perf_counter() - start,
                    }
                )
            heads.train()
    return rows, heads


# ---------------------------------------------------------------------------------------------
# figure and summary (pandas / matplotlib imported inside)
# ---------------------------------------------------------------------------------------------
def plot_clip_experiment(
    frame: Any, folder: str | Path, name: str = "clip_experiment"
) -> list[Path]:
    """Rows = datasets (× caption noise when it varies), columns = batch size, one colour per k.

    Solid: running max over checkpoints of the mean per-class recall (the paper's plot), mean
    over seeds (band: min-max over seeds when there are several). Dotted, same colour: the
    per-checkpoint value (mean over seeds), so a late drop is visible.
    """
    from matplotlib.figure import Figure

    if "caption_noise" in frame and frame["caption_noise"].nunique() > 1:
        frame = frame.assign(
            dataset=[
                f"{d}, noise {s:g}" for d, s in zip(frame.dataset, frame.caption_noise, strict=True)
            ]
        )
    datasets = list(dict.fromkeys(frame["dataset"]))
    batches = sorted(frame["batch_size"].unique())
    ks = sorted(frame["steps"].unique())
    colors = {0: "tab:gray", 1: "tab:blue", 2: "tab:red"}
    fig = Figure(figsize=(3.4 * len(batches) + 0.6, 2.7 * len(datasets)), layout="constrained")
    axes = fig.subplots(len(datasets), len(batches), squeeze=False, sharex=True)
    n_seeds = frame["seed"].nunique()
    for r, ds in enumerate(datasets):
        for c, m in enumerate(batches):
            ax = axes[r][c]
            for k in ks:
                sub = frame[(frame.dataset == ds) & (frame.batch_size == m) & (frame.steps == k)]
                g = sub.groupby("iteration")
                color = colors.get(int(k), f"C{int(k) % 10}")
                label = {0: "k=0 (joint)", 1: "k=1 (CLIP)", 2: "k=2 (doubly centred)"}.get(
                    int(k), f"k={int(k)}"
                )
                best = g["recall_max"]
                ax.plot(best.mean().index, best.mean().values, color=color, lw=1.6, label=label)
                if n_seeds > 1:
                    ax.fill_between(
                        best.min().index,
                        best.min().values,
                        best.max().values,
                        color=color,
                        alpha=0.15,
                        lw=0,
                    )
                cur = g["recall"].mean()
                ax.plot(cur.index, cur.values, color=color, lw=0.9, ls=":")
            ax.set_title(f"{ds}, m = {m}", fontsize=9)
            ax.grid(alpha=0.3)
            if r == len(datasets) - 1:
                ax.set_xlabel("iteration")
            if c == 0:
                ax.set_ylabel("mean per-class recall")
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncols=len(ks), fontsize=8)
    seeds = f"mean over {n_seeds} seeds, band min-max" if n_seeds > 1 else "one seed"
    fig.suptitle(
        f"Zero-shot mean per-class recall; solid: running max over checkpoints ({seeds}), "
        f"dotted: per checkpoint",
        fontsize=8,
    )
    from raking.plotting import save_figure

    return save_figure(fig, folder, name)


def summary_table(frame: Any) -> Any:
    """Best mean per-class recall (max over checkpoints) per dataset × batch × k, over seeds.

    Columns ``k=...`` hold the mean over seeds (``± sd`` in the ``k=..._sd`` columns when there
    are several seeds), plus ``k2-k0`` (mean of the per-seed differences).
    """
    import pandas as pd

    best = (
        frame.groupby(["dataset", "batch_size", "steps", "seed"], sort=False)["recall"]
        .max()
        .unstack("steps")
    )
    out = best.groupby(level=["dataset", "batch_size"], sort=False).mean()
    out.columns = [f"k={k}" for k in out.columns]
    if frame["seed"].nunique() > 1:
        sd = best.groupby(level=["dataset", "batch_size"], sort=False).std()
        for k in sd.columns:
            out[f"k={k}_sd"] = sd[k]
    if {0, 2} <= set(best.columns):
        out["k2-k0"] = (best[2] - best[0]).groupby(level=["dataset", "batch_size"]).mean()
    return pd.DataFrame(out)


def _keys(frame: Any) -> list[str]:
    return [c for c in ("caption_noise", "dataset", "batch_size") if c in frame]


def gap_table(frame: Any, metrics: Sequence[str] = METRICS, *, lo: int = 0, hi: int = 2) -> Any:
    """The ``k = hi`` minus ``k = lo`` gap of each metric at every checkpoint, over seeds.

    One row per (caption noise,) dataset × batch × iteration with, for each metric ``m``,
    ``m`` (mean over seeds of the per-seed difference at that checkpoint, not the running max),
    ``m_min`` and ``m_max`` (its range over seeds), and ``seeds``. The rows of the last
    iteration are the gap at the end of training.
    """
    import pandas as pd

    keys = [*_keys(frame), "iteration"]
    wide = frame.pivot_table(index=[*keys, "seed"], columns="steps", values=list(metrics))
    diff = pd.DataFrame({m: wide[(m, hi)] - wide[(m, lo)] for m in metrics})
    g = diff.groupby(level=keys, sort=False)
    out = g.mean()
    for m in metrics:
        out[f"{m}_min"] = g[m].min()
        out[f"{m}_max"] = g[m].max()
    out["seeds"] = g.size()
    return out.reset_index()


def final_table(frame: Any, metrics: Sequence[str] = METRICS) -> Any:
    """Each metric at the last checkpoint, mean and sd over seeds, per dataset × batch × k.

    Columns ``m`` and ``m_sd`` for every metric ``m`` (sd NaN with one seed) and ``recall_best``
    (mean over seeds of the best ``recall`` over checkpoints, the paper's summary).
    """
    keys = [*_keys(frame), "steps"]
    last = frame[frame["iteration"] == frame.groupby(keys)["iteration"].transform("max")]
    g = last.groupby(keys, sort=False)
    out = g[list(metrics)].mean()
    for m in metrics:
        out[f"{m}_sd"] = g[m].std()
    best = frame.groupby([*keys, "seed"], sort=False)["recall"].max()
    out["recall_best"] = best.groupby(level=keys, sort=False).mean()
    out["seeds"] = g["seed"].nunique()
    return out.reset_index()


def authors_results(folder: str | Path) -> Any:
    """The authors' released zero-shot results, one row per model × dataset × checkpoint.

    ``folder`` is the ``results/`` folder of github.com/ronakdm/balancing (``{loss}_{text
    embedding}{_b128}/{dataset}_{iteration}.json``, written by CLIP_benchmark; loss ``joint``:
    k = 0, ``clip``: k = 1, ``double``: k = 2; no ``_b128``: batch 512). Columns ``embedding,
    dataset, batch_size, steps, iteration, recall, recall_max, acc1``, ``recall_max`` being
    the running max over checkpoints that their figure plots.
    """
    import json

    import pandas as pd

    folder = Path(folder)
    if not folder.is_dir():
        raise ValueError(
            f"--authors-results {folder} is not a folder; give the results/ folder of a clone "
            f"of github.com/ronakdm/balancing."
        )
    losses = {"joint": 0, "clip": 1, "double": 2}
    rows = []
    for path in sorted(folder.glob("*/*_*.json")):
        loss, _, rest = path.parent.name.partition("_")
        dataset, _, iteration = path.stem.rpartition("_")
        if loss not in losses or not iteration.isdigit():
            continue
        embedding, _, batch = rest.partition("_")
        metrics = json.loads(path.read_text(encoding="utf-8"))["metrics"]
        rows.append(
            {
                "embedding": embedding,
                "dataset": dataset,
                "batch_size": 128 if batch == "b128" else 512,
                "steps": losses[loss],
                "iteration": int(iteration),
                "recall": metrics["mean_per_class_recall"],
                "acc1": metrics["acc1"],
            }
        )
    if not rows:
        raise ValueError(
            f"{folder} holds no {{loss}}_{{embedding}}/{{dataset}}_{{iteration}}.json files; "
            f"give the results/ folder of github.com/ronakdm/balancing."
        )
    frame = pd.DataFrame(rows).sort_values(
        ["embedding", "dataset", "batch_size", "steps", "iteration"], ignore_index=True
    )
    keys = ["embedding", "dataset", "batch_size", "steps"]
    frame["recall_max"] = frame.groupby(keys)["recall"].cummax()
    return frame


def authors_gap(frame: Any) -> Any:
    """Gap k = 2 minus k = 0 of the best mean per-class recall, per text embedding × dataset.

    At batch sizes 128 and 512: columns ``gap_128``, ``gap_512`` (best over all checkpoints,
    as their figure's last point), ``first_128``, ``first_512`` (at the first checkpoint, where
    best and current coincide), and ``larger_at_128`` (``gap_128 > gap_512``).
    """
    keys = ["embedding", "dataset", "batch_size", "steps"]
    best = frame.groupby(keys)["recall"].max().unstack("steps")
    first = frame[frame["iteration"] == frame["iteration"].min()]
    first = first.set_index(keys)["recall"].unstack("steps")
    out = (best[2] - best[0]).unstack("batch_size").rename(columns=lambda m: f"gap_{m}")
    start = (first[2] - first[0]).unstack("batch_size").rename(columns=lambda m: f"first_{m}")
    out = out.join(start)
    # their recalls are multiples of 1/8000 (STL-10) or 1/10000 (CIFAR): 6 decimals are exact and
    # drop the float noise of the differences, so the CSV reads back the same in every pandas
    out = out.round(6)
    out["larger_at_128"] = out["gap_128"] > out["gap_512"]
    return out.reset_index()
