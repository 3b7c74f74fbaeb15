"""Deconvolutional latent-variable model of text (Shen et al., 2018): sentence codes from a
convolutional VAE with a deconvolutional decoder, trained jointly with a sentence-pair matcher."""

from vqtool.registry import Family

ARCHITECTURE = "text-deconv-vae"
DECODERS = {"deconv": "deconvolutional VAE (the paper's model)", "lstm": "VAE with an LSTM decoder (the paper's "
            "baseline)", "none": "supervised only (the same encoder and classifier, labelled pairs alone)"}



def sentence_length(layers: int) -> int:
    """The fixed length (words + <eos>) that `layers` convolutions of kernel 5, stride 2 reduce to 1."""
    return 2 ** (layers + 2) - 3


FAMILY = Family(
    name="text",
    package=__name__,
    architectures={ARCHITECTURE: "model:TextVAE"},
    headline_metrics=("test_accuracy", "test_f1", "test_word_accuracy"),
)
