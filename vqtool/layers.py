"""Building blocks shared by the convolutional families."""

from __future__ import annotations

import torch
from torch import nn


class ResidualBlock(nn.Module):
    """ReLU, 3x3 conv, ReLU, 1x1 conv, added to the input (the VQ-VAE paper's residual block)."""

    def __init__(self, channels: int, hidden: int):
        super().__init__()
        self.body = nn.Sequential(nn.ReLU(), nn.Conv2d(channels, hidden, 3, padding=1),
                                  nn.ReLU(), nn.Conv2d(hidden, channels, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


def tiled(fn, x: torch.Tensor, tile: int, halo: int, up: int = 1, down: int = 1) -> torch.Tensor:
    """Apply a fully convolutional `fn` (output size = input size * up / down) tile by tile.

    Each tile is extended by `halo` on every side so that its interior sees the same context as in
    one whole pass; memory then stays bounded by the tile, not by the image. Tile and halo must be
    multiples of `down`.
    """
    height, width = x.shape[-2:]
    if height <= tile + 2 * halo and width <= tile + 2 * halo:
        return fn(x)
    out = None
    for top in range(0, height, tile):
        for left in range(0, width, tile):
            y0, y1 = max(0, top - halo), min(height, top + tile + halo)
            x0, x1 = max(0, left - halo), min(width, left + tile + halo)
            piece = fn(x[..., y0:y1, x0:x1])
            oy, ox = (top - y0) * up // down, (left - x0) * up // down
            oh = (min(top + tile, height) - top) * up // down
            ow = (min(left + tile, width) - left) * up // down
            if out is None:
                out = piece.new_empty(*piece.shape[:-2], height * up // down, width * up // down)
            ty, tx = top * up // down, left * up // down
            out[..., ty:ty + oh, tx:tx + ow] = piece[..., oy:oy + oh, ox:ox + ow]
    return out
