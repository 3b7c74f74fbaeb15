"""Fader Networks (Lample et al., 2017): face attributes as sliders."""

from vqtool.registry import Family

ARCHITECTURE = "fader"
CRITIC_KINDS = ("matching", "realism")  # see FaderConfig.critic_kind
UPSAMPLERS = ("transposed", "nearest")  # see FaderConfig.upsample
PROBE_FACES = 4000  # training faces the independent judge is fitted on (features: ~15 ms a face on 2 CPU cores)

FAMILY = Family(
    name="fader",
    package=__name__,
    architectures={ARCHITECTURE: "model:FaderNetwork"},
    headline_metrics=("psnr_db",),
)
