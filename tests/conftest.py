"""Shared fixtures: the ``xp`` fixture runs a test once per installed array library."""

from __future__ import annotations

import importlib
import os

import numpy as np
import pytest
from hypothesis import settings

# Hypothesis profiles: "ci" (what .ci/run selects through HYPOTHESIS_PROFILE) draws the same
# examples on every run of one environment, so a failure under the oldest or the newest versions
# reproduces instead of coming and going; "dev" (the default) draws new examples each run, to
# keep exploring. No deadline in either: timings on 2 shared cores say nothing about correctness.
settings.register_profile("ci", derandomize=True, deadline=None, print_blob=True)
settings.register_profile("dev", deadline=None, print_blob=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "dev"))


def _namespaces() -> list:
    params = [pytest.param("numpy", id="numpy")]
    for name in ("array_api_strict", "torch"):
        params.append(pytest.param(name, id=name))
    try:
        import cupy  # noqa: F401

        params.append(pytest.param("cupy", id="cupy", marks=pytest.mark.gpu))
    except ImportError:
        pass
    return params


@pytest.fixture(params=_namespaces())
def xp(request):
    """The array namespace under test (NumPy, array-api-strict, CPU torch; CuPy on a GPU)."""
    return importlib.import_module(request.param)


def to_xp(xp, a):
    """A float64 NumPy array as an array of ``xp``."""
    return xp.asarray(np.asarray(a, dtype=np.float64))


def assert_close(actual, expected, *, xp, rtol=1e-12, atol=1e-14):
    """Check the namespace and dtype of ``actual``, then its values against NumPy ``expected``."""
    import array_api_compat

    from raking._array_api import to_numpy

    assert array_api_compat.array_namespace(actual) is array_api_compat.array_namespace(
        xp.asarray(np.zeros(1))
    ), f"result is a {type(actual)}, expected an array of {xp.__name__}"
    assert actual.dtype == xp.float64
    np.testing.assert_allclose(to_numpy(actual), np.asarray(expected), rtol=rtol, atol=atol)


@pytest.fixture(scope="session")
def cluster_address():
    """Address of a Dask LocalCluster (2 worker processes) shared by the tests that use one."""
    pytest.importorskip("dask.distributed")
    from raking.simulation.montecarlo import local_cluster

    with local_cluster(2) as address:
        yield address
