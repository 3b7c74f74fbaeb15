"""Fuzzing: mutated code files, images, audio and checkpoint metadata must give the project's own error
(VqtoolError) or a valid result: never another exception or warning, never a hang, never an allocation out of
proportion to the input, never a file outside the output folder.

`make test` runs a fast subset; `make fuzz` sets VQTOOL_FUZZ_EXAMPLES (and prints what each family tried).
"""
import io
import json
import os
import struct
import time
import tracemalloc
import zlib
from collections import Counter

import numpy as np
import pytest
import soundfile as sf
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from PIL import Image

from vqtool.codes import MAGIC, CodeFile, read_codes
from vqtool.errors import VqtoolError
from vqtool.media import encode_image

from test_codes import v1_record

pytestmark = pytest.mark.filterwarnings("error")  # a warning would be a multi-line surprise on the user's stderr
EXAMPLES = int(os.environ.get("VQTOOL_FUZZ_EXAMPLES", "150"))
TALLY: dict[str, Counter] = {}  # family -> {"tried", "rejected", "accepted"}; printed by conftest
FUZZ = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), database=None)
MAX_SECONDS = 5.0


def attempt(family: str, call, size: int, budget: int | None = None):
    """Run `call`; only VqtoolError may escape; time and peak allocation stay bounded."""
    tally = TALLY.setdefault(family, Counter())
    tally["tried"] += 1
    tracemalloc.start()
    start = time.perf_counter()
    try:
        result = call()
        tally["accepted"] += 1
    except VqtoolError as exc:
        assert str(exc).strip() and "\n" not in str(exc)
        tally["rejected"] += 1
        result = None
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        elapsed = time.perf_counter() - start
    assert elapsed < MAX_SECONDS, f"{family}: {elapsed:.1f} s"
    limit = budget if budget is not None else 64 * size + (4 << 20)
    assert peak <= limit, f"{family}: {peak / 1e6:.1f} MB allocated for a {size}-byte input"
    return result


# --- .vqc streams -------------------------------------------------------------------------------------
@st.composite
def records(draw) -> bytes:
    """One to three valid records (images or audio, packed or range-coded)."""
    out = []
    for _ in range(draw(st.integers(1, 3))):
        size = draw(st.sampled_from([2, 3, 255, 256, 512, 70000]))
        audio = draw(st.booleans())
        residual = not audio and draw(st.booleans())  # the photo model's [stages, h, w] grids
        shape = ((draw(st.integers(1, 40)),) if audio else
                 ((draw(st.integers(1, 8)),) if residual else ()) + (draw(st.integers(1, 9)), draw(st.integers(1, 9))))
        codes = np.asarray(draw(st.lists(st.integers(0, size - 1), min_size=int(np.prod(shape)),
                                         max_size=int(np.prod(shape))))).reshape(shape)
        name = draw(st.one_of(st.none(), st.text(max_size=12)))
        if audio:
            media = {"kind": "audio", "sample_rate": 16000, "samples": shape[0] * 320, "code_rate": 50.0}
            extra = {"voice": "AAAA"}
        else:
            media, extra = {"kind": "image", "height": shape[-2] * 4, "width": shape[-1] * 4, "channels": 3}, {}
        record = CodeFile(codes, "cifar10", "ab" * 32, size, {**media, **({"name": name} if name else {})}, extra)
        compressed = None if audio or not draw(st.booleans()) else draw(st.binary(min_size=1, max_size=40))
        out.append(record.to_bytes(compressed))
    return b"".join(out)


def flip_bits(data: bytes, positions: list[int]) -> bytes:
    mutated = bytearray(data)
    for p in positions:
        mutated[(p // 8) % len(mutated)] ^= 1 << (p % 8)
    return bytes(mutated)


def refresh_header_crc(data: bytes) -> bytes:
    """Recompute the first record's header CRC, so that a mutated header reaches the parser."""
    if len(data) < 7 or data[:4] != MAGIC or data[4] != 2:
        return data
    hlen = struct.unpack("<H", data[5:7])[0]
    if len(data) < 11 + hlen:
        return data
    return data[:7 + hlen] + struct.pack("<I", zlib.crc32(data[4:7 + hlen])) + data[11 + hlen:]


def check_records(data: bytes):
    for record in read_codes(data, "fuzz.vqc"):
        if record.codes is not None:
            assert record.codes.shape == record.grid and (record.codes < record.codebook_size).all()
    return True


def mutate(data: bytes, mutation) -> bytes:
    """Apply one drawn mutation; header bit flips and insertions get the header CRC made right again."""
    kind, arg = mutation
    if kind == "flip":
        return flip_bits(data, arg)
    if kind == "flip-parsed":
        return refresh_header_crc(flip_bits(data, [32 + p for p in arg]))
    if kind == "truncate":
        return data[:arg % (len(data) + 1)]
    at, chunk = arg
    at %= len(data) + 1
    return refresh_header_crc(data[:at] + chunk + data[at:])


mutations = st.one_of(
    st.tuples(st.just("flip"), st.lists(st.integers(0, 1 << 20), min_size=1, max_size=8)),
    st.tuples(st.just("flip-parsed"), st.lists(st.integers(0, 8 * 60), min_size=1, max_size=4)),
    st.tuples(st.just("truncate"), st.integers(0, 400)),
    st.tuples(st.just("insert"), st.tuples(st.integers(0, 400), st.binary(min_size=1, max_size=16))),
)


@FUZZ
@given(records(), mutations)
def test_fuzz_vqc_mutations(data, mutation):
    data = mutate(data, mutation)
    attempt(f"vqc-{mutation[0]}", lambda: check_records(data), len(data))


json_values = st.recursive(st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.floats() | st.text(max_size=8),
                           lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner,
                                                                                       max_size=3), max_leaves=10)
FIELDS = ["model", "checkpoint_sha256", "codebook_size", "grid", "coding", "payload_bytes", "payload_crc32",
          "codes_crc32", "media", "extra"]
MEDIA_FIELDS = ["kind", "width", "height", "channels", "name", "sample_rate", "samples", "code_rate"]


@FUZZ
@given(st.sampled_from(FIELDS + [f"media.{k}" for k in MEDIA_FIELDS]), json_values, st.booleans())
def test_fuzz_vqc_header_fields(key, value, audio):
    """Format 1 (JSON) headers with one field replaced by any JSON value (NaN and huge numbers too)."""
    codes = np.arange(8) if audio else np.arange(16).reshape(4, 4)
    media = ({"kind": "audio", "sample_rate": 16000, "samples": 8 * 320} if audio
             else {"kind": "image", "width": 16, "height": 16, "channels": 3})
    changes = {"media": {**media, key[6:]: value}} if key.startswith("media.") else {"media": media, key: value}
    data = v1_record(codes, **changes)
    attempt("vqc-header-fields", lambda: check_records(data), len(data))


def test_fuzz_every_truncation_and_single_bit_flip_of_a_stream():
    """Exhaustive on one two-record stream: every prefix, every single-bit flip."""
    data = b"".join(CodeFile(np.arange(16).reshape(4, 4) % 300, "m", "0" * 64, 300,
                             {"kind": "image", "width": 16, "height": 16, "channels": 3, "name": f"r{i}"}).to_bytes()
                    for i in range(2))
    accepted = 0
    for cut in range(len(data)):
        accepted += attempt("vqc-every-truncation", lambda: check_records(data[:cut]), cut) is not None
    for bit in range(8 * len(data)):
        accepted += attempt("vqc-every-bit-flip", lambda: check_records(flip_bits(data, [bit])), len(data)) is not None
    # a whole record is a valid stream; a flipped bit never passes (header CRC, payload CRC or magic)
    assert accepted == 1


# --- decoding hostile records through the command line, in process ----------------------------------------
@pytest.fixture(scope="module")
def runner():
    from typer.testing import CliRunner

    return CliRunner()


def test_fuzz_decode_never_writes_outside_the_output_folder(runner, tiny_checkpoint, tmp_path):
    """Records named like paths, decoded into a folder: every output stays inside it."""
    from vqtool.cli import build_app
    from vqtool.hub import sha256_file

    sha = sha256_file(tiny_checkpoint)
    names = ["../../escape", "/tmp/absolute", "a/../../b", "..", ".", "", "\x00nul", "x" * 5000, "CON",
             "dir/", "~/home", "..\\..\\win", "\u202eevil", " spaced ", ".hidden"]
    stream = b"".join(CodeFile(np.zeros((4, 4), np.int64), str(tiny_checkpoint), sha, 32,
                               {"kind": "image", "width": 16, "height": 16, "channels": 3,
                                "name": n[:1000]}).to_bytes() for n in names)
    (tmp_path / "hostile.vqc").write_bytes(stream)
    out = tmp_path / "work" / "out"
    before = set(tmp_path.rglob("*"))
    result = runner.invoke(build_app(), ["decode", str(tmp_path / "hostile.vqc"), "-o", str(out) + "/"])
    assert result.exit_code == 0, result.output
    made = set(tmp_path.rglob("*")) - before
    assert made and all(p == out or out in p.parents for p in made if p != out.parent)
    files = [p for p in made if p.is_file()]
    assert len(files) == len(names) and all(p.parent == out for p in files)


@FUZZ
@given(mutations)
def test_fuzz_decode_mutated_records(runner, tiny_checkpoint, tmp_path_factory, mutation):
    from vqtool.cli import build_app
    from vqtool.hub import sha256_file

    folder = tmp_path_factory.mktemp("decode")
    good = CodeFile(np.arange(16).reshape(4, 4) % 32, str(tiny_checkpoint), sha256_file(tiny_checkpoint), 32,
                    {"kind": "image", "width": 13, "height": 15, "channels": 3, "name": "x"}).to_bytes()
    data = mutate(good, mutation)
    (folder / "in.vqc").write_bytes(data)

    def decode():
        result = runner.invoke(build_app(), ["decode", str(folder / "in.vqc"), "-o", str(folder / "out") + "/", "-q"])
        if isinstance(result.exception, VqtoolError):
            raise result.exception
        assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
        assert "internal error" not in result.output and "Traceback" not in result.output
        if result.exit_code == 1:  # reported as one line, counted as a clean rejection
            raise VqtoolError("decode failed cleanly")
        return result.exit_code

    attempt(f"decode-{mutation[0]}", decode, len(data), budget=256 << 20)
    assert {p.parent for p in folder.rglob("*") if p.is_file()} <= {folder, folder / "out"}


@pytest.fixture(scope="module")
def photo_record(tiny_photos):
    """A range-coded record of the tiny photo model (a 40x56 image, 3 stages)."""
    import vqtool

    image = np.random.default_rng(0).integers(0, 255, (40, 56, 3), dtype=np.uint8)
    return vqtool.encode_file(encode_image(image), model=str(tiny_photos), compress=True, device="cpu")


@FUZZ
@given(mutations)
def test_fuzz_decode_mutated_photo_records(runner, tiny_photos, photo_record, tmp_path_factory, mutation):
    """Mutated range-context records: decoded or refused with one line, never a traceback."""
    from vqtool.cli import build_app

    folder = tmp_path_factory.mktemp("photo")
    data = mutate(photo_record, mutation)
    (folder / "in.vqc").write_bytes(data)

    def decode():
        result = runner.invoke(build_app(), ["decode", str(folder / "in.vqc"), "-o", str(folder / "out") + "/", "-q"])
        assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
        assert "internal error" not in result.output and "Traceback" not in result.output
        if result.exit_code == 1:
            raise VqtoolError("decode failed cleanly")
        return result.exit_code

    attempt(f"photo-decode-{mutation[0]}", decode, len(data), budget=512 << 20)


# --- images and audio -------------------------------------------------------------------------------------
def _image_seeds() -> dict[str, bytes]:
    rng = np.random.default_rng(0)
    pixels = (rng.random((12, 10, 3)) * 255).astype(np.uint8)
    seeds = {}
    for fmt, mode in (("PNG", "RGB"), ("JPEG", "RGB"), ("WEBP", "RGB"), ("GIF", "P"), ("BMP", "RGB"),
                      ("TIFF", "RGB"), ("PNG", "I;16"), ("TIFF", "F")):
        image = Image.fromarray(pixels).convert(mode) if mode not in ("I;16", "F") else Image.fromarray(
            (pixels[..., 0].astype(np.uint16) * 257) if mode == "I;16" else pixels[..., 0].astype(np.float32) / 255)
        buffer = io.BytesIO()
        image.save(buffer, fmt)
        seeds[f"{fmt}-{mode}"] = buffer.getvalue()
    return seeds


def _audio_seeds() -> dict[str, bytes]:
    wave = (np.sin(np.arange(1600) / 5) * 0.3).astype(np.float32)
    seeds = {}
    for fmt, subtype in (("WAV", "PCM_16"), ("WAV", "FLOAT"), ("FLAC", "PCM_16"), ("OGG", "VORBIS")):
        buffer = io.BytesIO()
        sf.write(buffer, wave, 8000, format=fmt, subtype=subtype)
        seeds[f"{fmt}-{subtype}"] = buffer.getvalue()
    return seeds


def _read_image(data: bytes):
    from vqtool.media import decode_image, image_to_array

    return image_to_array(decode_image(data, "fuzz.img"))


def _read_audio(data: bytes):
    from vqtool.audio import read_audio

    return read_audio("fuzz.wav", data)


def _motion_seeds() -> dict[str, bytes]:
    t = np.arange(12)[:, None] / 25.0
    clip = (0.3 * np.sin(t + np.arange(117) / 7.0)).astype(np.float32)
    text, binary = io.StringIO(), io.BytesIO()
    np.savetxt(text, clip, fmt="%.5g", delimiter=",")
    np.save(binary, clip, allow_pickle=False)
    return {"TXT": text.getvalue().encode(), "NPY": binary.getvalue()}


def _read_motion(data: bytes):
    from vqtool.data.motion import FRAME_VALUES, parse_motion

    clip = parse_motion(data, "fuzz.txt")
    assert clip.ndim == 2 and clip.shape[1] == FRAME_VALUES and np.isfinite(clip).all()
    return clip


# family -> (seed files, reader, memory budget): a mutated header may claim up to the 50-megapixel limit
# or hours of audio; reading what is there stays within these bounds
MEDIA = {"image": (_image_seeds(), _read_image, 400 << 20), "audio": (_audio_seeds(), _read_audio, 256 << 20),
         "motion": (_motion_seeds(), _read_motion, 64 << 20)}


@FUZZ
@given(st.sampled_from([(family, seed) for family, (seeds, _, _) in MEDIA.items() for seed in sorted(seeds)]),
       mutations)
@example(("image", "TIFF-RGB"), ("flip", [1048576]))  # found by `make fuzz`: Pillow raised TypeError
@example(("image", "TIFF-F"), ("flip-parsed", [229]))  # found by `make fuzz`: 503 MB for a 614-byte file
@example(("motion", "NPY"), ("insert", (10, b"'")))  # found by `make test`: numpy raised tokenize.TokenError
def test_fuzz_images_and_audio(seed, mutation):
    family, name = seed
    seeds, read, budget = MEDIA[family]
    data = mutate(seeds[name], mutation)  # (the header-CRC step leaves non-.vqc data alone)
    attempt(family, lambda: read(data), len(data), budget=budget)


# --- checkpoint metadata ----------------------------------------------------------------------------------
@FUZZ
@given(st.sampled_from(["config", "format", "architecture", "provenance", "metrics", "extra", "config.*"]),
       st.one_of(json_values, st.text(max_size=20)))
@example("architecture", "\n")  # found by `make fuzz`: a newline from the file broke the one-line error
@example("config.*", "\x1b[31m")
@example("config.*", 706)  # found by CI: 706 decoder blocks took 5 s to build before the shape check refused them
@example("config.*", 0)  # zero channels: torch warns on the empty layer
def test_fuzz_checkpoint_metadata(tiny_checkpoint, tmp_path_factory, key, value):
    from safetensors import safe_open
    from safetensors.torch import save_file

    from vqtool.hub import load

    with safe_open(str(tiny_checkpoint), framework="pt") as handle:
        meta = dict(handle.metadata())
        tensors = {k: handle.get_tensor(k) for k in handle.keys()}
    if key == "config.*":  # one config field replaced by any JSON value
        config = json.loads(meta["config"])
        config[sorted(config)[len(str(value)) % len(config)]] = value
        meta["config"] = json.dumps(config)
    else:
        meta[key] = value if isinstance(value, str) else json.dumps(value)
    path = tmp_path_factory.mktemp("ckpt") / "bad.safetensors"
    save_file(tensors, str(path), metadata=meta)
    load(str(tiny_checkpoint), "cpu")  # warm: the first load imports modules, which is not the input's cost
    attempt("checkpoint-metadata", lambda: load(str(path), "cpu"), path.stat().st_size, budget=64 << 20)
