# R references for raking.calibrate and RakeResult.trim (tests/test_survey_calibration.py).
#
# Run from the repository root:  Rscript tests/data/r/calibrate.R
# Writes tests/data/r/calibrate_weights.csv (case, row, weight: the calibrated weight of every
# row of the sample, in the row order of R's data(api), which is the order of
# raking/data/api/*.csv) and tests/data/r/calibrate_estimates.csv (case, statistic, variable,
# estimate, se: svymean / svytotal of the calibrated or trimmed design; apiclus2 has missing
# enroll values, so its cases report api99 instead).
# Produced with: R version 4.2.2 Patched (2022-11-10 r83330), survey 4.1.1.
# Convergence is tightened to epsilon = 1e-13 (R's default 1e-7 stops before the weights agree
# to 1e-8), maxit = 100. Population totals: apipop's counts of stype and sch.wide, and
# sum(apipop$enroll, na.rm = TRUE) = 3811472, sum(apipop$api99) = 3914069.
suppressPackageStartupMessages(library(survey))
data(api)
cat(R.version.string, "\n")
cat("survey", as.character(packageVersion("survey")), "\n")

enroll_total <- sum(apipop$enroll, na.rm = TRUE)
api99_total <- sum(apipop$api99)
N <- nrow(apipop)
stype <- table(apipop$stype)
schwide <- table(apipop$sch.wide)
pop_cat <- c("(Intercept)" = N, stypeH = stype[["H"]], stypeM = stype[["M"]],
             sch.wideYes = schwide[["Yes"]])
pop_enroll <- c(pop_cat, enroll = enroll_total)
pop_both <- c(pop_enroll, api99 = api99_total)

dclus1 <- svydesign(id = ~dnum, weights = ~pw, fpc = ~fpc, data = apiclus1)
dstrat <- svydesign(id = ~1, strata = ~stype, weights = ~pw, fpc = ~fpc, data = apistrat)
dclus2 <- svydesign(id = ~dnum + snum, fpc = ~fpc1 + fpc2, data = apiclus2)  # two stages
pop_clus2 <- c(pop_cat[1:3], api99 = api99_total)

cal <- function(design, formula, population, calfun, bounds = c(-Inf, Inf)) {
  calibrate(design, formula, population, calfun = calfun, bounds = bounds,
            epsilon = 1e-13, maxit = 100)
}

cases <- list(
  clus1_linear = cal(dclus1, ~stype + sch.wide + enroll, pop_enroll, "linear"),
  clus1_raking = cal(dclus1, ~stype + sch.wide + enroll, pop_enroll, "raking"),
  clus1_logit = cal(dclus1, ~stype + sch.wide + enroll, pop_enroll, "logit", c(0.5, 2.5)),
  clus1_linear_bounds = cal(dclus1, ~stype + sch.wide + enroll, pop_enroll, "linear",
                            c(0.7, 1.8)),
  clus1_raking_bounds = cal(dclus1, ~stype + sch.wide + enroll, pop_enroll, "raking",
                            c(0.7, 1.8)),
  clus1_linear_numeric_only = cal(dclus1, ~enroll, c("(Intercept)" = N, enroll = enroll_total),
                                  "linear"),
  clus1_logit_categorical = cal(dclus1, ~stype + sch.wide, pop_cat, "logit", c(0.6, 1.7)),
  clus1_linear_categorical = cal(dclus1, ~stype + sch.wide, pop_cat, "linear"),
  strat_linear = cal(dstrat, ~stype + sch.wide + enroll + api99, pop_both, "linear"),
  strat_raking = cal(dstrat, ~stype + sch.wide + enroll + api99, pop_both, "raking"),
  strat_logit = cal(dstrat, ~stype + sch.wide + enroll + api99, pop_both, "logit", c(0.5, 2)),
  strat_linear_bounds = cal(dstrat, ~stype + sch.wide + enroll + api99, pop_both, "linear",
                            c(0.75, 1.3)),
  clus2_linear = cal(dclus2, ~stype + api99, pop_clus2, "linear"),
  clus2_logit = cal(dclus2, ~stype + api99, pop_clus2, "logit", c(0.5, 2.5))
)
# trimWeights of a calibrated design (raking to stype + sch.wide + enroll on apistrat)
raked <- cases$strat_raking
cases$strat_raking_trim <- trimWeights(raked, upper = 40, lower = 15, strict = FALSE)
cases$strat_raking_trim_strict <- trimWeights(raked, upper = 40, lower = 15, strict = TRUE)
cases$clus1_linear_trim <- trimWeights(cases$clus1_linear, upper = 60, strict = FALSE)
cases$clus1_linear_trim_strict <- trimWeights(cases$clus1_linear, upper = 60, strict = TRUE)

weights_out <- do.call(rbind, lapply(names(cases), function(name) {
  w <- weights(cases[[name]])
  data.frame(case = name, row = seq_along(w), weight = sprintf("%.17g", w))
}))
estimates_out <- do.call(rbind, lapply(names(cases), function(name) {
  d <- cases[[name]]
  rows <- list()
  for (v in c("api00", "meals", if (startsWith(name, "clus2")) "api99" else "enroll")) {
    f <- as.formula(paste0("~", v))
    m <- svymean(f, d)
    t <- svytotal(f, d)
    rows[[length(rows) + 1]] <- data.frame(case = name, statistic = c("mean", "total"),
      variable = v, estimate = sprintf("%.17g", c(coef(m), coef(t))),
      se = sprintf("%.17g", c(SE(m), SE(t))))
  }
  do.call(rbind, rows)
}))
write.csv(weights_out, "tests/data/r/calibrate_weights.csv", row.names = FALSE, quote = FALSE)
write.csv(estimates_out, "tests/data/r/calibrate_estimates.csv", row.names = FALSE,
          quote = FALSE)
cat("enroll total", enroll_total, "api99 total", api99_total, "\n")
