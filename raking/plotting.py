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


def plot_dependence(frame: pd.DataFrame, folder: Path) -> list[Path]:
    r"""MSE vs the dependence level s, one panel per estimator, one line per noise level.

    Markers: Monte Carlo MSE with :math:`\pm 2` standard errors; dashed: the first-order theory
    :math:`\mathrm{bias}^2 + \sigma^2/n` in the same colour; dotted: the bias floor
    :math:`\mathrm{bias}^2` of each :math:`\varepsilon > 0`; grey: the empirical estimator's
    :math:`\mathrm{Var}(h)/n`, repeated in every panel for comparison. Log-scale MSE, shared
    across panels; one row of panels per sample size.

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

    ns = sorted(int(n) for n in frame["n"].unique())
    eps_values = sorted(float(e) for e in frame["eps"].unique())
    palette = _EPS_COLORS if len(eps_values) <= len(_EPS_COLORS) else _colors(len(eps_values))
    colors = dict(zip(eps_values, palette, strict=False))
    n_panels = len(_panels(frame[frame["n"] == ns[0]]))
    cols = 3
    rows_per_n = -(-n_panels // cols)
    fig = _figure(4.0 * cols, 3.0 * rows_per_n * len(ns) + 1.1)
    axes = fig.subplots(rows_per_n * len(ns), cols, sharex=True, sharey=True, squeeze=False)
    for block, n in enumerate(ns):
        sub = frame[frame["n"] == n]
        empirical = sub[sub["estimator"] == "empirical"].groupby("s")["theory_mse"].first()
        for i, (title, rows) in enumerate(_panels(sub)):
            ax = axes[block * rows_per_n + i // cols, i % cols]
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
            if block == len(ns) - 1 and i // cols == rows_per_n - 1:
                ax.set_xlabel(r"dependence level $s = s_2$")
        for j in range(n_panels, rows_per_n * cols):
            axes[block * rows_per_n + j // cols, j % cols].set_visible(False)
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
    axes[0, 0].set_ylim(bottom=0.5 * float(low[low > 0].min()))
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
    fig.supxlabel(
        f"Design [INF]: {int(first['m'])}x{int(first['l'])}, "
        r"$P = P_X P_Y (1 + s\,\alpha\beta)$ ($s_2 = s$ exactly), "
        f"{_h_label(first)}; n = {', '.join(map(str, ns))}; {_reps_note(frame)}.\n"
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
    r"""The decay of :math:`n \cdot \mathrm{MSE}` and :math:`\sigma_k^2` in k, with the bound.

    Left: :math:`n \cdot \mathrm{MSE}` (:math:`\pm 2` standard errors), :math:`\sigma_k^2`,
    :math:`\sigma_\infty^2` and the spectral-gap bound
    :math:`\sigma_\infty^2 + s_2^{2(k-1)}(\sigma_0^2 - \sigma_\infty^2)` (k >= 1). Right: the
    gaps to :math:`\sigma_\infty^2` on a log scale, where the geometric rate :math:`s_2^2` per
    step is a straight line; Monte Carlo gaps are shown where they exceed two standard errors.
    Where :math:`\sigma_k^2 - \sigma_\infty^2` is small (k >= 8 in the default run) the Monte Carlo
    gaps lie well above theory (2-6x at n = 1000): :math:`n \cdot \mathrm{MSE}` exceeds
    :math:`\sigma_k^2` by a finite-n excess of a few percent (``theory_vs_mc``: it vanishes as n
    grows), and subtracting :math:`\sigma_\infty^2` leaves that excess as large as the gap
    itself. The figure says so (:func:`_finite_n_note`). The Theorem 1 shape
    :math:`\sigma_k^2/n + C k^6 n^{-3/2}` is not drawn: its constant is unconfirmed
    (``theory.md`` §3).

    Parameters
    ----------
    frame : pandas.DataFrame
        Rows of :func:`raking.simulation.experiments.k_sweep_point`.
    folder : pathlib.Path
        Output folder.

    Returns
    -------
    list of pathlib.Path
        ``mse_vs_k.png`` and ``mse_vs_k.pdf``.
    """
    ns = sorted(int(n) for n in frame["n"].unique())
    colors = _colors(len(ns))
    fig = _figure(11.0, 4.2)
    left, right = fig.subplots(1, 2)
    theory = frame.sort_values("k").groupby("k").first()
    k, inf = theory.index.to_numpy(), float(theory["sigma2_inf"].iloc[0])
    s2 = float(theory["s2"].iloc[0])
    bound = theory["bound"].astype(float)
    left.plot(k, theory["sigma2_k"], color="k", label=r"theory $\sigma_k^2$", **_THEORY)
    left.plot(
        bound.index,
        bound,
        color="tab:red",
        linewidth=1.2,
        label=r"bound $\sigma_\infty^2 + s_2^{2(k-1)}(\sigma_0^2 - \sigma_\infty^2)$",
    )
    left.axhline(inf, color="0.4", linestyle=":", label=r"$\sigma_\infty^2$ (efficient, BRW)")
    gap = theory["sigma2_k"] - inf
    right.plot(
        k[k >= 1], gap[k >= 1], color="k", label=r"$\sigma_k^2 - \sigma_\infty^2$", **_THEORY
    )
    right.plot(
        bound.index,
        bound - inf,
        color="tab:red",
        linewidth=1.2,
        label=rf"$s_2^{{2(k-1)}}(\sigma_0^2 - \sigma_\infty^2)$, $s_2^2 = {s2**2:.2f}$",
    )
    for n, color in zip(ns, colors, strict=True):
        rows = frame[frame["n"] == n].sort_values("k")
        left.errorbar(
            rows["k"],
            rows["n_mse"],
            yerr=2 * rows["mc_se"],
            color=color,
            label=f"Monte Carlo, n = {n}",
            **_MC,
        )
        mc_gap = rows["n_mse"] - inf
        keep = (mc_gap > 2 * rows["mc_se"]) & (rows["k"] >= 1)
        right.errorbar(
            rows["k"][keep],
            mc_gap[keep],
            yerr=2 * rows["mc_se"][keep],
            color=color,
            linestyle="none",
            label=f"Monte Carlo, n = {n}",
            **_MC,
        )
    left.set_yscale("log")
    left.set_ylabel(r"$n \cdot$ MSE  /  variance")
    left.set_title(r"$n \cdot$ MSE and $\sigma_k^2$ fall toward $\sigma_\infty^2$", fontsize=10)
    right.set_yscale("log")
    right.set_ylabel(r"gap to $\sigma_\infty^2$")
    right.set_title(
        r"geometric decay: slope $\log s_2^2$ per step (Monte Carlo: + finite-n excess)",
        fontsize=10,
    )
    for ax in (left, right):
        ax.set_xlabel("balancing steps k (odd = X-step)")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle("Variance reduction vs the number of balancing steps", fontsize=11)
    fig.supxlabel(f"{_finite_n_note(frame)}.\n{_design_note(frame)}", fontsize=8)
    return save_figure(fig, folder, "mse_vs_k")


def _finite_n_note(frame: pd.DataFrame, far: int = 8) -> str:
    r"""Why the Monte Carlo gaps exceed the theory gaps at large k, with this run's numbers.

    At the largest n: the relative excess :math:`n \cdot \mathrm{MSE} / \sigma_k^2 - 1` over
    k >= 1, and the ratio of the Monte Carlo gap :math:`n \cdot \mathrm{MSE} - \sigma_\infty^2`
    to the theory gap :math:`\sigma_k^2 - \sigma_\infty^2` for k >= ``far`` (both unitless).
    """
    n = int(frame["n"].max())
    rows = frame[(frame["n"] == n) & (frame["k"] >= 1)]
    excess = rows["n_mse"] / rows["sigma2_k"] - 1.0
    note = (
        rf"Right: the Monte Carlo gaps $n\cdot$MSE $- \sigma_\infty^2$ include the finite-n "
        rf"excess of $n\cdot$MSE over $\sigma_k^2$ ({100 * excess.min():+.0f}% to "
        f"{100 * excess.max():+.0f}% at n = {n}; it vanishes as n grows, see theory_vs_mc)"
    )
    tail = rows[rows["k"] >= far]
    if len(tail):
        ratio = (tail["n_mse"] - tail["sigma2_inf"]) / (tail["sigma2_k"] - tail["sigma2_inf"])
        note += (
            ";\n"
            rf"where the true gap is that small (k $\geq$ {far}), subtracting "
            rf"$\sigma_\infty^2$ magnifies the excess: the Monte Carlo gaps are "
            f"{ratio.min():.1f}x to {ratio.max():.1f}x the theory gaps"
        )
    return note


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
