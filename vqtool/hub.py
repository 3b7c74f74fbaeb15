"""Checkpoints: one safetensors file each, config and provenance in its metadata, never pickle.

Names resolve from the bundled ``models/`` folder (each file's SHA-256 pinned in models/registry.json
and checked on every load), then from a user folder (``--models-dir``, else ``$VQTOOL_HOME/models``),
where a registry.json is optional; anything else is taken as a path.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import sys
import types
import typing
from dataclasses import asdict, dataclass
from pathlib import Path

from typing import TYPE_CHECKING

from safetensors import safe_open

from . import registry, strictjson
from .errors import VqtoolError

if TYPE_CHECKING:  # torch is imported where weights are handled: names and metadata need none of it
    import torch

FORMAT = "vqtool-checkpoint-1"
BUNDLED_DIR = (Path(__file__).parent / "models").resolve()  # the repository's models/, or a wheel's copy
REGISTRY = "registry.json"

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


_warned_registries: set[str] = set()


def _registry(folder: Path, bundled: bool) -> dict:
    """name -> entry. A malformed registry in the user's folder is named in a warning and ignored
    (its checkpoints still resolve by file name), so it cannot break the bundled models."""
    path = folder / REGISTRY
    if not path.is_file():
        return {}
    try:
        models = json.loads(path.read_text())["models"]
        if not isinstance(models, dict):
            raise ValueError("'models' is not an object")
        for name, entry in models.items():
            if not (isinstance(entry, dict) and isinstance(entry.get("file"), str)
                    and Path(entry["file"]).name == entry["file"] and entry["file"] not in ("", ".", "..")
                    and isinstance(entry.get("sha256", ""), str)):
                raise ValueError(f"entry '{name}' needs a plain 'file' name in this folder")
        return models
    except (OSError, ValueError, KeyError, TypeError) as exc:
        if bundled:
            raise VqtoolError(f"unreadable model registry ({exc})", str(path)) from None
        if str(path) not in _warned_registries:
            _warned_registries.add(str(path))
            print(f"vqtool: warning: {path}: ignored, unreadable model registry ({exc})", file=sys.stderr)
        return {}


def _folder_models(folder: Path, bundled: bool) -> dict[str, Resolved]:
    found = {}
    entries = _registry(folder, bundled)
    if folder.is_dir() and not bundled:
        for path in sorted(folder.glob("*.safetensors")):
            found[path.stem] = Resolved(path.stem, path, None, False)
    for name, entry in entries.items():
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
        with safe_open(str(path), framework="numpy") as handle:  # the header only: no tensor is read
            raw = handle.metadata() or {}
    except Exception as exc:  # safetensors raises its own error types for bad headers
        raise VqtoolError(f"not a safetensors checkpoint ({exc})", str(path)) from None
    if raw.get("format") != FORMAT:
        raise VqtoolError(f"not a vqtool checkpoint (format {raw.get('format')!r})", str(path))
    meta = dict(raw)
    for key in ("config", "provenance", "metrics", "extra"):
        try:
            meta[key] = strictjson.loads(raw.get(key, "{}"))
        except ValueError as exc:
            raise VqtoolError(f"corrupt checkpoint metadata ({key}: {exc})", str(path)) from None
        if not isinstance(meta[key], dict):
            raise VqtoolError(f"corrupt checkpoint metadata ({key} is not an object)", str(path))
    if not isinstance(meta.get("architecture"), str):
        raise VqtoolError("corrupt checkpoint metadata (no architecture)", str(path))
    return meta


MAX_CONFIG_INT = 1 << 16  # sizes, counts and layer numbers in a config: a bound on what a network may claim
MAX_CONFIG_LIST = 1 << 18  # a vocabulary is the longest list a config holds


def bounded(default, low: int, high: int):
    """A config field a checkpoint may only set within [low, high] (a list: its length): layer counts, where
    a corrupt value would spend minutes building a network the shape check then refuses."""
    if isinstance(default, list):
        return dataclasses.field(default_factory=lambda: list(default), metadata={"bounds": (low, high)})
    return dataclasses.field(default=default, metadata={"bounds": (low, high)})


def check_config(cls, config: dict, source: str):
    """The architecture's Config from checkpoint metadata: unknown keys, wrong types and absurd sizes
    refused before any network is built."""
    hints = typing.get_type_hints(cls.Config)
    fields = {f.name: f for f in dataclasses.fields(cls.Config)}
    unknown = sorted(set(config) - set(fields))
    if unknown:
        raise VqtoolError(f"corrupt checkpoint config (unknown keys: {', '.join(unknown)})", source)
    for key, value in config.items():
        if not _conforms(value, hints[key]):
            raise VqtoolError(f"corrupt checkpoint config ({key} = {str(value)[:60]} is not {hints[key]})", source)
        low, high = fields[key].metadata.get("bounds", (-math.inf, math.inf))
        size = len(value) if isinstance(value, list) else value
        if isinstance(size, int) and not low <= size <= high:
            what = f"{key} has {size} entries" if isinstance(value, list) else f"{key} = {value}"
            raise VqtoolError(f"corrupt checkpoint config ({what}, outside {low}..{high})", source)
    return cls.Config(**config)


def _conforms(value, hint) -> bool:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return any(_conforms(value, a) for a in args)
    if hint is type(None):
        return value is None
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool) and abs(value) <= MAX_CONFIG_INT
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if hint is str:
        return isinstance(value, str)
    if origin in (list, tuple) or hint in (list, tuple):
        return (isinstance(value, list) and len(value) <= MAX_CONFIG_LIST
                and all(_conforms(v, args[0]) for v in value) if args else isinstance(value, list))
    if origin is dict or hint is dict:
        return isinstance(value, dict)
    return True


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    import torch

    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise VqtoolError("--device cuda was asked for, but no CUDA device is available")
    return device


def load(name_or_path: str, device: str = "auto", models_dir=None,
         expect: str | tuple[str, ...] | None = None) -> torch.nn.Module:
    """A ready model in eval mode, with `.name`, `.sha256` and `.metadata` attached.

    `expect` names the architecture (or architectures) a caller needs; another one is a clear error, not an
    AttributeError later.
    """
    resolved = resolve(name_or_path, models_dir)
    if not resolved.path.is_file():
        raise VqtoolError("checkpoint file is missing", str(resolved.path))
    sha = sha256_file(resolved.path)
    if resolved.pinned_sha256 and sha != resolved.pinned_sha256:
        raise VqtoolError(f"checkpoint SHA-256 {sha[:12]}… does not match the pinned "
                          f"{resolved.pinned_sha256[:12]}… (file altered?)", str(resolved.path))
    meta = read_metadata(resolved.path)
    allowed = (expect,) if isinstance(expect, str) else tuple(expect or ())
    if allowed and meta["architecture"] not in allowed:
        raise VqtoolError(f"is a {meta['architecture']} checkpoint; this needs a {' or '.join(allowed)} one",
                          name_or_path)
    cls = registry.architecture_class(meta["architecture"])
    config = check_config(cls, meta["config"], name_or_path)
    with safe_open(str(resolved.path), framework="pt") as handle:
        shapes = {key: tuple(handle.get_slice(key).get_shape()) for key in handle.keys()}
        if sha != resolved.pinned_sha256:  # a pinned file is one we shipped: checked when it was made
            _check_shapes(cls, config, shapes, name_or_path)  # before the real network is allocated
        state = {key: handle.get_tensor(key) for key in handle.keys()}
    model = cls(config)
    model.load_state_dict(state)
    model.name, model.sha256, model.metadata, model.path = resolved.name, sha, meta, resolved.path
    return model.eval().to(resolve_device(device))


def _check_shapes(cls, config, shapes: dict, source: str) -> None:
    """Build the network on the meta device (no memory) and compare its tensors with the file's, so a
    config that claims a bigger network than the file holds is refused before anything is allocated."""
    import warnings

    import torch

    try:
        with torch.device("meta"), warnings.catch_warnings():
            warnings.simplefilter("error")  # e.g. a layer of zero channels: a corrupt config, not a warning
            expected = {k: tuple(v.shape) for k, v in cls(config).state_dict().items()}
    except (TypeError, ValueError, KeyError, IndexError, RuntimeError, ZeroDivisionError, Warning,
            VqtoolError) as exc:
        raise VqtoolError(f"corrupt checkpoint config (it builds no network: {exc})", source) from None
    if expected != shapes:
        missing = sorted(set(expected) - set(shapes)) or sorted(k for k in expected if expected[k] != shapes.get(k))
        raise VqtoolError(f"checkpoint tensors do not match its config ({len(expected)} expected, "
                          f"{len(shapes)} in the file; first difference: {(missing or sorted(shapes))[0]})", source)


def save_checkpoint(path: Path, model: torch.nn.Module, architecture: str, config, name: str,
                    provenance: dict, metrics: dict, extra: dict | None = None, dtype=None) -> str:
    """Write an inference checkpoint atomically; returns its SHA-256. `dtype` (e.g. torch.float16) stores
    the floating-point tensors at that precision (loading casts them back to the network's)."""
    from safetensors.torch import save_file

    from . import __version__
    from .media import atomic_path

    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    if dtype is not None:
        state = {k: v.to(dtype) if v.is_floating_point() else v for k, v in state.items()}
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


def describe(name_or_path: str | Resolved, models_dir=None) -> dict:
    """What `vqtool models info` shows: registry entry, metadata, card path; no weights loaded.
    Takes a name, a path, or an entry of `catalogue()` (which need not be looked up again)."""
    resolved = name_or_path if isinstance(name_or_path, Resolved) else resolve(name_or_path, models_dir)
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
