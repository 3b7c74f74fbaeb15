import io
import struct

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vqtool.codes import MAGIC, CodeFile, bits_per_code, pack_codes, read_codes, unpack_codes
from vqtool.errors import VqtoolError


@st.composite
def grids(draw):
    size = draw(st.integers(2, 70000))
    shape = draw(st.lists(st.integers(0, 12), min_size=1, max_size=3))
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


@given(grids(), st.dictionaries(st.sampled_from(["width", "height", "name", "sample_rate"]),
                                st.one_of(st.integers(0, 10**6), st.text(max_size=20))))
@settings(max_examples=100, deadline=None)
def test_record_round_trip(grid, media):
    size, codes = grid
    record = CodeFile(codes, "model-x", "ab" * 32, size, media)
    [back] = read_codes(record.to_bytes())
    assert np.array_equal(back.codes, codes) and back.codes.shape == codes.shape
    assert (back.model, back.checkpoint_sha256, back.codebook_size, back.media) == ("model-x", "ab" * 32, size, media)


def test_bits_per_code():
    assert [bits_per_code(k) for k in (2, 3, 4, 5, 256, 257, 512, 513)] == [1, 2, 2, 3, 8, 9, 9, 10]


def test_out_of_range_codes_refused():
    with pytest.raises(ValueError):
        pack_codes(np.array([0, 512]), 512)


def test_stream_of_records():
    records = [CodeFile(np.full((2, 3), i), "m", "0" * 64, 8) for i in range(3)]
    stream = b"".join(r.to_bytes() for r in records)
    assert [int(r.codes[0, 0]) for r in read_codes(stream)] == [0, 1, 2]


def _record() -> bytes:
    return CodeFile(np.arange(64).reshape(8, 8) % 512, "m", "0" * 64, 512, {"kind": "image"}).to_bytes()


@pytest.mark.parametrize("mangle, message", [
    (lambda b: b"XXXX" + b[4:], "bad magic"),
    (lambda b: b[:4] + bytes([99]) + b[5:], "unsupported .vqc format version 99"),
    (lambda b: b[:-5], "truncated"),
    (lambda b: b[:7], "bad magic"),
    (lambda b: b[:20], "truncated"),
    (lambda b: b[:-1] + bytes([b[-1] ^ 0xFF]), "checksum"),
    (lambda b: b + b"garbage!", "bad magic"),
    (lambda b: b"", "empty file"),
    (lambda b: b[:5] + struct.pack("<I", 1 << 30) + b[9:], "corrupt .vqc header"),
])
def test_malformed_files_are_refused(mangle, message):
    with pytest.raises(VqtoolError, match=message):
        read_codes(mangle(_record()), "f.vqc")


def test_oversized_payload_claim_refused():
    data = _record()
    header_len = struct.unpack("<I", data[5:9])[0]
    header = data[9:9 + header_len].replace(b'"payload_bytes":72', b'"payload_bytes":99')
    data = data[:5] + struct.pack("<I", len(header)) + header + data[9 + header_len:]
    with pytest.raises(VqtoolError, match="does not match"):
        read_codes(data, "f.vqc")


def test_magic_is_stable():
    assert _record()[:4] == MAGIC == b"VQC\x89"
