"""Redraw docs/fader-change.png: where each shipped slider changes the face. For every slider, the mean over
held-out faces of (decoded at alpha 1) − (decoded at alpha 0), other attributes at their true values, as a
map (red: brighter with the attribute, blue: darker), beside one face at both ends. An edit that draws a fixed
texture (the smile's dotted stripe) shows as sharp lines that sit at the same rows on every face.

    python docs/make_fader_change_figure.py [--faces 300]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
OUT = ROOT / "docs" / "fader-change.png"
MODELS = {"faces-smile": ("smiles/smiles.zip", None), "faces-utk": ("utkface/utkface-64.zip", "utkface/labels.csv")}


def held_out(net, faces: int):
    from vqtool.data.attributes import Attribute, load_attribute_set, read_name_list

    zip_name, labels = MODELS[net.name]
    path = DATA / zip_name
    rules = [Attribute.parse(n if r == n else f"{n}={r}") for n, r in zip(net.config.attributes, net.config.rules)]
    return load_attribute_set(path, rules, DATA / labels if labels else None, "L" if net.config.channels == 1 else "RGB",
                              net.config.image_size, select=read_name_list(path.parent / "test.txt"), limit=faces)


@torch.no_grad()
def slider_change(net, faces, slider: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(mean change in [-1, 1] gray levels, first face at alpha 0, at alpha 1)."""
    latent = net.encode(net.from_uint8(faces.images))
    ends = []
    for value in (0.0, 1.0):
        alphas = faces.labels.float().clone()
        alphas[:, slider] = value
        ends.append(net.to_uint8(net.decode(latent, alphas)).astype(np.float32) / 255)
    change = (ends[1] - ends[0]).mean(-1).mean(0)
    return change, ends[0][0], ends[1][0]


def main() -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    import vqtool

    parser = argparse.ArgumentParser()
    parser.add_argument("--faces", type=int, default=300)
    args = parser.parse_args()
    rows = []
    for name in MODELS:
        net = vqtool.load(name)
        faces = held_out(net, args.faces)
        rows += [(name, attribute, *slider_change(net, faces, i)) for i, attribute in enumerate(net.attributes)]
    figure, axes = plt.subplots(len(rows), 3, figsize=(6.6, 2.3 * len(rows)))
    for row, (name, attribute, change, low, high) in zip(axes, rows):
        gray = lambda image: image.squeeze(-1) if image.shape[-1] == 1 else image  # noqa: E731
        row[0].imshow(gray(low), cmap="gray", vmin=0, vmax=1)
        row[0].set_title(f"{name}: {attribute} = 0", fontsize=8)
        row[1].imshow(gray(high), cmap="gray", vmin=0, vmax=1)
        row[1].set_title(f"{attribute} = 1", fontsize=8)
        limit = float(np.abs(change).max())
        shown = row[2].imshow(change, cmap="RdBu_r", vmin=-limit, vmax=limit)
        row[2].set_title(f"mean change over {args.faces} faces", fontsize=8)
        figure.colorbar(shown, ax=row[2], fraction=0.046)
        for axis in row:
            axis.set_xticks([])
            axis.set_yticks([])
    figure.tight_layout()
    figure.savefig(OUT, dpi=110)
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
