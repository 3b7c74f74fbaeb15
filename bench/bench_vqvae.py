"""Encode/decode throughput of an image VQ-VAE on this machine's CPU.

Prints a table and writes bench/results/vqvae-<model>.json. Each configuration runs in a fresh
subprocess so that its peak resident memory is its own. Ratios: batch 256 against a naive loop of
batch-1 calls, and achieved GFLOP/s against the machine's measured float32 matmul peak.

    python bench/bench_vqvae.py [--model cifar10] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

import torch


def conv_flops(model, run) -> int:
    """Multiply-adds x 2 of every convolution and of the codebook search, counted by hooks."""
    total = 0

    def hook(module, inputs, output):
        nonlocal total
        if isinstance(module, (torch.nn.Conv2d, torch.nn.ConvTranspose2d)):
            kernel = module.kernel_size[0] * module.kernel_size[1]
            pixels = output.shape[-1] * output.shape[-2] if isinstance(module, torch.nn.Conv2d) else \
                inputs[0].shape[-1] * inputs[0].shape[-2]
            total += 2 * output.shape[0] * module.in_channels * module.out_channels * kernel * pixels // module.groups

    handles = [m.register_forward_hook(hook) for m in model.modules()
               if isinstance(m, (torch.nn.Conv2d, torch.nn.ConvTranspose2d))]
    run()
    for handle in handles:
        handle.remove()
    return total


def measure(model_name: str, op: str, batch: int, threads: int, seconds: float = 3.0) -> dict:
    import vqtool

    torch.set_num_threads(threads)
    model = vqtool.load(model_name, device="cpu")
    images = torch.rand(batch, 3, 32, 32)
    codes = model.encode(images)
    if op == "encode":
        flops = conv_flops(model, lambda: model.encode(images))
        grid = codes.numel()
        flops += 2 * grid * model.config.num_codes * model.config.embedding_dim  # nearest-code search
        call = lambda: model.encode(images)  # noqa: E731
    else:
        flops = conv_flops(model, lambda: model.decode(codes))
        call = lambda: model.decode(codes)  # noqa: E731
    call()
    runs, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds or runs < 3:
        call()
        runs += 1
    elapsed = (time.perf_counter() - start) / runs
    return {"op": op, "batch": batch, "images_per_s": batch / elapsed, "ms_per_call": elapsed * 1e3,
            "gflops": flops / elapsed / 1e9, "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def matmul_peak(threads: int, n: int = 2048) -> float:
    torch.set_num_threads(threads)
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    best = 0.0
    for _ in range(5):
        start = time.perf_counter()
        a @ b
        best = max(best, 2 * n**3 / (time.perf_counter() - start) / 1e9)
    return best


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="cifar10")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(args.model, args.child[0], int(args.child[1]), args.threads)))
        return
    peak = matmul_peak(args.threads)
    rows = []
    for op in ("encode", "decode"):
        for batch in (1, 256):
            out = subprocess.run([sys.executable, __file__, "--model", args.model, "--threads", str(args.threads),
                                  "--child", op, str(batch)], capture_output=True, text=True, check=True)
            rows.append(json.loads(out.stdout))
    by = {(r["op"], r["batch"]): r for r in rows}
    print(f"vqtool {args.model} on {platform.processor() or platform.machine()}, {args.threads} threads, "
          f"torch {torch.__version__}; float32 matmul peak {peak:.1f} GFLOP/s")
    print(f"{'op':8} {'batch':>5} {'images/s':>10} {'ms/call':>9} {'GFLOP/s':>8} {'% peak':>7} {'peak RSS MB':>12}")
    for r in rows:
        print(f"{r['op']:8} {r['batch']:>5} {r['images_per_s']:>10.1f} {r['ms_per_call']:>9.2f} {r['gflops']:>8.1f} "
              f"{100 * r['gflops'] / peak:>6.1f}% {r['peak_rss_mb']:>12.0f}")
    for op in ("encode", "decode"):
        ratio = by[(op, 256)]["images_per_s"] / by[(op, 1)]["images_per_s"]
        print(f"{op}: batch 256 is {ratio:.1f}x a naive loop of batch-1 calls")
    result = {"model": args.model, "threads": args.threads, "torch": torch.__version__,
              "matmul_peak_gflops": peak, "rows": rows}
    out = Path(__file__).parent / "results" / f"vqvae-{args.model}.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
