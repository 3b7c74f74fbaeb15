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
    def predict(self, images, batch: int = 500) -> np.ndarray:
        """uint8 images (N, H, W, C) -> class indices (N,)."""
        images = torch.as_tensor(np.asarray(images))
        out = []
        for start in range(0, len(images), batch):
            part = images[start:start + batch].to(self.device).permute(0, 3, 1, 2).float() / 255
            out.append(self(part).argmax(1).cpu())
        return torch.cat(out).numpy()

    def accuracy(self, images, labels) -> float:
        return float((self.predict(images) == np.asarray(labels)).mean())


class ClassifierTask:
    """Cross-entropy with random crops (4-pixel padding) and mirroring; accuracy on held-out images."""

    architecture = Classifier.architecture

    def __init__(self, config: ClassifierConfig, train, eval_path: str | None, data_info: dict | None = None):
        self.config, self.train, self.eval_path, self.data_info = config, train, eval_path, data_info or {}

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
        loss = F.cross_entropy(logits, labels)
        return loss, {"accuracy": (logits.argmax(1) == labels).float().mean().item()}

    def evaluate(self, model: Classifier, device) -> dict:
        from .data import load_images

        if not self.eval_path:
            return {}
        held_out = load_images(self.eval_path)
        return {"accuracy": round(model.accuracy(held_out.images, held_out.labels), 4), "eval_images": len(held_out)}

    def provenance(self) -> dict:
        return self.data_info

    def card_notes(self) -> dict:
        return {"task": "classifier", "summary": f"Classifies {self.config.channels}-channel images into "
                f"{len(self.config.classes)} classes ({', '.join(self.config.classes)}); vqtool uses it to "
                "measure how recognisable generated samples are."}
