"""Speech VQ-VAE (van den Oord et al., 2017, section 4.3) with a decoder that runs fast on a CPU.

The encoder turns 80-bin log-mel frames (10 ms hop) into one code every 20 ms (320x fewer codes than
samples, K = 512). The decoder sees the codes and a speaker embedding and predicts the STFT
log-magnitude; Griffin-Lim turns it into a waveform. The paper's WaveNet decoder needs thousands
of network evaluations per second of audio; this one needs one convolutional pass and 32 FFT
round trips, so it runs well over real time on one core (measured in bench/bench_speech.py), at the
cost of Griffin-Lim's phasey timbre.

The speaker embedding comes from a separately trained speaker encoder (``classifier-audio``) built
into the checkpoint, so a training speaker is a stored embedding (the mean over their clips) and an
unseen voice is the embedding of a reference clip: zero-shot conversion needs no retraining.
Long inputs are processed in overlapping chunks (see ``chunked``): memory stays flat with length.
"""

from __future__ import annotations

import base64
import math
from dataclasses import dataclass, field
from typing import Callable, Iterator

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .audio import SAMPLE_RATE, Spectral
from .audioclass import MIN_REFERENCE_SECONDS, AudioClassifier, AudioClassifierConfig
from .errors import VqtoolError
from .quantize import VectorQuantizer
from .speechdata import log_mels

CHUNK_CODES = 512  # 10.24 s of audio per chunk
HALO_CODES = 64  # 1.28 s of context on each side, beyond both networks' receptive fields
FADE_SAMPLES = 640  # 40 ms crossfade at chunk seams (Griffin-Lim's phase differs between chunks)
SILENCE_RMS = 1e-4


@dataclass
class SpeechConfig:
    mels: int = 80
    n_fft: int = 512
    hop: int = 160
    hidden: int = 256
    embedding_dim: int = 64
    num_codes: int = 512
    downsample: int = 2  # frames per code
    dilations: list[int] = field(default_factory=lambda: [1, 2, 4, 8, 1, 2, 4, 8])
    beta: float = 0.25
    speakers: list[str] = field(default_factory=list)
    speaker_encoder: dict = field(default_factory=dict)  # AudioClassifierConfig fields
    griffin_lim_iterations: int = 32
    instance_norm: bool = True  # standardise the encoder's input and hidden layers per window

    @property
    def samples_per_code(self) -> int:
        return self.hop * self.downsample


class ConditionedBlock(nn.Module):
    """Dilated residual block whose hidden layer is scaled and shifted by the speaker (FiLM)."""

    def __init__(self, channels: int, dilation: int, condition: int):
        super().__init__()
        self.conv = nn.Conv1d(channels, channels, 3, padding=dilation, dilation=dilation)
        self.condition = nn.Linear(condition, 2 * channels)
        self.out = nn.Conv1d(channels, channels, 1)

    def forward(self, x: torch.Tensor, speaker: torch.Tensor) -> torch.Tensor:
        scale, shift = self.condition(speaker)[..., None].chunk(2, dim=1)
        hidden = F.relu(self.conv(F.relu(x)) * (1 + scale) + shift)
        return x + self.out(hidden)


class SpeechVQVAE(nn.Module):
    Config = SpeechConfig
    architecture = "vqvae-speech"

    def __init__(self, config: SpeechConfig):
        super().__init__()
        self.config = c = config
        self.spectral = Spectral(c.n_fft, c.hop, c.mels)
        norm = (lambda: nn.InstanceNorm1d(c.hidden)) if c.instance_norm else nn.Identity
        self.encoder = nn.Sequential(
            nn.Conv1d(c.mels, c.hidden, 3, padding=1), norm(), nn.ReLU(),
            nn.Conv1d(c.hidden, c.hidden, 2 * c.downsample, stride=c.downsample, padding=c.downsample // 2),
            norm(), nn.ReLU(), nn.Conv1d(c.hidden, c.hidden, 3, padding=1), norm(), nn.ReLU(),
            nn.Conv1d(c.hidden, c.hidden, 3, padding=1), nn.ReLU(), nn.Conv1d(c.hidden, c.embedding_dim, 1))
        self.quantizer = VectorQuantizer(c.num_codes, c.embedding_dim, c.beta)
        self.speaker_encoder = AudioClassifier(AudioClassifierConfig(**c.speaker_encoder))
        self.speaker_encoder.requires_grad_(False)
        width = self.speaker_encoder.config.embedding
        self.register_buffer("speaker_table", torch.zeros(len(c.speakers), width))
        self.pre = nn.Conv1d(c.embedding_dim, c.hidden, 3, padding=1)
        self.blocks = nn.ModuleList(ConditionedBlock(c.hidden, d, width) for d in c.dilations)
        self.head = nn.Conv1d(c.hidden, c.n_fft // 2 + 1, 1)

    def train(self, mode: bool = True):
        super().train(mode)
        self.speaker_encoder.eval()  # frozen, batch norm statistics included
        return self

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    # --- the networks ----------------------------------------------------------------------------
    def features(self, wave: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(N, samples) with samples a multiple of samples_per_code -> (magnitude, log-mel), frames = samples/hop."""
        magnitude = self.spectral.magnitude(wave)[..., : wave.shape[-1] // self.config.hop]
        return magnitude, self.spectral.log_mel(magnitude)

    def normalise(self, log_mel: torch.Tensor) -> torch.Tensor:
        """With `instance_norm`, each mel band is standardised over the window: the average spectral
        envelope (much of a voice's colour, and the channel) never reaches the codes."""
        if not self.config.instance_norm:
            return (log_mel + 5.0) / 4.0
        return F.instance_norm(log_mel, eps=1e-3)

    def encode_features(self, log_mel: torch.Tensor):
        return self.quantizer(self.encoder(self.normalise(log_mel)))

    def decode_latents(self, latents: torch.Tensor, speaker: torch.Tensor) -> torch.Tensor:
        """Code vectors (N, D, codes) and speaker embeddings (N, E) -> log-magnitude (N, F, frames)."""
        x = self.pre(latents).repeat_interleave(self.config.downsample, dim=-1)
        for block in self.blocks:
            x = block(x, speaker)
        return self.head(F.relu(x))

    def forward(self, wave: torch.Tensor, speaker: torch.Tensor):
        """Training pass: (predicted log-magnitude, target magnitude, Quantized)."""
        magnitude, log_mel = self.features(wave)
        quant = self.encode_features(log_mel)
        return self.decode_latents(quant.quantized, speaker), magnitude, quant

    # --- plain inference methods -----------------------------------------------------------------
    def _padded(self, wave) -> tuple[torch.Tensor, int]:
        wave = torch.as_tensor(np.asarray(wave, dtype=np.float32)).reshape(-1)
        step = self.config.samples_per_code
        length = wave.shape[0]
        padded = F.pad(wave, (0, max(-length % step, 0) + (step if length == 0 else 0)))
        if padded.shape[0] < self.config.n_fft:  # reflect padding needs a little context
            padded = F.pad(padded, (0, self.config.n_fft - padded.shape[0] + (-self.config.n_fft % step)))
        return padded[None].to(self.device), length

    @torch.no_grad()
    def encode(self, wave) -> torch.Tensor:
        """16 kHz mono samples -> codes (ceil(samples / 320),) int64; long inputs go in chunks."""
        parts = list(self.encode_stream(iter([np.asarray(wave, dtype=np.float32)])))
        return torch.from_numpy(np.concatenate(parts).astype(np.int64) if parts else np.zeros(0, np.int64))

    @torch.no_grad()
    def encode_stream(self, blocks: Iterator[np.ndarray]) -> Iterator[np.ndarray]:
        """16 kHz blocks in, code blocks (float32 holding integers) out, in flat memory."""
        step = self.config.samples_per_code
        return chunked(blocks, self._encode_window, CHUNK_CODES * step, HALO_CODES * step, 1 / step)

    @torch.no_grad()
    def _encode_window(self, wave: np.ndarray) -> np.ndarray:
        padded, length = self._padded(wave)
        _, log_mel = self.features(padded)
        z = self.encoder(self.normalise(log_mel))
        codes = self.quantizer.nearest(z[0].t())
        return codes[: math.ceil(length / self.config.samples_per_code)].cpu().numpy().astype(np.float32)

    @torch.no_grad()
    def decode(self, codes, speaker: torch.Tensor, length: int | None = None) -> np.ndarray:
        """Codes (T,) and a speaker embedding (E,) -> 16 kHz samples (length, default T * 320)."""
        codes = np.asarray(codes, dtype=np.float32).reshape(-1)
        wave = np.concatenate(list(self.decode_stream(iter([codes]), speaker)))
        return wave[:length] if length is not None else wave

    @torch.no_grad()
    def decode_stream(self, code_blocks: Iterator[np.ndarray], speaker: torch.Tensor) -> Iterator[np.ndarray]:
        step = self.config.samples_per_code
        window = lambda codes: self._decode_window(codes, speaker)  # noqa: E731
        return chunked(code_blocks, window, CHUNK_CODES, HALO_CODES, step, FADE_SAMPLES)

    @torch.no_grad()
    def _decode_window(self, codes: np.ndarray, speaker: torch.Tensor) -> np.ndarray:
        codes = torch.as_tensor(codes, dtype=torch.long, device=self.device)[None]
        latents = self.quantizer.lookup(codes)
        log_magnitude = self.decode_latents(latents, speaker.to(self.device).reshape(1, -1))
        magnitude = torch.exp(log_magnitude).clamp_max(1e3)
        magnitude = torch.cat([magnitude, magnitude[..., -1:]], -1)  # centred STFT: frames + 1
        length = codes.shape[-1] * self.config.samples_per_code
        return self.spectral.griffin_lim(magnitude, length, self.config.griffin_lim_iterations)[0].cpu().numpy()

    @torch.no_grad()
    def convert_stream(self, blocks: Iterator[np.ndarray], speaker: torch.Tensor) -> Iterator[np.ndarray]:
        """16 kHz blocks in, the same speech in the voice `speaker` out, in flat memory."""
        step = self.config.samples_per_code

        def window(wave):
            codes = self._encode_window(wave)
            return self._decode_window(codes, speaker)[: len(wave)]

        return chunked(blocks, window, CHUNK_CODES * step, HALO_CODES * step, 1.0, FADE_SAMPLES)

    def convert(self, wave, speaker: torch.Tensor) -> np.ndarray:
        wave = np.asarray(wave, dtype=np.float32)
        return np.concatenate(list(self.convert_stream(iter([wave]), speaker)))[: len(wave)]

    # --- voices ------------------------------------------------------------------------------------
    def speaker_index(self, name: str) -> int:
        """A training speaker by name or as spkN."""
        speakers = self.config.speakers
        if name in speakers:
            return speakers.index(name)
        if name.lower().startswith("spk") and name[3:].isdigit() and int(name[3:]) < len(speakers):
            return int(name[3:])
        shown = ", ".join(speakers[:12]) + (f", … ({len(speakers)} in all; `vqtool speakers` lists them)"
                                            if len(speakers) > 12 else "")
        raise VqtoolError(f"unknown speaker '{name}' (use spk0-spk{len(speakers) - 1} or a name: {shown})")

    def voice(self, name: str) -> torch.Tensor:
        return self.speaker_table[self.speaker_index(name)].cpu()

    @torch.no_grad()
    def voice_of(self, wave, source: str = "reference") -> torch.Tensor:
        """The speaker embedding of a clip (zero-shot voices come from here)."""
        wave = np.asarray(wave, dtype=np.float32)
        if len(wave) < MIN_REFERENCE_SECONDS * SAMPLE_RATE:
            raise VqtoolError(f"clip is {len(wave) / SAMPLE_RATE:.2f} s long; a voice needs at least "
                              f"{MIN_REFERENCE_SECONDS} s of speech", source)
        if float(np.sqrt(np.mean(wave.astype(np.float64) ** 2))) < SILENCE_RMS:
            raise VqtoolError("clip is silent; a voice needs speech", source)
        return self.speaker_encoder.embed([wave[: 30 * SAMPLE_RATE]])[0]

    def nearest_speaker(self, embedding: torch.Tensor) -> str:
        if not len(self.config.speakers):
            return ""
        return self.config.speakers[int((self.speaker_table.cpu() @ embedding).argmax())]


def voice_to_text(voice: torch.Tensor) -> str:
    """A speaker embedding as compact text for a .vqc header (float16, base64)."""
    return base64.b64encode(voice.to(torch.float16).numpy().tobytes()).decode()


def voice_from_text(text: str, size: int, source: str) -> torch.Tensor:
    try:
        raw = np.frombuffer(base64.b64decode(text, validate=True), dtype=np.float16)
    except (ValueError, TypeError):
        raw = np.zeros(0, np.float16)
    if raw.size != size or not np.isfinite(raw).all():
        raise VqtoolError("corrupt voice in the .vqc header; decode with --to or --to-voice", source)
    return F.normalize(torch.from_numpy(raw.astype(np.float32)), dim=0)


def chunked(blocks: Iterator[np.ndarray], fn: Callable[[np.ndarray], np.ndarray], chunk: int, halo: int,
            ratio: float, fade: int = 0) -> Iterator[np.ndarray]:
    """Apply `fn` (n inputs -> ceil(n * ratio) outputs) to a stream, window by window: each window is
    `chunk` inputs plus `halo` of context on both sides, so its middle matches one whole pass. With
    `fade`, neighbouring windows' outputs are crossfaded over 2 * fade outputs around each seam
    (needs halo * ratio >= fade). Memory is bounded by the window, not by the stream."""
    buffer, base, position, done, tail = np.zeros(0, np.float32), 0, 0, False, None
    ramp = np.arange(1, 2 * fade + 1, dtype=np.float32) / (2 * fade + 1) if fade else None
    while True:
        while not done and base + len(buffer) <= position + chunk + halo:  # also learns whether more follows
            block = next(blocks, None)
            if block is None:
                done = True
            else:
                buffer = np.concatenate([buffer, np.asarray(block, dtype=np.float32).reshape(-1)])
        end = base + len(buffer)
        if end <= position:
            return
        last = done and end <= position + chunk + halo
        start, stop = max(base, position - halo), end if last else position + chunk + halo
        out = fn(buffer[start - base:stop - base])
        offset = round((position - start) * ratio)
        if tail is not None:
            yield tail * (1 - ramp) + out[offset - fade:offset + fade] * ramp
            offset += fade
        if last:
            yield out[offset:]
            return
        keep_to = round((position + chunk - start) * ratio)
        yield out[offset:keep_to - fade]
        tail = out[keep_to - fade:keep_to + fade] if fade else None
        position += chunk
        drop = position - halo - base
        if drop > 0:
            buffer, base = buffer[drop:], base + drop
