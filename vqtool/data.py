"""Training and evaluation data: a folder or a zip of images, labelled by their parent folder.

Small image sets (CIFAR-10 is 150 MB as uint8) are decoded once into one tensor, which makes every
later epoch free of JPEG decoding, the bottleneck on two cores.
"""

from __future__ import annotations

import hashlib
import re
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from .errors import VqtoolError
from .hub import sha256_file
from .media import IMAGE_SUFFIXES, decode_image, image_to_array


@dataclass
class ImageSet:
    images: torch.Tensor  # (N, H, W, C) uint8
    labels: torch.Tensor  # (N,) int64, index into classes
    classes: list[str]
    source: str

    def __len__(self) -> int:
        return self.images.shape[0]


def _fit(image: Image.Image, size: int | None) -> Image.Image:
    """Centre square crop and resize to size x size (no-op when it already fits)."""
    if size is None or image.size == (size, size):
        return image
    side = min(image.size)
    left, top = (image.width - side) // 2, (image.height - side) // 2
    return image.crop((left, top, left + side, top + side)).resize((size, size), Image.BICUBIC)


def _entries(path: Path) -> list[tuple[str, callable]]:
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
        return [(str(p.relative_to(path)), p.read_bytes) for p in files]
    if zipfile.is_zipfile(path):
        archive = zipfile.ZipFile(path)
        names = sorted(n for n in archive.namelist() if Path(n).suffix.lower() in IMAGE_SUFFIXES)
        return [(n, (lambda n=n: archive.read(n))) for n in names]
    raise VqtoolError("training data must be a folder or a .zip of images", str(path))


def load_images(path: str | Path, size: int | None = None, mode: str = "RGB",
                limit: int | None = None, select: set[str] | None = None,
                exclude: set[str] | None = None) -> ImageSet:
    """Every image under `path`; `select`/`exclude` filter by relative name (for list-defined splits)."""
    path = Path(path)
    if not path.exists():
        raise VqtoolError("no such file or directory", str(path))
    entries = _entries(path)
    if select is not None:
        entries = [e for e in entries if e[0] in select]
    if exclude:
        entries = [e for e in entries if e[0] not in exclude]
    if limit:
        rng = np.random.default_rng(0)
        keep = sorted(rng.choice(len(entries), size=min(limit, len(entries)), replace=False))
        entries = [entries[i] for i in keep]
    if not entries:
        raise VqtoolError("no images found", str(path))
    classes = sorted({Path(name).parent.name for name, _ in entries})
    arrays, labels = [], []
    for name, read in entries:
        image = _fit(decode_image(read(), f"{path}:{name}", mode), size)
        arrays.append(image_to_array(image))
        labels.append(classes.index(Path(name).parent.name))
    if len({a.shape for a in arrays}) > 1:
        raise VqtoolError("images differ in size; pass --image-size to crop and resize them", str(path))
    return ImageSet(torch.from_numpy(np.stack(arrays)), torch.tensor(labels), classes, str(path))


def refuse_test_split(path: str | Path) -> None:
    """Training data named like a test split (test.zip, cifar-test/, ...) is refused outright."""
    if "test" in re.split(r"[^a-z0-9]+", Path(path).stem.lower()):
        raise VqtoolError("refusing to train on what looks like a test split", str(path))


def fingerprint(path: str | Path) -> str:
    """SHA-256 of a data file (or of a folder's sorted names and sizes) for provenance."""
    path = Path(path)
    if path.is_file():
        return sha256_file(path)
    digest = hashlib.sha256()
    for p in sorted(path.rglob("*")):
        if p.is_file():
            digest.update(f"{p.relative_to(path)}:{p.stat().st_size}\n".encode())
    return digest.hexdigest()


def batches(n: int, batch_size: int, seed: int, rank: int = 0, world: int = 1):
    """Endless index batches: a fresh permutation each epoch, each rank taking its own slice."""
    epoch = 0
    while True:
        generator = torch.Generator().manual_seed(seed * 100_003 + epoch)
        order = torch.randperm(n, generator=generator)
        per_rank = n // world
        mine = order[rank * per_rank:(rank + 1) * per_rank]
        for start in range(0, per_rank - batch_size + 1, batch_size):
            yield mine[start:start + batch_size]
        epoch += 1
