"""Speech corpora for training and evaluation: which clip is whose, which split, which digit.

Three layouts are understood: speechocean762 (``utterances.tsv`` with a split column), the Free
Spoken Digit Dataset (``recordings/{digit}_{speaker}_{n}.wav``, n = 0-4 is its official test
split) and a plain folder of speaker folders (``SPEAKER/*.wav``, all training data).
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..audio import AUDIO_SUFFIXES, Spectral, read_audio, warp_frequency
from ..errors import VqtoolError


@dataclass
class Clip:
    path: str
    speaker: str
    split: str  # "train" or "test"
    corpus: str
    digit: int | None = None


def list_clips(root: str | Path) -> list[Clip]:
    root = Path(root)
    if not root.is_dir():
        raise VqtoolError("speech data must be a folder (speechocean, fsdd or SPEAKER/*.wav)", str(root))
    if (root / "utterances.tsv").is_file():
        with open(root / "utterances.tsv", newline="") as handle:
            rows = list(csv.DictReader(handle, delimiter="\t"))
        return [Clip(str(root / "audio" / r["speaker"] / f"{r['utterance']}.flac"), f"so{r['speaker']}",
                     r["split"], "speechocean") for r in rows]
    if (root / "recordings").is_dir():
        clips = []
        for path in sorted((root / "recordings").glob("*.wav")):
            match = re.fullmatch(r"(\d)_([a-z]+)_(\d+)", path.stem)
            if match:
                digit, speaker, n = match.groups()
                clips.append(Clip(str(path), speaker, "test" if int(n) < 5 else "train", "fsdd", int(digit)))
        return clips
    clips = [Clip(str(p), p.parent.name, "train", root.name) for p in sorted(root.glob("*/*"))
             if p.suffix.lower() in AUDIO_SUFFIXES]
    if not clips:
        raise VqtoolError("no SPEAKER/*.wav clips found", str(root))
    return clips


def split_clips(roots: list[Path]) -> tuple[list[Clip], list[Clip]]:
    """(train, test) clips of several corpora, each listed once; training never sees a test clip."""
    clips = [c for root in roots for c in list_clips(root)]
    train = [c for c in clips if c.split == "train"]
    if not train:
        raise VqtoolError(f"no train clips found in {', '.join(map(str, roots))}")
    return train, [c for c in clips if c.split == "test"]


def speakers_of(clips: list[Clip]) -> list[str]:
    """Speaker names in a stable order: corpora in the order given, then sorted within each."""
    order: dict[str, list[str]] = {}
    for clip in clips:
        names = order.setdefault(clip.corpus, [])
        if clip.speaker not in names:
            names.append(clip.speaker)
    return [name for names in order.values() for name in sorted(names)]


def load_waves(clips: list[Clip]) -> list[np.ndarray]:
    return [read_audio(clip.path)[0] for clip in clips]


@torch.no_grad()
def log_mels(waves: list[np.ndarray], spectral: Spectral, warp: float = 1.0) -> list[torch.Tensor]:
    """(mels, frames) log-mel features for each clip, frames = samples // hop, on spectral's device; with
    `warp` != 1, of the voice with its frequencies scaled by 1 / warp (audio.warp_frequency)."""
    out = []
    for wave in waves:
        magnitude = spectral.magnitude(torch.from_numpy(wave)[None].to(spectral.window.device))
        magnitude = (magnitude if warp == 1.0 else warp_frequency(magnitude, torch.tensor([warp])))[0]
        out.append(spectral.log_mel(magnitude)[:, : len(wave) // spectral.hop].contiguous())
    return out


def crop_batch(features: list[torch.Tensor], indices, frames: int, generator: torch.Generator,
               gain_db: float = 6.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Random crops of at most `frames` frames, padded, with their lengths and a random gain."""
    crops = []
    for i in indices.tolist():
        feature = features[i]
        length = min(frames, feature.shape[1])
        start = int(torch.randint(0, feature.shape[1] - length + 1, (1,), generator=generator))
        crops.append(feature[:, start:start + length])
    lengths = torch.tensor([c.shape[1] for c in crops])
    batch = torch.full((len(crops), crops[0].shape[0], int(lengths.max())), float(np.log(1e-5)))
    for row, crop in enumerate(crops):
        batch[row, :, : crop.shape[1]] = crop
    gain = (torch.rand(len(crops), 1, 1, generator=generator) * 2 - 1) * gain_db / 20 * np.log(10)
    return batch + gain, lengths


def provenance(roots: list[Path], clips: list[Clip]) -> dict:
    """How a checkpoint records its speech training data (several corpora)."""
    from . import fingerprint

    return {"train_data": ", ".join(map(str, roots)), "train_split": "train", "train_items": len(clips),
            "train_sha256": ",".join(fingerprint(d)[:16] for d in roots),
            "eval_split": "test"}
