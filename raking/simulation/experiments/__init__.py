r"""Monte Carlo experiments of the balanced estimator: designs, grids, replicates, summaries.

Each experiment is an :class:`Experiment`: a ``grid`` of JSON-able points, a top-level ``point``
function that turns one grid point and its own :class:`numpy.random.SeedSequence` into tidy rows, a
``plot`` function (:mod:`raking.plotting`) and the replicate count of a point. The sweep engine
(:mod:`raking.simulation.montecarlo`) spawns one seed per grid point, runs the points serially or as
Dask tasks, writes the rows to ``NAME.csv`` and calls ``plot``.

Every point draws its count tables directly, one multinomial table per replicate and all replicates
in one call (:func:`raking.stats.marginals.sample_counts`), and balances all replicates of a step
count ``k`` in one batched :func:`raking.stats.estimators.balanced_estimate` call: nothing loops
over samples or replicates in Python. Replicates with an empty category (missing mass, ``theory.md``
§1.2) get the empirical estimate (``missing="empirical"``) and are counted in the ``n_fallback``
column, never dropped.

=================  ============================================================================
``dependence``     MSE vs the dependence level :math:`s = s_2` of the empirical, IPWI and
                   balanced (k = 1, 2, 4, 8) estimators, one line per marginal-noise level
                   :math:`\varepsilon` (``theory.md`` §4-5), with the first-order theory, for
                   three h with additive shares 0.77, 0.50, 0.13 (pure noise).
``theory_vs_mc``   :math:`n \cdot \mathrm{MSE}` vs :math:`\sigma_k^2`, k = 0..8,
                   n = 100, 1000, 10000 (``theory.md`` §2.2-2.3).
``mse_vs_n``       the :math:`O(1/n)` rate: MSE vs n with :math:`\sigma_k^2 / n`.
``mse_vs_k``       the geometric decay of :math:`\sigma_k^2` in k and its spectral-gap bound:
                   :math:`n \cdot \mathrm{MSE} / \sigma_k^2` and paired gaps at n = 10^3..10^5.
``illustration``   :math:`P_n^{(k)}`, k = 0..3, on the authors' 50 x 50 example (``theory.md`` §5).
=================  ============================================================================

The simulation designs are **our assumptions** (``theory.md`` §5 [INF]); the paper's support
sizes, joint distributions, functions, sample sizes and noise model are not confirmed. pandas is
used only by :func:`summarize` and matplotlib only by :mod:`raking.plotting`, both imported
lazily.

Layout (each module named for what it holds; every name in ``__all__`` is re-exported here):

=================  ============================================================================
``designs``        (public) :class:`Design`, :func:`build_design`,
                   :func:`two_valued_direction`, :func:`illustration_joint`,
                   :data:`DEPENDENCE_DESIGN`, :data:`REFERENCE_DESIGN`
``_options``       :class:`Options`, :class:`Experiment`, :data:`BACKENDS`
``_replicates``    replicates balanced on a backend, their Monte Carlo statistics
``_dependence``    :func:`dependence_point` and its grid
``_k_sweep``       :func:`k_sweep_point` and the grids of ``theory_vs_mc``, ``mse_vs_n``,
                   ``mse_vs_k``
``_illustration``  :func:`illustration_point` and its grid
``_registry``      :data:`EXPERIMENTS` and the plot wrappers (:mod:`raking.plotting`, lazily)
``_summaries``     :func:`summarize`
=================  ============================================================================

The point functions are top-level functions of importable modules, so Dask can pickle them.
"""

from raking.simulation.experiments._dependence import dependence_point
from raking.simulation.experiments._illustration import illustration_point
from raking.simulation.experiments._k_sweep import k_sweep_point
from raking.simulation.experiments._options import BACKENDS, Experiment, Options
from raking.simulation.experiments._registry import EXPERIMENTS
from raking.simulation.experiments._summaries import summarize
from raking.simulation.experiments.designs import (
    DEPENDENCE_DESIGN,
    REFERENCE_DESIGN,
    Design,
    build_design,
    illustration_joint,
    two_valued_direction,
)

__all__ = [
    "BACKENDS",
    "DEPENDENCE_DESIGN",
    "EXPERIMENTS",
    "REFERENCE_DESIGN",
    "Design",
    "Experiment",
    "Options",
    "build_design",
    "dependence_point",
    "illustration_joint",
    "illustration_point",
    "k_sweep_point",
    "summarize",
    "two_valued_direction",
]
