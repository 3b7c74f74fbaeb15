"""Sampling and range-coding speed of a checkpoint's PixelCNN prior on this machine's CPU.

Cached sampling (per-row vertical stack, per-column horizontal stack) against the naive loop that
re-runs the whole network at every code position; both draw exactly the same samples. Also range
coding (`encode --compress`) and decoding of code grids. Prints a table with the cached/naive ratio
and achieved GFLOP/s against the measured float32 matmul peak; writes bench/results/prior-<model>.json.

    python bench/bench_prior.py [--model cifar10] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import torch

from bench_vqvae import conv_flops, matmul_peak


def timed(call, seconds: float = 3.0) -> float:
    """Seconds per call: at least 2 calls and `seconds` in all, after one warm-up call."""
    call()
    runs, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds or runs < 2:
        call()
        runs += 1
    return (time.perf_counter() - start) / runs


def cached_flops(prior, n: int) -> int:
    """Multiply-adds x 2 of the cached walk (its matrix products bypass the modules, so hooks miss them):
    per code, each layer's horizontal step and 1x1 output and the head; per row and column, each
    layer's vertical window and its vertical-to-horizontal map."""
    c = prior.config
    h, r, (rows, cols) = c.hidden, c.kernel // 2, c.grid
    per_code = c.layers * ((r + 1) * h * 2 * h + h * h) + h * h + h * c.num_codes
    per_column_of_row = c.layers * ((r + 1) * (2 * r + 1) * h * 2 * h + 2 * h * 2 * h)
    return 2 * n * rows * cols * (per_code + per_column_of_row)


def sampling_rows(model_name: str, threads: int, peak: float) -> dict:
    """Cached and naive sampling at batch 1, 16 and 100, range coding of 100 grids; ratios."""
    import vqtool
    from vqtool.families.image.compress import compress, decompress

    torch.set_num_threads(threads)
    model = vqtool.load(model_name, device="cpu")
    rows = []
    for batch in (1, 16, 100):
        labels = [i % 10 for i in range(batch)]
        for mode in ("cached", "naive"):
            call = lambda: model.sample(labels, seed=0, cached=mode == "cached")  # noqa: E731
            flops = cached_flops(model.prior, batch) if mode == "cached" else conv_flops(model.prior, call)
            seconds = timed(call, 2.0 if mode == "naive" else 3.0)
            rows.append({"op": f"sample {mode}", "batch": batch, "per_s": batch / seconds,
                         "ms_per_call": seconds * 1e3, "gflops": flops / seconds / 1e9})
    codes = model.sample([i % 10 for i in range(100)], seed=1)
    payloads = compress(model.prior, codes)
    grid = tuple(codes.shape[1:])
    for op, call in (("compress", lambda: compress(model.prior, codes)),
                     ("decompress", lambda: decompress(model.prior, payloads, grid))):
        seconds = timed(call, 3.0)
        rows.append({"op": op, "batch": 100, "per_s": 100 / seconds, "ms_per_call": seconds * 1e3, "gflops": None})
    ratios = {}
    by = {(r["op"], r["batch"]): r for r in rows}
    for batch in (1, 16, 100):
        ratios[batch] = by[("sample cached", batch)]["per_s"] / by[("sample naive", batch)]["per_s"]
    return {"rows": rows, "cached_over_naive": ratios, "mean_payload_bytes": sum(map(len, payloads)) / len(payloads)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="cifar10")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    peak = matmul_peak(args.threads)
    measured = sampling_rows(args.model, args.threads, peak)
    rows, ratios = measured["rows"], measured["cached_over_naive"]
    print(f"vqtool {args.model} prior on {platform.processor() or platform.machine()}, {args.threads} threads, "
          f"torch {torch.__version__}; float32 matmul peak {peak:.1f} GFLOP/s")
    print(f"{'op':16} {'batch':>5} {'per s':>9} {'ms/call':>10} {'GFLOP/s':>8} {'% peak':>7}")
    for r in rows:
        gf = f"{r['gflops']:>8.1f} {100 * r['gflops'] / peak:>6.1f}%" if r["gflops"] else f"{'':>8} {'':>7}"
        print(f"{r['op']:16} {r['batch']:>5} {r['per_s']:>9.1f} {r['ms_per_call']:>10.1f} {gf}")
    for batch in (1, 16, 100):
        print(f"batch {batch}: cached sampling is {ratios[batch]:.1f}x the naive loop (same samples)")
    result = {"model": args.model, "threads": args.threads, "torch": torch.__version__,
              "matmul_peak_gflops": peak, "rows": rows, "cached_over_naive": ratios,
              "mean_payload_bytes": measured["mean_payload_bytes"]}
    out = Path(__file__).parent / "results" / f"prior-{Path(args.model).stem}.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
