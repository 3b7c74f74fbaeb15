"""The training loop: determinism under a seed, resume, time limits, provenance in the checkpoint."""
import json

import pytest
import torch
from safetensors import safe_open

from vqtool.data.images import load_images
from vqtool.hub import load, read_metadata
from vqtool.training import TrainOptions, fit
from vqtool.families.image.model import VQVAEConfig
from vqtool.families.image.task import VQVAETask


def tiny_task(data):
    config = VQVAEConfig(hidden=8, res_hidden=4, embedding_dim=4, num_codes=16)
    return VQVAETask(config, data, None, data_info={"train_data": "blobs"})


def weights(path):
    with safe_open(str(path), framework="pt") as handle:
        return {k: handle.get_tensor(k) for k in handle.keys()}


def test_training_lowers_loss_and_records_provenance(tiny_checkpoint, image_folder):
    meta = read_metadata(tiny_checkpoint)
    log = [json.loads(line) for line in (tiny_checkpoint.parent / "metrics.jsonl").read_text().splitlines()]
    assert log[-1]["mse"] < 0.5 * log[0]["mse"]
    assert meta["architecture"] == "vqvae-image" and meta["config"]["num_codes"] == 32
    prov = meta["provenance"]
    assert prov["steps"] == 800 and prov["seed"] == 0 and prov["train_items"] == 96
    assert prov["command"].startswith("vqtool train vqvae --data") and len(prov["train_sha256"]) == 64
    assert meta["metrics"]["psnr_db"] > 16 and meta["metrics"]["eval_images"] == 96
    assert f"| psnr_db | {meta['metrics']['psnr_db']} |" in tiny_checkpoint.with_suffix(".md").read_text()


def test_same_seed_same_weights(tmp_path, image_folder):
    data = load_images(image_folder)
    paths = [fit(tiny_task(data), TrainOptions(tmp_path / str(i), "t", steps=5, batch_size=8, quiet=True))
             for i in range(2)]
    first, second = weights(paths[0]), weights(paths[1])
    assert all(torch.equal(first[k], second[k]) for k in first)


def test_resume_continues_from_saved_state(tmp_path, image_folder):
    data = load_images(image_folder)
    fit(tiny_task(data), TrainOptions(tmp_path, "t", steps=4, batch_size=8, quiet=True))
    resumed = fit(tiny_task(data), TrainOptions(tmp_path, "t", steps=8, batch_size=8, quiet=True, resume=True))
    provenance = read_metadata(resumed)["provenance"]
    assert provenance["steps"] == 8 and [run["from_step"] for run in provenance["resumed"]] == [0, 4]
    steps = [json.loads(line)["step"] for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert steps == [4, 8]


def test_time_limit_stops_early_and_still_exports(tmp_path, image_folder):
    data = load_images(image_folder)
    path = fit(tiny_task(data), TrainOptions(tmp_path, "t", steps=10**6, batch_size=8, quiet=True, time_limit=1.0))
    assert 0 < read_metadata(path)["provenance"]["steps"] < 10**6


def test_refuses_test_split(tmp_path, image_folder):
    from conftest import run_cli

    (tmp_path / "test.zip").write_bytes(b"")
    result = run_cli("train", "vqvae", "--data", tmp_path / "test.zip")
    assert result.returncode == 1 and b"test split" in result.stderr


@pytest.mark.parametrize("name, refused", [("test.zip", True), ("cifar-test", True), ("TEST_images.zip", True),
                                           ("train.zip", False), ("contest.zip", False), ("latest", False)])
def test_test_split_names(name, refused):
    from vqtool.data import refuse_test_split
    from vqtool.errors import VqtoolError

    if refused:
        with pytest.raises(VqtoolError, match="test split"):
            refuse_test_split(name)
    else:
        refuse_test_split(name)


def test_library_api(tiny_checkpoint):
    model = load(str(tiny_checkpoint), device="cpu")
    images = torch.rand(2, 3, 10, 14)
    codes = model.encode(images)
    assert codes.shape == (2, 3, 4) and codes.dtype == torch.int64
    assert model.decode(codes, (10, 14)).shape == (2, 3, 10, 14)


def test_large_images_are_tiled_like_whole_passes(tiny_checkpoint):
    from vqtool.families.image import model as vqvae

    model = load(str(tiny_checkpoint), device="cpu")
    image = torch.rand(1, 3, 96, 72)
    whole_codes = model.encode(image)
    whole_pixels = model.decode(whole_codes)
    old = vqvae.TILE_CODES
    try:
        vqvae.TILE_CODES = 4  # force 6 x 5 tiles
        assert (model.encode(image) == whole_codes).float().mean() > 0.99
        assert torch.allclose(model.decode(whole_codes), whole_pixels, atol=1e-4)
    finally:
        vqvae.TILE_CODES = old


def test_a_batch_larger_than_the_data_is_refused(tmp_path, image_folder):
    """It used to wait forever for an epoch with a whole batch in it."""
    from vqtool.errors import VqtoolError

    data = load_images(image_folder, limit=6)
    with pytest.raises(VqtoolError, match="--batch-size 8 does not fit 6 training items"):
        fit(tiny_task(data), TrainOptions(tmp_path, "t", steps=5, batch_size=8, quiet=True))
