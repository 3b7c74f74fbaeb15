"""Image VQ-VAE (van den Oord et al., 2017) with a class-conditional PixelCNN prior: codes, samples,
range-coded compression."""

from vqtool.registry import Family, Media

ARCHITECTURE = "vqvae-image"
PHOTO_ARCHITECTURE = "rvq-photo"  # residual codebooks and a parallel context model (photo.py)

FAMILY = Family(
    name="image",
    package=__name__,
    architectures={ARCHITECTURE: "model:VQVAE", PHOTO_ARCHITECTURE: "photo:PhotoVQ"},
    # `vqtool encode` without --model: photos, or cifar10 for images of at most 32x32 pixels (codec.default_model)
    media={"image": Media((ARCHITECTURE, PHOTO_ARCHITECTURE), default_model="photos")},
    headline_metrics=("psnr_db", "bpp", "perplexity", "bits_per_dim", "sample_accuracy"),
)
