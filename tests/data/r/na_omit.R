# R references for na="omit" of the survey estimates (tests/test_survey_na.py): R survey's
# na.rm = TRUE (svymean, svytotal, svyratio, svyciprop, svyquantile, svyby) and svyglm's
# default na.action = na.omit, on raked designs with missing values in the analysis columns.
# Run from the repository root: Rscript tests/data/r/na_omit.R
# Writes tests/data/r/na_omit_estimates.csv: one row per (case, quantity, value), 17 digits.
#
# Missing values, set the same way in the Python tests (by the school number snum):
#   api00   NA where snum %% 7 == 0
#   api99   NA where snum %% 5 == 2
#   ell     NA where snum %% 6 == 1
#   yr.rnd  NA where snum %% 4 == 3
# Designs, each raked (calibrate calfun = "raking") to the population margins stype + sch.wide:
#   strat: apistrat, id = ~1, strata = ~stype, weights = ~pw, fpc = ~fpc
#   clus1: apiclus1, id = ~dnum, weights = ~pw, fpc = ~fpc
#   clus2: apiclus2, id = ~dnum + snum, weights = ~pw, fpc = ~fpc1 + fpc2 (two stages)
#   jkn:   as.svrepdesign(strat design, type = "JKn"), then raked (every replicate re-raked)
#   jk1:   as.svrepdesign(clus1 design, type = "JK1"), then raked
suppressMessages(library(survey))
data(api)
cat(R.version.string, "survey", as.character(packageVersion("survey")), "\n")
with_missing <- function(frame) {
  frame$api00[frame$snum %% 7 == 0] <- NA
  frame$api99[frame$snum %% 5 == 2] <- NA
  frame$ell[frame$snum %% 6 == 1] <- NA
  frame$yr.rnd[frame$snum %% 4 == 3] <- NA
  frame
}
strat <- with_missing(apistrat)
clus1 <- with_missing(apiclus1)
clus2 <- with_missing(apiclus2)
pop <- c(`(Intercept)` = 6194, stypeH = 755, stypeM = 1018, sch.wideYes = 5122)
rake_it <- function(design) {
  calibrate(design, ~stype + sch.wide, pop, calfun = "raking", epsilon = 1e-13, maxit = 500)
}
designs <- list(
  strat = rake_it(svydesign(id = ~1, strata = ~stype, weights = ~pw, fpc = ~fpc, data = strat)),
  clus1 = rake_it(svydesign(id = ~dnum, weights = ~pw, fpc = ~fpc, data = clus1)),
  clus2 = rake_it(svydesign(id = ~dnum + snum, weights = ~pw, fpc = ~fpc1 + fpc2, data = clus2)),
  jkn = rake_it(as.svrepdesign(
    svydesign(id = ~1, strata = ~stype, weights = ~pw, fpc = ~fpc, data = strat), type = "JKn"
  )),
  jk1 = rake_it(as.svrepdesign(
    svydesign(id = ~dnum, weights = ~pw, fpc = ~fpc, data = clus1), type = "JK1"
  ))
)
control <- glm.control(epsilon = 1e-14, maxit = 100)
rows <- list()
diagonal <- function(x) if (is.matrix(x)) diag(x) else x
put <- function(case, quantity, value) {
  value <- as.vector(value)
  names <- if (length(value) == 1) quantity else paste0(quantity, ".", seq_along(value))
  rows[[length(rows) + 1]] <<- data.frame(case = case, quantity = names,
                                          value = sprintf("%.17g", value))
}
probs <- c(0.1, 0.5, 0.9)
for (case in names(designs)) {
  d <- designs[[case]]
  rep <- inherits(d, "svyrep.design")
  # mean and total of one column, with design effects
  for (stat in c("mean", "total")) {
    f <- if (stat == "mean") svymean else svytotal
    m <- f(~api00, d, na.rm = TRUE, deff = TRUE)
    put(case, paste0(stat, ".estimate"), coef(m)); put(case, paste0(stat, ".se"), SE(m))
    put(case, paste0(stat, ".deff"), deff(m))
    mr <- f(~api00, d, na.rm = TRUE, deff = "replace")
    put(case, paste0(stat, ".deff_replace"), deff(mr))
    # joint: a row missing in either column is left out of both
    m2 <- f(~api00 + api99, d, na.rm = TRUE)
    put(case, paste0(stat, "2.estimate"), coef(m2)); put(case, paste0(stat, "2.cov"), vcov(m2))
  }
  # shares of a factor with missing values, and its small-proportion intervals
  pm <- svymean(~yr.rnd, d, na.rm = TRUE)
  put(case, "prop.estimate", coef(pm)); put(case, "prop.se", SE(pm))
  for (method in c("logit", "beta")) {
    p <- svyciprop(~I(yr.rnd == "Yes"), d, method = method, na.rm = TRUE)
    put(case, paste0("ciprop_", method, ".estimate"), coef(p))
    put(case, paste0("ciprop_", method, ".ci"), attr(p, "ci"))
  }
  # by domain: svyby subsets the design to the domain, then na.rm (the intervals' df are the
  # domain's, missing rows included, as svyciprop's default df = degf(design))
  pb <- svyby(~yr.rnd, ~stype, d, svymean, na.rm = TRUE)
  # coef: levels outer, domains inner; SE: a domains x levels matrix, written by domain
  put(case, "prop_by.estimate", coef(pb)); put(case, "prop_by.se", t(SE(pb)))
  for (method in c("logit", "beta")) {
    cb <- svyby(~I(yr.rnd == "Yes"), ~sch.wide, d, svyciprop, method = method, vartype = "ci",
                na.rm = TRUE)
    put(case, paste0("ciprop_by_", method, ".ci"), cbind(cb[["ci_l"]], cb[["ci_u"]]))
  }
  tb <- svyby(~api00, ~stype, d, svytotal, na.rm = TRUE)
  put(case, "total_by.estimate", coef(tb)); put(case, "total_by.se", SE(tb))
  # ratio: rows missing in the numerator or the denominator are left out
  r <- svyratio(~api00, ~api99, d, na.rm = TRUE)
  put(case, "ratio.estimate", coef(r)); put(case, "ratio.se", SE(r))
  rb <- svyby(~api00, ~stype, d, svyratio, denominator = ~api99, na.rm = TRUE)
  put(case, "ratio_by.estimate", coef(rb)); put(case, "ratio_by.se", SE(rb))
  # domain means, their covariance and a contrast (the svyratio form of estimates.R on a
  # calibrated survey.design2, where svyby(covmat = TRUE) stops)
  b <- svyby(~api00, ~stype, d, svymean, na.rm = TRUE, deff = TRUE)
  put(case, "by.estimate", coef(b)); put(case, "by.se", SE(b)); put(case, "by.deff", deff(b))
  if (rep) {
    bc <- svyby(~api00, ~stype, d, svymean, na.rm = TRUE, covmat = TRUE)
  } else {
    rr <- svyratio(~I(api00 * (stype == "E")) + I(api00 * (stype == "H")) +
                     I(api00 * (stype == "M")),
                   ~I(stype == "E") + I(stype == "H") + I(stype == "M"), d, covmat = TRUE,
                   na.rm = TRUE)
    keep <- c(1, 5, 9)
    bc <- as.vector(coef(rr))[keep]
    attr(bc, "var") <- vcov(rr)[keep, keep]
    class(bc) <- "svystat"
    names(bc) <- c("E", "H", "M")
  }
  stopifnot(max(abs(coef(bc) - coef(b))) < 1e-9 * max(abs(coef(b))))
  put(case, "by.cov", vcov(bc))
  cst <- svycontrast(bc, c(E = 1, H = -1, M = 0))
  put(case, "contrast.estimate", coef(cst)); put(case, "contrast.se", SE(cst))
  # quantiles (Woodruff, qrule = "math"): the design subset to the non-missing rows, whose
  # degf is that of the subset; by stype: the domain's subset, then na.rm
  q <- svyquantile(~api00, d, probs, ci = TRUE, na.rm = TRUE)[[1]]
  put(case, "quantile", q[, 1]); put(case, "quantile.ci_l", q[, 2])
  put(case, "quantile.ci_u", q[, 3]); put(case, "quantile.se", q[, 4])
  for (level in c("E", "H", "M")) {
    qd <- svyquantile(~api00, d[d$variables$stype == level, ], probs, ci = TRUE,
                      na.rm = TRUE)[[1]]
    put(case, paste0("quantile_", level), qd[, 1])
    put(case, paste0("quantile_", level, ".se"), qd[, 4])
  }
  # svyglm: na.action = na.omit (the design subset to the complete rows)
  g <- svyglm(api00 ~ ell + meals, design = d, control = control)
  put(case, "glm_gaussian.estimate", coef(g)); put(case, "glm_gaussian.se", SE(g))
  put(case, "glm_gaussian.df_resid", g$df.residual)
  gb <- svyglm(I(api00 > 700) ~ ell + meals, design = d, family = quasibinomial(),
               control = control)
  put(case, "glm_binomial.estimate", coef(gb)); put(case, "glm_binomial.se", SE(gb))
  put(case, "glm_binomial.df_resid", gb$df.residual)
  put(case, "n_api00_missing", sum(is.na(d$variables$api00)))
}
out <- do.call(rbind, rows)
write.csv(out, "tests/data/r/na_omit_estimates.csv", row.names = FALSE, quote = FALSE)
