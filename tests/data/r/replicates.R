# Reference numbers for tests/test_survey_replicates.py: replicate weights re-raked, R survey.
#
# Run from the repository root:  Rscript tests/data/r/replicates.R
# Writes tests/data/r/replicates_*.csv (the versions are in the first line of each file).
# Raking is calibrate(calfun = "raking") on the replicate design (each replicate raked to the
# same population margins, epsilon 1e-12); rake() on the same design gives the same weights to
# the printed difference.
suppressMessages(library(survey))
data(api)
out_dir <- "tests/data/r"
versions <- sprintf("# %s; survey %s", R.version.string, as.character(packageVersion("survey")))
write_csv <- function(frame, name) {
  path <- file.path(out_dir, name)
  writeLines(versions, path)
  suppressWarnings(write.table(frame, path, sep = ",", row.names = FALSE, append = TRUE,
                               qmethod = "double"))
}
options(digits = 15)

pop <- c(`(Intercept)` = 6194, stypeH = 755, stypeM = 1018, sch.wideYes = 5122,
         comp.impYes = 4482)
margins <- list(stype = data.frame(stype = c("E", "H", "M"), Freq = c(4421, 755, 1018)),
                sch.wide = data.frame(sch.wide = c("No", "Yes"), Freq = c(1072, 5122)),
                comp.imp = data.frame(comp.imp = c("No", "Yes"), Freq = c(1712, 4482)))

estimates <- list()
add <- function(case, kind, variable, level, est) {
  v <- as.matrix(vcov(est))
  estimates[[length(estimates) + 1]] <<- data.frame(
    case = case, kind = kind, variable = variable, level = level,
    estimate = as.numeric(coef(est)), se = sqrt(diag(v)))
}
run_estimates <- function(case, des) {
  add(case, "mean", "api00", "", svymean(~api00, des))
  add(case, "total", "enroll", "", svytotal(~enroll, des))
  add(case, "proportion", "awards", c("No", "Yes"), svymean(~awards, des))
  by_mean <- svyby(~api00, ~both, des, svymean)
  add(case, "by_mean", "api00", as.character(by_mean$both), by_mean)
  by_total <- svyby(~enroll, ~both, des, svytotal)
  add(case, "by_total", "enroll", as.character(by_total$both), by_total)
}
cal <- function(rep, formula, bounds = c(-Inf, Inf)) {
  calibrate(rep, formula, population = pop[c("(Intercept)", colnames(model.matrix(
    formula, rep$variables))[-1])], calfun = "raking", bounds = bounds, epsilon = 1e-12,
    maxit = 500)
}
analysis <- function(des) {
  w <- weights(des, "analysis")
  colnames(w) <- sprintf("r%d", seq_len(ncol(w)))
  w
}

# 1. JK1 on the one-stage cluster sample apiclus1 (15 districts, fpc 757 districts)
dclus1 <- svydesign(id = ~dnum, weights = ~pw, data = apiclus1, fpc = ~fpc)
jk1 <- as.svrepdesign(dclus1, type = "JK1")
jk1_raked <- cal(jk1, ~stype + sch.wide)
jk1_rake <- rake(jk1, list(~stype, ~sch.wide), margins[c("stype", "sch.wide")],
                 control = list(maxit = 500, epsilon = 1e-13))
cat("JK1: calibrate vs rake, max relative difference of the replicate weights:",
    max(abs(analysis(jk1_raked) - analysis(jk1_rake))) / max(analysis(jk1_raked)), "\n")
cat("JK1 scale", jk1$scale, "\n")
run_estimates("jk1", jk1_raked)
write_csv(data.frame(snum = apiclus1$snum, dnum = apiclus1$dnum,
                     weight = weights(jk1_raked, "sampling"),
                     design = analysis(jk1), raked = analysis(jk1_raked)),
          "replicates_weights_jk1.csv")

# 2. JKn on the stratified sample apistrat (strata stype, fpc), raked on three margins
dstrat <- svydesign(id = ~1, strata = ~stype, weights = ~pw, data = apistrat, fpc = ~fpc)
jkn <- as.svrepdesign(dstrat, type = "JKn")
jkn_raked <- cal(jkn, ~stype + sch.wide + comp.imp)
run_estimates("jkn", jkn_raked)
jkn_bounded <- cal(jkn, ~stype + sch.wide + comp.imp, bounds = c(0.5, 1.55))
g <- weights(jkn_bounded, "sampling") / weights(jkn, "sampling")
cat("JKn bounded: g in", range(g), "; share of rows at a bound", mean(g %in% c(0.5, 1.55)), "\n")
run_estimates("jkn_bounded", jkn_bounded)
jkn_mse <- cal(as.svrepdesign(dstrat, type = "JKn", mse = TRUE), ~stype + sch.wide + comp.imp)
run_estimates("jkn_mse", jkn_mse)
write_csv(data.frame(snum = apistrat$snum, weight = weights(jkn_raked, "sampling"),
                     raked = analysis(jkn_raked)[, 1:12]), "replicates_weights_jkn.csv")  # 12 of 200

# 3. BRR and Fay on apistrat made into 14 pseudo-strata of two PSUs each: within each stype,
# schools in snum order (rank r = 0, 1, ...), stratum = stype + (1 + floor(r * K / n_stype))
# with K = 6 (E), 4 (H), 4 (M), PSU = stratum + (r mod 2).
paired <- apistrat[order(apistrat$stype, apistrat$snum), ]
rank <- ave(seq_len(nrow(paired)), paired$stype, FUN = seq_along) - 1
n_type <- ave(rank, paired$stype, FUN = length)
k <- c(E = 6, H = 4, M = 4)[as.character(paired$stype)]
paired$pstrat <- paste0(paired$stype, 1 + floor(rank * k / n_type))
paired$ppsu <- paste0(paired$pstrat, "-", rank %% 2)
dpair <- svydesign(id = ~ppsu, strata = ~pstrat, weights = ~pw, data = paired)
brr <- as.svrepdesign(dpair, type = "BRR")
brr_raked <- cal(brr, ~stype + sch.wide)
run_estimates("brr", brr_raked)
fay <- as.svrepdesign(dpair, type = "Fay", fay.rho = 0.3)
fay_raked <- cal(fay, ~stype + sch.wide)
run_estimates("fay", fay_raked)
write_csv(data.frame(snum = paired$snum, pstrat = paired$pstrat, ppsu = paired$ppsu,
                     weight = weights(fay_raked, "sampling"), design = analysis(fay),
                     raked = analysis(fay_raked)), "replicates_weights_fay.csv")

write_csv(do.call(rbind, estimates), "replicates_estimates.csv")

# 4. R's Hadamard matrices (rows as 0/1 strings), as brrweights picks them for n strata
sizes <- c(1:40, 43, 47, 50, 56, 63, 64)
had <- do.call(rbind, lapply(sizes, function(n) {
  H <- hadamard(n)
  data.frame(n = n, row = seq_len(nrow(H)), bits = apply(H, 1, paste, collapse = ""))
}))
write_csv(had, "replicates_hadamard.csv")
