"""Training and held-out evaluation of the image VQ-VAE, and of a PixelCNN prior on top of it.

The prior's training split is encoded once (and its mirror image, which doubles the data at no risk: a
mirrored photo is still a photo); the prior then trains on code grids with the shared loop. The
exported checkpoint is the VQ-VAE with the prior inside, so one name gives codes, samples and
compression, and the VQ-VAE's own metrics and provenance travel with it.
"""

from __future__ import annotations

import io
import math
from dataclasses import asdict, replace

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from vqtool.codes import entropy_bits
from vqtool.evaluation import in_batches, judge_record, mse_per_image, psnr_metrics
from vqtool.training import TaskBase

from .compress import compress, decompress
from .likelihood import mixture_log_prob
from .model import VQVAE, VQVAEConfig
from .prior import PriorConfig, fit_log_scale

LN2 = math.log(2)


def encode_all(model: VQVAE, images: torch.Tensor, flip: bool = False) -> torch.Tensor:
    """uint8 images (N, H, W, C) -> codes (N, h, w) int16 (mirrored first when `flip`)."""
    return in_batches(lambda part: model.encode((part.flip(2) if flip else part).numpy()).short(), images)


def training_codes(base: VQVAE, images, flip: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """(codes, labels) of a training set encoded once, with its mirror image when `flip`."""
    codes = [encode_all(base, images.images)] + ([encode_all(base, images.images, flip=True)] if flip else [])
    return torch.cat(codes), images.labels.repeat(len(codes))


def array_codes(base: VQVAE, path: str) -> tuple[torch.Tensor, torch.Tensor, list[str], dict]:
    """(codes, labels, classes, meta) of a codes.npz made with this VQ-VAE; labels are the names'
    parent folders (-1 for a name without one)."""
    from vqtool.codearrays import open_code_array
    from vqtool.codefiles import check_made_by
    from vqtool.codes import CodeFile
    from vqtool.errors import VqtoolError

    array = open_code_array(path)
    try:
        check_made_by(base, CodeFile(None, array.meta["model"], array.meta["checkpoint_sha256"],
                                     array.meta["codebook_size"]), base.name, path)
        if array.meta["codebook_size"] != base.config.num_codes:
            raise VqtoolError(f"codebook of {array.meta['codebook_size']}, but {base.name} has {base.config.num_codes}",
                              path)
        codes = torch.empty((array.count, *array.grid), dtype=torch.int16 if base.config.num_codes <= 1 << 15
                            else torch.int32)
        for start, chunk in array.chunks():
            codes[start:start + len(chunk)] = torch.from_numpy(chunk)
        parents = [name.rsplit("/", 1)[0].rsplit("/", 1)[-1] if "/" in name else "" for name in array.names]
        classes = sorted(set(parents) - {""})
        index = {c: i for i, c in enumerate(classes)}
        labels = torch.tensor([index.get(p, -1) for p in parents], dtype=torch.long)
        return codes, labels, classes, array.meta
    finally:
        array.close()


class VQVAETask(TaskBase):
    """Training recipe for `fit`: MSE reconstruction + quantiser loss, evaluated on a held-out set."""

    model_class = VQVAE

    def __init__(self, config: VQVAEConfig, train, eval_path: str | None, flip: bool = True,
                 eval_limit: int | None = None, data_info: dict | None = None):
        self.config, self.train, self.eval_path = config, train, eval_path
        self.flip, self.eval_limit, self.data_info = flip, eval_limit, data_info or {}

    def batch(self, indices, device, generator):
        if self.train.images.device != device:  # the whole set fits on any GPU: move it once
            self.train.images = self.train.images.to(device)
        images = self.train.images[indices.to(device)].permute(0, 3, 1, 2).float().div_(255)
        if self.flip:
            mirror = (torch.rand(len(indices), generator=generator) < 0.5).to(device)
            images[mirror] = images[mirror].flip(-1)
        return images

    def loss(self, model, images, generator):
        recon, quant = model(images)
        mse = F.mse_loss(recon, images)
        return mse + quant.loss, {"mse": mse.item(), "perplexity": quant.perplexity.item(),
                                  "usage": quant.usage.item()}

    def evaluate(self, model: VQVAE, device) -> dict:
        from vqtool.data.images import load_images

        if not self.eval_path:
            return {}
        held_out = load_images(self.eval_path, limit=self.eval_limit)
        return evaluate_reconstruction(model, held_out.images) | {"eval_images": len(held_out)}

    def card_notes(self) -> dict:
        return {"task": "image", "summary": summary(self.config)}


def summary(config: VQVAEConfig) -> str:
    """The card's first sentence for an image VQ-VAE: its codes, its decoder and its prior, if any."""
    stride = 2 ** config.downsamples
    text = (f"Encodes RGB images to a grid of discrete codes (one code per {stride}x{stride} pixels, "
            f"K = {config.num_codes}) and decodes them back")
    if config.mixtures:
        text += (f" through a decoder that predicts a mixture of {config.mixtures} discretised logistics per pixel "
                 "(its mean is the decoded image)")
    if config.prior:
        kind = "class-conditional " if config.prior.get("classes") else ""
        text += (f"; a {kind}gated PixelCNN prior over the codes samples new images and range-codes codes for "
                 "`vqtool encode --compress`")
    return text + "."


def evaluate_reconstruction(model: VQVAE, images: torch.Tensor, batch: int = 500) -> dict:
    """PSNR and MSE of uint8 reconstructions (as the CLI writes them) and codebook statistics."""
    errors, histogram = [], torch.zeros(model.config.num_codes)
    for start in range(0, len(images), batch):
        originals = images[start:start + batch].numpy()
        codes = model.encode(originals)
        histogram += torch.bincount(codes.flatten().cpu(), minlength=model.config.num_codes)
        errors.append(mse_per_image(originals, model.to_uint8(model.decode(codes, originals.shape[1:3]))))
    mse = np.concatenate(errors)
    perplexity = 2 ** entropy_bits(histogram.numpy())
    return {**psnr_metrics(mse), "mse": round(float(mse.mean()), 6), "perplexity": round(perplexity, 1),
            "codes_used": round(float((histogram > 0).float().mean()), 4)}


class PriorTask(TaskBase):
    """Recipe for `fit`: cross-entropy of the prior on code grids; the VQ-VAE stays frozen."""

    model_class = VQVAE

    def __init__(self, base: VQVAE, prior: PriorConfig, codes: torch.Tensor, labels: torch.Tensor,
                 scale_images: torch.Tensor | None, eval_path: str | None, eval_limit: int | None = None, judge=None,
                 data_info: dict | None = None, name: str = "cifar10"):
        """`codes` (N, h, w) and `labels` (N, -1 for none) are the training grids; `scale_images` (uint8
        N, H, W, C) fit the decoder's pixel scale, or None to keep the VQ-VAE's prior's; `judge`: a loaded
        image classifier (`load_judge`) that scores class-conditional samples."""
        self.base, self.eval_path, self.name = base, eval_path, name
        self.eval_limit, self.judge = eval_limit, judge
        self.data_info = {**(data_info or {}), **({"judge": judge_record(judge)} if judge is not None else {})}
        self.codes, self.labels, self.scale_images = codes, labels, scale_images
        self.prior_config = prior = replace(prior, grid=list(self.codes.shape[1:]))
        self.config = replace(base.config, prior=asdict(prior))

    def build(self) -> VQVAE:
        model = VQVAE(self.config)
        codec = {k: v for k, v in self.base.state_dict().items() if not k.startswith("prior.")}  # an old prior goes
        model.load_state_dict({**model.state_dict(), **codec})
        for name, param in model.named_parameters():
            param.requires_grad_(name.startswith("prior."))
        # the discrete likelihood p(x | z) of the frozen decoder: one logistic scale per channel,
        # fitted by maximum likelihood on training images (or kept from the VQ-VAE's prior)
        with torch.no_grad():
            if self.scale_images is None:
                model.prior.pixel_log_scale.copy_(self.base.prior.pixel_log_scale)
                return model
            originals = self.scale_images.permute(0, 3, 1, 2)
            mean = decoder_mean(self.base, self.base.encode(self.scale_images.numpy()))
            model.prior.pixel_log_scale.copy_(fit_log_scale(mean, originals))
        return model

    def dataset_size(self) -> int:
        return len(self.codes)

    def batch(self, indices, device, generator):
        labels = self.labels[indices].clone()
        labels[torch.rand(len(indices), generator=generator) < self.prior_config.class_dropout] = -1
        return self.codes[indices].long().to(device), labels.to(device)

    def loss(self, model, batch, generator):
        codes, labels = batch
        nats = F.cross_entropy(model(codes=codes, labels=labels), codes)
        return nats, {"bits_per_code": nats.item() / LN2}

    def evaluate(self, model: VQVAE, device) -> dict:
        from vqtool.data.images import load_images

        if not self.eval_path:
            return {}
        held_out = load_images(self.eval_path, limit=self.eval_limit)
        metrics = dict(self.base.metadata.get("metrics", {})) if hasattr(self.base, "metadata") else {}
        return metrics | evaluate_with_prior(model, held_out, self.name, self.judge, device)

    def card_notes(self) -> dict:
        return {"task": "image", "codec_sha256": self.base.metadata.get("extra", {}).get("codec_sha256") or self.base.sha256,
                "summary": summary(self.config)}


class DecoderTask(TaskBase):
    """Recipe for `fit`: a VQ-VAE's decoder retrained by the likelihood of the pixels given their codes (a
    discretised logistic mixture). Encoder, codebook and prior stay as they are, so every code keeps its
    meaning, the prior's bits still hold, and the training images are encoded once (with their mirror
    images). A share of the training images is held back to pick the best weights (`validate`)."""

    model_class = VQVAE
    validate_every = 1000
    select_by = "negative_bits_per_dim"

    def __init__(self, base: VQVAE, mixtures: int, decoder_res_blocks: int | None, images, eval_path: str | None,
                 validation: int = 2000, eval_limit: int | None = None, judge=None, data_info: dict | None = None,
                 name: str = "cifar10"):
        self.base, self.eval_path, self.eval_limit, self.judge, self.name = base, eval_path, eval_limit, judge, name
        self.config = replace(base.config, mixtures=mixtures, decoder_res_blocks=decoder_res_blocks)
        order = torch.randperm(len(images), generator=torch.Generator().manual_seed(0))
        held, kept = order[:validation], order[validation:]
        self.valid_images = images[held]
        self.valid_codes = encode_all(base, self.valid_images)
        self.images = images[kept]
        self.codes = torch.cat([encode_all(base, self.images), encode_all(base, self.images, flip=True)])
        self.data_info = {**(data_info or {}), "validation_items": len(held), "train_items": len(kept),
                          **({"judge": judge_record(judge)} if judge is not None else {})}

    def build(self) -> VQVAE:
        model = VQVAE(self.config)
        own = model.state_dict()  # everything whose name and shape match starts from the base
        start = {k: v for k, v in self.base.state_dict().items() if k in own and own[k].shape == v.shape}
        model.load_state_dict({**own, **start})
        for name, param in model.named_parameters():
            param.requires_grad_(name.startswith("decoder."))
        return model

    def dataset_size(self) -> int:
        return len(self.codes)

    def batch(self, indices, device, generator):
        count = len(self.images)
        pixels = self.images[indices % count].permute(0, 3, 1, 2)
        mirrored = indices >= count
        pixels[mirrored] = pixels[mirrored].flip(-1)
        return self.codes[indices].long().to(device), pixels.to(device)

    def loss(self, model, batch, generator):
        codes, pixels = batch
        nats = -mixture_log_prob(model(decode_codes=codes), pixels).mean() / pixels[0].numel()
        return nats, {"bits_per_dim": nats.item() / LN2}

    def validate(self, model: VQVAE, device) -> dict:
        bits = in_batches(lambda z, x: model.pixel_bits(z, x.permute(0, 3, 1, 2)), self.valid_codes, 500,
                          self.valid_images)
        per_dim = float(bits.mean()) / self.valid_images[0].numel()
        return {"decoder_bits_per_dim": round(per_dim, 4), "negative_bits_per_dim": -round(per_dim, 4)}

    def evaluate(self, model: VQVAE, device) -> dict:
        from vqtool.data.images import load_images

        if not self.eval_path:
            return {}
        held_out = load_images(self.eval_path, limit=self.eval_limit)
        metrics = evaluate_reconstruction(model, held_out.images) | {"eval_images": len(held_out)}
        return metrics | evaluate_with_prior(model, held_out, self.name, self.judge, device)

    def card_notes(self) -> dict:
        return {"task": "image", "summary": summary(self.config)}


def decoder_mean(model: VQVAE, codes: torch.Tensor) -> torch.Tensor:
    """The decoder's unclamped output (N, C, H, W): the mean of the discretised logistic."""
    return in_batches(lambda part: model.decode(part.long(), clamp=False), codes, 500)


def _nll_bits(model: VQVAE, codes: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
    """-log2 p(z) per grid; labels None for the unconditional prior."""
    labels = torch.full((len(codes),), -1) if labels is None else labels
    return in_batches(lambda part, lab: model.prior.nll_bits(part.long().to(model.device), lab.to(model.device)),
                      codes, 500, labels).double()


def pillow_at_psnr(original: np.ndarray, target_db: float, fmt: str = "JPEG") -> tuple[int, float]:
    """Smallest Pillow JPEG or WebP (quality 1..95) of an image whose PSNR reaches target_db: (bytes, PSNR).
    When even quality 1 is better than the target, its size (the baseline's smallest file)."""
    def attempt(quality):
        buffer = io.BytesIO()
        Image.fromarray(original).save(buffer, fmt, quality=quality)
        decoded = np.asarray(Image.open(io.BytesIO(buffer.getvalue())).convert("RGB"), dtype=np.float64)
        mse = ((decoded - original) ** 2).mean() / 255**2
        return buffer.tell(), (99.0 if mse == 0 else -10 * math.log10(mse))

    low, high = 1, 95
    while low < high:  # PSNR grows with quality (near enough to bisect)
        middle = (low + high) // 2
        if attempt(middle)[1] >= target_db:
            high = middle
        else:
            low = middle + 1
    return attempt(low)


def evaluate_prior(model: VQVAE, held_out, name: str = "cifar10", batch: int = 1000, decode_check: int = 200) -> dict:
    """The paper's numbers on held-out images: prior NLL, bits/dim, and the compression table."""
    from vqtool.codes import bits_per_code

    from .codec import image_record

    images = held_out.images
    count, dims = len(images), images[0].numel()
    codes = encode_all(model, images)
    grid = tuple(codes.shape[1:])
    prior_bits = _nll_bits(model, codes, None)
    class_bits = _nll_bits(model, codes, held_out.labels)
    decoder_bits = in_batches(lambda z, x: model.pixel_bits(z, x.permute(0, 3, 1, 2)), codes, batch, images)
    # compression: range-coded records against bit-packed ones, PNG and JPEG at the reconstruction's PSNR
    payloads = [p for start in range(0, count, batch) for p in compress(model.prior, codes[start:start + batch])]
    check = decompress(model.prior, payloads[:decode_check], grid)
    exact = bool((check == codes[:decode_check].numpy()).all())
    # whole records as `vqtool encode` writes them for a checkpoint called `name` (header included),
    # for the first 1,000 images
    sha, k = getattr(model, "sha256", "0" * 64), model.config.num_codes
    records = [(image_record(codes[i].numpy(), tuple(images.shape[1:]), name, sha, k), payloads[i])
               for i in range(min(count, 1000))]
    packed_file = np.mean([len(record.to_bytes()) for record, _ in records])
    range_file = np.mean([len(record.to_bytes(payload)) for record, payload in records])
    png, jpeg, jpeg_psnr = [], [], []
    restored = model.to_uint8(in_batches(lambda part: model.decode(part.long()), codes, batch))
    for original, back in zip(images.numpy(), restored):
        buffer = io.BytesIO()
        Image.fromarray(original).save(buffer, "PNG", optimize=True)
        png.append(buffer.tell())
        mse = ((back.astype(np.float64) - original) ** 2).mean() / 255**2
        size, psnr = pillow_at_psnr(original, -10 * math.log10(max(mse, 1e-10)))
        jpeg.append(size)
        jpeg_psnr.append(psnr)
    payload_bytes = np.array([len(p) for p in payloads], dtype=np.float64)
    return {
        "prior_bits_per_code": round(float(prior_bits.mean()) / math.prod(grid), 4),
        "prior_bits_per_code_given_class": round(float(class_bits.mean()) / math.prod(grid), 4),
        "decoder_bits_per_dim": round(float(decoder_bits.mean()) / dims, 4),
        "bits_per_dim": round(float((decoder_bits + prior_bits).mean()) / dims, 4),
        **({} if model.config.mixtures else
           {"pixel_log_scale": [round(float(v), 4) for v in model.prior.pixel_log_scale]}),
        "compressed_payload_bytes": round(float(payload_bytes.mean()), 2),
        "compressed_cross_entropy_bytes": round(float(prior_bits.mean()) / 8, 2),
        "compressed_file_bytes": round(float(range_file), 1),
        "packed_payload_bytes": math.ceil(math.prod(grid) * bits_per_code(k) / 8),
        "packed_file_bytes": round(float(packed_file), 1),
        "png_bytes": round(float(np.mean(png)), 1),
        "jpeg_bytes_at_same_psnr": round(float(np.mean(jpeg)), 1),
        "jpeg_psnr_db": round(float(np.mean(jpeg_psnr)), 3),
        "compressed_decode_exact": exact,
        "prior_eval_images": count,
    }


def evaluate_with_prior(model: VQVAE, held_out, name: str, judge, device) -> dict:
    """The numbers a checkpoint with a prior reports: `evaluate_prior`, and the judge's on samples if given."""
    metrics = evaluate_prior(model, held_out, name)
    return metrics | (evaluate_samples(model, judge.to(device), held_out) if judge is not None else {})


def evaluate_samples(model: VQVAE, judge, held_out, per_class: int = 100, seed: int = 0) -> dict:
    """A classifier's accuracy on class-conditional samples, next to its accuracy on real test images."""
    classes = model.prior.config.classes
    labels = torch.arange(len(classes)).repeat_interleave(per_class)
    images = []
    for start in range(0, len(labels), 250):
        codes = model.sample(labels[start:start + 250], seed + start)
        images.append(model.to_uint8(model.decode(codes)))
    samples = torch.from_numpy(np.concatenate(images))
    real = judge.accuracy(held_out.images, held_out.labels)
    recon = judge.accuracy(model.to_uint8(in_batches(lambda part: model.decode(part.long()),
                                                     encode_all(model, held_out.images))), held_out.labels)
    return {"sample_accuracy": round(judge.accuracy(samples, labels), 4), "samples_judged": len(labels),
            "judge": judge.name, "judge_test_accuracy": round(real, 4),
            "judge_reconstruction_accuracy": round(recon, 4)}
