"""Discretised logistic mixture likelihood of 8-bit pixels (Salimans et al., 2017, PixelCNN++).

A decoder trained with it predicts, for every pixel, a mixture of `n` logistics; within a component the
colour channels depend linearly on the channels before them (green on red, blue on red and green), so the
likelihood captures the strong correlation of colour errors that a per-channel scale cannot. Each value
0..255 gets the logistic mass of its bin [x - 1/255, x + 1/255] in [-1, 1] units, the two end bins take
the open tails. This is what the VQ-VAE paper's bits/dim on CIFAR-10 measures.

The channel layout of the decoder's output, per pixel: n mixture logits, then n·C means, n·C log-scales
and n·C(C-1)/2 channel coefficients.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

MIN_LOG_SCALE = -7.0


def parameter_channels(mixtures: int, channels: int) -> int:
    return mixtures * (1 + 2 * channels + channels * (channels - 1) // 2)


def _split(params: torch.Tensor, channels: int):
    """(logits N,n,H,W; means, log_scales N,n,C,H,W; coefficients N,n,P,H,W) of the decoder's output."""
    count, _, height, width = params.shape
    mixtures, pairs = params.shape[1] // parameter_channels(1, channels), channels * (channels - 1) // 2
    logits, means, log_scales, coeffs = params.split(
        [mixtures, mixtures * channels, mixtures * channels, mixtures * pairs], dim=1)
    per_channel, per_pair = (count, mixtures, channels, height, width), (count, mixtures, pairs, height, width)
    return (logits, means.reshape(per_channel), log_scales.reshape(per_channel).clamp_min(MIN_LOG_SCALE),
            torch.tanh(coeffs.reshape(per_pair)))


def _shifted_means(means: torch.Tensor, coeffs: torch.Tensor, values: torch.Tensor | None) -> torch.Tensor:
    """Each channel's mean plus its coefficients times the channels before it: the observed `values`
    (N,1,C,H,W), or with None the earlier channels' own expected values (the component's mean)."""
    out, pair = [], 0
    for c in range(means.shape[2]):
        earlier = [values[:, :, j] if values is not None else out[j] for j in range(c)]
        out.append(means[:, :, c] + sum(coeffs[:, :, pair + j] * earlier[j] for j in range(c)))
        pair += c
    return torch.stack(out, dim=2)


def mixture_log_prob(params: torch.Tensor, pixels: torch.Tensor) -> torch.Tensor:
    """log p(x | params) in nats per image (N,), for uint8-valued `pixels` (N, C, H, W); the arithmetic
    runs in params' dtype (float64 for reported numbers)."""
    return pixel_log_prob(params, pixels).flatten(1).sum(1)


def pixel_log_prob(params: torch.Tensor, pixels: torch.Tensor) -> torch.Tensor:
    """log p of each pixel's colour (N, H, W) in nats: where an image's bits go."""
    channels = pixels.shape[1]
    logits, means, log_scales, coeffs = _split(params, channels)
    x = (pixels.to(params.dtype) / 127.5 - 1).unsqueeze(1)  # N, 1, C, H, W in [-1, 1]
    centred = x - _shifted_means(means, coeffs, x)
    inv_scale = torch.exp(-log_scales)
    plus, minus = inv_scale * (centred + 1 / 255), inv_scale * (centred - 1 / 255)
    # the bin's mass as a difference of sigmoids, taken on the side of the mean where it does not cancel
    above = centred > 0
    mass = torch.where(above, torch.sigmoid(-minus) - torch.sigmoid(-plus), torch.sigmoid(plus) - torch.sigmoid(minus))
    middle = inv_scale * centred
    log_density = middle - log_scales - 2 * F.softplus(middle) - math.log(127.5)  # when the bin's mass underflows
    tiny = 1e-12 if params.dtype == torch.float64 else 1e-6
    log_bin = torch.where(mass > tiny, torch.log(mass.clamp_min(tiny)), log_density)
    log_bin = torch.where(x < -0.999, plus - F.softplus(plus), log_bin)  # value 0: everything below
    log_bin = torch.where(x > 0.999, -F.softplus(minus), log_bin)  # value 255: everything above
    per_component = log_bin.sum(2) + torch.log_softmax(logits, dim=1)  # N, n, H, W
    return torch.logsumexp(per_component, dim=1)


def mixture_bits(params: torch.Tensor, pixels: torch.Tensor) -> torch.Tensor:
    """-log2 p(x | params) per image (N,), computed in float64."""
    return -mixture_log_prob(params.double(), pixels) / math.log(2)


def mixture_mean(params: torch.Tensor, channels: int) -> torch.Tensor:
    """The mixture's expected image (N, C, H, W) in [0, 1] units (unclamped): what `decode` returns."""
    logits, means, _, coeffs = _split(params, channels)
    weights = torch.softmax(logits, dim=1).unsqueeze(2)
    expected = _shifted_means(means, coeffs, None)
    return ((weights * expected).sum(1) + 1) / 2
