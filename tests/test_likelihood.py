"""The decoder's discrete likelihood (PixelCNN++ mixture) and `vqtool train decoder`: a distribution that
sums to one, a mean that is its expectation, a retrained decoder that keeps every code, and code files
of a replaced checkpoint that still decode with it."""

import itertools
import json
import shutil

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from vqtool import load
from vqtool.codes import read_codes
from vqtool.hub import sha256_file
from vqtool.families.image.likelihood import mixture_bits, mixture_log_prob, mixture_mean, parameter_channels

from conftest import run_cli


def random_parameters(seed: int, mixtures: int, channels: int, log_scale: float) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    params = torch.randn(1, parameter_channels(mixtures, channels), 1, 1, generator=generator, dtype=torch.float64)
    scales = slice(mixtures * (1 + channels), mixtures * (1 + 2 * channels))
    params[:, mixtures:scales.start] *= 0.6  # means mostly inside [-1, 1], some near or past the ends
    params[:, scales] = params[:, scales] * 0.5 + log_scale
    return params


def every_value(channels: int) -> torch.Tensor:
    return torch.tensor(list(itertools.product(range(256), repeat=channels))).view(-1, channels, 1, 1)


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 10_000), mixtures=st.integers(1, 4), channels=st.integers(1, 2),
       log_scale=st.floats(-6.0, 0.5))
def test_the_likelihood_of_every_pixel_value_sums_to_one(seed, mixtures, channels, log_scale):
    params = random_parameters(seed, mixtures, channels, log_scale)
    values = every_value(channels)
    log_p = mixture_log_prob(params.expand(len(values), -1, -1, -1), values)
    assert abs(float(torch.logsumexp(log_p, 0).exp()) - 1) < 1e-9


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 10_000), mixtures=st.integers(1, 3), log_scale=st.floats(-5.0, -3.2))
def test_the_decoded_image_is_the_mixtures_expected_value(seed, mixtures, log_scale):
    """Two channels, the second shifted by the first: the mean `decode` returns is the expectation
    over all 65,536 value pairs (up to the tails clipped at 0 and 255)."""
    params = random_parameters(seed, mixtures, 2, log_scale)
    params[:, mixtures:mixtures * 3] = params[:, mixtures:mixtures * 3].clamp(-0.4, 0.4)  # shifted means stay inside
    values = every_value(2)
    p = mixture_log_prob(params.expand(len(values), -1, -1, -1), values).exp()
    expected = (p[:, None] * values.view(-1, 2).double()).sum(0) / 255
    assert torch.allclose(mixture_mean(params, 2).view(2), expected, atol=2e-3)


def test_float32_training_loss_matches_the_float64_bits():
    params = random_parameters(3, 5, 3, -3.0).expand(4, -1, 6, 6).contiguous()
    pixels = torch.randint(0, 256, (4, 3, 6, 6), generator=torch.Generator().manual_seed(0))
    pixels[0, :, 0, 0], pixels[1, :, 0, 0] = 0, 255  # both open tails
    bits = mixture_bits(params, pixels)
    nats32 = -mixture_log_prob(params.float(), pixels).double()
    assert torch.allclose(nats32 / np.log(2), bits, rtol=1e-4)


@pytest.fixture(scope="module")
def retrained(tmp_path_factory, prior_checkpoint, image_folder):
    """The tiny prior's VQ-VAE with its decoder retrained by `vqtool train decoder`."""
    out = tmp_path_factory.mktemp("decoder")
    result = run_cli("train", "decoder", "--vqvae", prior_checkpoint, "--data", image_folder, "--eval-data",
                     image_folder, "--eval-limit", "24", "--validation", "16", "--mixtures", "2", "--name", "tinydlm",
                     "--out", out, "--steps", "120", "--batch-size", "32", "--lr", "3e-3", "--quiet")
    assert result.returncode == 0, result.stderr.decode()
    return out / "tinydlm.safetensors"


def test_retrained_decoder_keeps_codes_and_prior_and_learns_the_pixels(retrained, prior_checkpoint, image_folder):
    old, new = load(str(prior_checkpoint), device="cpu"), load(str(retrained), device="cpu")
    before, after = old.state_dict(), new.state_dict()
    kept = [k for k in before if not k.startswith("decoder.")]
    assert all(torch.equal(before[k], after[k]) for k in kept)
    images = np.stack([np.asarray(Image.open(p).convert("RGB")) for p in sorted(image_folder.rglob("*.png"))[:16]])
    assert torch.equal(old.encode(images), new.encode(images))
    metrics = new.metadata["metrics"]
    assert metrics["prior_bits_per_code"] == old.metadata["metrics"]["prior_bits_per_code"]
    # the decoder's own likelihood beats the fitted single logistic of the squared-error decoder
    assert metrics["decoder_bits_per_dim"] < old.metadata["metrics"]["decoder_bits_per_dim"]
    assert new.metadata["provenance"]["decoder_of"]["sha256"] == old.sha256
    validation = new.metadata["metrics"]["training"]
    assert validation["select_by"] == "negative_bits_per_dim" and len(validation["curve"]) >= 1
    restored = new.to_uint8(new.decode(new.encode(images)))
    assert ((restored.astype(float) - images) ** 2).mean() < ((images.astype(float) - images.mean()) ** 2).mean() / 2


def test_code_files_of_a_replaced_checkpoint_decode_with_it(retrained, prior_checkpoint, tmp_path):
    """A name moved to a new checkpoint: its old code files go to the installed checkpoint with their
    SHA-256 (here `tiny-v1`), bit for bit as before; `-m` still insists on the model it is given."""
    image = tmp_path / "blob.png"
    Image.fromarray(np.full((16, 16, 3), 120, np.uint8)).save(image)
    models = tmp_path / "models"
    models.mkdir()
    shutil.copy(prior_checkpoint, models / "tiny-old.safetensors")
    registry = {"tiny": {"file": "tiny-old.safetensors", "sha256": sha256_file(prior_checkpoint)}}
    (models / "registry.json").write_text(json.dumps({"models": registry}))
    for compressed in ([], ["--compress"]):
        made = run_cli("encode", image, "-m", "tiny", "--models-dir", models, *compressed, "-o", tmp_path / "old.vqc")
        assert made.returncode == 0, made.stderr.decode()
        before = run_cli("decode", tmp_path / "old.vqc", "--models-dir", models, "-o", tmp_path / "before.png")
        assert before.returncode == 0, before.stderr.decode()
        # the name moves to the retrained checkpoint, the old one stays installed as tiny-v1
        shutil.copy(retrained, models / "tiny-new.safetensors")
        moved = {"tiny": {"file": "tiny-new.safetensors", "sha256": sha256_file(retrained)},
                 "tiny-v1": registry["tiny"]}
        (models / "registry.json").write_text(json.dumps({"models": moved}))
        after = run_cli("decode", tmp_path / "old.vqc", "--models-dir", models, "-o", tmp_path / "after.png")
        assert after.returncode == 0, after.stderr.decode()
        assert (tmp_path / "after.png").read_bytes() == (tmp_path / "before.png").read_bytes()
        forced = run_cli("decode", tmp_path / "old.vqc", "-m", "tiny", "--models-dir", models,
                         "-o", tmp_path / "forced.png")
        assert forced.returncode == 1 and b"codes were made by checkpoint" in forced.stderr
        assert not (tmp_path / "forced.png").exists()
        new = run_cli("encode", image, "-m", "tiny", "--models-dir", models, "-o", "-")
        assert read_codes(new.stdout)[0].made_by(sha256_file(retrained))
        (models / "registry.json").write_text(json.dumps({"models": registry}))
        for name in ("before.png", "after.png"):
            (tmp_path / name).unlink()


def test_code_files_decode_with_a_remeasured_copy_of_their_checkpoint(tiny_checkpoint, image_folder, tmp_path):
    """`--remeasure` writes new metadata (a new SHA-256) around the same weights: codes made before still
    decode with it, by name in the header or with -m, to the same pixels."""
    result = run_cli("train", "vqvae", "--data", image_folder, "--eval-data", image_folder, "--name", "again",
                     "--remeasure", tiny_checkpoint, "--out", tmp_path, "--quiet")
    assert result.returncode == 0, result.stderr.decode()
    again = tmp_path / "again.safetensors"
    assert sha256_file(again) != sha256_file(tiny_checkpoint)
    image = next(image_folder.glob("a/*.png"))
    assert run_cli("encode", image, "-m", tiny_checkpoint, "-o", tmp_path / "x.vqc").returncode == 0
    for model, out in ((tiny_checkpoint, "before.png"), (again, "after.png")):
        result = run_cli("decode", tmp_path / "x.vqc", "-m", model, "-o", tmp_path / out)
        assert result.returncode == 0, result.stderr.decode()
    assert (tmp_path / "before.png").read_bytes() == (tmp_path / "after.png").read_bytes()
