"""Whole-dataset code arrays (issue 18): `vqtool encode DIR -o codes.npz`, `vqtool decode codes.npz -o DIR`,
`vqtool train prior --codes codes.npz`, and the refusal of arrays that are foreign, truncated, ill-typed
or unsafe (docs/codes-npz.md)."""

import io
import json
import zipfile

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

import vqtool
from vqtool.codearrays import CodeArrayWriter, open_code_array
from vqtool.errors import VqtoolError
from vqtool.media import encode_image

from conftest import run_cli


@pytest.fixture(scope="module")
def cifar_slice(tmp_path_factory, shared_data):
    """30 held-out CIFAR-10 test images in their class folders (one nested deeper)."""
    folder = tmp_path_factory.mktemp("slice") / "photos"
    with zipfile.ZipFile(shared_data / "cifar10" / "test.zip") as archive:
        for label in ("cat", "ship", "truck"):
            names = sorted(n for n in archive.namelist() if f"/{label}/" in n and n.endswith(".jpg"))[:10]
            for i, name in enumerate(names):
                target = folder / label / ("more" if label == "truck" and i >= 7 else "") / f"{i:02d}.jpg"
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(archive.read(name))
    return folder


@pytest.fixture(scope="module")
def cifar_array(tmp_path_factory, cifar_slice):
    path = tmp_path_factory.mktemp("array") / "codes.npz"
    result = run_cli("encode", cifar_slice, "-o", path)
    assert result.returncode == 0, result.stderr.decode()
    return path


def rewrite(source, target, **members):
    """A copy of a codes.npz with some members replaced (bytes, or arrays saved as .npy)."""
    with zipfile.ZipFile(source) as old, zipfile.ZipFile(target, "w") as new:
        for name in old.namelist():
            value = members.pop(name, None)
            if value is None:
                new.writestr(name, old.read(name))
            elif isinstance(value, np.ndarray):
                buffer = io.BytesIO()
                np.save(buffer, value, allow_pickle=False)
                new.writestr(name, buffer.getvalue())
            else:
                new.writestr(name, value)
    return target


def test_array_holds_every_image_with_its_relative_name_size_and_checkpoint(cifar_array):
    net = vqtool.load("cifar10")
    with np.load(cifar_array) as arrays:  # plain numpy reads it
        codes, names, sizes = arrays["codes"], arrays["names"], arrays["sizes"]
        meta = json.loads(arrays["meta.json"])
    assert codes.shape == (30, 8, 8) and codes.dtype == np.uint16
    assert list(names[:2]) == ["cat/00.jpg", "cat/01.jpg"] and "truck/more/09.jpg" in list(names)
    assert (sizes == 32).all()
    assert meta["checkpoint_sha256"] == net.sha256 and meta["codebook_size"] == 512 and meta["count"] == 30


def test_array_decodes_to_the_same_pixels_as_vqc_files_keeping_folders(tmp_path, cifar_slice, cifar_array):
    result = run_cli("decode", cifar_array, "-o", tmp_path / "out", "--json")
    assert result.returncode == 0, result.stderr.decode()
    assert len(result.stdout.decode().splitlines()) == 30
    for image in cifar_slice.rglob("*.jpg"):
        relative = image.relative_to(cifar_slice).with_suffix(".png")
        alone = encode_image(vqtool.decode_file(vqtool.encode_file(image)))
        assert (tmp_path / "out" / relative).read_bytes() == alone, relative
    assert (tmp_path / "out" / "truck" / "more" / "09.png").exists()


def test_array_from_stdin_and_round_trip_through_a_pipe(tmp_path, cifar_array):
    result = run_cli("decode", "-", "-o", tmp_path / "out", input=cifar_array.read_bytes())
    assert result.returncode == 0, result.stderr.decode()
    assert len(list((tmp_path / "out").rglob("*.png"))) == 30


def test_images_of_another_grid_are_reported_and_the_rest_kept(tmp_path, cifar_slice):
    folder = tmp_path / "mixed"
    for path in sorted(cifar_slice.rglob("*.jpg"))[:3]:
        (folder / path.parent.name).mkdir(parents=True, exist_ok=True)
        (folder / path.parent.name / path.name).write_bytes(path.read_bytes())
    Image.new("RGB", (40, 24), "red").save(folder / "cat" / "zz-wide.png")
    result = run_cli("encode", folder, "-o", tmp_path / "codes.npz")
    assert result.returncode == 1
    errors = result.stderr.decode().splitlines()
    assert any("zz-wide.png" in line and "grid" in line for line in errors), errors
    with np.load(tmp_path / "codes.npz") as arrays:
        assert len(arrays["codes"]) == 3
    assert not list(tmp_path.glob(".*part"))  # the rows' temporary is gone


def test_foreign_truncated_mistyped_and_unsafe_arrays_are_refused(tmp_path, cifar_array):
    with np.load(cifar_array) as arrays:
        codes, names = arrays["codes"], arrays["names"]
        meta = json.loads(arrays["meta.json"])
    bad = {
        "foreign": rewrite(cifar_array, tmp_path / "foreign.npz",
                           **{"meta.json": json.dumps({**meta, "checkpoint_sha256": "ab" * 32})}),
        "truncated": tmp_path / "truncated.npz",
        "float codes": rewrite(cifar_array, tmp_path / "float.npz", **{"codes.npy": codes.astype(np.float32)}),
        "short codes": rewrite(cifar_array, tmp_path / "short.npz", **{"codes.npy": codes[:20]}),
        "out of codebook": rewrite(cifar_array, tmp_path / "range.npz", **{"codes.npy": codes + 512}),
        "escaping name": rewrite(cifar_array, tmp_path / "escape.npz",
                                 **{"names.npy": np.array(["../../evil"] + list(names[1:]))}),
        "absolute name": rewrite(cifar_array, tmp_path / "absolute.npz",
                                 **{"names.npy": np.array(["/tmp/evil"] + list(names[1:]))}),
    }
    data = cifar_array.read_bytes()
    bad["truncated"].write_bytes(data[:len(data) // 2])
    for what, path in bad.items():
        out = tmp_path / f"out-{path.stem}"
        result = run_cli("decode", path, "-o", out)
        lines = result.stderr.decode().strip().splitlines()
        assert result.returncode == 1, what
        assert len(lines) == 2 and str(path) in lines[0] and "Traceback" not in lines[0], (what, lines)
        assert not out.exists() or not any(out.rglob("*.png")), what
    assert not (tmp_path / "evil").exists() and not any(tmp_path.parent.glob("evil"))


def test_array_options_that_cannot_apply_are_usage_errors(tmp_path, cifar_slice):
    assert run_cli("encode", cifar_slice, "-o", tmp_path / "c.npz", "--compress").returncode == 2


def test_prior_trains_from_an_array_exactly_as_from_the_images(tmp_path, image_folder, tiny_checkpoint):
    from vqtool.data.images import load_images
    from vqtool.families.image.task import array_codes, training_codes

    path = tmp_path / "blobs.npz"
    assert run_cli("encode", image_folder, "-m", tiny_checkpoint, "-o", path).returncode == 0
    net = vqtool.load(str(tiny_checkpoint))
    codes, labels, classes, _ = array_codes(net, str(path))
    images = load_images(image_folder)
    expected_codes, expected_labels = training_codes(net, images, flip=False)
    assert classes == images.classes == ["a", "b"]
    assert torch_equal(codes, expected_codes) and torch_equal(labels, expected_labels)
    result = run_cli("train", "prior", "--vqvae", tiny_checkpoint, "--codes", path, "--data", image_folder,
                     "--steps", "5", "--batch-size", "8", "--hidden", "8", "--layers", "2", "--out", tmp_path / "run",
                     "--name", "blobs", "--quiet")
    assert result.returncode == 0, result.stderr.decode()
    sampler = vqtool.load(str(tmp_path / "run" / "blobs.safetensors"))
    assert sampler.classes == ["a", "b"] and sampler.metadata["provenance"]["train_data"] == str(path)
    # an array made with another checkpoint is refused
    other = run_cli("train", "prior", "--vqvae", "cifar10", "--codes", path, "--steps", "1", "--out", tmp_path / "x")
    assert other.returncode == 1 and "made by checkpoint" in other.stderr.decode()


def test_an_array_of_a_test_split_is_not_trained_on(tmp_path, image_folder, tiny_checkpoint):
    test_folder = tmp_path / "test"
    test_folder.symlink_to(image_folder, target_is_directory=True)
    path = tmp_path / "codes.npz"
    assert run_cli("encode", test_folder, "-m", tiny_checkpoint, "-o", path).returncode == 0
    result = run_cli("train", "prior", "--vqvae", tiny_checkpoint, "--codes", path, "--data", image_folder,
                     "--steps", "1", "--out", tmp_path / "run")
    assert result.returncode == 1 and "test split" in result.stderr.decode()


def torch_equal(a, b) -> bool:
    return a.shape == b.shape and bool((a.long() == b.long()).all())


def _small_array(tmp_path) -> bytes:
    writer = CodeArrayWriter(tmp_path / "seed.npz", "tiny", "cd" * 32, 32, inputs=["photos"])
    rng = np.random.default_rng(0)
    for i in range(5):
        writer.add(rng.integers(0, 32, (4, 4)), f"a/{i}.png", (16, 16, 3), f"{i}.png")
    writer.close()
    return (tmp_path / "seed.npz").read_bytes()


@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck), database=None)
@given(st.data())
def test_fuzz_mutated_arrays_fail_with_one_line(tmp_path_factory, data):
    seed = _small_array(tmp_path_factory.mktemp("fuzz"))
    at = data.draw(st.integers(0, len(seed) - 1))
    kind = data.draw(st.sampled_from(["flip", "truncate", "insert"]))
    if kind == "flip":
        mutated = seed[:at] + bytes([seed[at] ^ (1 << data.draw(st.integers(0, 7)))]) + seed[at + 1:]
    elif kind == "truncate":
        mutated = seed[:at]
    else:
        mutated = seed[:at] + data.draw(st.binary(min_size=1, max_size=8)) + seed[at:]
    try:
        array = open_code_array("fuzz.npz", mutated)
        try:
            for _ in array.chunks(2):
                pass
        finally:
            array.close()
    except VqtoolError as exc:
        assert str(exc).strip() and "\n" not in str(exc)
