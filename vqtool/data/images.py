"""Image data: a folder or a zip of images, labelled by their parent folder.

Small image sets (CIFAR-10 is 150 MB as uint8) are decoded once into one tensor, which makes every
later epoch free of JPEG decoding, the bottleneck on two cores.
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ..errors import VqtoolError
from ..media import IMAGE_SUFFIXES, decode_image, image_to_array


@dataclass
class ImageSet:
    images: torch.Tensor  # (N, H, W, C) uint8
    labels: torch.Tensor  # (N,) int64, index into classes
    classes: list[str]
    source: str
    names: list[str] = field(default_factory=list)  # each image's path inside the folder or zip

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
        try:
            archive = zipfile.ZipFile(path)
            members = [i for i in archive.infolist() if Path(i.filename).suffix.lower() in IMAGE_SUFFIXES]
        except (zipfile.BadZipFile, OSError, ValueError) as exc:
            raise VqtoolError(f"unreadable zip ({exc})", str(path)) from None
        total = sum(i.file_size for i in members)  # as declared; zipfile stops a member at its declared size
        if total > MAX_ZIP_BYTES:
            raise VqtoolError(f"zip would unpack to {total / 2**30:.1f} GiB of images (limit "
                              f"{MAX_ZIP_BYTES // 2**30} GiB; a zip bomb?)", str(path))
        return [(i.filename, (lambda n=i.filename: _member(archive, n, path))) for i in sorted(members,
                                                                                              key=lambda i: i.filename)]
    raise VqtoolError("training data must be a folder or a .zip of images", str(path))


MAX_ZIP_BYTES = 4 << 30  # uncompressed images in one training zip (CIFAR-10's train.zip: 43 MiB)
MAX_DECODED_BYTES = 8 << 30  # decoded pixels held for training (CIFAR-10's training set: 154 MB)


def _member(archive, name: str, path: Path) -> bytes:
    try:
        return archive.read(name)
    except (zipfile.BadZipFile, OSError, ValueError, NotImplementedError, EOFError) as exc:
        raise VqtoolError(f"corrupt zip member ({exc})", f"{path}:{name}") from None


def seeded_subset(count: int, limit: int) -> list[int]:
    """The indices `--limit` keeps: the same seeded choice for images and for their code arrays."""
    return sorted(np.random.default_rng(0).choice(count, size=min(limit, count), replace=False))


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
        entries = [entries[i] for i in seeded_subset(len(entries), limit)]
    if not entries:
        raise VqtoolError("no images found", str(path))
    classes = sorted({Path(name).parent.name for name, _ in entries})
    arrays, labels = [], []
    held = 0
    for name, read in entries:
        image = _fit(decode_image(read(), f"{path}:{name}", mode), size)
        arrays.append(image_to_array(image))
        held += arrays[-1].nbytes
        if held > MAX_DECODED_BYTES:
            raise VqtoolError(f"images decode to over {MAX_DECODED_BYTES // 2**30} GiB (use --limit or "
                              "--image-size)", str(path))
        labels.append(classes.index(Path(name).parent.name))
    if len({a.shape for a in arrays}) > 1:
        raise VqtoolError("images differ in size; pass --image-size to crop and resize them", str(path))
    return ImageSet(torch.from_numpy(np.stack(arrays)), torch.tensor(labels), classes, str(path),
                    [name for name, _ in entries])


def provenance(path: Path, images: ImageSet, eval_path: Path | None) -> dict:
    """How a checkpoint records its training images (a folder or zip, labelled by folder) and held-out set."""
    from . import fingerprint

    return {"train_data": str(path), "train_split": path.stem, "train_items": len(images),
            "train_sha256": fingerprint(path), "classes": images.classes,
            "eval_data": str(eval_path) if eval_path else None,
            "eval_split": eval_path.stem if eval_path else None}
