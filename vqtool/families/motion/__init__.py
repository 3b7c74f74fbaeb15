"""CPP-VAE and its baselines (Aliakbarian et al.): several plausible futures of a person's motion."""

from vqtool.registry import Family

ARCHITECTURE = "motion-cvae"
KINDS = {"none": "deterministic", "standard": "CVAE", "learned": "learned prior", "cpp": "CPP-VAE"}  # by --prior

FAMILY = Family(
    name="motion",
    package=__name__,
    architectures={ARCHITECTURE: "model:MotionCVAE"},
    headline_metrics=("ltd_euler_best10_1000ms", "dense_euler_best10_1000ms", "dense_apd10_mm"),
)
