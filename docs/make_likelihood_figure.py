"""Redraw docs/cifar10-likelihood.png: held-out CIFAR-10 test images, their reconstruction by the first
`cifar10` decoder (squared error, `cifar10-v1`) and by the retrained one (the mean of its discretised
logistic mixture), both from the same codes, and where the new decoder's bits go (bits per pixel, all
three colours, on one colour scale).

    python docs/make_likelihood_figure.py [--model cifar10] [--before cifar10-v1] [--count 10]
"""

from __future__ import annotations

import argparse
import math
import zipfile
from pathlib import Path

import numpy as np
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
TEST = ROOT.parent / "shared" / "data" / "cifar10" / "test.zip"
OUT = ROOT / "docs" / "cifar10-likelihood.png"


def test_images(count: int) -> np.ndarray:
    """Every 1,000th test image (one spread over the classes), as the split stores them."""
    import io

    with zipfile.ZipFile(TEST) as archive:
        names = sorted(n for n in archive.namelist() if n.endswith((".jpg", ".png")))[::1000][:count]
        return np.stack([np.asarray(Image.open(io.BytesIO(archive.read(n))).convert("RGB")) for n in names])


def main() -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    import vqtool
    from vqtool.evaluation import mse_per_image, psnr_db
    from vqtool.families.image.likelihood import pixel_log_prob

    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="cifar10")
    parser.add_argument("--before", default="cifar10-v1")
    parser.add_argument("--count", type=int, default=10)
    args = parser.parse_args()
    new, old = vqtool.load(args.model, device="cpu"), vqtool.load(args.before, device="cpu")
    images = test_images(args.count)
    codes = new.encode(images)
    rows = {f"{args.before}\n(squared error)": old.to_uint8(old.decode(codes)),
            f"{args.model}\n(mixture mean)": new.to_uint8(new.decode(codes))}
    with torch.no_grad():
        params = new.decoder(new.quantizer.lookup(codes)).double()
        bits = -pixel_log_prob(params, torch.from_numpy(images).permute(0, 3, 1, 2)) / math.log(2)
    fig, axes = plt.subplots(4, args.count, figsize=(1.25 * args.count, 6.0))
    for i in range(args.count):
        axes[0, i].imshow(images[i])
        for r, (label, restored) in enumerate(rows.items(), start=1):
            axes[r, i].imshow(restored[i])
            axes[r, i].set_title(f"{psnr_db(mse_per_image(images[i:i + 1], restored[i:i + 1])[0]):.1f} dB", fontsize=7)
        shown = axes[3, i].imshow(bits[i], cmap="magma", vmin=0, vmax=24)
        axes[3, i].set_title(f"{float(bits[i].mean()) / 3:.2f} bits/dim", fontsize=7)
    for axis in axes.flat:
        axis.set_xticks([])
        axis.set_yticks([])
    for r, label in enumerate(["test image", *rows, "bits per pixel\n(RGB, new)"]):
        axes[r, 0].set_ylabel(label, fontsize=7)
    fig.colorbar(shown, ax=axes[3, :].tolist(), fraction=0.02, pad=0.01)
    fig.suptitle("CIFAR-10 test images from the same 8x8 codes: the decoder before and after training by its "
                 "likelihood", fontsize=9)
    fig.savefig(OUT, dpi=110, bbox_inches="tight")
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
