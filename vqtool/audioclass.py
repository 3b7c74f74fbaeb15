"""A small audio classifier over log-mel frames, with a unit-length embedding before its last layer.

One architecture, three jobs, always separately trained checkpoints: the speech model's speaker
encoder (its embedding conditions the decoder, so an unseen voice needs only a reference clip),
and two judges trained for evaluation only, never used in training: speaker identity and spoken
digit. Dilated 1-D convolutions, masked mean and standard-deviation pooling, a linear embedding,
and a cosine classifier (scaled cosine logits make embeddings of one class cluster by angle, which
is what zero-shot conditioning and cosine similarity need).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .audio import Spectral
from .speechdata import crop_batch, log_mels

MIN_REFERENCE_SECONDS = 0.5  # shorter clips give unreliable voice embeddings
MIN_EMBED_SAMPLES = 512  # 32 ms: shorter clips are padded with silence before embedding


@dataclass
class AudioClassifierConfig:
    mels: int = 80
    width: int = 128
    embedding: int = 128
    label: str = "speaker"  # what the classes are: "speaker" or "digit"
    classes: list[str] = field(default_factory=list)
    scale: float = 20.0


class AudioClassifier(nn.Module):
    Config = AudioClassifierConfig
    architecture = "classifier-audio"

    def __init__(self, config: AudioClassifierConfig):
        super().__init__()
        self.config = c = config
        self.spectral = Spectral(mels=c.mels)
        layers, channels = [], c.mels
        for dilation in (1, 2, 4, 1):
            layers += [nn.Conv1d(channels, c.width, 5, padding=2 * dilation, dilation=dilation),
                       nn.BatchNorm1d(c.width), nn.ReLU()]
            channels = c.width
        self.body = nn.Sequential(*layers)
        self.project = nn.Linear(2 * c.width, c.embedding)
        self.weight = nn.Parameter(torch.randn(len(c.classes), c.embedding) * 0.1)

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def embed_features(self, features: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """Log-mel (N, mels, T) -> unit embeddings (N, E); `lengths` masks padding."""
        hidden = self.body((features + 5.0) / 4.0)
        if lengths is None:
            mean, std = hidden.mean(-1), hidden.std(-1, unbiased=False)
        else:
            mask = (torch.arange(hidden.shape[-1], device=hidden.device)[None] < lengths[:, None].to(hidden.device))
            mask = mask[:, None].float()
            count = mask.sum(-1).clamp_min(1)
            mean = (hidden * mask).sum(-1) / count
            std = (((hidden - mean[..., None]) ** 2 * mask).sum(-1) / count).clamp_min(1e-6).sqrt()
        return F.normalize(self.project(torch.cat([mean, std], 1)), dim=1)

    def forward(self, features: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """Logits: scaled cosine between the embedding and each class's weight."""
        return self.config.scale * self.embed_features(features, lengths) @ F.normalize(self.weight, dim=1).t()

    @torch.no_grad()
    def embed(self, waves: list[np.ndarray]) -> torch.Tensor:
        """16 kHz waveforms -> (N, E) unit embeddings, one clip at a time (lengths differ). Clips under
        MIN_EMBED_SAMPLES are padded with silence: the convolutions need a few frames."""
        waves = [np.pad(w, (0, max(0, MIN_EMBED_SAMPLES - len(w)))) for w in waves]
        return torch.cat([self.embed_features(f[None]) for f in log_mels(waves, self.spectral)]).cpu()

    @torch.no_grad()
    def predict(self, waves: list[np.ndarray]) -> np.ndarray:
        embeddings = self.embed(waves).to(self.device)
        return (embeddings @ F.normalize(self.weight, dim=1).t()).argmax(1).cpu().numpy()


def warp_frequency(features: torch.Tensor, factors: torch.Tensor) -> torch.Tensor:
    """Vocal tract length perturbation: stretch each clip's mel axis by its factor (band i takes the
    value at i * factor, linearly interpolated), which makes a classifier less tied to the few
    voices it was trained on."""
    bands = features.shape[1]
    position = (torch.arange(bands)[None] * factors[:, None]).clamp(0, bands - 1)  # (N, bands)
    low = position.floor().long()
    high = (low + 1).clamp_max(bands - 1)
    weight = (position - low)[..., None]
    take = lambda index: features.gather(1, index[..., None].expand(-1, -1, features.shape[2]))  # noqa: E731
    return take(low) * (1 - weight) + take(high) * weight


def equal_error_rate(embeddings: torch.Tensor, speakers: list[str]) -> float:
    """Verification EER over every pair of clips: same speaker or not, by cosine similarity."""
    scores = (embeddings @ embeddings.t()).numpy()
    same = np.equal.outer(np.array(speakers), np.array(speakers))
    upper = np.triu_indices(len(speakers), 1)
    scores, same = scores[upper], same[upper]
    order = np.argsort(-scores)
    same = same[order]
    false_reject = 1 - np.cumsum(same) / same.sum()
    false_accept = np.cumsum(~same) / (~same).sum()
    index = np.argmin(np.abs(false_reject - false_accept))
    return float((false_reject[index] + false_accept[index]) / 2)


class AudioClassifierTask:
    """Cross-entropy on random crops of up to 1.5 s with random gain (and, with `warp`, random vocal
    tract length perturbation); held-out accuracy (and EER on unseen speakers for a speaker classifier)."""

    architecture = AudioClassifier.architecture
    CROP_FRAMES = 150

    def __init__(self, config: AudioClassifierConfig, train_waves, train_labels, held_out=None,
                 unseen=None, data_info: dict | None = None, warp: float = 0.0):
        self.config, self.labels, self.warp = config, torch.tensor(train_labels), warp
        self.features = log_mels(train_waves, Spectral(mels=config.mels))
        self.held_out, self.unseen, self.data_info = held_out, unseen, data_info or {}

    def build(self) -> AudioClassifier:
        return AudioClassifier(self.config)

    def dataset_size(self) -> int:
        return len(self.features)

    def batch(self, indices, device, generator):
        features, lengths = crop_batch(self.features, indices, self.CROP_FRAMES, generator)
        if self.warp:
            factors = 1 + (torch.rand(len(indices), generator=generator) * 2 - 1) * self.warp
            features = warp_frequency(features, factors)
        return features.to(device), lengths.to(device), self.labels[indices].to(device)

    def loss(self, model, batch):
        features, lengths, labels = batch
        logits = model(features, lengths)
        return F.cross_entropy(logits, labels), {"accuracy": (logits.argmax(1) == labels).float().mean().item()}

    def evaluate(self, model: AudioClassifier, device) -> dict:
        metrics = {}
        if self.held_out:
            waves, labels = self.held_out
            metrics["accuracy"] = round(float((model.predict(waves) == np.asarray(labels)).mean()), 4)
            metrics["eval_clips"] = len(waves)
        if self.unseen:
            waves, speakers = self.unseen
            metrics["unseen_speaker_eer"] = round(equal_error_rate(model.embed(waves), speakers), 4)
            metrics["unseen_clips"] = len(waves)
        return metrics

    def provenance(self) -> dict:
        return self.data_info

    def card_notes(self) -> dict:
        c = self.config
        return {"task": "audio-classifier", "summary": f"Classifies 16 kHz speech by {c.label} into "
                f"{len(c.classes)} classes from log-mel features; its {c.embedding}-dimensional unit embedding "
                "is what speaker similarity is measured with."}
