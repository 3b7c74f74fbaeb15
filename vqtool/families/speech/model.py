"""Speech VQ-VAE (van den Oord et al., 2017, section 4.3) with a decoder that runs fast on a CPU.

The encoder turns 80-bin log-mel frames (10 ms hop) into one code every 20 ms (320x fewer codes than
samples, K = 512). The decoder sees the codes and a speaker embedding and predicts the STFT
log-magnitude; a vocoder head (vocoder.py; checkpoints before it, or `use_vocoder("griffin-lim")`:
Griffin-Lim) turns it into a waveform. The paper's WaveNet decoder needs thousands of network
evaluations per second of audio; this one needs one convolutional pass and the head's (or 16 FFT
round trips), so it runs well over real time on one core (measured in bench/bench_speech.py).

The speaker embedding comes from a separately trained speaker encoder (``classifier-audio``) built
into the checkpoint, so a training speaker is a stored embedding (the mean over their clips) and an
unseen voice is the embedding of a reference clip: zero-shot conversion needs no retraining.
The encoder's input and hidden layers are instance-normalised, which keeps more of the voice out of
the codes. Long inputs are processed in overlapping chunks (see ``chunked``), the normalisation
statistics coming from whole-stream passes: memory stays flat with length and the codes are the
same as in one pass.
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

from vqtool.audio import SAMPLE_RATE, Spectral, level_gain
from vqtool.classifiers import MIN_REFERENCE_SECONDS, AudioClassifier, AudioClassifierConfig
from vqtool.errors import VqtoolError
from vqtool.hub import bounded
from vqtool.quantize import VectorQuantizer

from . import ARCHITECTURE
from .vocoder import Vocoder

CHUNK_CODES = 2048  # 40.96 s of audio per chunk: halos cost 6% of the work (25% at 512), memory +80 MB (bench/)
HALO_CODES = 64  # 1.28 s of context on each side, beyond both networks' receptive fields
KEEP_SAMPLES = 120 * SAMPLE_RATE  # streams up to 2 minutes keep activations between statistics passes
FADE_SAMPLES = 640  # 40 ms crossfade at chunk seams (a margin: within the halo, Griffin-Lim's phases agree)
VOCODERS = ("neural", "griffin-lim")
SILENCE_RMS = 1e-4
INPUT_EPS = 1e-3  # variance floor of the input's normalisation (log-mel units)
FIT_STEPS = 50  # gradient steps of `fitted_voice`
FIT_RATE = 0.01
FIT_SECONDS = 10  # of the reference, enough for a voice and quick to fit
FIT_PENALTY = 1e-2  # L2 weight on a fitted voice's offsets and log-gains


@dataclass
class SpeechConfig:
    mels: int = 80
    n_fft: int = 512
    hop: int = 160
    hidden: int = 256
    embedding_dim: int = 64
    num_codes: int = 512
    downsample: int = 2  # frames per code
    dilations: list[int] = bounded([1, 2, 4, 8, 1, 2, 4, 8], 1, 64)
    beta: float = 0.25
    speakers: list[str] = field(default_factory=list)
    speaker_encoder: dict = field(default_factory=dict)  # AudioClassifierConfig fields
    griffin_lim_iterations: int = 16  # 32 measured no better on this model's outputs, at half the speed
    instance_norm: bool = True  # standardise the encoder's input and hidden layers over the utterance
    vocoder_width: int = bounded(0, 0, 1024)  # 0: no vocoder head, phase from Griffin-Lim (checkpoints before it)
    vocoder_blocks: int = bounded(4, 0, 32)

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

    def forward(self, x: torch.Tensor, speaker: torch.Tensor, offset: torch.Tensor | None = None) -> torch.Tensor:
        """`offset` (N, 2 * channels): a fitted voice's own change to the scale and shift (fitted_voice)."""
        condition = self.condition(speaker) if offset is None else self.condition(speaker) + offset
        scale, shift = condition[..., None].chunk(2, dim=1)
        hidden = F.relu(self.conv(F.relu(x)) * (1 + scale) + shift)
        return x + self.out(hidden)


class SpeechVQVAE(nn.Module):
    Config = SpeechConfig
    architecture = ARCHITECTURE

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
        self.vocoder = Vocoder(c.n_fft // 2 + 1, c.vocoder_width, c.vocoder_blocks) if c.vocoder_width else None
        self.vocoding = "neural" if self.vocoder is not None else "griffin-lim"
        self.codes_frozen = False  # set when fine-tuning the decoder of a trained model (task.DECODER_PARTS)

    def use_vocoder(self, name: str) -> None:
        """Turn log-magnitudes into waves with the neural vocoder head or with Griffin-Lim (for comparison)."""
        if name not in VOCODERS:
            raise VqtoolError(f"unknown vocoder '{name}' (use {' or '.join(VOCODERS)})")
        if name == "neural" and self.vocoder is None:
            raise VqtoolError("this checkpoint has no neural vocoder (trained before it); use griffin-lim",
                              getattr(self, "name", None))
        self.vocoding = name

    def train(self, mode: bool = True):
        super().train(mode)
        self.speaker_encoder.eval()  # frozen, batch norm statistics included
        if self.codes_frozen:  # only the decoder trains: no codebook updates or restarts
            self.quantizer.eval()
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
        """With `instance_norm`, each mel band is standardised over the utterance (the training crop;
        at inference the whole stream, see `statistics`): the average spectral envelope, much of a
        voice's colour and the channel, never reaches the codes."""
        if not self.config.instance_norm:
            return (log_mel + 5.0) / 4.0
        return F.instance_norm(log_mel, eps=INPUT_EPS)

    def encode_features(self, log_mel: torch.Tensor):
        return self.quantizer(self.encoder(self.normalise(log_mel)))

    def decode_latents(self, latents: torch.Tensor, speaker: torch.Tensor) -> torch.Tensor:
        """Code vectors (N, D, codes) and voices (N, E) or fitted voices (N, fitted_size) -> log-magnitude
        (N, F, frames)."""
        embedding, offsets, tilt = self.voice_parts(speaker)
        x = self.pre(latents).repeat_interleave(self.config.downsample, dim=-1)
        for k, block in enumerate(self.blocks):
            x = block(x, embedding, None if offsets is None else offsets[:, k])
        out = self.head(F.relu(x))
        return out if tilt is None else out + tilt[..., None]

    @property
    def fitted_size(self) -> int:
        """Numbers in a fitted voice: the embedding, each block's scale and shift offsets, a log-gain per bin."""
        return self.speaker_table.shape[1] + len(self.blocks) * 2 * self.config.hidden + self.config.n_fft // 2 + 1

    def voice_parts(self, speaker: torch.Tensor):
        """(embedding (N, E), block offsets (N, blocks, 2 * hidden) or None, log-gains (N, bins) or None)."""
        width = self.speaker_table.shape[1]
        if speaker.shape[-1] == width:
            return speaker, None, None
        if speaker.shape[-1] != self.fitted_size:
            raise VqtoolError(f"a voice of {speaker.shape[-1]} numbers; this model's voices have {width} "
                              f"(or {self.fitted_size}, fitted)", getattr(self, "name", None))
        end = width + len(self.blocks) * 2 * self.config.hidden
        return speaker[:, :width], speaker[:, width:end].reshape(len(speaker), len(self.blocks), -1), speaker[:, end:]

    def inverse_stft(self, spectrum: torch.Tensor, length: int) -> torch.Tensor:
        """Complex STFT (N, bins, frames + 1) -> waves (N, length), with the model's own STFT settings."""
        return torch.istft(spectrum, self.config.n_fft, self.config.hop, window=self.spectral.window, length=length)

    def synthesise(self, log_magnitude: torch.Tensor, length: int) -> torch.Tensor:
        """Log-magnitude (N, bins, frames + 1, a centred STFT's frames) -> waves (N, length)."""
        c = self.config
        if self.vocoding == "neural":
            return self.inverse_stft(self.vocoder(log_magnitude), length)
        magnitude = torch.exp(log_magnitude[..., :-1]).clamp_max(1e3)  # exp before the copied last frame, as
        magnitude = torch.cat([magnitude, magnitude[..., -1:]], -1)     # before the head: the same bits
        return self.spectral.griffin_lim(magnitude, length, c.griffin_lim_iterations)

    def forward(self, wave: torch.Tensor | None = None, speaker: torch.Tensor | None = None,
                log_magnitude: torch.Tensor | None = None):
        """Training pass: (predicted log-magnitude, target magnitude, Quantized); with `log_magnitude`, the
        vocoder head's complex STFT of it (its own training pass)."""
        if log_magnitude is not None:
            return self.vocoder(log_magnitude)
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
        wave = np.asarray(wave, dtype=np.float32)
        parts = list(self.encode_stream(lambda: iter([wave])))
        return torch.from_numpy(np.concatenate(parts).astype(np.int64) if parts else np.zeros(0, np.int64))

    def encode_stream(self, open_blocks: Callable[[], Iterator[np.ndarray]]) -> Iterator[np.ndarray]:
        """Code blocks (float32 holding integers) of a stream of 16 kHz blocks, in flat memory.
        `open_blocks` starts the stream afresh: the normalisation statistics take a pass each."""
        step = self.config.samples_per_code
        stats, resume = self._statistics_and_resume(open_blocks)
        return chunked(open_blocks(), lambda w: self._encode_window(w, stats, resume(w)), CHUNK_CODES * step,
                       HALO_CODES * step, 1 / step)

    def _statistics_and_resume(self, open_blocks) -> tuple[list | None, Callable]:
        """The whole-stream statistics, and for each window in turn (as `chunked` visits them) what its
        encoding pass may resume from (None: the whole pass)."""
        kept: list = []
        stats = self.statistics(open_blocks, kept)
        pending = iter(kept)

        def resume(window: np.ndarray):
            length, activation = next(pending, (None, None))
            return activation if length == len(window) else None

        return stats, resume

    @torch.no_grad()
    def _encoder(self, padded: torch.Tensor | None, stats: list | None, stop: int | None = None,
                 resume: tuple[int, torch.Tensor] | None = None) -> torch.Tensor:
        """The encoder on one padded window, each instance norm using `stats` (whole-stream statistics)
        when given; with `stop` = k, returns what the k-th normalisation (0: the input's) receives; with
        `resume` = (k, x), x being that for this window, continues from there (`padded` unused)."""
        modules = [None, *self.encoder]
        norms, x = resume if resume is not None else (0, None)
        if resume is None:
            _, x = self.features(padded)
        else:  # start at the k-th normalisation
            norm_positions = [i for i, m in enumerate(modules) if m is None or isinstance(m, nn.InstanceNorm1d)]
            modules = modules[norm_positions[norms]:]
        for module in modules:
            if module is None or isinstance(module, nn.InstanceNorm1d):
                if norms == stop:
                    return x
                if module is None:
                    x = self.normalise(x) if stats is None else _standardise(x, *stats[0], eps=INPUT_EPS)
                else:
                    x = module(x) if stats is None else _standardise(x, *stats[norms])
                norms += 1
            else:
                x = module(x)
        return x

    @torch.no_grad()
    def statistics(self, open_blocks: Callable[[], Iterator[np.ndarray]], kept: list | None = None) -> list | None:
        """Per-channel (mean, variance) of every instance-normalised layer over the whole stream, one
        pass per layer, so that chunked encoding normalises exactly like a single pass over the file.
        A stream of at most KEEP_SAMPLES keeps each window's activations from pass to pass, so each
        layer runs once per window (the same numbers; longer streams recompute, in flat memory); `kept`
        then receives, per window, (its length, (k, what the last normalisation receives)) for the
        encoding pass to resume from."""
        if not self.config.instance_norm:
            return None
        step = self.config.samples_per_code
        layers = 1 + sum(isinstance(m, nn.InstanceNorm1d) for m in self.encoder)
        stats: list = []
        held: list | None = []  # per window: (length, padded length, offset, size, activation)
        for layer in range(layers):
            total, squares, count = 0.0, 0.0, 0
            if layer and held is not None:
                visits = [(length, padded, offset, size, (layer - 1, x)) for length, padded, offset, size, x in held]
            else:
                visits = ((len(window), self._padded(window)[0], offset, size, None)
                          for window, offset, size, _ in windows(open_blocks(), CHUNK_CODES * step, HALO_CODES * step))
            passed, seen = [], 0
            for length, padded, offset, size, resume in visits:
                padded_length = padded if isinstance(padded, int) else padded.shape[-1]
                full = self._encoder(padded if resume is None else None, stats, stop=layer, resume=resume)
                x = full[0].double()
                per_code = x.shape[-1] * step // padded_length  # frames per code at this layer
                first, frames = offset // step * per_code, math.ceil(size / step) * per_code
                x = x[:, first:first + frames]
                total, squares, count = total + x.sum(1), squares + (x * x).sum(1), count + x.shape[1]
                seen += size
                if held is not None and seen <= KEEP_SAMPLES:
                    passed.append((length, padded_length, offset, size, full))
                else:
                    held, passed = None, []
            held = passed if held is not None else None
            if not count:
                return None
            mean = total / count
            stats.append(((mean).float(), (squares / count - mean * mean).clamp_min(0).float()))
        if kept is not None and held:
            kept.extend((length, (layers - 1, x)) for length, _, _, _, x in held)
        return stats

    @torch.no_grad()
    def _encode_window(self, wave: np.ndarray, stats: list | None = None,
                       resume: tuple[int, torch.Tensor] | None = None) -> np.ndarray:
        z = self._encoder(self._padded(wave)[0] if resume is None else None, stats, resume=resume)
        codes = self.quantizer.nearest(z[0].t())
        return codes[: math.ceil(len(wave) / self.config.samples_per_code)].cpu().numpy().astype(np.float32)

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
        log_magnitude = torch.cat([log_magnitude, log_magnitude[..., -1:]], -1)  # centred STFT: frames + 1
        return self.synthesise(log_magnitude, codes.shape[-1] * self.config.samples_per_code)[0].cpu().numpy()

    def convert_stream(self, open_blocks: Callable[[], Iterator[np.ndarray]], speaker: torch.Tensor,
                       keep_level: bool = False) -> Iterator[np.ndarray]:
        """The same speech in the voice `speaker`, block by block, in flat memory (see encode_stream).

        The decoder's level follows the voice, not the input (measured: up to 14 dB off), so unless
        `keep_level` the output is given the input's BS.1770 loudness by one gain, measured on the first
        window that is not silent (a whole recording up to 41 s; a constant gain keeps the seams smooth)."""
        step = self.config.samples_per_code
        stats, resume = self._statistics_and_resume(open_blocks)
        gain = None

        def window(wave):
            nonlocal gain
            out = self._decode_window(self._encode_window(wave, stats, resume(wave)), speaker)[: len(wave)]
            if not keep_level and gain is None:
                gain = level_gain(wave, out)
            return out if gain is None else out * np.float32(gain)

        return chunked(open_blocks(), window, CHUNK_CODES * step, HALO_CODES * step, 1.0, FADE_SAMPLES)

    def convert(self, wave, speaker: torch.Tensor, keep_level: bool = False) -> np.ndarray:
        wave = np.asarray(wave, dtype=np.float32)
        return np.concatenate(list(self.convert_stream(lambda: iter([wave]), speaker, keep_level)))[: len(wave)]

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

    def fitted_voice(self, wave, steps: int = FIT_STEPS, rate: float = FIT_RATE, source: str = "reference"
                     ) -> torch.Tensor:
        """A reference clip's voice fitted to this decoder (speaker adaptation, Arik et al. 2018): the speaker
        encoder knows ~130 voices, so its embedding of an unseen one is a rough guess. Gradient steps make the
        decoder, given the clip's own codes, rebuild the clip's spectrum: first `steps` on the embedding
        alone (kept a unit vector), then `2 * steps` on small offsets to each block's scale and shift and on a
        log-gain per frequency bin (L2-penalised). Returns the voice as one flat vector (fitted_size numbers;
        the unit embedding first); with `steps` 0, the encoder's embedding as it is."""
        voice = self.voice_of(wave, source)
        if steps <= 0:
            return voice
        wave = np.asarray(wave, dtype=np.float32)[: FIT_SECONDS * SAMPLE_RATE]
        was_training = self.training
        self.eval()  # no codebook or normalisation updates
        try:
            with torch.no_grad():
                magnitude, log_mel = self.features(self._padded(wave)[0])
                latents = self.encode_features(log_mel).quantized
            raw = voice.to(self.device).reshape(1, -1).clone().requires_grad_(True)
            unit = lambda: F.normalize(raw, dim=-1)  # noqa: E731
            _descend([raw], steps, rate, lambda: sum(spectral_terms(self.decode_latents(latents, unit()), magnitude)))
            extra = torch.zeros(1, self.fitted_size - raw.shape[1], device=self.device, requires_grad=True)
            _descend([extra], 2 * steps, rate, lambda: sum(spectral_terms(
                self.decode_latents(latents, torch.cat([unit().detach(), extra], 1)), magnitude))
                + FIT_PENALTY * (extra ** 2).mean())
        finally:
            self.train(was_training)
        return torch.cat([unit(), extra], 1).detach()[0].cpu()

    def nearest_speaker(self, embedding: torch.Tensor) -> str:
        if not len(self.config.speakers):
            return ""
        return self.config.speakers[int((self.speaker_table.cpu() @ embedding).argmax())]


def _descend(params: list[torch.Tensor], steps: int, rate: float, loss: Callable[[], torch.Tensor]) -> None:
    """Adam on `params` alone: gradients reach nothing else (the weights keep no .grad), also under no_grad."""
    optimiser = torch.optim.Adam(params, lr=rate)
    with torch.enable_grad():
        for _ in range(steps):
            optimiser.zero_grad()
            loss().backward(inputs=params)
            optimiser.step()


def spectral_terms(predicted: torch.Tensor, magnitude: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The decoder's training loss on predicted log-magnitudes: (L1 of the logs, spectral convergence)."""
    l1 = (predicted - torch.log(magnitude.clamp_min(1e-5))).abs().mean()
    convergence = (torch.linalg.norm(magnitude - predicted.exp(), dim=(1, 2))
                   / torch.linalg.norm(magnitude, dim=(1, 2)).clamp_min(1e-5)).mean()
    return l1, convergence


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


def _standardise(x: torch.Tensor, mean: torch.Tensor, variance: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    return (x - mean[:, None].to(x)) / torch.sqrt(variance[:, None].to(x) + eps)


def windows(blocks: Iterator[np.ndarray], chunk: int, halo: int):
    """(window, offset, size, last) over a stream: `size` inputs (`chunk`, fewer at the end) that start
    `offset` inputs into `window`, which adds up to `halo` inputs of context on each side. Only the
    window is held in memory."""
    buffer, base, position, done = np.zeros(0, np.float32), 0, 0, False
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
        yield buffer[start - base:stop - base], position - start, (end - position if last else chunk), last
        if last:
            return
        position += chunk
        drop = position - halo - base
        if drop > 0:
            buffer, base = buffer[drop:], base + drop


def chunked(blocks: Iterator[np.ndarray], fn: Callable[[np.ndarray], np.ndarray], chunk: int, halo: int,
            ratio: float, fade: int = 0) -> Iterator[np.ndarray]:
    """Apply `fn` (n inputs -> ceil(n * ratio) outputs) to a stream, window by window (see `windows`),
    so that each chunk's outputs match one whole pass. With `fade`, neighbouring windows' outputs are
    crossfaded over 2 * fade outputs around each seam (needs halo * ratio >= fade)."""
    tail = None
    ramp = np.arange(1, 2 * fade + 1, dtype=np.float32) / (2 * fade + 1) if fade else None
    for window, offset_in, _, last in windows(blocks, chunk, halo):
        out = fn(window)
        offset = round(offset_in * ratio)
        if tail is not None:
            yield tail * (1 - ramp) + out[offset - fade:offset + fade] * ramp
            offset += fade
        if last:
            yield out[offset:]
            return
        keep_to = round((offset_in + chunk) * ratio)
        yield out[offset:keep_to - fade]
        tail = out[keep_to - fade:keep_to + fade] if fade else None
