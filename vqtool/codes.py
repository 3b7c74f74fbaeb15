"""The ``.vqc`` code file: discrete codes plus everything needed to decode them (see docs/vqc-format.md).

A file is one or more records back to back, so that a pipe can carry several encoded inputs::

    magic   4 bytes  b"VQC\\x89"
    version 1 byte   FORMAT_VERSION
    hlen    4 bytes  little-endian length of the JSON header
    header  hlen bytes of UTF-8 JSON
    payload header["payload_bytes"] bytes, coded as header["coding"] says
"""

from __future__ import annotations

import io
import json
import math
import struct
import zlib
from dataclasses import dataclass, field
from typing import BinaryIO, Iterator

import numpy as np

from .errors import VqtoolError

MAGIC = b"VQC\x89"
FORMAT_VERSION = 1
MAX_HEADER_BYTES = 1 << 20
CODINGS = ("packed", "range-prior")  # bit-packed, or range-coded under the checkpoint's learned prior
_PREFIX = struct.Struct("<4sBI")


def bits_per_code(codebook_size: int) -> int:
    """ceil(log2 K), at least 1 bit."""
    return max(1, math.ceil(math.log2(codebook_size)))


def entropy_bits(counts: np.ndarray) -> float:
    """Entropy in bits per code of a code histogram (perplexity is 2 ** this)."""
    counts = np.asarray(counts, dtype=np.float64)
    probs = counts[counts > 0] / counts.sum()
    return float(-(probs * np.log2(probs)).sum())


def pack_codes(codes: np.ndarray, codebook_size: int) -> bytes:
    """Bit-pack codes MSB first at ceil(log2 K) bits each; the last byte is zero-padded."""
    flat = np.asarray(codes, dtype=np.int64).ravel()
    if flat.size and (flat.min() < 0 or flat.max() >= codebook_size):
        raise ValueError(f"codes must lie in [0, {codebook_size})")
    bits = bits_per_code(codebook_size)
    shifts = np.arange(bits - 1, -1, -1, dtype=np.int64)
    bitplane = ((flat[:, None] >> shifts) & 1).astype(np.uint8)
    return np.packbits(bitplane.ravel()).tobytes()


def unpack_codes(payload: bytes, count: int, codebook_size: int) -> np.ndarray:
    bits = bits_per_code(codebook_size)
    if len(payload) != math.ceil(count * bits / 8):
        raise ValueError(f"payload has {len(payload)} bytes, expected {math.ceil(count * bits / 8)}")
    bitplane = np.unpackbits(np.frombuffer(payload, dtype=np.uint8))[: count * bits]
    weights = (1 << np.arange(bits - 1, -1, -1, dtype=np.int64))
    codes = bitplane.reshape(count, bits).astype(np.int64) @ weights
    if codes.size and codes.max() >= codebook_size:
        raise ValueError(f"code {int(codes.max())} is out of range for a codebook of {codebook_size}")
    return codes


@dataclass
class CodeFile:
    """One record: a grid of codes and the metadata that ties it to a checkpoint and a medium."""

    codes: np.ndarray | None  # integer array shaped like the code grid; None until a range-coded payload is decoded
    model: str  # checkpoint name as resolved by the hub
    checkpoint_sha256: str
    codebook_size: int
    media: dict = field(default_factory=dict)  # e.g. {"kind": "image", "width": .., "height": ..}
    extra: dict = field(default_factory=dict)  # room for later families; kept verbatim
    coding: str = "packed"
    payload: bytes = b""  # as stored; what the prior decodes for "range-prior"
    shape: tuple[int, ...] = ()  # the grid, when codes is None
    codes_crc32: int | None = None  # "range-prior": checks the decoded codes

    @property
    def grid(self) -> tuple[int, ...]:
        return tuple(int(s) for s in self.codes.shape) if self.codes is not None else tuple(self.shape)

    def header(self, payload: bytes, coding: str = "packed") -> dict:
        # a range-coded record checks the decoded codes instead of the payload: that covers the payload
        # too, and the header (which dominates a small image's record) stays no larger than a packed one's
        integrity = ({"bits_per_code": bits_per_code(self.codebook_size), "payload_crc32": zlib.crc32(payload)}
                     if coding == "packed" else {"codes_crc32": codes_crc32(self.codes)})
        return {
            "model": self.model,
            "checkpoint_sha256": self.checkpoint_sha256,
            "codebook_size": int(self.codebook_size),
            "grid": list(self.grid),
            "coding": coding,
            "payload_bytes": len(payload),
            **integrity,
            "media": self.media,
            **({"extra": self.extra} if self.extra else {}),
        }

    def to_bytes(self, compressed: bytes | None = None) -> bytes:
        """The record, bit-packed, or with `compressed` (range-coded under the prior) as its payload."""
        payload = pack_codes(self.codes, self.codebook_size) if compressed is None else compressed
        coding = "packed" if compressed is None else "range-prior"
        header = json.dumps(self.header(payload, coding), separators=(",", ":"), sort_keys=True).encode()
        return _PREFIX.pack(MAGIC, FORMAT_VERSION, len(header)) + header + payload


def codes_crc32(codes: np.ndarray) -> int:
    return zlib.crc32(np.ascontiguousarray(codes, dtype="<i4").tobytes())


def _read_exact(stream: BinaryIO, n: int) -> bytes:
    chunks, left = [], n
    while left:
        chunk = stream.read(left)
        if not chunk:
            break
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def read_record(stream: BinaryIO, source: str = "<stream>") -> CodeFile | None:
    """Read one record; None at a clean end of stream. Every malformation is a VqtoolError."""
    prefix = _read_exact(stream, _PREFIX.size)
    if not prefix:
        return None
    if len(prefix) < _PREFIX.size or prefix[:4] != MAGIC:
        raise VqtoolError("not a .vqc code file (bad magic)", source)
    _, version, hlen = _PREFIX.unpack(prefix)
    if version != FORMAT_VERSION:
        raise VqtoolError(f"unsupported .vqc format version {version} (this vqtool reads {FORMAT_VERSION})", source)
    if hlen > MAX_HEADER_BYTES:
        raise VqtoolError(f"corrupt .vqc header (length {hlen})", source)
    raw = _read_exact(stream, hlen)
    if len(raw) < hlen:
        raise VqtoolError("truncated .vqc file (header cut short)", source)
    try:
        header = json.loads(raw)
        grid = tuple(int(s) for s in header["grid"])
        size = int(header["codebook_size"])
        nbytes = int(header["payload_bytes"])
        coding = header["coding"]
        model, sha = str(header["model"]), str(header["checkpoint_sha256"])
    except (ValueError, KeyError, TypeError) as exc:
        raise VqtoolError(f"corrupt .vqc header ({exc.__class__.__name__}: {exc})", source) from None
    if coding not in CODINGS:
        raise VqtoolError(f"unsupported payload coding '{coding}'", source)
    if size < 2 or any(s < 0 for s in grid):
        raise VqtoolError("corrupt .vqc header (codebook size or grid)", source)
    count = math.prod(grid)
    expected = math.ceil(count * bits_per_code(size) / 8)
    if coding == "packed" and nbytes != expected:
        raise VqtoolError(f"payload size {nbytes} does not match a {grid} grid ({expected} bytes)", source)
    payload = _read_exact(stream, nbytes)
    if len(payload) < nbytes:
        raise VqtoolError(f"truncated .vqc file (payload has {len(payload)} of {nbytes} bytes)", source)
    if (coding == "packed" or "payload_crc32" in header) and zlib.crc32(payload) != header.get("payload_crc32"):
        raise VqtoolError("corrupt .vqc payload (checksum mismatch)", source)
    media, extra = dict(header.get("media", {})), dict(header.get("extra", {}))
    if coding == "range-prior":
        if not isinstance(header.get("codes_crc32"), int):
            raise VqtoolError("corrupt .vqc header (range-coded record without codes_crc32)", source)
        return CodeFile(None, model, sha, size, media, extra, coding, payload, grid, header["codes_crc32"])
    try:
        codes = unpack_codes(payload, count, size).reshape(grid)
    except ValueError as exc:
        raise VqtoolError(f"corrupt .vqc payload ({exc})", source) from None
    return CodeFile(codes, model, sha, size, media, extra, coding, payload)


def iter_records(stream: BinaryIO, source: str = "<stream>") -> Iterator[CodeFile]:
    """All records of a stream; a stream with none is an error."""
    index = 0
    while True:
        record = read_record(stream, source if index == 0 else f"{source} (record {index + 1})")
        if record is None:
            break
        index += 1
        yield record
    if index == 0:
        raise VqtoolError("empty file, no .vqc record", source)


def read_codes(data: bytes, source: str = "<bytes>") -> list[CodeFile]:
    return list(iter_records(io.BytesIO(data), source))
