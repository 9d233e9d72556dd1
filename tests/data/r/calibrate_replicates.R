# R references for raking.calibrate(replicates=...) and RakeResult.trim on replicate designs
# (tests/test_survey_calibration_replicates.py).
#
# Run from the repository root:  Rscript tests/data/r/calibrate_replicates.R
# Writes tests/data/r/calibrate_replicates_weights.csv (case, row, weight, then the analysis
# replicate weights weights(rd, "analysis") of some replicates: every one for JK1 on apiclus1,
# replicates 1, 50, 100, 150, 200 for JKn on apistrat; rows in the order of R's data(api), which
# is the order of raking/data/api/*.csv) and tests/data/r/calibrate_replicates_estimates.csv
# (case, statistic, variable, estimate, se: svymean / svytotal of the calibrated design).
# Produced with: R version 4.2.2 Patched (2022-11-10 r83330), survey 4.1.1.
# Convergence is tightened to epsilon = 1e-13, maxit = 100 (R's default 1e-7 stops before the
# weights agree to 1e-8). Population totals: apipop's counts of stype, sum(apipop$enroll,
# na.rm = TRUE) = 3811472, sum(apipop$api99) = 3914069.
#
# Trimming: survey 4.1.1's trimWeights.svyrep.design does not do what its help page says (it
# leaves the full-sample weights untrimmed, `design$prob <- 1/pw`, and its replicate line
# `rwnew[!outside] + t(t(!outside) + colSums(trimmings)/colSums(!outside))` recycles a vector
# over the matrix), so the trimmed cases below use trim_rep(), which applies
# trimWeights.survey.design2's rule (clip, share the excess equally among the weights inside,
# repeat while strict) to the full-sample weights and to each replicate's weights.
suppressPackageStartupMessages(library(survey))
data(api)
cat(R.version.string, "\n")
cat("survey", as.character(packageVersion("survey")), "\n")

enroll_total <- sum(apipop$enroll, na.rm = TRUE)
api99_total <- sum(apipop$api99)
N <- nrow(apipop)
stype <- table(apipop$stype)
pop_cat <- c("(Intercept)" = N, stypeH = stype[["H"]], stypeM = stype[["M"]])
pop_enroll <- c(pop_cat, enroll = enroll_total)
pop_api99 <- c(pop_cat, api99 = api99_total)

dclus1 <- svydesign(id = ~dnum, weights = ~pw, fpc = ~fpc, data = apiclus1)
dstrat <- svydesign(id = ~1, strata = ~stype, weights = ~pw, fpc = ~fpc, data = apistrat)
rclus1 <- as.svrepdesign(dclus1, type = "JK1")
rstrat <- as.svrepdesign(dstrat, type = "JKn")

cal <- function(design, formula, population, calfun, bounds = c(-Inf, Inf)) {
  calibrate(design, formula, population, calfun = calfun, bounds = bounds,
            epsilon = 1e-13, maxit = 100)
}

trim_one <- function(w, lower, upper, strict) {
  repeat {
    outside <- w < lower | w > upper
    if (!any(outside)) return(w)
    new <- pmax(lower, pmin(w, upper))
    new[!outside] <- new[!outside] + sum(w - new) / sum(!outside)
    w <- new
    if (!strict) return(w)
  }
}

trim_rep <- function(design, lower = -Inf, upper = Inf, strict = FALSE) {
  w <- weights(design, "analysis")
  design$repweights <- compressWeights(apply(w, 2, trim_one, lower = lower, upper = upper,
                                             strict = strict))
  design$combined.weights <- TRUE
  design$selfrep <- NULL  # survey 4.1.1 indexes pw = 1 by selfrep when weights are combined
  design$pweights <- trim_one(design$pweights, lower, upper, strict)
  design
}

cases <- list(
  clus1_jk1_linear = cal(rclus1, ~stype + enroll, pop_enroll, "linear"),
  clus1_jk1_linear_bounds = cal(rclus1, ~stype + enroll, pop_enroll, "linear", c(0.5, 2.5)),
  clus1_jk1_logit = cal(rclus1, ~stype + api99, pop_api99, "logit", c(0.5, 2.5)),
  clus1_jk1_raking = cal(rclus1, ~stype + api99, pop_api99, "raking"),
  strat_jkn_linear = cal(rstrat, ~stype + enroll, pop_enroll, "linear"),
  strat_jkn_logit = cal(rstrat, ~stype + api99, pop_api99, "logit", c(0.5, 2)),
  strat_jkn_raking = cal(rstrat, ~stype + api99, pop_api99, "raking")
)
raked <- cal(rstrat, ~stype, pop_cat, "raking")
cases$strat_jkn_raking_trim <- trim_rep(raked, upper = 40, strict = FALSE)
cases$strat_jkn_raking_trim_strict <- trim_rep(raked, upper = 40, strict = TRUE)
cases$strat_jkn_raking_trim_lower <- trim_rep(raked, lower = 20, upper = 40, strict = TRUE)

weights_rows <- list()
estimates <- list()
for (name in names(cases)) {
  d <- cases[[name]]
  w <- weights(d, "analysis")
  keep <- if (ncol(w) > 20) c(1, 50, 100, 150, 200) else seq_len(ncol(w))
  block <- data.frame(case = name, row = seq_len(nrow(w)), weight = weights(d, "sampling"))
  for (j in seq_len(20)) {
    block[[paste0("r", j)]] <- if (j <= length(keep)) w[, keep[j]] else NA
  }
  block$replicates <- paste(keep, collapse = " ")
  weights_rows[[name]] <- block
  for (stat in c("mean", "total")) {
    for (v in c("api00", "api99", "enroll")) {
      f <- as.formula(paste0("~", v))
      e <- if (stat == "mean") svymean(f, d, na.rm = TRUE) else svytotal(f, d, na.rm = TRUE)
      estimates[[length(estimates) + 1]] <- data.frame(
        case = name, statistic = stat, variable = v,
        estimate = sprintf("%.17g", coef(e)[[1]]), se = sprintf("%.17g", SE(e)[[1]]))
    }
  }
}
wtab <- do.call(rbind, weights_rows)
for (col in c("weight", paste0("r", 1:20))) {
  wtab[[col]] <- ifelse(is.na(wtab[[col]]), "", sprintf("%.17g", wtab[[col]]))
}
write.csv(wtab, "tests/data/r/calibrate_replicates_weights.csv", row.names = FALSE, quote = FALSE)
write.csv(do.call(rbind, estimates), "tests/data/r/calibrate_replicates_estimates.csv",
          row.names = FALSE, quote = FALSE)
