import json
import re
import struct
import zlib

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vqtool.codes import MAGIC, CodeFile, bits_per_code, pack_codes, read_codes, unpack_codes
from vqtool.errors import VqtoolError


@st.composite
def grids(draw, smallest_side: int = 0, most_dims: int = 3):
    size = draw(st.integers(2, 70000))
    shape = draw(st.lists(st.integers(smallest_side, 12), min_size=1, max_size=most_dims))
    count = int(np.prod(shape))
    values = draw(st.lists(st.integers(0, size - 1), min_size=count, max_size=count))
    return size, np.array(values, dtype=np.int64).reshape(shape)


@given(grids())
@settings(max_examples=200, deadline=None)
def test_pack_round_trip_and_size(grid):
    size, codes = grid
    payload = pack_codes(codes, size)
    assert len(payload) == -(-codes.size * bits_per_code(size) // 8)
    assert np.array_equal(unpack_codes(payload, codes.size, size).reshape(codes.shape), codes)


def media_for(grid: np.ndarray, data) -> dict:
    """Valid media for a grid: an image at stride 4 for 2-D grids, audio for 1-D ones."""
    name = data.draw(st.one_of(st.none(), st.text(max_size=30)))
    if grid.ndim == 2:
        media = {"kind": "image", "height": grid.shape[0] * 4, "width": grid.shape[1] * 4, "channels": 3}
    else:
        media = {"kind": "audio", "sample_rate": 16000, "samples": grid.shape[0] * 320, "code_rate": 50.0}
    return {**media, **({"name": name} if name else {})}


@given(grids(smallest_side=1, most_dims=2), st.data())
@settings(max_examples=100, deadline=None)
def test_record_round_trip(grid, data):
    size, codes = grid
    media = media_for(codes, data)
    record = CodeFile(codes, "model-x", "ab" * 32, size, media, {"voice": "AAAA"} if codes.ndim == 1 else {})
    [back] = read_codes(record.to_bytes())
    assert np.array_equal(back.codes, codes) and back.codes.shape == codes.shape
    assert (back.model, back.codebook_size, back.media, back.extra) == ("model-x", size, media, record.extra)
    assert back.made_by("ab" * 32) and not back.made_by("ba" * 32)


def test_bits_per_code():
    assert [bits_per_code(k) for k in (2, 3, 4, 5, 256, 257, 512, 513)] == [1, 2, 2, 3, 8, 9, 9, 10]


def test_out_of_range_codes_refused():
    with pytest.raises(ValueError):
        pack_codes(np.array([0, 512]), 512)


IMAGE = {"kind": "image", "width": 32, "height": 32, "channels": 3}


def test_stream_of_records():
    records = [CodeFile(np.full((8, 8), i), "m", "0" * 64, 8, IMAGE) for i in range(3)]
    stream = b"".join(r.to_bytes() for r in records)
    assert [int(r.codes[0, 0]) for r in read_codes(stream)] == [0, 1, 2]


def _record() -> bytes:
    return CodeFile(np.arange(64).reshape(8, 8) % 512, "m", "0" * 64, 512, IMAGE).to_bytes()


def v1_record(codes: np.ndarray, **changes) -> bytes:
    """A record as vqtool 0.1 wrote it (format 1: a JSON header), with header fields changed at will."""
    payload = pack_codes(codes, 512)
    header = {"model": "m", "checkpoint_sha256": "0" * 64, "codebook_size": 512, "grid": list(codes.shape),
              "coding": "packed", "payload_bytes": len(payload), "bits_per_code": 9,
              "payload_crc32": zlib.crc32(payload), "media": dict(IMAGE), **changes}
    raw = json.dumps(header).encode()
    return MAGIC + bytes([1]) + struct.pack("<I", len(raw)) + raw + payload


@pytest.mark.parametrize("mangle, message", [
    (lambda b: b"XXXX" + b[4:], "bad magic"),
    (lambda b: b[:4] + bytes([99]) + b[5:], "unsupported .vqc format version 99"),
    (lambda b: b[:-5], "truncated"),
    (lambda b: b[:7], "truncated"),
    (lambda b: b[:20], "truncated"),
    (lambda b: b[:-1] + bytes([b[-1] ^ 0xFF]), "payload (checksum"),
    (lambda b: b[:12] + bytes([b[12] ^ 0x01]) + b[13:], "header (checksum"),
    (lambda b: b + b"garbage!", "bad magic"),
    (lambda b: b"", "empty file"),
    (lambda b: b[:5] + struct.pack("<H", 60000) + b[7:], "truncated"),
])
def test_malformed_files_are_refused(mangle, message):
    with pytest.raises(VqtoolError, match=re.escape(message)):
        read_codes(mangle(_record()), "f.vqc")


def test_format_1_still_reads():
    codes = np.arange(64).reshape(8, 8)
    [record] = read_codes(v1_record(codes))
    assert np.array_equal(record.codes, codes) and record.media == IMAGE and record.made_by("0" * 64)


@pytest.mark.parametrize("changes, message", [
    ({"payload_bytes": 99}, "does not match"),
    ({"media": [1, 2]}, "media and extra must be objects"),
    ({"extra": "x"}, "media and extra must be objects"),
    ({"media": {**IMAGE, "width": 1e308}}, "image width"),
    ({"media": {**IMAGE, "width": 0}}, "image width"),
    ({"media": {**IMAGE, "height": -3}}, "image height"),
    ({"media": {**IMAGE, "width": "32"}}, "image width"),
    ({"media": {"kind": "image", "height": 32, "channels": 3}}, "image width"),
    ({"media": {**IMAGE, "width": 16000, "height": 16000}}, "pixel limit"),
    ({"media": {"kind": "video"}}, "unknown media kind"),
    ({"grid": [8, 8, 1, 1]}, "grid"),
    ({"grid": [64]}, "2-D grid"),
    ({"grid": 64}, "grid"),
    ({"grid": [8, "8"]}, "grid size"),
    ({"codebook_size": 1}, "codebook_size"),
    ({"codebook_size": True}, "codebook_size"),
    ({"coding": "zip"}, "unsupported payload coding"),
    ({"coding": "range-prior", "codes_crc32": 1, "grid": [200, 200],
      "media": {**IMAGE, "width": 800, "height": 800}}, "range-coded 200x200 grid"),
    ({"model": ""}, "model name"),
    ({"model": "a\0b"}, "model name"),
    ({"checkpoint_sha256": "xyz"}, "checkpoint_sha256"),
    ({"media": {"kind": "audio", "sample_rate": 16000, "samples": 320 * 64}}, "1-D grid"),
    ({"media": {"kind": "audio", "sample_rate": 10**9, "samples": 10}, "grid": [64]}, "sample_rate"),
    ({"media": {"kind": "audio", "sample_rate": 16000, "samples": 16000 * 3600 * 5}, "grid": [64]}, "samples"),
    ({"media": {**IMAGE, "name": 7}}, "name is not a string"),
])
def test_header_fields_are_validated(changes, message):
    codes = np.arange(64).reshape(8, 8)
    with pytest.raises(VqtoolError, match=re.escape(message)):
        read_codes(v1_record(codes, **changes), "f.vqc")


@pytest.mark.parametrize("raw, message", [
    (b'{"grid": [8, 8], "media": {"width": Infinity}}', "Infinity is not a number"),
    (b'{"a": NaN}', "NaN is not a number"),
    (b"[" * 100_000 + b"]" * 100_000, "nested too deeply"),
    (b'{"media": ' + b'{"a": ' * 20 + b"1" + b"}" * 21, "nested too deeply"),
    (b"[1, 2]", "not an object"),
    (b"\xff\xfe", "corrupt .vqc header"),
])
def test_hostile_json_headers(raw, message):
    data = MAGIC + bytes([1]) + struct.pack("<I", len(raw)) + raw
    with pytest.raises(VqtoolError, match=re.escape(message)):
        read_codes(data, "f.vqc")


def test_header_checksum_catches_every_single_bit_flip():
    data = _record()
    header_end = 7 + struct.unpack("<H", data[5:7])[0] + 4
    for bit in range(4 * 8, header_end * 8):  # everything after the magic, up to the header CRC
        flipped = bytearray(data)
        flipped[bit // 8] ^= 1 << (bit % 8)
        with pytest.raises(VqtoolError):
            read_codes(bytes(flipped), "f.vqc")


def test_compact_header():
    codes = np.zeros((8, 8), np.int64)
    record = CodeFile(codes, "cifar10", "ab" * 32, 512, IMAGE)
    assert len(record.to_bytes()) - 72 <= 45  # header and framing of a 32x32 image's record
    assert len(record.to_bytes(b"x" * 59)) <= 2 * 59  # range-coded: at most twice its payload


def test_writer_refuses_what_readers_would():
    with pytest.raises(VqtoolError):
        CodeFile(np.zeros((8, 8), np.int64), "m", "0" * 64, 512, {"kind": "image"}).to_bytes()


def test_magic_is_stable():
    assert _record()[:4] == MAGIC == b"VQC\x89"
