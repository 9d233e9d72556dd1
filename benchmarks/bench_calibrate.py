"""Benchmark: ``raking.calibrate`` (linear, raking, logit) against ``raking.rake``.

For n in {10^5, 10^6} rows: 3 categorical columns (4, 6 and 10 levels) and 2 numeric columns
(a gamma "income" and a normal "age"), design weights uniform on [1, 3]; the totals are the
design-weighted sample totals moved by up to 10% (so every method must move the weights), the
categorical counts rescaled to one population size. It times, as the best of ``--repeats``
calls after an untimed one,

- ``rake`` on the 3 categorical columns only (the baseline of the ratios; to ``tol=1e-10``);
- ``calibrate(method="linear")`` (GREG, closed form), ``"raking"`` and ``"logit"`` (bounds
  (0.3, 3)) on all 5 columns, to the default ``tol=1e-12``;

and reports the Newton iterations, the largest misfit (share of each constraint's scale) and the
time relative to ``rake``. Every call includes the whole front end (coding the columns, checking
the design weights, building the result). The times include one standard error
(``res.mean("income")``) only in the column ``+ SE``.

Run::

    .venv/bin/python benchmarks/bench_calibrate.py [--repeats 5] [--sizes 100000 1000000]
"""

from __future__ import annotations

import argparse
import functools
import statistics
import time
import warnings

import numpy as np
import pandas as pd

from raking.survey.calibration import calibrate
from raking.survey.frontend import rake


def problem(n: int, seed: int = 0) -> tuple[pd.DataFrame, dict, dict]:
    """The sample and its totals: (data, categorical totals, all totals)."""
    rng = np.random.default_rng(seed)
    z = rng.normal(size=n)
    data = pd.DataFrame({"d": rng.uniform(1.0, 3.0, size=n)})
    for name, levels, rho in (("region", 4, 0.3), ("age_group", 6, 0.6), ("education", 10, 0.4)):
        latent = rho * z + np.sqrt(1 - rho**2) * rng.normal(size=n)
        cuts = np.quantile(latent, np.linspace(0, 1, levels + 1)[1:-1])
        data[name] = pd.Categorical.from_codes(
            np.searchsorted(cuts, latent), [f"{name}{j}" for j in range(levels)]
        )
    data["income"] = rng.gamma(2.0, 20_000.0, size=n) * np.exp(0.2 * z)
    data["age"] = 45.0 + 15.0 * rng.normal(size=n) + 3.0 * z
    d = data["d"].to_numpy()
    n_total = float(d.sum())
    categorical = {}
    for name in ("region", "age_group", "education"):
        codes = data[name].cat.codes.to_numpy()
        counts = np.bincount(codes, weights=d) * rng.uniform(0.9, 1.1, size=codes.max() + 1)
        counts *= n_total / counts.sum()
        categorical[name] = dict(zip(data[name].cat.categories, counts, strict=True))
    totals = {
        **categorical,
        "income": float(d @ data["income"]) * 1.05,
        "age": float(d @ data["age"]) * 0.97,
    }
    return data, categorical, totals


def timed(fn, repeats: int) -> tuple[float, float, object]:
    """(best, median) wall time over ``repeats`` calls after an untimed one, and the result."""
    out = fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times), statistics.median(times), out


def main() -> None:
    """Print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    args = parser.parse_args()
    warnings.simplefilter("ignore")  # NegativeWeightWarning of GREG is expected here
    print(
        f"{'n':>9} {'call':<34} {'best s':>8} {'median s':>9} {'+ SE s':>8} {'iter':>5} "
        f"{'misfit':>8} {'/ rake':>7}"
    )
    for n in args.sizes:
        data, categorical, totals = problem(n)
        calls = {
            "rake (3 categorical)": functools.partial(rake, data, categorical, weights="d"),
            "calibrate linear (3 cat + 2 num)": functools.partial(
                calibrate, data, totals, weights="d", method="linear"
            ),
            "calibrate raking (3 cat + 2 num)": functools.partial(
                calibrate, data, totals, weights="d", method="raking"
            ),
            "calibrate logit (3 cat + 2 num)": functools.partial(
                calibrate, data, totals, weights="d", method="logit", bounds=(0.3, 3.0)
            ),
        }
        base = None
        for name, fn in calls.items():
            best, median, res = timed(fn, args.repeats)
            with_se, _, _ = timed(lambda fn=fn: fn().mean("income"), max(1, args.repeats // 2))
            base = best if base is None else base
            print(
                f"{n:>9} {name:<34} {best:>8.3f} {median:>9.3f} {with_se:>8.3f} "
                f"{res.iterations:>5} {res.marginal_error:>8.1e} {best / base:>7.2f}"
            )


if __name__ == "__main__":
    main()
