"""The shipped cifar10 checkpoint keeps the numbers its card claims, on the CIFAR-10 test split."""
import numpy as np
import pytest

from vqtool import load
from vqtool.codes import read_codes
from vqtool.data import load_images
from vqtool.vqvae import evaluate_reconstruction

from conftest import run_cli


@pytest.fixture(scope="module")
def cifar10():
    return load("cifar10", device="cpu")


@pytest.fixture(scope="module")
def test_split(shared_data):
    return load_images(shared_data / "cifar10" / "test.zip", limit=1000)


def test_recorded_psnr_holds_on_1000_test_images(cifar10, test_split):
    recorded = cifar10.metadata["metrics"]
    assert recorded["eval_images"] == 10_000 and cifar10.metadata["provenance"]["train_split"] == "train"
    measured = evaluate_reconstruction(cifar10, test_split.images)
    assert abs(measured["psnr_db"] - recorded["psnr_db"]) < 0.3, (measured, recorded)
    assert measured["codes_used"] > 0.5


def test_cli_round_trip_matches_library(cifar10, test_split, tmp_path):
    from PIL import Image

    originals = test_split.images[:8].numpy()
    for i, array in enumerate(originals):
        Image.fromarray(array).save(tmp_path / f"{i}.png")
    stream = run_cli("encode", *[tmp_path / f"{i}.png" for i in range(8)], "-o", "-").stdout
    records = read_codes(stream)
    assert [r.grid for r in records] == [(8, 8)] * 8 and records[0].model == "cifar10"
    assert run_cli("decode", "-", "-o", tmp_path / "out", input=stream).returncode == 0
    restored = np.stack([np.asarray(Image.open(tmp_path / "out" / f"{i}.png")) for i in range(8)])
    expected = cifar10.to_uint8(cifar10.decode(cifar10.encode(originals)))
    assert np.array_equal(restored, expected)
