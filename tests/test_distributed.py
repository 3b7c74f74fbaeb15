"""Training under torchrun with 2 CPU processes (gloo)."""
import os
import subprocess
import sys

import torch
from safetensors.torch import load_file

from vqtool.hub import read_metadata
from vqtool.quantize import VectorQuantizer

from conftest import ROOT


def torchrun(*args, timeout=240):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2",
                           "--master-port", "29517", *map(str, args)], capture_output=True, env=env,
                          timeout=timeout, cwd=ROOT)


def test_ema_statistics_are_all_reduced(tmp_path):
    result = torchrun(ROOT / "tests" / "dist_worker.py", tmp_path / "rank0.safetensors")
    assert result.returncode == 0, result.stderr.decode()[-2000:]
    distributed = load_file(tmp_path / "rank0.safetensors")
    torch.manual_seed(0)
    single = VectorQuantizer(16, 4, decay=0.9)
    single.initialised.fill_(True)
    both = torch.randn(2, 4, 6, 6, generator=torch.Generator().manual_seed(1)) * 2
    single.train()(both)  # one process seeing both ranks' data
    for key in ("cluster_size", "embed_sum"):
        live = single.cluster_size >= single.restart_below
        assert torch.allclose(distributed[key][live], single.state_dict()[key][live], atol=1e-5), key


def test_train_command_runs_under_torchrun(tmp_path, image_folder):
    result = torchrun("-m", "vqtool", "train", "vqvae", "--data", image_folder, "--name", "ddp", "--out", tmp_path,
                      "--steps", "6", "--batch-size", "8", "--hidden", "8", "--res-hidden", "4",
                      "--embedding-dim", "4", "--codes", "16", "--quiet")
    assert result.returncode == 0, result.stderr.decode()[-2000:]
    meta = read_metadata(tmp_path / "ddp.safetensors")
    assert meta["provenance"]["world_size"] == 2 and meta["provenance"]["steps"] == 6


def test_prior_trains_under_torchrun_with_the_codec_frozen(tmp_path, image_folder, tiny_checkpoint):
    result = torchrun("-m", "vqtool", "train", "prior", "--vqvae", tiny_checkpoint, "--data", image_folder,
                      "--name", "ddp", "--out", tmp_path, "--steps", "6", "--batch-size", "8", "--hidden", "8",
                      "--layers", "2", "--quiet")
    assert result.returncode == 0, result.stderr.decode()[-2000:]
    meta = read_metadata(tmp_path / "ddp.safetensors")
    assert meta["provenance"]["world_size"] == 2 and meta["config"]["prior"]["layers"] == 2
    weights = load_file(tmp_path / "ddp.safetensors")
    assert torch.equal(weights["encoder.0.weight"], load_file(tiny_checkpoint)["encoder.0.weight"])  # codec frozen


def test_speech_trains_under_torchrun(tmp_path, voice_folder, tiny_speech):
    encoder = tiny_speech.parent.parent / "spk" / "spk.safetensors"
    result = torchrun("-m", "vqtool", "train", "speech", "--data", voice_folder, "--speaker-encoder", encoder,
                      "--name", "ddp", "--out", tmp_path, "--steps", "4", "--batch-size", "4", "--hidden", "16",
                      "--codes", "16", "--embedding-dim", "4", "--quiet")
    assert result.returncode == 0, result.stderr.decode()[-2000:]
    meta = read_metadata(tmp_path / "ddp.safetensors")
    assert meta["provenance"]["world_size"] == 2 and meta["architecture"] == "vqvae-speech"
    weights = load_file(tmp_path / "ddp.safetensors")
    assert torch.equal(weights["speaker_encoder.project.weight"], load_file(encoder)["project.weight"])  # frozen


def test_fader_trains_under_torchrun(tmp_path, face_folder):
    result = torchrun("-m", "vqtool", "train", "fader", "--data", face_folder, "--attributes", "smile", "--name", "ddp",
                      "--out", tmp_path, "--steps", "4", "--batch-size", "8", "--image-size", "32",
                      "--widths", "4,8", "--ramp-steps", "2", "--quiet")
    assert result.returncode == 0, result.stderr.decode()[-2000:]
    meta = read_metadata(tmp_path / "ddp.safetensors")
    assert meta["provenance"]["world_size"] == 2 and meta["architecture"] == "fader"
    assert int(load_file(tmp_path / "ddp.safetensors")["steps_trained"]) == 4  # the ramp counts optimizer steps


def test_photo_training_runs_under_torchrun(tmp_path, shared_data):
    """The photo model's context model learns inside forward, so DDP syncs every parameter."""
    result = torchrun("-m", "vqtool", "train", "photos", "--data", shared_data / "flickr8k-1k" / "images",
                      "--name", "ddp-photos", "--out", tmp_path, "--limit", "4", "--steps", "4", "--batch-size", "8",
                      "--crop", "32", "--widths", "8,8,8", "--stages", "2", "--codes", "16", "--embedding-dim", "4",
                      "--context-hidden", "4", "--eval-limit", "0", "--calibration", "1", "--quiet")
    assert result.returncode == 0, result.stderr.decode()[-2000:]
    assert read_metadata(tmp_path / "ddp-photos.safetensors")["provenance"]["world_size"] == 2
