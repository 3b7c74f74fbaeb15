"""Training recipes of the classifiers (networks in vqtool/classifiers.py): image classes or binary
attributes, and speakers or spoken digits."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from vqtool.audio import Spectral, warp_frequency
from vqtool.classifiers import AudioClassifier, AudioClassifierConfig, Classifier, ClassifierConfig
from vqtool.data.speech import crop_batch, log_mels
from vqtool.training import TaskBase


class ClassifierTask(TaskBase):
    """Cross-entropy (binary per attribute if multilabel) with random crops (4-pixel padding) and
    mirroring; accuracy on held-out images, from `eval_path` (labels = folders) or a loaded `eval_set`."""

    model_class = Classifier

    def __init__(self, config: ClassifierConfig, train, eval_path: str | None, data_info: dict | None = None,
                 eval_set=None):
        self.config, self.train, self.eval_path, self.data_info = config, train, eval_path, data_info or {}
        self.eval_set = eval_set

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

    def loss(self, model, batch, generator):
        images, labels = batch
        logits = model(images)
        if self.config.multilabel:
            loss = F.binary_cross_entropy_with_logits(logits, labels)
            return loss, {"accuracy": ((logits > 0) == (labels > 0.5)).float().mean().item()}
        loss = F.cross_entropy(logits, labels)
        return loss, {"accuracy": (logits.argmax(1) == labels).float().mean().item()}

    def evaluate(self, model: Classifier, device) -> dict:
        from vqtool.data.images import load_images

        held_out = self.eval_set or (load_images(self.eval_path) if self.eval_path else None)
        if held_out is None:
            return {}
        if not self.config.multilabel:
            return {"accuracy": round(model.accuracy(held_out.images, held_out.labels), 4), "eval_images": len(held_out)}
        right = model.predict(held_out.images) == held_out.labels.numpy().astype(np.int64)
        return {"accuracy": round(float(right.mean()), 4),
                **{f"accuracy_{name}": round(float(right[:, i].mean()), 4) for i, name in enumerate(self.config.classes)},
                "eval_images": len(held_out)}

    def card_notes(self) -> dict:
        if self.config.multilabel:
            return {"task": "attribute-classifier", "summary": f"Reads {len(self.config.classes)} binary attribute(s) "
                    f"({', '.join(self.config.classes)}) from {self.config.channels}-channel face images; vqtool uses "
                    "it only to judge Fader Network edits (it never trains them)."}
        return {"task": "classifier", "summary": f"Classifies {self.config.channels}-channel images into "
                f"{len(self.config.classes)} classes ({', '.join(self.config.classes)}); vqtool uses it to "
                "measure how recognisable generated samples are."}


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


class AudioClassifierTask(TaskBase):
    """Cross-entropy on random crops of up to 1.5 s with random gain (and, with `warp`, random vocal
    tract length perturbation); held-out accuracy (and EER on unseen speakers for a speaker classifier)."""

    model_class = AudioClassifier
    CROP_FRAMES = 150

    def __init__(self, config: AudioClassifierConfig, train_waves, train_labels, held_out=None,
                 unseen=None, data_info: dict | None = None, warp: float = 0.0):
        self.config, self.labels, self.warp = config, torch.tensor(train_labels), warp
        self.features = log_mels(train_waves, Spectral(mels=config.mels))
        self.held_out, self.unseen, self.data_info = held_out, unseen, data_info or {}

    def dataset_size(self) -> int:
        return len(self.features)

    def batch(self, indices, device, generator):
        features, lengths = crop_batch(self.features, indices, self.CROP_FRAMES, generator)
        if self.warp:
            factors = 1 + (torch.rand(len(indices), generator=generator) * 2 - 1) * self.warp
            features = warp_frequency(features, factors)
        return features.to(device), lengths.to(device), self.labels[indices].to(device)

    def loss(self, model, batch, generator):
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

    def card_notes(self) -> dict:
        c = self.config
        return {"task": "audio-classifier", "summary": f"Classifies 16 kHz speech by {c.label} into "
                f"{len(c.classes)} classes from log-mel features; its {c.embedding}-dimensional unit embedding "
                "is what speaker similarity is measured with."}
