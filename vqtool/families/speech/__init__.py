"""Speech VQ-VAE: codes every 20 ms, a speaker-conditioned decoder, voice conversion."""

from vqtool.registry import Family, Media

ARCHITECTURE = "vqvae-speech"

FAMILY = Family(
    name="speech",
    package=__name__,
    architectures={ARCHITECTURE: "model:SpeechVQVAE"},
    media={"audio": Media(ARCHITECTURE, default_model="speech")},
)
