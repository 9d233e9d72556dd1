# Reference numbers for tests/test_survey_quantiles.py: svyquantile(..., ci = TRUE) on raked
# designs, R survey (defaults of survey >= 4.1: qrule = "math", interval.type = "mean", a t
# quantile on degf(design)).
#
# Run from the repository root:  Rscript tests/data/r/quantiles.R
# Writes tests/data/r/quantiles_estimates.csv (the versions are in its first line).
# Raking is calibrate(calfun = "raking") to the population counts of stype and sch.wide
# (raking.survey.data.api_population_margins()), epsilon 1e-12.
suppressMessages(library(survey))
data(api)
out_dir <- "tests/data/r"
versions <- sprintf("# %s; survey %s", R.version.string, as.character(packageVersion("survey")))
options(digits = 15)

pop <- c(`(Intercept)` = 6194, stypeH = 755, stypeM = 1018, sch.wideYes = 5122)
rake_it <- function(des) calibrate(des, ~stype + sch.wide, population = pop,
                                   calfun = "raking", epsilon = 1e-12, maxit = 500)
probs <- c(0.1, 0.5, 0.9)
rows <- list()
add <- function(case, column, qrule, by, level, des, alpha = 0.05) {
  q <- svyquantile(as.formula(paste0("~", column)), des, probs, ci = TRUE, qrule = qrule,
                   alpha = alpha)[[1]]
  rows[[length(rows) + 1]] <<- data.frame(
    case = case, column = column, qrule = qrule, alpha = alpha, by = by, level = level,
    p = probs, quantile = q[, 1], ci_l = q[, 2], ci_u = q[, 3], se = q[, 4], df = degf(des))
}
run <- function(case, des, columns, by = "stype", qrules = c("math", "school", "hf4", "hf7")) {
  for (column in columns) {
    for (qrule in qrules) add(case, column, qrule, "", "", des)
    # svyby(~column, ~by, des, svyquantile, ...) calls svyquantile on des[by == level, ]
    for (level in sort(unique(as.character(des$variables[[by]])))) {
      add(case, column, "math", by, level, des[des$variables[[by]] == level, ])
    }
  }
  add(case, columns[1], "math", "", "", des, alpha = 0.1)
}

# 1. one-stage cluster sample apiclus1 (15 districts, fpc)
dclus1 <- rake_it(svydesign(id = ~dnum, weights = ~pw, data = apiclus1, fpc = ~fpc))
run("clus1", dclus1, c("api00", "enroll"),
    qrules = c("math", "school", "shahvaish", paste0("hf", 1:9)))
# svyby gives the same numbers as the subsets above
by <- svyby(~api00, ~stype, dclus1, svyquantile, quantiles = probs, ci = TRUE)
mine <- do.call(rbind, rows)
mine <- mine[mine$case == "clus1" & mine$column == "api00" & mine$by == "stype", ]
cat("clus1 svyby vs subsets, max |difference| of the quantiles:",
    max(abs(as.matrix(by[, 2:4]) - matrix(mine$quantile, 3, byrow = TRUE))),
    "of the SEs:", max(abs(as.matrix(by[, 5:7]) - matrix(mine$se, 3, byrow = TRUE))), "\n")

# 2. stratified sample apistrat (strata stype, fpc)
dstrat <- rake_it(svydesign(id = ~1, strata = ~stype, weights = ~pw, data = apistrat,
                            fpc = ~fpc))
run("strat", dstrat, c("api00", "enroll"), by = "sch.wide")

# 3. two-stage cluster sample apiclus2 (districts, then schools; fpc at both stages)
dclus2 <- rake_it(svydesign(id = ~dnum + snum, fpc = ~fpc1 + fpc2, data = apiclus2))
run("clus2", dclus2, c("api00", "api99"))

# 4. JKn replicates of apistrat, each raked (interval.type = "mean" is the default there too)
jkn <- rake_it(as.svrepdesign(svydesign(id = ~1, strata = ~stype, weights = ~pw,
                                        data = apistrat, fpc = ~fpc), type = "JKn"))
run("jkn", jkn, c("api00", "enroll"), by = "sch.wide", qrules = c("math", "hf7"))

# 5. JK1 replicates of apiclus1, each raked
jk1 <- rake_it(as.svrepdesign(svydesign(id = ~dnum, weights = ~pw, data = apiclus1,
                                        fpc = ~fpc), type = "JK1"))
run("jk1", jk1, c("api00"), qrules = c("math", "school"))

path <- file.path(out_dir, "quantiles_estimates.csv")
writeLines(versions, path)
suppressWarnings(write.table(do.call(rbind, rows), path, sep = ",", row.names = FALSE,
                             append = TRUE, qmethod = "double"))
