"""How much of the speaker do the speech codes carry? (issue 20, item 3: a content code without speaker leakage)

Zero-shot conversion keeps part of the source's voice; one suspect is the codes themselves. This script
asks linear probes (scikit-learn's logistic regression) to name the speaker of a speechocean **train**
utterance among its 125 speakers from per-utterance features: what the codes carry (a histogram of the
codes, and the mean and spread of the code vectors) against what the encoder is given (its normalised
log-mel) and the raw log-mel. Each speaker's four utterances take turns as the one held out (four folds);
the probe fits on the other three. No test data is read.

    python docs/speech_code_leakage.py [--model speech]      # scikit-learn: pip install 'vqtool[eval]'
"""

from __future__ import annotations

import argparse
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

import vqtool
from vqtool.data.speech import list_clips, load_waves

DATA = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "speechocean"


def mean_and_spread(x: np.ndarray) -> np.ndarray:
    """(channels, frames) -> (2 * channels,)"""
    return np.concatenate([x.mean(1), x.std(1)])


@torch.no_grad()
def utterance_features(model, wave: np.ndarray) -> dict[str, np.ndarray]:
    codes = model.encode(wave)
    histogram = np.bincount(codes.numpy(), minlength=model.config.num_codes) / max(len(codes), 1)
    padded, _ = model._padded(wave)
    _, log_mel = model.features(padded.reshape(1, -1))
    return {"codes: histogram of the 512 codes": histogram,
            "codes: code vectors, mean and spread": mean_and_spread(model.quantizer.lookup(codes[None])[0].numpy()),
            "encoder's input (normalised log-mel), mean and spread": mean_and_spread(model.normalise(log_mel)[0].numpy()),
            "raw log-mel, mean and spread": mean_and_spread(log_mel[0].numpy())}


def probe_accuracy(features: np.ndarray, speakers: np.ndarray, folds: list[np.ndarray]) -> list[float]:
    accuracies = []
    for held_out in folds:
        fit = np.setdiff1d(np.arange(len(speakers)), held_out)
        probe = make_pipeline(StandardScaler(), LogisticRegression(C=0.1, max_iter=3000))
        probe.fit(features[fit], speakers[fit])
        accuracies.append(float((probe.predict(features[held_out]) == speakers[held_out]).mean()))
    return accuracies


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="speech")
    args = parser.parse_args()
    torch.set_num_threads(1)
    model = vqtool.load(args.model, device="cpu")
    clips = [c for c in list_clips(DATA) if c.split == "train"]
    by_speaker = defaultdict(list)
    for i, clip in enumerate(clips):
        by_speaker[clip.speaker].append(i)
    turns = max(len(v) for v in by_speaker.values())
    folds = [np.array([idx[k] for idx in by_speaker.values() if len(idx) > k]) for k in range(turns)]
    table = defaultdict(list)
    for wave in load_waves(clips):
        for name, value in utterance_features(model, wave).items():
            table[name].append(value)
    speakers = np.array([c.speaker for c in clips])
    print(f"{len(clips)} utterances of {len(by_speaker)} speakers (chance {1 / len(by_speaker):.3f})")
    print(f"{'features':56} {'speaker named':>14}   folds")
    for name, rows in table.items():
        accuracies = probe_accuracy(np.stack(rows), speakers, folds)
        print(f"{name:56} {np.mean(accuracies):14.3f}   {', '.join(f'{a:.3f}' for a in accuracies)}")


if __name__ == "__main__":
    main()
