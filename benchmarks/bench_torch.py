"""Benchmark: the balanced CLIP loss against the cross-entropy pair it generalises.

For each batch size B (``--batch``, default 1024 and 4096) and a seeded ``(B, B)`` logit matrix
``S`` (``--scale`` times standard normal entries, float32), it times one forward and backward
(``loss.backward()`` into a fresh leaf; the copy of the leaf is not timed) of

- (a) the baseline: open_clip's ``ClipLoss`` arithmetic on a given logit matrix, the mean of
  ``F.cross_entropy(S, arange(B))`` and ``F.cross_entropy(S.T, arange(B))``;
- ``raking.torch.balanced_clip_loss(S, steps=k)`` for k = 1 (the same loss), 2 (doubly
  centred) and 3 (for information), and k = 2 with ``checkpoint=True``.

Methods run round-robin, ``--repeats`` rounds after one untimed warm-up round, so a busy
machine slows all of them alike; the table gives the best time, the median, the ratio of the
best times to (a)'s and the median and range of the per-round ratios (each method against (a)
in the same round). ``--threads`` fixes ``torch.set_num_threads`` (default 2).

Memory: the peak above the state before the call (the leaf ``S`` exists), in units of one
``B x B`` matrix of ``S``'s dtype; it includes ``S.grad`` (1 unit). On CUDA
``torch.cuda.max_memory_allocated``. On a Linux CPU the resident-set high-water mark
(``VmHWM``, reset through ``/proc/self/clear_refs`` before each call), measured in a child
process started with ``MALLOC_MMAP_THRESHOLD_=65536``, so that glibc maps every large tensor
on its own and unmaps it when freed (with its default, adaptive threshold, freed blocks of a
few MiB stay in the heap and later tensors reuse them unseen). "Saved" counts the bytes
autograd keeps for backward (``saved_tensors_hooks``, distinct storages, ``S`` included when
saved), in the same unit.

For k = 1 it also prints the largest absolute difference of the loss and of the gradient from
(a)'s, in the benchmark's dtype and in float64. Run::

    .venv/bin/python benchmarks/bench_torch.py                  # CPU, B = 1024, 4096
    .venv/bin/python benchmarks/bench_torch.py --device cuda --batch 4096 16384
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F

import raking
from raking.torch import balanced_clip_loss

ROOT = Path(__file__).resolve().parent.parent
Loss = Callable[[torch.Tensor], torch.Tensor]


def methods(batch: int, device: str) -> dict[str, Loss]:
    """The timed losses of a ``(batch, batch)`` logit matrix, baseline first."""
    labels = torch.arange(batch, device=device)

    def cross_entropy_pair(s: torch.Tensor) -> torch.Tensor:
        return 0.5 * (F.cross_entropy(s, labels) + F.cross_entropy(s.T, labels))

    out: dict[str, Loss] = {"(a) cross-entropy pair (ClipLoss)": cross_entropy_pair}
    for k in (1, 2, 3):
        out[f"balanced_clip_loss, k={k}"] = lambda s, k=k: balanced_clip_loss(s, k)
    out["balanced_clip_loss, k=2, checkpoint"] = lambda s: balanced_clip_loss(s, 2, checkpoint=True)
    return out


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def time_once(loss: Loss, logits: torch.Tensor, device: str) -> float:
    """Seconds for one forward and backward into a fresh copy of ``logits``."""
    leaf = logits.clone().requires_grad_(True)
    _sync(device)
    start = time.perf_counter()
    loss(leaf).backward()
    _sync(device)
    return time.perf_counter() - start


def _proc_status(key: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key):
                return int(line.split()[1]) * 1024
    raise KeyError(key)


def cpu_peaks(batch: int, args: argparse.Namespace) -> dict[str, float] | None:
    """Peak memory of each method in a child process (module docstring), in bytes."""
    if not Path("/proc/self/clear_refs").exists():
        return None
    options = {"--peaks-of": batch, "--threads": args.threads, "--dtype": args.dtype,
               "--scale": args.scale, "--seed": args.seed}  # fmt: skip
    command = [sys.executable, __file__, *(str(x) for item in options.items() for x in item)]
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536"}
    out = subprocess.run(command, env=env, capture_output=True, text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def peak_bytes(loss: Loss, logits: torch.Tensor, device: str) -> int:
    """Peak memory of one forward and backward above the state just before it, in bytes."""
    leaf = logits.clone().requires_grad_(True)
    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        start = torch.cuda.memory_allocated()
        loss(leaf).backward()
        torch.cuda.synchronize()
        return torch.cuda.max_memory_allocated() - start
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # VmHWM := VmRSS (Linux)
    start = _proc_status("VmRSS:")
    loss(leaf).backward()
    return _proc_status("VmHWM:") - start


def saved_bytes(loss: Loss, logits: torch.Tensor) -> int:
    """Bytes of the distinct storages autograd saves for backward."""
    storages: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        storages[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t

    leaf = logits.clone().requires_grad_(True)
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        loss(leaf)
    return sum(storages.values())


def k1_differences(logits: torch.Tensor, baseline: Loss) -> list[str]:
    """Largest |loss| and |gradient| differences of k = 1 from the baseline."""
    lines = []
    for dtype in (logits.dtype, torch.float64):
        s = logits.to(dtype)
        values, grads = [], []
        for loss in (baseline, lambda t: balanced_clip_loss(t, 1)):
            leaf = s.clone().requires_grad_(True)
            value = loss(leaf)
            value.backward()
            values.append(value.detach())
            grads.append(leaf.grad)
        d_loss = float((values[1] - values[0]).abs())
        d_grad = float((grads[1] - grads[0]).abs().max())
        scale = float(grads[0].abs().max())
        lines.append(
            f"k=1 vs (a), {str(dtype).removeprefix('torch.')}: |loss diff| {d_loss:.1e} (loss "
            f"{float(values[0]):.4f}), max |grad diff| {d_grad:.1e} (max |grad| {scale:.1e})"
        )
    return lines


def problem(batch: int, args: argparse.Namespace) -> torch.Tensor:
    """The seeded ``(batch, batch)`` logit matrix."""
    gen = torch.Generator().manual_seed(args.seed)
    dtype = getattr(torch, args.dtype)
    return (args.scale * torch.randn(batch, batch, generator=gen)).to(args.device, dtype)


def run(batch: int, args: argparse.Namespace) -> list[str]:
    """The table for one batch size."""
    logits = problem(batch, args)
    losses = methods(batch, args.device)
    names = list(losses)
    for name in names:  # warm-up: first-call costs (kernels, allocator) are not timed
        time_once(losses[name], logits, args.device)
    times: dict[str, list[float]] = {name: [] for name in names}
    for _ in range(args.repeats):
        for name in names:
            times[name].append(time_once(losses[name], logits, args.device))
    base = times[names[0]]
    unit = batch * batch * logits.element_size()
    if args.device == "cuda":
        peaks = {name: peak_bytes(losses[name], logits, args.device) for name in names}
    else:
        peaks = cpu_peaks(batch, args)
    rows = [
        f"B = {batch}, {args.dtype}, logits {args.scale} * N(0, 1), {args.device}; "
        f"forward + backward, best of {args.repeats} (round-robin)",
        "",
        "| method | best (ms) | median (ms) | ratio of bests to (a) | per-round ratio: median "
        "(min-max) | peak (B×B) | saved (B×B) |",
        "|---|--:|--:|--:|--:|--:|--:|",
    ]
    for name in names:
        t = times[name]
        per_round = [a / b for a, b in zip(t, base, strict=True)]
        peak = None if peaks is None else peaks[name] / unit
        saved = saved_bytes(losses[name], logits) / unit
        rows.append(
            f"| {name} | {_ms(min(t))} | {_ms(statistics.median(t))} | "
            f"{min(t) / min(base):.2f} | {statistics.median(per_round):.2f} "
            f"({min(per_round):.2f}-{max(per_round):.2f}) | "
            f"{'n/a' if peak is None else f'{peak:.1f}'} | {saved:.1f} |"
        )
    rows += ["", *k1_differences(logits, losses[names[0]]), ""]
    return rows


def _ms(seconds: float) -> str:
    """Milliseconds, three significant digits below 100 ms, whole above."""
    ms = seconds * 1e3
    return f"{ms:.0f}" if ms >= 100 else f"{ms:.3g}"


def _git(*cmd: str) -> str:
    try:
        out = subprocess.run(["git", *cmd], cwd=ROOT, capture_output=True, text=True, check=True)
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return out.stdout.strip()


def header(args: argparse.Namespace) -> list[str]:
    """Machine, versions, threads, commit and date."""
    device = args.device
    if device == "cuda":
        device = f"cuda ({torch.cuda.get_device_name()})"
    dirty = _git("status", "--porcelain", "--untracked-files=no")
    return [
        f"machine : {platform.platform()}, {platform.processor() or platform.machine()}, "
        f"nproc={os.cpu_count()}, device {device}",
        f"python  : {platform.python_version()}, torch {torch.__version__} "
        f"({torch.get_num_threads()} threads), raking {raking.__version__}",
        f"commit  : {_git('rev-parse', '--short', 'HEAD')}"
        f"{' + uncommitted changes' if dirty else ''}",
        f"date    : {datetime.datetime.now(datetime.UTC).strftime('%Y-%m-%d %H:%M UTC')}",
        "",
    ]


def main(argv: list[str] | None = None) -> None:
    """Parse the options and print one table per batch size."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batch", type=int, nargs="+", default=[1024, 4096])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--threads", type=int, default=2, help="torch.set_num_threads")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--dtype", choices=("float32", "float64"), default="float32")
    parser.add_argument("--scale", type=float, default=10.0, help="logit scale")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--peaks-of", type=int, help=argparse.SUPPRESS)  # the child of cpu_peaks
    args = parser.parse_args(argv)
    if args.peaks_of is not None:
        torch.set_num_threads(args.threads)
        logits = problem(args.peaks_of, args)
        losses = methods(args.peaks_of, "cpu")
        for loss in losses.values():  # first calls (thread pools, kernels) are not counted
            peak_bytes(loss, logits, "cpu")
        print(json.dumps({name: peak_bytes(f, logits, "cpu") for name, f in losses.items()}))
        return
    if args.device == "cuda" and not torch.cuda.is_available():
        sys.exit("--device cuda: torch.cuda.is_available() is False on this machine.")
    torch.set_num_threads(args.threads)
    print("\n".join(header(args)))
    for batch in args.batch:
        print("\n".join(run(batch, args)), flush=True)


if __name__ == "__main__":
    main()
