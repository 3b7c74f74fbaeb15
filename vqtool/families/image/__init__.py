"""Image VQ-VAE (van den Oord et al., 2017) with a class-conditional PixelCNN prior: codes, samples,
range-coded compression."""

from vqtool.registry import Family, Media

ARCHITECTURE = "vqvae-image"

FAMILY = Family(
    name="image",
    package=__name__,
    architectures={ARCHITECTURE: "model:VQVAE"},
    media={"image": Media(ARCHITECTURE, default_model="cifar10")},
    headline_metrics=("psnr_db", "perplexity", "bits_per_dim", "sample_accuracy"),
)
