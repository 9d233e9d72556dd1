r"""Figures of the Monte Carlo experiments (:mod:`raking.simulation.experiments`), in matplotlib.

Each ``plot_NAME(frame, folder)`` takes the experiment's tidy rows and writes ``NAME.png``
(150 dpi) and ``NAME.pdf`` into ``folder``, returning the two paths. Figures are built with
:class:`matplotlib.figure.Figure` directly, without :mod:`matplotlib.pyplot`: no global state,
no GUI backend, safe in worker processes and headless machines. matplotlib is imported inside the
functions, so importing this module costs nothing.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = [
    "FIGURES",
    "QUICK_FIGURES",
    "check_output_folder",
    "output_folder",
    "plot_dependence",
    "plot_illustration",
    "plot_mse_vs_k",
    "plot_mse_vs_n",
    "plot_theory_vs_mc",
    "save_figure",
]

FIGURES = Path("figures")
"""Default output folder of full runs; the README embeds the figures committed there."""
QUICK_FIGURES = FIGURES / "quick"
"""Default output folder of ``--quick`` runs (git-ignored), so a quick run never overwrites the
committed full-run figures."""


def output_folder(out: str | Path | None, *, quick: bool) -> Path:
    """The folder a run writes to.

    ``out`` if given, else :data:`QUICK_FIGURES` for a quick run and :data:`FIGURES` for a full
    one (both relative to the current folder).
    """
    if out is not None:
        return Path(out)
    return QUICK_FIGURES if quick else FIGURES


def check_output_folder(folder: str | Path, *, flag: str = "--out") -> None:
    """Raise ``ValueError`` now if files cannot be written into ``folder``.

    A run checks its output folder before it starts, so that a typo or a read-only place fails
    in a second instead of after the whole run. ``folder`` may not exist yet: then its nearest
    existing ancestor must be a folder we can create it in. The check writes and removes one
    temporary file, so it also holds for root and for read-only file systems, where permission
    bits say nothing.

    Parameters
    ----------
    folder : str or pathlib.Path
        The output folder.
    flag : str
        How the caller names the setting in the message (a command-line flag).

    Raises
    ------
    ValueError
        If ``folder`` (or an ancestor) is a file, or nothing can be written there.
    """
    import tempfile

    folder = Path(folder)
    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise ValueError(
            f"{flag} {folder}: {existing} is a file, not a folder; give a folder to write the "
            "results into."
        )
    try:
        with tempfile.TemporaryFile(dir=existing):
            pass
    except OSError as exc:
        raise ValueError(
            f"{flag} {folder}: cannot write into {existing} ({exc.strerror or exc}); give a "
            "folder you can write to."
        ) from None


_DATA_COLOR = "dodgerblue"  # the authors' colours (illustration.ipynb)
_TARGET_COLOR = "orangered"
_THEORY = {"linestyle": "--", "linewidth": 1.4}
_MC = {"marker": "o", "markersize": 3.5, "capsize": 2, "linewidth": 1.2}


def _figure(width: float, height: float) -> Figure:
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), layout="constrained")


# Metadata without a date or a version, so that the same figure gives the same bytes: a rerun
# leaves the committed figures untouched in git unless their content changed.
_PNG_METADATA = {"Software": "raking.plotting (matplotlib)"}
_PDF_METADATA = {"Creator": "raking.plotting (matplotlib)", "Producer": None, "CreationDate": None}


def save_figure(fig: Figure, folder: Path, name: str) -> list[Path]:
    """Write ``fig`` as ``folder/name.png`` (150 dpi) and ``.pdf``; return both paths.

    The files are byte-reproducible: their metadata carry neither the creation date nor the
    matplotlib version, so saving the same figure again (on the same matplotlib and fonts)
    writes identical bytes.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder / f"{name}.png", folder / f"{name}.pdf"]
    fig.savefig(paths[0], dpi=150, bbox_inches="tight", metadata=_PNG_METADATA)
    fig.savefig(paths[1], bbox_inches="tight", metadata=_PDF_METADATA)
    return paths


def _colors(count: int, cmap: str = "viridis") -> list[Any]:
    from matplotlib import colormaps

    return [colormaps[cmap](v) for v in np.linspace(0.0, 0.85, max(count, 1))]


_EPS_COLORS = ("black", "tab:blue", "tab:orange", "tab:red")
_INF_NOTE = "[INF] = our assumption or design choice, not the paper's (theory/README.md)"
_IPWI_NOTE = (
    r"IPWI: inverse-probability weights $\tilde p_X(x)\,\tilde p_Y(y)\,/\,"
    r"(P_{n,X}(x)\,P_{n,Y}(y))$ from both supplied marginals, our reading of the paper's "
    "baseline [INF]"
)


def _h_label(row: Any) -> str:
    a = float(row["h_align"])
    if a == 0.0:
        return r"$h = N(0, 1)$ noise"
    part = r"\alpha + \beta" if a == 1.0 else rf"{a:g}\,(\alpha + \beta)"
    return rf"$h = {part} + N(0, 1)$"


def _reps_note(frame: pd.DataFrame) -> str:
    reps = sorted({int(r) for r in frame["reps"]})
    fallbacks = int(frame["n_fallback"].sum())
    return (
        f"{'/'.join(map(str, reps))} replicates per point; missing-mass fallbacks "
        f"(empirical estimate used): {fallbacks}"
    )


# --------------------------------------------------------------------------------------------
# dependence
# --------------------------------------------------------------------------------------------


def _panels(frame: pd.DataFrame) -> list[tuple[str, pd.DataFrame]]:
    ks = sorted(int(k) for k in frame.loc[frame["estimator"] == "balanced", "k"].unique())
    panels = [
        ("empirical $P_n(h)$ (uses no marginals)", frame[frame["estimator"] == "empirical"]),
        ("IPWI (inverse-probability weights) [INF]", frame[frame["estimator"] == "ipwi"]),
    ]
    for k in ks:
        rows = frame[(frame["estimator"] == "balanced") & (frame["k"] == k)]
        panels.append((f"balanced $P_n^{{({k})}}(h)$, k = {k}", rows))
    return panels


def _h_rows(ax: Axes, sub: pd.DataFrame, kmax: int, ratio: bool) -> None:
    """One line per function h at eps = 0: MSEs (``ratio=False``) or balanced/empirical ratios."""
    aligns = sorted((float(a) for a in sub["h_align"].unique()), reverse=True)
    colors = dict(zip(aligns, _colors(len(aligns), "plasma"), strict=True))
    clean = sub[sub["eps"] == 0.0]
    for a in aligns:
        rows = clean[clean["h_align"] == a]
        bal = rows[(rows["estimator"] == "balanced") & (rows["k"] == kmax)].sort_values("s")
        share = float(bal["additive_share"].iloc[0])
        label = f"{_h_label(bal.iloc[0])}, additive share {share:.2f}"
        if ratio:
            ax.errorbar(
                bal["s"],
                bal["mse_ratio"],
                yerr=2 * bal["mse_ratio_se"],
                color=colors[a],
                label=label,
                **_MC,
            )
            ax.plot(bal["s"], bal["theory_ratio"], color=colors[a], **_THEORY)
            ax.axhline(1.0 - share, color=colors[a], linewidth=0.8, linestyle=":")
            continue
        emp = rows[rows["estimator"] == "empirical"].sort_values("s")
        ax.errorbar(
            bal["s"], bal["mse"], yerr=2 * bal["mse_se"], color=colors[a], label=label, **_MC
        )
        ax.errorbar(
            emp["s"],
            emp["mse"],
            yerr=2 * emp["mse_se"],
            color=colors[a],
            markerfacecolor="white",
            **{**_MC, "linestyle": ":"},
        )


def plot_dependence(frame: pd.DataFrame, folder: Path) -> list[Path]:
    r"""MSE vs the dependence level s, one panel per estimator, one line per noise level.

    Markers: Monte Carlo MSE with :math:`\pm 2` standard errors; dashed: the first-order theory
    :math:`\mathrm{bias}^2 + \sigma^2/n` in the same colour; dotted: the bias floor
    :math:`\mathrm{bias}^2` of each :math:`\varepsilon > 0`; grey: the empirical estimator's
    :math:`\mathrm{Var}(h)/n`, repeated in every panel for comparison. Log-scale MSE, shared
    across these panels; one block of panels per sample size. They show the reference function
    h (``h_align`` = 1, else the largest ``h_align``).

    When the frame holds several functions h (``h_align``), each block ends with a row at
    :math:`\varepsilon = 0`: the MSEs of the empirical (hollow, dotted) and the balanced
    (largest k) estimators per h, and their ratio with :math:`\pm 2` paired standard errors,
    its first-order theory (dashed) and :math:`1 - ` the additive share of h (dotted: the ratio
    that removing the additive part alone gives at :math:`s = 0`).

    Parameters
    ----------
    frame : pandas.DataFrame
        Rows of :func:`raking.simulation.experiments.dependence_point`.
    folder : pathlib.Path
        Output folder.

    Returns
    -------
    list of pathlib.Path
        ``dependence.png`` and ``dependence.pdf``.
    """
    from matplotlib.lines import Line2D

    aligns = sorted(float(a) for a in frame["h_align"].unique())
    reference = 1.0 if 1.0 in aligns else aligns[-1]
    compare = len(aligns) > 1
    full = frame
    frame = frame[frame["h_align"] == reference]
    ns = sorted(int(n) for n in frame["n"].unique())
    eps_values = sorted(float(e) for e in frame["eps"].unique())
    palette = _EPS_COLORS if len(eps_values) <= len(_EPS_COLORS) else _colors(len(eps_values))
    colors = dict(zip(eps_values, palette, strict=False))
    n_panels = len(_panels(frame[frame["n"] == ns[0]]))
    cols = 3
    rows_per_n = -(-n_panels // cols)
    block_rows = rows_per_n + int(compare)
    fig = _figure(4.0 * cols, 3.0 * block_rows * len(ns) + 1.3)
    grid = fig.add_gridspec(block_rows * len(ns), cols)
    first_ax: Axes | None = None
    for block, n in enumerate(ns):
        sub = frame[frame["n"] == n]
        empirical = sub[sub["estimator"] == "empirical"].groupby("s")["theory_mse"].first()
        for i, (title, rows) in enumerate(_panels(sub)):
            ax = fig.add_subplot(
                grid[block * block_rows + i // cols, i % cols], sharex=first_ax, sharey=first_ax
            )
            first_ax = first_ax or ax
            ax.plot(empirical.index, empirical.to_numpy(), color="0.6", linewidth=2.5, zorder=1)
            for eps in eps_values:
                line = rows[rows["eps"] == eps].sort_values("s")
                ax.errorbar(
                    line["s"], line["mse"], yerr=2 * line["mse_se"], color=colors[eps], **_MC
                )
                ax.plot(line["s"], line["theory_mse"], color=colors[eps], **_THEORY)
                if eps > 0 and (line["theory_bias"].abs() > 0).any():
                    ax.plot(
                        line["s"],
                        line["theory_bias"] ** 2,
                        color=colors[eps],
                        linewidth=1,
                        linestyle=":",
                    )
            ax.set_yscale("log")
            ax.set_title(f"{title}   (n = {n})" if len(ns) > 1 else title, fontsize=10)
            ax.grid(True, which="major", alpha=0.3)
            if i % cols == 0:
                ax.set_ylabel("MSE")
            if i // cols == rows_per_n - 1:
                ax.set_xlabel(r"dependence level $s = s_2$")
        if compare:
            every = full[full["n"] == n]
            kmax = int(every.loc[every["estimator"] == "balanced", "k"].max())
            row = block * block_rows + rows_per_n
            mse_ax = fig.add_subplot(grid[row, 0], sharex=first_ax)
            _h_rows(mse_ax, every, kmax, ratio=False)
            mse_ax.set_yscale("log")
            mse_ax.set_ylabel("MSE")
            mse_ax.set_title(
                rf"$\varepsilon = 0$: balanced k = {kmax} (filled), empirical (hollow)",
                fontsize=10,
            )
            ratio_ax = fig.add_subplot(grid[row, 1:], sharex=first_ax)
            _h_rows(ratio_ax, every, kmax, ratio=True)
            ratio_ax.set_ylim(bottom=0.0)
            ratio_ax.set_ylabel(f"MSE balanced k = {kmax} / empirical")
            ratio_ax.set_title(
                r"$\varepsilon = 0$: MSE ratio ($\pm 2$ paired s.e.; dashed: theory; dotted: "
                r"1 $-$ additive share, the part removed at any $s$)",
                fontsize=10,
            )
            ratio_ax.legend(fontsize=8, loc="center right")
            for ax in (mse_ax, ratio_ax):
                ax.grid(True, which="major", alpha=0.3)
                ax.set_xlabel(r"dependence level $s = s_2$")
    handles = [
        Line2D([], [], color=colors[e], marker="o", label=rf"$\varepsilon = {e:g}$")
        for e in eps_values
    ] + [
        Line2D([], [], color="k", marker="o", markersize=3.5, label=r"Monte Carlo $\pm 2$ s.e."),
        Line2D([], [], color="k", label=r"theory bias$^2 + \sigma^2/n$", **_THEORY),
        Line2D([], [], color="k", linestyle=":", label=r"bias$^2$ floor ($\varepsilon > 0$)"),
        Line2D([], [], color="0.6", linewidth=2.5, label=r"empirical: Var$(h)/n$"),
    ]
    low = np.concatenate([(frame["mse"] - 2 * frame["mse_se"]).to_numpy(), frame["theory_mse"]])
    if first_ax is not None:
        first_ax.set_ylim(bottom=0.5 * float(low[low > 0].min()))
    fig.legend(
        handles=handles,
        loc="outside upper center",
        ncol=4,
        fontsize=9,
        frameon=False,
        title="MSE of estimators of $P(h)$ vs dependence; marginals misspecified by mixture "
        r"noise $(1-\varepsilon)P + \varepsilon\,$Unif [INF]",
        title_fontsize=11,
    )
    first = frame.iloc[0]
    others = ""
    if compare:
        others = (
            " Bottom row: also "
            + ", ".join(
                _h_label(r)
                for _, r in full.drop_duplicates("h_align").iterrows()
                if float(r["h_align"]) != reference
            )
            + " (same P, same noise Z)."
        )
    fig.supxlabel(
        f"Design [INF]: {int(first['m'])}x{int(first['l'])}, "
        r"$P = P_X P_Y (1 + s\,\alpha\beta)$ ($s_2 = s$ exactly), "
        f"{_h_label(first)}; n = {', '.join(map(str, ns))}; {_reps_note(full)}.{others}\n"
        "Theory: empirical exact; balanced and IPWI first order (IPWI variance at the true "
        f"marginals).\n{_IPWI_NOTE}. {_INF_NOTE}.",
        fontsize=8,
    )
    return save_figure(fig, folder, "dependence")


# --------------------------------------------------------------------------------------------
# theory_vs_mc, mse_vs_n, mse_vs_k
# --------------------------------------------------------------------------------------------


def _design_note(frame: pd.DataFrame) -> str:
    first = frame.iloc[0]
    return (
        f"{int(first['m'])}x{int(first['l'])} {first['marginals']} marginals, "
        rf"$s_2 = {float(first['s']):g}$, {_h_label(first)} [INF]; {_reps_note(frame)}"
        f"\n{_INF_NOTE}"
    )


def plot_theory_vs_mc(frame: pd.DataFrame, folder: Path) -> list[Path]:
    r"""Monte Carlo :math:`n \cdot \mathrm{MSE}` against :math:`\sigma_k^2`, and their ratio.

    Left: :math:`n \cdot \mathrm{MSE}` per n with :math:`\pm 2` standard errors and the theory
    :math:`\sigma_k^2` (dashed, log scale). Right: the ratio
    :math:`n \cdot \mathrm{MSE} / \sigma_k^2` per n, which approaches 1 as n grows, with a
    :math:`\pm 5\%` band.

    Parameters
    ----------
    frame : pandas.DataFrame
        Rows of :func:`raking.simulation.experiments.k_sweep_point`.
    folder : pathlib.Path
        Output folder.

    Returns
    -------
    list of pathlib.Path
        ``theory_vs_mc.png`` and ``theory_vs_mc.pdf``.
    """
    ns = sorted(int(n) for n in frame["n"].unique())
    colors = _colors(len(ns))
    fig = _figure(11.0, 4.2)
    left, right = fig.subplots(1, 2)
    theory = frame.groupby("k")["sigma2_k"].first()
    left.plot(theory.index, theory.to_numpy(), color="k", label=r"theory $\sigma_k^2$", **_THEORY)
    right.axhspan(0.95, 1.05, color="0.9", label=r"$\pm 5\%$")
    right.axhline(1.0, color="k", linewidth=1)
    offsets = np.linspace(-0.15, 0.15, len(ns)) if len(ns) > 1 else [0.0]
    for n, color, dx in zip(ns, colors, offsets, strict=True):
        rows = frame[frame["n"] == n].sort_values("k")
        label = f"Monte Carlo, n = {n}"
        left.errorbar(
            rows["k"] + dx, rows["n_mse"], yerr=2 * rows["mc_se"], color=color, label=label, **_MC
        )
        right.errorbar(
            rows["k"] + dx,
            rows["ratio"],
            yerr=2 * rows["mc_se"] / rows["sigma2_k"],
            color=color,
            label=f"n = {n}",
            **_MC,
        )
    left.set_yscale("log")
    left.set_ylabel(r"$n \cdot$ MSE of $P_n^{(k)}(h)$")
    right.set_ylabel(r"$n \cdot \mathrm{MSE} \,/\, \sigma_k^2$")
    for ax in (left, right):
        ax.set_xlabel("balancing steps k (odd = X-step)")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
    left.set_title(r"$n \cdot$ MSE vs the asymptotic variance $\sigma_k^2$", fontsize=10)
    right.set_title(r"ratio $\to 1$ as $n$ grows ($\pm 2$ s.e.)", fontsize=10)
    fig.suptitle("Theory vs Monte Carlo, correct marginals", fontsize=11)
    fig.supxlabel(_design_note(frame), fontsize=8)
    return save_figure(fig, folder, "theory_vs_mc")


def plot_mse_vs_n(frame: pd.DataFrame, folder: Path) -> list[Path]:
    r"""MSE vs n (log-log) per k with the :math:`\sigma_k^2/n` lines of slope -1.

    Left: Monte Carlo MSE with :math:`\pm 2` standard errors and :math:`\sigma_k^2 / n`
    (dashed). Right: :math:`n \cdot \mathrm{MSE} / \sigma_k^2` vs n, tending to 1.

    Parameters
    ----------
    frame : pandas.DataFrame
        Rows of :func:`raking.simulation.experiments.k_sweep_point`.
    folder : pathlib.Path
        Output folder.

    Returns
    -------
    list of pathlib.Path
        ``mse_vs_n.png`` and ``mse_vs_n.pdf``.
    """
    ks = sorted(int(k) for k in frame["k"].unique())
    colors = _colors(len(ks))
    fig = _figure(11.0, 4.2)
    left, right = fig.subplots(1, 2)
    right.axhspan(0.95, 1.05, color="0.9")
    right.axhline(1.0, color="k", linewidth=1)
    for k, color in zip(ks, colors, strict=True):
        rows = frame[frame["k"] == k].sort_values("n")
        left.errorbar(
            rows["n"], rows["mse"], yerr=2 * rows["mse_se"], color=color, label=f"k = {k}", **_MC
        )
        left.plot(rows["n"], rows["theory_mse"], color=color, **_THEORY)
        right.errorbar(
            rows["n"],
            rows["ratio"],
            yerr=2 * rows["mc_se"] / rows["sigma2_k"],
            color=color,
            label=f"k = {k}",
            **_MC,
        )
    left.plot([], [], color="k", label=r"$\sigma_k^2 / n$ (slope $-1$)", **_THEORY)
    left.set_yscale("log")
    left.set_ylabel(r"MSE of $P_n^{(k)}(h)$")
    left.set_title(r"the $O(1/n)$ rate", fontsize=10)
    right.set_ylabel(r"$n \cdot \mathrm{MSE} \,/\, \sigma_k^2$")
    right.set_title(r"ratio $\to 1$ ($\pm 2$ s.e., grey: $\pm 5\%$)", fontsize=10)
    for ax in (left, right):
        ax.set_xscale("log")
        ax.set_xlabel("sample size n")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle("MSE vs sample size, correct marginals", fontsize=11)
    fig.supxlabel(_design_note(frame), fontsize=8)
    return save_figure(fig, folder, "mse_vs_n")


def plot_mse_vs_k(frame: pd.DataFrame, folder: Path) -> list[Path]:
    r"""The decay of :math:`\sigma_k^2` in k, checked by Monte Carlo at several n.

    Left: the ratio :math:`n \cdot \mathrm{MSE} / \sigma_k^2` per n with :math:`\pm 2`
    standard errors (1 = the theory). Right: the gaps to :math:`\sigma_\infty^2` on a log scale,
    where the geometric rate :math:`s_2^2` per step is a straight line: the theory
    :math:`\sigma_k^2 - \sigma_\infty^2`, the spectral-gap bound
    :math:`s_2^{2(k-1)}(\sigma_0^2 - \sigma_\infty^2)`, and per n the paired Monte Carlo gap
    ``gap_mc`` (:func:`raking.simulation.experiments.k_sweep_point`), shown where it exceeds two
    standard errors. At the smallest n the unpaired gap :math:`n \cdot \mathrm{MSE} -
    \sigma_\infty^2` is drawn too (hollow): it carries the finite-n excess of
    :math:`n \cdot \mathrm{MSE}` over :math:`\sigma_k^2`, which subtracting
    :math:`\sigma_\infty^2` magnifies once the true gap is small (:func:`_finite_n_note`). The
    Theorem 1 shape :math:`\sigma_k^2/n + C k^6 n^{-3/2}` is not drawn: its constant is
    unconfirmed (``theory.md`` §3).

    Parameters
    ----------
    frame : pandas.DataFrame
        Rows of :func:`raking.simulation.experiments.k_sweep_point` on ``mse_vs_k`` points
        (with the paired-gap columns).
    folder : pathlib.Path
        Output folder.

    Returns
    -------
    list of pathlib.Path
        ``mse_vs_k.png`` and ``mse_vs_k.pdf``.
    """
    ns = sorted(int(n) for n in frame["n"].unique())
    colors = _colors(len(ns))
    fig = _figure(11.0, 4.4)
    left, right = fig.subplots(1, 2)
    theory = frame.sort_values("k").groupby("k").first()
    k, inf = theory.index.to_numpy(), float(theory["sigma2_inf"].iloc[0])
    s2 = float(theory["s2"].iloc[0])
    bound = theory["bound"].astype(float)
    left.axhline(1.0, color="k", linewidth=1.2, **{"linestyle": "--"})
    gap = theory["sigma2_k"] - inf
    right.plot(
        k[k >= 1], gap[k >= 1], color="k", label=r"theory $\sigma_k^2 - \sigma_\infty^2$", **_THEORY
    )
    right.plot(
        bound.index,
        bound - inf,
        color="tab:red",
        linewidth=1.2,
        label=rf"bound $s_2^{{2(k-1)}}(\sigma_0^2 - \sigma_\infty^2)$, $s_2^2 = {s2**2:.2f}$",
    )
    width = 0.25 / max(len(ns) - 1, 1)
    for i, (n, color) in enumerate(zip(ns, colors, strict=True)):
        rows = frame[frame["n"] == n].sort_values("k")
        shift = (i - (len(ns) - 1) / 2) * width
        left.errorbar(
            rows["k"] + shift,
            rows["ratio"],
            yerr=2 * rows["ratio_se"],
            color=color,
            linestyle="none",
            label=f"n = {n:,}",
            **_MC,
        )
        keep = (rows["gap_mc"] > 2 * rows["gap_mc_se"]) & (rows["k"] >= 1)
        right.errorbar(
            rows["k"][keep] + shift,
            rows["gap_mc"][keep],
            yerr=2 * rows["gap_mc_se"][keep],
            color=color,
            linestyle="none",
            label=f"paired Monte Carlo, n = {n:,}",
            **_MC,
        )
    first = frame[frame["n"] == ns[0]].sort_values("k")
    unpaired = first["n_mse"] - inf
    keep = (unpaired > 2 * first["mc_se"]) & (first["k"] >= 1)
    right.plot(
        first["k"][keep],
        unpaired[keep],
        color="0.45",
        marker="o",
        markerfacecolor="none",
        linestyle="none",
        label=rf"unpaired $n\cdot$MSE $- \sigma_\infty^2$, n = {ns[0]:,}",
    )
    left.set_ylabel(r"$n \cdot$ MSE $/\ \sigma_k^2$")
    left.set_title(
        r"Monte Carlo $n \cdot$ MSE over theory $\sigma_k^2$ ($\pm 2$ s.e.)", fontsize=10
    )
    right.set_yscale("log")
    right.set_ylabel(r"gap to $\sigma_\infty^2$ (variance units)")
    right.set_title(
        r"geometric decay of $\sigma_k^2 - \sigma_\infty^2$ (slope $\log s_2^2$)", fontsize=10
    )
    for ax in (left, right):
        ax.set_xlabel("balancing steps k (odd = X-step)")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7.5)
    fig.suptitle("Variance reduction vs the number of balancing steps", fontsize=11)
    fig.supxlabel(f"{_finite_n_note(frame)}.\n{_design_note(frame)}", fontsize=8)
    return save_figure(fig, folder, "mse_vs_k")


def _finite_n_note(frame: pd.DataFrame, far: int = 8) -> str:
    r"""What the right panel shows, with this run's numbers.

    For k >= ``far``: the unpaired gap :math:`n \cdot \mathrm{MSE} - \sigma_\infty^2` over the
    theory gap at the smallest n, and the paired gap over the theory gap at each n (unitless),
    as ranges over k.
    """
    ns = sorted(int(n) for n in frame["n"].unique())
    tail = frame[frame["k"] >= far]
    small = tail[tail["n"] == ns[0]]
    unpaired = (small["n_mse"] - small["sigma2_inf"]) / (small["sigma2_k"] - small["sigma2_inf"])
    parts = []
    for n in ns:
        rows = tail[tail["n"] == n]
        ratio = rows["gap_mc"] / rows["gap_theory"]
        parts.append(f"{ratio.min():.2f}-{ratio.max():.2f} at n = {n:,}")
    return (
        rf"For k $\geq$ {far}, where the true gap is small, the unpaired gap "
        rf"$n\cdot$MSE $- \sigma_\infty^2$ is {unpaired.min():.1f}x to {unpaired.max():.1f}x the "
        f"theory gap at n = {ns[0]:,} (the finite-n excess of $n\\cdot$MSE over $\\sigma_k^2$, "
        "magnified);\n"
        rf"the paired gap $n\,\overline{{(\varphi^{{(k)}} - \theta)^2 - (\varphi^{{(60)}} - "
        rf"\theta)^2}}$ on the same replicates is {', '.join(parts)} of the theory gap"
    )


# --------------------------------------------------------------------------------------------
# illustration
# --------------------------------------------------------------------------------------------

_STEP_NAMES = {0: "empirical $P_n$", 1: "X-step", 2: "Y-step"}


def _table(rows: pd.DataFrame) -> np.ndarray:
    return rows.pivot(index="x", columns="y", values="value").to_numpy()


def _marginal_axes(fig: Figure, spec: Any) -> tuple[Axes, Axes, Axes]:
    inner = spec.subgridspec(
        2, 2, width_ratios=(4, 1), height_ratios=(1, 4), wspace=0.02, hspace=0.02
    )
    heat = fig.add_subplot(inner[1, 0])
    top = fig.add_subplot(inner[0, 0], sharex=heat)
    side = fig.add_subplot(inner[1, 1], sharey=heat)
    return heat, top, side


def plot_illustration(frame: pd.DataFrame, folder: Path) -> list[Path]:
    r"""Heat-maps of :math:`P_n^{(k)}`, k = 0..3, and of :math:`P`, with their marginals.

    Each panel shows the table (X on rows, Y on columns; square-root colour scale shared by all
    panels), its Y-marginal above and its X-marginal to the right as bars, and the target
    (true) marginals as orange steps. Odd k matches the X-marginal, even k the Y-marginal.

    Parameters
    ----------
    frame : pandas.DataFrame
        Rows of :func:`raking.simulation.experiments.illustration_point`.
    folder : pathlib.Path
        Output folder.

    Returns
    -------
    list of pathlib.Path
        ``illustration.png`` and ``illustration.pdf``.
    """
    from matplotlib.colors import PowerNorm

    P = _table(frame[frame["table"] == "population"])
    balanced = frame[frame["table"] == "balanced"]
    ks = sorted(int(k) for k in balanced["k"].unique())
    tables = [(k, _table(balanced[balanced["k"] == k])) for k in ks] + [(None, P)]
    vmax = max(float(t.max()) for _, t in tables)
    norm = PowerNorm(gamma=0.5, vmin=0.0, vmax=vmax)
    fig = _figure(3.3 * len(tables) + 0.6, 4.4)
    outer = fig.add_gridspec(1, len(tables) + 1, width_ratios=[1.0] * len(tables) + [0.06])
    target_x, target_y = P.sum(axis=1), P.sum(axis=0)
    idx = np.arange(P.shape[0])
    edges = np.arange(P.shape[0] + 1) - 0.5
    top_max = 1.5 * max(float(t.sum(axis=0).max()) for _, t in tables)
    side_max = 1.5 * max(float(t.sum(axis=1).max()) for _, t in tables)
    for i, (k, table) in enumerate(tables):
        spec = outer[0, i]
        heat, top, side = _marginal_axes(fig, spec)
        image = heat.imshow(table, cmap="Blues", norm=norm, aspect="auto", interpolation="nearest")
        top.bar(idx, table.sum(axis=0), width=1.0, color=_DATA_COLOR)
        top.stairs(target_y, edges, color=_TARGET_COLOR, linewidth=1.2)
        side.barh(idx, table.sum(axis=1), height=1.0, color=_DATA_COLOR)
        side.stairs(target_x, edges, color=_TARGET_COLOR, linewidth=1.2, orientation="horizontal")
        top.set_ylim(0, top_max)
        side.set_xlim(0, side_max)
        top.tick_params(labelbottom=False, labelleft=False, left=False)
        side.tick_params(labelleft=False, labelbottom=False, bottom=False)
        heat.set_xlabel("Y")
        if i == 0:
            heat.set_ylabel("X")
        if k is None:
            title = "population $P$"
        else:
            err_x = float(np.abs(table.sum(axis=1) - target_x).max())
            err_y = float(np.abs(table.sum(axis=0) - target_y).max())
            step = _STEP_NAMES.get(k, "X-step" if k % 2 else "Y-step")
            title = f"k = {k}: {step}\nmax error X {err_x:.1e}, Y {err_y:.1e}"
        top.set_title(title, fontsize=9)
    fig.colorbar(image, cax=fig.add_subplot(outer[0, -1]), label="probability (square-root scale)")
    first = balanced.iloc[0]
    empty_x, empty_y = str(first["empty_x"]), str(first["empty_y"])
    empty_x = "none" if empty_x == "[]" else empty_x
    empty_y = "none" if empty_y == "[]" else empty_y
    fig.suptitle(
        f"Balancing iterations on the authors' {P.shape[0]}x{P.shape[1]} example, "
        f"n = {int(first['n'])} (bars: marginals of the table; orange: targets)",
        fontsize=11,
    )
    fig.supxlabel(
        f"Unobserved categories: X {empty_x}, Y {empty_y}. Empty categories are dropped and "
        "the targets renormalised over the observed ones [INF] (the authors' code stops on "
        f"missing mass). Marginal errors are against the true marginals.\n{_INF_NOTE}.",
        fontsize=8,
    )
    return save_figure(fig, folder, "illustration")
