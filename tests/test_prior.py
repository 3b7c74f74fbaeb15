"""The learned prior: causality, cached = naive sampling, exact range coding, and the CLI around them."""

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from vqtool import load
from vqtool.codes import read_codes
from vqtool.families.image.compress import compress, decompress
from vqtool.families.image.prior import PixelCNNPrior, PriorConfig, Stepper, autoregress, sampler

from conftest import run_cli
from test_cli import assert_one_line_error


def tiny_prior(seed=0, classes=("a", "b", "c"), codes=16) -> PixelCNNPrior:
    torch.manual_seed(seed)
    return PixelCNNPrior(PriorConfig(num_codes=codes, classes=list(classes), hidden=8, layers=4)).eval()


@pytest.mark.parametrize("label", [0, -1])
def test_a_code_never_changes_the_logits_at_or_before_it(label):
    prior = tiny_prior()
    codes = torch.randint(0, 16, (1, 5, 6), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        base = prior(codes, torch.tensor([label]))
        for position in range(30):
            changed = codes.clone()
            changed.view(-1)[position] = (changed.view(-1)[position] + 7) % 16
            moved = (prior(changed, torch.tensor([label])) - base).abs().amax(1).flatten()
            assert moved[:position + 1].max() == 0, position
            # and the next code in the row and the one below do see it (no blind spot there)
            for after in ([position + 1] if (position + 1) % 6 else []) + ([position + 6] if position < 24 else []):
                assert moved[after] > 0, (position, after)


def test_cached_logits_equal_the_full_network():
    prior = tiny_prior()
    labels = torch.tensor([0, 2, 3])
    codes = torch.randint(0, 16, (3, 4, 5))
    full = prior(codes, labels).detach()
    stepper = Stepper(prior, prior.labels_for(labels, 3, "cpu"), 4, 5)
    with torch.no_grad():
        for row in range(4):
            stepper.start_row(row, codes)
            for col in range(5):
                torch.testing.assert_close(stepper.logits(row, col, codes), full[:, :, row, col])


@pytest.mark.parametrize("temperature,top_k", [(1.0, None), (0.7, 5), (1.5, 1)])
def test_cached_sampling_gives_exactly_the_naive_samples(temperature, top_k):
    prior = tiny_prior(seed=3)
    labels = prior.labels_for(torch.tensor([0, 1, 2, -1, 0]), 5, "cpu")
    noise = torch.rand(5, 4, 6, generator=torch.Generator().manual_seed(9), dtype=torch.float64)
    cached = autoregress(prior, labels, 4, 6, sampler(noise, temperature, top_k), cached=True)
    naive = autoregress(prior, labels, 4, 6, sampler(noise, temperature, top_k), cached=False)
    assert torch.equal(cached, naive)
    if top_k == 1:  # greedy: every code is the argmax of its logits
        assert torch.equal(prior(cached, labels).argmax(1), cached)


@settings(max_examples=25, deadline=None)
@given(height=st.integers(1, 4), width=st.integers(1, 5), n=st.integers(1, 3), seed=st.integers(0, 2**16))
def test_range_coding_round_trips_and_stays_near_the_cross_entropy(height, width, n, seed):
    prior = tiny_prior(seed=seed % 5)
    codes = torch.randint(0, 16, (n, height, width), generator=torch.Generator().manual_seed(seed))
    payloads = compress(prior, codes)
    assert np.array_equal(decompress(prior, payloads, (height, width)), codes.numpy())
    bits = prior.nll_bits(codes).detach().numpy()
    for payload, b in zip(payloads, bits):
        assert len(payload) <= 1.02 * b / 8 + 8


def test_sampling_is_deterministic_under_a_seed(prior_checkpoint):
    model = load(str(prior_checkpoint), device="cpu")
    first, again, other = (model.sample([0, 1, -1], seed) for seed in (5, 5, 6))
    assert torch.equal(first, again) and not torch.equal(first, other)


def test_trained_prior_beats_a_uniform_code_and_carries_its_numbers(prior_checkpoint):
    model = load(str(prior_checkpoint), device="cpu")
    metrics = model.metadata["metrics"]
    assert metrics["prior_bits_per_code"] < np.log2(model.config.num_codes) - 0.5
    assert metrics["compressed_decode_exact"] is True
    assert metrics["compressed_payload_bytes"] <= 1.02 * metrics["compressed_cross_entropy_bytes"] + 8
    assert 0 < metrics["decoder_bits_per_dim"] < 8 and metrics["bits_per_dim"] > metrics["decoder_bits_per_dim"]
    assert "psnr_db" in metrics  # the VQ-VAE's own numbers travel with it


def test_sample_codes_pipe_into_decode_makes_the_same_grid(prior_checkpoint, tmp_path):
    direct = run_cli("sample", "-m", prior_checkpoint, "-n", "6", "--seed", "3", "-o", tmp_path / "direct.png")
    assert direct.returncode == 0, direct.stderr.decode()
    codes = run_cli("sample", "-m", prior_checkpoint, "-n", "6", "--seed", "3", "--codes", "-o", "-").stdout
    assert [r.grid for r in read_codes(codes)] == [(4, 4)] * 6
    piped = run_cli("decode", "-", "-o", tmp_path / "piped.png", input=codes)
    assert piped.returncode == 0, piped.stderr.decode()
    a, b = (np.asarray(Image.open(tmp_path / name)) for name in ("direct.png", "piped.png"))
    assert a.shape == (2 + 2 * 18, 2 + 3 * 18, 3) and np.array_equal(a, b)


def test_sample_to_a_folder_and_by_class(prior_checkpoint, tmp_path):
    result = run_cli("sample", "-m", prior_checkpoint, "--class", "all", "-n", "2", "-o", tmp_path / "out", "--json")
    assert result.returncode == 0, result.stderr.decode()
    names = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert names == ["sample-0001-a.png", "sample-0002-a.png", "sample-0003-b.png", "sample-0004-b.png"]
    naive = run_cli("sample", "-m", prior_checkpoint, "--class", "b", "-n", "3", "--naive", "-o", tmp_path / "n.png")
    cached = run_cli("sample", "-m", prior_checkpoint, "--class", "1", "-n", "3", "-o", tmp_path / "c.png")
    assert naive.returncode == cached.returncode == 0
    assert (tmp_path / "n.png").read_bytes() == (tmp_path / "c.png").read_bytes()


def test_compressed_codes_decode_exactly(prior_checkpoint, image_folder, tmp_path):
    images = sorted(image_folder.rglob("*.png"))[:5]
    packed = run_cli("encode", *images, "-m", prior_checkpoint, "-o", tmp_path / "packed.vqc")
    squeezed = run_cli("encode", *images, "-m", prior_checkpoint, "--compress", "-o", tmp_path / "small.vqc")
    assert packed.returncode == squeezed.returncode == 0, squeezed.stderr.decode()
    records = read_codes((tmp_path / "small.vqc").read_bytes())
    assert all(r.coding == "range-prior" and r.codes is None for r in records)
    for name in ("packed", "small"):
        assert run_cli("decode", tmp_path / f"{name}.vqc", "-o", tmp_path / name).returncode == 0
    for image in images:
        a, b = (np.asarray(Image.open(tmp_path / d / f"{image.stem}.png")) for d in ("packed", "small"))
        assert np.array_equal(a, b)
    shown = run_cli("inspect", tmp_path / "small.vqc", "--json").stdout.decode().splitlines()
    assert '"coding": "range-prior"' in shown[0] and '"bits_per_code"' in shown[0]


def _tamper(record: bytes, at: float) -> bytes:
    """Flip a bit of a format-2 record's payload (the codes' CRC is what must notice)."""
    import struct

    start = 11 + struct.unpack("<H", record[5:7])[0]
    payload = bytearray(record[start:])
    payload[int(len(payload) * at)] ^= 0x10
    return record[:start] + bytes(payload)


@pytest.mark.parametrize("at", [0.0, 0.5, 0.99])
def test_corrupt_compressed_payload_is_one_clear_error(prior_checkpoint, image_folder, tmp_path, at):
    image = sorted(image_folder.rglob("*.png"))[0]
    good = run_cli("encode", image, "-m", prior_checkpoint, "--compress", "-o", "-").stdout
    (tmp_path / "bad.vqc").write_bytes(_tamper(good, at))
    result = run_cli("decode", tmp_path / "bad.vqc", "-o", tmp_path / "bad.png")
    if result.returncode == 0:  # a bit the coder never needed: the codes' CRC proves the codes unchanged
        clean = run_cli("decode", "-", "-o", "-", input=good).stdout
        assert (tmp_path / "bad.png").read_bytes() == clean
        return
    assert_one_line_error(result, "bad.vqc", "range-coded payload")
    assert not (tmp_path / "bad.png").exists()


@pytest.mark.parametrize("args,fragment", [
    (["--class", "dragon"], "unknown class"),
    (["-n", "0"], "-n"),
    (["-n", "20000"], "at most 10000"),
    (["--temperature", "0"], "positive"),
    (["--top-k", "0"], "1..32"),
    (["--top-k", "33"], "1..32"),
])
def test_bad_sample_options_are_usage_errors(prior_checkpoint, tmp_path, args, fragment):
    result = run_cli("sample", "-m", prior_checkpoint, *args, "-o", tmp_path / "x.png")
    assert result.returncode == 2 and fragment in result.stderr.decode() and "Traceback" not in result.stderr.decode()
    assert not (tmp_path / "x.png").exists()


def test_a_model_without_prior_cannot_sample_or_compress(tiny_checkpoint, image_folder, tmp_path):
    result = run_cli("sample", "-m", tiny_checkpoint, "-o", tmp_path / "x.png")
    assert_one_line_error(result, "no learned prior")
    image = sorted(image_folder.rglob("*.png"))[0]
    result = run_cli("encode", image, "-m", tiny_checkpoint, "--compress", "-o", tmp_path / "x.vqc")
    assert_one_line_error(result, "no learned prior")
    assert not (tmp_path / "x.png").exists() and not (tmp_path / "x.vqc").exists()
