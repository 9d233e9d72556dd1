"""Peak memory of the k-step CLIP loss: the default backward against ``checkpoint=True``.

The loss's backward is in closed form (``theory/ssl.md`` §4). The default ("default (kept
exponentials)") keeps each step's exponential matrix, 2k B x B matrices for the two chains plus
the logits; ``checkpoint=True`` ("checkpoint") keeps the logits and two vectors per step and
recomputes the matrices in backward.

Each configuration (batch B, steps k, variant) runs in a fresh subprocess: features ``(B, D)``
with gradients, logits ``scale * image @ text.T``, then one forward and backward of
``raking.torch.balanced_clip_loss``. The peak is measured above the process's state just before
the logits are formed, so it counts the logits, the loss's saved tensors and the backward's
temporaries, not the features or the interpreter:

- on CUDA, ``torch.cuda.max_memory_allocated`` (reset before the call);
- on the CPU, the growth of the resident-set high-water mark (``ru_maxrss``), which is why each
  configuration needs its own process.

The table gives the peak in GiB and in units of one ``B x B`` float32 matrix (``4 B^2`` bytes),
the unit in which the memory of both variants grows, and the extrapolation of that ratio to
``--extrapolate`` (default B = 32768, where one matrix is 4 GiB): whether the loss fits in an
80 GB GPU is answered there without needing the GPU.

    python gpu/clip_memory.py                              # B = 4096, 8192; k = 2; CUDA if present
    python gpu/clip_memory.py --batch 4096 8192 16384 --steps 1 2 4 --device cpu
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

GIB = 2**30


def measure(batch: int, steps: int, checkpoint: bool, dim: int, device: str) -> dict:
    """One forward + backward; the peak memory above the start, in bytes (this process)."""
    import torch

    from raking.torch import balanced_clip_loss

    torch.manual_seed(0)
    img = torch.nn.functional.normalize(torch.randn(batch, dim, device=device), dim=1)
    txt = torch.nn.functional.normalize(torch.randn(batch, dim, device=device), dim=1)
    img.requires_grad_()
    txt.requires_grad_()
    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        start = torch.cuda.memory_allocated()
    else:
        start = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    clock = time.perf_counter()
    logits = 20.0 * img @ txt.T
    loss = balanced_clip_loss(logits, steps=steps, checkpoint=checkpoint)
    loss.backward()
    if device == "cuda":
        torch.cuda.synchronize()
        peak = torch.cuda.max_memory_allocated() - start
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - start
    return {
        "seconds": time.perf_counter() - clock,
        "peak": peak,
        "loss": float(loss.detach()),
        "grad_ok": bool(torch.isfinite(img.grad).all() and torch.isfinite(txt.grad).all()),
    }


def run_one(batch: int, steps: int, checkpoint: bool, dim: int, device: str) -> dict:
    """:func:`measure` in a fresh interpreter (the CPU high-water mark cannot be reset)."""
    code = (
        f"import json, sys; sys.path.insert(0, {str(Path(__file__).resolve().parent)!r}); "
        "from clip_memory import measure; "
        f"print(json.dumps(measure({batch}, {steps}, {checkpoint}, {dim}, {device!r})))"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    if proc.returncode != 0:
        tail = proc.stderr.strip().splitlines()[-1:] or [f"exit {proc.returncode}"]
        return {"error": "OOM" if "out of memory" in tail[0].lower() else tail[0][:80]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", nargs="+", type=int, default=[4096, 8192])
    parser.add_argument("--steps", nargs="+", type=int, default=[2])
    parser.add_argument("--dim", type=int, default=512, help="feature dimension D")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--extrapolate", type=int, default=32768, help="B to extrapolate to")
    args = parser.parse_args(argv)
    from raking.research.clip_experiment import resolve_device

    device = resolve_device(args.device)
    import torch

    name = torch.cuda.get_device_name() if device == "cuda" else "cpu (resident set, ru_maxrss)"
    print(f"torch {torch.__version__}, device {name}, D = {args.dim}, float32")
    print()
    print(
        f"| B | k | variant | time (s) | peak (GiB) | peak / (4 B²) | "
        f"extrapolated to B = {args.extrapolate} (GiB) |"
    )
    print("|---:|---:|---|---:|---:|---:|---:|")
    for batch in args.batch:
        for steps in args.steps:
            for checkpoint in (False, True):
                out = run_one(batch, steps, checkpoint, args.dim, device)
                variant = "checkpoint" if checkpoint else "default (kept exponentials)"
                if "error" in out:
                    print(f"| {batch} | {steps} | {variant} | {out['error']} | | | |")
                    continue
                ratio = out["peak"] / (4 * batch**2)
                extra = ratio * 4 * args.extrapolate**2 / GIB
                print(
                    f"| {batch} | {steps} | {variant} | {out['seconds']:.2f} | "
                    f"{out['peak'] / GIB:.2f} | {ratio:.2f} | {extra:.1f} |",
                    flush=True,
                )
    return 0


if __name__ == "__main__":
    sys.exit(main())
