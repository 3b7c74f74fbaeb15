"""Image records of `.vqc` files: built from images, checked against the checkpoint that reads them,
decoded back. `vqtool encode`/`decode` and `vqtool.encode_file`/`decode_file` all go through here."""

from __future__ import annotations

import numpy as np

from vqtool.codes import CodeFile
from vqtool.errors import VqtoolError

from .compress import compress as range_code
from .compress import restore


def image_mode(net) -> str:
    return "RGB" if net.config.channels == 3 else "L"


def is_photo(net) -> bool:
    """Whether a checkpoint is the photo model (residual code grids [q, h, w], context-model coding)."""
    from . import PHOTO_ARCHITECTURE

    return getattr(net, "architecture", None) == PHOTO_ARCHITECTURE


CIFAR_SIDE = 32  # images at most this size on both sides go to `cifar10` when no model is named; others to `photos`


def default_model(height: int, width: int) -> str:
    """The checkpoint `vqtool encode` uses for an image when no --model is given (documented rule)."""
    return "cifar10" if max(height, width) <= CIFAR_SIDE else "photos"


def default_model_for(source: str, data: bytes | None = None, quality: int | None = None) -> str:
    """`default_model` of an image file, from its header alone (unreadable files go to `photos`, which
    then reports why); a quality level asks for the photo model."""
    import io

    from PIL import Image

    if quality is not None:
        return "photos"
    try:
        with Image.open(io.BytesIO(data) if data is not None else source) as image:
            return default_model(image.height, image.width)
    except Exception:  # noqa: BLE001 - the real read reports the cause
        return "photos"


def image_record(grid: np.ndarray, shape: tuple, model: str, sha256: str, num_codes: int,
                 name: dict | None = None, extra: dict | None = None) -> CodeFile:
    """The record of an (H, W, C) image's code grid, as `vqtool encode` and `vqtool sample` write it;
    the photo model's grids are [q, h, w] (q = the quality level: residual stages kept)."""
    media = {"kind": "image", "height": shape[0], "width": shape[1], "channels": shape[2], **(name or {})}
    return CodeFile(grid, model, sha256, num_codes, media, extra or {})



def _by_shape(net, arrays: list[np.ndarray]):
    """(indices, codes tensor) for each group of same-sized images: one model call per size."""
    for shape in dict.fromkeys(array.shape for array in arrays):
        group = [i for i, array in enumerate(arrays) if array.shape == shape]
        yield group, net.encode(np.stack([arrays[i] for i in group])).cpu()


def encode_grids(net, arrays: list[np.ndarray]) -> list[np.ndarray]:
    """The code grid of each (H, W, C) uint8 image, in order."""
    grids: list = [None] * len(arrays)
    for group, codes in _by_shape(net, arrays):
        for i, grid in zip(group, codes.numpy()):
            grids[i] = grid
    return grids


def encode_arrays(net, arrays: list[np.ndarray], compress: bool = False, names: list[dict] | None = None,
                  quality: int | None = None) -> list[bytes | VqtoolError]:
    """One record per (H, W, C) uint8 image, or the reason it has none; one model call per image size.
    `names`: each record's `{"name": ...}` when it goes into a stream, else `{}`; `quality`: residual
    stages to keep (photo model only; default all)."""
    names = names or [{}] * len(arrays)
    if is_photo(net):
        return [_photo_bytes(net, array, compress, name, quality) for array, name in zip(arrays, names)]
    if quality is not None:
        raise VqtoolError(f"--quality needs a model with residual codebooks (photos); {net.name} has one codebook")
    if compress:
        net.require_prior()
    results: list = [None] * len(arrays)
    for group, codes in _by_shape(net, arrays):
        shape = arrays[group[0]].shape
        try:
            payloads = range_code(net.prior, codes) if compress else [None] * len(group)
        except VqtoolError as exc:  # too large to range-code: every image of this size fails
            for i in group:
                results[i] = exc
            continue
        for i, grid, payload in zip(group, codes.numpy(), payloads):
            try:
                record = image_record(grid, shape, net.name, net.sha256, net.config.num_codes, names[i])
                results[i] = record.to_bytes(payload)
            except VqtoolError as exc:
                results[i] = exc
    return results


def _photo_bytes(net, array: np.ndarray, compress: bool, name: dict, quality: int | None) -> bytes | VqtoolError:
    """The record of one image under the photo model (range-coded under its context model when `compress`)."""
    from .context_int import compress_codes

    try:
        quality = net.check_quality(quality)
    except ValueError as exc:
        return VqtoolError(str(exc))
    codes = net.encode(array, quality).cpu()[0].numpy()
    record = image_record(codes, array.shape, net.name, net.sha256, net.config.num_codes, name)
    try:
        return record.to_bytes(compress_codes(net, codes) if compress else None)
    except VqtoolError as exc:
        return exc


def encode(net, source: str, data: bytes | None = None, compress: bool = False, quality: int | None = None) -> bytes:
    """The record of one image file (or of its bytes)."""
    from vqtool.media import decode_image, image_to_array, read_bytes

    image = decode_image(read_bytes(source) if data is None else data, source, image_mode(net))
    result = encode_arrays(net, [image_to_array(image)], compress, quality=quality)[0]
    if isinstance(result, VqtoolError):
        raise VqtoolError(str(result), result.source or source)
    return result


def grid_for(net, height: int, width: int, quality: int | None = None) -> tuple[int, ...]:
    """The code grid of an image: one code per stride x stride pixels, edges padded up (with the photo
    model's stages first)."""
    grid = (-(-height // net.stride), -(-width // net.stride))
    return (net.check_quality(quality), *grid) if is_photo(net) else grid


def check_record(net, record, source: str) -> None:
    """The grid must fit the recorded size at the model's stride (a header that claims a small image
    over a huge grid, or the reverse, is corrupt)."""
    media = record.media
    grid = tuple(record.grid)
    if is_photo(net) != (len(grid) == 3):
        raise VqtoolError(f"a {'residual' if len(grid) == 3 else 'single'} code grid, but {net.name} "
                          f"{'has residual codebooks' if is_photo(net) else 'has one codebook'}", source)
    if is_photo(net) and not 1 <= grid[0] <= net.config.stages:
        raise VqtoolError(f"corrupt .vqc header ({grid[0]} residual stages; {net.name} has {net.config.stages})",
                          source)
    expected = grid_for(net, media["height"], media["width"], grid[0] if is_photo(net) else None)
    if grid != expected:
        raise VqtoolError(f"corrupt .vqc header (a {media['width']}x{media['height']} image at stride {net.stride} "
                          f"needs a {'x'.join(map(str, expected))} grid, not {'x'.join(map(str, record.grid))})",
                          source)


def decode(net, record, source: str) -> np.ndarray:
    """The (H, W, C) uint8 image of a record (range-coded payloads decoded under the model's prior)."""
    codes = restore_codes(net, record, source)
    return net.to_uint8(net.decode(codes[None], (record.media["height"], record.media["width"])))[0]


def restore_codes(net, record, source: str) -> np.ndarray:
    """The codes of a record: as stored, or range-decoded under the prior or the context model."""
    if record.coding != "range-context":
        return restore(getattr(net, "prior", None), record, source)
    from vqtool.codes import codes_crc32

    from .context_int import decompress_codes

    if not is_photo(net):
        raise VqtoolError(f"codes are range-coded under a context model, but model '{record.model}' has none", source)
    try:
        codes = decompress_codes(net, record.payload, tuple(record.grid))
    except (ValueError, RuntimeError, AssertionError, IndexError) as exc:  # the coder's complaint
        raise VqtoolError(f"corrupt range-coded payload ({exc})", source) from None
    if codes_crc32(codes) != record.codes_crc32:
        raise VqtoolError("range-coded payload does not decode to the recorded codes (corrupt, or made by "
                          "another model)", source)
    return codes
