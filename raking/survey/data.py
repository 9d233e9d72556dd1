"""The California API school data of R ``survey`` (``data(api)``), shipped as package data.

Samples (``apisrs``, ``apistrat``, ``apiclus1``, ``apiclus2``) are the CSV exports of R
``survey`` 4.1-1, unchanged. The population file ``apipop`` (6194 schools, 1.3 MB) is not shipped
whole: ``apipop`` here holds its columns ``stype``, ``sch.wide``, ``comp.imp``, ``api00``,
``api99`` and ``enroll`` (40 KB compressed), enough for population margins, true means and totals,
and Monte Carlo samples. Because the population is complete, raked estimates can be compared with
the truth.
"""

from __future__ import annotations

import functools
from importlib import resources

import pandas as pd

__all__ = ["API_SAMPLES", "api_population_margins", "api_population_truth", "load_api"]

API_SAMPLES = ("apisrs", "apistrat", "apiclus1", "apiclus2")
_FILES = {name: f"{name}.csv" for name in API_SAMPLES} | {"apipop": "apipop_columns.csv.gz"}


def load_api(name: str) -> pd.DataFrame:
    """One API data set as a new DataFrame (``NA`` read as missing).

    Parameters
    ----------
    name : {"apisrs", "apistrat", "apiclus1", "apiclus2", "apipop"}
        ``apisrs``: simple random sample of 200 schools (``pw`` = 6194/200, ``fpc`` = 6194);
        ``apistrat``: stratified by ``stype``; ``apiclus1``: one-stage cluster sample of 15
        districts (``dnum``, ``fpc`` = 757); ``apiclus2``: two-stage; ``apipop``: the population
        columns listed in the module docstring.

    Examples
    --------
    >>> load_api("apisrs").shape
    (200, 39)
    """
    if name not in _FILES:
        raise ValueError(f"name must be one of {sorted(_FILES)}, got {name!r}.")
    return _read(_FILES[name]).copy()


def api_population_margins() -> dict[str, pd.Series]:
    """Population counts of ``stype``, ``sch.wide``, ``comp.imp`` and ``stype`` x ``sch.wide``.

    Returns
    -------
    dict
        ``{"stype": Series, "sch.wide": Series, "comp.imp": Series, ("stype", "sch.wide"):
        Series with a MultiIndex}``, ready for :func:`raking.rake`. The single-variable counts
        come from ``api_population_margins.csv`` (long format, for
        :func:`raking.survey.frontend.targets_from_frame`).

    Examples
    --------
    >>> api_population_margins()["stype"].to_dict()
    {'E': 4421, 'H': 755, 'M': 1018}
    """
    long = _read("api_population_margins.csv")
    out: dict = {
        str(v): pd.Series(g["target"].to_numpy(), index=g["level"].to_numpy(), name=v)
        for v, g in long.groupby("variable", sort=False)
    }
    pop = _read(_FILES["apipop"])
    out[("stype", "sch.wide")] = pop.groupby(["stype", "sch.wide"]).size().rename("target")
    return out


def api_population_truth() -> dict[str, float]:
    """True population values: N, mean and total of ``api00``, total ``enroll``.

    ``enroll`` is missing for 37 of the 6194 schools in the population file; ``enroll_total``
    sums the other 6157 (``enroll_missing`` says how many are missing).

    Examples
    --------
    >>> round(api_population_truth()["api00_mean"], 2)
    664.71
    """
    pop = _read(_FILES["apipop"])
    return {
        "N": float(len(pop)),
        "api00_mean": float(pop["api00"].mean()),
        "api00_total": float(pop["api00"].sum()),
        "enroll_total": float(pop["enroll"].sum()),
        "enroll_missing": float(pop["enroll"].isna().sum()),
    }


@functools.cache
def _read(filename: str) -> pd.DataFrame:
    with resources.files("raking").joinpath("data", "api", filename).open("rb") as f:
        compression = "gzip" if filename.endswith(".gz") else None
        return pd.read_csv(f, compression=compression)
