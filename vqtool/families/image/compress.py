"""Range coding of code grids under the learned prior (coder: the `constriction` package).

Encoder and decoder must see bit-identical probabilities. Both therefore take them from the same
cached raster walk (`prior.autoregress`), run in float64 so that rounding differences between batch
sizes or machines stay far below the 24-bit resolution of the coder's quantised model. A CRC-32 of
the codes in the record header turns any mismatch into a clear error instead of silent garbage.
"""

from __future__ import annotations

import numpy as np
import torch

from vqtool.codes import MAX_RANGE_CODES, codes_crc32
from vqtool.errors import VqtoolError
from .prior import PixelCNNPrior, autoregress


def _categorical():
    import constriction

    return constriction.stream.model.Categorical(perfect=False)


def _no_class(prior: PixelCNNPrior, n: int) -> torch.Tensor:
    """Records are coded under the unconditional prior: a decoder cannot know the class."""
    return prior.labels_for(None, n, prior.embed.weight.device)


def _probabilities(logits: torch.Tensor) -> np.ndarray:
    return logits.double().softmax(1).cpu().numpy()


def check_size(grid) -> None:
    count = int(np.prod(grid))
    if count > MAX_RANGE_CODES:
        raise VqtoolError(f"a {'x'.join(map(str, grid))} grid has {count} codes; range coding under the prior "
                          f"is limited to {MAX_RANGE_CODES} codes per image (decoding is sequential); "
                          "leave out --compress for large images")


@torch.no_grad()
def compress(prior: PixelCNNPrior, codes: torch.Tensor) -> list[bytes]:
    """Codes (N, H, W) -> one range-coded payload per grid."""
    import constriction

    prior = prior.float64()
    codes = torch.as_tensor(codes, dtype=torch.long, device=prior.embed.weight.device)
    n, height, width = codes.shape
    check_size((height, width))
    family = _categorical()
    probs = np.zeros((n, height * width, prior.config.num_codes))

    def record(row, col, logits):
        probs[:, row * width + col] = _probabilities(logits)
        return codes[:, row, col]

    autoregress(prior, _no_class(prior, n), height, width, record)
    flat = codes.flatten(1).cpu().numpy().astype(np.int32)
    payloads = []
    for i in range(n):
        encoder = constriction.stream.queue.RangeEncoder()
        encoder.encode(flat[i], family, probs[i])
        payloads.append(encoder.get_compressed().astype("<u4").tobytes().rstrip(b"\0"))  # decoder pads zeros back
    return payloads


@torch.no_grad()
def decompress(prior: PixelCNNPrior, payloads: list[bytes], grid: tuple[int, int]) -> np.ndarray:
    """The inverse of `compress` for payloads of one grid shape: codes (N, H, W)."""
    import constriction

    prior = prior.float64()
    check_size(grid)
    family = _categorical()
    decoders = [constriction.stream.queue.RangeDecoder(
        np.frombuffer(p + b"\0" * (-len(p) % 4), dtype="<u4").astype(np.uint32)) for p in payloads]

    def read(row, col, logits):
        probs = _probabilities(logits)
        return torch.tensor([int(d.decode(family, probs[i:i + 1])[0]) for i, d in enumerate(decoders)])

    height, width = grid
    return autoregress(prior, _no_class(prior, len(payloads)), height, width, read).cpu().numpy()


def restore(prior: PixelCNNPrior | None, record, source: str) -> np.ndarray:
    """The codes of a record, decoding a range-coded payload with the model's prior."""
    if record.codes is not None:
        return record.codes
    if prior is None:
        raise VqtoolError(f"codes are range-coded under a prior, but model '{record.model}' has none", source)
    if len(record.grid) != 2:
        raise VqtoolError(f"a range-coded record needs a 2-D grid, not {record.grid}", source)
    try:
        codes = decompress(prior, [record.payload], record.grid)[0]
    except (ValueError, RuntimeError, AssertionError) as exc:  # the coder's own complaint about an impossible stream
        raise VqtoolError(f"corrupt range-coded payload ({exc})", source) from None
    if codes_crc32(codes) != record.codes_crc32:
        raise VqtoolError("range-coded payload does not decode to the recorded codes (corrupt, or made by "
                          "another prior)", source)
    return codes


def restore_many(prior: PixelCNNPrior | None, records: list, sources: list[str]) -> list:
    """`restore` for range-coded records of one grid in one walk of the prior (a walk costs about the
    same for 1 or 100 grids): each record's codes, or its VqtoolError. A batch the coder refuses, and
    any record whose CRC disagrees, is decoded again alone, so an error names its own record."""
    def alone(record, source):
        try:
            return restore(prior, record, source)
        except VqtoolError as exc:
            return exc

    if prior is None or len(records) < 2 or len(records[0].grid) != 2:
        return [alone(r, s) for r, s in zip(records, sources)]
    try:
        batch = decompress(prior, [r.payload for r in records], tuple(records[0].grid))
    except (ValueError, RuntimeError, AssertionError, VqtoolError):
        return [alone(r, s) for r, s in zip(records, sources)]
    return [codes if codes_crc32(codes) == r.codes_crc32 else alone(r, s)
            for r, s, codes in zip(records, sources, batch)]
