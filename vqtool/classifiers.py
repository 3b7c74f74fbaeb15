"""The classifiers the project trains, as networks other families build in or load as judges.

`Classifier`: three stages of two 3x3 convolutions with batch norm, max-pooling between them, global
average pooling and a linear layer; small enough to train on two CPU cores in minutes, good enough to
tell whether a "cat" sample looks like a cat to something other than its maker. It judges generated
samples and edited faces, and is the Fader Network's built-in attribute reader.

`AudioClassifier`: dilated 1-D convolutions over log-mel frames, masked mean and standard-deviation
pooling, a linear embedding, and a cosine classifier (scaled cosine logits make embeddings of one class
cluster by angle, which is what zero-shot conditioning and cosine similarity need). It is the speech
model's speaker encoder, and the speaker and digit judges, always separately trained checkpoints.

Their training recipes are the classifier family's (vqtool/families/classifier/task.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .audio import Spectral
from .data.speech import log_mels
from .evaluation import AUDIO_CLASSIFIER, IMAGE_CLASSIFIER

MIN_REFERENCE_SECONDS = 0.5  # shorter clips give unreliable voice embeddings
MIN_EMBED_SAMPLES = 512  # 32 ms: shorter clips are padded with silence before embedding


@dataclass
class ClassifierConfig:
    channels: int = 3
    width: int = 32  # channels of the first stage; doubled at each later stage
    classes: list[str] = field(default_factory=list)
    multilabel: bool = False  # one independent yes/no per class (binary attributes) instead of one class


def _stage(cin: int, cout: int) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(),
            nn.Conv2d(cout, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU()]


class Classifier(nn.Module):
    Config = ClassifierConfig
    architecture = IMAGE_CLASSIFIER

    def __init__(self, config: ClassifierConfig):
        super().__init__()
        self.config = c = config
        w = c.width
        self.net = nn.Sequential(*_stage(c.channels, w), nn.MaxPool2d(2), *_stage(w, 2 * w), nn.MaxPool2d(2),
                                 *_stage(2 * w, 4 * w), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                                 nn.Linear(4 * w, len(c.classes)))

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Images (N, C, H, W) in [0, 1] -> logits (N, classes)."""
        return self.net(images - 0.5)

    @torch.no_grad()
    def probabilities(self, images, batch: int = 500) -> np.ndarray:
        """uint8 images (N, H, W, C) -> (N, classes): softmax, or one sigmoid per class if multilabel."""
        images = torch.as_tensor(np.asarray(images))
        out = []
        for start in range(0, len(images), batch):
            logits = self(images[start:start + batch].to(self.device).permute(0, 3, 1, 2).float() / 255)
            out.append((logits.sigmoid() if self.config.multilabel else logits.softmax(1)).cpu())
        return torch.cat(out).numpy()

    def predict(self, images, batch: int = 500) -> np.ndarray:
        """uint8 images (N, H, W, C) -> class indices (N,), or 0/1 per class (N, classes) if multilabel."""
        probabilities = self.probabilities(images, batch)
        return (probabilities > 0.5).astype(np.int64) if self.config.multilabel else probabilities.argmax(1)

    def accuracy(self, images, labels) -> float:
        return float((self.predict(images) == np.asarray(labels)).mean())


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
    architecture = AUDIO_CLASSIFIER

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
    def embed(self, waves: list[np.ndarray], warp: float = 1.0) -> torch.Tensor:
        """16 kHz waveforms -> (N, E) unit embeddings, one clip at a time (lengths differ); with `warp`, of
        the voices with frequencies scaled by 1 / warp (data.speech.log_mels). Clips under
        MIN_EMBED_SAMPLES are padded with silence: the convolutions need a few frames."""
        waves = [np.pad(w, (0, max(0, MIN_EMBED_SAMPLES - len(w)))) for w in waves]
        return torch.cat([self.embed_features(f[None]) for f in log_mels(waves, self.spectral, warp)]).cpu()

    @torch.no_grad()
    def predict(self, waves: list[np.ndarray]) -> np.ndarray:
        embeddings = self.embed(waves).to(self.device)
        return (embeddings @ F.normalize(self.weight, dim=1).t()).argmax(1).cpu().numpy()
