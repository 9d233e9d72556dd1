"""The statistics layer: balancing as an estimator, in NumPy float64.

- :mod:`raking.stats.estimators`: the k-step balanced estimator, the empirical and IPW(I)
  estimators, the fallback for sparse tables, and their standard errors;
- :mod:`raking.stats.marginals`: count tables, multinomial sampling, misspecified marginals;
- :mod:`raking.stats.operators`: the conditional-mean operators and their singular system;
- :mod:`raking.stats.variance`: the asymptotic variance, computed two ways;
- :mod:`raking.stats.theory`: population-level variance, bias and MSE.

It imports the kernel (never the applications) and no heavy package.
"""
