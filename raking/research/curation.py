r"""Metadata curation (MetaCLIP) as one balancing step on a sparse caption × keyword table.

``theory.md`` §8 [CODE]: MetaCLIP curates image–text pairs by matching each caption against a list
of metadata entries (keywords) and capping how often a keyword may be drawn. The authors of "The
Benefits of Balance" restate this as balancing. The reference measure :math:`Q(x, y)` on captions ×
keywords is the match matrix with each matched caption given equal mass. One Y-step moves its
keyword marginal to the capped target :math:`P_Y(y) \propto \min\{\text{count}(y), t\}`:

.. math::

    Q^{(1)}(x, y) = Q(x, y)\, \frac{P_Y(y)}{Q_Y(y)}, \qquad
    Q^{(1)}_X(x) = \sum_y Q^{(1)}(x, y),

and the curated set is drawn from the caption marginal :math:`Q^{(1)}_X`, with replacement: the
authors' notebook (``rule="notebook"``, the default).

MetaCLIP's own rule (``rule="metaclip"``, :func:`metaclip_sample`) draws no sample from a
distribution: it keeps each matched caption at most once (without replacement), flipping one coin
per matched (caption, entry) pair with success probability :math:`\min(1, t / c_y)` and keeping the
caption if any of its coins succeeds, so that

.. math::

    \Pr(\text{keep } x) = 1 - \prod_{y \in x} \big(1 - \min(1, t / c_y)\big),

and an entry matched by captions that match nothing else keeps :math:`\min(c_y, t)` of them in
expectation. This is ``balance_sampling`` in ``facebookresearch/MetaCLIP``,
``metaclip/metaclip1/balancing.py`` (a text is kept if ``random.random() < entry_prob[entry_id]``
for any of its matched entries, ``entry_prob = t / max(entry_count, t)``) and its NumPy form
``metaclip/metaclip1/indexing/balance_sampling.py`` (one uniform per matched pair, the kept texts
the unique pair offsets that pass). :func:`compare_rules` compares the two rules on one match
matrix.

Here the step is taken by the package's one kernel, :func:`raking.scaling_factors`, on the sparse
table :math:`Q^\top` (keywords × captions), so that its first step is the Y-step. ``steps=k``
alternates Y, X, Y, … with the X target :math:`Q_X`, the caption marginal of :math:`Q` [INF]. After
an even number of steps the last step has restored :math:`Q_X` exactly, so only odd ``steps`` change
the sampling distribution. The data of the example (ImageNet-Captions validation captions of 250
classes, ImageNet class names as keywords) and MetaCLIP's matching live in
:mod:`raking.research.curation_data` and are re-exported here. SciPy is imported inside the
functions.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from typing import Any

import numpy as np

from raking.kernel.ipf import apply_scaling, scaling_factors
from raking.kernel.sparse import is_sparse
from raking.research.curation_data import (
    PUNCTUATION,
    CaptionData,
    Synset,
    class_keywords,
    load_captions,
    load_synsets,
    match_matrix,
    spacing,
)
from raking.validation import check_positive_int, check_seed, check_steps

__all__ = [
    "DEFAULT_SEED",
    "DEFAULT_T",
    "PUNCTUATION",
    "RULES",
    "CaptionData",
    "CurationResult",
    "Synset",
    "capped_target",
    "class_keywords",
    "compare_rules",
    "curate",
    "load_captions",
    "load_synsets",
    "match_matrix",
    "metaclip_keep_probability",
    "metaclip_sample",
    "reference_measure",
    "sample_keyword_shares",
    "spacing",
]

DEFAULT_T = 5
"""Default cap [INF]: ``theory.md`` §8 uses t = 50 for 125,457 training captions of the same 250
classes. Keyword counts grow in proportion to the number of captions, so the same cap per caption
(50 / 125,457 ≈ 0.04%) is 5.4 on the 13,635 validation captions, rounded to 5."""

DEFAULT_SEED = 123
"""The authors' resampling seed (``theory.md`` §8)."""

RULES = ("notebook", "metaclip")
r"""Curation rules: the authors' notebook (resample from :math:`Q^{(1)}_X` with replacement) and
MetaCLIP's own (keep each caption at most once, entry coins :math:`\min(1, t / c_y)`)."""


# --------------------------------------------------------------------------------------------
# The reference measure Q and the capped target P_Y
# --------------------------------------------------------------------------------------------


def _binary_csr(match: object) -> Any:
    """``match != 0`` as a CSR matrix of float64 (sparse or dense 2-D input)."""
    import scipy.sparse as sp

    if not is_sparse(match) and not isinstance(match, np.ndarray):
        raise TypeError(
            f"match must be a scipy.sparse matrix or a NumPy array (captions x keywords), got "
            f"{type(match).__name__}. Build it with raking.research.curation.match_matrix."
        )
    if match.ndim != 2 or 0 in match.shape:
        raise ValueError(
            f"match must be a non-empty 2-D table (captions x keywords), got shape {match.shape}."
        )
    table = sp.csr_matrix(match, dtype=np.float64, copy=True)
    if not np.all(np.isfinite(table.data)) or np.any(table.data < 0):
        raise ValueError(
            "match must hold 0/1 indicators (or non-negative match counts), all finite; found "
            "negative, NaN or inf entries."
        )
    table.sum_duplicates()
    table.eliminate_zeros()
    table.data[:] = 1.0
    return table


def reference_measure(match: Any) -> Any:
    r"""MetaCLIP's reference measure :math:`Q` on captions × keywords (``theory.md`` §8).

    The match indicator with every row divided by its number of matches (each matched caption
    gets equal mass), then by the number of matched captions, so that :math:`Q` sums to 1.
    Captions without a match have no mass. Returns a CSR matrix.
    """
    table = _binary_csr(match)
    per_row = np.diff(table.indptr)
    n_matched = int(np.count_nonzero(per_row))
    if n_matched == 0:
        raise ValueError("match has no matched caption-keyword pair; Q would be empty.")
    table.data /= np.repeat(per_row, per_row) * n_matched
    return table


def _check_t(t: object) -> float:
    if isinstance(t, bool) or not isinstance(t, numbers.Real) or not 0 < t < math.inf:
        raise ValueError(f"t must be a positive finite number (the cap on counts), got {t!r}.")
    return float(t)


def capped_target(counts: object, t: float) -> np.ndarray:
    r"""MetaCLIP's capped keyword marginal :math:`P_Y(y) = \min\{c_y, t\} / \sum_z \min\{c_z, t\}`.

    Parameters
    ----------
    counts : 1-D array of non-negative numbers
        Matched captions per keyword.
    t : float
        The cap, > 0: keywords matched more than ``t`` times count as ``t`` (the "head").
    """
    c = np.asarray(counts, dtype=np.float64)
    if c.ndim != 1 or not np.all(np.isfinite(c)) or np.any(c < 0):
        raise ValueError("counts must be a 1-D array of finite, non-negative numbers.")
    capped = np.minimum(c, _check_t(t))
    if capped.sum() <= 0:
        raise ValueError("counts are all 0: no keyword was matched, so there is nothing to cap.")
    return capped / capped.sum()


def _entry_probability(table: Any, t: float) -> tuple[np.ndarray, np.ndarray]:
    r"""Per keyword: counts :math:`c_y` and MetaCLIP's coin probability :math:`\min(1, t/c_y)`."""
    counts = np.diff(table.tocsc().indptr).astype(np.int64)
    return counts, t / np.maximum(counts, t)


def metaclip_keep_probability(match: Any, t: float = DEFAULT_T) -> np.ndarray:
    r"""Probability that MetaCLIP's rule keeps each caption (unitless, shape ``(n_captions,)``).

    .. math::

        \Pr(\text{keep } x) = 1 - \prod_{y:\, M(x, y) \neq 0} \big(1 - \min(1, t / c_y)\big),
        \qquad c_y = \sum_x [M(x, y) \neq 0],

    0 for captions without a match (``facebookresearch/MetaCLIP``,
    ``metaclip/metaclip1/balancing.py: balance_sampling``).

    Parameters
    ----------
    match : scipy.sparse matrix or ndarray, shape ``(n_captions, n_keywords)``
        Match indicators (:func:`match_matrix`).
    t : float
        The threshold, > 0: an entry matched more than ``t`` times keeps each match with
        probability :math:`t / c_y`.

    Raises
    ------
    ValueError
        If ``t`` is not a positive finite number, or ``match`` is not a valid match table.
    """
    t = _check_t(t)
    table = _binary_csr(match)
    _, prob = _entry_probability(table, t)
    miss = 1.0 - prob[table.indices]  # per matched pair: its coin fails
    certain = miss == 0.0
    rows = np.repeat(np.arange(table.shape[0]), np.diff(table.indptr))
    size = table.shape[0]
    log_all_miss = np.bincount(rows, weights=np.log(np.where(certain, 1.0, miss)), minlength=size)
    any_certain = np.bincount(rows, weights=certain, minlength=size) > 0
    return np.where(any_certain, 1.0, 1.0 - np.exp(log_all_miss))


def metaclip_sample(match: Any, *, t: float = DEFAULT_T, seed: Any = DEFAULT_SEED) -> np.ndarray:
    r"""MetaCLIP's curation: the captions kept, each at most once (sorted indices, int64).

    One uniform :math:`U_{xy}` per matched pair (row-major order of the CSR match matrix); the
    pair passes if :math:`U_{xy} < \min(1, t / c_y)`, and caption x is kept if any of its pairs
    passes: ``balance_sampling`` of ``facebookresearch/MetaCLIP``
    (``metaclip/metaclip1/indexing/balance_sampling.py``: ``entry_probs = max_match /
    max(entry_count, max_match)``, ``np.random.random_sample(n_pairs) < entry_probs``, kept =
    unique offsets of the passing pairs). Without replacement; the kept count is random, with
    mean ``metaclip_keep_probability(match, t).sum()``.

    Parameters
    ----------
    match : scipy.sparse matrix or ndarray, shape ``(n_captions, n_keywords)``
        Match indicators (:func:`match_matrix`).
    t : float
        The threshold (MetaCLIP's ``t`` / ``max_match``), > 0.
    seed : int, numpy.random.Generator or None
        Seed of :func:`numpy.random.default_rng` for the coins.

    Returns
    -------
    numpy.ndarray of int64
        Sorted, distinct caption indices.

    Examples
    --------
    >>> import numpy as np
    >>> M = np.eye(3)[[0, 0, 0, 0, 1, 2]]  # entry 0 matched 4 times, entries 1, 2 once
    >>> metaclip_keep_probability(M, t=2).tolist()  # rows 0-3: 2 of 4 kept on average
    [0.5, 0.5, 0.5, 0.5, 1.0, 1.0]
    >>> metaclip_sample(M, t=2, seed=0).tolist()
    [1, 2, 3, 4, 5]
    """
    t = _check_t(t)
    table = _binary_csr(match)
    rng = check_seed(seed)
    _, prob = _entry_probability(table, t)
    passed = rng.random(table.nnz) < prob[table.indices]
    rows = np.repeat(np.arange(table.shape[0], dtype=np.int64), np.diff(table.indptr))
    return np.unique(rows[passed])


def sample_keyword_shares(match: Any, samples: np.ndarray) -> np.ndarray:
    r"""Keyword shares of a curated sample: matched pairs per keyword over all its pairs.

    Each caption in ``samples`` (with its multiplicity) counts once for every keyword it
    matches (MetaCLIP's entry count, ``metaclip/metaclip1/balancing.py``); the counts are
    divided by their sum. Unitless, shape ``(n_keywords,)``.
    """
    table = _binary_csr(match)
    counts = np.asarray(table[np.asarray(samples, dtype=np.int64)].sum(axis=0)).ravel()
    if counts.sum() <= 0:
        raise ValueError("samples hold no matched caption: the keyword shares are undefined.")
    return counts / counts.sum()


# --------------------------------------------------------------------------------------------
# Curation: the balancing step, the sampling distribution, the resample and its statistics
# --------------------------------------------------------------------------------------------


def _entropy(p: np.ndarray) -> float:
    """Shannon entropy in nats (``0 log 0 = 0``)."""
    q = p[p > 0]
    return float(-(q * np.log(q)).sum())


@dataclass(frozen=True, slots=True)
class CurationResult:
    r"""The curated measure, the caption sampling distribution, a resample and its statistics.

    The attributes not listed below are the statistics printed by :meth:`summary`.

    Attributes
    ----------
    t, steps, seed, n_samples
        The cap, the balancing steps (Y-step first), the resampling seed and the sample size.
    keyword_counts : ndarray of int64, shape ``(n_keywords,)``
        Matched captions per keyword, :math:`c_y`.
    keyword_observed, keyword_target, keyword_balanced : ndarray, shape ``(n_keywords,)``
        :math:`Q_Y`, the capped target :math:`P_Y` and :math:`Q^{(k)}_Y`.
    caption_reference, caption_probability : ndarray, shape ``(n_captions,)``
        :math:`Q_X` (uniform over matched captions) and the sampling distribution
        :math:`Q^{(k)}_X`; both are 0 on captions without a match.
    reference, balanced : scipy.sparse.csr_matrix, shape ``(n_captions, n_keywords)``
        :math:`Q` and :math:`Q^{(k)}`.
    samples : ndarray of int64, shape ``(n_samples,)``
        The curated sample: caption indices drawn with replacement from
        ``caption_probability`` (``rule="notebook"``), or the captions MetaCLIP's rule kept,
        each once, sorted (``rule="metaclip"``, :func:`metaclip_sample`).
    n_top : int
        Size of the "top 10%" keyword set: ``ceil(0.1 * n_matched_keywords)`` keywords of
        largest count (ties by index).
    rule : {"notebook", "metaclip"}
        How ``samples`` was drawn (:data:`RULES`).
    """

    t: float
    steps: int
    seed: int | None
    n_samples: int
    keyword_counts: np.ndarray
    keyword_observed: np.ndarray
    keyword_target: np.ndarray
    keyword_balanced: np.ndarray
    caption_reference: np.ndarray
    caption_probability: np.ndarray
    reference: Any
    balanced: Any
    samples: np.ndarray
    n_pairs: int
    n_top: int
    keyword_error: float
    rule: str = "notebook"

    @property
    def n_captions(self) -> int:
        """Captions (rows of the match matrix)."""
        return int(self.caption_reference.shape[0])

    @property
    def n_keywords(self) -> int:
        """Keywords (columns of the match matrix)."""
        return int(self.keyword_counts.shape[0])

    @property
    def n_matched_captions(self) -> int:
        """Captions with at least one matched keyword."""
        return int(np.count_nonzero(self.caption_reference))

    @property
    def n_unmatched_captions(self) -> int:
        """Captions never matched: no mass in :math:`Q`, sampling probability 0."""
        return self.n_captions - self.n_matched_captions

    @property
    def unmatched_share(self) -> float:
        """Share of the captions never matched."""
        return self.n_unmatched_captions / self.n_captions

    @property
    def n_matched_keywords(self) -> int:
        """Distinct keywords matched at least once."""
        return int(np.count_nonzero(self.keyword_counts))

    @property
    def n_capped(self) -> int:
        """Keywords whose count exceeds ``t`` (the head that the cap cuts down)."""
        return int(np.count_nonzero(self.keyword_counts > self.t))

    @property
    def entropy(self) -> dict[str, float]:
        """Entropy (nats) of the keyword marginal: ``observed``, ``balanced``, ``target``."""
        return {
            "observed": _entropy(self.keyword_observed),
            "balanced": _entropy(self.keyword_balanced),
            "target": _entropy(self.keyword_target),
        }

    @property
    def top_share(self) -> dict[str, float]:
        """Mass of the top 10% keywords (by count): ``observed``, ``balanced``, ``target``."""
        top = np.argsort(-self.keyword_counts, kind="stable")[: self.n_top]
        return {
            "observed": float(self.keyword_observed[top].sum()),
            "balanced": float(self.keyword_balanced[top].sum()),
            "target": float(self.keyword_target[top].sum()),
        }

    @property
    def n_distinct_sampled(self) -> int:
        """Distinct captions in the resample."""
        return int(np.unique(self.samples).shape[0])

    @property
    def sample_entropy(self) -> float:
        """Entropy (nats) of the curated sample's keyword shares (:func:`sample_keyword_shares`)."""
        return _entropy(sample_keyword_shares(self.reference, self.samples))

    def to_dict(self) -> dict[str, float | int | None]:
        """The statistics as a flat dict (for tables and DataFrames)."""
        entropy, top = self.entropy, self.top_share
        return {
            "t": self.t,
            "steps": self.steps,
            "seed": self.seed,
            "n_captions": self.n_captions,
            "n_matched_captions": self.n_matched_captions,
            "n_unmatched_captions": self.n_unmatched_captions,
            "unmatched_share": self.unmatched_share,
            "n_keywords": self.n_keywords,
            "n_matched_keywords": self.n_matched_keywords,
            "n_capped": self.n_capped,
            "n_pairs": self.n_pairs,
            "entropy_observed": entropy["observed"],
            "entropy_balanced": entropy["balanced"],
            "entropy_target": entropy["target"],
            "n_top": self.n_top,
            "top_share_observed": top["observed"],
            "top_share_balanced": top["balanced"],
            "top_share_target": top["target"],
            "keyword_error": self.keyword_error,
            "rule": self.rule,
            "n_samples": self.n_samples,
            "n_distinct_sampled": self.n_distinct_sampled,
            "entropy_sample": self.sample_entropy,
        }

    def summary(self) -> str:
        """The statistics as a text table, with numbered notes."""
        entropy, top = self.entropy, self.top_share
        pct = 100 * self.unmatched_share
        rows = [
            ("entropy of the keyword marginal (nats)", entropy),
            (
                "effective number of keywords, exp(entropy)",
                {k: math.exp(v) for k, v in entropy.items()},
            ),
            (f"share of the top 10% keywords ({self.n_top})", top),
        ]
        lines = [
            f"MetaCLIP curation as balancing (theory.md §8): t = {self.t:g}, steps = {self.steps} "
            f"(Y-step first), seed = {self.seed}",
            f"captions: {self.n_captions:,}; matched: {self.n_matched_captions:,}; never matched: "
            f"{self.n_unmatched_captions:,} ({pct:.1f}%, sampling probability 0)",
            f"keywords: {self.n_keywords:,}; matched (distinct): {self.n_matched_keywords:,}; "
            f"count > t: {self.n_capped:,}",
            f"matched caption-keyword pairs: {self.n_pairs:,} "
            f"({self.n_pairs / self.n_matched_captions:.2f} per matched caption)",
            f"{'':46s}{'observed Q_Y':>14s}{'balanced':>12s}{'target P_Y':>12s}",
        ]
        for label, values in rows:
            lines.append(
                f"{label:46s}{values['observed']:14.4f}{values['balanced']:12.4f}"
                f"{values['target']:12.4f}"
            )
        lines += [
            f"max |Q^(k)_Y - P_Y| = {self.keyword_error:.3g}",
            (
                f"resample: {self.n_samples:,} draws with replacement from Q^(k)_X; distinct "
                f"captions drawn: {self.n_distinct_sampled:,}"
                if self.rule == "notebook"
                else f"MetaCLIP's rule (one coin min(1, t/c_y) per matched pair, kept once): "
                f"{self.n_samples:,} captions kept"
            ),
            f"keyword entropy of the curated sample (matched pairs; nats): "
            f"{self.sample_entropy:.4f}",
            "Notes:",
            "1. Captions without a matched keyword have no mass in Q and are never drawn.",
            "2. steps > 1 alternate Y- and X-steps, the X target being Q_X [INF]; an even count",
            "   ends on the X-step, which restores Q_X: uniform sampling over matched captions.",
        ]
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.summary()


def curate(
    match: Any,
    *,
    t: float = DEFAULT_T,
    steps: int = 1,
    seed: int | None = DEFAULT_SEED,
    n_samples: int | None = None,
    rule: str = "notebook",
) -> CurationResult:
    r"""Curate captions as MetaCLIP does, by balancing the reference measure (``theory.md`` §8).

    Parameters
    ----------
    match : scipy.sparse matrix or ndarray, shape ``(n_captions, n_keywords)``
        Match indicators (:func:`match_matrix`); non-zero entries count as one match.
    t : float
        The cap of :func:`capped_target`. Default :data:`DEFAULT_T` (= 5 for the 13,635
        validation captions [INF]).
    steps : int
        Balancing steps, Y-step first: 1 is MetaCLIP's single Y-step; ``k`` alternates Y, X,
        Y, … with the X target :math:`Q_X` [INF]; 0 samples from :math:`Q_X` (no curation).
    seed : int or None
        Seed of :func:`numpy.random.default_rng` for the resample.
    n_samples : int, optional
        Draws with replacement; default: one per caption. Only for ``rule="notebook"``.
    rule : {"notebook", "metaclip"}
        How the curated sample is drawn: ``"notebook"`` (the authors' notebook, default)
        resamples ``n_samples`` captions with replacement from :math:`Q^{(k)}_X`;
        ``"metaclip"`` keeps each caption at most once by MetaCLIP's coins
        (:func:`metaclip_sample`, same ``t`` and ``seed``). The measures are the same.

    Returns
    -------
    CurationResult

    Notes
    -----
    :math:`Q` is :func:`reference_measure`, :math:`P_Y` is :func:`capped_target` of the keyword
    counts. The steps run in :func:`raking.scaling_factors` on the sparse :math:`Q^\top`
    (keywords × captions), whose first axis is Y, with targets :math:`[P_Y, Q_X]`. Keywords never
    matched and captions never matched are empty categories with target 0.

    Examples
    --------
    >>> from raking.research.curation import curate, match_matrix
    >>> M = match_matrix(["a cat", "a cat and a dog", "the dog", "cat"], ["cat", "dog"])
    >>> res = curate(M, t=2, seed=0)
    >>> res.keyword_counts.tolist(), res.keyword_target.round(3).tolist()
    ([3, 2], [0.5, 0.5])
    >>> res.caption_probability.round(4).tolist()
    [0.2, 0.2667, 0.3333, 0.2]
    """
    table = _binary_csr(match)
    k = check_steps(steps)
    if k is None:
        raise ValueError(
            "steps must be a whole number of steps here, got None/inf: the limit has caption "
            "marginal Q_X (uniform over matched captions), so nothing would be curated. Use 1."
        )
    if rule not in RULES:
        raise ValueError(f"rule must be one of {list(RULES)}, got {rule!r}.")
    if rule == "metaclip" and n_samples is not None:
        raise ValueError(
            "n_samples must be None with rule='metaclip': MetaCLIP's rule keeps a random number "
            "of captions (each at most once). Leave n_samples out, or use rule='notebook'."
        )
    size = table.shape[0] if n_samples is None else check_positive_int(n_samples, name="n_samples")
    rng = check_seed(seed)
    counts = np.diff(table.tocsc().indptr).astype(np.int64)
    q = reference_measure(table)
    target = capped_target(counts, t)
    caption_reference = np.asarray(q.sum(axis=1)).ravel()
    q_t = q.T  # keywords x captions (CSC): the kernel's first step is then the Y-step
    factors = scaling_factors(q_t, [target, caption_reference], steps=k).factors
    balanced = apply_scaling(q_t, factors).T.tocsr()
    keyword_balanced = np.asarray(balanced.sum(axis=0)).ravel()
    caption_probability = np.asarray(balanced.sum(axis=1)).ravel()
    caption_probability /= caption_probability.sum()
    if rule == "metaclip":
        samples = metaclip_sample(table, t=t, seed=rng)
        size = int(samples.shape[0])
    else:
        samples = rng.choice(table.shape[0], size=size, replace=True, p=caption_probability)
    return CurationResult(
        t=float(t),
        steps=k,
        seed=seed if isinstance(seed, int) else None,
        n_samples=size,
        keyword_counts=counts,
        keyword_observed=np.asarray(q.sum(axis=0)).ravel(),
        keyword_target=target,
        keyword_balanced=keyword_balanced,
        caption_reference=caption_reference,
        caption_probability=caption_probability,
        reference=q,
        balanced=balanced,
        samples=samples.astype(np.int64),
        n_pairs=int(table.nnz),
        n_top=math.ceil(0.1 * np.count_nonzero(counts)),
        keyword_error=float(np.max(np.abs(keyword_balanced - target))),
        rule=rule,
    )


def _tv(p: np.ndarray, q: np.ndarray) -> float:
    r"""Total variation distance :math:`\frac12 \sum |p - q|` of two probability vectors."""
    return 0.5 * float(np.abs(p - q).sum())


def compare_rules(
    match: Any, *, t: float = DEFAULT_T, seed: Any = DEFAULT_SEED, repeats: int = 200
) -> list[dict[str, Any]]:
    r"""The notebook's resample and MetaCLIP's rule side by side, over ``repeats`` seeds.

    Rows (one dict each): ``"matched"`` (every matched caption once: no curation),
    ``"notebook"`` (``n`` draws with replacement from :math:`Q^{(1)}_X`, ``n`` = the number of
    captions, as :func:`curate` does by default), ``"notebook, MetaCLIP's size"`` (the same with
    ``n`` = MetaCLIP's expected kept count, rounded: equal-size comparison) and ``"metaclip"``
    (:func:`metaclip_sample`). Columns:

    - ``draws``, ``distinct``: captions drawn (with multiplicity) and distinct captions kept,
      mean over the repeats with the 2.5% and 97.5% quantiles (``_lo``, ``_hi``);
    - ``entropy``: keyword entropy (nats) of the curated sample, :func:`sample_keyword_shares`,
      mean and quantiles;
    - ``tv_notebook``, ``tv_metaclip``, ``tv_matched``: total variation between the rule's
      caption distribution (:math:`Q^{(1)}_X`; :math:`\Pr(\text{keep } x) / \sum_z
      \Pr(\text{keep } z)` from :func:`metaclip_keep_probability`; uniform over matched
      captions) and each of the three (exact, no sampling);
    - ``replacement``, ``t``, ``seed``, ``repeats``.

    Parameters
    ----------
    match : scipy.sparse matrix or ndarray, shape ``(n_captions, n_keywords)``
        Match indicators (:func:`match_matrix`).
    t : float
        The cap / threshold of both rules, > 0.
    seed : int or None
        Seed of the one :func:`numpy.random.default_rng` that draws every repeat in turn.
    repeats : int
        Independent curations per rule, >= 2.
    """
    t = _check_t(t)
    if isinstance(repeats, bool) or not isinstance(repeats, numbers.Integral) or repeats < 2:
        raise ValueError(f"repeats must be an integer >= 2 (curations per rule), got {repeats!r}.")
    table = _binary_csr(match)
    rng = check_seed(seed)
    base = curate(table, t=t, steps=1, seed=None)
    notebook = base.caption_probability
    keep = metaclip_keep_probability(table, t)
    metaclip = keep / keep.sum()
    matched = base.caption_reference
    equal_size = round(float(keep.sum()))
    n_captions = table.shape[0]
    stats: dict[str, list[tuple[int, int, float]]] = {
        "notebook": [],
        "notebook, MetaCLIP's size": [],
        "metaclip": [],
    }

    def describe(samples: np.ndarray) -> tuple[int, int, float]:
        entropy = _entropy(sample_keyword_shares(table, samples))
        return int(samples.shape[0]), int(np.unique(samples).shape[0]), entropy

    for _ in range(int(repeats)):
        draws = rng.choice(n_captions, size=n_captions, replace=True, p=notebook)
        stats["notebook"].append(describe(draws))
        draws = rng.choice(n_captions, size=equal_size, replace=True, p=notebook)
        stats["notebook, MetaCLIP's size"].append(describe(draws))
        stats["metaclip"].append(describe(metaclip_sample(table, t=t, seed=rng)))
    every_matched = np.flatnonzero(matched)
    dists = {"notebook": notebook, "metaclip": metaclip, "matched": matched}
    rows: list[dict[str, Any]] = []
    for rule, values, dist in (
        ("matched", [describe(every_matched)], matched),
        ("notebook", stats["notebook"], notebook),
        ("notebook, MetaCLIP's size", stats["notebook, MetaCLIP's size"], notebook),
        ("metaclip", stats["metaclip"], metaclip),
    ):
        array = np.asarray(values, dtype=np.float64)
        row: dict[str, Any] = {"rule": rule, "replacement": rule.startswith("notebook")}
        for j, name in enumerate(("draws", "distinct", "entropy")):
            row[name] = float(array[:, j].mean())
            row[f"{name}_lo"] = float(np.quantile(array[:, j], 0.025))
            row[f"{name}_hi"] = float(np.quantile(array[:, j], 0.975))
        for name, other in dists.items():
            row[f"tv_{name}"] = _tv(dist, other)
        row |= {"t": t, "seed": seed if isinstance(seed, int) else None, "repeats": len(values)}
        rows.append(row)
    return rows
