"""Unit discovery (VQ-VAE paper, section 4.3): how phone-like are the speech model's codes?

A phone-aligned corpus is synthesised with espeak-ng (Debian package `espeak-ng`; libespeak-ng is
driven through ctypes, and its phoneme events give each phone's first sample). Sentences are the
speechocean762 transcripts, spoken by twelve espeak voice variants at varied speaking rates. Every
code (one per 20 ms) gets the phone sounding at its centre; each code is mapped to the phone it most
often coincides with on half of the utterances, and phone accuracy is measured on the other half.
Baselines: the same procedure on a random latent space (the untrained network, its codebook
initialised from its own outputs: a random projection of the log-mel frames, vector-quantised),
on codes drawn uniformly at random, and always guessing the most frequent phone. The paper reports
49.3% with 128 codes at 25 Hz against 7.2% for a random latent space (on its own corpus).

    python bench/bench_units.py [--model speech] [--utterances 600]
"""

from __future__ import annotations

import argparse
import csv
import ctypes
import ctypes.util
import json
import os
from collections import Counter
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
DATA = Path(os.environ.get("VQTOOL_DATA", ROOT.parent / "shared" / "data"))
VARIANTS = ["m1", "m2", "m3", "m4", "m5", "m6", "m7", "f1", "f2", "f3", "f4", "f5"]
EVENT_PHONEME, SYNCHRONOUS, PHONEME_EVENTS, RATE_PARAMETER = 7, 2, 1, 1


class Event(ctypes.Structure):
    _fields_ = [("type", ctypes.c_int), ("unique_identifier", ctypes.c_uint), ("text_position", ctypes.c_int),
                ("length", ctypes.c_int), ("audio_position", ctypes.c_int), ("sample", ctypes.c_int),
                ("user_data", ctypes.c_void_p), ("id", ctypes.c_char * 8)]


Callback = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.POINTER(Event))


class Espeak:
    """Synthesis with phone boundaries: (samples at `rate`, [(first sample, phone), ...])."""

    def __init__(self):
        path = ctypes.util.find_library("espeak-ng") or "libespeak-ng.so.1"
        try:
            self.lib = ctypes.CDLL(path)
        except OSError:
            raise SystemExit("libespeak-ng not found: install Debian's espeak-ng package") from None
        self.rate = self.lib.espeak_Initialize(SYNCHRONOUS, 0, None, PHONEME_EVENTS)
        self.samples, self.events = [], []
        self.callback = Callback(self._collect)  # kept alive for as long as espeak may call it
        self.lib.espeak_SetSynthCallback(self.callback)

    def _collect(self, wav, count, events):
        if count > 0 and wav:
            self.samples.append(np.ctypeslib.as_array(wav, (count,)).copy())
        index = 0
        while events[index].type != 0:
            if events[index].type == EVENT_PHONEME:
                self.events.append((events[index].sample, bytes(events[index].id).rstrip(b"\0").decode()))
            index += 1
        return 0

    def say(self, text: str, voice: str, words_per_minute: int):
        self.samples, self.events = [], []
        self.lib.espeak_SetVoiceByName(voice.encode())
        self.lib.espeak_SetParameter(RATE_PARAMETER, words_per_minute, 0)
        data = text.encode()
        self.lib.espeak_Synth(data, len(data) + 1, 0, 1, 0, 0, None, None)
        self.lib.espeak_Synchronize()
        audio = np.concatenate(self.samples).astype(np.float32) / 32768 if self.samples else np.zeros(0, np.float32)
        return audio, list(self.events)


def corpus(count: int, seed: int = 0):
    """(16 kHz audio, phone per 20 ms code) for `count` synthesised utterances."""
    from vqtool.audio import resample

    with open(DATA / "speechocean" / "utterances.tsv", newline="") as handle:
        texts = sorted({row["text"] for row in csv.DictReader(handle, delimiter="\t")})
    rng = np.random.default_rng(seed)
    espeak = Espeak()
    items = []
    for i, text in enumerate(rng.permutation(texts)[:count]):
        voice = f"{'en-us' if i % 2 else 'en'}+{VARIANTS[i % len(VARIANTS)]}"
        audio, events = espeak.say(str(text).lower(), voice, int(rng.integers(130, 200)))
        if not events or len(audio) < espeak.rate // 4:
            continue
        wave = resample(audio, espeak.rate, 16000)
        starts = np.array([sample for sample, _ in events]) / espeak.rate
        phones = ["_" if phone.startswith("_") else phone for _, phone in events]
        centres = (np.arange(-(-len(wave) // 320)) + 0.5) * 0.02
        labels = [phones[max(0, int(np.searchsorted(starts, t, side="right")) - 1)] for t in centres]
        items.append((wave, labels))
    return items


def accuracy(code_lists, label_lists) -> tuple[float, float]:
    """Map each code to its most frequent phone on the first half; accuracy on (first half, second half)."""
    half = len(code_lists) // 2
    votes: dict[int, Counter] = {}
    for codes, labels in zip(code_lists[:half], label_lists[:half]):
        for code, label in zip(codes, labels):
            votes.setdefault(int(code), Counter())[label] += 1
    mapping = {code: counter.most_common(1)[0][0] for code, counter in votes.items()}
    fallback = Counter(l for labels in label_lists[:half] for l in labels).most_common(1)[0][0]

    def score(part):
        hits = total = 0
        for codes, labels in part:
            for code, label in zip(codes, labels):
                hits += mapping.get(int(code), fallback) == label
                total += 1
        return hits / total

    return score(list(zip(code_lists[:half], label_lists[:half]))), score(list(zip(code_lists[half:], label_lists[half:])))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="speech")
    parser.add_argument("--utterances", type=int, default=600)
    args = parser.parse_args()
    import vqtool
    from vqtool.families.speech.model import SpeechVQVAE

    model = vqtool.load(args.model, device="cpu")
    items = corpus(args.utterances)
    waves, labels = [w for w, _ in items], [l for _, l in items]
    trained = [model.encode(w).numpy()[: len(l)] for w, l in zip(waves, labels)]
    torch.manual_seed(0)
    random_net = SpeechVQVAE(model.config).eval()
    with torch.no_grad():  # a random latent space: untrained encoder, codebook drawn from its own outputs
        outputs = torch.cat([random_net.encoder((random_net.features(random_net._padded(w)[0])[1] + 5) / 4)[0].t()
                             for w in waves[:50]])
        random_net.quantizer._init_from(outputs)
    random_codes = [random_net.encode(w).numpy()[: len(l)] for w, l in zip(waves, labels)]
    rng = np.random.default_rng(1)
    uniform_codes = [rng.integers(0, model.config.num_codes, len(l)) for l in labels]
    phones = Counter(p for l in labels for p in l)
    majority = phones.most_common(1)[0][1] / sum(phones.values())
    fit_trained, held_trained = accuracy(trained, labels)
    fit_random, held_random = accuracy(random_codes, labels)
    _, held_uniform = accuracy(uniform_codes, labels)
    used = len({int(c) for codes in trained for c in codes})
    report = {"model": args.model, "utterances": len(items), "voices": len(VARIANTS) * 2,
              "code_frames": int(sum(phones.values())), "phones": len(phones), "codes_used": used,
              "codes_per_second": 16000 / model.config.samples_per_code, "codebook": model.config.num_codes,
              "phone_accuracy_held_out": round(held_trained, 4), "phone_accuracy_fit_half": round(fit_trained, 4),
              "random_latent_accuracy_held_out": round(held_random, 4),
              "random_latent_accuracy_fit_half": round(fit_random, 4),
              "uniform_random_codes_accuracy_held_out": round(held_uniform, 4),
              "majority_phone_accuracy": round(majority, 4), "paper": {"trained": 0.493, "random": 0.072}}
    print(f"{'codes':32} {'phone accuracy (held-out half)':>32}")
    print(f"{'trained VQ-VAE':32} {held_trained:32.1%}")
    print(f"{'random latent space':32} {held_random:32.1%}")
    print(f"{'uniformly random codes':32} {held_uniform:32.1%}")
    print(f"{'most frequent phone':32} {majority:32.1%}")
    print(json.dumps(report))
    out = ROOT / "bench" / "results" / f"units-{Path(args.model).stem}.json"
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
