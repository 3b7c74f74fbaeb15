"""Speed of captioning on this machine's CPU: the image encoder (EfficientNet-Lite0) on one photo and on a
batch of 64, then N = 5 captions per photo (one latent each, greedy), for one photo and for 64 photos
batched in one pass, against a naive loop (one caption of one photo per call) and the command line end to end (process start, model load, JPEG decoding).
Achieved GFLOP/s (torch's FlopCounterMode) against the measured float32 matmul peak. Medians of 5
repeats; writes bench/results/<model>.json.

    python bench/bench_caption.py [--model captions-flickr] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import time
import sys
from pathlib import Path

import torch
from PIL import Image
from torch.utils.flop_counter import FlopCounterMode

from bench_motion import median_seconds
from bench_vqvae import matmul_peak

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = 5


def flops_of(run) -> int:
    with FlopCounterMode(display=False) as counter:
        run()
    return counter.get_total_flops()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="captions-flickr")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "flickr8k-1k"))
    args = parser.parse_args()
    import vqtool
    from vqtool.pretrained import preprocess

    peak = matmul_peak(args.threads)
    torch.set_num_threads(args.threads)
    model = vqtool.load(args.model, device="cpu")
    names = (Path(args.data) / "test.txt").read_text().split()[:64]
    photos = [Image.open(Path(args.data) / "images" / n).convert("RGB") for n in names]
    crops = torch.stack([preprocess(p) for p in photos])
    features = model.image_features(crops)
    rows = []

    def add(op, photos_n, captions, call):
        seconds = median_seconds(call)
        flops = flops_of(call)
        rows.append({"op": op, "photos": photos_n, "captions": captions, "ms": seconds * 1e3,
                     "photos_per_s": photos_n / seconds, "captions_per_s": captions / seconds if captions else None,
                     "gflops": flops / seconds / 1e9})

    with torch.no_grad():
        add("encoder", 1, 0, lambda: model.image_features(crops[:1]))
        add("encoder", 64, 0, lambda: model.image_features(crops))
        gen = torch.Generator().manual_seed(0)
        add("captions batched", 1, SAMPLES, lambda: model.generate(features[:1], SAMPLES, generator=gen))
        add("captions batched", 64, 64 * SAMPLES, lambda: model.generate(features, SAMPLES, generator=gen))
        add("captions naive loop", 64, 64 * SAMPLES,  # one photo, one caption per call
            lambda: [model.generate(features[i:i + 1], 1, generator=gen) for i in range(64) for _ in range(SAMPLES)])
        add("model.caption (all)", 64, 64 * SAMPLES, lambda: model.caption(photos, SAMPLES))
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
    for count in (1, 64):
        inputs = [str(Path(args.data) / "images" / n) for n in names[:count]]
        command = [sys.executable, "-m", "vqtool", "caption", *inputs, "-n", str(SAMPLES), "-m", args.model, "-q"]
        times = []
        for _ in range(5 if count == 1 else 3):
            start = time.perf_counter()
            subprocess.run(command, check=True, env=env, cwd=ROOT, stdout=subprocess.DEVNULL)
            times.append(time.perf_counter() - start)
        cli = statistics.median(times)
        rows.append({"op": "CLI end to end", "photos": count, "captions": count * SAMPLES, "ms": cli * 1e3,
                     "photos_per_s": count / cli, "captions_per_s": count * SAMPLES / cli, "gflops": None})
    print(f"vqtool {args.model} on {platform.processor() or platform.machine()}, {args.threads} threads, "
          f"torch {torch.__version__}; float32 matmul peak {peak:.1f} GFLOP/s; {SAMPLES} captions per photo")
    print(f"{'op':22} {'photos':>6} {'captions':>8} {'ms':>9} {'photos/s':>9} {'captions/s':>10} {'GFLOP/s':>8} {'% peak':>7}")
    for r in rows:
        gf = f"{r['gflops']:>8.2f} {100 * r['gflops'] / peak:>6.2f}%" if r["gflops"] else f"{'':>8} {'':>7}"
        cps = f"{r['captions_per_s']:>10.1f}" if r["captions_per_s"] else f"{'':>10}"
        print(f"{r['op']:22} {r['photos']:>6} {r['captions']:>8} {r['ms']:>9.1f} {r['photos_per_s']:>9.1f} {cps} {gf}")
    by = {(r["op"], r["photos"]): r for r in rows}
    ratios = {
        "encoder_batch64_over_batch1": by[("encoder", 64)]["photos_per_s"] / by[("encoder", 1)]["photos_per_s"],
        "captions_batched_over_naive_64": by[("captions batched", 64)]["captions_per_s"]
        / by[("captions naive loop", 64)]["captions_per_s"],
        "cli_over_raw_1": by[("CLI end to end", 1)]["ms"] / (by[("encoder", 1)]["ms"] + by[("captions batched", 1)]["ms"]),
        "cli_over_raw_64": by[("CLI end to end", 64)]["ms"] / by[("model.caption (all)", 64)]["ms"],
    }
    for key, value in ratios.items():
        print(f"{key}: {value:.1f}x")
    out = ROOT / "bench" / "results" / f"{Path(args.model).stem}.json"
    out.write_text(json.dumps({"model": args.model, "threads": args.threads, "torch": torch.__version__,
                               "matmul_peak_gflops": peak, "rows": rows, "ratios": ratios}, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
