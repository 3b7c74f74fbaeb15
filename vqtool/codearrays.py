"""Whole-dataset code arrays: `vqtool encode DIR -o codes.npz` writes the codes of every image as one
array, `vqtool decode codes.npz -o DIR` and `vqtool train prior --codes codes.npz` read it (layout in
docs/codes-npz.md). A plain zip that `numpy.load` opens:

    codes.npy   uint16 [N, h, w] (int32 above 65,536 codes): the code grid of each image
    names.npy   str [N]: each image's path relative to the folder encoded (its label: the parent folder)
    sizes.npy   int32 [N, 2]: each image's original height and width
    meta.json   format, version, model, checkpoint_sha256 (all 64 digits), codebook_size, grid, kind,
                channels, count, inputs

Memory stays bounded on both sides: the writer streams rows into a temporary file and copies them into
the archive at the end (ZIP_STORED); the reader hands out rows in chunks. Names must be relative paths
without `..`, so that decoding into a folder never writes outside it.
"""

from __future__ import annotations

import io
import json
import math
import os
import re
import shutil
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

from . import strictjson
from .codes import MAX_CODEBOOK, MAX_CODES, MAX_MODEL_NAME, MAX_PIXELS
from .errors import VqtoolError

FORMAT, VERSION = "vqtool-codes", 1
SUFFIX = ".npz"
CHUNK_ROWS = 4096  # rows per read when streaming an array
MAX_META_BYTES = 1 << 16
MAX_NAME_CHARS = 1024
MAX_INPUTS_KEPT = 16  # command-line inputs recorded in meta.json
_SHA256 = re.compile(r"[0-9a-f]{64}")
_UNSAFE_NAME = re.compile(r"[\x00-\x1f\x7f\\]")


def code_dtype(codebook_size: int) -> np.dtype:
    return np.dtype("<u2") if codebook_size <= 1 << 16 else np.dtype("<i4")


def is_code_array(source: str, data: bytes | None = None) -> bool:
    """A codes.npz by name, or (stdin) by the zip magic."""
    if data is not None:
        return data[:4] == b"PK\x03\x04"
    return source.lower().endswith(SUFFIX)


def checked_name(name: str, source: str) -> str:
    """A stored name as a relative POSIX path that stays inside any folder it is joined to."""
    parts = name.split("/")
    if (not name or len(name) > MAX_NAME_CHARS or _UNSAFE_NAME.search(name) or name.startswith("/")
            or re.match(r"^[A-Za-z]:", name) or any(part in ("", ".", "..") for part in parts)):
        raise VqtoolError(f"unsafe image name {name[:80]!r} in names.npy (names are relative paths "
                          f"without '..')", source)
    return name


def relative_names(sources: list[str], roots: list[str | None]) -> list[str]:
    """The name each encoded image is stored under: its path inside the folder named on the command
    line (`root`), else its file name; stdin is `stdin`."""
    names = []
    for source, root in zip(sources, roots):
        if source == "-":
            names.append("stdin")
        elif root is not None:
            names.append(Path(os.path.relpath(source, root)).as_posix())
        else:
            names.append(Path(source).name)
    return names


class CodeArrayWriter:
    """Rows go to a temporary file beside the output as they come; `close` writes the archive
    atomically (nothing is written when no row came, or on failure)."""

    def __init__(self, path: str | Path, model: str, sha256: str, codebook_size: int, kind: str = "image",
                 inputs: list[str] = ()):
        from .media import PART_SUFFIX, warn_stale_parts

        self.path = Path(path)
        self.meta = {"format": FORMAT, "version": VERSION, "model": model, "checkpoint_sha256": sha256,
                     "codebook_size": codebook_size, "kind": kind, "inputs": list(inputs)[:MAX_INPUTS_KEPT]}
        self.dtype = code_dtype(codebook_size)
        self.names: list[str] = []
        self.sizes: list[tuple[int, int]] = []
        self.grid: tuple[int, ...] | None = None
        self.channels = 0
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            warn_stale_parts(self.path.parent)  # before our own temporary joins them
            fd, self.rows_path = tempfile.mkstemp(prefix=f".{self.path.name[:200]}.rows.", suffix=PART_SUFFIX,
                                                  dir=self.path.parent)
        except OSError as exc:
            raise VqtoolError(f"cannot write ({exc.strerror or exc})", str(self.path)) from None
        self.rows = os.fdopen(fd, "wb")

    def add(self, grid: np.ndarray, name: str, shape: tuple[int, ...], source: str) -> int:
        """Append one image's code grid; its row number."""
        if self.grid is None:
            self.grid, self.channels = tuple(grid.shape), shape[2] if len(shape) > 2 else 1
        elif tuple(grid.shape) != self.grid:
            raise VqtoolError(f"its {'x'.join(map(str, grid.shape))} code grid differs from the "
                              f"{'x'.join(map(str, self.grid))} of the array's first image (a codes.npz holds "
                              f"one grid size: resize the images, or encode them to .vqc files)", source)
        self.rows.write(np.ascontiguousarray(grid, dtype=self.dtype).tobytes())
        self.names.append(name)
        self.sizes.append((int(shape[0]), int(shape[1])))
        return len(self.names) - 1

    def close(self) -> bool:
        """Write the archive; False when there was nothing to write."""
        from .media import atomic_path

        try:
            self.rows.close()
            if not self.names:
                return False
            count = len(self.names)
            meta = {**self.meta, "grid": list(self.grid), "channels": self.channels, "count": count}
            names = np.array(self.names, dtype=f"<U{max(len(n) for n in self.names)}")
            with atomic_path(self.path) as tmp, zipfile.ZipFile(tmp, "w", zipfile.ZIP_STORED, allowZip64=True) as zf:
                zf.writestr("meta.json", json.dumps(meta, indent=1) + "\n")
                with zf.open("codes.npy", "w", force_zip64=True) as member, open(self.rows_path, "rb") as rows:
                    np.lib.format.write_array_header_2_0(member, {"descr": self.dtype.str, "fortran_order": False,
                                                                  "shape": (count, *self.grid)})
                    shutil.copyfileobj(rows, member, 1 << 20)
                for member_name, array in (("names.npy", names), ("sizes.npy", np.array(self.sizes, dtype="<i4"))):
                    with zf.open(member_name, "w", force_zip64=True) as member:
                        np.lib.format.write_array(member, array, allow_pickle=False)
            return True
        finally:
            self.discard()

    def discard(self) -> None:
        self.rows.close()
        try:
            os.unlink(self.rows_path)
        except OSError:
            pass


@dataclass
class CodeArray:
    """An opened codes.npz: metadata, names and sizes in memory, code rows streamed by `chunks`."""

    source: str
    meta: dict
    names: list[str]
    sizes: np.ndarray
    archive: zipfile.ZipFile
    dtype: np.dtype

    @property
    def count(self) -> int:
        return self.meta["count"]

    @property
    def grid(self) -> tuple[int, int]:
        return tuple(self.meta["grid"])

    def chunks(self, rows: int = CHUNK_ROWS) -> Iterator[tuple[int, np.ndarray]]:
        """(first row, int64 codes [n, h, w]) in order; every code checked against the codebook."""
        from .media import npy_header

        row_bytes = math.prod(self.grid) * self.dtype.itemsize
        try:
            with self.archive.open("codes.npy") as member:
                npy_header(member, f"{self.source}:codes.npy")
                for start in range(0, self.count, rows):
                    n = min(rows, self.count - start)
                    data = member.read(n * row_bytes)
                    if len(data) != n * row_bytes:
                        raise VqtoolError(f"codes.npy ends at row {start + len(data) // row_bytes} of "
                                          f"{self.count} (truncated)", self.source)
                    codes = np.frombuffer(data, self.dtype).reshape(n, *self.grid).astype(np.int64)
                    bad = (codes < 0) | (codes >= self.meta["codebook_size"])
                    if bad.any():
                        row = start + int(np.argwhere(bad)[0][0])
                        raise VqtoolError(f"row {row} ({self.names[row]}) holds a code outside the codebook of "
                                          f"{self.meta['codebook_size']}", self.source)
                    yield start, codes
        except (zipfile.BadZipFile, OSError, EOFError, ValueError, NotImplementedError, RuntimeError) as exc:
            raise VqtoolError(f"cannot read codes.npy ({type(exc).__name__}: {exc})", self.source) from None

    def close(self) -> None:
        self.archive.close()


def open_code_array(source: str, data: bytes | None = None) -> CodeArray:
    """Open and check a codes.npz (a file, or its bytes from stdin): its metadata, names and sizes are
    read and validated here, the codes' header and length too, so that a foreign, truncated or
    ill-typed file is refused with one line before any image is decoded."""
    try:
        archive = zipfile.ZipFile(io.BytesIO(data) if data is not None else source)
    except FileNotFoundError:
        raise VqtoolError("no such file", source) from None
    except (zipfile.BadZipFile, OSError, EOFError, ValueError, NotImplementedError, RuntimeError) as exc:
        raise VqtoolError(f"not a readable codes.npz archive ({type(exc).__name__}: {exc})", source) from None
    try:
        return _checked(archive, source)
    except VqtoolError:
        archive.close()
        raise
    except (zipfile.BadZipFile, OSError, EOFError, ValueError, NotImplementedError, RuntimeError) as exc:
        archive.close()
        raise VqtoolError(f"not a readable codes.npz archive ({type(exc).__name__}: {exc})", source) from None


def _checked(archive: zipfile.ZipFile, source: str) -> CodeArray:
    from .media import npy_header, parse_npy

    members = {info.filename: info for info in archive.infolist()}
    missing = [m for m in ("meta.json", "codes.npy", "names.npy", "sizes.npy") if m not in members]
    if missing:
        raise VqtoolError(f"not a vqtool codes.npz (no {', '.join(missing)}; write one with "
                          f"`vqtool encode DIR -o codes.npz`)", source)
    meta = _checked_meta(archive, members["meta.json"], source)
    count, grid = meta["count"], tuple(meta["grid"])
    # names and sizes are small beside the images: read whole, after checking their stated sizes
    limits = {"names.npy": (count * MAX_NAME_CHARS * 4), "sizes.npy": count * 16}
    arrays = {}
    for member, limit in limits.items():
        if members[member].file_size > limit + (1 << 16):
            raise VqtoolError(f"{member} is larger than {count} entries can be", source)
        arrays[member] = parse_npy(archive.read(member), f"{source}:{member}")
    names, sizes = arrays["names.npy"], arrays["sizes.npy"]
    if names.dtype.kind != "U" or names.shape != (count,):
        raise VqtoolError(f"names.npy must be {count} strings, not {names.dtype} {list(names.shape)}", source)
    if sizes.dtype.kind not in "iu" or sizes.shape != (count, 2):
        raise VqtoolError(f"sizes.npy must be {count} integer (height, width) pairs, not {sizes.dtype} "
                          f"{list(sizes.shape)}", source)
    if count and (sizes.min() < 1 or (sizes.astype(np.int64).prod(axis=1) > MAX_PIXELS).any()):
        raise VqtoolError("sizes.npy holds an image size outside 1 .. 50 megapixels", source)
    with archive.open("codes.npy") as member:
        shape, dtype, fortran = npy_header(member, f"{source}:codes.npy")
        offset = member.tell()
    if dtype.kind not in "iu" or dtype.itemsize > 8:
        raise VqtoolError(f"codes.npy must hold integers, not {dtype}", source)
    if fortran or shape != (count, *grid):
        raise VqtoolError(f"codes.npy is {list(shape)}{' (Fortran order)' if fortran else ''}; meta.json says "
                          f"[{count}, {', '.join(map(str, grid))}]", source)
    need = offset + count * math.prod(grid) * dtype.itemsize
    have = members["codes.npy"].file_size
    if have != need:
        raise VqtoolError(f"codes.npy holds {have - offset} bytes of codes where {count} grids need "
                          f"{need - offset}" + (" (truncated)" if have < need else ""), source)
    return CodeArray(source, meta, [checked_name(str(n), source) for n in names], sizes.astype(np.int64), archive,
                     dtype)


def _checked_meta(archive: zipfile.ZipFile, info: zipfile.ZipInfo, source: str) -> dict:
    if info.file_size > MAX_META_BYTES:
        raise VqtoolError(f"meta.json is over {MAX_META_BYTES} bytes", source)
    try:
        meta = strictjson.loads(archive.read("meta.json"))
    except ValueError as exc:
        raise VqtoolError(f"meta.json is not valid JSON ({exc})", source) from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise VqtoolError(f"meta.json does not describe a {FORMAT} array", source)
    if meta.get("version") != VERSION:
        raise VqtoolError(f"codes.npz version {meta.get('version')!r}; this vqtool reads version {VERSION}", source)

    def need(key, check, what):
        if not check(meta.get(key)):
            raise VqtoolError(f"meta.json: {key} must be {what}, not {json.dumps(meta.get(key))[:60]}", source)

    def count_between(low, high):
        return lambda v: isinstance(v, int) and not isinstance(v, bool) and low <= v <= high

    need("model", lambda v: isinstance(v, str) and 0 < len(v.encode()) <= MAX_MODEL_NAME, "a checkpoint name")
    need("checkpoint_sha256", lambda v: isinstance(v, str) and _SHA256.fullmatch(v), "64 hex digits")
    need("codebook_size", count_between(2, MAX_CODEBOOK), f"an integer in 2 .. {MAX_CODEBOOK}")
    need("kind", lambda v: v == "image", "'image'")
    need("channels", count_between(1, 4), "1 .. 4")
    need("count", count_between(1, 1 << 40), "a positive integer")
    need("grid", lambda v: isinstance(v, list) and len(v) == 2 and all(count_between(1, MAX_CODES)(n) for n in v)
         and v[0] * v[1] <= MAX_CODES, f"[h, w] with at most {MAX_CODES} codes")
    return meta
