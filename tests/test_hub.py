"""Checkpoint resolution, pinning and refusal of anything that is not a vqtool safetensors file."""
import json
import shutil

import pytest

from vqtool import hub
from vqtool.errors import VqtoolError

from conftest import run_cli


@pytest.fixture
def user_folder(tmp_path, tiny_checkpoint):
    folder = tmp_path / "models"
    folder.mkdir()
    shutil.copy(tiny_checkpoint, folder / "mine.safetensors")
    return folder


def test_user_folder_by_name_and_env(user_folder, monkeypatch):
    assert "mine" in hub.available_models(user_folder)
    assert hub.load("mine", "cpu", user_folder).name == "mine"
    monkeypatch.setenv("VQTOOL_HOME", str(user_folder.parent))
    assert hub.load("mine", "cpu").name == "mine"


def test_pinned_hash_is_checked(user_folder):
    hub.pin("mine", user_folder / "mine.safetensors", "test", folder=user_folder)
    assert hub.load("mine", "cpu", user_folder).sha256 == hub.sha256_file(user_folder / "mine.safetensors")
    data = bytearray((user_folder / "mine.safetensors").read_bytes())
    data[-10] ^= 0xFF  # flip a bit inside the weights
    (user_folder / "mine.safetensors").write_bytes(bytes(data))
    with pytest.raises(VqtoolError, match="does not match the pinned"):
        hub.load("mine", "cpu", user_folder)


def test_pickles_and_foreign_files_are_refused(tmp_path):
    import pickle

    path = tmp_path / "evil.safetensors"
    path.write_bytes(pickle.dumps({"a": 1}))
    with pytest.raises(VqtoolError, match="not a safetensors checkpoint"):
        hub.load(str(path), "cpu")
    from safetensors.torch import save_file
    import torch

    save_file({"w": torch.zeros(1)}, str(tmp_path / "plain.safetensors"), metadata={"format": "other"})
    with pytest.raises(VqtoolError, match="not a vqtool checkpoint"):
        hub.load(str(tmp_path / "plain.safetensors"), "cpu")


def test_unknown_device():
    import torch

    if not torch.cuda.is_available():
        with pytest.raises(VqtoolError, match="no CUDA device"):
            hub.resolve_device("cuda")
    assert hub.resolve_device("cpu").type == "cpu"


def test_models_commands(user_folder):
    listed = [json.loads(line) for line in run_cli("models", "list", "--json", "--models-dir", user_folder).stdout.splitlines()]
    assert any(m["name"] == "mine" and m["architecture"] == "vqvae-image" for m in listed)
    info = json.loads(run_cli("models", "info", "mine", "--json", "--models-dir", user_folder).stdout)
    assert info["metrics"]["psnr_db"] > 0 and info["provenance"]["steps"] == 800
    result = run_cli("models", "info", "nope")
    assert result.returncode == 1 and b"unknown model" in result.stderr


def test_bundled_registry_is_pinned_and_small():
    registry = json.loads((hub.BUNDLED_DIR / "registry.json").read_text())["models"]
    assert "cifar10" in registry
    total = 0
    for name, entry in registry.items():
        path = hub.BUNDLED_DIR / entry["file"]
        assert hub.sha256_file(path) == entry["sha256"], name
        assert path.stat().st_size <= 20e6 and (hub.BUNDLED_DIR / entry["card"]).is_file()
        total += path.stat().st_size
    assert total <= 200e6  # models/ in all (the project limit); each checkpoint at most 20 MB here, 25 MB allowed
