"""The shipped cifar10 checkpoint keeps the numbers its card claims, on the CIFAR-10 test split."""
import numpy as np
import pytest
import torch

from vqtool import load
from vqtool.codes import read_codes
from vqtool.data.images import load_images
from vqtool.families.image.task import evaluate_reconstruction

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


def test_recorded_prior_numbers_hold_on_1000_test_images(cifar10, test_split):
    from vqtool.families.image.task import _nll_bits, encode_all

    recorded = cifar10.metadata["metrics"]
    assert recorded["prior_eval_images"] == 10_000 and recorded["compressed_decode_exact"] is True
    codes = encode_all(cifar10, test_split.images)
    bits = float(_nll_bits(cifar10, codes, None).mean()) / 64
    assert abs(bits - recorded["prior_bits_per_code"]) < 0.1, (bits, recorded["prior_bits_per_code"])
    assert bits < 9  # better than bit-packing K = 512 codes


def test_compressed_test_images_decode_exactly_and_are_smaller(cifar10, test_split):
    from vqtool.families.image.compress import compress, decompress

    codes = cifar10.encode(test_split.images[:40].numpy())
    payloads = compress(cifar10.prior, codes)
    assert np.array_equal(decompress(cifar10.prior, payloads, (8, 8)), codes.numpy())
    ideal = cifar10.prior.nll_bits(codes).detach().numpy() / 8
    sizes = np.array([len(p) for p in payloads])
    assert sizes.sum() <= 1.02 * ideal.sum() + 8 * len(sizes) and sizes.mean() < 72  # 72 = bit-packed bytes


def test_class_conditional_samples_are_recognised_as_recorded(cifar10):
    judge = load("cifar10-classifier", device="cpu")
    recorded = cifar10.metadata["metrics"]["sample_accuracy"]
    labels = torch.arange(10).repeat_interleave(20)
    samples = cifar10.to_uint8(cifar10.decode(cifar10.sample(labels, seed=123)))
    accuracy = judge.accuracy(samples, labels.numpy())
    assert accuracy > 0.2 and abs(accuracy - recorded) < 0.12, (accuracy, recorded)  # chance is 0.1


def test_shipped_classifier_keeps_its_test_accuracy(test_split):
    judge = load("cifar10-classifier", device="cpu")
    recorded = judge.metadata["metrics"]["accuracy"]
    assert judge.metadata["provenance"]["train_split"] == "train"
    assert abs(judge.accuracy(test_split.images, test_split.labels) - recorded) < 0.03
