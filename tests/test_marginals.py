"""Count tables, marginals, multinomial sampling and the misspecification models."""

from __future__ import annotations

import numpy as np
import pytest

from raking.stats.marginals import (
    counts_from_codes,
    marginals,
    misspecify,
    mixture_noise,
    multiplicative_noise,
    sample_counts,
)


def _loop_counts(x, y, shape):
    out = np.zeros(shape, dtype=np.int64)
    for a, b in zip(x, y, strict=True):
        out[a, b] += 1
    return out


# --------------------------------------------------------------------------------------------
# counts_from_codes
# --------------------------------------------------------------------------------------------


def test_counts_from_codes_matches_loop():
    rng = np.random.default_rng(0)
    x = rng.integers(0, 4, size=300)
    y = rng.integers(0, 7, size=300)
    counts = counts_from_codes(x, y, (4, 7))
    assert counts.shape == (4, 7)
    assert counts.dtype == np.int64
    np.testing.assert_array_equal(counts, _loop_counts(x, y, (4, 7)))


def test_counts_from_codes_keeps_empty_trailing_categories():
    counts = counts_from_codes([0, 0], [1, 1], (3, 2))
    np.testing.assert_array_equal(counts, [[0, 2], [0, 0], [0, 0]])


def test_counts_from_codes_batched_matches_per_replicate():
    rng = np.random.default_rng(1)
    x = rng.integers(0, 3, size=(50, 40))
    y = rng.integers(0, 5, size=(50, 40))
    batched = counts_from_codes(x, y, (3, 5))
    assert batched.shape == (50, 3, 5)
    for r in range(50):
        np.testing.assert_array_equal(batched[r], _loop_counts(x[r], y[r], (3, 5)))
    np.testing.assert_array_equal(batched.sum(axis=(1, 2)), np.full(50, 40))


@pytest.mark.parametrize(
    ("x", "y", "shape", "match"),
    [
        ([0, 1], [0], (2, 2), "x and y must have the same shape"),
        ([0.0, 1.0], [0, 1], (2, 2), "x must hold integer category codes"),
        ([0, 1], [0, 2], (2, 2), r"y has codes \[2\] outside \[0, 2\)"),
        ([-1, 1], [0, 1], (2, 2), r"x has codes \[-1\] outside"),
        ([0, 1], [0, 1], (2,), "shape must be a pair"),
        ([0, 1], [0, 1], (0, 2), "shape must be a pair"),
        (np.zeros((2, 2, 2), int), np.zeros((2, 2, 2), int), (2, 2), "x must be 1-D"),
    ],
)
def test_counts_from_codes_rejects_bad_input(x, y, shape, match):
    with pytest.raises(ValueError, match=match):
        counts_from_codes(x, y, shape)


# --------------------------------------------------------------------------------------------
# marginals and sample_counts
# --------------------------------------------------------------------------------------------


def test_marginals_of_batched_table():
    P = np.arange(24, dtype=float).reshape(2, 3, 4)
    px, py = marginals(P)
    np.testing.assert_array_equal(px, P.sum(axis=2))
    np.testing.assert_array_equal(py, P.sum(axis=1))
    with pytest.raises(ValueError, match="P must have at least 2 axes"):
        marginals(np.ones(3))


@pytest.fixture
def table():
    rng = np.random.default_rng(2)
    return rng.dirichlet(np.ones(12)).reshape(3, 4)


def test_sample_counts_reproducible_and_sized(table):
    a = sample_counts(table, 500, 200, seed=7)
    b = sample_counts(table, 500, 200, seed=np.random.SeedSequence(7))
    c = sample_counts(table, 500, 200, seed=np.random.default_rng(7))
    d = sample_counts(table, 500, 200, seed=8)
    assert a.shape == (200, 3, 4)
    assert a.dtype == np.int64
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(a, c)
    assert not np.array_equal(a, d)
    np.testing.assert_array_equal(a.sum(axis=(1, 2)), np.full(200, 500))


def test_sample_counts_mean_is_n_times_P(table):
    n, reps = 400, 20_000
    counts = sample_counts(table, n, reps, seed=3)
    # Each cell mean has sd sqrt(n p (1 - p) / reps) <= sqrt(n / (4 reps)) ~ 0.07.
    np.testing.assert_allclose(counts.mean(axis=0), n * table, atol=0.5)


@pytest.mark.parametrize(
    ("P", "n", "reps", "seed", "match"),
    [
        (np.full((2, 2), 0.3), 10, 5, 0, "P sums to 1.2"),
        (np.array([[0.5, -0.1], [0.3, 0.3]]), 10, 5, 0, "P must be finite and non-negative"),
        (np.full(4, 0.25), 10, 5, 0, "P must be a non-empty 2-D"),
        (np.full((2, 2), 0.25), 0, 5, 0, "n must be a positive integer"),
        (np.full((2, 2), 0.25), 10, 2.5, 0, "reps must be a positive integer"),
        (np.full((2, 2), 0.25), 10, 5, "abc", "seed must be an int"),
    ],
)
def test_sample_counts_rejects_bad_input(P, n, reps, seed, match):
    with pytest.raises(ValueError, match=match):
        sample_counts(P, n, reps, seed=seed)


# --------------------------------------------------------------------------------------------
# Misspecification models
# --------------------------------------------------------------------------------------------

P_VEC = np.array([0.1, 0.2, 0.3, 0.4])


def _assert_probability_vectors(q):
    assert np.all(q >= 0)
    np.testing.assert_allclose(q.sum(axis=-1), 1.0, rtol=0, atol=1e-12)


def test_mixture_noise():
    np.testing.assert_array_equal(mixture_noise(P_VEC, 0.0), P_VEC)
    np.testing.assert_allclose(mixture_noise(P_VEC, 1.0), np.full(4, 0.25))
    q = mixture_noise(P_VEC, 0.1)
    _assert_probability_vectors(q)
    np.testing.assert_allclose(q, 0.9 * P_VEC + 0.1 / 4)


def test_multiplicative_noise():
    np.testing.assert_allclose(multiplicative_noise(P_VEC, 0.0, seed=1), P_VEC, rtol=1e-15)
    q = multiplicative_noise(P_VEC, 0.2, seed=1)
    _assert_probability_vectors(q)
    assert not np.allclose(q, P_VEC)
    np.testing.assert_array_equal(q, multiplicative_noise(P_VEC, 0.2, seed=1))
    assert not np.array_equal(q, multiplicative_noise(P_VEC, 0.2, seed=2))
    # log(q / p) = eps * xi - log(normaliser): centred over categories it is eps * (xi - mean xi),
    # whose sd over draws is eps * sqrt(1 - 1/m).
    many = multiplicative_noise(P_VEC, 0.05, seed=4, size=5000)
    assert many.shape == (5000, 4)
    _assert_probability_vectors(many)
    log_ratio = np.log(many / P_VEC)
    centred = log_ratio - log_ratio.mean(axis=1, keepdims=True)
    np.testing.assert_allclose(centred.std(axis=0), 0.05 * np.sqrt(3 / 4), rtol=0.05)
    assert not np.allclose(many[0], many[1])


def test_multiplicative_noise_keeps_zeros():
    q = multiplicative_noise([0.0, 0.5, 0.5], 1.0, seed=0)
    assert q[0] == 0.0
    _assert_probability_vectors(q)


def test_misspecify_dispatches():
    np.testing.assert_array_equal(misspecify(P_VEC, 0.1), mixture_noise(P_VEC, 0.1))
    np.testing.assert_array_equal(
        misspecify(P_VEC, 0.1, model="multiplicative", seed=5),
        multiplicative_noise(P_VEC, 0.1, seed=5),
    )
    with pytest.raises(ValueError, match=r"model must be one of \['mixture', 'multiplicative'\]"):
        misspecify(P_VEC, 0.1, model="additive")


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: mixture_noise(P_VEC, -0.1), r"eps must be in \[0, 1\]"),
        (lambda: mixture_noise(P_VEC, 1.5), r"eps must be in \[0, 1\]"),
        (
            lambda: multiplicative_noise(P_VEC, -1.0, seed=0),
            r"eps must be a finite number >= 0, got -1\.0",
        ),
        (
            lambda: multiplicative_noise(P_VEC, np.inf, seed=0),
            "eps must be a finite number >= 0, got inf",
        ),
        (lambda: mixture_noise([0.5, 0.6], 0.1), "p sums to 1.1"),
        (lambda: mixture_noise([[0.5, 0.5]], 0.1), "p must be a non-empty 1-D"),
        (lambda: mixture_noise([1.5, -0.5], 0.1), "p must be finite and non-negative"),
        (lambda: multiplicative_noise(P_VEC, 0.1, seed=0, size=0), "size must be a positive"),
    ],
)
def test_noise_rejects_bad_input(call, match):
    with pytest.raises(ValueError, match=match):
        call()
