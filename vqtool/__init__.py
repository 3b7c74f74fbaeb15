"""vqtool: discrete codes and controllable generation from media.

Library use::

    import vqtool
    model = vqtool.load("cifar10")          # bundled, SHA-256 checked
    codes = model.encode(images)            # (N, 3, H, W) floats in [0, 1] -> (N, h, w) codes
    images = model.decode(codes)            # and back

    data = vqtool.encode_file("photo.png")  # the bytes of a .vqc code file
    image = vqtool.decode_file(data)        # (H, W, 3) uint8; audio gives (samples, rate)

    faces = vqtool.load("faces-utk")        # a Fader Network: attributes as sliders
    edited = faces.edit(images, {"male": 0.1, "young": 0.9})   # (N, 3, 64, 64) floats in [0, 1]

Names are imported on first use, so that `import vqtool` (and `vqtool --help`) does not load torch.
"""

__version__ = "0.2.0"

from .errors import VqtoolError  # noqa: E402

_LAZY = {"load": "hub", "available_models": "hub", "encode_file": "codefiles", "decode_file": "codefiles",
         "read_records": "codefiles"}

__all__ = ["__version__", "VqtoolError", *_LAZY]


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module 'vqtool' has no attribute {name!r}")
