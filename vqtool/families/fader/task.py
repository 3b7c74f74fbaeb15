"""Training recipe and held-out evaluation of Fader Networks."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from vqtool.evaluation import EVAL_BATCH, frechet_distance, judge_record, mse_per_image, psnr_db, psnr_metrics
from vqtool.training import TaskBase

from . import PROBE_FACES
from .model import FaderConfig, FaderNetwork, pasted_faces

SLIDER_POINTS = [-0.5, 0.0, 0.25, 0.5, 0.75, 1.0, 1.5]  # alphas at which the card reports the judge
PROBE_CS = [0.001, 0.01, 0.1, 1.0]  # the probe's inverse regularisation, chosen on the training faces


CRITIC_SUMMARY = {"matching": "conditional patch critic judged faces decoded at random attributes against real faces "
                               "that have them",
                  "realism": "patch critic judged reconstructions and faces decoded at random attributes against "
                             "real faces, without seeing attributes"}


class FaderTask(TaskBase):
    """Reconstruction (MSE on [-1, 1] pixels, as in the paper) + lambda_E x the encoder's adversarial loss
    (the discriminator should read the flipped attributes) + the discriminator's and the reader's own
    cross-entropies + the guidance term (ramped like lambda_E; see fader.py). One optimizer: each term
    reaches only its own player's weights."""

    model_class = FaderNetwork

    def __init__(self, config: FaderConfig, train, held_out=None, judge=None, flip: bool = True,
                 data_info: dict | None = None, probe_faces: int = 0):
        """`judge`: a loaded attribute classifier (`load_judge`) that scores the edits; `probe_faces` > 0: the
        independent judge (FeatureProbe) too, fitted on that many training faces."""
        self.config, self.train, self.held_out, self.judge, self.flip = config, train, held_out, judge, flip
        self.probe_faces = probe_faces
        self.data_info = {**(data_info or {}), **({"judge": judge_record(judge)} if judge is not None else {})}
        if probe_faces:
            self.data_info["independent_judge"] = FeatureProbe.description(min(probe_faces, len(train)))

    def optimizer_groups(self, model: FaderNetwork) -> list[dict]:
        """Adam with beta1 = 0.5 for both players, as the paper; the discriminator learns faster, so that it
        keeps up with an encoder that moves its code around to fool it, on a schedule 100x shorter."""
        critics = [*model.discriminator.parameters(), *(model.critic.parameters() if hasattr(model, "critic") else [])]
        theirs = set(map(id, critics))
        return [{"params": [p for p in model.parameters() if id(p) not in theirs], "betas": (0.5, 0.999)},
                {"params": critics, "betas": (0.5, 0.999), "lr_scale": self.config.discriminator_lr_scale}]

    def batch(self, indices, device, generator):
        images = self.train.images[indices].permute(0, 3, 1, 2).float().div_(255)
        if self.flip:
            mirror = torch.rand(len(indices), generator=generator) < 0.5
            images[mirror] = images[mirror].flip(-1)
        return images.to(device), self.train.labels[indices].to(device)

    def loss(self, model, batch, generator):
        images, labels = batch
        out = model(images, labels, generator)
        weight, judged, read = self.config.adversarial_weight * out["ramp"], out["judged"], out["read"]
        mse = F.mse_loss(out["recon"] * 2 - 1, images * 2 - 1)
        discriminator = F.binary_cross_entropy_with_logits(judged, labels)
        adversarial = F.binary_cross_entropy_with_logits(out["fooled"], 1 - labels)
        reader = F.binary_cross_entropy_with_logits(read, labels)
        loss = mse + weight * adversarial + discriminator + reader
        metrics = {"mse": mse.item(), "lambda": weight, "disc_loss": discriminator.item(),
                   "disc_accuracy": ((judged > 0) == (labels > 0.5)).float().mean().item(),
                   "reader_accuracy": ((read > 0) == (labels > 0.5)).float().mean().item()}
        if "guided" in out:
            guidance = F.binary_cross_entropy_with_logits(out["guided"], out["targets"])
            loss = loss + self.config.guidance_weight * out["ramp"] * guidance  # ramped like lambda_E
            metrics["guidance_loss"] = guidance.item()
        if "critic_real" in out:
            bce = lambda logits, value: F.binary_cross_entropy_with_logits(logits, torch.full_like(logits, value))  # noqa: E731
            fakes = [bce(out[key], 0.0) for key in ("critic_mismatched", "critic_fake") if key in out]
            critic = bce(out["critic_real"], 1.0) + sum(fakes) / len(fakes)
            fooling = bce(out["critic_fooled"], 1.0)
            loss = loss + critic + self.config.critic_weight * out["ramp"] * fooling  # ramped like lambda_E
            metrics["critic_loss"], metrics["critic_fooling"] = critic.item(), fooling.item()
        return loss, metrics

    def evaluate(self, model: FaderNetwork, device) -> dict:
        if self.held_out is None:
            return {}
        probe = FeatureProbe(self.train, model.attributes, self.probe_faces) if self.probe_faces else None
        return evaluate_fader(model, self.held_out, self.judge.to(device) if self.judge is not None else None, probe)

    def card_notes(self) -> dict:
        c = self.config
        return {"task": "fader", "summary": f"A Fader Network on {c.image_size}x{c.image_size} "
                f"{'grayscale' if c.channels == 1 else 'colour'} faces with slider(s) "
                + ", ".join(f"`{a}` ({rule})" for a, rule in zip(c.attributes, c.rules))
                + f": `vqtool fade face.jpg --{c.attributes[0]} 0.7`. Sliders run from 0 (without) to 1 (with), "
                f"extrapolation allowed in {c.alpha_range[0]}..{c.alpha_range[1]}."
                + (f" In training a {CRITIC_SUMMARY[c.critic_kind]} (weight {c.critic_weight})."
                   if c.critic_weight else "")}


class FeatureProbe:
    """The independent judge: a judge of another architecture and training than the fader's own reader and
    judge (two small CNNs trained on the same faces, which an edit can fool with a texture): ImageNet
    EfficientNet-Lite0 features, which nobody here trained, and per attribute a logistic regression fitted on
    training faces. The same features give the Fréchet distances."""

    def __init__(self, train, attributes: list[str], faces: int = PROBE_FACES, seed: int = 0):
        from sklearn.linear_model import LogisticRegression
        from sklearn.model_selection import GridSearchCV
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler

        from vqtool.pretrained import pretrained_encoder

        self.encoder = pretrained_encoder()
        pick = torch.randperm(len(train), generator=torch.Generator().manual_seed(seed))[:faces]
        features, truth = self.features(train.images[pick].numpy()), train.labels[pick].numpy() > 0.5
        columns = [train.classes.index(name) for name in attributes]
        probe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=3000))
        self.probes = [GridSearchCV(probe, {"logisticregression__C": PROBE_CS}, cv=5).fit(features, truth[:, c])
                       for c in columns]

    @staticmethod
    def description(faces: int) -> str:
        return (f"logistic regression (standardised features, C chosen by 5-fold cross-validation from {PROBE_CS}) "
                f"on ImageNet EfficientNet-Lite0 features of {faces} training faces (resized to 256, centre 224)")

    @torch.no_grad()
    def features(self, arrays: np.ndarray) -> np.ndarray:
        """uint8 faces (N, H, W, C) -> (N, 1280) pooled features."""
        from PIL import Image

        from vqtool.pretrained import preprocess

        out = []
        for start in range(0, len(arrays), 64):
            batch = torch.stack([preprocess(Image.fromarray(a.squeeze(-1) if a.shape[-1] == 1 else a))
                                 for a in arrays[start:start + 64]])
            out.append(self.encoder.features(batch).numpy())
        return np.concatenate(out) if out else np.zeros((0, 1280), np.float32)

    def probabilities(self, features: np.ndarray) -> np.ndarray:
        """(N, A): each attribute's probability by its probe."""
        return np.stack([probe.predict_proba(features)[:, 1] for probe in self.probes], 1)


def frechet_metrics(name: str, real: np.ndarray, recon: np.ndarray, truth: np.ndarray, seed: int = 0,
                    **edits: np.ndarray) -> dict:
    """FD on EfficientNet-Lite0 features (not FID: another network) of reconstructions and of edited faces
    against real faces that have the edit's target value, beside the real-against-real FD at the same sample
    sizes: for each target v, the real faces with v are halved; one half is the reference, the other the
    baseline, and as many reconstructions of that half and edits (faces without v, flipped to v; one kind per
    keyword: `edited=`, `pasted=`) are compared with the reference. Means over v = 0 and 1."""
    rng = np.random.default_rng(seed)
    scores = {"fd_real": [], "fd_reconstructions": [], **{f"fd_{kind}": [] for kind in edits}}
    for value in (False, True):
        having, lacking = np.flatnonzero(truth == value), np.flatnonzero(truth != value)
        having = rng.permutation(having)
        base, reference = having[:len(having) // 2], having[len(having) // 2:]
        n = min(len(base), len(lacking))
        if n < 2:  # a covariance needs two faces: a slice without this value says nothing about it
            continue
        base, flipped = base[:n], rng.permutation(lacking)[:n]
        scores["fd_real"].append(frechet_distance(real[base], real[reference]))
        scores["fd_reconstructions"].append(frechet_distance(recon[base], real[reference]))
        for kind, features in edits.items():
            scores[f"fd_{kind}"].append(frechet_distance(features[flipped], real[reference]))
    if not scores["fd_real"]:
        return {}
    out = {f"{key}_{name}": round(float(np.mean(v)), 2) for key, v in scores.items()}
    for kind in edits:
        out[f"fd_{kind}_over_real_{name}"] = round(out[f"fd_{kind}_{name}"] / out[f"fd_real_{name}"], 3)
    return out


@torch.no_grad()
def evaluate_fader(model: FaderNetwork, held_out, judge=None, probe: FeatureProbe | None = None) -> dict:
    """Reconstruction PSNR at the true attributes; with a judge, swap accuracy and the slider curve; with the
    independent probe, its accuracy and swap accuracy, and Fréchet distances on its features.

    `held_out`: an ImageSet whose labels are the (N, A) true attributes, columns in the model's order.
    """
    images, labels = held_out.images, held_out.labels.float()
    latents, read = [], []  # each face encoded and read once: every metric below decodes these latents
    for start in range(0, len(images), EVAL_BATCH):
        part = model.from_uint8(images[start:start + EVAL_BATCH])
        latents.append(model.encode(part))
        read.append(model.read(part).cpu())
    read = torch.cat(read).numpy()

    def decoded(alphas: torch.Tensor) -> np.ndarray:
        return np.concatenate([model.to_uint8(model.decode(latent, part.to(model.device)))
                               for latent, part in zip(latents, alphas.split(EVAL_BATCH))])

    recon = decoded(labels)
    mse = mse_per_image(images.numpy(), recon)
    mse_read = mse_per_image(images.numpy(), decoded(torch.from_numpy(read)))
    truth = labels.numpy() > 0.5
    metrics = {**psnr_metrics(mse), "psnr_db_read_attributes": round(psnr_db(mse_read.mean()), 3)}
    for i, name in enumerate(model.attributes):
        metrics[f"reader_accuracy_{name}"] = round(float(((read[:, i] > 0.5) == truth[:, i]).mean()), 4)
    metrics["eval_images"] = len(images)
    if judge is None and probe is None:
        return metrics
    edits = [decoded(flipped(labels, i)) for i in range(len(model.attributes))]  # for both judges
    pasted = [pasted_faces(images.numpy(), edit, recon) for edit in edits]
    if probe is not None:
        metrics.update(probe_metrics(model, probe, images.numpy(), recon, edits, truth, pasted))
    if judge is None:
        return metrics
    columns = [judge.config.classes.index(name) for name in model.attributes]
    judged = lambda arrays: judge.probabilities(arrays)[:, columns]  # noqa: E731
    on_originals, on_recon = judged(images.numpy()) > 0.5, judged(recon) > 0.5
    low, high = model.config.alpha_range
    points = [p for p in SLIDER_POINTS if low <= p <= high]
    for i, name in enumerate(model.attributes):
        metrics.update(verdict_metrics(name, truth[:, i], on_originals[:, i], on_recon[:, i],
                                       judged(edits[i])[:, i] > 0.5))
        metrics.update(swap_metrics(f"swap_accuracy_{name}_pasted", truth[:, i], judged(pasted[i])[:, i] > 0.5))
        curve = []
        for value in points:
            alphas = labels.clone()
            alphas[:, i] = value
            curve.append(judged(decoded(alphas))[:, i])
        curve = np.stack(curve, 1)  # (N, points)
        mean = curve.mean(0)
        inside = [j for j, p in enumerate(points) if 0 <= p <= 1]
        metrics[f"slider_{name}_alphas"] = points
        metrics[f"slider_{name}_judge_probability"] = [round(float(v), 4) for v in mean]
        metrics[f"slider_{name}_monotone"] = bool(np.all(np.diff(mean[inside]) >= 0))
        metrics[f"slider_{name}_monotone_extrapolated"] = bool(np.all(np.diff(mean) >= 0))
        metrics[f"slider_{name}_monotone_faces"] = round(float(np.all(np.diff(curve[:, inside], axis=1) >= -0.02,
                                                                      axis=1).mean()), 4)
    return metrics


def flipped(labels: torch.Tensor, attribute: int) -> torch.Tensor:
    """The attributes with one of them swapped (0 <-> 1), the others true: what swap accuracy edits to."""
    out = labels.clone()
    out[:, attribute] = 1 - out[:, attribute]
    return out


def verdict_metrics(name: str, truth: np.ndarray, originals: np.ndarray, recon: np.ndarray, edited: np.ndarray,
                    accuracy: str = "judge_accuracy", swap: str = "swap_accuracy") -> dict:
    """One judge's boolean verdicts on one attribute: its accuracy on the real faces and on their
    reconstructions, and the share of edits (the attribute flipped) it reads as flipped: over all faces,
    those without the attribute (adding it) and those with it (removing it) (swap_metrics)."""
    return {f"{accuracy}_{name}_originals": share(originals == truth),
            f"{accuracy}_{name}_reconstructions": share(recon == truth),
            **swap_metrics(f"{swap}_{name}", truth, edited)}


def share(hits: np.ndarray) -> float:
    return round(float(hits.mean()), 4)


def swap_metrics(key: str, truth: np.ndarray, edited: np.ndarray) -> dict:
    """The share of edits (the attribute flipped) read as flipped: `key` over all faces, `key_adding` over
    those without the attribute, `key_removing` over those with it."""
    return {key: share(edited != truth), f"{key}_adding": share(edited[~truth]),
            f"{key}_removing": share(~edited[truth])}


def probe_metrics(model: FaderNetwork, probe: FeatureProbe, originals: np.ndarray, recon: np.ndarray,
                  edits: list[np.ndarray], truth: np.ndarray, pasted: list[np.ndarray] | None = None) -> dict:
    """The independent judge's numbers (verdict_metrics) and the Fréchet distances on its features; `edits[i]`:
    the faces with attribute i flipped, `pasted[i]`: the same edits pasted onto the originals (pasted_faces),
    `truth`: the (N, A) true attributes."""
    real, rebuilt = probe.features(originals), probe.features(recon)
    on_real, on_recon = probe.probabilities(real) > 0.5, probe.probabilities(rebuilt) > 0.5
    metrics = {}
    for i, name in enumerate(model.attributes):
        edited = {"edited": probe.features(edits[i])}
        if pasted is not None:
            edited["pasted"] = probe.features(pasted[i])
            metrics.update(swap_metrics(f"probe_swap_accuracy_{name}_pasted", truth[:, i],
                                        probe.probabilities(edited["pasted"])[:, i] > 0.5))
        metrics.update(verdict_metrics(name, truth[:, i], on_real[:, i], on_recon[:, i],
                                       probe.probabilities(edited["edited"])[:, i] > 0.5, "probe_accuracy",
                                       "probe_swap_accuracy"))
        metrics.update(frechet_metrics(name, real, rebuilt, truth[:, i], **edited))
    return metrics
