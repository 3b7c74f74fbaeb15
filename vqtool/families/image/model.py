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
from torch import nn

from vqtool.errors import VqtoolError
from vqtool.evaluation import image_batch, in_batches, to_uint8
from vqtool.hub import bounded
from vqtool.layers import ResidualBlock, tiled
from vqtool.quantize import VectorQuantizer

from . import ARCHITECTURE
from .likelihood import mixture_bits, mixture_mean, parameter_channels
from .prior import PixelCNNPrior, PriorConfig, autoregress, discretised_logistic_bits, sampler

TILE_CODES = 64  # tile edge in codes for large images
HALO_CODES = 8  # context added around each tile, beyond the encoder's receptive field
# grids that fit one tile decode in chunks of exactly this many, the last padded with copies: a convolution's
# rounding depends on the batch size (batch 256 against 1 differed in 3 of 786,432 sub-pixels by one level),
# so fixed chunks make a record's pixels the same whether it is decoded alone or among thousands
DECODE_CHUNK = 16
SAMPLE_CHUNK = 500  # grids sampled at once: bounds the prior's cached activations (~40 MB per 500)


@dataclass
class VQVAEConfig:
    channels: int = 3
    hidden: int = 128
    res_hidden: int = 64
    res_blocks: int = bounded(2, 0, 64)
    downsamples: int = bounded(2, 1, 8)
    embedding_dim: int = 64
    num_codes: int = 512
    beta: float = 0.25
    ema: bool = True
    decay: float = 0.99
    prior: dict | None = None  # PriorConfig fields when the checkpoint carries a learned prior
    # 0: the decoder outputs pixels (trained with squared error); n > 0: it outputs a discretised logistic
    # mixture of n components per pixel (likelihood.py), trained by its likelihood, and decodes to its mean
    mixtures: int = bounded(0, 0, 64)
    decoder_res_blocks: int | None = bounded(None, 0, 64)  # None: as many as the encoder's


class VQVAE(nn.Module):
    Config = VQVAEConfig
    architecture = ARCHITECTURE

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
            out = c.channels if last and not c.mixtures else c.hidden // 2
            up += [nn.ConvTranspose2d(c.hidden if i == 0 else c.hidden // 2, out, 4, stride=2, padding=1)]
            up += [] if last and not c.mixtures else [nn.ReLU()]
        if c.mixtures:  # a 1x1 head: the mixture's parameters at full resolution
            up.append(nn.Conv2d(c.hidden // 2, parameter_channels(c.mixtures, c.channels), 1))
        blocks = c.res_blocks if c.decoder_res_blocks is None else c.decoder_res_blocks
        self.decoder = nn.Sequential(
            nn.Conv2d(c.embedding_dim, c.hidden, 3, padding=1),
            *[ResidualBlock(c.hidden, c.res_hidden) for _ in range(blocks)], nn.ReLU(), *up)
        self.prior = PixelCNNPrior(PriorConfig(**c.prior)) if c.prior else None

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def forward(self, images: torch.Tensor | None = None, codes: torch.Tensor | None = None, labels=None,
                decode_codes: torch.Tensor | None = None):
        """Training pass on images in [0, 1]: (reconstruction, Quantized); on codes: the prior's logits;
        on `decode_codes`: the decoder's raw output (the mixture's parameters when `mixtures`).

        Every pass goes through forward so that DistributedDataParallel sees it.
        """
        if decode_codes is not None:
            return self.decoder(self.quantizer.lookup(decode_codes))
        if codes is not None:
            return self.prior(codes, labels)
        quant = self.quantizer(self.encoder(images - 0.5))
        return self.decoder(quant.quantized) + 0.5, quant

    # --- plain inference methods -------------------------------------------------------------
    def as_batch(self, images) -> torch.Tensor:
        """PIL image(s), uint8 arrays (H,W,C)/(N,H,W,C) or float tensors in [0,1] -> (N,C,H,W)."""
        return image_batch(images, self.device)

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
            return self.expected_pixels(self.decoder(self.quantizer.lookup(part.long())))

        n = codes.shape[0]
        if n and max(codes.shape[-2:]) <= TILE_CODES + 2 * HALO_CODES:
            chunks = []
            for i in range(0, n, DECODE_CHUNK):
                part = codes[i:i + DECODE_CHUNK]
                padded = torch.cat([part, part[:1].expand(DECODE_CHUNK - len(part), *part.shape[1:])])
                chunks.append(pixels(padded)[:len(part)])
            images = torch.cat(chunks)
        else:  # large grids one at a time, tile by tile (memory), for the same reason
            images = torch.cat([tiled(pixels, codes[i:i + 1].float(), TILE_CODES, HALO_CODES, s, 1)
                                for i in range(n)]) if n else pixels(codes)
        images = images.clamp(0, 1) if clamp else images
        if size is not None:
            images = images[..., : size[0], : size[1]]
        return images

    def expected_pixels(self, output: torch.Tensor) -> torch.Tensor:
        """The decoder's raw output -> the expected image in [0, 1] units (unclamped)."""
        return mixture_mean(output, self.config.channels) if self.config.mixtures else output + 0.5

    @torch.no_grad()
    def pixel_bits(self, codes: torch.Tensor, pixels: torch.Tensor) -> torch.Tensor:
        """-log2 p(x | z) per image (N,) of uint8 `pixels` (N, C, H, W) given their codes: the decoder's
        mixture, or for a squared-error decoder a logistic around its output with the prior's fitted
        per-channel scale."""
        codes = codes.long().to(self.device)
        if self.config.mixtures:  # float64 parameters of 100 images are ~80 MB: go in slices
            return in_batches(lambda z, x: mixture_bits(self.decoder(self.quantizer.lookup(z)).cpu(), x.cpu()),
                              codes, 100, pixels)
        mean = self.decode(codes, clamp=False).cpu()
        return discretised_logistic_bits(mean, pixels.cpu(), self.require_prior().pixel_log_scale.cpu())

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

    to_uint8 = staticmethod(to_uint8)
