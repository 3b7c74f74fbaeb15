"""vqtool: discrete codes and controllable generation from media.

Library use::

    import vqtool
    model = vqtool.load("cifar10")          # bundled, SHA-256 checked
    codes = model.encode(images)            # (N, 3, H, W) floats in [0, 1] -> (N, h, w) codes
    images = model.decode(codes)            # and back

    faces = vqtool.load("faces-utk")        # a Fader Network: attributes as sliders
    edited = faces.edit(images, {"male": 0.1, "young": 0.9})   # (N, 3, 64, 64) floats in [0, 1]
"""

__version__ = "0.2.0"

from .errors import VqtoolError  # noqa: E402
from .hub import available_models, load  # noqa: E402

__all__ = ["__version__", "VqtoolError", "available_models", "load"]
