"""MetaCLIP curation as balancing (``raking.research.curation``, ``curation_data``, the script)."""

from __future__ import annotations

import csv
import importlib.util
import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

from raking import balance
from raking.research.curation import (
    DEFAULT_T,
    capped_target,
    class_keywords,
    compare_rules,
    curate,
    load_captions,
    load_synsets,
    match_matrix,
    metaclip_keep_probability,
    metaclip_sample,
    reference_measure,
    sample_keyword_shares,
    spacing,
)

ROOT = Path(__file__).resolve().parents[1]

# A caption -> the keywords it must match (and nothing else).
KNOWN = {
    "A cat on the mat.": {"cat"},
    "The catalog of cats": set(),  # no partial words: "catalog", "cats"
    "bobcat": set(),
    "Golden retriever, running!": {"golden retriever", "retriever"},
    "my golden  retriever": {"golden retriever", "retriever"},  # whitespace runs are one gap
    "TABBY\tCAT": {"tabby cat", "cat"},  # lowercased; tab is a space
    "cat;cat": {"cat"},  # wrapped punctuation separates words; a match counts once
    "cat-walk": set(),  # "-" is not wrapped (MetaCLIP's list)
    "(cat)": set(),  # neither is "("
    "": set(),
}
KEYWORDS = ["cat", "golden retriever", "retriever", "tabby cat", "dog"]


def _matches(matrix, keywords):
    dense = matrix.toarray()
    return [{keywords[j] for j in np.flatnonzero(row)} for row in dense]


# ------------------------------------------------------------------------------------------------
# Matching
# ------------------------------------------------------------------------------------------------


def test_known_captions_give_known_matches():
    matrix = match_matrix(list(KNOWN), KEYWORDS)
    assert isinstance(matrix, sp.csr_matrix)
    assert matrix.shape == (len(KNOWN), len(KEYWORDS))
    assert matrix.dtype == np.float64 and set(matrix.data.tolist()) == {1.0}
    assert _matches(matrix, KEYWORDS) == list(KNOWN.values())


def test_spacing_is_metaclips_rule_on_lowercased_text():
    assert spacing("Hi, there!") == " hi ,  there !  "
    assert spacing("a\tb\nc") == " a b c "


def test_matching_equals_metaclips_substring_test_on_the_real_data():
    captions = load_captions().captions
    keywords = class_keywords(load_synsets(), head_nouns=True)  # includes multi-word names
    matrix = match_matrix(captions, keywords).toarray()
    padded = [f" {k} " for k in keywords]
    spaced = [spacing(c) for c in captions]
    brute = np.array([[k in c for k in padded] for c in spaced], dtype=float)
    np.testing.assert_array_equal(matrix, brute)
    assert max(len(k.split()) for k in keywords) >= 3


def test_matching_errors_name_the_argument():
    with pytest.raises(ValueError, match=r"keywords\[0\] and keywords\[2\] are both 'cat'"):
        match_matrix(["a cat"], ["cat", "dog", "CAT"])
    with pytest.raises(ValueError, match=r"keywords\[1\] is ' ', which has no words"):
        match_matrix(["a cat"], ["cat", " "])
    with pytest.raises(TypeError, match="captions must be a sequence of strings"):
        match_matrix("a cat", ["cat"])
    with pytest.raises(TypeError, match=r"keywords\[1\] is int"):
        match_matrix(["a cat"], ["cat", 3])


# ------------------------------------------------------------------------------------------------
# The reference measure, the target and the balancing step
# ------------------------------------------------------------------------------------------------

TINY_CAPTIONS = ["a cat", "a cat and a dog", "the dog", "cat", "nothing here"]
TINY_KEYWORDS = ["cat", "dog", "bird"]


def test_reference_measure_by_hand():
    q = reference_measure(match_matrix(TINY_CAPTIONS, TINY_KEYWORDS)).toarray()
    expected = np.array([[1 / 4, 0, 0], [1 / 8, 1 / 8, 0], [0, 1 / 4, 0], [1 / 4, 0, 0], [0, 0, 0]])
    np.testing.assert_allclose(q, expected, rtol=1e-15)


def test_capped_target_by_hand():
    np.testing.assert_allclose(capped_target([10, 3, 0, 7], 5), np.array([5, 3, 0, 5]) / 13)
    np.testing.assert_allclose(capped_target([1, 2], 100), [1 / 3, 2 / 3])
    with pytest.raises(ValueError, match="t must be a positive finite number"):
        capped_target([1, 2], 0)
    with pytest.raises(ValueError, match="counts must be a 1-D array"):
        capped_target([1, -2], 3)
    with pytest.raises(ValueError, match="counts are all 0"):
        capped_target([0, 0], 3)


def test_statistics_of_a_tiny_example_by_hand():
    res = curate(match_matrix(TINY_CAPTIONS, TINY_KEYWORDS), t=2, seed=0)
    assert res.keyword_counts.tolist() == [3, 2, 0]
    assert (res.n_captions, res.n_matched_captions, res.n_unmatched_captions) == (5, 4, 1)
    assert res.unmatched_share == pytest.approx(0.2)
    assert (res.n_keywords, res.n_matched_keywords, res.n_pairs, res.n_capped) == (3, 2, 5, 1)
    np.testing.assert_allclose(res.keyword_observed, [5 / 8, 3 / 8, 0], rtol=1e-15)
    np.testing.assert_allclose(res.keyword_target, [1 / 2, 1 / 2, 0], rtol=1e-15)
    np.testing.assert_allclose(res.keyword_balanced, [1 / 2, 1 / 2, 0], rtol=1e-15)
    # Q^(1)(x, y) = Q(x, y) P_Y(y) / Q_Y(y): factors 4/5 (cat) and 4/3 (dog)
    np.testing.assert_allclose(
        res.caption_probability, [1 / 5, 1 / 10 + 1 / 6, 1 / 3, 1 / 5, 0], rtol=1e-14
    )
    np.testing.assert_allclose(res.caption_reference, [1 / 4, 1 / 4, 1 / 4, 1 / 4, 0])
    h_before = -(5 / 8 * math.log(5 / 8) + 3 / 8 * math.log(3 / 8))
    assert res.entropy["observed"] == pytest.approx(h_before, rel=1e-14)
    assert res.entropy["balanced"] == pytest.approx(math.log(2), rel=1e-14)
    assert res.n_top == 1  # ceil(10% of 2 matched keywords): "cat"
    assert res.top_share["observed"] == pytest.approx(5 / 8)
    assert res.top_share["balanced"] == pytest.approx(1 / 2)
    assert 4 not in res.samples  # the unmatched caption is never drawn
    stats = res.to_dict()
    assert stats["n_unmatched_captions"] == 1 and stats["entropy_balanced"] == pytest.approx(
        math.log(2)
    )
    text = res.summary()
    assert "never matched: 1 (20.0%" in text and "t = 2" in text


@pytest.fixture(scope="module")
def real_match():
    data = load_captions()
    return match_matrix(data.captions, class_keywords(load_synsets()))


def test_one_y_step_meets_the_capped_target(real_match):
    res = curate(real_match, t=DEFAULT_T)
    matched = res.keyword_counts > 0
    target = capped_target(res.keyword_counts, DEFAULT_T)
    np.testing.assert_allclose(res.keyword_balanced[matched], target[matched], rtol=0, atol=1e-12)
    assert np.all(res.keyword_balanced[~matched] == 0)
    assert res.keyword_error <= 1e-12
    # and it is exactly MetaCLIP's formula Q(x, y) P_Y(y) / Q_Y(y)
    q = res.reference.toarray()
    ratio = np.divide(target, res.keyword_observed, out=np.zeros_like(target), where=matched)
    np.testing.assert_allclose(res.balanced.toarray(), q * ratio, rtol=1e-12, atol=1e-18)
    np.testing.assert_allclose(res.caption_probability, (q * ratio).sum(axis=1), atol=1e-15)
    assert res.caption_probability.sum() == pytest.approx(1.0, abs=1e-12)


def test_more_steps_are_the_kernel_on_q_transposed():
    match = match_matrix([*TINY_CAPTIONS, "cat and dog and bird"], TINY_KEYWORDS)
    res = curate(match, t=2, steps=3, seed=1)
    q = reference_measure(match).toarray()
    dense = balance(q.T, [capped_target(res.keyword_counts, 2), q.sum(axis=1)], steps=3)
    np.testing.assert_allclose(res.balanced.toarray(), dense.T, rtol=1e-13, atol=1e-17)
    even = curate(match, t=2, steps=2, seed=1)  # ends on the X-step: Q_X is restored
    np.testing.assert_allclose(even.caption_probability, even.caption_reference, atol=1e-15)
    none = curate(match, t=2, steps=0, seed=1)
    np.testing.assert_allclose(none.caption_probability, none.caption_reference, atol=1e-15)


def test_resample_is_reproducible_and_uses_default_rng(real_match):
    a = curate(real_match, seed=7, n_samples=500)
    b = curate(real_match, seed=7, n_samples=500)
    c = curate(real_match, seed=8, n_samples=500)
    np.testing.assert_array_equal(a.samples, b.samples)
    assert not np.array_equal(a.samples, c.samples)
    direct = np.random.default_rng(7).choice(
        real_match.shape[0], size=500, replace=True, p=a.caption_probability
    )
    np.testing.assert_array_equal(a.samples, direct)
    assert np.all(a.caption_probability[a.samples] > 0)
    assert curate(real_match).n_samples == real_match.shape[0]


def test_curate_leaves_the_match_matrix_alone_and_reads_dense_input():
    match = match_matrix(TINY_CAPTIONS, TINY_KEYWORDS)
    before = match.copy()
    dense = curate(match.toarray() * 3.0, t=2, seed=0)  # counts are read as indicators
    sparse = curate(match, t=2, seed=0)
    assert (match != before).nnz == 0
    np.testing.assert_allclose(dense.caption_probability, sparse.caption_probability)


def test_curate_errors_name_the_argument():
    match = match_matrix(TINY_CAPTIONS, TINY_KEYWORDS)
    with pytest.raises(ValueError, match="t must be a positive finite number"):
        curate(match, t=0)
    with pytest.raises(ValueError, match="steps must be a whole number"):
        curate(match, steps=None)
    with pytest.raises(ValueError, match="n_samples must be a positive integer"):
        curate(match, n_samples=0)
    with pytest.raises(TypeError, match=r"match must be a scipy\.sparse matrix or a NumPy array"):
        curate([[1, 0]])
    with pytest.raises(ValueError, match="non-negative match counts"):
        curate(np.array([[1.0, -1.0]]))
    with pytest.raises(ValueError, match="no matched caption-keyword pair"):
        curate(np.zeros((3, 2)))


# ------------------------------------------------------------------------------------------------
# The shipped data and the script
# ------------------------------------------------------------------------------------------------


def test_real_data_loads_with_the_expected_shapes(real_match):
    data = load_captions()
    synsets = load_synsets()
    assert len(data.captions) == len(data.filepaths) == 13_635
    assert len(set(data.wnids)) == 250 and set(data.wnids) <= {s.wnid for s in synsets}
    assert len(synsets) == 1000 and synsets[0].name == "kit fox" and synsets[-1].index == 1000
    keywords = class_keywords(synsets)
    assert len(keywords) == 997 and "kit fox" in keywords and "cardigan" in keywords
    assert len(class_keywords(synsets, wnids=set(data.wnids))) == 249  # two "crane" classes
    assert real_match.shape == (13_635, 997)
    assert real_match.nnz == 7191  # matched pairs, pinned: a change in matching shows here
    assert int(np.count_nonzero(np.diff(real_match.indptr))) == 6962


def test_head_nouns_add_the_last_word_of_multi_word_names():
    synsets = load_synsets()[:3]  # kit fox, English setter, Siberian husky
    assert class_keywords(synsets) == ["kit fox", "english setter", "siberian husky"]
    assert class_keywords(synsets, head_nouns=True)[3:] == ["fox", "setter", "husky"]


def test_importing_curation_loads_neither_scipy_nor_matplotlib():
    code = "import sys, json, raking.research.curation; print(json.dumps(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    loaded = set(json.loads(out.stdout.strip().splitlines()[-1]))
    assert "scipy" not in loaded and "matplotlib" not in loaded


def _script():
    spec = importlib.util.spec_from_file_location(
        "sim_curation", ROOT / "simulations" / "curation.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_script_quick_run_writes_csv_png_pdf(tmp_path, capsys):
    assert _script().main(["--quick", "--out", str(tmp_path), "--t", "3", "--seed", "1"]) == 0
    out = capsys.readouterr().out
    assert "t = 3" in out and "entropy of the keyword marginal" in out
    for name in ("curation.csv", "curation.png", "curation.pdf"):
        assert (tmp_path / name).stat().st_size > 0
    with (tmp_path / "curation.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 997
    assert list(rows[0]) == [
        "keyword",
        "count",
        "observed_share",
        "target_share",
        "balanced_share",
        "notebook_sample_share",
        "metaclip_keep_probability",
        "metaclip_sample_share",
    ]
    counts = [int(r["count"]) for r in rows]
    assert counts == sorted(counts, reverse=True)
    for column in (
        "observed_share",
        "target_share",
        "balanced_share",
        "notebook_sample_share",
        "metaclip_sample_share",
    ):
        assert sum(float(r[column]) for r in rows) == pytest.approx(1.0, abs=1e-12)
    capped = [min(c, 3) for c in counts]
    np.testing.assert_allclose(
        [float(r["target_share"]) for r in rows], np.array(capped) / sum(capped), rtol=1e-12
    )


def test_script_reports_bad_arguments(tmp_path, capsys):
    assert _script().main(["--quick", "--out", str(tmp_path), "--t", "-1"]) == 2
    assert "t must be a positive finite number" in capsys.readouterr().err


# ------------------------------------------------------------------------------------------------
# MetaCLIP's own rule (balance_sampling of facebookresearch/MetaCLIP)
# ------------------------------------------------------------------------------------------------


def _single_match(counts):
    """Captions that each match exactly one entry; entry y matched counts[y] times."""
    rows = np.repeat(np.arange(len(counts)), counts)
    return sp.csr_matrix(
        (np.ones(rows.size), (np.arange(rows.size), rows)), shape=(rows.size, len(counts))
    )


def test_metaclip_keeps_min_count_t_per_entry_in_expectation():
    counts, t = np.array([40, 12, 6, 3, 1]), 6
    match = _single_match(counts)
    keep = metaclip_keep_probability(match, t)
    per_entry = np.asarray(match.T @ keep).ravel()
    np.testing.assert_allclose(per_entry, np.minimum(counts, t), rtol=1e-14)
    # Monte Carlo: the kept count per entry averages min(c_y, t); entries under t are kept whole
    rng = np.random.default_rng(7)
    kept = np.array(
        [
            np.bincount(match[metaclip_sample(match, t=t, seed=rng)].indices, minlength=counts.size)
            for _ in range(4000)
        ]
    )
    se = kept.std(axis=0, ddof=1) / math.sqrt(kept.shape[0])
    assert np.all(np.abs(kept.mean(axis=0) - np.minimum(counts, t)) <= 4 * se + 1e-12)
    assert np.all(kept[:, 2:] == counts[2:])
    assert kept[:, 0].std() > 0  # the head entry is thinned at random


def test_metaclip_keeps_a_caption_if_any_of_its_entries_passes():
    # caption 0 matches entries 0 (count 4) and 1 (count 2); t = 1
    match = np.array([[1, 1], [1, 0], [1, 0], [1, 0], [0, 1], [0, 0]])
    keep = metaclip_keep_probability(match, t=1)
    np.testing.assert_allclose(keep, [1 - (3 / 4) * (1 / 2), 1 / 4, 1 / 4, 1 / 4, 1 / 2, 0.0])
    rng = np.random.default_rng(3)
    hits = np.zeros(6)
    for _ in range(4000):
        hits[metaclip_sample(match, t=1, seed=rng)] += 1
    assert np.all(np.abs(hits / 4000 - keep) < 4 * np.sqrt(keep * (1 - keep) / 4000) + 1e-12)


def test_metaclip_sample_is_without_replacement_and_seeded():
    data = load_captions()
    match = match_matrix(data.captions[:3000], class_keywords(load_synsets()))
    first = metaclip_sample(match, t=2, seed=11)
    assert first.dtype == np.int64 and np.all(np.diff(first) > 0)  # sorted, each caption once
    assert np.all(np.diff(match.indptr)[first] > 0)  # only matched captions
    np.testing.assert_array_equal(first, metaclip_sample(match, t=2, seed=11))
    assert not np.array_equal(first, metaclip_sample(match, t=2, seed=12))
    res = curate(match, t=2, seed=11, rule="metaclip")
    np.testing.assert_array_equal(res.samples, first)  # same coins through curate
    assert res.n_samples == res.n_distinct_sampled == first.size and res.rule == "metaclip"
    assert "MetaCLIP's rule" in res.summary()
    notebook = curate(match, t=2, seed=11)
    assert notebook.n_distinct_sampled < notebook.n_samples  # with replacement: repeats


@pytest.mark.parametrize("bad", [0, -1.0, math.inf, math.nan, True, "5", None])
def test_bad_thresholds_name_t(bad):
    match = _single_match([3, 1])
    for call in (
        lambda: metaclip_sample(match, t=bad),
        lambda: metaclip_keep_probability(match, t=bad),
        lambda: compare_rules(match, t=bad),
        lambda: curate(match, t=bad, rule="metaclip"),
    ):
        with pytest.raises(ValueError, match="t must be a positive finite number"):
            call()


def test_rule_options_are_checked():
    match = _single_match([3, 1])
    with pytest.raises(ValueError, match="rule must be one of"):
        curate(match, rule="meta")
    with pytest.raises(ValueError, match="n_samples must be None with rule='metaclip'"):
        curate(match, rule="metaclip", n_samples=3)
    with pytest.raises(ValueError, match="repeats must be an integer >= 2"):
        compare_rules(match, repeats=1)


def test_sample_keyword_shares_count_pairs():
    match = np.array([[1, 1, 0], [1, 0, 0], [0, 0, 1]])
    np.testing.assert_allclose(sample_keyword_shares(match, [0, 0, 2]), [2 / 5, 2 / 5, 1 / 5])
    with pytest.raises(ValueError, match="no matched caption"):
        sample_keyword_shares(np.array([[1, 0], [0, 0]]), [1])


def test_compare_rules_on_a_small_case():
    match = _single_match([30, 10, 4, 2])
    rows = {r["rule"]: r for r in compare_rules(match, t=4, seed=5, repeats=300)}
    assert list(rows) == ["matched", "notebook", "notebook, MetaCLIP's size", "metaclip"]
    meta = rows["metaclip"]
    assert meta["draws"] == meta["distinct"]  # without replacement
    assert meta["draws"] == pytest.approx(4 + 4 + 4 + 2, abs=0.5)  # sum of min(c_y, t)
    assert rows["notebook, MetaCLIP's size"]["draws"] == 14
    assert rows["notebook"]["draws"] == 46 and rows["notebook"]["distinct"] < 46
    assert rows["matched"]["tv_matched"] == 0.0
    assert meta["tv_notebook"] == pytest.approx(rows["notebook"]["tv_metaclip"])
    # single matches: both rules have caption probabilities prop. to min(1, t/c_y)
    assert meta["tv_notebook"] == pytest.approx(0.0, abs=1e-12)
    assert meta["entropy"] > rows["matched"]["entropy"]
    assert meta["entropy_lo"] <= meta["entropy"] <= meta["entropy_hi"]
