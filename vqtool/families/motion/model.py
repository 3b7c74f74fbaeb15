"""A conditional VAE of human motion: the observed frames are the condition, the next frames the data.

Encoders are temporal convolutions over fixed-length windows (50 observed frames; the future with the
last observed frame in front), not GRUs: the windows have a fixed length, convolutions see all frames
at once (fast on CPUs, where a GRU walks 50 steps one after another) and see velocities directly
(each frame's input is its pose and its change from the frame before). The decoder is a GRU that rolls
out residual updates, pose_{t+1} = pose_t + f(state), from the last observed pose, so that the first
predicted frame starts where the clip ends. The latent and its prior come from `vqtool.cvae`."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from vqtool.cvae import ConditionalLatent, LatentConfig

from . import ARCHITECTURE

FRAME_VALUES = 117


@dataclass
class MotionConfig(LatentConfig):  # prior, latent, beta, anneal_steps, free_bits
    channels: list[int] = field(default_factory=list)  # modelled values of a frame (the others are held)
    observed: int = 50
    predicted: int = 25
    frame_stride: int = 2  # input files are at 50 frames/s; the model runs at 25
    fps: float = 25.0
    hidden: int = 256
    width: int = 128
    likelihood_std: float = 0.1  # radians: the Gaussian likelihood's scale that weighs errors against the KL
    dropout: float = 0.0  # on the condition's features and the decoder's pose input, in training
    weight_decay: float = 0.0  # Adam's L2 penalty (a training setting, kept with the others)
    balance_actions: bool = False  # training batches draw each action equally often


def _conv_length(length: int, layers: int) -> int:
    for _ in range(layers):
        length = (length + 2 - 4) // 2 + 1
    return length


class TemporalEncoder(nn.Module):
    """[B, T, D] poses -> [B, hidden]: poses and velocities through stride-2 convolutions."""

    def __init__(self, channels: int, length: int, width: int, hidden: int, layers: int = 3):
        super().__init__()
        blocks, size = [nn.Conv1d(2 * channels, width, 3, padding=1), nn.GELU()], width
        for _ in range(layers):
            blocks += [nn.Conv1d(size, width, 4, stride=2, padding=1), nn.GELU()]
        self.convs = nn.Sequential(*blocks)
        self.out = nn.Sequential(nn.Flatten(), nn.Linear(width * _conv_length(length, layers), hidden), nn.Tanh())

    def forward(self, poses: torch.Tensor) -> torch.Tensor:
        velocity = torch.cat([torch.zeros_like(poses[:, :1]), poses[:, 1:] - poses[:, :-1]], 1)
        return self.out(self.convs(torch.cat([poses, velocity], -1).transpose(1, 2)))


class MotionCVAE(nn.Module):
    Config = MotionConfig
    architecture = ARCHITECTURE

    def __init__(self, config: MotionConfig):
        super().__init__()
        self.config = c = config
        dims, hidden = len(c.channels), c.hidden
        self.register_buffer("mean", torch.zeros(FRAME_VALUES))
        self.register_buffer("std", torch.ones(FRAME_VALUES))
        self.register_buffer("channel_index", torch.tensor(c.channels, dtype=torch.long))
        self.register_buffer("steps_trained", torch.zeros((), dtype=torch.long))
        self.drop = nn.Dropout(c.dropout)
        self.condition_encoder = TemporalEncoder(dims, c.observed, c.width, hidden)
        self.latent = ConditionalLatent(c, hidden, hidden)
        z = self.latent.size
        if z:
            self.future_encoder = TemporalEncoder(dims, c.predicted + 1, c.width, hidden)
        if c.prior == "cpp":  # the condition's own VAE reconstructs the observed frames from z_c
            self.condition_decoder = nn.Sequential(nn.Linear(z, hidden), nn.GELU(), nn.Linear(hidden, c.observed * dims))
        self.start = nn.Sequential(nn.Linear(hidden + z, hidden), nn.Tanh())
        self.cell = nn.GRUCell(dims + z + hidden, hidden)
        self.step_out = nn.Linear(hidden, dims)
        nn.init.zeros_(self.step_out.weight)  # start as zero velocity
        nn.init.zeros_(self.step_out.bias)

    # ---- normalised modelled channels <-> raw frames ----
    def normalise(self, frames: torch.Tensor) -> torch.Tensor:
        index = self.channel_index
        return (frames[..., index] - self.mean[index]) / self.std[index]

    def raw(self, poses: torch.Tensor) -> torch.Tensor:
        index = self.channel_index
        return poses * self.std[index] + self.mean[index]

    def rollout(self, condition_h, last_pose, z, frames: int) -> torch.Tensor:
        """Normalised poses [B, frames, D] from the last observed pose, one residual step at a time."""
        extra = [z] if z is not None else []
        condition_h = self.drop(condition_h)
        state = self.start(torch.cat([condition_h, *extra], -1))
        pose, out = last_pose, []
        for _ in range(frames):
            state = self.cell(torch.cat([self.drop(pose), *extra, condition_h], -1), state)
            pose = pose + self.step_out(state)
            out.append(pose)
        return torch.stack(out, 1)

    def encode(self, observed: torch.Tensor, future: torch.Tensor, generator=None):
        """Raw windows -> (normalised observed poses, the condition's features, z, the KL terms of
        `ConditionalLatent.posterior`): everything but the decoder."""
        past = self.normalise(observed)
        condition_h = self.condition_encoder(past)
        z, terms = None, {}
        if self.latent.size:
            data_h = self.future_encoder(torch.cat([past[:, -1:], self.normalise(future)], 1))
            z, terms = self.latent.posterior(data_h, condition_h, generator)
        return past, condition_h, z, terms

    def forward(self, observed: torch.Tensor, future: torch.Tensor, generator=None) -> dict:
        """Training pass on raw windows: observed [B, 50, 117], future [B, 25, 117]."""
        if self.training:
            self.steps_trained += 1
        past, condition_h, z, terms = self.encode(observed, future, generator)
        out = {"future": self.raw(self.rollout(condition_h, past[:, -1], z, future.shape[1])), "terms": terms}
        if "z_c" in terms:
            out["condition"] = self.raw(self.condition_decoder(terms["z_c"]).view(past.shape))
        return out

    @torch.no_grad()
    def sample(self, observed: torch.Tensor, samples: int = 1, frames: int | None = None,
               generator: torch.Generator | None = None) -> torch.Tensor:
        """Futures of raw windows [B, >=50, 117] (25 frames/s) -> [B, samples, frames, 117]. Values the model
        does not move (the root's position and rotation, constant channels) keep their last observed value."""
        c = self.config
        frames = frames or c.predicted
        observed = observed[:, -c.observed:].to(self.mean.device, torch.float32)
        past = self.normalise(observed)
        condition_h = self.condition_encoder(past)
        batch = observed.shape[0]
        repeated = condition_h.repeat_interleave(samples, 0)
        z = self.latent.prior(repeated, generator)
        poses = self.raw(self.rollout(repeated, past[:, -1].repeat_interleave(samples, 0), z, frames))
        full = observed[:, -1:].repeat_interleave(samples, 0).expand(-1, frames, -1).clone()
        full[..., self.channel_index] = poses
        return full.view(batch, samples, frames, FRAME_VALUES)

    def window_of(self, clip: np.ndarray, stride: int | None = None) -> np.ndarray:
        """What the model sees of a clip [T, 117] (50 frames/s unless `stride` says otherwise): every
        `stride`-th frame counted back from the last, the last `observed` of them -> [observed, 117]."""
        c = self.config
        stride = c.frame_stride if stride is None else stride
        needed = (c.observed - 1) * stride + 1
        if len(clip) < needed:
            raise ValueError(f"{len(clip)} frames; the model needs at least {needed} ({c.observed} frames at "
                             f"{c.fps:g} frames/s, keeping one input frame in {stride})")
        return np.ascontiguousarray(np.asarray(clip, dtype=np.float32)[len(clip) - needed::stride])

    def predict(self, clip: np.ndarray, samples: int = 10, frames: int | None = None, seed: int = 0,
                stride: int | None = None) -> np.ndarray:
        """The library call: a clip [T, 117] as in the data files (50 frames/s unless `stride` says otherwise)
        -> futures [samples, frames, 117] at 25 frames/s."""
        window = torch.as_tensor(self.window_of(clip, stride))
        generator = torch.Generator().manual_seed(seed)
        return self.sample(window[None], samples, frames, generator)[0].cpu().numpy()
