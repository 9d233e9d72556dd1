# Reference numbers for tests/test_survey_glm.py: RakeResult.glm against R survey's svyglm.
#
# Run from the repository root:  Rscript tests/data/r/glm.R
# Writes tests/data/r/glm_estimates.csv (the versions are in its first line). Each design is
# raked to the population margins of raking.survey.data.api_population_margins() by
# calibrate(calfun = "raking") (epsilon 1e-13; cases strat_linear and jkn_linear: calfun =
# "linear" with the numeric totals of enroll and api99 as well), then svyglm(family = gaussian() |
# quasibinomial() | quasipoisson()) with glm.control(epsilon = 1e-14, maxit = 100) so that the
# IRLS (and, on the replicate design, every replicate's refit) is converged to rounding.
# Columns: estimate, se (sqrt(diag(vcov))), t and p of summary() (t on df.residual =
# degf + 1 - p), lower/upper of confint() (Wald, t quantile on df.residual), df_resid, degf.
suppressMessages(library(survey))
data(api)
out_dir <- "tests/data/r"
versions <- sprintf("# %s; survey %s", R.version.string, as.character(packageVersion("survey")))
options(digits = 15)

pop <- c(`(Intercept)` = 6194, stypeH = 755, stypeM = 1018, sch.wideYes = 5122)
pop3 <- c(pop, comp.impYes = 4482)
rake_it <- function(design) {
  calibrate(design, ~stype + sch.wide, pop, calfun = "raking", epsilon = 1e-13, maxit = 500)
}
control <- glm.control(epsilon = 1e-14, maxit = 100)
models <- list(
  gaussian = list(api00 ~ ell + meals + mobility, gaussian()),
  categorical = list(api00 ~ ell + stype, gaussian()),
  binomial = list(I(comp.imp == "Yes") ~ ell + meals, quasibinomial()),
  poisson = list(api.stu ~ ell + stype, quasipoisson())
)
rows <- list()
fit_all <- function(case, design) {
  for (name in names(models)) {
    m <- models[[name]]
    fit <- eval(bquote(svyglm(.(m[[1]]), design = design, family = .(m[[2]]),
                              control = .(control))))
    co <- coef(summary(fit))
    ci <- confint(fit)
    rows[[length(rows) + 1]] <<- data.frame(
      case = case, model = name, term = rownames(co), estimate = co[, 1], se = co[, 2],
      t = co[, 3], p = co[, 4], lower = ci[, 1], upper = ci[, 2],
      df_resid = fit$df.residual, degf = degf(design))
  }
}

# one-stage cluster sample: 15 districts, fpc
dclus1 <- svydesign(id = ~dnum, weights = ~pw, data = apiclus1, fpc = ~fpc)
fit_all("clus1", rake_it(dclus1))
# stratified sample, fpc
dstrat <- svydesign(id = ~1, strata = ~stype, weights = ~pw, data = apistrat, fpc = ~fpc)
fit_all("strat", rake_it(dstrat))
# linear calibration with numeric totals (enroll, api99) on the stratified sample
pop_both <- c(pop, enroll = sum(apipop$enroll, na.rm = TRUE), api99 = sum(apipop$api99))
fit_all("strat_linear", calibrate(dstrat, ~stype + sch.wide + enroll + api99, pop_both,
                                  calfun = "linear", epsilon = 1e-13, maxit = 500))
# two-stage cluster sample: districts, then schools; fpc per stage
dclus2 <- svydesign(id = ~dnum + snum, fpc = ~fpc1 + fpc2, data = apiclus2)
fit_all("clus2", rake_it(dclus2))
# replicate weights: JKn of apistrat raked on three margins; JK1 of apiclus1
jkn <- calibrate(as.svrepdesign(dstrat, type = "JKn"), ~stype + sch.wide + comp.imp, pop3,
                 calfun = "raking", epsilon = 1e-13, maxit = 500)
fit_all("jkn", jkn)
jk1 <- rake_it(as.svrepdesign(dclus1, type = "JK1"))
fit_all("jk1", jk1)
# replicate weights calibrated linearly with numeric totals
fit_all("jkn_linear", calibrate(as.svrepdesign(dstrat, type = "JKn"),
                                ~stype + sch.wide + enroll + api99, pop_both,
                                calfun = "linear", epsilon = 1e-13, maxit = 500))

path <- file.path(out_dir, "glm_estimates.csv")
writeLines(versions, path)
suppressWarnings(write.table(do.call(rbind, rows), path, sep = ",", row.names = FALSE,
                             append = TRUE, qmethod = "double"))
