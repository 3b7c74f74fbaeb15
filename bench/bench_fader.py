"""Speed of the Fader Networks on this machine's CPU.

Edits (reader + encoder + decoder) per second at batch 1 and 64, with achieved GFLOP/s against the
measured float32 matmul peak; a slider sweep of 8 steps (one encode, 8 decodes) against the naive
loop of 8 separate edits (same images); and the whole own-photo path of `vqtool fade --paste` on a
12-megapixel photo (decode the JPEG, crop and resize, edit, paste the change back, encode the JPEG).
Writes bench/results/fader-<model>.json.

    python bench/bench_fader.py [--model faces-utk] [--threads 2]
"""

from __future__ import annotations

import argparse
import io
import json
import platform
from pathlib import Path

import numpy as np
import torch

from bench_prior import timed
from bench_vqvae import conv_flops, matmul_peak


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="faces-utk")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    import vqtool
    from PIL import Image

    from vqtool.families.fader.model import edit_photo, face_box
    from vqtool.media import decode_image, encode_image

    peak = matmul_peak(args.threads)
    torch.set_num_threads(args.threads)
    net = vqtool.load(args.model, device="cpu")
    size, channels, name = net.config.image_size, net.config.channels, net.attributes[0]
    rows = []
    for batch in (1, 64):
        faces = torch.rand(batch, channels, size, size)
        call = lambda: net.edit(faces, {name: 1.0})  # noqa: E731
        flops = conv_flops(net, call)
        seconds = timed(call)
        rows.append({"op": "edit", "batch": batch, "per_s": batch / seconds, "ms_per_call": seconds * 1e3,
                     "gflops": flops / seconds / 1e9})
    faces, steps = torch.rand(16, channels, size, size), np.linspace(0, 1, 8).tolist()
    sweep = timed(lambda: net.sweep(faces, name, steps))
    naive = timed(lambda: [net.edit(faces, {name: v}) for v in steps])
    rows += [{"op": "sweep x8", "batch": 16, "per_s": 16 / sweep, "ms_per_call": sweep * 1e3, "gflops": None},
             {"op": "8 edits (naive)", "batch": 16, "per_s": 16 / naive, "ms_per_call": naive * 1e3, "gflops": None}]
    rng = np.random.default_rng(0)
    photo = Image.fromarray(rng.integers(0, 255, (3000, 4000, 3), dtype=np.uint8))
    buffer = io.BytesIO()
    photo.save(buffer, format="JPEG", quality=90)
    data = buffer.getvalue()

    def paste_path():
        image = decode_image(data, "photo.jpg")
        box = face_box(image.width, image.height, None)
        return encode_image(edit_photo(net, image, box, {name: 1.0}, paste=True)[0], "JPEG")  # as `fade --paste`

    seconds = timed(paste_path, 5.0)
    rows.append({"op": "fade --paste 12MP", "batch": 1, "per_s": 1 / seconds, "ms_per_call": seconds * 1e3,
                 "gflops": None})
    print(f"vqtool {args.model} on {platform.processor() or platform.machine()}, {args.threads} threads, "
          f"torch {torch.__version__}; float32 matmul peak {peak:.1f} GFLOP/s")
    print(f"{'op':20} {'batch':>5} {'per s':>9} {'ms/call':>10} {'GFLOP/s':>8} {'% peak':>7}")
    for r in rows:
        gf = f"{r['gflops']:>8.1f} {100 * r['gflops'] / peak:>6.1f}%" if r["gflops"] else f"{'':>8} {'':>7}"
        print(f"{r['op']:20} {r['batch']:>5} {r['per_s']:>9.1f} {r['ms_per_call']:>10.1f} {gf}")
    ratio = naive / sweep
    print(f"a sweep of 8 steps is {ratio:.1f}x the naive loop of 8 edits (one encode and read instead of 8)")
    result = {"model": args.model, "threads": args.threads, "torch": torch.__version__, "matmul_peak_gflops": peak,
              "rows": rows, "sweep_over_naive": ratio}
    out = Path(__file__).parent / "results" / f"fader-{Path(args.model).stem}.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
