"""Fader Networks (Lample et al., 2017): attributes as sliders.

The encoder maps a face to a latent code from which a latent discriminator cannot read the
attributes: the discriminator learns to read them, and the encoder is rewarded when it reads the
opposite, with a weight ramped linearly from 0 so that the auto-encoder first learns to reconstruct.
The decoder gets every binary attribute as the pair (1 - alpha, alpha), as constant feature maps
beside its input at every layer; since the code no longer says whether a face smiles, the decoder
has to take that from alpha, and alpha can then be moved freely at test time.

A small attribute reader (the project's image classifier, trained beside the fader on the same
images) supplies the values of the attributes a user leaves alone: it sees the image, not the code.
It also guides the decoder, which the paper does not: faces decoded at random attributes should show
them to the (frozen) reader. Without that, the decoder ignored alpha on our short schedule; the README
has the measurements.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from vqtool.classifiers import Classifier, ClassifierConfig
from vqtool.errors import VqtoolError
from vqtool.evaluation import from_uint8, to_uint8
from vqtool.hub import bounded

from . import ARCHITECTURE, CRITIC_KINDS, UPSAMPLERS


@dataclass
class FaderConfig:
    attributes: list[str] = field(default_factory=list)
    rules: list[str] = field(default_factory=list)  # how each attribute was read from the training labels
    channels: int = 3
    image_size: int = 64
    widths: list[int] = bounded([32, 64, 128, 256, 256], 1, 12)  # 4x4 stride-2 convs
    # how the decoder doubles its resolution: "transposed" 4x4 stride-2 convolutions (the paper), or "nearest"
    # upsampling then a 3x3 convolution, which cannot draw the checkerboard that uneven kernel overlap makes
    # (Odena et al., 2016)
    upsample: str = "transposed"
    discriminator_hidden: int = 512
    discriminator_dropout: float = 0.3
    adversarial_weight: float = 1e-3  # lambda_E at the end of the ramp
    ramp_steps: int = 10_000  # lambda_E grows linearly from 0 over these steps
    discriminator_lr_scale: float = 4.0  # the discriminator's learning rate over the others'
    guidance_weight: float = 0.02  # the reader's loss on faces decoded at random attributes (not in the paper)
    reader_width: int = 16
    reader_pool: int = 2  # the reader sees faces average-pooled by this factor (see FaderNetwork.read)
    # > 0: the reader learns on real faces pushed by a 3-step PGD attack within this L2 radius (pixels in [0, 1];
    # ramped like lambda_E) to read them wrong (Madry et al., 2018): a robust reader's gradients point at
    # features a person sees (Santurkar et al., 2019), so guidance through it is harder to satisfy with a texture
    reader_robustness: float = 0.0
    alpha_range: list[float] = field(default_factory=lambda: [-0.5, 1.5])  # allowed at test time
    # > 0: a conditional patch critic judges decoded faces against real ones with the attributes given (not in
    # the paper): faces edited to an attribute must look like real faces that have it, which a texture does not
    critic_weight: float = 0.0
    critic_width: int = 16  # 32 doubled a training step on 2 CPU cores
    # "matching": the critic sees the attributes and learns real faces with flipped ones as fakes (an attribute
    # judge too); "realism": it sees the face only, and learns reconstructions and edits as fakes, so that it
    # judges realism alone and leaves the attributes to the reader
    critic_kind: str = "matching"


def ramp(config: FaderConfig, step: int) -> float:
    """Linear from 0 to 1 over the first `ramp_steps` training steps, then 1."""
    return min(1.0, step / max(1, config.ramp_steps))


def adversarial_weight(config: FaderConfig, step: int) -> float:
    """lambda_E after `step` training steps."""
    return config.adversarial_weight * ramp(config, step)


def attribute_maps(alphas: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """(N, A) alphas -> (N, 2A, H, W) constant maps: (1 - alpha, alpha) per attribute."""
    pairs = torch.stack([1 - alphas, alphas], dim=2).flatten(1)
    return pairs[:, :, None, None].expand(-1, -1, height, width)


class FaderNetwork(nn.Module):
    Config = FaderConfig
    architecture = ARCHITECTURE

    def __init__(self, config: FaderConfig):
        super().__init__()
        self.config = c = config
        if c.image_size % 2 ** len(c.widths):
            raise ValueError("image_size must be divisible by 2**len(widths)")
        for key, value, allowed in (("upsample", c.upsample, UPSAMPLERS), ("critic_kind", c.critic_kind, CRITIC_KINDS)):
            if value not in allowed:
                raise ValueError(f"{key} must be one of {', '.join(allowed)}, not {value!r}")
        count = len(c.attributes)
        layers, cin = [], c.channels
        for i, width in enumerate(c.widths):
            layers += [nn.Conv2d(cin, width, 4, 2, 1)] + ([nn.BatchNorm2d(width)] if i else []) + [nn.LeakyReLU(0.2)]
            cin = width
        self.encoder = nn.Sequential(*layers)
        outs = list(reversed(c.widths[:-1])) + [c.channels]
        self.decoder = nn.ModuleList()
        for i, width in enumerate(outs):
            last = i == len(outs) - 1
            double = (nn.ConvTranspose2d(cin + 2 * count, width, 4, 2, 1),) if c.upsample == "transposed" else (
                nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(cin + 2 * count, width, 3, 1, 1))
            self.decoder.append(nn.Sequential(*double, *([] if last else [nn.BatchNorm2d(width), nn.ReLU()])))
            cin = width
        side = c.image_size >> len(c.widths)
        self.discriminator = nn.Sequential(nn.Flatten(), nn.Linear(c.widths[-1] * side * side, c.discriminator_hidden),
                                           nn.LeakyReLU(0.2), nn.Dropout(c.discriminator_dropout),
                                           nn.Linear(c.discriminator_hidden, count))
        self.reader = Classifier(ClassifierConfig(c.channels, c.reader_width, list(c.attributes), multilabel=True))
        if c.critic_weight:
            w = c.critic_width
            seen = c.channels + (2 * count if c.critic_kind == "matching" else 0)
            self.critic = nn.Sequential(  # 64x64 -> 8x8 patch verdicts, each seeing about 34x34 pixels
                nn.Conv2d(seen, w, 4, 2, 1), nn.LeakyReLU(0.2),
                nn.Conv2d(w, 2 * w, 4, 2, 1), nn.LeakyReLU(0.2),
                nn.Conv2d(2 * w, 4 * w, 4, 2, 1), nn.LeakyReLU(0.2), nn.Conv2d(4 * w, 1, 3, 1, 1))
        self.register_buffer("steps_trained", torch.zeros((), dtype=torch.long))  # drives the ramp; resumes with it

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    @property
    def attributes(self) -> list[str]:
        return list(self.config.attributes)

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """(N, C, S, S) in [0, 1] -> the attribute-free latent code."""
        return self.encoder(images * 2 - 1)

    def decode(self, latent: torch.Tensor, alphas: torch.Tensor) -> torch.Tensor:
        """Latent code and (N, A) attribute values -> (N, C, S, S) in [0, 1]."""
        h = latent
        for layer in self.decoder:
            h = layer(torch.cat([h, attribute_maps(alphas.to(h.dtype), *h.shape[-2:])], 1))
        return (torch.tanh(h) + 1) / 2

    def reader_logits(self, images: torch.Tensor, weights: dict | None = None) -> torch.Tensor:
        """The reader looks at a face average-pooled to half resolution: attributes show at that scale, and
        pixel-level texture (the decoder's cheapest way to satisfy the guidance term) does not."""
        pooled = F.avg_pool2d(images, self.config.reader_pool) if self.config.reader_pool > 1 else images
        return self.reader(pooled) if weights is None else functional_call(self.reader, weights, (pooled,))

    def attacked(self, images: torch.Tensor, labels: torch.Tensor, steps: int = 3) -> torch.Tensor:
        """Real faces moved, within the L2 ball of radius `reader_robustness` around each, towards the reader
        reading them wrong (projected gradient steps of 2.5 radius / steps, as Madry et al.): what the
        reader trains on when it is to be robust. The reader's weights receive no gradient here."""
        radius = self.config.reader_robustness * ramp(self.config, int(self.steps_trained))
        if not radius:
            return images
        frozen = {name: p.detach() for name, p in self.reader.named_parameters()}
        delta, mode = torch.zeros_like(images), self.reader.training
        self.reader.eval()  # batch-norm statistics stay those of the real faces
        for _ in range(steps):
            delta.requires_grad_(True)
            loss = F.binary_cross_entropy_with_logits(self.reader_logits(images + delta, frozen), labels)
            grad, = torch.autograd.grad(loss, delta)
            step = grad / grad.flatten(1).norm(dim=1).clamp_min(1e-12)[:, None, None, None]
            delta = delta.detach() + 2.5 * radius / steps * step
            delta *= (radius / delta.flatten(1).norm(dim=1).clamp_min(1e-12)).clamp(max=1)[:, None, None, None]
            delta = (images + delta).clamp(0, 1) - images
        self.reader.train(mode)
        return (images + delta).detach()

    @torch.no_grad()
    def read(self, images: torch.Tensor) -> torch.Tensor:
        """(N, C, S, S) in [0, 1] -> (N, A) probabilities that each attribute holds (the reader)."""
        return torch.sigmoid(self.reader_logits(images))

    def forward(self, images: torch.Tensor, labels: torch.Tensor, generator: torch.Generator | None = None) -> dict:
        """Training pass: every output the losses need. The adversarial logits run the discriminator, and
        the guidance runs the reader, with detached weights, so that one optimizer step trains each player
        only on its own objective."""
        latent = self.encode(images)
        seen = self.attacked(images, labels) if self.training else images  # as they are, unless robust
        out = {"recon": self.decode(latent, labels), "judged": self.discriminator(latent.detach()),
               "read": self.reader_logits(seen), "ramp": ramp(self.config, int(self.steps_trained))}
        frozen = {name: p.detach() for name, p in self.discriminator.named_parameters()}
        out["fooled"] = functional_call(self.discriminator, frozen, (latent,))
        if self.config.guidance_weight or self.config.critic_weight:  # faces decoded at random binary attributes
            targets = (torch.rand(labels.shape, generator=generator) < 0.5).to(labels)
            edited = self.decode(latent, targets)
            out["targets"] = targets
        if self.config.guidance_weight:
            # the decoder must show the attributes it is given: the edits should be read as such by the reader
            # (frozen here, and in eval mode so that its batch-norm statistics stay those of real faces)
            frozen = {name: p.detach() for name, p in self.reader.named_parameters()}
            self.reader.eval()
            out["guided"] = self.reader_logits(edited, frozen)
            self.reader.train(self.training)
        if self.config.critic_weight:
            out.update(self.critic_outputs(images, labels, out["recon"], edited, targets))
        if self.training:
            self.steps_trained += 1
        return out

    def critic_logits(self, images: torch.Tensor, alphas: torch.Tensor | None = None,
                      weights: dict | None = None) -> torch.Tensor:
        """Patch verdicts (N, 1, h, w): a real face (that has the attributes `alphas`, for a matching critic)?"""
        x = images * 2 - 1
        if alphas is not None:
            x = torch.cat([x, attribute_maps(alphas.to(images.dtype), *images.shape[-2:])], 1)
        return self.critic(x) if weights is None else functional_call(self.critic, weights, (x,))

    def critic_outputs(self, images, labels, recon, edited, targets) -> dict:
        """The critic's verdicts for its own loss (real faces 1, fakes 0) and the frozen critic's on the decoded
        faces (`critic_fooled`: the decoder is rewarded when they pass for real). A matching critic sees the
        attributes: its fakes are faces decoded at random attributes (`edited`, at `targets`) and real faces
        with flipped attributes (`critic_mismatched`), so that it checks the attributes too. A realism critic
        sees faces only: its fakes are the reconstructions and the edits, whatever the attributes."""
        n = len(images)
        if self.config.critic_kind == "matching":
            fakes, fake_alphas = edited, targets
            seen, alphas = torch.cat([images, images, edited.detach()]), torch.cat([labels, 1 - labels, targets])
        else:
            fakes, fake_alphas = torch.cat([recon, edited]), None
            seen, alphas = torch.cat([images, fakes.detach()]), None
        judged = self.critic_logits(seen, alphas)  # one pass for the critic's own loss
        frozen = {name: p.detach() for name, p in self.critic.named_parameters()}
        out = {"critic_real": judged[:n], "critic_fake": judged[len(judged) - len(fakes):],
               "critic_fooled": self.critic_logits(fakes, fake_alphas, frozen)}
        if self.config.critic_kind == "matching":
            out["critic_mismatched"] = judged[n:2 * n]
        return out

    # --- editing -------------------------------------------------------------------------------------
    def attribute_index(self, name: str) -> int:
        if name not in self.config.attributes:
            raise VqtoolError(f"unknown attribute '{name}' for this model (valid: {', '.join(self.attributes)})")
        return self.config.attributes.index(name)

    def check_alpha(self, name: str, value: float) -> None:
        low, high = self.config.alpha_range
        if not low <= value <= high:
            raise VqtoolError(f"--{name} {value} is outside the model's range {low}..{high} "
                              "(0 = without, 1 = with; beyond that exaggerates)")

    def with_settings(self, read: torch.Tensor, settings: dict[str, float] | None = None) -> torch.Tensor:
        """(N, A) attribute values: `read` (what the reader saw), overridden by `settings` (checked)."""
        values = read.clone()
        for name, value in (settings or {}).items():
            self.check_alpha(name, value)
            values[:, self.attribute_index(name)] = value
        return values

    @torch.no_grad()
    def variants(self, images: torch.Tensor, settings_list: list[dict]) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """What the reader sees in `images`, and the faces decoded at each settings dict: one encode and
        one read for all of them (a sweep, or an edit and the reconstruction that `--paste` subtracts)."""
        images = images.to(self.device)
        latent, read = self.encode(images), self.read(images)
        return read, [self.decode(latent, self.with_settings(read, settings)) for settings in settings_list]

    def edit(self, images: torch.Tensor, settings: dict[str, float] | None = None) -> torch.Tensor:
        """Faces with the named attributes set to the given alphas, the others kept as read."""
        return self.variants(images, [settings or {}])[1][0]

    def sweep(self, images: torch.Tensor, name: str, values, settings: dict[str, float] | None = None) -> torch.Tensor:
        """(len(values), N, C, S, S): the faces as `name` moves through `values` (others as `settings`/read)."""
        return torch.stack(self.variants(images, [{**(settings or {}), name: float(v)} for v in values])[1])

    to_uint8 = staticmethod(to_uint8)

    def from_uint8(self, arrays) -> torch.Tensor:
        return from_uint8(arrays, self.device)


# --- the user's own photos ---------------------------------------------------------------------------
MIN_FACE = 16  # pixels: a smaller crop holds too little face to edit


def face_box(width: int, height: int, box: tuple[int, int, int, int] | None, source: str = "") -> tuple[int, ...]:
    """The region (x, y, w, h) the model sees: `box` if given, else the centred largest square."""
    if box is None:
        side = min(width, height)
        box = ((width - side) // 2, (height - side) // 2, side, side)
    x, y, w, h = box
    if w < 1 or h < 1 or x < 0 or y < 0 or x + w > width or y + h > height:
        raise VqtoolError(f"crop {x},{y},{w},{h} does not lie inside the {width}x{height} image", source)
    if min(w, h) < MIN_FACE:
        raise VqtoolError(f"face region {w}x{h} is too small to edit (at least {MIN_FACE}x{MIN_FACE} pixels)", source)
    return x, y, w, h


def frame(photo, box, size: int, channels: int) -> np.ndarray:
    """The crop resized (stretched if not square) to the model's size x size, as (S, S, C) uint8."""
    from PIL import Image

    x, y, w, h = box
    face = photo.crop((x, y, x + w, y + h)).convert("L" if channels == 1 else "RGB")
    array = np.array(face.resize((size, size), Image.BICUBIC), dtype=np.uint8)  # writable, for torch
    return array[:, :, None] if array.ndim == 2 else array


def edit_photo(net: FaderNetwork, photo, box, settings: dict[str, float], paste: bool = False):
    """(pixels, what the reader saw) for a PIL photo: the edited face at the model's size, or with
    `paste` the whole photo with the change pasted into `box` (see paste_edit)."""
    face = net.from_uint8(frame(photo, box, net.config.image_size, net.config.channels)[None])
    read, faces = net.variants(face, [settings, {}] if paste else [settings])
    edited = net.to_uint8(faces[0])[0]
    return (paste_edit(photo, box, edited, net.to_uint8(faces[1])[0]) if paste else edited), read[0]


def feather_mask(height: int, width: int, feather: float = 0.12) -> np.ndarray:
    """(H, W) weights: 1 inside, falling linearly to 0 over `feather` of each side towards the border."""
    ramp = lambda n: np.clip(np.minimum(np.arange(n) + 0.5, n - np.arange(n) - 0.5) / max(1.0, feather * n), 0, 1)  # noqa: E731
    return ramp(height)[:, None] * ramp(width)[None, :]


def pasted_faces(originals: np.ndarray, edited: np.ndarray, reconstructed: np.ndarray) -> np.ndarray:
    """uint8 (N, S, S, C) faces as `fade --paste` makes them at the model's size: each original plus the change
    its edit makes to its reconstruction, feathered at the border."""
    change = edited.astype(np.float32) - reconstructed.astype(np.float32)
    change = change * feather_mask(*originals.shape[1:3])[:, :, None]
    return np.clip(np.round(originals.astype(np.float32) + change), 0, 255).astype(np.uint8)


def paste_edit(photo, box, edited: np.ndarray, reconstructed: np.ndarray, feather: float = 0.12) -> np.ndarray:
    """Add the edit (edited - reconstructed face, upscaled to the crop) to the full-resolution photo.

    Only the change is pasted, so the photo keeps its own detail where the edit does nothing; the change
    fades out towards the crop's border (`feather`: share of the side) so that no seam shows. A grayscale
    model's change is added to every colour channel."""
    from PIL import Image

    x, y, w, h = box
    change = edited.astype(np.float32) - reconstructed.astype(np.float32)
    planes = [np.asarray(Image.fromarray(change[:, :, c]).resize((w, h), Image.BICUBIC)) for c in range(change.shape[2])]
    change = np.stack(planes, 2)
    change *= feather_mask(h, w, feather)[:, :, None]
    out = np.asarray(photo.convert("RGB"), dtype=np.float32).copy()
    out[y:y + h, x:x + w] += change  # broadcasts one gray plane over RGB
    return np.clip(np.round(out), 0, 255).astype(np.uint8)
