"""Reading and writing media safely: every input problem becomes one VqtoolError naming the file,
and every output appears whole or not at all (written to a temporary file, then renamed)."""

from __future__ import annotations

import contextlib
import io
import os
import sys
import tempfile
import warnings
from pathlib import Path
from typing import Iterator

import numpy as np
from PIL import Image, ImageFile, UnidentifiedImageError

from .errors import VqtoolError

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm"}
MAX_IMAGE_PIXELS = 50_000_000  # larger images are refused as possible decompression bombs
Image.MAX_IMAGE_PIXELS = MAX_IMAGE_PIXELS
ImageFile.LOAD_TRUNCATED_IMAGES = False
STDIO = "-"


@contextlib.contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield a temporary path beside `path`; rename it over `path` only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    os.close(fd)
    umask = os.umask(0)
    os.umask(umask)
    try:
        yield Path(tmp)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; outputs get the usual permissions
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


def write_bytes(target: str | Path, data: bytes) -> None:
    """Write to a file atomically, or to stdout for '-'."""
    if str(target) == STDIO:
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
        return
    with atomic_path(Path(target)) as tmp:
        tmp.write_bytes(data)


_stdin: bytes | None = None


def read_bytes(source: str | Path) -> bytes:
    """Whole file, or all of stdin for '-' (formats here need random access, pipes have none).
    Stdin is read once and kept, so that a format can be sniffed before it is decoded."""
    global _stdin
    if str(source) == STDIO:
        if _stdin is None:
            _stdin = sys.stdin.buffer.read()
        return _stdin
    try:
        return Path(source).read_bytes()
    except FileNotFoundError:
        raise VqtoolError("no such file", str(source)) from None
    except IsADirectoryError:
        raise VqtoolError("is a directory", str(source)) from None
    except OSError as exc:
        raise VqtoolError(f"cannot read ({exc.strerror})", str(source)) from None


def expand_inputs(items: list[str], suffixes: set[str]) -> list[str]:
    """Files as given, directories expanded (sorted, recursively) to the files with known suffixes."""
    found = []
    for item in items:
        if item != STDIO and Path(item).is_dir():
            files = sorted(str(p) for p in Path(item).rglob("*") if p.suffix.lower() in suffixes and p.is_file())
            if not files:
                raise VqtoolError(f"directory contains no files of type {', '.join(sorted(suffixes))}", item)
            found.extend(files)
        else:
            found.append(item)
    return found


def decode_image(data: bytes, source: str, mode: str = "RGB") -> Image.Image:
    """Decode image bytes fully (so truncation shows now), converted to `mode`."""
    if not data:
        raise VqtoolError("empty file", source)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
            image.load()
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise VqtoolError(f"image too large (over {MAX_IMAGE_PIXELS:,} pixels; decompression bomb?)",
                          source) from None
    except UnidentifiedImageError:
        raise VqtoolError("not an image (unrecognised format)", source) from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise VqtoolError(f"truncated or corrupt image ({exc})", source) from None
    if image.width == 0 or image.height == 0:
        raise VqtoolError("image has no pixels", source)
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        background = Image.new("RGBA", image.size, (255, 255, 255, 255))
        image = Image.alpha_composite(background, image.convert("RGBA"))
    return image.convert(mode)


def read_image(source: str, mode: str = "RGB") -> Image.Image:
    return decode_image(read_bytes(source), source, mode)


def image_to_array(image: Image.Image) -> np.ndarray:
    """(H, W, C) uint8."""
    array = np.asarray(image, dtype=np.uint8)
    return array[:, :, None] if array.ndim == 2 else array


def encode_image(array: np.ndarray, fmt: str = "PNG") -> bytes:
    """(H, W, C) uint8 -> image file bytes in `fmt` (PNG, JPEG, WEBP, BMP, TIFF)."""
    image = Image.fromarray(array[:, :, 0] if array.shape[2] == 1 else array)
    buffer = io.BytesIO()
    options = {"quality": 95} if fmt in ("JPEG", "WEBP") else {}
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


IMAGE_FORMATS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".webp": "WEBP", ".bmp": "BMP",
                 ".tif": "TIFF", ".tiff": "TIFF"}  # output suffix -> Pillow format


def image_format_for(path: str, default: str = "PNG") -> str:
    """Pillow format name from an output suffix."""
    if path == STDIO:
        return default
    suffix = Path(path).suffix.lower()
    if suffix not in IMAGE_FORMATS:
        raise VqtoolError(f"unknown image suffix '{suffix}' (use one of {', '.join(sorted(IMAGE_FORMATS))})", path)
    return IMAGE_FORMATS[suffix]


def tile(images: list[np.ndarray], columns: int, gutter: int = 2, background: int = 255) -> np.ndarray:
    """Equal-sized (H, W, C) images in a grid, row by row, with a `gutter`-pixel margin."""
    height, width, channels = images[0].shape
    if any(i.shape != images[0].shape for i in images):
        raise VqtoolError("images of different sizes cannot share a grid; write them to a folder instead")
    rows = -(-len(images) // columns)
    sheet = np.full((rows * (height + gutter) + gutter, columns * (width + gutter) + gutter, channels),
                    background, dtype=np.uint8)
    for index, image in enumerate(images):
        top, left = gutter + (index // columns) * (height + gutter), gutter + (index % columns) * (width + gutter)
        sheet[top:top + height, left:left + width] = image
    return sheet
