# R references for multi-stage designs and lonely PSUs (tests/test_survey_designs.py).
# Generated with: R version 4.2.2 Patched (2022-11-10 r83330), survey 4.1.1.
# Run from the repository root: Rscript tests/data/r/designs.R
# Writes tests/data/r/designs_weights.csv (raked weights by case and row),
# tests/data/r/designs_estimates.csv (estimates and SEs by case, lonely.psu option and statistic),
# and the design columns derived from apipop for the stratified two-stage case
# (designs_apiclus2_strata.csv) and the three-stage case (designs_apiclus2_three.csv).
suppressMessages(library(survey))
data(api)
out <- "tests/data/r"
cat(R.version.string, "survey", as.character(packageVersion("survey")), "\n")

# Population margins of raking.survey.data.api_population_margins(): stype and sch.wide.
pop <- c(`(Intercept)` = 6194, stypeH = 755, stypeM = 1018, sch.wideYes = 5122)
stopifnot(all(table(apipop$stype) == c(4421, 755, 1018)), sum(apipop$sch.wide == "Yes") == 5122)

rake_it <- function(design) {
  calibrate(design, ~stype + sch.wide, pop, calfun = "raking", epsilon = 1e-13, maxit = 500)
}

weights_rows <- list()
estimate_rows <- list()

# the raked weights and the design weights they started from (R's weights of the design: from
# the fpc when no weights= is given)
add_weights <- function(case, raked, design) {
  w <- weights(raked)
  weights_rows[[length(weights_rows) + 1]] <<- data.frame(
    case = case, row = seq_along(w) - 1, weight = sprintf("%.17g", w),
    design = sprintf("%.17g", weights(design))
  )
}

one <- function(case, lonely, statistic, variable, domain, est) {
  data.frame(
    case = case, lonely = lonely, statistic = statistic, variable = variable, domain = domain,
    estimate = sprintf("%.17g", coef(est)[[1]]), se = sprintf("%.17g", SE(est)[[1]])
  )
}

# The estimates of every case: mean and total of api00, of enroll (6 missing in apiclus2: the
# na.rm estimates are those of the domain of rows with enroll), and the mean of api00 in each
# level of sch.wide (svyby: the domain estimates keep every PSU, zeros outside the domain).
add_estimates <- function(case, design, lonely, totals = TRUE) {
  old <- options(survey.lonely.psu = lonely)
  on.exit(options(old))
  rows <- list(
    one(case, lonely, "mean", "api00", "", svymean(~api00, design)),
    one(case, lonely, "mean", "enroll", "", svymean(~enroll, design, na.rm = TRUE))
  )
  if (totals) {
    rows <- c(rows, list(
      one(case, lonely, "total", "api00", "", svytotal(~api00, design)),
      one(case, lonely, "total", "enroll", "", svytotal(~enroll, design, na.rm = TRUE))
    ))
  }
  by <- svyby(~api00, ~sch.wide, design, svymean)
  for (level in rownames(by)) {
    rows[[length(rows) + 1]] <- data.frame(
      case = case, lonely = lonely, statistic = "mean", variable = "api00",
      domain = paste0("sch.wide=", level),
      estimate = sprintf("%.17g", by[level, "api00"]), se = sprintf("%.17g", by[level, "se"])
    )
  }
  estimate_rows[[length(estimate_rows) + 1]] <<- do.call(rbind, rows)
}

lonely_options <- c("certainty", "remove", "adjust", "average")

# --- two-stage apiclus2: districts, then schools; fpc per stage -----------------------------
dclus2 <- svydesign(id = ~dnum + snum, fpc = ~fpc1 + fpc2, data = apiclus2)
stopifnot(isTRUE(all.equal(as.vector(weights(dclus2)), apiclus2$pw)))
raked <- rake_it(dclus2)
add_weights("clus2_fpc", raked, dclus2)
add_estimates("clus2_fpc", raked, "fail")
# unraked: the design weights scaled to N (raking.rake with steps=0), as a calibration to N
scaled <- calibrate(dclus2, ~1, c(`(Intercept)` = 6194), calfun = "raking", epsilon = 1e-13)
add_weights("clus2_fpc_steps0", scaled, dclus2)
add_estimates("clus2_fpc_steps0", scaled, "fail")
# the plain design (its means equal those of the scaled weights)
add_estimates("clus2_fpc_design", dclus2, "fail", totals = FALSE)

# --- two-stage without fpc: the ultimate-cluster variance ----------------------------------
dclus2w <- svydesign(id = ~dnum + snum, weights = ~pw, data = apiclus2)
rclus2w <- rake_it(dclus2w)
add_weights("clus2_nofpc", rclus2w, dclus2w)
add_estimates("clus2_nofpc", rclus2w, "fail")

# --- fpc at the first stage only: schools sampled with replacement (R's fpc = Inf) -----------
inf2 <- apiclus2
inf2$fpc_inf <- Inf
dinf <- svydesign(id = ~dnum + snum, fpc = ~fpc1 + fpc_inf, weights = ~pw, data = inf2)
rinf <- rake_it(dinf)
add_weights("clus2_fpc1_only", rinf, dinf)
# (districts with one sampled school are lonely at stage 2 now: fpc2 no longer makes them certain)
for (lonely in lonely_options) add_estimates("clus2_fpc1_only", rinf, lonely)

# --- stratified two-stage: districts stratified by a district-level label (dnum odd / even),
#     schools stratified by stype within each district; fpc from the population (apipop) --------
district_stratum <- function(dnum) ifelse(dnum %% 2 == 0, "even", "odd")
apipop$dstr <- district_stratum(apipop$dnum)
n_districts <- tapply(apipop$dnum, apipop$dstr, function(x) length(unique(x)))
n_schools <- table(paste(apipop$dnum, apipop$stype))
strat2 <- apiclus2
strat2$dstr <- district_stratum(strat2$dnum)
strat2$fpc1s <- as.vector(n_districts[strat2$dstr])
strat2$fpc2s <- as.vector(n_schools[paste(strat2$dnum, strat2$stype)])
write.csv(strat2[, c("snum", "dstr", "fpc1s", "fpc2s")],
          file.path(out, "designs_apiclus2_strata.csv"), row.names = FALSE)
dstrat2 <- svydesign(id = ~dnum + snum, strata = ~dstr + stype, fpc = ~fpc1s + fpc2s,
                     data = strat2)
rstrat2 <- rake_it(dstrat2)
add_weights("clus2_strat", rstrat2, dstrat2)
for (lonely in lonely_options) add_estimates("clus2_strat", rstrat2, lonely)
# the first stage stratified only (schools unstratified within districts)
dstrat1 <- svydesign(id = ~dnum + snum, strata = ~dstr, fpc = ~fpc1s + fpc2, data = strat2)
rstrat1 <- rake_it(dstrat1)
add_weights("clus2_strat1", rstrat1, dstrat1)
add_estimates("clus2_strat1", rstrat1, "fail")

# --- three stages: counties, districts within them, schools (population counts from apipop) --
three <- apiclus2
three$fpc_county <- length(unique(apipop$cnum))
districts <- tapply(apipop$dnum, apipop$cnum, function(x) length(unique(x)))
three$fpc_district <- as.vector(districts[as.character(three$cnum)])
schools <- table(paste(apipop$cnum, apipop$dnum))
three$fpc_school <- as.vector(schools[paste(three$cnum, three$dnum)])
write.csv(three[, c("snum", "fpc_county", "fpc_district", "fpc_school")],
          file.path(out, "designs_apiclus2_three.csv"), row.names = FALSE)
dthree <- svydesign(id = ~cnum + dnum + snum, fpc = ~fpc_county + fpc_district + fpc_school,
                    data = three)
rthree <- rake_it(dthree)
add_weights("clus3", rthree, dthree)
for (lonely in lonely_options) add_estimates("clus3", rthree, lonely)

# --- nest=TRUE: strata by stype, each district split by stype (lonely PSUs at stage 2) -------
dnest <- svydesign(id = ~dnum + snum, strata = ~stype, fpc = ~fpc1 + fpc2, nest = TRUE,
                   data = apiclus2)
rnest <- rake_it(dnest)
add_weights("clus2_nest", rnest, dnest)
for (lonely in lonely_options) add_estimates("clus2_nest", rnest, lonely)

# --- one-stage lonely strata ----------------------------------------------------------------
# apistrat with a single high school (the one with the smallest snum)
h_keep <- min(apistrat$snum[apistrat$stype == "H"])
sub <- apistrat[apistrat$stype != "H" | apistrat$snum == h_keep, ]
dsub <- svydesign(id = ~1, strata = ~stype, fpc = ~fpc, data = sub)
rsub <- rake_it(dsub)
add_weights("strat_lonely", rsub, dsub)
# without fpc, with the weights of the fpc design (pw would ask the one high school to carry
# 50 times its weight, where R's Newton iteration diverges)
sub$w <- weights(dsub)
dsubw <- svydesign(id = ~1, strata = ~stype, weights = ~w, data = sub)
rsubw <- rake_it(dsubw)
add_weights("strat_lonely_nofpc", rsubw, dsubw)
for (lonely in lonely_options) {
  add_estimates("strat_lonely", rsub, lonely)
  add_estimates("strat_lonely_nofpc", rsubw, lonely)
}
# apiclus1 with the district of smallest dnum alone in its stratum
clus1 <- apiclus1
clus1$str <- ifelse(clus1$dnum == min(clus1$dnum), "A", "B")
dclus1 <- svydesign(id = ~dnum, strata = ~str, fpc = ~fpc, data = clus1)
rclus1 <- rake_it(dclus1)
add_weights("clus1_lonely", rclus1, dclus1)
for (lonely in lonely_options) add_estimates("clus1_lonely", rclus1, lonely)

weights_out <- do.call(rbind, weights_rows)
estimates_out <- do.call(rbind, estimate_rows)
write.csv(weights_out, file.path(out, "designs_weights.csv"), row.names = FALSE, quote = FALSE)
write.csv(estimates_out, file.path(out, "designs_estimates.csv"), row.names = FALSE, quote = FALSE)
