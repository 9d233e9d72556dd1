"""Every check of user input, in one place.

Each function takes the value and the argument's ``name``, returns a clean value or raises a
:class:`ValueError` (or :class:`TypeError`, or :class:`~raking.exceptions.EmptyCategoryError`)
whose message says which argument, what it received, why that is a problem and how to fix it.
Public functions call these once; private functions never validate. Import the checks from
``raking.validation``; the private submodules only split the file by kind of input:

- ``_arrays``: the kernel's (batched) tables and targets, any array-API library, 2-D
  ``scipy.sparse`` / ``cupyx.scipy.sparse`` tables, and the compute dtype of a table (float32
  for float16 / bfloat16 storage);
- ``_scalars``: step counts, tolerances, sizes, noise levels, options and seeds;
- ``_statistics``: the statistics layer's NumPy inputs (count tables, codes, ``h``, pmfs);
- ``_calibration``: :func:`raking.calibrate` (totals by level and numeric totals, bounds of
  the logit distance, singular and inconsistent systems) and ``RakeResult.trim``;
- ``_quantiles``: ``RakeResult.quantile`` (probabilities, quantile rule, ``alpha``, the column
  and empty domains);
- ``_design``: the sampling design of survey raking (stages, strata, fpc, lonely PSUs);
- ``_estimates``: the estimators of a survey result (ratio columns, domains, contrasts, ``ci=``);
- ``_replicates``: replicate weights of survey raking (``replicates=``, its options, given
  replicate weights, the design each method needs);
- ``_survey``: survey raking (targets by level, design weights, bounds, missing and unknown levels),
  shared by :mod:`raking.survey.weights` and the pandas front end :mod:`raking.survey.frontend`;
- ``_messages``: the message builder they share (:func:`listed`, also used by the statistics
  layer's own messages).
"""

from raking.validation._arrays import (
    check_compute_dtype,
    check_is_array,
    check_sparse_table,
    check_table,
    check_targets,
    count_targets,
    default_compute_dtype,
    find_empty_categories,
    is_half,
    raise_on_empty_categories,
    table_namespace,
    total_tolerance,
)
from raking.validation._calibration import (
    CALIBRATION_HINT,
    CALIBRATION_METHODS,
    check_calibration_bounds,
    check_numeric_column,
    check_numeric_reach,
    check_trim_bounds,
    check_trim_reach,
    raise_if_out_of_reach_with_total,
    raise_on_collinear,
    raise_on_inconsistent_totals,
    raise_on_share_totals,
    raise_without_population_size,
    split_calibration_totals,
)
from raking.validation._design import (
    LONELY_PSU_HINT,
    LONELY_PSU_OPTIONS,
    check_lonely_psu,
    raise_fpc_not_constant,
    raise_fpc_out_of_range,
    raise_not_nested,
    raise_single_unit,
    stage_columns,
)
from raking.validation._estimates import (
    CI_OPTIONS,
    check_ci,
    check_contrast,
    check_estimate_na,
    check_ratio_dtype,
    raise_empty_domain,
    raise_missing_values,
    raise_no_complete_rows,
    raise_zero_denominator,
)
from raking.validation._messages import listed
from raking.validation._quantiles import (
    QUANTILE_RULE_HINT,
    QUANTILE_RULES,
    check_alpha,
    check_quantile_levels,
    check_quantile_rule,
    raise_non_numeric_quantile_column,
    raise_on_empty_domain,
)
from raking.validation._replicates import (
    REPLICATE_TYPES,
    check_replicate_design,
    check_replicate_options,
    check_replicate_scales,
    check_replicate_weights,
    check_replicates,
)
from raking.validation._scalars import (
    ACCELERATOR_CHECK_SWEEPS,
    MISSING_POLICIES,
    check_check_every,
    check_max_steps,
    check_nonnegative,
    check_option,
    check_policy,
    check_positive_int,
    check_seed,
    check_steps,
    check_steps_or_inf,
    check_tol,
)
from raking.validation._statistics import (
    PROBABILITY_TOL,
    check_codes,
    check_counts,
    check_function,
    check_joint,
    check_marginal_pmfs,
    check_probability,
    check_shape,
    check_xy_targets,
)
from raking.validation._survey import (
    MIN_LEVEL_ROWS,
    NA_OPTIONS,
    SHARE_TOL,
    UNKNOWN_OPTIONS,
    as_numbers,
    check_bounded_levels,
    check_bounds,
    check_columns,
    check_design_weights,
    check_target_values,
    check_weights_dtype,
    raise_on_empty_levels,
    raise_on_na,
    raise_on_unknown_levels,
    resolve_total,
    warn_sparse_levels,
)

__all__ = [
    "ACCELERATOR_CHECK_SWEEPS",
    "CALIBRATION_HINT",
    "CALIBRATION_METHODS",
    "CI_OPTIONS",
    "LONELY_PSU_HINT",
    "LONELY_PSU_OPTIONS",
    "MIN_LEVEL_ROWS",
    "MISSING_POLICIES",
    "NA_OPTIONS",
    "PROBABILITY_TOL",
    "QUANTILE_RULES",
    "QUANTILE_RULE_HINT",
    "REPLICATE_TYPES",
    "SHARE_TOL",
    "UNKNOWN_OPTIONS",
    "as_numbers",
    "check_alpha",
    "check_bounded_levels",
    "check_bounds",
    "check_calibration_bounds",
    "check_check_every",
    "check_ci",
    "check_codes",
    "check_columns",
    "check_compute_dtype",
    "check_contrast",
    "check_counts",
    "check_design_weights",
    "check_estimate_na",
    "check_function",
    "check_is_array",
    "check_joint",
    "check_lonely_psu",
    "check_marginal_pmfs",
    "check_max_steps",
    "check_nonnegative",
    "check_numeric_column",
    "check_numeric_reach",
    "check_option",
    "check_policy",
    "check_positive_int",
    "check_probability",
    "check_quantile_levels",
    "check_quantile_rule",
    "check_ratio_dtype",
    "check_replicate_design",
    "check_replicate_options",
    "check_replicate_scales",
    "check_replicate_weights",
    "check_replicates",
    "check_seed",
    "check_shape",
    "check_sparse_table",
    "check_steps",
    "check_steps_or_inf",
    "check_table",
    "check_target_values",
    "check_targets",
    "check_tol",
    "check_trim_bounds",
    "check_trim_reach",
    "check_weights_dtype",
    "check_xy_targets",
    "count_targets",
    "default_compute_dtype",
    "find_empty_categories",
    "is_half",
    "listed",
    "raise_empty_domain",
    "raise_fpc_not_constant",
    "raise_fpc_out_of_range",
    "raise_if_out_of_reach_with_total",
    "raise_missing_values",
    "raise_no_complete_rows",
    "raise_non_numeric_quantile_column",
    "raise_not_nested",
    "raise_on_collinear",
    "raise_on_empty_categories",
    "raise_on_empty_domain",
    "raise_on_empty_levels",
    "raise_on_inconsistent_totals",
    "raise_on_na",
    "raise_on_share_totals",
    "raise_on_unknown_levels",
    "raise_single_unit",
    "raise_without_population_size",
    "raise_zero_denominator",
    "resolve_total",
    "split_calibration_totals",
    "stage_columns",
    "table_namespace",
    "total_tolerance",
    "warn_sparse_levels",
]
