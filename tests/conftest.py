"""Shared fixtures: the ``xp`` fixture runs a test once per installed array library."""

from __future__ import annotations

import importlib
import os

# In a pytest-xdist worker (pyproject's -n auto: one worker per CPU), torch's OpenMP and
# OpenBLAS run one thread each, as the Dask workers do (raking.simulation.montecarlo): the
# workers already fill the cores, and more threads than cores make OpenMP threads spin-wait
# (on 2 loaded cores: 44-48 s CPU for two torch test files with 1 thread, 51-57 s with 2).
# Set before NumPy or torch is imported; the processes the tests start inherit it. Numba keeps
# its threads, so the parallel kernels still run on several.
if os.environ.get("PYTEST_XDIST_WORKER"):
    for _variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(_variable, "1")

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


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_auto_num_workers(config: pytest.Config) -> int | None:
    """Workers for pyproject's ``-n auto``: one per usable CPU for the whole suite, none otherwise.

    A run that names its tests (``pytest tests/test_x.py``) stays in this process: starting
    workers costs more than it saves on a few tests. A whole-suite run (no path: ``testpaths``)
    uses every CPU this process may run on (``sched_getaffinity``; pytest-xdist's own count is
    psutil's physical cores when psutil is installed, 1 on a VM whose 2 vCPUs are the
    hyperthreads of one core). ``PYTEST_XDIST_AUTO_NUM_WORKERS`` or ``-n N`` overrides it.
    """
    if os.environ.get("PYTEST_XDIST_AUTO_NUM_WORKERS"):
        return None  # pytest-xdist's own hook reads it
    if config.args_source == pytest.Config.ArgsSource.ARGS:
        return 0
    if hasattr(os, "sched_getaffinity"):
        cpus = len(os.sched_getaffinity(0))
    else:  # macOS, Windows
        cpus = os.cpu_count() or 1
    return cpus if cpus > 1 else 0


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
