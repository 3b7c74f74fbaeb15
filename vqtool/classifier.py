"""A small image classifier, trained by the project, that judges generated samples.

Three stages of two 3x3 convolutions with batch norm, max-pooling between them, global average
pooling and a linear layer: small enough to train on two CPU cores in minutes, good enough to tell
whether a "cat" sample looks like a cat to something other than its maker.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


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
    architecture = "classifier-image"

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


class ClassifierTask:
    """Cross-entropy (binary per attribute if multilabel) with random crops (4-pixel padding) and
    mirroring; accuracy on held-out images, from `eval_path` (labels = folders) or a loaded `eval_set`."""

    architecture = Classifier.architecture

    def __init__(self, config: ClassifierConfig, train, eval_path: str | None, data_info: dict | None = None,
                 eval_set=None):
        self.config, self.train, self.eval_path, self.data_info = config, train, eval_path, data_info or {}
        self.eval_set = eval_set

    def build(self) -> Classifier:
        return Classifier(self.config)

    def dataset_size(self) -> int:
        return len(self.train)

    def batch(self, indices, device, generator):
        images = self.train.images[indices].permute(0, 3, 1, 2).float().div_(255)
        n, _, height, width = images.shape
        padded = F.pad(images, (4, 4, 4, 4), mode="reflect")
        dy, dx = torch.randint(0, 9, (2, n), generator=generator)
        rows = (dy[:, None] + torch.arange(height))[:, None, :, None]
        cols = (dx[:, None] + torch.arange(width))[:, None, None, :]
        images = padded[torch.arange(n)[:, None, None, None], torch.arange(images.shape[1])[None, :, None, None],
                        rows, cols]
        mirror = torch.rand(n, generator=generator) < 0.5
        images[mirror] = images[mirror].flip(-1)
        return images.to(device), self.train.labels[indices].to(device)

    def loss(self, model, batch):
        images, labels = batch
        logits = model(images)
        if self.config.multilabel:
            loss = F.binary_cross_entropy_with_logits(logits, labels)
            return loss, {"accuracy": ((logits > 0) == (labels > 0.5)).float().mean().item()}
        loss = F.cross_entropy(logits, labels)
        return loss, {"accuracy": (logits.argmax(1) == labels).float().mean().item()}

    def evaluate(self, model: Classifier, device) -> dict:
        from .data import load_images

        held_out = self.eval_set or (load_images(self.eval_path) if self.eval_path else None)
        if held_out is None:
            return {}
        if not self.config.multilabel:
            return {"accuracy": round(model.accuracy(held_out.images, held_out.labels), 4), "eval_images": len(held_out)}
        right = model.predict(held_out.images) == held_out.labels.numpy().astype(np.int64)
        return {"accuracy": round(float(right.mean()), 4),
                **{f"accuracy_{name}": round(float(right[:, i].mean()), 4) for i, name in enumerate(self.config.classes)},
                "eval_images": len(held_out)}

    def provenance(self) -> dict:
        return self.data_info

    def card_notes(self) -> dict:
        if self.config.multilabel:
            return {"task": "attribute-classifier", "summary": f"Reads {len(self.config.classes)} binary attribute(s) "
                    f"({', '.join(self.config.classes)}) from {self.config.channels}-channel face images; vqtool uses "
                    "it only to judge Fader Network edits (it never trains them)."}
        return {"task": "classifier", "summary": f"Classifies {self.config.channels}-channel images into "
                f"{len(self.config.classes)} classes ({', '.join(self.config.classes)}); vqtool uses it to "
                "measure how recognisable generated samples are."}
