"""The photo model's context model as an integer network, and range coding with it.

A range decoder must rebuild exactly the probabilities the encoder used; a float network gives
slightly different results on another CPU, BLAS or GPU, and one flipped rounding among millions of
codes breaks the stream. So the coder runs an integer version of the trained context model (after
Ballé et al., 2019, "Integer networks for data compression"): integer inputs, weights and biases,
activations re-quantised to 0..255 by a floor division by a power of two. Every value and every
partial sum stays an integer below 2**24 (checked when the network is derived), where float32
arithmetic is exact in any order of summation, so any machine computes the same logits. Logits count
1/16 nat; a fixed integer table turns them into probabilities (exact dyadic fractions), which
`constriction` quantises identically everywhere.
"""

from __future__ import annotations

import math
from contextlib import contextmanager

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from vqtool.errors import VqtoolError


def checkerboard(height: int, width: int, device=None) -> torch.Tensor:
    """True on the anchor half ((row + column) even), coded first."""
    rows = torch.arange(height, device=device)[:, None]
    cols = torch.arange(width, device=device)[None, :]
    return (rows + cols) % 2 == 0


LOGIT_UNITS = 16  # integer logits count 1/16 nat
TABLE = np.maximum(1, np.round(2.0**20 * np.exp(-np.arange(LOGIT_UNITS * 20) / LOGIT_UNITS))).astype(np.int64)
_TABLE = torch.from_numpy(TABLE.astype(np.float64))  # the same integers, for torch's gather
INPUT_LIMIT = 1023  # integer inputs are clamped to +-this
ACTIVATION_LIMIT = 255
EXACT = 2**24  # float32 holds every integer below this exactly
CHUNK = 1 << 15  # positions per head evaluation and coder call


class IntegerContext(nn.Module):
    """The integer network (buffers filled by `freeze_context`)."""

    def __init__(self, dim: int, hidden: int, num_codes: int, stages: int):
        super().__init__()
        int32 = {"dtype": torch.int32}
        self.register_buffer("vectors", torch.zeros(stages, num_codes, dim, **int32))
        self.register_buffer("flag", torch.zeros((), **int32))
        self.register_buffer("first_weight", torch.zeros(hidden, 2 * dim + 1, 3, 3, **int32))
        self.register_buffer("first_bias", torch.zeros(stages, hidden, **int32))
        self.register_buffer("first_shift", torch.zeros(hidden, **int32))
        self.register_buffer("second_weight", torch.zeros(hidden, hidden, 3, 3, **int32))
        self.register_buffer("second_bias", torch.zeros(hidden, **int32))
        self.register_buffer("second_shift", torch.zeros(hidden, **int32))
        self.register_buffer("head_weight", torch.zeros(stages, num_codes, hidden, **int32))
        self.register_buffer("head_bias", torch.zeros(stages, num_codes, **int32))
        self.register_buffer("head_shift", torch.zeros(stages, **int32))

    def inputs(self, stage: int, codes: torch.Tensor) -> torch.Tensor:
        """Integer code vectors (D, h, w) of one stage's codes (h, w), as float32."""
        return self.vectors[stage][codes].movedim(-1, 0).float()

    def hidden(self, stage: int, before: torch.Tensor, anchors: torch.Tensor | None) -> torch.Tensor:
        """The second layer's activations (C, h, w), integers 0..255 as float32."""
        before = before.clamp(-INPUT_LIMIT, INPUT_LIMIT)
        h, w = before.shape[-2:]
        flag = torch.full((1, h, w), float(self.flag)) if anchors is not None else before.new_zeros(1, h, w)
        anchors = torch.zeros_like(before) if anchors is None else anchors.clamp(-INPUT_LIMIT, INPUT_LIMIT)
        x = torch.cat([before, anchors, flag])[None]
        x = F.conv2d(x, self.first_weight.float(), padding=1)[0] + self.first_bias[stage].float()[:, None, None]
        x = _requantise(x, self.first_shift)
        x = F.conv2d(x[None], self.second_weight.float(), padding=1)[0] + self.second_bias.float()[:, None, None]
        return _requantise(x, self.second_shift)

    def logits(self, stage: int, hidden: torch.Tensor) -> torch.Tensor:
        """Integer logits (M, K) of M positions' activations (M, C), in 1/16 nat."""
        acc = torch.addmm(self.head_bias[stage].float()[None, :], hidden, self.head_weight[stage].float().t())
        return acc.mul_(2.0 ** -int(self.head_shift[stage])).floor_()


def _requantise(x: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    return torch.floor(x * torch.pow(2.0, -shift.float())[:, None, None]).clamp_(0, ACTIVATION_LIMIT)


def probabilities(logits: torch.Tensor) -> np.ndarray:
    """Integer logits (M, K) -> probabilities (M, K) float64: integer weights from TABLE over their sum,
    the same on every machine (every step is exact integer arithmetic, then one correctly rounded
    division)."""
    gap = (logits.amax(1, keepdim=True) - logits).clamp_(max=len(TABLE) - 1).long()
    weights = _TABLE[gap]
    return weights.div_(weights.sum(1, keepdim=True)).numpy()


# --- deriving the integer network ---------------------------------------------------------------------
@torch.no_grad()
def freeze_context(model, calibration: list[np.ndarray]) -> dict:
    """Fill `model.integer_context` from the float context model; activation ranges from the codes of
    `calibration` photos. Returns the float and integer models' bits per code on those codes."""

    config = model.config
    if model.integer_context is None:
        config.context_frozen = True
        model.integer_context = IntegerContext(config.embedding_dim, config.context_hidden, config.num_codes,
                                               config.stages).to(model.device)
    float_net, ints = model.context.cpu(), model.integer_context.cpu()
    grids = [model.encode(photo).cpu()[0] for photo in calibration]
    vectors = [model.code_vectors(g[None].to(model.device)).cpu()[0] for g in grids]  # (S, D, h, w)
    befores = [v.cumsum(0) for v in vectors]
    reach = max(float(torch.quantile(b.abs().flatten()[:1_000_000], 0.9999)) for b in befores)
    scale_in = INPUT_LIMIT / max(reach, 1e-6)
    codebooks = torch.stack([vq.embedding.cpu() for vq in model.quantizers])
    ints.vectors.copy_(torch.round(codebooks * scale_in).to(torch.int32))
    ints.flag.fill_(min(INPUT_LIMIT, round(scale_in)))

    # float activations over every pass of every calibration photo, for the re-quantisation ranges
    first_acts, second_acts = [], []
    for grid, vec in zip(grids, vectors):
        anchor = checkerboard(*grid.shape[-2:])
        before = torch.zeros_like(vec[0])
        passes = [(0, before, None), (0, before, vec[0] * anchor)]
        passes += [(s, vec[:s].sum(0), None) for s in range(1, grid.shape[0])]
        for stage, b, a in passes:
            h1, h2 = _float_hidden(float_net, stage, b, a)
            first_acts.append(h1.flatten(1))
            second_acts.append(h2.flatten(1))
    first_range = _channel_high(first_acts)
    second_range = _channel_high(second_acts)

    # first layer: input scale scale_in on every channel (the flag channel's 1.0 becomes `flag`)
    flag_scale = float(ints.flag)
    in_scale = torch.full((2 * config.embedding_dim + 1,), scale_in)
    in_scale[-1] = flag_scale
    weight = float_net.first.weight / in_scale[None, :, None, None]  # acts on integer inputs
    bias = float_net.first.bias[None] + float_net.stage_bias  # (S, C)
    w_int, gain = _integer_weights(weight, INPUT_LIMIT, bias.abs().max(0).values)
    ints.first_weight.copy_(w_int)
    ints.first_bias.copy_(torch.round(bias * gain[None]).to(torch.int32))
    shift1, act1 = _shifts(gain, first_range)
    ints.first_shift.copy_(shift1)
    # second layer, on activations y1 = h1 * act1
    weight = float_net.second.weight / act1[None, :, None, None]
    w_int, gain = _integer_weights(weight, ACTIVATION_LIMIT, float_net.second.bias.abs())
    ints.second_weight.copy_(w_int)
    ints.second_bias.copy_(torch.round(float_net.second.bias * gain).to(torch.int32))
    shift2, act2 = _shifts(gain, second_range)
    ints.second_shift.copy_(shift2)
    # heads: one power-of-two gain per stage, so that logits come out in exact 1/16 nat
    for stage in range(config.stages):
        weight = float_net.heads[stage] / act2[None, :]
        bound = weight.abs().sum(1).max() * ACTIVATION_LIMIT + float_net.head_bias[stage].abs().max()
        shift = math.floor(math.log2((EXACT / 2) / float(bound) / LOGIT_UNITS))
        gain = LOGIT_UNITS * 2.0**shift
        ints.head_weight[stage].copy_(torch.round(weight * gain).to(torch.int32))
        ints.head_bias[stage].copy_(torch.round(float_net.head_bias[stage] * gain).to(torch.int32))
        ints.head_shift[stage] = shift
    check_exact(ints)
    model.integer_context = ints.to(model.device)
    model.context.to(model.device)
    return compare_bits(model, grids)


def _float_hidden(net, stage, before, anchors):
    x = torch.cat([before, torch.zeros_like(before) if anchors is None else anchors,
                   before.new_full((1, *before.shape[-2:]), 0.0 if anchors is None else 1.0)])[None]
    h1 = F.relu(net.first(x) + net.stage_bias[stage][None, :, None, None])
    h2 = F.relu(net.second(h1))
    return h1[0], h2[0]


def _channel_high(acts: list[torch.Tensor]) -> torch.Tensor:
    """Each channel's 99.99th percentile over all positions (on at most a million of them)."""
    joined = torch.cat(acts, 1)
    if joined.shape[1] > 1_000_000:
        joined = joined[:, torch.randperm(joined.shape[1], generator=torch.Generator().manual_seed(0))[:1_000_000]]
    return joined.quantile(0.9999, dim=1).clamp_min(1e-3)


def _integer_weights(weight: torch.Tensor, input_limit: int, bias: torch.Tensor):
    """Integer weights for a layer whose inputs are integers up to `input_limit`: each output channel
    gets the largest gain that keeps every partial sum below 2**23 (half the exact range, so rounding
    and the bias still fit). Returns (int32 weights, gain per output channel)."""
    total = weight.abs().flatten(1).sum(1) * input_limit + bias.abs()
    gain = (EXACT / 2) / total.clamp_min(1e-12)
    return torch.round(weight * gain.view(-1, *([1] * (weight.dim() - 1)))).to(torch.int32), gain


def _shifts(gain: torch.Tensor, high: torch.Tensor):
    """Power-of-two shifts taking accumulators (gain per unit) to 0..255 over each channel's range; the
    resulting activation scale per unit."""
    target = ACTIVATION_LIMIT / high
    shift = torch.round(torch.log2(gain / target)).to(torch.int32)
    return shift, gain / torch.pow(2.0, shift.double()).float()


def check_exact(ints: IntegerContext) -> None:
    """Every partial sum of every layer must stay below 2**24 (float32 exact)."""
    x_limit = INPUT_LIMIT
    layers = [(ints.first_weight, x_limit, ints.first_bias.abs().max(0).values),
              (ints.second_weight, ACTIVATION_LIMIT, ints.second_bias.abs())]
    layers += [(ints.head_weight[s], ACTIVATION_LIMIT, ints.head_bias[s].abs()) for s in range(len(ints.head_weight))]
    for weight, limit, bias in layers:
        worst = float((weight.abs().double().flatten(1).sum(1) * limit + bias.double()).max())
        if worst >= EXACT:
            raise VqtoolError(f"integer context model exceeds float32's exact range ({worst:.0f} >= 2**24)")


def compare_bits(model, grids: list[torch.Tensor]) -> dict:
    """Bits per code of the float and of the integer context model on these code grids."""
    float_bits = sum(float(model.context_bits(g[None].to(model.device)).sum()) for g in grids)
    int_bits = sum(sum(stage_bits(model, g)) for g in grids)
    count = sum(g.numel() for g in grids)
    return {"context_bits_per_code_float": round(float_bits / count, 4),
            "context_bits_per_code_integer": round(int_bits / count, 4)}


# --- coding order ---------------------------------------------------------------------------------------
def passes(ints: IntegerContext, codes: torch.Tensor):
    """(stage, positions mask (h, w), hidden (C, h, w)) in coding order, for codes (q, h, w) known so far
    -- a generator the encoder drives with all codes known and the decoder fills in as it goes."""

    q, h, w = codes.shape
    anchor = checkerboard(h, w)
    zeros = torch.zeros(ints.vectors.shape[-1], h, w)
    yield 0, anchor, ints.hidden(0, zeros, None)
    anchors = ints.inputs(0, codes[0]) * anchor
    yield 0, ~anchor, ints.hidden(0, zeros, anchors)
    before = zeros
    for stage in range(1, q):
        before = before + ints.inputs(stage - 1, codes[stage - 1])
        yield stage, torch.ones(h, w, dtype=torch.bool), ints.hidden(stage, before, None)


def _chunks(ints, stage: int, hidden: torch.Tensor, where: torch.Tensor):
    """(flat position indices, probabilities (M, K)) of the masked positions, CHUNK at a time."""
    rows = hidden.flatten(1).t()[where.flatten()]  # (M, C) of the masked positions, in raster order
    index = where.flatten().nonzero().squeeze(1)
    for start in range(0, len(index), CHUNK):
        yield index[start:start + CHUNK], probabilities(ints.logits(stage, rows[start:start + CHUNK]))


def stage_bits(model, codes: torch.Tensor) -> list[float]:
    """Bits of each stage of codes (q, h, w) under the integer model (the range coder's rate, less a few
    bytes)."""
    ints = model.integer_context.cpu()
    codes = codes.cpu().long()
    bits = [0.0] * codes.shape[0]
    with exact_float32():
        for stage, where, hidden in passes(ints, codes):
            symbols = codes[stage].flatten()
            for part, probs in _chunks(ints, stage, hidden, where):
                bits[stage] -= float(np.log2(probs[np.arange(len(part)), symbols[part].numpy()]).sum())
    return bits


def _categorical():
    import constriction

    return constriction.stream.model.Categorical(perfect=False)


@torch.no_grad()
def compress_codes(model, codes) -> bytes:
    """Codes (q, h, w) of the first q stages -> one range-coded payload."""
    import constriction

    ints = _ready(model)
    codes = torch.as_tensor(np.asarray(codes)).long()
    encoder, family = constriction.stream.queue.RangeEncoder(), _categorical()
    with exact_float32():
        for stage, where, hidden in passes(ints, codes):
            symbols = codes[stage].flatten()
            for part, probs in _chunks(ints, stage, hidden, where):
                encoder.encode(symbols[part].numpy().astype(np.int32), family, probs)
    return encoder.get_compressed().astype("<u4").tobytes().rstrip(b"\0")


@torch.no_grad()
def decompress_codes(model, payload: bytes, grid: tuple[int, int, int]) -> np.ndarray:
    """The inverse of `compress_codes`: codes (q, h, w)."""
    import constriction

    ints = _ready(model)
    q, h, w = grid
    data = np.frombuffer(payload + b"\0" * (-len(payload) % 4), dtype="<u4").astype(np.uint32)
    decoder, family = constriction.stream.queue.RangeDecoder(data), _categorical()
    codes = torch.zeros(q, h, w, dtype=torch.long)
    with exact_float32():
        for stage, where, hidden in passes(ints, codes):  # each pass reads the codes decoded before it
            flat = codes[stage].view(-1)
            for part, probs in _chunks(ints, stage, hidden, where):
                flat[part] = torch.from_numpy(decoder.decode(family, probs).astype(np.int64))
    return codes.numpy()


def _ready(model) -> IntegerContext:
    if model.integer_context is None:
        raise VqtoolError(f"model '{getattr(model, 'name', 'photos')}' has no integer context model to range-code with")
    return model.integer_context.cpu()


@contextmanager
def exact_float32():
    """Full float32 products while coding, whatever the caller set (`torch.set_float32_matmul_precision`
    "medium" lets oneDNN use bfloat16, which would round the integers). The network always runs on the
    CPU, by direct or im2col convolutions and matrix products, never by Winograd or FFT transforms."""
    previous = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision("highest")
    try:
        yield
    finally:
        torch.set_float32_matmul_precision(previous)
