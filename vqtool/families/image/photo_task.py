"""Training and held-out evaluation of the photo model (photo.py).

Training items are random crops of the training photos at several scales (the photos are decoded
once and kept at each scale), mirrored at random. The loss is the reconstruction's squared error
with quantiser dropout (each crop's decoder sees a random number of stages half of the time, all of
them otherwise), the quantisers' commitment, and the context model's cross-entropy on the (detached)
codes: one run trains the codec and its entropy model together.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from vqtool.training import TaskBase

from .photo import PhotoConfig, PhotoVQ

SCALES = (1.0, 0.7, 0.5)  # photos are also seen shrunk: more kinds of texture per pixel
CROPS_PER_PHOTO = 16  # virtual training items per photo and scale (an epoch's length)


def load_photos(paths: list, max_side: int | None = None) -> list[np.ndarray]:
    """(H, W, 3) uint8 arrays of image files (RGB)."""
    from vqtool.media import image_to_array, read_image

    photos = []
    for path in paths:
        image = read_image(str(path), "RGB")
        if max_side and max(image.size) > max_side:
            image.thumbnail((max_side, max_side), Image.BICUBIC)
        photos.append(image_to_array(image))
    return photos


def scaled(photos: list[np.ndarray], crop: int) -> list[torch.Tensor]:
    """Every photo at every scale in SCALES that still holds a crop, as (H, W, 3) uint8 tensors."""
    out = []
    for photo in photos:
        for scale in SCALES:
            height, width = (round(side * scale) for side in photo.shape[:2])
            if min(height, width) < crop:
                continue
            image = Image.fromarray(photo)
            if scale != 1.0:
                image = image.resize((width, height), Image.LANCZOS)
            out.append(torch.from_numpy(np.asarray(image).copy()))
    return out


class PhotoTask(TaskBase):
    model_class = PhotoVQ

    def __init__(self, config: PhotoConfig, train: list[np.ndarray], held_out: list[np.ndarray],
                 calibration: list[np.ndarray], crop: int = 64, context_weight: float = 0.01,
                 data_info: dict | None = None):
        """`train`: training photos; `held_out`: photos for the final metrics (full size); `calibration`:
        a few training photos whose codes set the integer context model's ranges at export."""
        self.config, self.crop, self.context_weight = config, crop, context_weight
        self.pool = scaled(train, crop)
        self.held_out, self.calibration, self.data_info = held_out, calibration, data_info or {}

    def dataset_size(self) -> int:
        return len(self.pool) * CROPS_PER_PHOTO

    def batch(self, indices, device, generator):
        crops = []
        for index in indices.tolist():
            photo = self.pool[index // CROPS_PER_PHOTO]
            top = int(torch.randint(0, photo.shape[0] - self.crop + 1, (1,), generator=generator))
            left = int(torch.randint(0, photo.shape[1] - self.crop + 1, (1,), generator=generator))
            crops.append(photo[top:top + self.crop, left:left + self.crop])
        images = torch.stack(crops).permute(0, 3, 1, 2).float().div_(255)
        mirror = torch.rand(len(images), generator=generator) < 0.5
        images[mirror] = images[mirror].flip(-1)
        stages = self.config.stages
        keep = torch.where(torch.rand(len(images), generator=generator) < 0.5,
                           torch.randint(1, stages + 1, (len(images),), generator=generator), stages)
        return images.to(device), keep.to(device)

    def loss(self, model, batch, generator):
        images, keep = batch
        recon, codes, vq_loss, perplexity, bits = model(images, keep)
        mse = F.mse_loss(recon, images)
        per_code = bits / codes[:, 0].numel()
        loss = mse + vq_loss + self.context_weight * per_code.mean()
        return loss, {"mse": mse.item(), "bits_per_code": per_code.mean().item(),
                      "bits_first": per_code[0].item(), "perplexity_first": perplexity[0].item()}

    def evaluate(self, model: PhotoVQ, device) -> dict:
        from .context_int import freeze_context
        from .photo_eval import evaluate_photos

        bits = freeze_context(model, self.calibration)
        if not self.held_out:
            return bits
        metrics = evaluate_photos(model, self.held_out)
        best = metrics["photo_levels"][-1]  # the headline numbers: the default (highest) quality
        return {"psnr_db": best["psnr_db"], "bpp": best["bpp"], **bits, **metrics}

    def card_notes(self) -> dict:
        c = self.config
        return {"task": "photo", "summary": f"Encodes photographs of any size to {c.stages} residual code grids "
                f"(one code per {2 ** len(c.widths)}x{2 ** len(c.widths)} pixels per stage, K = {c.num_codes}); "
                f"`--quality q` keeps the first q; a parallel context model range-codes them (`--compress`)."}
