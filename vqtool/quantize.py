"""Vector quantiser shared by every VQ model (van den Oord et al., 2017, eq. 3).

Nearest-codebook lookup with straight-through gradients; the codebook learns either by its own loss
term or by exponential moving averages (appendix A.1), with restart of codes that fall out of use.
Under torch.distributed the EMA statistics and restarts are reduced across ranks, because DDP only
broadcasts rank 0's buffers and would otherwise discard what the other ranks saw.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn


@dataclass
class Quantized:
    quantized: torch.Tensor  # straight-through estimate, same shape as the input
    codes: torch.Tensor  # (N, *spatial) int64
    loss: torch.Tensor  # codebook + beta * commitment
    perplexity: torch.Tensor  # exp(entropy) of the batch's code histogram
    usage: torch.Tensor  # share of the codebook used in this batch


def _distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


class VectorQuantizer(nn.Module):
    def __init__(self, num_codes: int, dim: int, beta: float = 0.25, ema: bool = True,
                 decay: float = 0.99, eps: float = 1e-5, restart_below: float = 0.05):
        super().__init__()
        self.num_codes, self.dim, self.beta = num_codes, dim, beta
        self.ema, self.decay, self.eps, self.restart_below = ema, decay, eps, restart_below
        init = torch.randn(num_codes, dim) / dim**0.5
        if ema:
            self.register_buffer("embedding", init)
            self.register_buffer("cluster_size", torch.ones(num_codes))
            self.register_buffer("embed_sum", init.clone())
        else:
            self.embedding = nn.Parameter(init)
            self.register_buffer("cluster_size", torch.ones(num_codes))
        self.register_buffer("initialised", torch.tensor(False))

    def nearest(self, flat: torch.Tensor) -> torch.Tensor:
        """Index of the nearest code for each row of (M, D), by squared Euclidean distance."""
        emb = self.embedding
        distances = (flat.pow(2).sum(1, keepdim=True) - 2 * flat @ emb.t() + emb.pow(2).sum(1)[None])
        return distances.argmin(1)

    def lookup(self, codes: torch.Tensor) -> torch.Tensor:
        """Codes (N, *spatial) -> code vectors (N, D, *spatial)."""
        return self.embedding[codes].movedim(-1, 1)

    def forward(self, z: torch.Tensor) -> Quantized:
        flat = z.movedim(1, -1).reshape(-1, self.dim)
        if self.training and not bool(self.initialised):
            self._init_from(flat.detach())
        codes = self.nearest(flat.detach())
        counts = torch.bincount(codes, minlength=self.num_codes).float()
        if self.training:
            self._update(flat.detach(), codes, counts)
        quant = self.embedding[codes]
        commitment = F.mse_loss(flat, quant.detach())
        loss = self.beta * commitment
        if not self.ema:
            loss = loss + F.mse_loss(quant, flat.detach())
        straight_through = flat + (quant - flat).detach()
        probs = counts / counts.sum().clamp_min(1)
        perplexity = torch.exp(-(probs * torch.log(probs.clamp_min(1e-10))).sum())
        shape = z.movedim(1, -1).shape
        return Quantized(
            quantized=straight_through.view(shape).movedim(-1, 1),
            codes=codes.view(shape[:-1]),
            loss=loss,
            perplexity=perplexity,
            usage=(counts > 0).float().mean(),
        )

    @torch.no_grad()
    def _init_from(self, flat: torch.Tensor) -> None:
        """Start the codebook on encoder outputs so that no code begins far from the data."""
        picks = self._random_rows(flat, self.num_codes)
        self.embedding.data.copy_(picks)
        if self.ema:
            self.embed_sum.copy_(picks)
        self.cluster_size.fill_(1.0)
        self.initialised.fill_(True)

    @torch.no_grad()
    def _update(self, flat: torch.Tensor, codes: torch.Tensor, counts: torch.Tensor) -> None:
        counts = counts.clone()
        if self.ema:
            sums = torch.zeros_like(self.embed_sum).index_add_(0, codes, flat)
            if _distributed():
                dist.all_reduce(counts)
                dist.all_reduce(sums)
            self.cluster_size.mul_(self.decay).add_(counts, alpha=1 - self.decay)
            self.embed_sum.mul_(self.decay).add_(sums, alpha=1 - self.decay)
            total = self.cluster_size.sum()
            smoothed = (self.cluster_size + self.eps) / (total + self.num_codes * self.eps) * total
            self.embedding.copy_(self.embed_sum / smoothed[:, None])
        else:
            if _distributed():
                dist.all_reduce(counts)
            self.cluster_size.mul_(self.decay).add_(counts, alpha=1 - self.decay)
        self._restart_dead(flat)

    @torch.no_grad()
    def _restart_dead(self, flat: torch.Tensor) -> None:
        """Move codes whose average use fell below `restart_below` onto random encoder outputs."""
        dead = (self.cluster_size < self.restart_below).nonzero().squeeze(1)
        if dead.numel() == 0:
            return
        picks = self._random_rows(flat, dead.numel())
        self.embedding.data[dead] = picks
        self.cluster_size[dead] = 1.0
        if self.ema:
            self.embed_sum[dead] = picks

    @staticmethod
    def _random_rows(flat: torch.Tensor, n: int) -> torch.Tensor:
        """n random rows of flat (with replacement if needed), identical on every rank (rank 0's)."""
        index = torch.randint(0, flat.shape[0], (n,), device=flat.device)
        picks = flat[index] + 1e-3 * flat.std() * torch.randn(n, flat.shape[1], device=flat.device)
        if _distributed():
            dist.broadcast(picks, 0)
        return picks
