"""Image VQ-VAE (van den Oord et al., 2017, section 4.1): strided 4x4 convolutions and residual
3x3 blocks down to a grid of codes, transposed convolutions back up.

The network is fully convolutional, so images of any size encode to a grid of ceil(H/s) x ceil(W/s)
codes (s = 2**downsamples); edges are padded by replication and cropped again on decode, so a
decoded image has the input's exact size. Large images go through in tiles to bound memory.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from .codes import entropy_bits
from .layers import ResidualBlock, tiled
from .errors import VqtoolError
from .prior import PixelCNNPrior, PriorConfig, autoregress, sampler
from .quantize import VectorQuantizer

TILE_CODES = 64  # tile edge in codes for large images
HALO_CODES = 8  # context added around each tile, beyond the encoder's receptive field
SAMPLE_CHUNK = 500  # grids sampled at once: bounds the prior's cached activations (~40 MB per 500)


@dataclass
class VQVAEConfig:
    channels: int = 3
    hidden: int = 128
    res_hidden: int = 64
    res_blocks: int = 2
    downsamples: int = 2
    embedding_dim: int = 64
    num_codes: int = 512
    beta: float = 0.25
    ema: bool = True
    decay: float = 0.99
    prior: dict | None = None  # PriorConfig fields when the checkpoint carries a learned prior


class VQVAE(nn.Module):
    Config = VQVAEConfig
    architecture = "vqvae-image"

    def __init__(self, config: VQVAEConfig):
        super().__init__()
        self.config = c = config
        self.stride = 2 ** c.downsamples
        down, ch = [], c.channels
        for i in range(c.downsamples):
            out = c.hidden if i == c.downsamples - 1 else c.hidden // 2
            down += [nn.Conv2d(ch, out, 4, stride=2, padding=1), nn.ReLU()]
            ch = out
        self.encoder = nn.Sequential(
            *down, nn.Conv2d(ch, c.hidden, 3, padding=1),
            *[ResidualBlock(c.hidden, c.res_hidden) for _ in range(c.res_blocks)], nn.ReLU(),
            nn.Conv2d(c.hidden, c.embedding_dim, 1))
        self.quantizer = VectorQuantizer(c.num_codes, c.embedding_dim, c.beta, c.ema, c.decay)
        up = []
        for i in range(c.downsamples):
            last = i == c.downsamples - 1
            out = c.channels if last else c.hidden // 2
            up += [nn.ConvTranspose2d(c.hidden if i == 0 else c.hidden // 2, out, 4, stride=2, padding=1)]
            up += [] if last else [nn.ReLU()]
        self.decoder = nn.Sequential(
            nn.Conv2d(c.embedding_dim, c.hidden, 3, padding=1),
            *[ResidualBlock(c.hidden, c.res_hidden) for _ in range(c.res_blocks)], nn.ReLU(), *up)
        self.prior = PixelCNNPrior(PriorConfig(**c.prior)) if c.prior else None

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def forward(self, images: torch.Tensor | None = None, codes: torch.Tensor | None = None, labels=None):
        """Training pass on images in [0, 1]: (reconstruction, Quantized); on codes: the prior's logits.

        Both passes go through forward so that DistributedDataParallel sees them.
        """
        if codes is not None:
            return self.prior(codes, labels)
        quant = self.quantizer(self.encoder(images - 0.5))
        return self.decoder(quant.quantized) + 0.5, quant

    # --- plain inference methods -------------------------------------------------------------
    def as_batch(self, images) -> torch.Tensor:
        """PIL image(s), uint8 arrays (H,W,C)/(N,H,W,C) or float tensors in [0,1] -> (N,C,H,W)."""
        if isinstance(images, Image.Image):
            images = [images]
        if isinstance(images, (list, tuple)):
            images = np.stack([np.asarray(i.convert("RGB") if isinstance(i, Image.Image) else i) for i in images])
        if isinstance(images, np.ndarray):
            array = images if images.ndim == 4 else images[None]
            images = torch.from_numpy(np.ascontiguousarray(array)).permute(0, 3, 1, 2).float() / 255
        if images.dim() == 3:
            images = images[None]
        return images.to(self.device, torch.float32)

    @torch.no_grad()
    def encode(self, images) -> torch.Tensor:
        """Images -> codes (N, ceil(H/s), ceil(W/s)) int64."""
        x = self.as_batch(images)
        height, width = x.shape[-2:]
        s = self.stride
        x = F.pad(x, (0, -width % s, 0, -height % s), mode="replicate")

        def codes(part):
            z = self.encoder(part - 0.5)
            flat = z.movedim(1, -1).reshape(-1, z.shape[1])
            return self.quantizer.nearest(flat).view(z.shape[0], *z.shape[2:]).float()

        return tiled(codes, x, TILE_CODES * s, HALO_CODES * s, 1, s).long()

    @torch.no_grad()
    def decode(self, codes, size: tuple[int, int] | None = None, clamp: bool = True) -> torch.Tensor:
        """Codes (N, h, w) -> images (N, C, h*s, w*s) in [0, 1], cropped to `size` = (H, W) if given.

        `clamp=False` keeps the decoder's raw output: the mean of the discrete likelihood p(x | z).
        """
        codes = torch.as_tensor(np.asarray(codes) if not torch.is_tensor(codes) else codes).to(self.device)
        if codes.dim() == 2:
            codes = codes[None]
        s = self.stride

        def pixels(part):
            return self.decoder(self.quantizer.lookup(part.long())) + 0.5

        images = tiled(pixels, codes.float(), TILE_CODES, HALO_CODES, s, 1)
        images = images.clamp(0, 1) if clamp else images
        if size is not None:
            images = images[..., : size[0], : size[1]]
        return images

    # --- the learned prior ----------------------------------------------------------------------
    def require_prior(self):
        if self.prior is None:
            raise VqtoolError(f"model '{getattr(self, 'name', 'this model')}' has no learned prior "
                              "(train one with `vqtool train prior`)")
        return self.prior

    @property
    def classes(self) -> list[str]:
        return list(self.prior.config.classes) if self.prior is not None else []

    def class_index(self, label: str | int) -> int:
        """A class name or index -> index; VqtoolError naming the classes when it is neither."""
        classes = self.classes
        text = str(label)
        if text in classes:
            return classes.index(text)
        if text.lstrip("-").isdigit() and 0 <= int(text) < len(classes):
            return int(text)
        known = ", ".join(classes) if classes else "none: the prior is unconditional"
        raise VqtoolError(f"unknown class '{label}' (classes: {known})")

    @torch.no_grad()
    def sample(self, labels, seed: int = 0, temperature: float = 1.0, top_k: int | None = None,
               cached: bool = True) -> torch.Tensor:
        """Codes (N, h, w) drawn from the prior, one grid per entry of `labels` (class index, or -1 for
        none). The same seed gives the same codes; `cached=False` runs the naive loop (same result)."""
        prior = self.require_prior()
        if temperature <= 0:
            raise ValueError("temperature must be positive")
        if top_k is not None and not 1 <= top_k <= prior.config.num_codes:
            raise ValueError(f"top_k must lie in 1..{prior.config.num_codes}")
        labels = prior.labels_for(torch.as_tensor(labels), len(labels), self.device)
        grid = tuple(prior.config.grid)
        # all randomness drawn first, so the result does not depend on the chunking below
        noise = torch.rand(len(labels), *grid, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
        return torch.cat([autoregress(prior, labels[i:i + SAMPLE_CHUNK], *grid,
                                      sampler(noise[i:i + SAMPLE_CHUNK].to(self.device), temperature, top_k), cached)
                          for i in range(0, len(labels), SAMPLE_CHUNK)])

    @staticmethod
    def to_uint8(images: torch.Tensor) -> np.ndarray:
        """(N, C, H, W) floats in [0, 1] -> (N, H, W, C) uint8, rounded as an image file stores them."""
        return (images * 255).round().clamp(0, 255).byte().permute(0, 2, 3, 1).cpu().numpy()


class VQVAETask:
    """Training recipe for `fit`: MSE reconstruction + quantiser loss, evaluated on a held-out set."""

    architecture = VQVAE.architecture

    def __init__(self, config: VQVAEConfig, train, eval_path: str | None, flip: bool = True,
                 eval_limit: int | None = None, data_info: dict | None = None):
        self.config, self.train, self.eval_path = config, train, eval_path
        self.flip, self.eval_limit, self.data_info = flip, eval_limit, data_info or {}

    def build(self) -> VQVAE:
        return VQVAE(self.config)

    def dataset_size(self) -> int:
        return len(self.train)

    def batch(self, indices, device, generator):
        if self.train.images.device != device:  # the whole set fits on any GPU: move it once
            self.train.images = self.train.images.to(device)
        images = self.train.images[indices.to(device)].permute(0, 3, 1, 2).float().div_(255)
        if self.flip:
            mirror = (torch.rand(len(indices), generator=generator) < 0.5).to(device)
            images[mirror] = images[mirror].flip(-1)
        return images

    def loss(self, model, images):
        recon, quant = model(images)
        mse = F.mse_loss(recon, images)
        return mse + quant.loss, {"mse": mse.item(), "perplexity": quant.perplexity.item(),
                                  "usage": quant.usage.item()}

    def evaluate(self, model: VQVAE, device) -> dict:
        from .data import load_images

        if not self.eval_path:
            return {}
        held_out = load_images(self.eval_path, limit=self.eval_limit)
        return evaluate_reconstruction(model, held_out.images) | {"eval_images": len(held_out)}

    def provenance(self) -> dict:
        return self.data_info

    def card_notes(self) -> dict:
        return {"task": "image", "summary": "Encodes RGB images to a grid of discrete codes "
                f"(one code per {2 ** self.config.downsamples}x{2 ** self.config.downsamples} pixels, "
                f"K = {self.config.num_codes}) and decodes them back."}


def evaluate_reconstruction(model: VQVAE, images: torch.Tensor, batch: int = 500) -> dict:
    """PSNR and MSE of uint8 reconstructions (as the CLI writes them) and codebook statistics."""
    errors, histogram = [], torch.zeros(model.config.num_codes)
    for start in range(0, len(images), batch):
        originals = images[start:start + batch].numpy()
        codes = model.encode(originals)
        histogram += torch.bincount(codes.flatten().cpu(), minlength=model.config.num_codes)
        restored = model.to_uint8(model.decode(codes, originals.shape[1:3]))
        diff = (restored.astype(np.float64) - originals.astype(np.float64)) / 255
        errors.append((diff**2).reshape(len(diff), -1).mean(1))
    mse_per_image = np.concatenate(errors)
    mse = float(mse_per_image.mean())
    perplexity = 2 ** entropy_bits(histogram.numpy())
    return {"psnr_db": round(-10 * np.log10(mse), 3),
            "psnr_per_image_db": round(float(np.mean(-10 * np.log10(np.maximum(mse_per_image, 1e-10)))), 3),
            "mse": round(mse, 6), "perplexity": round(perplexity, 1),
            "codes_used": round(float((histogram > 0).float().mean()), 4)}
