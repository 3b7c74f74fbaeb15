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


def image_record(grid: np.ndarray, shape: tuple, model: str, sha256: str, num_codes: int,
                 name: dict | None = None, extra: dict | None = None) -> CodeFile:
    """The record of an (H, W, C) image's code grid, as `vqtool encode` and `vqtool sample` write it."""
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


def encode_arrays(net, arrays: list[np.ndarray], compress: bool = False, names: list[dict] | None = None
                  ) -> list[bytes | VqtoolError]:
    """One record per (H, W, C) uint8 image, or the reason it has none; one model call per image size.
    `names`: each record's `{"name": ...}` when it goes into a stream, else `{}`."""
    if compress:
        net.require_prior()
    names = names or [{}] * len(arrays)
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


def encode(net, source: str, data: bytes | None = None, compress: bool = False) -> bytes:
    """The record of one image file (or of its bytes)."""
    from vqtool.media import decode_image, image_to_array, read_bytes

    image = decode_image(read_bytes(source) if data is None else data, source, image_mode(net))
    result = encode_arrays(net, [image_to_array(image)], compress)[0]
    if isinstance(result, VqtoolError):
        raise VqtoolError(str(result), result.source or source)
    return result


def grid_for(net, height: int, width: int) -> tuple[int, int]:
    """The code grid of an image: one code per stride x stride pixels, edges padded up."""
    return -(-height // net.stride), -(-width // net.stride)


def check_record(net, record, source: str) -> None:
    """The grid must fit the recorded size at the model's stride (a header that claims a small image
    over a huge grid, or the reverse, is corrupt)."""
    media = record.media
    expected = grid_for(net, media["height"], media["width"])
    if tuple(record.grid) != expected:
        raise VqtoolError(f"corrupt .vqc header (a {media['width']}x{media['height']} image at stride {net.stride} "
                          f"needs a {'x'.join(map(str, expected))} grid, not {'x'.join(map(str, record.grid))})",
                          source)


def decode(net, record, source: str) -> np.ndarray:
    """The (H, W, C) uint8 image of a record (range-coded payloads decoded under the model's prior)."""
    codes = restore(net.prior, record, source)
    return net.to_uint8(net.decode(codes, (record.media["height"], record.media["width"])))[0]
