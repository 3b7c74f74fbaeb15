"""A Vocos-style vocoder head (Siuzdak, 2023) in place of Griffin-Lim.

The speech decoder predicts each frame's STFT log-magnitude but no phase. Griffin-Lim finds a phase
by 16 FFT round trips and sounds phasey; this network reads the predicted log-magnitude once and
returns, per frame and bin, a magnitude correction and a phase, and one inverse STFT makes the wave:
one pass, no iterations, and every frame's output depends on a few neighbouring frames only, so
chunked decoding joins seamlessly. The backbone is a stack of ConvNeXt blocks at the frame rate.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

LOG_FLOOR = math.log(1e-5)
MAX_MAGNITUDE = 1e3


class ConvNeXtBlock(nn.Module):
    """Depthwise temporal convolution, then a per-frame MLP, added back with a learned layer scale."""

    def __init__(self, width: int, expansion: int = 3, kernel: int = 7):
        super().__init__()
        self.depthwise = nn.Conv1d(width, width, kernel, padding=kernel // 2, groups=width)
        self.norm = nn.LayerNorm(width)
        self.expand = nn.Linear(width, expansion * width)
        self.project = nn.Linear(expansion * width, width)
        self.scale = nn.Parameter(torch.full((width,), 0.1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.depthwise(x).transpose(1, 2)
        h = self.project(F.gelu(self.expand(self.norm(h)))) * self.scale
        return x + h.transpose(1, 2)


class Vocoder(nn.Module):
    """Log-magnitude (N, bins, frames) -> complex STFT (N, bins, frames) whose inverse is the wave."""

    def __init__(self, bins: int, width: int, blocks: int):
        super().__init__()
        self.bins = bins
        self.input = nn.Conv1d(bins, width, 7, padding=3)
        self.input_norm = nn.LayerNorm(width)
        self.blocks = nn.ModuleList(ConvNeXtBlock(width) for _ in range(blocks))
        self.output_norm = nn.LayerNorm(width)
        self.head = nn.Linear(width, 2 * bins)
        with torch.no_grad():  # starts from the decoder's own magnitude: the correction begins at zero
            self.head.weight[:bins].zero_()
            self.head.bias[:bins].zero_()

    def forward(self, log_magnitude: torch.Tensor) -> torch.Tensor:
        log_magnitude = log_magnitude.clamp_min(LOG_FLOOR)
        x = self.input((log_magnitude - LOG_FLOOR / 2) / 4)
        x = self.input_norm(x.transpose(1, 2)).transpose(1, 2)
        for block in self.blocks:
            x = block(x)
        correction, phase = self.head(self.output_norm(x.transpose(1, 2))).transpose(1, 2).chunk(2, dim=1)
        magnitude = torch.exp(log_magnitude + correction).clamp_max(MAX_MAGNITUDE)
        return torch.polar(magnitude, phase)


def anti_wrapped(difference: torch.Tensor) -> torch.Tensor:
    """|difference| of two phases on the circle (0..pi), as in APNet (Ai and Ling, 2023)."""
    return (difference - 2 * math.pi * torch.round(difference / (2 * math.pi))).abs()


def phase_losses(predicted: torch.Tensor, target: torch.Tensor, weight: torch.Tensor) -> dict[str, torch.Tensor]:
    """APNet's instantaneous phase, group delay (across bins) and instantaneous frequency (across frames)
    losses, each weighted by `weight` (the target's normalised magnitude: silent bins have no phase to
    learn). Phases (N, bins, frames)."""
    def mean(x, w):
        return (x * w).sum() / w.sum().clamp_min(1e-8)

    diff = predicted - target
    return {
        "phase": mean(anti_wrapped(diff), weight),
        "group_delay": mean(anti_wrapped(diff[:, 1:] - diff[:, :-1]), weight[:, 1:] * weight[:, :-1]),
        "frequency": mean(anti_wrapped(diff[..., 1:] - diff[..., :-1]), weight[..., 1:] * weight[..., :-1]),
    }
