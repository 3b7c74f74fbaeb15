"""Rate-distortion of the photo model against Pillow's JPEG and WebP on the 96 held-out Flickr8k photos
at their full size, and the time to encode + compress (and decode) a 12-megapixel photograph.

For each `--quality` level: bits per pixel of the `.vqc` file `vqtool encode --compress` writes, PSNR
and MS-SSIM; per photo, the JPEG and WebP files of the same PSNR (`photo_eval.evaluate_photos`). The
baselines' own curves come from a sweep of their quality setting. Draws both curves (bpp against
PSNR and against MS-SSIM) into docs/rd-photos.png and writes bench/results/rd-photos.json.

    python bench/bench_rd.py [--model photos] [--limit 96] [--repeats 3]
"""

from __future__ import annotations

import argparse
import io
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "flickr8k-1k"
SWEEP = (2, 5, 10, 15, 20, 30, 40, 50, 60, 70, 80, 90, 95)


def held_out(limit: int) -> list[np.ndarray]:
    names = (DATA / "test.txt").read_text().split()[:limit]
    return [np.asarray(Image.open(DATA / "images" / n).convert("RGB")) for n in names]


def baseline_curve(photos: list[np.ndarray], fmt: str) -> list[dict]:
    """Mean bpp, PSNR (of the mean MSE) and MS-SSIM of Pillow's `fmt` at each quality of SWEEP."""
    from vqtool.evaluation import psnr_db
    from vqtool.families.image.photo_eval import ms_ssim

    points = []
    for quality in SWEEP:
        bits, mse, scores = [], [], []
        for photo in photos:
            buffer = io.BytesIO()
            Image.fromarray(photo).save(buffer, fmt, quality=quality)
            back = np.asarray(Image.open(io.BytesIO(buffer.getvalue())).convert("RGB"))
            bits.append(buffer.tell() * 8 / (photo.shape[0] * photo.shape[1]))
            mse.append(((back.astype(np.float64) - photo) ** 2).mean() / 255**2)
            score = ms_ssim(photo, back)
            if score is not None:
                scores.append(score)
        points.append({"quality": quality, "bpp": round(float(np.mean(bits)), 4),
                       "psnr_db": round(psnr_db(np.mean(mse)), 3), "ms_ssim": round(float(np.mean(scores)), 4)})
    return points


def timed_12mp(model: str, photo: np.ndarray, repeats: int) -> dict:
    """Median seconds of `vqtool encode --compress` and `vqtool decode` of a 4000x3000 photo (2 threads),
    start-up included, and the file's size."""
    with tempfile.TemporaryDirectory() as folder:
        source = Path(folder) / "big.png"
        Image.fromarray(photo).resize((4000, 3000), Image.BICUBIC).save(source)
        cli = [sys.executable, "-m", "vqtool", "--threads", "2"]
        times = {"encode_compress_s": [], "decode_s": [], "encode_packed_s": []}
        for _ in range(repeats):
            for key, args in (("encode_compress_s", ["encode", source, "-m", model, "--compress", "-o", f"{folder}/c.vqc"]),
                              ("encode_packed_s", ["encode", source, "-m", model, "-o", f"{folder}/p.vqc"]),
                              ("decode_s", ["decode", f"{folder}/c.vqc", "-o", f"{folder}/back.png"])):
                started = time.perf_counter()
                subprocess.run([*cli, *map(str, args)], check=True, capture_output=True)
                times[key].append(time.perf_counter() - started)
        sizes = {"compressed_bytes": Path(f"{folder}/c.vqc").stat().st_size,
                 "packed_bytes": Path(f"{folder}/p.vqc").stat().st_size}
        big = Image.open(source).convert("RGB")
        for fmt in ("JPEG", "WEBP"):  # the baselines' encoders on the same photo, in this process (no start-up)
            key = f"pillow_{fmt.lower()}_s"
            times[key] = []
            for _ in range(repeats):
                started = time.perf_counter()
                big.save(io.BytesIO(), fmt, quality=75)
                times[key].append(time.perf_counter() - started)
    return {**{k: round(statistics.median(v), 2) for k, v in times.items()}, "runs": repeats, **sizes}


def plot(levels: list[dict], jpeg: list[dict], webp: list[dict], path: Path, name: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for axis, key, label in ((axes[0], "psnr_db", "PSNR (dB)"), (axes[1], "ms_ssim", "MS-SSIM")):
        for points, style, title in ((jpeg, "s--", "Pillow JPEG (quality 2-95)"), (webp, "^--", "Pillow WebP (quality 2-95)"),
                                     (levels, "o-", f"vqtool {name} --compress (quality 1-{len(levels)})")):
            axis.plot([p["bpp"] for p in points], [p[key] for p in points], style, label=title)
        for p in levels:
            axis.annotate(str(p["quality"]), (p["bpp"], p[key]), textcoords="offset points", xytext=(4, -10), fontsize=8)
        axis.set_xlabel("bits per pixel (whole file)")
        axis.set_ylabel(label)
        axis.set_xlim(0, max(1.2, levels[-1]["bpp"] * 1.3))
        axis.grid(alpha=0.3)
    axes[0].legend(loc="lower right", fontsize=8)
    figure.suptitle("96 held-out Flickr8k photos at full size: rate against distortion (higher and further left is better)",
                    fontsize=10)
    figure.tight_layout()
    figure.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="photos")
    parser.add_argument("--limit", type=int, default=96)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--levels-from-card", action="store_true",
                        help="take the model's levels from its card (the same evaluate_photos on all 96, run at export) "
                             "instead of measuring them again")
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "rd-photos.json"))
    parser.add_argument("--figure", default=str(ROOT / "docs" / "rd-photos.png"))
    args = parser.parse_args()
    import torch

    import vqtool
    from vqtool.families.image.photo_eval import evaluate_photos

    torch.set_num_threads(2)
    net = vqtool.load(args.model, "cpu")
    photos = held_out(args.limit)
    started = time.perf_counter()
    if args.levels_from_card and args.limit == 96:
        ours = {key: net.metadata["metrics"][key] for key in ("photo_levels", "eval_pixels")}
    else:
        ours = evaluate_photos(net, photos)
    seconds = time.perf_counter() - started
    jpeg, webp = baseline_curve(photos, "JPEG"), baseline_curve(photos, "WEBP")
    timing = timed_12mp(args.model, photos[0], args.repeats)
    print(f"{len(photos)} held-out photos, {ours['eval_pixels'] / 1e6:.1f} megapixels; model {net.name}")
    print("| quality | bpp | PSNR | MS-SSIM | JPEG bpp same PSNR | WebP bpp same PSNR | vs JPEG | vs WebP |")
    print("|---|---|---|---|---|---|---|---|")
    for lv in ours["photo_levels"]:
        print(f"| {lv['quality']} | {lv['bpp']:.3f} | {lv['psnr_db']:.2f} | {lv['ms_ssim']:.4f} | {lv['jpeg_bpp_at_psnr']:.3f} | "
              f"{lv['webp_bpp_at_psnr']:.3f} | {lv['size_vs_jpeg']:.2f} | {lv['size_vs_webp']:.2f} |")
    for title, points in (("JPEG", jpeg), ("WebP", webp)):
        print(f"{title}: " + ", ".join(f"q{p['quality']} {p['bpp']:.3f} bpp {p['psnr_db']:.2f} dB" for p in points))
    print(f"12 MP photo (median of {timing['runs']}, 2 threads, start-up included): encode --compress "
          f"{timing['encode_compress_s']} s, encode packed {timing['encode_packed_s']} s, decode {timing['decode_s']} s; "
          f"Pillow in-process: JPEG {timing['pillow_jpeg_s']} s, WebP {timing['pillow_webp_s']} s "
          f"(encode --compress / JPEG = {timing['encode_compress_s'] / timing['pillow_jpeg_s']:.0f}x); "
          f"{timing['compressed_bytes']:,} B compressed vs {timing['packed_bytes']:,} B packed")
    result = {"model": net.name, "sha256": net.sha256, "photos": len(photos), **ours, "jpeg_sweep": jpeg,
              "webp_sweep": webp, "twelve_megapixel": timing, "evaluation_seconds": round(seconds, 1)}
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    plot(ours["photo_levels"], jpeg, webp, Path(args.figure), net.name)
    print(f"wrote {args.out} and {args.figure}")


if __name__ == "__main__":
    main()
