"""The ``.vqc`` code file: discrete codes plus everything needed to decode them (see docs/vqc-format.md).

A file is one or more records back to back, so that a pipe can carry several encoded inputs. Format 2
(written since vqtool 0.2) is a compact binary header with its own CRC-32; format 1 (a JSON header)
is still read. Both go through one validation layer (`validate`), so a hostile or corrupt file is
refused with one clear error, before anything is allocated for it.
"""

from __future__ import annotations

import io
import json
import math
import re
import struct
import zlib
from dataclasses import dataclass, field
from typing import BinaryIO, Iterator

import numpy as np

from . import strictjson
from .errors import VqtoolError

MAGIC = b"VQC\x89"
FORMAT_VERSION = 2
READ_VERSIONS = (1, 2)
# bit-packed; range-coded under the checkpoint's learned prior (one code at a time); range-coded under its
# parallel context model (residual code grids of the photo model, any size)
CODINGS = ("packed", "range-prior", "range-context")
_CODING_FLAGS = {"packed": 0, "range-prior": 1, "range-context": 1 | 8}  # format 2's flag bits 0 and 3
KINDS = ("image", "audio")

# --- limits: checked on the header, before any allocation --------------------------------------------
MAX_HEADER_BYTES = 1 << 20  # format 1 (JSON)
MAX_HEADER_V2 = 0xFFFF  # format 2: the length field is 16 bits
MAX_META_BYTES = 1 << 14  # format 2's JSON part (name, speaker, voice, ...)
MAX_MODEL_NAME = 1024  # bytes, for model and media names; a checkpoint loaded by path is named by its absolute path
MAX_CODEBOOK = 1 << 20
MAX_CODES = 1 << 23  # per record: 8.4 M codes (50 megapixels: 3.1 M at stride 4, 6.3 M in 8 stages at stride 8)
MAX_STAGES = 64  # residual code grids per image record ([stages, h, w])
MAX_RANGE_CODES = 1 << 14  # range-coded records decode one code at a time (about 1 ms each on a CPU core)
MAX_PIXELS = 50_000_000  # images read (media.MAX_IMAGE_PIXELS) and decoded
MAX_AUDIO_SECONDS = 4 * 3600  # decoded audio
MIN_RATE, MAX_RATE = 4_000, 192_000  # sample rates read (audio.py) and decoded
MAX_RECORDS = 1_000_000  # per stream
CHECKPOINT_ID_BYTES = 8  # format 2 keeps the first 8 bytes (16 hex digits) of the checkpoint's SHA-256

_PREFIX_V1 = struct.Struct("<4sBI")
_PREFIX_V2 = struct.Struct("<4sBH")
_CRC = struct.Struct("<I")


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
    bitplane = np.empty((flat.size, bits), dtype=np.uint8)  # one byte per bit: 8x less than int64 columns
    for column in range(bits):
        bitplane[:, column] = (flat >> (bits - 1 - column)) & 1
    return np.packbits(bitplane.ravel()).tobytes()


def packed_size(count: int, codebook_size: int) -> int:
    return math.ceil(count * bits_per_code(codebook_size) / 8)


def unpack_codes(payload: bytes, count: int, codebook_size: int) -> np.ndarray:
    bits = bits_per_code(codebook_size)
    if len(payload) != packed_size(count, codebook_size):
        raise ValueError(f"payload has {len(payload)} bytes, expected {packed_size(count, codebook_size)}")
    bitplane = np.unpackbits(np.frombuffer(payload, dtype=np.uint8))[: count * bits].reshape(count, bits)
    codes = np.zeros(count, dtype=np.int64)
    for column in range(bits):  # column by column: memory stays at a byte per bit
        codes <<= 1
        codes |= bitplane[:, column]
    if codes.size and codes.max() >= codebook_size:
        raise ValueError(f"code {int(codes.max())} is out of range for a codebook of {codebook_size}")
    return codes


def codes_crc32(codes: np.ndarray) -> int:
    return zlib.crc32(np.ascontiguousarray(codes, dtype="<i4").tobytes())


@dataclass
class CodeFile:
    """One record: a grid of codes and the metadata that ties it to a checkpoint and a medium."""

    codes: np.ndarray | None  # integer array shaped like the code grid; None until a range-coded payload is decoded
    model: str  # checkpoint name as resolved by the hub
    checkpoint_sha256: str  # hex; format 2 keeps its first 16 digits, enough to tell checkpoints apart
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

    def made_by(self, sha256: str) -> bool:
        """Whether a checkpoint with this SHA-256 made the codes (format 2 stores a 16-digit prefix)."""
        return len(self.checkpoint_sha256) >= 2 * CHECKPOINT_ID_BYTES and sha256.startswith(self.checkpoint_sha256)

    def to_bytes(self, compressed: bytes | None = None) -> bytes:
        """The record in format 2, bit-packed, or with `compressed` as its payload: range-coded under the
        prior (2-D grids) or under the context model (residual [stages, h, w] grids)."""
        payload = pack_codes(self.codes, self.codebook_size) if compressed is None else compressed
        check = {"payload_crc32": zlib.crc32(payload)} if compressed is None else {"codes_crc32": codes_crc32(self.codes)}
        coding = "packed" if compressed is None else "range-context" if len(self.grid) == 3 else "range-prior"
        fields = {"model": self.model, "checkpoint_sha256": self.checkpoint_sha256,
                  "codebook_size": self.codebook_size, "grid": list(self.grid),
                  "coding": coding, "payload_bytes": len(payload),
                  **check, "media": self.media, "extra": self.extra}
        validate(fields)  # never write what a reader would refuse
        header = _header_v2(fields)
        prefix = _PREFIX_V2.pack(MAGIC, FORMAT_VERSION, len(header))
        return prefix + header + _CRC.pack(zlib.crc32(prefix[4:] + header)) + payload


# --- format 2: binary header ---------------------------------------------------------------------------
def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _header_v2(fields: dict) -> bytes:
    """Validated header fields (format 1's names) in format 2's layout: the inverse of `_parse_v2`."""
    media = dict(fields["media"])
    kind = media.pop("kind")
    packed = fields["coding"] == "packed"
    model, name = fields["model"].encode(), media.pop("name", "").encode()
    out = bytearray([_CODING_FLAGS[fields["coding"]] | KINDS.index(kind) << 1])
    out += _varint(len(model)) + model + bytes.fromhex(fields["checkpoint_sha256"][: 2 * CHECKPOINT_ID_BYTES])
    out += _varint(fields["codebook_size"]) + bytes([len(fields["grid"])])
    for size in fields["grid"]:
        out += _varint(size)
    out += _varint(fields["payload_bytes"]) + _CRC.pack(fields["payload_crc32" if packed else "codes_crc32"])
    if kind == "image":
        out += _varint(media.pop("width")) + _varint(media.pop("height")) + bytes([media.pop("channels", 3)])
    else:
        out += _varint(media.pop("sample_rate")) + _varint(media.pop("samples"))
    out += _varint(len(name)) + name
    meta = {**({"media": media} if media else {}), **({"extra": fields["extra"]} if fields["extra"] else {})}
    if meta:
        out += json.dumps(meta, separators=(",", ":"), sort_keys=True, allow_nan=False).encode()
    if len(out) > MAX_HEADER_V2:
        raise VqtoolError(f"record header would be {len(out)} bytes (at most {MAX_HEADER_V2})")
    return bytes(out)


class _Reader:
    """Cursor over a format-2 header; running off its end is a corrupt header."""

    def __init__(self, data: bytes):
        self.data, self.at = data, 0

    def take(self, n: int) -> bytes:
        if self.at + n > len(self.data):
            raise ValueError("header ends early")
        chunk = self.data[self.at:self.at + n]
        self.at += n
        return chunk

    def byte(self) -> int:
        return self.take(1)[0]

    def varint(self) -> int:
        value = 0
        for shift in range(0, 63, 7):
            byte = self.byte()
            value |= (byte & 0x7F) << shift
            if not byte & 0x80:
                return value
        raise ValueError("over-long number")

    def text(self) -> str:
        """A varint length and that many bytes of UTF-8, at most MAX_MODEL_NAME bytes."""
        length = self.varint()
        if length > MAX_MODEL_NAME:
            raise ValueError(f"a {length}-byte name")
        return self.take(length).decode("utf-8")

    def rest(self) -> bytes:
        return self.take(len(self.data) - self.at)


def _parse_v2(header: bytes) -> dict:
    """A format-2 header as the fields format 1 spells out (so both meet one validation)."""
    cursor = _Reader(header)
    flags = cursor.byte()
    if flags >> 4 or (flags & 8 and not flags & 1):
        raise ValueError(f"unknown flags {flags:#x}")
    coding, kind_id = (2 if flags & 8 else flags & 1), flags >> 1 & 3
    model = cursor.text()
    sha = cursor.take(CHECKPOINT_ID_BYTES).hex()
    size, rank = cursor.varint(), cursor.byte()
    if not 1 <= rank <= 3:
        raise ValueError(f"grid of rank {rank}")
    grid = [cursor.varint() for _ in range(rank)]
    fields = {"model": model, "checkpoint_sha256": sha, "codebook_size": size, "grid": grid,
              "coding": CODINGS[coding], "payload_bytes": cursor.varint()}
    fields["codes_crc32" if coding else "payload_crc32"] = _CRC.unpack(cursor.take(4))[0]
    media = {}
    if kind_id == 0:
        media = {"kind": "image", "width": cursor.varint(), "height": cursor.varint(), "channels": cursor.byte()}
    elif kind_id == 1:
        media = {"kind": "audio", "sample_rate": cursor.varint(), "samples": cursor.varint()}
    elif kind_id == 2:
        raise ValueError("unknown media kind")
    name = cursor.text()
    if name:
        media["name"] = name
    meta = cursor.rest()
    if len(meta) > MAX_META_BYTES:
        raise ValueError(f"metadata of {len(meta)} bytes")
    meta = strictjson.loads(meta) if meta else {}
    if not isinstance(meta, dict) or set(meta) - {"media", "extra"}:
        raise ValueError("metadata is not an object of media and extra")
    if not isinstance(meta.get("media", {}), dict):
        raise ValueError("media is not an object")
    fields["media"] = {**meta.get("media", {}), **media}
    if "extra" in meta:
        fields["extra"] = meta["extra"]
    return fields


# --- one validation layer for both formats --------------------------------------------------------------
def _int(value, name: str, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise VqtoolError(f"corrupt .vqc header ({name} {value!r} is not an integer in {low}..{high})")
    return value


def _utf8_length(text: str) -> int:
    """Bytes of `text` in UTF-8; -1 for text that has no UTF-8 form (lone surrogates)."""
    try:
        return len(text.encode())
    except UnicodeEncodeError:
        return -1


def _finite(value, name: str) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise VqtoolError(f"corrupt .vqc header ({name} {value!r} is not a finite number)")


_HEX = re.compile(r"[0-9a-f]{16,64}")


def validate(fields: dict) -> None:
    """Types, ranges and limits of a record's header fields (format 1's names, as `_parse_v2` gives
    them). Raises VqtoolError without a source (the caller names the file and record)."""
    model, sha = fields.get("model"), fields.get("checkpoint_sha256")
    if not isinstance(model, str) or not 0 < _utf8_length(model) <= MAX_MODEL_NAME or "\0" in model:
        raise VqtoolError("corrupt .vqc header (model name)")
    if not isinstance(sha, str) or not _HEX.fullmatch(sha):
        raise VqtoolError("corrupt .vqc header (checkpoint_sha256)")
    size = _int(fields.get("codebook_size"), "codebook_size", 2, MAX_CODEBOOK)
    grid = fields.get("grid")
    if not isinstance(grid, list) or not 1 <= len(grid) <= 3:
        raise VqtoolError(f"corrupt .vqc header (grid {grid!r} is not a list of 1 to 3 sizes)")
    for s in grid:
        _int(s, "grid size", 1, MAX_CODES)
    count = math.prod(grid)
    if count > MAX_CODES:
        raise VqtoolError(f"a {'x'.join(map(str, grid))} grid has {count:,} codes; a record holds at most "
                          f"{MAX_CODES:,}")
    coding = fields.get("coding")
    if coding not in CODINGS:
        raise VqtoolError(f"unsupported payload coding {coding!r}")
    nbytes = _int(fields.get("payload_bytes"), "payload_bytes", 0, MAX_CODES * 3)
    if coding == "packed" and nbytes != packed_size(count, size):
        raise VqtoolError(f"payload size {nbytes} does not match a {tuple(grid)} grid "
                          f"({packed_size(count, size)} bytes)")
    check = "payload_crc32" if coding == "packed" else "codes_crc32"
    _int(fields.get(check), check, 0, 0xFFFFFFFF)
    media, extra = fields.get("media", {}), fields.get("extra", {})
    if not isinstance(media, dict) or not isinstance(extra, dict):
        raise VqtoolError("corrupt .vqc header (media and extra must be objects)")
    if strictjson.depth(media) > strictjson.MAX_DEPTH or strictjson.depth(extra) > strictjson.MAX_DEPTH:
        raise VqtoolError("corrupt .vqc header (nested too deeply)")
    _validate_media(media, grid, coding)


def _validate_media(media: dict, grid: list[int], coding: str) -> None:
    kind = media.get("kind")
    if "name" in media and not (isinstance(media["name"], str) and 0 <= _utf8_length(media["name"]) <= MAX_MODEL_NAME):
        raise VqtoolError("corrupt .vqc header (media name is not a string of at most 1,024 bytes)")
    if kind == "image":
        width = _int(media.get("width"), "image width", 1, MAX_PIXELS)
        height = _int(media.get("height"), "image height", 1, MAX_PIXELS)
        _int(media.get("channels", 3), "image channels", 1, 4)
        if width * height > MAX_PIXELS:
            raise VqtoolError(f"image of {width}x{height} pixels is over the {MAX_PIXELS:,}-pixel limit")
        if len(grid) == 3:  # residual stages [q, h, w] (the photo model; q is the quality level)
            _int(grid[0], "residual stages", 1, MAX_STAGES)
            if coding == "range-prior":
                raise VqtoolError("residual code grids are range-coded by a context model, not 'range-prior'")
        elif len(grid) != 2:
            raise VqtoolError(f"an image record needs a 2-D grid or residual [stages, h, w] grids, not {tuple(grid)}")
        elif coding == "range-context":
            raise VqtoolError("'range-context' coding is for residual [stages, h, w] grids")
        if coding == "range-prior" and math.prod(grid) > MAX_RANGE_CODES:
            raise VqtoolError(f"a range-coded {'x'.join(map(str, grid))} grid is over the limit of "
                              f"{MAX_RANGE_CODES:,} codes (decoding is sequential)")
    elif kind == "audio":
        rate = _int(media.get("sample_rate"), "sample_rate", MIN_RATE, MAX_RATE)
        _int(media.get("samples"), "samples", 1, rate * MAX_AUDIO_SECONDS)
        if "code_rate" in media:
            _finite(media["code_rate"], "code_rate")
        if len(grid) != 1:
            raise VqtoolError(f"an audio record needs a 1-D grid, not {tuple(grid)}")
        if coding != "packed":
            raise VqtoolError("audio records are bit-packed only (no prior to range-code them)")
    else:
        raise VqtoolError(f"corrupt .vqc header (unknown media kind {kind!r})")


# --- reading ------------------------------------------------------------------------------------------
def _read_exact(stream: BinaryIO, n: int) -> bytes:
    chunks, left = [], n
    while left:
        chunk = stream.read(left)
        if not chunk:
            break
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def _read_header(stream: BinaryIO, prefix: bytes, source: str) -> dict:
    """The header fields of a record whose first 5 bytes (magic, version) are `prefix`."""
    version = prefix[4]
    if version not in READ_VERSIONS:
        raise VqtoolError(f"unsupported .vqc format version {version} (this vqtool reads "
                          f"{', '.join(map(str, READ_VERSIONS))})", source)
    layout = _PREFIX_V1 if version == 1 else _PREFIX_V2
    rest = _read_exact(stream, layout.size - 5)
    if len(rest) < layout.size - 5:
        raise VqtoolError("truncated .vqc file (header cut short)", source)
    hlen = layout.unpack(prefix + rest)[2]
    if hlen > MAX_HEADER_BYTES:
        raise VqtoolError(f"corrupt .vqc header (length {hlen})", source)
    raw = _read_exact(stream, hlen + (4 if version == 2 else 0))
    if len(raw) < hlen + (4 if version == 2 else 0):
        raise VqtoolError("truncated .vqc file (header cut short)", source)
    try:
        if version == 1:
            fields = strictjson.loads(raw)
            if not isinstance(fields, dict):
                raise ValueError("header is not an object")
            return fields
        header, (crc,) = raw[:hlen], _CRC.unpack(raw[hlen:])
        if zlib.crc32(prefix[4:] + rest + header) != crc:
            raise VqtoolError("corrupt .vqc header (checksum mismatch)", source)
        return _parse_v2(header)
    except (ValueError, UnicodeDecodeError) as exc:
        raise VqtoolError(f"corrupt .vqc header ({exc})", source) from None


def read_record(stream: BinaryIO, source: str = "<stream>") -> CodeFile | None:
    """Read one record; None at a clean end of stream. Every malformation is a VqtoolError."""
    prefix = _read_exact(stream, 5)
    if not prefix:
        return None
    if len(prefix) < 5 or prefix[:4] != MAGIC:
        raise VqtoolError("not a .vqc code file (bad magic)", source)
    fields = _read_header(stream, prefix, source)
    try:
        validate(fields)
    except VqtoolError as exc:
        raise VqtoolError(str(exc), source) from None
    grid, size, nbytes = tuple(fields["grid"]), fields["codebook_size"], fields["payload_bytes"]
    payload = _read_exact(stream, nbytes)
    if len(payload) < nbytes:
        raise VqtoolError(f"truncated .vqc file (payload has {len(payload)} of {nbytes} bytes)", source)
    if "payload_crc32" in fields and zlib.crc32(payload) != fields["payload_crc32"]:
        raise VqtoolError("corrupt .vqc payload (checksum mismatch)", source)
    common = (fields["model"], fields["checkpoint_sha256"], size, fields.get("media", {}), fields.get("extra", {}),
              fields["coding"], payload)
    if fields["coding"] != "packed":
        return CodeFile(None, *common, grid, fields["codes_crc32"])
    try:
        codes = unpack_codes(payload, math.prod(grid), size).reshape(grid)
    except ValueError as exc:
        raise VqtoolError(f"corrupt .vqc payload ({exc})", source) from None
    return CodeFile(codes, *common)


def iter_records(stream: BinaryIO, source: str = "<stream>") -> Iterator[CodeFile]:
    """All records of a stream; a stream with none is an error."""
    index = 0
    while True:
        if index >= MAX_RECORDS:
            raise VqtoolError(f"more than {MAX_RECORDS:,} records in one stream", source)
        record = read_record(stream, source if index == 0 else f"{source} (record {index + 1})")
        if record is None:
            break
        index += 1
        yield record
    if index == 0:
        raise VqtoolError("empty file, no .vqc record", source)


def read_codes(data: bytes, source: str = "<bytes>") -> list[CodeFile]:
    return list(iter_records(io.BytesIO(data), source))
