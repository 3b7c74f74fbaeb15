"""Deconvolutional latent-variable model of text (Shen et al., 2018): sentence codes from a
convolutional VAE with a deconvolutional decoder, trained jointly with a sentence-pair matcher."""

from vqtool.registry import Family

ARCHITECTURE = "text-deconv-vae"
DECODERS = {"deconv": "deconvolutional VAE (the paper's model)", "lstm": "VAE with an LSTM decoder (the paper's "
            "baseline)", "none": "supervised only (the same encoder and classifier, labelled pairs alone)"}

FAMILY = Family(
    name="text",
    package=__name__,
    architectures={ARCHITECTURE: "model:TextVAE"},
    headline_metrics=("test_accuracy", "test_f1", "test_word_accuracy"),
)
