"""A dataset through the command line against the model's own speed, on a quiet and on a busy machine.

10,000 CIFAR-10 test images (held out; only timed here) are extracted to a temporary folder and sent
through the real CLI in subprocesses: encode folder -> .vqc files, decode them -> PNGs, encode folder
-> codes.npz, decode it -> PNGs, `--compress` of 1,000 images and the decode of that stream, `vqtool
sample -n 16`, and a one-image encode (the fixed cost of starting Python, torch and the checkpoint).
The model's raw batched throughput (batch 256, decoded pixels in memory, no files) is measured in the
same run and condition. Then the same again under a competing load that this script starts itself
(one busy process per available core) and stops at the end. Each time is the median of --repeats
runs. Prior sampling against the naive loop (batch 1, 16, 100) comes from bench_prior's measurement,
on the quiet machine.

Ratios printed and kept in bench/results/cli-<model>.json: CLI / raw model (end to end, and without
the fixed start-up cost), loaded / idle for every command.

    python bench/bench_cli.py [--images 10000] [--repeats 3] [--model cifar10] [--no-load]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
DATA = Path(os.environ.get("VQTOOL_DATA", ROOT.parent / "shared" / "data"))


def extract(count: int, folder: Path) -> list[Path]:
    """The first `count` CIFAR-10 test JPEGs (sorted names), in their class folders."""
    with zipfile.ZipFile(DATA / "cifar10" / "test.zip") as archive:
        names = sorted(n for n in archive.namelist() if n.lower().endswith(".jpg"))[:count]
        paths = []
        for name in names:
            target = folder / Path(name).parent.name / Path(name).name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(archive.read(name))
            paths.append(target)
    return paths


def cli_seconds(*args, cwd: Path) -> float:
    """Wall time of one real CLI call (a fresh Python process, as a user runs it)."""
    start = time.perf_counter()
    result = subprocess.run([sys.executable, "-m", "vqtool", *map(str, args), "--quiet"], cwd=cwd,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    if result.returncode != 0:
        raise SystemExit(f"vqtool {' '.join(map(str, args))} failed: {result.stderr.decode()[-500:]}")
    return time.perf_counter() - start


def raw_model(model_name: str, images: np.ndarray, batch: int = 256) -> dict:
    """Images per second of the model alone: encode and decode at batch 256, pixels in memory.
    Threads as the CLI chooses them (vqtool.threads)."""
    import vqtool
    from vqtool.threads import chosen_threads

    torch.set_num_threads(chosen_threads())
    model = vqtool.load(model_name, device="cpu")
    model.decode(model.encode(images[:batch]))  # warm-up
    start = time.perf_counter()
    codes = [model.encode(images[i:i + batch]) for i in range(0, len(images), batch)]
    encode = time.perf_counter() - start
    start = time.perf_counter()
    for part in codes:
        model.to_uint8(model.decode(part))
    decode = time.perf_counter() - start
    return {"encode": len(images) / encode, "decode": len(images) / decode}


def busy_processes(count: int) -> list[subprocess.Popen]:
    """One pure-Python spinning process per core: the competing load."""
    return [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(count)]


def commands(work: Path, images: Path, compress_list: list[str]) -> dict:
    """name -> (items, argument lists run in order; the last one is timed). Earlier ones prepare."""
    return {
        "start-up (one image)": (1, [["encode", compress_list[0], "-o", work / "one.vqc"]]),
        "encode folder -> .vqc": (None, [["encode", images, "-o", work / "vqc"]]),
        "decode .vqc folder -> PNG": (None, [["decode", work / "vqc", "-o", work / "png"]]),
        "encode folder -> codes.npz": (None, [["encode", images, "-o", work / "codes.npz"]]),
        "decode codes.npz -> PNG": (None, [["decode", work / "codes.npz", "-o", work / "png-npz"]]),
        "encode --compress (stream)": (len(compress_list),
                                       [["encode", *compress_list, "--compress", "-o", work / "small.vqc"]]),
        "decode compressed stream": (len(compress_list), [["decode", work / "small.vqc", "-o", work / "png-small"]]),
        "sample -n 16": (16, [["sample", "-n", "16", "--seed", "1", "-o", work / "samples.png"]]),
    }


def run_condition(condition: str, model: str, pixels: np.ndarray, images: Path, compress_list: list[str],
                  repeats: int, work: Path) -> list[dict]:
    rows = []
    raws = [raw_model(model, pixels) for _ in range(repeats)]
    raw = {op: statistics.median(r[op] for r in raws) for op in ("encode", "decode")}
    for op, value in raw.items():
        rows.append({"condition": condition, "what": f"model {op}, batch 256 (raw)", "items": len(pixels),
                     "seconds": len(pixels) / value, "per_s": value})
    for what, (items, calls) in commands(work, images, compress_list).items():
        times = []
        for _ in range(repeats):
            for call in calls:
                seconds = cli_seconds(*call, "-m", model, cwd=work)
            times.append(seconds)
        count = items or len(pixels)
        rows.append({"condition": condition, "what": what, "items": count, "seconds": statistics.median(times),
                     "per_s": count / statistics.median(times), "runs": times})
    for output in ("vqc", "png", "png-npz", "png-small"):  # the next condition starts from the same state
        shutil.rmtree(work / output, ignore_errors=True)
    startup = next(r["seconds"] for r in rows if r["what"].startswith("start-up"))
    for r in rows:
        if r["what"] in ("encode folder -> .vqc", "encode folder -> codes.npz"):
            r["vs_raw"], r["vs_raw_after_startup"] = r["per_s"] / raw["encode"], \
                r["items"] / max(r["seconds"] - startup, 1e-9) / raw["encode"]
        if r["what"] in ("decode .vqc folder -> PNG", "decode codes.npz -> PNG"):
            r["vs_raw"], r["vs_raw_after_startup"] = r["per_s"] / raw["decode"], \
                r["items"] / max(r["seconds"] - startup, 1e-9) / raw["decode"]
    return rows


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="cifar10")
    parser.add_argument("--images", type=int, default=10_000)
    parser.add_argument("--compress-images", type=int, default=1_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--no-load", action="store_true", help="Skip the run under a competing load.")
    args = parser.parse_args()
    from vqtool.media import image_to_array, read_image
    from vqtool.threads import available_cores, chosen_threads

    cores = available_cores()
    rows = []
    with tempfile.TemporaryDirectory(prefix="vqtool-bench-cli-") as tmp:
        work = Path(tmp)
        paths = extract(args.images, work / "images")
        pixels = np.stack([image_to_array(read_image(str(p))) for p in paths])
        compress_list = [str(p) for p in paths[:args.compress_images]]
        conditions = ["idle"] + ([] if args.no_load else ["loaded"])
        for condition in conditions:
            load = busy_processes(cores) if condition == "loaded" else []
            try:
                rows += run_condition(condition, args.model, pixels, work / "images", compress_list, args.repeats,
                                      work)
            finally:
                for process in load:
                    process.kill()
                    process.wait()
    sys.path.insert(0, str(Path(__file__).parent))
    from bench_prior import sampling_rows
    from bench_vqvae import matmul_peak

    peak = matmul_peak(chosen_threads())
    sampling = sampling_rows(args.model, chosen_threads(), peak)
    by = {(r["condition"], r["what"]): r for r in rows}
    print(f"vqtool {args.model} CLI on {platform.processor() or platform.machine()}, {cores} available cores, "
          f"torch {torch.__version__}; {args.images} CIFAR-10 test images; medians of {args.repeats} runs; "
          f"loaded = {cores} busy processes")
    print(f"{'':30} {'idle s':>8} {'per s':>8} {'vs raw':>7} {'(no start)':>10} {'loaded s':>9} {'per s':>8} "
          f"{'loaded/idle':>11}")
    for r in [r for r in rows if r["condition"] == "idle"]:
        loaded = by.get(("loaded", r["what"]))
        vs = f"{100 * r['vs_raw']:>6.0f}% {100 * r['vs_raw_after_startup']:>9.0f}%" if "vs_raw" in r else f"{'':>7} {'':>10}"
        tail = (f"{loaded['seconds']:>9.2f} {loaded['per_s']:>8.0f} {loaded['seconds'] / r['seconds']:>10.1f}x"
                if loaded else "")
        print(f"{r['what']:30} {r['seconds']:>8.2f} {r['per_s']:>8.0f} {vs} {tail}")
    print(f"prior sampling and range coding (quiet machine, {chosen_threads()} threads, matmul peak {peak:.0f} "
          f"GFLOP/s):")
    for r in sampling["rows"]:
        share = f"{100 * r['gflops'] / peak:5.1f}% of peak" if r.get("gflops") else ""
        print(f"  {r['op']:16} batch {r['batch']:>3}: {r['per_s']:8.1f}/s {share}")
    for batch, ratio in sampling["cached_over_naive"].items():
        print(f"  batch {batch}: cached sampling {ratio:.1f}x the naive loop")
    result = {"model": args.model, "images": args.images, "repeats": args.repeats, "available_cores": cores,
              "threads": chosen_threads(), "torch": torch.__version__, "machine": platform.machine(),
              "rows": rows, "prior": sampling}
    out = Path(__file__).parent / "results" / f"cli-{Path(args.model).stem}.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
