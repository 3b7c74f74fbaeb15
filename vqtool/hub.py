"""Checkpoints: one safetensors file each, config and provenance in its metadata, never pickle.

Names resolve from the bundled ``models/`` folder (each file's SHA-256 pinned in models/registry.json
and checked on every load), then from a user folder (``--models-dir``, else ``$VQTOOL_HOME/models``),
where a registry.json is optional; anything else is taken as a path.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from .errors import VqtoolError

FORMAT = "vqtool-checkpoint-1"
BUNDLED_DIR = Path(__file__).resolve().parent.parent / "models"
REGISTRY = "registry.json"

# architecture name in a checkpoint -> "module:Class"; the class has a Config dataclass
ARCHITECTURES = {
    "vqvae-image": "vqtool.vqvae:VQVAE",
    "classifier-image": "vqtool.classifier:Classifier",
    "vqvae-speech": "vqtool.speech:SpeechVQVAE",
    "classifier-audio": "vqtool.audioclass:AudioClassifier",
    "fader": "vqtool.fader:FaderNetwork",
}


@dataclass
class Resolved:
    name: str
    path: Path
    pinned_sha256: str | None
    bundled: bool


def user_dir(models_dir: str | os.PathLike | None = None) -> Path:
    if models_dir:
        return Path(models_dir)
    home = os.environ.get("VQTOOL_HOME")
    return Path(home) / "models" if home else Path.home() / ".vqtool" / "models"


def _registry(folder: Path) -> dict:
    path = folder / REGISTRY
    if not path.is_file():
        return {}
    try:
        return json.loads(path.read_text())["models"]
    except (ValueError, KeyError) as exc:
        raise VqtoolError(f"unreadable model registry ({exc})", str(path)) from None


def _folder_models(folder: Path, bundled: bool) -> dict[str, Resolved]:
    found = {}
    registry = _registry(folder)
    if folder.is_dir() and not bundled:
        for path in sorted(folder.glob("*.safetensors")):
            found[path.stem] = Resolved(path.stem, path, None, False)
    for name, entry in registry.items():
        found[name] = Resolved(name, folder / entry["file"], entry.get("sha256"), bundled)
    return found


def catalogue(models_dir=None) -> dict[str, Resolved]:
    """Every model a name can reach; bundled names win over user ones."""
    return {**_folder_models(user_dir(models_dir), False), **_folder_models(BUNDLED_DIR, True)}


def available_models(models_dir=None) -> list[str]:
    return sorted(catalogue(models_dir))


def resolve(name_or_path: str, models_dir=None) -> Resolved:
    models = catalogue(models_dir)
    if name_or_path in models:
        return models[name_or_path]
    path = Path(name_or_path)
    if path.suffix == ".safetensors" or path.is_file():
        if not path.is_file():
            raise VqtoolError("no such checkpoint file", name_or_path)
        return Resolved(str(path.resolve()), path, None, False)  # a path names itself in .vqc headers
    known = ", ".join(sorted(models)) or "none"
    raise VqtoolError(f"unknown model (available: {known})", name_or_path)


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_metadata(path: Path) -> dict:
    """The checkpoint's metadata with JSON fields decoded; refuses files that are not vqtool's."""
    try:
        with safe_open(str(path), framework="pt") as handle:
            raw = handle.metadata() or {}
    except Exception as exc:  # safetensors raises its own error types for bad headers
        raise VqtoolError(f"not a safetensors checkpoint ({exc})", str(path)) from None
    if raw.get("format") != FORMAT:
        raise VqtoolError(f"not a vqtool checkpoint (format {raw.get('format')!r})", str(path))
    meta = dict(raw)
    for key in ("config", "provenance", "metrics", "extra"):
        meta[key] = json.loads(raw.get(key, "{}"))
    return meta


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise VqtoolError("--device cuda was asked for, but no CUDA device is available")
    return device


def architecture_class(name: str):
    if name not in ARCHITECTURES:
        raise VqtoolError(f"unknown architecture '{name}' (this vqtool knows {', '.join(ARCHITECTURES)})")
    module, cls = ARCHITECTURES[name].split(":")
    return getattr(importlib.import_module(module), cls)


def load(name_or_path: str, device: str = "auto", models_dir=None, expect: str | None = None) -> torch.nn.Module:
    """A ready model in eval mode, with `.name`, `.sha256` and `.metadata` attached.

    `expect` names the architecture a caller needs; another one is a clear error, not an AttributeError later.
    """
    resolved = resolve(name_or_path, models_dir)
    if not resolved.path.is_file():
        raise VqtoolError("checkpoint file is missing", str(resolved.path))
    sha = sha256_file(resolved.path)
    if resolved.pinned_sha256 and sha != resolved.pinned_sha256:
        raise VqtoolError(f"checkpoint SHA-256 {sha[:12]}… does not match the pinned "
                          f"{resolved.pinned_sha256[:12]}… (file altered?)", str(resolved.path))
    meta = read_metadata(resolved.path)
    if expect and meta["architecture"] != expect:
        raise VqtoolError(f"is a {meta['architecture']} checkpoint; this needs a {expect} one", name_or_path)
    cls = architecture_class(meta["architecture"])
    model = cls(cls.Config(**meta["config"]))
    state = {}
    with safe_open(str(resolved.path), framework="pt") as handle:
        for key in handle.keys():
            state[key] = handle.get_tensor(key)
    model.load_state_dict(state)
    model.name, model.sha256, model.metadata, model.path = resolved.name, sha, meta, resolved.path
    return model.eval().to(resolve_device(device))


def save_checkpoint(path: Path, model: torch.nn.Module, architecture: str, config, name: str,
                    provenance: dict, metrics: dict, extra: dict | None = None) -> str:
    """Write an inference checkpoint atomically; returns its SHA-256."""
    from . import __version__
    from .media import atomic_path

    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    metadata = {
        "format": FORMAT,
        "name": name,
        "architecture": architecture,
        "config": json.dumps(asdict(config) if hasattr(config, "__dataclass_fields__") else config),
        "vqtool_version": __version__,
        "provenance": json.dumps(provenance),
        "metrics": json.dumps(metrics),
        "extra": json.dumps(extra or {}),
    }
    with atomic_path(Path(path)) as tmp:
        save_file(state, str(tmp), metadata=metadata)
    return sha256_file(Path(path))


def pin(name: str, path: Path, description: str, folder: Path = BUNDLED_DIR) -> None:
    """Record a checkpoint's SHA-256 in a folder's registry (done once, when a model ships)."""
    registry_path = folder / REGISTRY
    data = json.loads(registry_path.read_text()) if registry_path.is_file() else {"models": {}}
    data["models"][name] = {"file": Path(path).name, "sha256": sha256_file(Path(path)),
                            "card": f"{name}.md", "description": description}
    registry_path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")


def describe(name_or_path: str, models_dir=None) -> dict:
    """What `vqtool models info` shows: registry entry, metadata, card path; no weights loaded."""
    resolved = resolve(name_or_path, models_dir)
    meta = read_metadata(resolved.path)
    card = resolved.path.with_suffix(".md")
    return {
        "name": resolved.name,
        "path": str(resolved.path),
        "bundled": resolved.bundled,
        "sha256_pinned": resolved.pinned_sha256,
        "size_bytes": resolved.path.stat().st_size,
        "architecture": meta["architecture"],
        "vqtool_version": meta.get("vqtool_version"),
        "config": meta["config"],
        "provenance": meta["provenance"],
        "metrics": meta["metrics"],
        "card": str(card) if card.is_file() else None,
    }
