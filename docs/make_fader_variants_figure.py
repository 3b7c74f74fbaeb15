"""Redraw docs/fader-variants.png: what each fader variant of the README's validation table does to the same
faces. One row per checkpoint: six neutral validation faces (scripts/smiles-val.txt, never trained on by the
variants), each as reconstructed and with the smile slider at 1. The variants are trained with the commands in
the README (runs/smile-*/smile-*.safetensors); the shipped model trained on these faces.

    python docs/make_fader_variants_figure.py LABEL=CHECKPOINT ...
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "smiles" / "smiles.zip"
VALIDATION = ROOT / "scripts" / "smiles-val.txt"
OUT = ROOT / "docs" / "fader-variants.png"
FACES = 6


def neutral_faces() -> np.ndarray:
    from vqtool.data.attributes import Attribute, load_attribute_set, read_name_list

    faces = load_attribute_set(DATA, [Attribute.parse("smile")], None, "L", 64, select=read_name_list(VALIDATION))
    return faces.images[faces.labels[:, 0] < 0.5][:FACES].numpy()


@torch.no_grad()
def row(net, faces: np.ndarray) -> np.ndarray:
    """Each face reconstructed (smile 0) beside the same face at smile 1, side by side."""
    latent = net.encode(net.from_uint8(faces))
    ends = [net.to_uint8(net.decode(latent, torch.full((len(faces), 1), value))) for value in (0.0, 1.0)]
    return np.concatenate([np.concatenate([a, b], 1) for a, b in zip(*ends)], 1)[:, :, 0]


def main(specs: list[str]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    import vqtool

    faces = neutral_faces()
    rows = [("validation faces", np.concatenate([np.concatenate([f, f], 1) for f in faces], 1)[:, :, 0])]
    for spec in specs:
        label, path = spec.split("=", 1)
        rows.append((label, row(vqtool.load(path, device="cpu"), faces)))
    figure, axes = plt.subplots(len(rows), 1, figsize=(12, 1.25 * len(rows)))
    for axis, (label, image) in zip(axes, rows):
        axis.imshow(image, cmap="gray", vmin=0, vmax=255)
        axis.set_title(label, fontsize=9, loc="left")
        axis.axis("off")
    figure.suptitle("each face: reconstructed (smile 0) | smile 1", fontsize=10)
    figure.tight_layout()
    figure.savefig(OUT, dpi=80)
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main(sys.argv[1:])
