"""The short result tables the CLI prints: :func:`summarize`, one layout per experiment.

pandas is imported only when :func:`summarize` is called.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from raking.simulation.experiments._registry import EXPERIMENTS

if TYPE_CHECKING:
    import pandas as pd


def summarize(name: str, frame: pd.DataFrame) -> pd.DataFrame:
    r"""A short table of an experiment's results for the CLI to print.

    Parameters
    ----------
    name : str
        A key of :data:`~raking.simulation.experiments.EXPERIMENTS`.
    frame : pandas.DataFrame
        The experiment's tidy rows.

    Returns
    -------
    pandas.DataFrame
        - ``dependence``: per (n, h, eps), at the largest s, the MSEs of the empirical, IPWI and
          balanced (largest k) estimators, the ratios to the empirical MSE (the balanced one with
          its paired standard error, and also at the smallest s), the share of the balanced MSE
          due to the squared bias, and the fallbacks of that point;
        - ``theory_vs_mc`` and ``mse_vs_k``: per (n, k), ``n_mse``, ``mc_se``, ``sigma2_k``,
          ``ratio`` (and ``bound``, the paired gaps ``gap_mc`` with ``gap_mc_se`` and
          ``gap_theory`` for ``mse_vs_k``), ``n_fallback``;
        - ``mse_vs_n``: per k, the least-squares slope of log MSE on log n (-1 for the
          :math:`1/n` rate), the ratio at the largest n, and the fallbacks;
        - ``illustration``: per k, the largest marginal errors against the true marginals, the
          total-variation distance to :math:`P`, and the unobserved categories.
    """
    import pandas as pd

    if name not in EXPERIMENTS:
        raise ValueError(f"unknown experiment {name!r}; choose one of {sorted(EXPERIMENTS)}.")
    if name == "dependence":
        records = []
        keys = ["n", "h_align", "eps"] if "h_align" in frame else ["n", "eps"]
        for key, group in frame.groupby(keys, sort=True):
            n, eps = int(key[0]), float(key[-1])
            top = group[group["s"] == group["s"].max()]
            low = group[group["s"] == group["s"].min()]
            kmax = int(top.loc[top["estimator"] == "balanced", "k"].max())
            emp = top[top["estimator"] == "empirical"].iloc[0]
            ipw = top[top["estimator"] == "ipwi"].iloc[0]
            bal = top[(top["estimator"] == "balanced") & (top["k"] == kmax)].iloc[0]
            bal_low = low[(low["estimator"] == "balanced") & (low["k"] == kmax)].iloc[0]
            record = {"n": n}
            if "h_align" in frame:
                record["h_align"] = float(key[1])
            if "additive_share" in frame:
                record["additive_share"] = float(emp["additive_share"])
            record |= {
                "eps": eps,
                "s": float(emp["s"]),
                "mse_empirical": emp["mse"],
                "mse_ipwi": ipw["mse"],
                f"mse_balanced_k{kmax}": bal["mse"],
                f"ratio_balanced_k{kmax}_empirical": bal["mse"] / emp["mse"],
                "ratio_ipwi_empirical": ipw["mse"] / emp["mse"],
                "bias2_share_balanced": bal["bias"] ** 2 / bal["mse"],
                "n_fallback": int(top["n_fallback"].sum()),
            }
            if "mse_ratio_se" in frame:
                record[f"ratio_k{kmax}_se"] = float(bal["mse_ratio_se"])
                record[f"ratio_k{kmax}_at_s_min"] = float(bal_low["mse_ratio"])
                record[f"ratio_k{kmax}_at_s_min_se"] = float(bal_low["mse_ratio_se"])
            records.append(record)
        return pd.DataFrame(records)
    if name in ("theory_vs_mc", "mse_vs_k"):
        cols = ["n", "k", "reps", "n_mse", "mc_se", "sigma2_k", "ratio", "n_fallback"]
        if name == "mse_vs_k":
            cols[-1:-1] = ["bound", "gap_mc", "gap_mc_se", "gap_theory"]
        return frame[cols].sort_values(["n", "k"]).reset_index(drop=True)
    if name == "mse_vs_n":
        records = []
        for k, group in frame.groupby("k", sort=True):
            group = group.sort_values("n")
            slope = np.polyfit(np.log(group["n"]), np.log(group["mse"]), 1)[0]
            last = group.iloc[-1]
            records.append(
                {
                    "k": int(k),
                    "slope_log_mse_log_n": float(slope),
                    "n_max": int(last["n"]),
                    "ratio_at_n_max": float(last["ratio"]),
                    "n_fallback": int(group["n_fallback"].sum()),
                }
            )
        return pd.DataFrame(records)
    population = frame[frame["table"] == "population"]
    P = population.pivot(index="x", columns="y", values="value").to_numpy()
    records = []
    for k, group in frame[frame["table"] == "balanced"].groupby("k", sort=True):
        Q = group.pivot(index="x", columns="y", values="value").to_numpy()
        records.append(
            {
                "k": int(k),
                "max_error_x": float(np.abs(Q.sum(axis=1) - P.sum(axis=1)).max()),
                "max_error_y": float(np.abs(Q.sum(axis=0) - P.sum(axis=0)).max()),
                "tv_to_P": float(0.5 * np.abs(Q - P).sum()),
                "empty_x": group["empty_x"].iloc[0],
                "empty_y": group["empty_y"].iloc[0],
            }
        )
    return pd.DataFrame(records)
