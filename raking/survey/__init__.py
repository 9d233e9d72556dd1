"""Survey raking of a pandas DataFrame: one pipeline, modules in the order the data flows.

1. :mod:`raking.survey.frontend`: :func:`~raking.survey.frontend.rake` (``raking.rake``), the
   front end that validates the data once and drives the steps below;
2. :mod:`raking.survey.codes`: the targets parsed and each raked column integer-coded;
3. :mod:`raking.survey.weights`: units (rows, or cells of the crossed codes) and the solver,
   with its driver :mod:`raking.survey.loops` and compiled passes :mod:`raking.survey.compiled`;
4. :mod:`raking.survey.results` and :mod:`raking.survey.estimates`: the result and its
   estimates (means, totals, proportions, by domain);
5. :mod:`raking.survey.linearization`: the variance that accounts for the raking.

Beside it: :mod:`raking.survey.data` (the API data of R ``survey``) and :mod:`raking.survey.cli`
(the ``raking rake`` subcommand). The input checks are in :mod:`raking.validation` (shared).
Nothing here is imported by ``import raking``; pandas is imported at the top of these modules.
"""
