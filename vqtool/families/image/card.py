"""Model-card words of the image family: the VQ-VAE and its PixelCNN prior, and the photo model."""

from __future__ import annotations

from vqtool.cards import CardText

PRIOR_NOTES = [
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
]

PRIOR_LIMITATIONS = [
    "Samples come from an 8x8 grid of codes: they have CIFAR-like colours and layouts, but objects are "
    "often not recognisable; the classifier accuracy on samples above says how often they are.",
    "Range coding under the prior is sequential (one network step per code), so `--compress` is limited "
    "to small images; the probabilities are computed in float64 and checked by a CRC on decode.",
]

MIXTURE_NOTE = ("`decoder_bits_per_dim`: -log2 p(x | z) / (H·W·C) under the decoder's own likelihood: a mixture of "
                "discretised logistics per pixel with linear dependence of green on red and blue on both (PixelCNN++), "
                "which the decoder was trained to maximise; the decoded image is its mean.")

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
        metric_notes=PRIOR_NOTES,
        limitations=PRIOR_LIMITATIONS,
    ),
    # a checkpoint whose decoder was trained by its likelihood (`vqtool train decoder`)
    "prior-mixture": CardText(
        metric_notes=[MIXTURE_NOTE if note.startswith("`decoder_bits_per_dim`") else note for note in PRIOR_NOTES],
        limitations=PRIOR_LIMITATIONS,
    ),
    "photo": CardText(
        intended_use="Compressing and coding photographs of any size from the vqtool CLI or Python API (`vqtool encode "
                     "photo.jpg --compress --quality q`, `vqtool decode`, `vqtool.load('photos')`); research and "
                     "teaching of residual vector quantisation. Not for decisions about people.",
        metric_notes=[
            "Every number is measured on the held-out photos at their full size (each photo once; nothing resized).",
            "`bpp`: bits per pixel of the whole `.vqc` file that `vqtool encode --compress --quality q` writes "
            "(header included), averaged over photos; `packed bpp`: the same codes bit-packed (no `--compress`).",
            "`PSNR`: 10·log10(1/MSE) of the mean squared error over all held-out photos (pixels in [0, 1], 8-bit "
            "output as `vqtool decode` writes it); `MS-SSIM`: pytorch-msssim's five-scale MS-SSIM (data range 255), "
            "mean over the photos large enough for five scales (more than 160 pixels a side; `ms_ssim_photos`).",
            "`JPEG`/`WebP bpp at same PSNR`: per photo, the smallest Pillow JPEG or WebP file (quality 1..95, "
            "bisected) whose PSNR reaches that photo's PSNR at this quality level, then averaged; when even quality "
            "1 is better than the photo model, that smallest file counts (in the baseline's favour). `size vs "
            "JPEG`: mean over photos of the photo model's file over JPEG's; `smaller than JPEG`: share of photos.",
            "`context_bits_per_code_float` / `..._integer`: the context model's cross-entropy on the codes of "
            "calibration training photos, as trained (float) and as the range coder runs it (integer network).",
        ],
        limitations=[
            "Trained on {data} only (about 900 photos, half of them 200x150 pixels or smaller, none over "
            "500x500): other photographs go through at any size (tiled), but the model has seen few kinds of "
            "scenes; faces, text and fine texture lose detail at one code position per {stride}x{stride} pixels.",
            "Its quality levels are the residual stages kept. It was trained briefly on CPUs (see Training), far "
            "less than published learned codecs, and does not reach their numbers.",
            "A lossy learned representation, not a secure or lossless codec.",
        ],
    ),
}


def evaluation_lines(meta: dict) -> list[str]:
    """The photo model's rate-distortion table (one row per quality level); other checkpoints: the plain
    one-row-per-metric table."""
    metrics = meta["metrics"]
    levels = metrics.get("photo_levels")
    plain = ["| metric | value |", "|---|---|",
             *[f"| {k} | {v} |" for k, v in metrics.items() if k != "photo_levels"]]
    if not levels:
        return plain

    def cell(value, digits=3):
        return "–" if value is None else f"{value:.{digits}f}"

    rows = ["| quality | bpp | packed bpp | PSNR dB | MS-SSIM | JPEG bpp at same PSNR | WebP bpp at same PSNR | "
            "size vs JPEG | size vs WebP | smaller than JPEG |", "|---|---|---|---|---|---|---|---|---|---|"]
    rows += [f"| {lv['quality']} | {cell(lv['bpp'])} | {cell(lv['packed_bpp'])} | {cell(lv['psnr_db'], 2)} | "
             f"{cell(lv['ms_ssim'], 4)} | {cell(lv.get('jpeg_bpp_at_psnr'))} | {cell(lv.get('webp_bpp_at_psnr'))} | "
             f"{cell(lv.get('size_vs_jpeg'), 2)} | {cell(lv.get('size_vs_webp'), 2)} | "
             f"{cell(lv.get('smaller_than_jpeg'), 2)} |" for lv in levels]
    return rows + [""] + plain


def topics(meta: dict) -> list[str]:
    """A VQ-VAE's card; with the notes of its prior when the checkpoint carries one."""
    prior = "prior-mixture" if meta["config"].get("mixtures") else "prior"
    return [meta.get("extra", {}).get("task", "image")] + ([prior] if meta["config"].get("prior") else [])


def fields(config: dict) -> dict:
    return {"stride": 2 ** (len(config["widths"]) if "widths" in config else config.get("downsamples", 0))}


def provenance_lines(prov: dict) -> list[str]:
    previous = prov.get("decoder_of")
    if previous:
        before = previous.get("metrics", {})
        return [f"Encoder, codebook and prior are those of `{previous.get('name')}` (SHA-256 "
                f"`{str(previous.get('sha256'))[:16]}…`), unchanged: the codes of an image and their prior bits are "
                "the same; only the decoder was retrained, by the likelihood of the pixels "
                "(`vqtool train decoder`). The previous decoder measured on the same "
                f"held-out images: PSNR {before.get('psnr_db')} dB, decoder bits/dim {before.get('decoder_bits_per_dim')}, "
                f"bits/dim {before.get('bits_per_dim')}, sample accuracy {before.get('sample_accuracy')}. Code files "
                "made with it still decode with it wherever it is installed: `vqtool decode` finds a checkpoint by "
                "the SHA-256 in the file's header.", ""]
    codec = prov.get("codec")
    if not codec:
        return []
    return [f"The prior was trained over the codes of VQ-VAE `{codec.get('name')}` (SHA-256 "
            f"`{str(codec.get('sha256'))[:16]}…`), itself trained for {codec.get('steps')} steps, batch "
            f"{codec.get('batch_size')}, {codec.get('train_seconds')} s: `{codec.get('command')}`. Its weights are "
            "unchanged here, so bit-packed codes made with it decode with this checkpoint.", ""]
