"""Gated PixelCNN prior over VQ-VAE code grids (van den Oord et al. 2016; used as the VQ-VAE prior in 2017).

Two stacks remove the blind spot of a masked PixelCNN: the vertical stack sees every row above, the
horizontal stack the codes to the left in the current row, and each layer feeds the vertical
features into the horizontal ones. Causality comes from shifting the inputs (vertical: down one row,
horizontal: right one column), after which every convolution only looks up and left.

The same structure lets sampling cache: a vertical row depends only on rows above, so it is computed
once per row, and a horizontal position needs only its own column and the one to its left in each
layer. `Stepper` keeps those per-layer activations; `autoregress` walks the grid in raster order
with it (or, for checking, re-runs the whole network at every position as the naive loop does).

Class conditioning adds a learned per-layer bias; index `num_classes` is the "no class" label, which
training uses for a share of the examples so that one network is also the unconditional prior.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn


@dataclass
class PriorConfig:
    num_codes: int = 512
    classes: list[str] = field(default_factory=list)  # empty: unconditional
    hidden: int = 128
    layers: int = 12
    kernel: int = 3  # vertical kernel width; each layer reaches kernel // 2 further up, left and right
    class_dropout: float = 0.2  # share of training examples shown with the "no class" label
    grid: list[int] = field(default_factory=lambda: [8, 8])  # the training grid: what `sample` draws

    @property
    def num_classes(self) -> int:
        return len(self.classes)


def gate(features: torch.Tensor) -> torch.Tensor:
    a, b = features.chunk(2, dim=1)
    return torch.tanh(a) * torch.sigmoid(b)


class GatedLayer(nn.Module):
    def __init__(self, hidden: int, kernel: int, labels: int):
        super().__init__()
        self.reach = r = kernel // 2
        self.v_conv = nn.Conv2d(hidden, 2 * hidden, (r + 1, 2 * r + 1))
        self.v_to_h = nn.Conv2d(2 * hidden, 2 * hidden, 1)
        self.h_conv = nn.Conv2d(hidden, 2 * hidden, (1, r + 1))
        self.h_out = nn.Conv2d(hidden, hidden, 1)
        self.v_cond = nn.Embedding(labels, 2 * hidden)
        self.h_cond = nn.Embedding(labels, 2 * hidden)

    def forward(self, v, h, labels):
        """Whole grid: v and h are (N, hidden, H, W); returns the next layer's (v, h)."""
        r = self.reach
        v_feat = self.v_conv(F.pad(v, (r, r, r, 0))) + self.v_cond(labels)[:, :, None, None]
        h_feat = self.h_conv(F.pad(h, (r, 0, 0, 0))) + self.v_to_h(v_feat) + self.h_cond(labels)[:, :, None, None]
        return gate(v_feat), h + self.h_out(gate(h_feat))


class PixelCNNPrior(nn.Module):
    def __init__(self, config: PriorConfig):
        super().__init__()
        self.config = c = config
        self.embed = nn.Embedding(c.num_codes, c.hidden)
        self.stack = nn.ModuleList(GatedLayer(c.hidden, c.kernel, c.num_classes + 1) for _ in range(c.layers))
        self.head = nn.Sequential(nn.ReLU(), nn.Conv2d(c.hidden, c.hidden, 1), nn.ReLU(),
                                  nn.Conv2d(c.hidden, c.num_codes, 1))
        # per-channel scale of a discretised logistic p(x | z) around the decoder's output (see likelihood)
        self.register_buffer("pixel_log_scale", torch.zeros(3))

    def labels_for(self, labels, n: int, device) -> torch.Tensor:
        """Class indices (N,), with None (or -1) meaning "no class"."""
        if labels is None:
            return torch.full((n,), self.config.num_classes, dtype=torch.long, device=device)
        labels = torch.as_tensor(labels, dtype=torch.long, device=device).expand(n).clone()
        labels[labels < 0] = self.config.num_classes
        return labels

    def forward(self, codes: torch.Tensor, labels=None) -> torch.Tensor:
        """Codes (N, H, W) -> logits (N, K, H, W); logits at a position see only earlier codes."""
        labels = self.labels_for(labels, codes.shape[0], codes.device)
        x = self.embed(codes).permute(0, 3, 1, 2)
        v = F.pad(x, (0, 0, 1, 0))[:, :, :-1]  # shift down: row r sees rows < r
        h = F.pad(x, (1, 0))[..., :-1]  # shift right: column c sees columns < c
        for layer in self.stack:
            v, h = layer(v, h, labels)
        return self.head(h)

    def nll_bits(self, codes: torch.Tensor, labels=None) -> torch.Tensor:
        """-log2 p(codes) per grid (N,), teacher-forced in one pass."""
        logits = self(codes, labels)
        nats = F.cross_entropy(logits, codes, reduction="none").flatten(1).sum(1)
        return nats / math.log(2)

    def float64(self) -> "PixelCNNPrior":
        """A float64 copy for range coding, made once per prior (kept out of the state dict).

        The copy is not refreshed if these weights change afterwards: code with a trained prior.
        """
        if self.embed.weight.dtype == torch.float64:
            return self.eval()
        if "_float64" not in self.__dict__:
            twin = copy.deepcopy(self)
            for cache in ("_step_weights", "_step_buffers"):  # the walk's caches belong to these weights
                twin.__dict__.pop(cache, None)
            self.__dict__["_float64"] = twin.double().eval()
        return self.__dict__["_float64"]


class Stepper:
    """Incremental evaluation of the prior in raster order, caching per-layer activations.

    For row r it first runs the vertical stack on that row only (its inputs are rows r-reach..r of
    each layer, all known); then for each column it runs the horizontal stack on that column only.
    The logits equal the full network's (same arithmetic, up to float rounding).

    The per-code work is what sampling and range coding wait on, 64 times per 32x32 image: there the
    horizontal convolutions, the 1x1 convolutions and the head become matrix products with weights laid
    out once (a convolution call costs ~10x a matmul call on a (1, hidden) input), the row's vertical
    and class terms are summed once per row, and the activations live channels-last, (N, W, hidden), so
    that a window of columns is a plain view. The per-code steps run on one thread (`autoregress`); a
    row's vertical pass, a few large products once there are ROW_POOL_MIN columns in the batch, shares
    the thread pool as far as the cores are free when the walk starts (`threads.free_cores`; batch 100
    on 2 idle cores: range coding 116 -> ~175 grids/s, sampling 190 -> ~320/s).
    """

    def __init__(self, prior: PixelCNNPrior, labels: torch.Tensor, height: int, width: int):
        self.prior, self.height, self.width = prior, height, width
        n, c = len(labels), prior.config
        self.r = c.kernel // 2
        self.v_const = [(layer.v_cond(labels) + layer.v_conv.bias)[:, None] for layer in prior.stack]
        # the class and bias terms of each horizontal layer, added to the vertical part once per row
        self.h_const = [(layer.h_cond(labels) + layer.h_conv.bias + layer.v_to_h.bias)[:, None] for layer in prior.stack]
        self.vertical, self.weights, self.head = _step_weights(prior)
        buffers = _step_buffers(prior, n, height, width, labels.device)
        self.v, self.h, self.terms, self.views, self.inputs, self.outputs, self.gate_buffers = buffers
        for v in self.v:  # rows are filled in as the walk goes; the padding must read as zeros
            v.zero_()

    def start_row(self, row: int, codes: torch.Tensor) -> None:
        r, n, width, layers = self.r, codes.shape[0], self.width, self.prior.stack
        if row > 0:
            self.v[0][:, :, row + r, r:r + width] = self.prior.embed(codes[:, row - 1]).permute(0, 2, 1)
        for i, w_to_h in enumerate(self.vertical):
            # the vertical convolution at every column of this row (one call: large enough to share threads)
            feat = F.conv2d(self.v[i][:, :, row:row + r + 1], layers[i].v_conv.weight)[:, :, 0].transpose(1, 2) \
                + self.v_const[i]
            torch.baddbmm(self.h_const[i], feat, w_to_h.expand(n, *w_to_h.shape), out=self.terms[i])
            if i + 1 < len(layers):
                self.v[i + 1][:, :, row + r, r:r + width] = gate(feat.transpose(1, 2))
        for h in self.h:
            h.zero_()

    def logits(self, row: int, col: int, codes: torch.Tensor) -> torch.Tensor:
        """Logits (N, K) at (row, col); codes before it in raster order must be filled in."""
        if col > 0:
            self.inputs[col].copy_(self.prior.embed(codes[:, row, col - 1]))
        feat, tanh_in, sigmoid_in, gated, opened = self.gate_buffers
        for (terms, window, out, residual), (w_in, w_out, b_out) in zip(self.views[col], self.weights):
            torch.addmm(terms, window, w_in, out=feat)
            torch.tanh(tanh_in, out=gated)
            torch.sigmoid(sigmoid_in, out=opened)
            torch.addmm(b_out, gated.mul_(opened), w_out, out=out)
            out.add_(residual)
        w1, b1, w2, b2 = self.head
        return torch.addmm(b2, torch.addmm(b1, self.outputs[col].relu(), w1).relu_(), w2)


def _step_weights(prior: PixelCNNPrior) -> tuple:
    """The walk's weights laid out for matrix products, made once per set of weights (kept on the prior
    until a parameter changes: training updates them in place, which bumps their version)."""
    key = tuple((p.data_ptr(), p._version) for p in prior.parameters())
    cached = prior.__dict__.get("_step_weights")
    if cached is not None and cached[0] == key:
        return cached[1]
    r, hidden = prior.config.kernel // 2, prior.config.hidden
    vertical = [layer.v_to_h.weight[:, :, 0, 0].t().contiguous() for layer in prior.stack]
    weights = [(layer.h_conv.weight[:, :, 0].permute(2, 1, 0).reshape((r + 1) * hidden, -1).contiguous(),
                layer.h_out.weight[:, :, 0, 0].t().contiguous(), layer.h_out.bias) for layer in prior.stack]
    first, second = prior.head[1], prior.head[3]
    head = (first.weight[:, :, 0, 0].t().contiguous(), first.bias, second.weight[:, :, 0, 0].t().contiguous(),
            second.bias)
    prior.__dict__["_step_weights"] = (key, (vertical, weights, head))
    return vertical, weights, head


STEP_BUFFERS_KEPT = 1 << 21  # elements (16 MB in float64): walks this small keep their buffers for the next call
STEP_BUFFER_SETS = 4  # at most this many kept per prior


def _step_buffers(prior: PixelCNNPrior, n: int, height: int, width: int, device) -> tuple:
    """The walk's activations and every view its per-code step touches, made once per (batch, grid) and
    reused by later calls of the same size from the same thread (a small grid's set-up otherwise costs
    as much as a tenth of a one-image walk)."""
    import threading

    c, dtype = prior.config, prior.embed.weight.dtype
    r, hidden = c.kernel // 2, c.hidden
    key = (threading.get_ident(), n, height, width, dtype, str(device))
    kept = prior.__dict__.setdefault("_step_buffers", {})
    if key in kept:
        return kept[key]
    # vertical inputs of every layer, padded as the full pass pads them
    v = [torch.zeros(n, hidden, height + r, width + 2 * r, device=device, dtype=dtype) for _ in range(c.layers)]
    h = [torch.zeros(n, width + r, hidden, device=device, dtype=dtype) for _ in range(c.layers + 1)]
    terms = [torch.zeros(n, width, 2 * hidden, device=device, dtype=dtype) for _ in range(c.layers)]
    # (row terms, input window, output, residual) per layer, per column
    views = [[(terms[i][:, col], h[i][:, col:col + r + 1].reshape(n, -1), h[i + 1][:, r + col], h[i][:, col + r])
              for i in range(c.layers)] for col in range(width)]
    inputs = [h[0][:, r + col] for col in range(width)]
    outputs = [h[-1][:, r + col] for col in range(width)]
    feat = torch.zeros(n, 2 * hidden, device=device, dtype=dtype)
    gate_buffers = (feat, feat[:, :hidden], feat[:, hidden:], torch.zeros(n, hidden, device=device, dtype=dtype),
                    torch.zeros(n, hidden, device=device, dtype=dtype))
    buffers = (v, h, terms, views, inputs, outputs, gate_buffers)
    if sum(t.numel() for t in v + h + terms) <= STEP_BUFFERS_KEPT:
        if len(kept) >= STEP_BUFFER_SETS:
            kept.clear()
        kept[key] = buffers
    return buffers


ROW_POOL_MIN = 256  # batch x width: below this a row's vertical pass is too small to share between threads


@torch.no_grad()
def autoregress(prior: PixelCNNPrior, labels: torch.Tensor, height: int, width: int, choose,
                cached: bool = True) -> torch.Tensor:
    """Walk the grid in raster order: choose(row, col, logits (N, K)) returns the codes (N,) there.

    The same walk samples (choose draws), range-decodes (choose reads the coder) and computes the
    probabilities for range-encoding (choose records them and returns the known codes).
    """
    from contextlib import nullcontext

    from vqtool.threads import free_cores, single_thread

    n = len(labels)
    codes = torch.zeros(n, height, width, dtype=torch.long, device=labels.device)
    # a row's vertical pass is a few large products: those share the pool, as far as the cores are free now
    row_threads = min(torch.get_num_threads(), free_cores()) if cached and n * width >= ROW_POOL_MIN else 1
    with single_thread() if cached else nullcontext():  # the naive loop's whole-grid passes are big enough to share
        stepper = Stepper(prior, labels, height, width) if cached else None
        for row in range(height):
            if stepper:
                torch.set_num_threads(row_threads)
                stepper.start_row(row, codes)
                torch.set_num_threads(1)
            for col in range(width):
                logits = stepper.logits(row, col, codes) if stepper else prior(codes, labels)[:, :, row, col]
                codes[:, row, col] = choose(row, col, logits)
    return codes


def sampler(noise: torch.Tensor, temperature: float = 1.0, top_k: int | None = None):
    """A `choose` that draws by inverting the CDF with pre-drawn uniforms (N, H, W).

    Drawing all the randomness up front makes the draw depend only on the seed and the
    probabilities, so cached and naive sampling give the same codes.
    """

    remaining = (1 - noise.double()).unsqueeze(-1)  # in (0, 1]: never a zero-probability code

    def choose(row, col, logits):
        logits = logits.double()
        if temperature != 1.0:
            logits = logits / temperature
        if top_k is not None and top_k < logits.shape[1]:
            kth = logits.topk(top_k, dim=1).values[:, -1:]
            logits = logits.masked_fill(logits < kth, float("-inf"))
        cdf = logits.softmax(1).cumsum_(1)
        u = remaining[:, row, col] * cdf[:, -1:]
        return torch.searchsorted(cdf, u).clamp_(max=logits.shape[1] - 1).squeeze(1)

    return choose


def discretised_logistic_bits(mean: torch.Tensor, pixels: torch.Tensor, log_scale: torch.Tensor) -> torch.Tensor:
    """-log2 p(x | z) per image (N,) of uint8 pixels (N, C, H, W) under a discretised logistic.

    Each sub-pixel value x in 0..255 gets the logistic mass of [x - 0.5, x + 0.5] around the decoder's
    output `mean` (in [0, 1] units, unclamped), with the open tails folded into 0 and 255 (the
    PixelCNN++ likelihood with one component). `log_scale` is per channel, in 0..255 units.
    """
    mu = mean.double() * 255
    x = pixels.double()
    scale = log_scale.double().exp().view(1, -1, 1, 1)
    upper = torch.where(x >= 255, torch.full_like(x, float("inf")), x + 0.5)
    lower = torch.where(x <= 0, torch.full_like(x, float("-inf")), x - 0.5)
    # the difference of two sigmoids, computed on the side where it does not cancel
    above = x > mu
    a = torch.where(above, (mu - lower) / scale, (upper - mu) / scale)
    b = torch.where(above, (mu - upper) / scale, (lower - mu) / scale)
    mass = torch.sigmoid(a) - torch.sigmoid(b)
    bits = -torch.log2(mass.clamp_min(1e-300))
    return bits.flatten(1).sum(1)


def fit_log_scale(mean: torch.Tensor, pixels: torch.Tensor, iterations: int = 40) -> torch.Tensor:
    """Maximum-likelihood per-channel log-scale of `discretised_logistic_bits` (a ternary search per channel)."""
    result = torch.zeros(mean.shape[1], dtype=torch.float64)
    for ch in range(mean.shape[1]):
        def cost(value):
            return float(discretised_logistic_bits(mean[:, ch:ch + 1], pixels[:, ch:ch + 1],
                                                   torch.tensor([value])).sum())
        low, high = -3.0, 6.0
        for _ in range(iterations):
            a, b = low + (high - low) / 3, high - (high - low) / 3
            low, high = (low, b) if cost(a) < cost(b) else (a, high)
        result[ch] = (low + high) / 2
    return result.float()
