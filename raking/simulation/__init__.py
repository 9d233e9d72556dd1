"""Monte Carlo studies of the balanced estimator.

- :mod:`raking.simulation.montecarlo`: the seeded sweep engine (serial or Dask tasks);
- :mod:`raking.simulation.experiments`: the experiments it runs (designs, grids, replicates,
  summaries), one per figure of ``simulations/``.
"""
