"""The command line as a user meets it: files, folders, pipes, JSON, and every kind of bad input."""
import io
import json
import struct
import subprocess
import sys
import zlib

import numpy as np
import pytest
from PIL import Image

from vqtool.codes import CodeFile, read_codes

from conftest import run_cli, synthetic_images


@pytest.fixture
def photos(tmp_path):
    arrays = synthetic_images(3, size=16, seed=5)
    paths = []
    for i, array in enumerate(arrays):
        path = tmp_path / f"img{i}.png"
        Image.fromarray(array).save(path)
        paths.append(path)
    return paths


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = ((a.astype(float) - b.astype(float)) / 255) ** 2
    return -10 * np.log10(mse.mean())


def assert_one_line_error(result, *fragments):
    err = result.stderr.decode()
    assert result.returncode == 1, err
    assert "Traceback" not in err
    error_lines = [line for line in err.splitlines() if line.startswith("vqtool: error:")]
    assert error_lines, err
    for fragment in fragments:
        assert any(fragment in line for line in error_lines), (fragment, err)


def no_leftovers(folder):
    return not [p for p in folder.rglob("*") if p.name.endswith(".part")]


def test_version_and_help():
    result = run_cli("--version")
    assert result.returncode == 0 and result.stdout.decode().startswith("vqtool ")
    for command in ([], ["encode"], ["decode"], ["inspect"], ["train", "vqvae"], ["models", "list"]):
        result = run_cli(*command, "--help")
        assert result.returncode == 0 and b"Usage" in result.stdout


def test_usage_errors_exit_2(photos, tiny_checkpoint):
    assert run_cli("encode", "--bogus").returncode == 2
    assert run_cli("encode", photos[0], "-m", tiny_checkpoint, "-o", "-", "--json").returncode == 2
    assert run_cli("decode", "x.vqc", "--format", "gifx").returncode == 2


def test_file_round_trip(photos, tiny_checkpoint, tmp_path):
    result = run_cli("encode", photos[0], "-m", tiny_checkpoint, "--json")
    assert result.returncode == 0, result.stderr.decode()
    record = json.loads(result.stdout)
    assert record["output"] == str(photos[0].with_suffix(".vqc")) and record["grid"] == [4, 4]
    result = run_cli("decode", photos[0].with_suffix(".vqc"), "-o", tmp_path / "back.png")
    assert result.returncode == 0, result.stderr.decode()
    original = np.asarray(Image.open(photos[0]))
    restored = np.asarray(Image.open(tmp_path / "back.png"))
    assert restored.shape == original.shape
    assert psnr(original, restored) > 15  # a tiny model trained 60 steps on blobs


def test_pipe_round_trip_equals_file_round_trip(photos, tiny_checkpoint, tmp_path):
    encoded = run_cli("encode", photos[1], "-m", tiny_checkpoint, "-o", "-")
    assert encoded.returncode == 0 and encoded.stdout[:4] == b"VQC\x89"
    decoded = run_cli("decode", "-", "-o", "-", input=encoded.stdout)
    assert decoded.returncode == 0, decoded.stderr.decode()
    run_cli("encode", photos[1], "-m", tiny_checkpoint, "-o", tmp_path / "x.vqc")
    run_cli("decode", tmp_path / "x.vqc", "-o", tmp_path / "x.png")
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(decoded.stdout))), np.asarray(Image.open(tmp_path / "x.png")))


def test_shell_pipeline(photos, tiny_checkpoint, tmp_path):
    vq = f"{sys.executable} -m vqtool"
    command = f"{vq} encode {photos[0]} -m {tiny_checkpoint} -o - | {vq} decode - -o {tmp_path / 'p.png'}"
    subprocess.run(command, shell=True, check=True, capture_output=True, timeout=120)
    assert Image.open(tmp_path / "p.png").size == (16, 16)


def test_stdin_image_to_stdout_codes(photos, tiny_checkpoint):
    result = run_cli("encode", "-", "-m", tiny_checkpoint, input=photos[0].read_bytes())
    assert result.returncode == 0
    [record] = read_codes(result.stdout)
    assert record.grid == (4, 4)


def test_odd_sizes_keep_their_size(tiny_checkpoint, tmp_path):
    for size, mode in (((37, 23), "RGB"), ((5, 3), "L"), ((30, 41), "RGBA"), ((200, 130), "P")):
        path = tmp_path / f"odd{size[0]}.png"
        Image.new(mode, size, 90).save(path)
        out = tmp_path / f"odd{size[0]}.back.jpg"
        assert run_cli("encode", path, "-m", tiny_checkpoint).returncode == 0
        [record] = read_codes(path.with_suffix(".vqc").read_bytes())
        assert record.grid == (-(-size[1] // 4), -(-size[0] // 4))
        assert run_cli("decode", path.with_suffix(".vqc"), "-o", out).returncode == 0
        back = Image.open(out)
        assert back.size == size and back.format == "JPEG" and back.mode == "RGB"


def test_many_inputs_folders_and_streams(photos, tiny_checkpoint, tmp_path):
    codes, images = tmp_path / "codes", tmp_path / "images"
    result = run_cli("encode", photos[0].parent, "-m", tiny_checkpoint, "-o", codes, "--json", "--batch-size", "2")
    assert result.returncode == 0, result.stderr.decode()
    assert len(result.stdout.splitlines()) == 3 and len(list(codes.glob("*.vqc"))) == 3
    assert run_cli("decode", codes, "-o", images).returncode == 0
    assert sorted(p.name for p in images.iterdir()) == ["img0.png", "img1.png", "img2.png"]
    stream = run_cli("encode", *photos, "-m", tiny_checkpoint, "-o", "-").stdout
    assert len(read_codes(stream)) == 3
    result = run_cli("decode", "-", "-o", tmp_path / "fromstream", input=stream)
    assert result.returncode == 0 and len(list((tmp_path / "fromstream").iterdir())) == 3
    grid = run_cli("decode", "-", "-o", "-", "--columns", "3", input=stream)  # several records to stdout: one grid
    assert grid.returncode == 0 and Image.open(io.BytesIO(grid.stdout)).size == (2 + 3 * 18, 2 + 18)


def test_inspect(photos, tiny_checkpoint):
    run_cli("encode", photos[0], "-m", tiny_checkpoint)
    result = run_cli("inspect", photos[0].with_suffix(".vqc"), "--json")
    info = json.loads(result.stdout)
    assert info["grid"] == [4, 4] and sum(info["histogram"].values()) == 16 and info["bits_per_code"] == 5
    assert b"histogram" in run_cli("inspect", photos[0].with_suffix(".vqc")).stdout


def test_broken_pipe_is_quiet(photos, tiny_checkpoint):
    command = f"{sys.executable} -m vqtool encode {photos[0]} -m {tiny_checkpoint} -o - -q | head -c 1"
    result = subprocess.run(["bash", "-o", "pipefail", "-c", command], capture_output=True, timeout=120)
    assert result.stderr == b"" and len(result.stdout) == 1


def bomb_png() -> bytes:
    """A valid PNG header claiming 20000x20000 pixels."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 20000, 20000, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"\x00" * 100)) + chunk(b"IEND", b""))


def _bad_inputs(tmp_path, photos):
    png = photos[0].read_bytes()
    jpeg = io.BytesIO()
    Image.open(photos[0]).convert("RGB").resize((64, 64)).save(jpeg, "JPEG")
    cases = {
        "text.png": (b"this is not an image\n", "not an image"),
        "trunc.png": (png[: len(png) // 2], "truncated or corrupt"),
        "trunc.jpg": (jpeg.getvalue()[:300], "truncated or corrupt"),
        "empty.png": (b"", "empty file"),
        "bomb.png": (bomb_png(), "image too large"),
    }
    for name, (data, _) in cases.items():
        (tmp_path / name).write_bytes(data)
    return cases


def test_bad_images_one_line_no_output(photos, tiny_checkpoint, tmp_path):
    for name, (_, cause) in _bad_inputs(tmp_path, photos).items():
        result = run_cli("encode", tmp_path / name, "-m", tiny_checkpoint)
        assert_one_line_error(result, name, cause)
        assert not (tmp_path / name).with_suffix(".vqc").exists()
    assert no_leftovers(tmp_path)


def test_bad_input_among_good_ones(photos, tiny_checkpoint, tmp_path):
    _bad_inputs(tmp_path, photos)
    out = tmp_path / "out"
    result = run_cli("encode", photos[0], tmp_path / "text.png", photos[1], "-m", tiny_checkpoint, "-o", out)
    assert_one_line_error(result, "text.png", "not an image")
    assert sorted(p.name for p in out.iterdir()) == ["img0.vqc", "img1.vqc"]


def test_folder_without_images(tiny_checkpoint, tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("hi")
    assert_one_line_error(run_cli("encode", tmp_path / "empty", "-m", tiny_checkpoint), "empty", "no files")


def test_unknown_model_and_missing_file(photos):
    assert_one_line_error(run_cli("encode", photos[0], "-m", "no-such-model"), "no-such-model", "unknown model")
    assert_one_line_error(run_cli("decode", "missing.vqc"), "missing.vqc", "no such file")


def test_bad_code_files(photos, tiny_checkpoint, tmp_path):
    run_cli("encode", photos[0], "-m", tiny_checkpoint, "-o", tmp_path / "good.vqc")
    good = (tmp_path / "good.vqc").read_bytes()
    [record] = read_codes(good)
    other = CodeFile(record.codes, record.model, "f" * 64, record.codebook_size, record.media)
    cases = {
        "trunc.vqc": (good[:-3], "truncated"),
        "corrupt.vqc": (good[:-1] + bytes([good[-1] ^ 0x55]), "checksum"),
        "notvqc.vqc": (b"PK\x03\x04 not a code file", "bad magic"),
        "empty.vqc": (b"", "empty file"),
        "other.vqc": (other.to_bytes(), "codes were made by checkpoint ffffffffffff"),
    }
    for name, (data, cause) in cases.items():
        (tmp_path / name).write_bytes(data)
        out = tmp_path / f"{name}.png"
        assert_one_line_error(run_cli("decode", tmp_path / name, "-o", out), name, cause)
        assert not out.exists()
    assert no_leftovers(tmp_path)


def test_several_inputs_into_one_code_file(photos, tiny_checkpoint, tmp_path):
    result = run_cli("encode", *photos, "-m", tiny_checkpoint, "-o", tmp_path / "all.vqc")
    assert result.returncode == 0, result.stderr.decode()
    assert len(read_codes((tmp_path / "all.vqc").read_bytes())) == 3
    assert run_cli("decode", tmp_path / "all.vqc", "-o", tmp_path / "all").returncode == 0
    assert sorted(p.name for p in (tmp_path / "all").iterdir()) == ["img0.png", "img1.png", "img2.png"]
