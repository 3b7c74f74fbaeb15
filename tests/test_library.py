"""`vqtool.encode_file` / `decode_file`: the library under `vqtool encode` / `decode` gives the same bytes."""

import numpy as np
import pytest

import vqtool
from conftest import ROOT, run_cli
from vqtool.media import image_to_array, read_image

DEMO = ROOT / "docs" / "demo.png"


def test_image_file_round_trip_matches_the_cli(tmp_path):
    result = run_cli("encode", DEMO, "-o", tmp_path / "demo.vqc")
    assert result.returncode == 0, result.stderr
    data = vqtool.encode_file(DEMO, device="cpu")
    assert data == (tmp_path / "demo.vqc").read_bytes()
    assert vqtool.encode_file(DEMO.read_bytes(), device="cpu") == data  # bytes in, same record
    assert run_cli("decode", tmp_path / "demo.vqc", "-o", tmp_path / "demo.png").returncode == 0
    pixels = vqtool.decode_file(data, device="cpu")
    assert pixels.dtype == np.uint8 and pixels.shape == (96, 128, 3)
    assert np.array_equal(pixels, image_to_array(read_image(str(tmp_path / "demo.png"))))


def test_compressed_file_decodes_to_the_same_image():
    packed = vqtool.encode_file(DEMO, device="cpu")
    small = vqtool.encode_file(DEMO, compress=True, device="cpu")
    assert len(small) < len(packed)
    assert np.array_equal(vqtool.decode_file(small, device="cpu"), vqtool.decode_file(packed, device="cpu"))


def test_several_records_and_wrong_inputs_are_clear_errors(tmp_path):
    data = vqtool.encode_file(DEMO, device="cpu")
    with pytest.raises(vqtool.VqtoolError, match="holds 2 records"):
        vqtool.decode_file(data + data)
    assert len(vqtool.read_records(data + data)) == 2
    with pytest.raises(vqtool.VqtoolError, match="not a .vqc"):
        vqtool.decode_file(DEMO)
    with pytest.raises(vqtool.VqtoolError, match="audio records"):
        vqtool.decode_file(data, voice="spk3")


def test_audio_file_round_trip(shared_data):
    clip = shared_data / "fsdd" / "recordings" / "7_theo_0.wav"
    data = vqtool.encode_file(clip, device="cpu")
    (record,) = vqtool.read_records(data)
    assert record.media["kind"] == "audio" and record.media["sample_rate"] == 8000
    wave, rate = vqtool.decode_file(data, device="cpu")
    assert rate == 8000 and wave.dtype == np.float32 and abs(len(wave) - record.media["samples"]) <= 2
    other, _ = vqtool.decode_file(data, voice="spk3", device="cpu")
    assert len(other) == len(wave) and not np.allclose(other, wave)
