"""Fader Networks (Lample et al., 2017): face attributes as sliders."""

from vqtool.registry import Family

ARCHITECTURE = "fader"

FAMILY = Family(
    name="fader",
    package=__name__,
    architectures={ARCHITECTURE: "model:FaderNetwork"},
    headline_metrics=("psnr_db",),
)
