"""What a `.vqc` record costs beyond its codes: format 1 (JSON header) against format 2 (binary header
with its own CRC), for CIFAR-10 test images encoded by the bundled `cifar10` model, bit-packed and
range-coded under its prior, as lone files and as records of one stream (which keep their names).
Prints a table; writes bench/results/vqc-size.json.

    python bench/bench_vqc_size.py [--images 500] [--data ../shared/data/cifar10/test.zip]
"""

from __future__ import annotations

import argparse
import json
import zlib
from pathlib import Path

import numpy as np


def v1_bytes(record, payload: bytes, coding: str) -> int:
    """Size of the same record as vqtool 0.1 wrote it (format 1): 9-byte prefix, JSON header, payload."""
    from vqtool.codes import bits_per_code, codes_crc32

    integrity = ({"bits_per_code": bits_per_code(record.codebook_size), "payload_crc32": zlib.crc32(payload)}
                 if coding == "packed" else {"codes_crc32": codes_crc32(record.codes)})
    header = {"model": record.model, "checkpoint_sha256": record.checkpoint_sha256,
              "codebook_size": record.codebook_size, "grid": list(record.grid), "coding": coding,
              "payload_bytes": len(payload), **integrity, "media": record.media}
    return 9 + len(json.dumps(header, separators=(",", ":"), sort_keys=True).encode()) + len(payload)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--images", type=int, default=500)
    parser.add_argument("--data", default=str(Path(__file__).resolve().parents[2] / "shared/data/cifar10/test.zip"))
    args = parser.parse_args()
    import torch

    import vqtool
    from vqtool.codes import CodeFile
    from vqtool.families.image.compress import compress
    from vqtool.data.images import load_images

    torch.set_num_threads(2)
    net = vqtool.load("cifar10", "cpu")
    images = load_images(args.data, limit=args.images)
    codes = net.encode(images.images.numpy()).cpu()
    compressed = compress(net.prior, codes)
    rows = {}
    for coding in ("packed", "range-prior"):
        for named in (False, True):
            sizes = {"v1": [], "v2": [], "payload": []}
            for i, grid in enumerate(codes.numpy()):
                media = {"kind": "image", "height": 32, "width": 32, "channels": 3,
                         **({"name": Path(images.names[i]).stem} if named else {})}
                record = CodeFile(grid, net.name, net.sha256, net.config.num_codes, media)
                payload = None if coding == "packed" else compressed[i]
                data = record.to_bytes(payload)
                stored = payload if payload is not None else data[-72:]
                sizes["payload"].append(len(stored))
                sizes["v2"].append(len(data))
                sizes["v1"].append(v1_bytes(record, stored, coding))
            key = f"{coding}{' (named, in a stream)' if named else ''}"
            ratio = np.array(sizes["v2"]) / np.array(sizes["payload"])
            rows[key] = {k: float(np.mean(v)) for k, v in sizes.items()}
            rows[key].update({"v2_over_payload_mean": float(ratio.mean()),
                              "v2_over_payload_max": float(ratio.max()),
                              "share_within_2x": float((ratio <= 2).mean())})
    print(f"{args.images} CIFAR-10 test images, model cifar10 (bytes per record, means)")
    print(f"{'coding':38} {'payload':>8} {'v1':>7} {'v2':>7} {'v1 header':>10} {'v2 header':>10} "
          f"{'v2/payload':>11} {'<=2x':>6}")
    for key, row in rows.items():
        print(f"{key:38} {row['payload']:8.1f} {row['v1']:7.1f} {row['v2']:7.1f} {row['v1'] - row['payload']:10.1f} "
              f"{row['v2'] - row['payload']:10.1f} {row['v2_over_payload_mean']:11.2f} {row['share_within_2x']:6.1%}")
    out = Path(__file__).resolve().parent / "results" / "vqc-size.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps({"images": args.images, "rows": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
