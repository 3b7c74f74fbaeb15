"""Reading and writing media safely: every input problem becomes one VqtoolError naming the file,
and every output appears whole or not at all (written to a temporary file, then renamed)."""

from __future__ import annotations

import contextlib
import io
import itertools
import os
import re
import sys
import threading
import unicodedata
import warnings
from pathlib import Path
from typing import Iterator

import numpy as np
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

from .codes import MAX_PIXELS
from .errors import StdoutClosed, VqtoolError

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm"}
MAX_IMAGE_PIXELS = MAX_PIXELS  # larger images are refused as possible decompression bombs (and never decoded)
Image.MAX_IMAGE_PIXELS = MAX_IMAGE_PIXELS
ImageFile.LOAD_TRUNCATED_IMAGES = False
STDIO = "-"


PART_SUFFIX = ".part"
_checked_folders: set[str] = set()


def warn_stale_parts(folder: Path) -> None:
    """Name (once per folder and run) the temporaries that a killed earlier run left behind."""
    key = os.path.realpath(folder)
    if key in _checked_folders:
        return
    _checked_folders.add(key)
    with contextlib.suppress(OSError):
        stale = sorted(p.name for p in Path(folder).glob(f".*{PART_SUFFIX}") if p.is_file())
        if stale:
            shown = ", ".join(stale[:3]) + (f" and {len(stale) - 3} more" if len(stale) > 3 else "")
            print(f"vqtool: note: {folder} holds {len(stale)} partial file(s) left by an interrupted run "
                  f"({shown}); they are not outputs and can be deleted", file=sys.stderr)


_made_folders: set[str] = set()  # folders this process has made or found; forgotten if one disappears
_folder_lock = threading.Lock()  # a writer thread's temporary must not look stale to another's first scan


def _part_file(path: Path) -> tuple[str, int]:
    """A new temporary file beside `path` and its descriptor: created exclusively, with the usual
    permissions, under a name of this process and thread; the folder is made (once) if needed."""
    folder = str(path.parent)
    if folder not in _made_folders:
        with _folder_lock:
            path.parent.mkdir(parents=True, exist_ok=True)
            warn_stale_parts(path.parent)
            _made_folders.add(folder)
    for attempt in itertools.count():
        tmp = os.path.join(folder, f".{path.name[:200]}.{os.getpid()}-{threading.get_ident()}-{attempt}{PART_SUFFIX}")
        try:
            return tmp, os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o666)
        except FileExistsError:
            continue
        except FileNotFoundError:
            if folder not in _made_folders or attempt:
                raise
            _made_folders.discard(folder)  # removed since: make it again
            path.parent.mkdir(parents=True, exist_ok=True)


@contextlib.contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield a temporary path beside `path`; rename it over `path` only if the block succeeds.
    The temporary is removed on any failure (SIGTERM and Ctrl-C included: the CLI turns them into
    exceptions); a failed write is one VqtoolError naming the file."""
    path = Path(path)
    tmp = None
    try:
        tmp, fd = _part_file(path)
        os.close(fd)
        yield Path(tmp)
        os.replace(tmp, path)
        tmp = None
    except OSError as exc:
        raise VqtoolError(f"cannot write ({exc.strerror or exc})", str(path)) from None
    finally:
        if tmp is not None:
            with contextlib.suppress(OSError):
                os.unlink(tmp)


def write_stdout(data: bytes) -> None:
    try:
        sys.stdout.flush()
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
    except BrokenPipeError:
        raise StdoutClosed from None


def write_bytes(target: str | Path, data: bytes) -> None:
    """Write to a file atomically (`atomic_path`: a few system calls, cheap enough for thousands of
    small files), or to stdout for '-'."""
    if str(target) == STDIO:
        write_stdout(data)
        return
    with atomic_path(Path(target)) as tmp:
        tmp.write_bytes(data)


MAX_NAME_BYTES = 100


def safe_name(name: str, fallback: str) -> str:
    """A name from a file header reduced to a plain file stem (docs/outputs.md): letters, digits and
    `_ . - space` kept, anything else (separators, NUL, control characters) becomes `_`, leading and
    trailing dots and spaces go (no `..`, no hidden files), at most 100 UTF-8 bytes; `fallback` if
    nothing is left."""
    name = unicodedata.normalize("NFC", str(name))
    cleaned = re.sub(r"[^\w.\- ]", "_", name, flags=re.UNICODE).strip(" .")
    cleaned = cleaned.encode()[:MAX_NAME_BYTES].decode(errors="ignore").strip(" .")
    return cleaned or fallback


def path_key(path: str | Path, folders: dict | None = None) -> str:
    """One spelling per file, to tell whether two paths name the same file. `folders` caches the
    resolved folders for a caller that names thousands of files in a few folders (realpath costs a
    system call per path component); the file itself is resolved whenever it is a link."""
    if folders is None:
        return os.path.normcase(os.path.realpath(path))
    folder, name = os.path.split(os.path.abspath(path))
    if folder not in folders:
        folders[folder] = os.path.realpath(folder)
    joined = os.path.join(folders[folder], name)
    return os.path.normcase(os.path.realpath(joined) if os.path.islink(joined) else joined)


_stdin: bytes | None = None


def peek_stdin(count: int) -> bytes:
    """The first bytes of stdin, left for the reader (`stdin_stream`)."""
    if _stdin is None and hasattr(sys.stdin.buffer, "peek"):
        return sys.stdin.buffer.peek(count)[:count]
    return read_bytes(STDIO)[:count]


def stdin_stream():
    """Stdin to read from: streamed, unless `read_bytes` or `peek_stdin` has kept it already."""
    return io.BytesIO(_stdin) if _stdin is not None else sys.stdin.buffer


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
            warnings.simplefilter("ignore")  # Pillow's notes on odd but readable files are not the user's business
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
            image.load()
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise VqtoolError(f"image too large (over {MAX_IMAGE_PIXELS:,} pixels; decompression bomb?)",
                          source) from None
    except UnidentifiedImageError:
        raise VqtoolError("not an image (unrecognised format)", source) from None
    except Exception as exc:  # noqa: BLE001  Pillow's format plugins raise many types on hostile files
        raise VqtoolError(f"truncated or corrupt image ({exc.__class__.__name__}: {exc})", source) from None
    if image.width == 0 or image.height == 0:
        raise VqtoolError("image has no pixels", source)
    try:
        return _upright_in_mode(image, source, mode)
    except VqtoolError:
        raise
    except Exception as exc:  # noqa: BLE001  an odd mode or metadata Pillow cannot convert
        raise VqtoolError(f"unsupported image ({exc.__class__.__name__}: {exc})", source) from None


def _upright_in_mode(image: Image.Image, source: str, mode: str) -> Image.Image:
    """EXIF orientation applied, scaled to 8 bits, transparency on white, converted to `mode`."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            image = ImageOps.exif_transpose(image)  # phone photos are stored sideways with an orientation tag
    except Exception:  # noqa: BLE001  a broken EXIF block: the pixels as stored
        pass
    image = _eight_bit(image, source)
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        background = Image.new("RGBA", image.size, (255, 255, 255, 255))
        image = Image.alpha_composite(background, image.convert("RGBA"))
    return image.convert(mode)


def _eight_bit(image: Image.Image, source: str) -> Image.Image:
    """16-bit and 32-bit integer images scaled from 0..65535, float images from 0..1, to 8 bits
    (Pillow's own conversion clips them: 16-bit photos came back white, float ones black). Done in
    bands of rows, so a 50-megapixel float image needs no float64 copy of itself."""
    if image.mode.startswith("I;16") or image.mode == "I":
        scale, check = 1 / 257.0, False
    elif image.mode == "F":
        scale, check = 255.0, True
    else:
        return image
    out = np.empty((image.height, image.width), dtype=np.uint8)
    rows = max(1, (1 << 20) // image.width)
    for top in range(0, image.height, rows):
        band = np.asarray(image.crop((0, top, image.width, min(top + rows, image.height))), dtype=np.float32)
        if check and not np.isfinite(band).all():
            raise VqtoolError("image has NaN or infinite pixel values", source)
        with np.errstate(over="ignore"):  # values far above the range saturate at 255
            out[top:top + rows] = np.clip(np.rint(band * scale), 0, 255)
    return Image.fromarray(out, "L")


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


# --- .npy arrays from files we did not write ----------------------------------------------------------
MAX_NPY_HEADER = 1 << 16


def npy_header(stream, source: str) -> tuple[tuple[int, ...], np.dtype, bool]:
    """(shape, dtype, fortran order) of a .npy stream, left at the first data byte. numpy's header
    parser can raise nearly anything on a hostile header (a tokenizer error, a SyntaxError); every
    failure, and any dtype that holds Python objects, is one VqtoolError naming `source`."""
    try:
        version = np.lib.format.read_magic(stream)
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(stream, max_header_size=MAX_NPY_HEADER)
        elif version == (2, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(stream, max_header_size=MAX_NPY_HEADER)
        else:
            raise ValueError(f"format version {version[0]}.{version[1]} is not read here (1.0 and 2.0 are)")
    except Exception as exc:  # noqa: BLE001 - numpy's header parser is not hardened
        raise VqtoolError(f"not a readable .npy array ({type(exc).__name__}: {exc})", source) from None
    if dtype.hasobject or not all(isinstance(n, int) and n >= 0 for n in shape):
        raise VqtoolError(f"not a plain .npy array (dtype {dtype}, shape {shape})", source)
    return tuple(shape), dtype, bool(fortran)


def parse_npy(data: bytes, source: str) -> np.ndarray:
    """A whole .npy file from bytes, refused (never allocated) when the header claims more data than
    the file holds."""
    import math

    stream = io.BytesIO(data)
    shape, dtype, fortran = npy_header(stream, source)
    need = math.prod(shape) * dtype.itemsize
    have = len(data) - stream.tell()
    if have != need:
        raise VqtoolError(f"the .npy header promises {need} bytes of data, the file holds {have}"
                          + (" (truncated)" if have < need else ""), source)
    array = np.frombuffer(data, dtype=dtype, count=math.prod(shape), offset=stream.tell())
    return array.reshape(shape, order="F" if fortran else "C")
