"""Model-card words of the image family: the VQ-VAE and its PixelCNN prior."""

from __future__ import annotations

from vqtool.cards import CardText

CARDS = {
    "image": CardText(
        intended_use="Research, teaching and creative use of discrete image codes from the vqtool CLI or Python API "
                     "(`vqtool encode`, `vqtool decode`, `vqtool sample`, `vqtool.load`). Not for decisions about people.",
        metric_notes=[
            "`psnr_db`: 10·log10(1/MSE) of the mean squared error over all held-out images, pixels in [0, 1], "
            "reconstructions rounded to 8 bits as `vqtool decode` writes them.",
            "`psnr_per_image_db`: the same per image, then averaged.",
            "`perplexity`: exp(entropy) of the code histogram over the held-out set (at most K); "
            "`codes_used`: share of the K codes that occur in it.",
        ],
        limitations=[
            "Trained on {data} only: other images go through (the network is fully convolutional and tiles "
            "large inputs) but come back softer, and fine texture and small text are lost at one code per "
            "{stride}x{stride} pixels.",
            "PSNR is an average over the held-out set and hides the worst images; edges are blurred.",
            "A lossy learned representation, not a secure or lossless codec.",
        ],
    ),
    "prior": CardText(
        metric_notes=[
            "`prior_bits_per_code`: -log2 p(z) of the held-out images' codes under the prior without a class, "
            "divided by the number of codes; `..._given_class`: the same given the true class.",
            "`decoder_bits_per_dim`: -log2 p(x | z) / (H·W·C), with p(x | z) a discretised logistic around the "
            "decoder's (unclamped) output, one scale per colour channel (`pixel_log_scale`, natural log, 0..255 "
            "units) fitted by maximum likelihood on 2,000 training images; the decoder itself was trained with MSE.",
            "`bits_per_dim`: (-log2 p(x | z) - log2 p(z)) / (H·W·C), the quantity the VQ-VAE paper reports "
            "(4.67 on CIFAR-10 with its own architecture), z being the encoder's codes of x.",
            "`compressed_payload_bytes`: mean range-coded payload per image (`vqtool encode --compress`); "
            "`compressed_cross_entropy_bytes`: the prior's cross-entropy on those codes, the ideal size; "
            "`..._file_bytes`: whole .vqc records including their JSON header (mean over the first 1,000 images).",
            "`packed_payload_bytes`: the same codes bit-packed at ceil(log2 K) bits; `png_bytes`: the original "
            "image as optimised PNG; `jpeg_bytes_at_same_psnr`: per image, the smallest Pillow JPEG (quality "
            "1..95, bisected) whose PSNR reaches that of the VQ-VAE reconstruction (`jpeg_psnr_db`: their mean).",
            "`sample_accuracy`: share of class-conditional samples (100 per class, temperature 1, no top-k) that "
            "the judge classifier assigns to the class they were drawn for; `judge_test_accuracy`: the judge on "
            "the real held-out images; `judge_reconstruction_accuracy`: on their VQ-VAE reconstructions.",
        ],
        limitations=[
            "Samples come from an 8x8 grid of codes: they have CIFAR-like colours and layouts, but objects are "
            "often not recognisable; the classifier accuracy on samples above says how often they are.",
            "Range coding under the prior is sequential (one network step per code), so `--compress` is limited "
            "to small images; the probabilities are computed in float64 and checked by a CRC on decode.",
        ],
    ),
}


def topics(meta: dict) -> list[str]:
    """A VQ-VAE's card; with the notes of its prior when the checkpoint carries one."""
    return [meta.get("extra", {}).get("task", "image")] + (["prior"] if meta["config"].get("prior") else [])


def fields(config: dict) -> dict:
    return {"stride": 2 ** config.get("downsamples", 0)}


def provenance_lines(prov: dict) -> list[str]:
    codec = prov.get("codec")
    if not codec:
        return []
    return [f"The prior was trained over the codes of VQ-VAE `{codec.get('name')}` (SHA-256 "
            f"`{str(codec.get('sha256'))[:16]}…`), itself trained for {codec.get('steps')} steps, batch "
            f"{codec.get('batch_size')}, {codec.get('train_seconds')} s: `{codec.get('command')}`. Its weights are "
            "unchanged here, so bit-packed codes made with it decode with this checkpoint.", ""]
