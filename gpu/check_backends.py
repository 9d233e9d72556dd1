"""Check the one balancing kernel on every GPU array library present against the NumPy reference.

Runs ``raking.balance`` (fixed steps, to tolerance, log domain; single and batched tables) on
CuPy arrays and CUDA torch tensors when they are available, and prints the max difference from
the NumPy result (relative to its largest entry) and the device each result lives on. Exits
non-zero if any float64 difference exceeds 1e-12 or a result came back as the wrong type.

    python gpu/check_backends.py          # on a machine with a CUDA GPU
    python gpu/check_backends.py --help   # this text; runs nothing
"""

from __future__ import annotations

import argparse
import sys

import numpy as np

import raking


def _cases():
    rng = np.random.default_rng(0)
    batch = rng.random((64, 30, 40)) + 0.05
    single = rng.random((300, 200)) + 0.05
    for name, table in (("64 x 30x40", batch), ("300x200", single)):
        targets = [rng.dirichlet(np.ones(table.shape[-2])), rng.dirichlet(np.ones(table.shape[-1]))]
        for steps in (1, 2, 8, None):
            for log_domain in (False, True):
                yield name, table, targets, steps, log_domain


def _libraries():
    libs = []
    try:
        import cupy

        if cupy.cuda.runtime.getDeviceCount() > 0:
            libs.append(("cupy", cupy.asarray, lambda a: a.get(), lambda a: a.device))
    except Exception as exc:  # any CUDA/driver error: report, go on
        print(f"CuPy not usable: {exc}")
    try:
        import torch

        if torch.cuda.is_available():
            libs.append(
                (
                    "torch (cuda)",
                    lambda a: torch.asarray(a, device="cuda"),
                    lambda a: a.cpu().numpy(),
                    lambda a: a.device,
                )
            )
    except ImportError as exc:
        print(f"torch not usable: {exc}")
    return libs


def main(argv: list[str] | None = None) -> int:
    """Run the checks (``argv``: the command-line arguments; only ``--help``); exit status."""
    argparse.ArgumentParser(
        prog="check_backends.py",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    ).parse_args(argv)
    libs = _libraries()
    if not libs:
        print("no GPU array library with a CUDA device found; nothing to check")
        return 1
    failures = 0
    print(f"{'library':<14} {'table':<12} {'steps':>5} {'log':>5} {'max rel diff':>13} device")
    for lib, to_dev, to_host, dev in libs:
        for name, table, targets, steps, log_domain in _cases():
            given = np.log(table) if log_domain else table
            expected = raking.balance(given, targets, steps=steps, log_domain=log_domain)
            out = raking.balance(
                to_dev(given), [to_dev(t) for t in targets], steps=steps, log_domain=log_domain
            )
            host = to_host(out)
            diff = float(np.max(np.abs(host - expected)) / np.max(np.abs(expected)))
            ok = diff <= 1e-12 and type(out) is type(to_dev(given))
            failures += not ok
            print(
                f"{lib:<14} {name:<12} {steps!s:>5} {log_domain!s:>5} {diff:>13.2e} "
                f"{dev(out)}{'' if ok else '  FAIL'}"
            )
    print(f"\n{failures} failure(s)")
    return int(failures > 0)


if __name__ == "__main__":
    sys.exit(main())
