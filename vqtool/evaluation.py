"""What every family's held-out evaluation needs: batching, 8-bit images, PSNR, and judges.

A judge is a separately trained checkpoint that scores a model's outputs; it is loaded one way
(`load_judge`: type-checked, its SHA-256 kept) and recorded one way (`judge_record`) in provenance.
Importing this module does not import torch (`vqtool compare` uses the PSNR).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import torch

# the classifiers' architecture names (vqtool/classifiers.py): judges, the fader's reader, the speaker
# encoder; defined here, without torch, so that declarations and command lines can name them
IMAGE_CLASSIFIER = "classifier-image"
AUDIO_CLASSIFIER = "classifier-audio"

EVAL_BATCH = 500  # items per model call in evaluations: bounds memory on two cores and on a GPU


def in_batches(fn, items: torch.Tensor, batch: int = EVAL_BATCH, *more) -> torch.Tensor:
    """fn over consecutive slices of `items` (and of each tensor in `more`), results on the CPU, joined."""
    import torch

    with torch.no_grad():
        return torch.cat([fn(items[i:i + batch], *(m[i:i + batch] for m in more)).cpu()
                          for i in range(0, len(items), batch)])


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """(N, C, H, W) floats in [0, 1] -> (N, H, W, C) uint8, rounded as an image file stores them."""
    return (images * 255).round().clamp(0, 255).byte().permute(0, 2, 3, 1).cpu().numpy()


def image_batch(images, device: torch.device | str = "cpu") -> torch.Tensor:
    """PIL image(s), uint8 arrays (H,W,C)/(N,H,W,C) or float tensors in [0,1] -> (N,C,H,W) float32 on
    `device`: what the image models' `encode` accepts."""
    import torch
    from PIL import Image

    if isinstance(images, Image.Image):
        images = [images]
    if isinstance(images, (list, tuple)):
        images = np.stack([np.asarray(i.convert("RGB") if isinstance(i, Image.Image) else i) for i in images])
    if isinstance(images, np.ndarray):
        array = images if images.ndim == 4 else images[None]
        images = torch.from_numpy(np.require(array, requirements=["C", "W"])).permute(0, 3, 1, 2).float() / 255
    if images.dim() == 3:
        images = images[None]
    return images.to(device, torch.float32)


def from_uint8(arrays, device: torch.device | str = "cpu") -> torch.Tensor:
    """(N, H, W, C) uint8 -> (N, C, H, W) floats in [0, 1] on `device`."""
    import torch

    return torch.as_tensor(np.asarray(arrays)).permute(0, 3, 1, 2).float().div(255).to(device)


def mse_per_image(originals: np.ndarray, restored: np.ndarray) -> np.ndarray:
    """Mean squared error of each uint8 image pair, pixels in [0, 1] (float64)."""
    diff = (restored.astype(np.float64) - originals.astype(np.float64)) / 255
    return (diff ** 2).reshape(len(diff), -1).mean(1)


def psnr_db(mse) -> float:
    """10·log10(1/MSE) for pixels in [0, 1]; an exact match counts as 100 dB."""
    return float(-10 * np.log10(np.maximum(mse, 1e-10)))


def psnr_metrics(mse: np.ndarray) -> dict:
    """`psnr_db` of the mean error over all images and `psnr_per_image_db`, the mean of each image's."""
    return {"psnr_db": round(psnr_db(mse.mean()), 3),
            "psnr_per_image_db": round(float(np.mean(-10 * np.log10(np.maximum(mse, 1e-10)))), 3)}


def load_judge(name_or_path: str, architecture: str, device: str | torch.device = "cpu", models_dir=None):
    """A judge checkpoint, refused unless it has the architecture the evaluation needs."""
    from .hub import load

    return load(name_or_path, str(device), models_dir, expect=architecture)


def judge_record(judge) -> dict:
    """How provenance names a judge: its name, SHA-256 and the command that trained it."""
    return {"name": judge.name, "sha256": judge.sha256,
            "command": judge.metadata.get("provenance", {}).get("command")}


KL_FLOOR = 1e-5  # added inside the logs of the KL terms, as the dynamics paper's code does


def distribution_distances(p: np.ndarray, q: np.ndarray) -> dict:
    """Distances between discrete distributions over the same outcomes (last axis; rows are pairs):
    total variation 1/2 sum|p - q|, Hellinger ||sqrt p - sqrt q|| / sqrt 2 (both in [0, 1]), and KL both
    ways with KL_FLOOR inside the logs (an outcome one side never gives stays finite). Means over rows."""
    p, q = np.atleast_2d(np.asarray(p, dtype=np.float64)), np.atleast_2d(np.asarray(q, dtype=np.float64))
    tv = 0.5 * np.abs(p - q).sum(-1)
    hellinger = np.sqrt(((np.sqrt(p) - np.sqrt(q)) ** 2).sum(-1) / 2)
    kl_pq = (p * (np.log(p + KL_FLOOR) - np.log(q + KL_FLOOR))).sum(-1)
    kl_qp = (q * (np.log(q + KL_FLOOR) - np.log(p + KL_FLOOR))).sum(-1)
    return {"tv": float(tv.mean()), "hellinger": float(hellinger.mean()), "kl_true_model": float(kl_pq.mean()),
            "kl_model_true": float(kl_qp.mean())}


def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Fréchet distance between Gaussians fitted to two feature sets (rows are samples): |mu_a - mu_b|^2 +
    tr(Sa + Sb - 2 (Sa Sb)^1/2). On Inception features it is FID; on other networks' features it is not,
    and it grows as samples shrink, so compare only numbers taken with the same network and sample sizes."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    mean = ((a.mean(0) - b.mean(0)) ** 2).sum()
    cov_a, cov_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    values, vectors = np.linalg.eigh(cov_a)
    root_a = (vectors * np.sqrt(values.clip(0))) @ vectors.T  # Sa^1/2, symmetric
    cross = np.linalg.eigvalsh(root_a @ cov_b @ root_a)  # tr (Sa Sb)^1/2 = tr (Sa^1/2 Sb Sa^1/2)^1/2
    return float(mean + np.trace(cov_a) + np.trace(cov_b) - 2 * np.sqrt(cross.clip(0)).sum())


def speaker_embedder():
    """Resemblyzer's pretrained speaker encoder (weights inside its wheel, never trained here; the `eval`
    extra), as a function from 16 kHz waves to unit utterance embeddings (N, 256): an independent judge of
    whose voice an output is. `embed(waves, same_level=True)` first brings every clip to Resemblyzer's own
    target level (-30 dBFS), down as well as up: Resemblyzer raises quiet clips only, so a louder clip is
    heard at its own level and the verdict moves with the gain."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # webrtcvad imports the deprecated pkg_resources
        from resemblyzer import VoiceEncoder, preprocess_wav
        from resemblyzer.audio import audio_norm_target_dBFS, normalize_volume
    encoder = VoiceEncoder("cpu", verbose=False)

    def heard(wave, same_level: bool):
        level = same_level and np.any(wave)  # a silent clip has no level to set
        return preprocess_wav(normalize_volume(wave, audio_norm_target_dBFS) if level else wave, source_sr=16000)

    return lambda waves, same_level=False: np.stack([encoder.embed_utterance(heard(w, same_level)) for w in waves])
