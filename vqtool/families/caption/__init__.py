"""CPP-VAE captions and their baselines (Aliakbarian et al.): several different captions for one photo."""

from vqtool.registry import Family

ARCHITECTURE = "caption-cvae"
KINDS = {"none": "beam search", "standard": "CVAE", "learned": "learned prior", "cpp": "CPP-VAE"}  # by --prior

FAMILY = Family(
    name="caption",
    package=__name__,
    architectures={ARCHITECTURE: "model:CaptionCVAE"},
    headline_metrics=("test_oracle_cider_5", "test_consensus_bleu4_5", "test_div2_5", "test_mbleu4_5"),
)
