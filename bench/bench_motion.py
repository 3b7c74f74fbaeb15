"""Speed of sampling motion futures on this machine's CPU: 50 futures of 25 frames from one clip, and
from a batch of 64 clips, against a naive loop (one future per call) and the command line end to end
(process start, model load, reading, writing). Achieved GFLOP/s (convolutions, linear layers and GRU
cells counted by hooks) against the measured float32 matmul peak. Medians of 5 repeats; writes
bench/results/<model>.json.

    python bench/bench_motion.py [--model motion-cmu] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from bench_vqvae import matmul_peak

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = 50


def flops_of(model, run) -> int:
    """Multiply-adds x 2 of every Conv1d, Linear and GRUCell call in `run`, counted by hooks."""
    total = 0

    def hook(module, inputs, output):
        nonlocal total
        x = inputs[0]
        if isinstance(module, torch.nn.Conv1d):
            total += 2 * output.shape[0] * output.shape[-1] * module.in_channels * module.out_channels * module.kernel_size[0]
        elif isinstance(module, torch.nn.Linear):
            total += 2 * x.numel() // x.shape[-1] * module.in_features * module.out_features
        elif isinstance(module, torch.nn.GRUCell):
            total += 2 * x.shape[0] * 3 * module.hidden_size * (module.input_size + module.hidden_size)

    kinds = (torch.nn.Conv1d, torch.nn.Linear, torch.nn.GRUCell)
    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, kinds)]
    run()
    for handle in handles:
        handle.remove()
    return total


def median_seconds(call, repeats: int = 5, least: float = 0.5) -> float:
    """Median over `repeats` of the mean time per call within at least `least` seconds (after a warm-up)."""
    call()
    medians = []
    for _ in range(repeats):
        runs, start = 0, time.perf_counter()
        while time.perf_counter() - start < least or runs < 1:
            call()
            runs += 1
        medians.append((time.perf_counter() - start) / runs)
    return statistics.median(medians)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="motion-cmu")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "cmu-mocap"))
    args = parser.parse_args()
    import vqtool
    from vqtool.data.motion import read_motion, test_sets

    peak = matmul_peak(args.threads)
    torch.set_num_threads(args.threads)
    model = vqtool.load(args.model, device="cpu")
    windows = torch.as_tensor(test_sets(args.data)["dense"].windows()[:64, :50])
    rows = []
    for clips in (1, 64):
        observed = windows[:clips]
        gen = torch.Generator().manual_seed(0)
        for mode, call in (("batched", lambda: model.sample(observed, SAMPLES, generator=gen)),
                           ("naive loop", lambda: [model.sample(observed, 1, generator=gen) for _ in range(SAMPLES)])):
            seconds = median_seconds(call)
            flops = flops_of(model, call)
            rows.append({"op": f"sample {mode}", "clips": clips, "futures": clips * SAMPLES, "ms": seconds * 1e3,
                         "futures_per_s": clips * SAMPLES / seconds, "gflops": flops / seconds / 1e9})
    clip_path = Path(tempfile.mkdtemp()) / "clip.txt"
    np.savetxt(clip_path, read_motion(Path(args.data) / "test" / "walking" / "walking_1.txt")[:100], fmt="%.7g",
               delimiter=",")
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
    command = [sys.executable, "-m", "vqtool", "predict-motion", str(clip_path), "-n", str(SAMPLES), "-m", args.model,
               "-o", str(clip_path.with_suffix(".npy")), "-q"]
    times = []
    for _ in range(5):
        start = time.perf_counter()
        subprocess.run(command, check=True, env=env, cwd=ROOT)
        times.append(time.perf_counter() - start)
    cli = statistics.median(times)
    rows.append({"op": "CLI end to end", "clips": 1, "futures": SAMPLES, "ms": cli * 1e3,
                 "futures_per_s": SAMPLES / cli, "gflops": None})
    print(f"vqtool {args.model} on {platform.processor() or platform.machine()}, {args.threads} threads, "
          f"torch {torch.__version__}; float32 matmul peak {peak:.1f} GFLOP/s; {SAMPLES} futures of 25 frames per clip")
    print(f"{'op':20} {'clips':>5} {'futures':>7} {'ms':>9} {'futures/s':>10} {'GFLOP/s':>8} {'% peak':>7}")
    for r in rows:
        gf = f"{r['gflops']:>8.2f} {100 * r['gflops'] / peak:>6.2f}%" if r["gflops"] else f"{'':>8} {'':>7}"
        print(f"{r['op']:20} {r['clips']:>5} {r['futures']:>7} {r['ms']:>9.1f} {r['futures_per_s']:>10.1f} {gf}")
    by = {(r["op"], r["clips"]): r for r in rows}
    ratios = {f"batched_over_naive_{c}": by[("sample batched", c)]["futures_per_s"] / by[("sample naive loop", c)]["futures_per_s"]
              for c in (1, 64)}
    ratios["batch64_over_batch1"] = by[("sample batched", 64)]["futures_per_s"] / by[("sample batched", 1)]["futures_per_s"]
    ratios["cli_over_raw_1"] = by[("CLI end to end", 1)]["ms"] / by[("sample batched", 1)]["ms"]
    for key, value in ratios.items():
        print(f"{key}: {value:.1f}x")
    out = ROOT / "bench" / "results" / f"{Path(args.model).stem}.json"
    out.write_text(json.dumps({"model": args.model, "threads": args.threads, "torch": torch.__version__,
                               "matmul_peak_gflops": peak, "rows": rows, "ratios": ratios}, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
