# R references for ratios, covariances, contrasts, proportion intervals and design effects
# (tests/test_survey_estimates.py).
# Generated with: R version 4.2.2 Patched (2022-11-10 r83330), survey 4.1.1.
# Run from the repository root: Rscript tests/data/r/estimates.R
# Writes tests/data/r/estimates.csv: one row per (case, quantity, value), every value to 17 digits.
# Designs, each raked (calibrate calfun = "raking") to the population margins stype + sch.wide of
# raking.survey.data.api_population_margins():
#   clus1: apiclus1, id = ~dnum, weights = ~pw, fpc = ~fpc
#   strat: apistrat, id = ~1, strata = ~stype, weights = ~pw, fpc = ~fpc
#   clus2: apiclus2, id = ~dnum + snum, weights = ~pw, fpc = ~fpc1 + fpc2 (two stages)
#   jkn:   as.svrepdesign(strat design, type = "JKn"), then raked (every replicate re-raked)
#   jk1:   as.svrepdesign(clus1 design, type = "JK1"), then raked
suppressMessages(library(survey))
data(api)
cat(R.version.string, "survey", as.character(packageVersion("survey")), "\n")
pop <- c(`(Intercept)` = 6194, stypeH = 755, stypeM = 1018, sch.wideYes = 5122)
rake_it <- function(design) {
  calibrate(design, ~stype + sch.wide, pop, calfun = "raking", epsilon = 1e-13, maxit = 500)
}
designs <- list(
  clus1 = rake_it(svydesign(id = ~dnum, weights = ~pw, fpc = ~fpc, data = apiclus1)),
  strat = rake_it(svydesign(id = ~1, strata = ~stype, weights = ~pw, fpc = ~fpc, data = apistrat)),
  clus2 = rake_it(svydesign(id = ~dnum + snum, weights = ~pw, fpc = ~fpc1 + fpc2, data = apiclus2)),
  jkn = rake_it(as.svrepdesign(
    svydesign(id = ~1, strata = ~stype, weights = ~pw, fpc = ~fpc, data = apistrat), type = "JKn"
  )),
  jk1 = rake_it(as.svrepdesign(
    svydesign(id = ~dnum, weights = ~pw, fpc = ~fpc, data = apiclus1), type = "JK1"
  ))
)
rows <- list()
diagonal <- function(x) if (is.matrix(x)) diag(x) else x
put <- function(case, quantity, value) {
  value <- as.vector(value)
  names <- if (length(value) == 1) quantity else paste0(quantity, ".", seq_along(value))
  rows[[length(rows) + 1]] <<- data.frame(case = case, quantity = names,
                                          value = sprintf("%.17g", value))
}
for (case in names(designs)) {
  d <- designs[[case]]
  rep <- inherits(d, "svyrep.design")
  # ratio of totals (apiclus2 has missing enroll: api00 / api99 there)
  num <- if (case == "clus2") ~api00 else ~api.stu
  den <- if (case == "clus2") ~api99 else ~enroll
  r <- svyratio(num, den, d)
  put(case, "ratio.estimate", coef(r)); put(case, "ratio.se", SE(r))
  rb <- svyby(num, ~stype, d, svyratio, denominator = den)
  put(case, "ratio_by.estimate", coef(rb)); put(case, "ratio_by.se", SE(rb))
  # joint mean and total of two columns, their covariance and design effects
  for (stat in c("mean", "total")) {
    f <- if (stat == "mean") svymean else svytotal
    m <- f(~api00 + api99, d, deff = TRUE)
    put(case, paste0(stat, "2.estimate"), coef(m)); put(case, paste0(stat, "2.cov"), vcov(m))
    put(case, paste0(stat, "2.deff"), diagonal(deff(m)))
    mr <- f(~api00 + api99, d, deff = "replace")
    put(case, paste0(stat, "2.deff_replace"), diagonal(deff(mr)))
  }
  # domain means with their covariance, a contrast, domain design effects
  # (svyby(covmat = TRUE) stops on a calibrated survey.design2 in survey 4.1.1 -- "number of
  # items to replace is not a multiple of replacement length" -- so there the covariance of the
  # domain means is svyratio(covmat = TRUE)'s of y 1_D over 1_D, the same linearisation)
  b <- svyby(~api00, ~stype, d, svymean, deff = TRUE)
  put(case, "by.estimate", coef(b)); put(case, "by.deff", deff(b))
  if (rep) {
    bc <- svyby(~api00, ~stype, d, svymean, covmat = TRUE)
  } else {
    rr <- svyratio(~I(api00 * (stype == "E")) + I(api00 * (stype == "H")) +
                     I(api00 * (stype == "M")),
                   ~I(stype == "E") + I(stype == "H") + I(stype == "M"), d, covmat = TRUE)
    keep <- c(1, 5, 9)  # the ratios of each numerator over its own domain
    bc <- as.vector(coef(rr))[keep]
    attr(bc, "var") <- vcov(rr)[keep, keep]
    class(bc) <- "svystat"
    names(bc) <- c("E", "H", "M")
  }
  stopifnot(max(abs(coef(bc) - coef(b))) < 1e-9 * max(abs(coef(b))))
  put(case, "by.cov", vcov(bc))
  cst <- svycontrast(bc, c(E = 1, H = -1, M = 0))
  put(case, "contrast.estimate", coef(cst)); put(case, "contrast.se", SE(cst))
  # proportion intervals: a small proportion not raked on, and sch.wide within stype
  for (method in c("logit", "beta")) {
    p <- svyciprop(~I(yr.rnd == "Yes"), d, method = method)
    put(case, paste0("ciprop_", method, ".estimate"), coef(p))
    put(case, paste0("ciprop_", method, ".ci"), attr(p, "ci"))
    pb <- svyby(~I(sch.wide == "No"), ~stype, d, svyciprop, method = method, vartype = "ci")
    put(case, paste0("ciprop_by_", method, ".ci"), cbind(pb[["ci_l"]], pb[["ci_u"]]))
  }
  put(case, "degf", degf(d))
  put(case, "degf_by", sapply(c("E", "H", "M"), function(s) degf(subset(d, stype == s))))
  pm <- svymean(~as.numeric(yr.rnd == "Yes"), d, deff = TRUE)
  put(case, "prop.se", SE(pm)); put(case, "prop.deff", deff(pm))
}
out <- do.call(rbind, rows)
write.csv(out, "tests/data/r/estimates.csv", row.names = FALSE, quote = FALSE)
