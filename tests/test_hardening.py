"""The reproducers of the hardening issue, each as a user (or an attacker) would meet it."""
import io
import json
import re
import subprocess
import sys
import zipfile

import numpy as np
import pytest
import soundfile as sf
from PIL import Image

from vqtool.codes import CodeFile, read_codes
from vqtool.errors import VqtoolError

from conftest import run_cli, synthetic_images, synthetic_voice
from test_cli import assert_one_line_error
from test_codes import v1_record


def assert_usage_error(result, fragment: str):
    """Exit 2 with `fragment` in the message (rich wraps it in a box across lines)."""
    text = re.sub(r"[\u2500-\u257f\s]+", " ", result.stderr.decode())
    assert result.returncode == 2 and fragment in text, text


def save(path, array):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)
    return path


@pytest.fixture
def two(tmp_path):
    a, b = synthetic_images(2, size=16, seed=9)
    return save(tmp_path / "a" / "x.png", a), save(tmp_path / "b" / "x.png", b)


def sha(path):
    from vqtool.hub import sha256_file

    return sha256_file(path)


# --- output names -------------------------------------------------------------------------------------
def test_hostile_names_stay_inside_the_output_folder(tiny_checkpoint, tmp_path):
    media = {"kind": "image", "width": 16, "height": 16, "channels": 3}
    names = ["../../escape", str(tmp_path / "absolute"), "same", "same"]
    stream = b"".join(CodeFile(np.zeros((4, 4), np.int64), str(tiny_checkpoint), sha(tiny_checkpoint), 32,
                               {**media, "name": n}).to_bytes() for n in names)
    (tmp_path / "in.vqc").write_bytes(stream)
    out = tmp_path / "deep" / "out"
    result = run_cli("decode", tmp_path / "in.vqc", "-o", out)
    assert result.returncode == 0, result.stderr.decode()
    from vqtool.media import safe_name

    expected = ["_.._escape.png", safe_name(str(tmp_path / "absolute"), "x") + ".png", "same-2.png", "same.png"]
    assert sorted(p.name for p in out.iterdir()) == sorted(expected)
    assert len(list(out.iterdir())) == 4 and {p.parent for p in tmp_path.rglob("*.png")} == {out}
    assert not (tmp_path / "absolute.png").exists() and not list(tmp_path.parent.glob("escape*"))
    assert b"same-2.png" in result.stderr  # the renamed duplicate is named in a note


def test_safe_name_rules():
    from vqtool.media import safe_name

    assert safe_name("../../x", "f") == "_.._x"
    assert safe_name("/etc/passwd", "f") == "_etc_passwd"
    assert safe_name("..", "f") == "f" and safe_name("", "f") == "f" and safe_name(".bashrc", "f") == "bashrc"
    assert safe_name("a\x00b", "f") == "a_b" and safe_name("smile é 1", "f") == "smile é 1"
    assert len(safe_name("x" * 5000, "f").encode()) <= 100


def test_output_never_overwrites_an_input(tiny_checkpoint, tmp_path, two):
    photo = two[0]
    before = photo.read_bytes()
    result = run_cli("encode", photo, "-m", tiny_checkpoint, "-o", photo)
    assert_usage_error(result, "is also an input")
    assert photo.read_bytes() == before


def test_same_stems_never_clobber_each_other(tiny_checkpoint, tmp_path, two):
    jpeg = tmp_path / "a" / "x.jpg"
    Image.open(two[1]).save(jpeg)
    result = run_cli("encode", *two, jpeg, "-m", tiny_checkpoint, "-o", tmp_path / "codes", "--json")
    assert result.returncode == 0, result.stderr.decode()
    outputs = [json.loads(line)["output"] for line in result.stdout.splitlines()]
    assert [p.split("/")[-1] for p in outputs] == ["x.vqc", "x-2.vqc", "x-3.vqc"]
    # beside the inputs: x.png and x.jpg in one folder
    result = run_cli("encode", two[0], jpeg, "-m", tiny_checkpoint)
    assert result.returncode == 0 and sorted(p.name for p in (tmp_path / "a").glob("*.vqc")) == ["x-2.vqc", "x.vqc"]


def test_decode_names_a_lone_record_after_its_file(tiny_checkpoint, tmp_path, two):
    assert run_cli("encode", two[0], "-m", tiny_checkpoint, "-o", tmp_path / "copy.vqc").returncode == 0
    assert run_cli("decode", tmp_path / "copy.vqc").returncode == 0
    assert (tmp_path / "copy.decoded.png").exists()


def test_one_file_for_several_outputs_is_a_usage_error(tmp_path, two):
    faces = [save(tmp_path / f"f{i}.png", a) for i, a in enumerate(synthetic_images(2, size=64, seed=1))]
    result = run_cli("fade", *faces, "--smile", "1", "-o", tmp_path / "two.png")
    assert_usage_error(result, "names one file")
    assert not (tmp_path / "two.png").exists()


# --- pixels and samples -----------------------------------------------------------------------------------
def test_sixteen_bit_float_and_rotated_images_read_right(tmp_path):
    from vqtool.media import image_to_array, read_image

    ramp = np.linspace(0, 1, 64 * 32).reshape(32, 64)
    Image.fromarray((ramp * 65535).astype(np.uint16)).save(tmp_path / "deep.png")
    Image.fromarray(ramp.astype(np.float32), "F").save(tmp_path / "float.tif")
    for name in ("deep.png", "float.tif"):
        pixels = image_to_array(read_image(str(tmp_path / name)))[..., 0].astype(float)
        assert np.abs(pixels - ramp * 255).max() <= 1, name
    exif = Image.Exif()
    exif[0x0112] = 6  # stored sideways: rotate 90 degrees clockwise to view
    Image.fromarray(np.zeros((10, 30, 3), np.uint8)).save(tmp_path / "phone.jpg", exif=exif)
    assert read_image(str(tmp_path / "phone.jpg")).size == (10, 30)


def test_compare_sees_sixteen_bit_damage(tmp_path):
    ramp = (np.linspace(0, 65535, 64 * 64).reshape(64, 64)).astype(np.uint16)
    Image.fromarray(ramp).save(tmp_path / "deep.png")
    Image.fromarray(np.full((64, 64), 255, np.uint8)).save(tmp_path / "white.png")
    result = run_cli("compare", tmp_path / "deep.png", tmp_path / "white.png", "--json")
    assert json.loads(result.stdout)["psnr_db"] < 10


def test_webp_is_an_image_and_audio_is_sniffed_by_content(tiny_checkpoint, tmp_path):
    from vqtool.audio import looks_like_audio

    save(tmp_path / "p.webp", synthetic_images(1, size=16)[0])
    result = run_cli("encode", "-", "-m", tiny_checkpoint, input=(tmp_path / "p.webp").read_bytes())
    assert result.returncode == 0, result.stderr.decode()
    wav = io.BytesIO()
    sf.write(wav, np.zeros(100, np.float32), 16000, format="WAV")
    assert looks_like_audio("-", wav.getvalue()[:12]) and not looks_like_audio("-", (tmp_path / "p.webp").read_bytes())


def test_bad_audio_is_one_clear_line_and_short_audio_works(tiny_speech, tmp_path):
    wave = synthetic_voice(0.5, 150)
    wave[100] = np.nan
    sf.write(tmp_path / "nan.wav", wave, 16000, subtype="FLOAT")
    for command in (["encode"], ["convert-voice", "--to", "spk0"]):
        result = run_cli(*command, tmp_path / "nan.wav", "-m", tiny_speech, "-o", f"{tmp_path / 'out'}/")
        assert_one_line_error(result, "nan.wav", "NaN or infinite")
    sf.write(tmp_path / "tiny.wav", synthetic_voice(0.5, 150)[:20], 16000)
    assert run_cli("encode", tmp_path / "tiny.wav", "-m", tiny_speech).returncode == 0
    assert run_cli("decode", tmp_path / "tiny.vqc", "-o", tmp_path / "tiny.back.wav").returncode == 0
    assert sf.info(tmp_path / "tiny.back.wav").frames == 20


def test_mp3_in_every_audio_command(tiny_speech, tmp_path):
    sf.write(tmp_path / "talk.mp3", synthetic_voice(1.0, 150), 16000, format="MP3")
    assert run_cli("encode", tmp_path / "talk.mp3", "-m", tiny_speech).returncode == 0
    result = run_cli("convert-voice", tmp_path / "talk.mp3", "--to", "spk1", "-m", tiny_speech)
    assert result.returncode == 0, result.stderr.decode()


def test_audio_in_an_image_folder_is_skipped_with_a_note(tiny_checkpoint, tmp_path):
    save(tmp_path / "shots" / "p.png", synthetic_images(1, size=16)[0])
    sf.write(tmp_path / "shots" / "memo.wav", np.zeros(800, np.float32), 16000)
    result = run_cli("encode", tmp_path / "shots", "-m", tiny_checkpoint, "-o", tmp_path / "codes")
    assert result.returncode == 0 and b"skipping 1 audio file" in result.stderr
    assert [p.name for p in (tmp_path / "codes").iterdir()] == ["p.vqc"]


# --- resource limits and bad checkpoints --------------------------------------------------------------
def test_huge_decode_claims_are_refused_before_allocation(tiny_checkpoint, tmp_path):
    bomb = v1_record(np.zeros((8, 8), np.int64), model=str(tiny_checkpoint), checkpoint_sha256=sha(tiny_checkpoint),
                     media={"kind": "image", "width": 16000, "height": 16000, "channels": 3})
    (tmp_path / "bomb.vqc").write_bytes(bomb)
    assert_one_line_error(run_cli("decode", tmp_path / "bomb.vqc", "-o", tmp_path / "b.png"), "bomb.vqc", "pixel limit")
    # a grid that does not match the image size at the model's stride
    record = CodeFile(np.zeros((8, 8), np.int64), str(tiny_checkpoint), sha(tiny_checkpoint), 32,
                      {"kind": "image", "width": 16, "height": 16, "channels": 3})
    (tmp_path / "odd.vqc").write_bytes(record.to_bytes())
    assert_one_line_error(run_cli("decode", tmp_path / "odd.vqc", "-o", tmp_path / "o.png"), "odd.vqc", "grid")


def _rewrite_checkpoint(source, target, **changes):
    from safetensors import safe_open
    from safetensors.torch import save_file

    with safe_open(str(source), framework="pt") as handle:
        meta, tensors = dict(handle.metadata()), {k: handle.get_tensor(k) for k in handle.keys()}
    config = json.loads(meta["config"])
    for key, value in changes.items():
        if key == "raw_config":
            meta["config"] = value
        else:
            config[key] = value
            meta["config"] = json.dumps(config)
    save_file(tensors, str(target), metadata=meta)
    return target


@pytest.mark.parametrize("changes, message", [
    ({"raw_config": "{not json"}, "corrupt checkpoint metadata"),
    ({"raw_config": "[1, 2]"}, "not an object"),
    ({"hidden": "wide"}, "hidden = wide"),
    ({"colour": True}, "unknown keys: colour"),
    ({"hidden": 4096}, "do not match its config"),
    ({"hidden": 10**12}, "hidden"),
    ({"decoder_res_blocks": 706}, "decoder_res_blocks = 706, outside 0..64"),  # refused before a slow build
    ({"channels": 0}, "builds no network"),  # an empty layer: torch's warning becomes this one line
])
def test_bad_checkpoint_metadata_is_one_clear_line(tiny_checkpoint, tmp_path, two, changes, message):
    bad = _rewrite_checkpoint(tiny_checkpoint, tmp_path / "bad.safetensors", **changes)
    assert_one_line_error(run_cli("encode", two[0], "-m", bad), "bad.safetensors", message)


def test_malformed_user_registry_does_not_break_bundled_models(tmp_path, two):
    home = tmp_path / "home"
    (home / "models").mkdir(parents=True)
    (home / "models" / "registry.json").write_text('{"models": {"x": {"file": "../../etc/passwd"}}}')
    result = run_cli("encode", two[0], "-o", tmp_path / "ok.vqc", env={"VQTOOL_HOME": str(home)})
    assert result.returncode == 0 and b"unreadable model registry" in result.stderr


def test_training_zip_size_is_checked_before_extraction(tmp_path, monkeypatch):
    from vqtool.data import images as data

    with zipfile.ZipFile(tmp_path / "train.zip", "w", zipfile.ZIP_DEFLATED) as archive:
        for i in range(3):
            archive.writestr(f"a/{i}.png", b"\0" * 100_000)
    monkeypatch.setattr(data, "MAX_ZIP_BYTES", 200_000)
    with pytest.raises(VqtoolError, match="zip would unpack"):
        data.load_images(tmp_path / "train.zip")


# --- batches, litter, pipes, options --------------------------------------------------------------------
def test_a_failed_write_does_not_stop_the_batch(tiny_checkpoint, tmp_path):
    paths = [save(tmp_path / f"p{i}.png", a) for i, a in enumerate(synthetic_images(3, size=16, seed=3))]
    (tmp_path / "codes" / "p1.vqc").mkdir(parents=True)  # the output path is taken by a folder
    result = run_cli("encode", *paths, "-m", tiny_checkpoint, "-o", tmp_path / "codes")
    assert_one_line_error(result, "p1.vqc", "cannot write")
    assert sorted(p.name for p in (tmp_path / "codes").iterdir()) == ["p0.vqc", "p1.vqc", "p2.vqc"]
    assert (tmp_path / "codes" / "p2.vqc").is_file() and not list((tmp_path / "codes").glob(".*"))


def test_stale_partial_files_are_named(tiny_checkpoint, tmp_path, two):
    (tmp_path / "codes").mkdir()
    (tmp_path / "codes" / ".x.vqc.k3j2.part").write_bytes(b"half")
    result = run_cli("encode", two[0], "-m", tiny_checkpoint, "-o", f"{tmp_path / 'codes'}/")
    assert result.returncode == 0 and b"partial file(s) left by an interrupted run" in result.stderr


def test_interrupted_writes_leave_no_temporaries(tmp_path):
    from vqtool.media import atomic_path

    for interruption in (SystemExit(143), KeyboardInterrupt()):
        with pytest.raises(type(interruption)):
            with atomic_path(tmp_path / "out.png") as tmp:
                tmp.write_bytes(b"partial")
                raise interruption
        assert list(tmp_path.iterdir()) == []


def test_sigterm_removes_the_temporary(tiny_speech, tmp_path):
    """A long conversion killed with SIGTERM leaves neither output nor temporary."""
    import signal
    import time

    sf.write(tmp_path / "long.wav", np.tile(synthetic_voice(2.0, 150), 60), 16000)
    process = subprocess.Popen([sys.executable, "-m", "vqtool", "convert-voice", str(tmp_path / "long.wav"),
                                "--to", "spk0", "-m", str(tiny_speech), "-o", str(tmp_path / "out" / "long.wav")],
                               stderr=subprocess.PIPE)
    for _ in range(600):  # wait until the temporary exists
        if list((tmp_path / "out").glob(".*.part")) if (tmp_path / "out").exists() else False:
            break
        time.sleep(0.05)
    process.send_signal(signal.SIGTERM)
    assert process.wait(60) == 143
    assert not (tmp_path / "out").exists() or list((tmp_path / "out").iterdir()) == []


@pytest.mark.parametrize("command", ["encode", "decode"])
def test_a_closed_stdout_exits_quietly(tiny_checkpoint, tmp_path, two, command):
    run_cli("encode", two[0], "-m", tiny_checkpoint, "-o", tmp_path / "c.vqc")
    target = two[0] if command == "encode" else tmp_path / "c.vqc"
    extra = f"-m {tiny_checkpoint}" if command == "encode" else ""
    shell = f"{sys.executable} -m vqtool {command} {target} {extra} -o - | true"
    result = subprocess.run(["bash", "-o", "pipefail", "-c", shell], capture_output=True, timeout=120)
    assert result.returncode == 0 and b"error" not in result.stderr


def test_options_that_do_not_apply_are_usage_errors(tiny_checkpoint, tmp_path, two):
    run_cli("encode", two[0], "-m", tiny_checkpoint, "-o", tmp_path / "c.vqc")
    result = run_cli("decode", tmp_path / "c.vqc", "--to", "spk3", "-o", tmp_path / "c.png")
    assert_usage_error(result, "these codes hold none")
    assert not (tmp_path / "c.png").exists()


def test_bad_records_among_good_ones(tiny_checkpoint, tmp_path, two):
    run_cli("encode", *two, "-m", tiny_checkpoint, "-o", tmp_path / "both.vqc")
    [first, second] = read_codes((tmp_path / "both.vqc").read_bytes())
    (tmp_path / "good.vqc").write_bytes(first.to_bytes())
    (tmp_path / "bad.vqc").write_bytes(b"VQC\x89\x02garbage")
    (tmp_path / "good2.vqc").write_bytes(second.to_bytes())
    result = run_cli("decode", tmp_path / "good.vqc", tmp_path / "bad.vqc", tmp_path / "good2.vqc",
                     "-o", tmp_path / "out")
    assert_one_line_error(result, "bad.vqc")
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["good.png", "good2.png"]


def test_errors_name_the_record(tiny_checkpoint, tmp_path):
    media = {"kind": "image", "width": 16, "height": 16, "channels": 3}
    good = CodeFile(np.zeros((4, 4), np.int64), str(tiny_checkpoint), sha(tiny_checkpoint), 32, media)
    other = CodeFile(np.zeros((4, 4), np.int64), str(tiny_checkpoint), "f" * 64, 32, media)
    (tmp_path / "mixed.vqc").write_bytes(good.to_bytes() + other.to_bytes())
    result = run_cli("decode", tmp_path / "mixed.vqc", "-o", tmp_path / "out")
    assert_one_line_error(result, "mixed.vqc (record 2)", "codes were made by checkpoint ffff")
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["mixed.png"]
