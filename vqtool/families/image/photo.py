"""The photo model: an image VQ-VAE for real photographs with residual vector quantisation and a
parallel context model for range coding.

Residual vector quantisation (as SoundStream and EnCodec): S codebooks, each coding what the ones
before it left, so one grid position carries S codes and a prefix of q <= S of them is a coarser
image (`--quality q`); quantiser dropout in training makes every prefix decodable. One code position
covers 8x8 pixels.

The context model predicts each stage's codes from the stages before it (all positions at once) and,
for the first stage, the checkerboard's anchor half from nothing and the other half from the anchors:
2 + (S - 1) network passes for a whole photo instead of one step per code. For range coding it runs
as an integer network (`context_int.py`) so that encoder and decoder compute the same probabilities
on any machine.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from vqtool.evaluation import image_batch, to_uint8
from vqtool.hub import bounded
from vqtool.layers import ResidualBlock, tiled
from vqtool.quantize import VectorQuantizer

from . import PHOTO_ARCHITECTURE
from .context_int import IntegerContext, checkerboard

TILE_CODES = 192  # tile edge in codes (1,536 pixels) for large photos: smaller tiles cost 1.7-3x in halos
HALO_CODES = 8  # context around each tile, beyond the encoder's and decoder's reach


@dataclass
class PhotoConfig:
    channels: int = 3
    widths: list = bounded([64, 128, 192], 1, 8)  # after each stride-2 layer
    res_blocks: int = bounded(2, 0, 64)
    embedding_dim: int = 32
    num_codes: int = 256  # per stage
    stages: int = bounded(8, 1, 64)  # residual codebooks: --quality 1..stages
    beta: float = 0.25
    decay: float = 0.99
    context_hidden: int = 32
    context_frozen: bool = False  # the integer context model has been derived (export)


class ContextModel(nn.Module):
    """Logits of one stage's codes from the code vectors of the stages before it (and the stage's own
    anchors, for the first stage's second half). Two 3x3 convolutions and a per-stage 1x1 head."""

    def __init__(self, dim: int, hidden: int, num_codes: int, stages: int):
        super().__init__()
        self.dim, self.hidden = dim, hidden
        self.first = nn.Conv2d(2 * dim + 1, hidden, 3, padding=1)
        self.stage_bias = nn.Parameter(torch.zeros(stages, hidden))
        self.second = nn.Conv2d(hidden, hidden, 3, padding=1)
        self.heads = nn.Parameter(torch.randn(stages, num_codes, hidden) / hidden**0.5)
        self.head_bias = nn.Parameter(torch.zeros(stages, num_codes))

    def forward(self, stage: int, before: torch.Tensor, anchors: torch.Tensor | None = None) -> torch.Tensor:
        """`before` (N, D, h, w): the sum of earlier stages' code vectors; `anchors` (N, D, h, w): the
        stage's anchor code vectors (zero elsewhere) or None. Logits (N, K, h, w)."""
        n, _, h, w = before.shape
        flag = before.new_zeros(n, 1, h, w) if anchors is None else before.new_ones(n, 1, h, w)
        anchors = torch.zeros_like(before) if anchors is None else anchors
        x = F.relu(self.first(torch.cat([before, anchors, flag], 1)) + self.stage_bias[stage][None, :, None, None])
        x = F.relu(self.second(x))
        return torch.einsum("kc,nchw->nkhw", self.heads[stage], x) + self.head_bias[stage][None, :, None, None]


class PhotoVQ(nn.Module):
    Config = PhotoConfig
    architecture = PHOTO_ARCHITECTURE

    def __init__(self, config: PhotoConfig):
        super().__init__()
        self.config = c = config
        self.stride = 2 ** len(c.widths)
        down, ch = [], c.channels
        for i, width in enumerate(c.widths):
            down += [nn.Conv2d(ch, width, 4, stride=2, padding=1)] + ([nn.ReLU()] if i < len(c.widths) - 1 else [])
            ch = width
        top = c.widths[-1]
        self.encoder = nn.Sequential(*down, *[ResidualBlock(top, top // 2) for _ in range(c.res_blocks)], nn.ReLU(),
                                     nn.Conv2d(top, c.embedding_dim, 1))
        up = []
        widths = list(reversed(c.widths))
        for i, width in enumerate(widths):
            out = widths[i + 1] if i + 1 < len(widths) else c.channels
            up += [nn.ConvTranspose2d(width, out, 4, stride=2, padding=1)] + ([nn.ReLU()] if i + 1 < len(widths) else [])
        self.decoder = nn.Sequential(nn.Conv2d(c.embedding_dim, top, 3, padding=1),
                                     *[ResidualBlock(top, top // 2) for _ in range(c.res_blocks)], nn.ReLU(), *up)
        self.quantizers = nn.ModuleList(VectorQuantizer(c.num_codes, c.embedding_dim, c.beta, True, c.decay)
                                        for _ in range(c.stages))
        self.context = ContextModel(c.embedding_dim, c.context_hidden, c.num_codes, c.stages)
        self.integer_context = None
        if c.context_frozen:  # derived from `context` at export (context_int.freeze_context)
            self.integer_context = IntegerContext(c.embedding_dim, c.context_hidden, c.num_codes, c.stages)

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    # --- training ---------------------------------------------------------------------------------
    def forward(self, images: torch.Tensor, keep: torch.Tensor | None = None):
        """Training pass on images in [0, 1]: (reconstruction, codes (N, S, h, w), quantiser loss, each
        stage's perplexity, each stage's bits under the context model). `keep` (N,): stages each image's
        decoder sees (quantiser dropout); default all. The context model learns from the detached codes
        here, inside forward, so that DistributedDataParallel sees all parameters."""
        z = self.encoder(images - 0.5)
        residual, parts, codes, loss, perplexity = z, [], [], 0.0, []
        for vq in self.quantizers:
            q = vq(residual)
            chosen = vq.embedding[q.codes].movedim(-1, 1)
            parts.append(chosen)
            codes.append(q.codes)
            loss = loss + q.loss
            perplexity.append(q.perplexity)
            residual = residual - chosen.detach()
        stacked = torch.stack(parts, 1)  # (N, S, D, h, w)
        if keep is not None:
            mask = torch.arange(len(parts), device=z.device)[None, :] < keep[:, None]
            stacked = stacked * mask[:, :, None, None, None]
        quantized = stacked.sum(1).detach()
        recon = self.decoder(z + (quantized - z).detach()) + 0.5
        codes = torch.stack(codes, 1)
        return recon, codes, loss, torch.stack(perplexity), self.context_bits(codes.detach())

    def context_logits(self, codes: torch.Tensor) -> list[torch.Tensor]:
        """The float context model's logits for every stage of codes (N, S', h, w): S' + 1 tensors
        (the first stage's anchor pass, its second pass, then one per later stage)."""
        vectors = self.code_vectors(codes)  # (N, S', D, h, w)
        h, w = codes.shape[-2:]
        anchor = checkerboard(h, w, codes.device)
        before = torch.zeros_like(vectors[:, 0])
        out = [self.context(0, before), self.context(0, before, vectors[:, 0] * anchor)]
        for stage in range(1, codes.shape[1]):
            before = before + vectors[:, stage - 1]
            out.append(self.context(stage, before))
        return out

    def context_bits(self, codes: torch.Tensor) -> torch.Tensor:
        """Bits of each stage's codes under the float context model: (S',) summed over the batch."""
        logits = self.context_logits(codes)
        h, w = codes.shape[-2:]
        anchor = checkerboard(h, w, codes.device)
        first = F.cross_entropy(logits[0], codes[:, 0], reduction="none")
        second = F.cross_entropy(logits[1], codes[:, 0], reduction="none")
        stages = [torch.where(anchor, first, second).sum()]
        stages += [F.cross_entropy(lg, codes[:, s + 1], reduction="sum") for s, lg in enumerate(logits[2:])]
        return torch.stack(stages) / np.log(2)

    def code_vectors(self, codes: torch.Tensor) -> torch.Tensor:
        """Codes (N, S', h, w) -> their code vectors (N, S', D, h, w)."""
        return torch.stack([self.quantizers[s].embedding[codes[:, s]].movedim(-1, 1)
                            for s in range(codes.shape[1])], 1)

    # --- plain inference methods --------------------------------------------------------------------
    def as_batch(self, images) -> torch.Tensor:
        """PIL image(s), uint8 arrays (H,W,C)/(N,H,W,C) or float tensors in [0,1] -> (N,C,H,W)."""
        return image_batch(images, self.device)

    def _inference_layout(self) -> None:
        """Channels-last weights for inference (1.6x faster convolutions on CPUs); training keeps the default."""
        if not self.training and not getattr(self, "_channels_last", False):
            self.encoder.to(memory_format=torch.channels_last)
            self.decoder.to(memory_format=torch.channels_last)
            self._channels_last = True

    @torch.no_grad()
    def encode(self, images, quality: int | None = None) -> torch.Tensor:
        """Images -> codes (N, q, ceil(H/8), ceil(W/8)) int64: the first q = `quality` (default all) stages."""
        quality = self.check_quality(quality)
        x = self.as_batch(images)
        height, width = x.shape[-2:]
        s = self.stride
        x = F.pad(x, (0, -width % s, 0, -height % s), mode="replicate")

        self._inference_layout()

        def codes(part):
            residual = self.encoder((part - 0.5).contiguous(memory_format=torch.channels_last)).contiguous()
            grids = []
            for vq in self.quantizers[:quality]:
                flat = residual.movedim(1, -1).reshape(-1, residual.shape[1])
                index = vq.nearest(flat)
                grids.append(index.view(residual.shape[0], *residual.shape[2:]))
                residual = residual - vq.embedding[grids[-1]].movedim(-1, 1)
            return torch.stack(grids, 1).float()

        return tiled(codes, x, TILE_CODES * s, HALO_CODES * s, 1, s).long()

    @torch.no_grad()
    def decode(self, codes, size: tuple[int, int] | None = None) -> torch.Tensor:
        """Codes (N, q, h, w) of the first q stages -> images (N, C, 8h, 8w) in [0, 1], cropped to `size`."""
        codes = torch.as_tensor(np.asarray(codes) if not torch.is_tensor(codes) else codes).to(self.device)
        if codes.dim() == 3:
            codes = codes[None]
        self.check_quality(codes.shape[1])

        self._inference_layout()

        def pixels(part):
            vectors = self.code_vectors(part.long()).sum(1).contiguous(memory_format=torch.channels_last)
            return self.decoder(vectors).contiguous() + 0.5

        images = torch.cat([tiled(pixels, codes[i:i + 1].float(), TILE_CODES, HALO_CODES, self.stride, 1)
                            for i in range(len(codes))]) if len(codes) else pixels(codes)
        images = images.clamp(0, 1)
        return images[..., : size[0], : size[1]] if size is not None else images

    def check_quality(self, quality: int | None) -> int:
        stages = self.config.stages
        if quality is None:
            return stages
        if not 1 <= int(quality) <= stages:
            raise ValueError(f"quality must lie in 1..{stages}, not {quality}")
        return int(quality)

    to_uint8 = staticmethod(to_uint8)
