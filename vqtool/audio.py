"""Audio in and out, and the spectral front end the speech models share.

Every input becomes 16 kHz mono float32: channels are averaged, any sample format libsndfile reads
(8/16/24/32-bit, float) is accepted, and other rates go through soxr (a maintained resampler).
Files are read in blocks, so memory stays flat with length; pipes cannot seek, so '-' is buffered
in memory. Outputs are written to a temporary file and renamed, or buffered and sent to stdout.
"""

from __future__ import annotations

import contextlib
import io
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import soundfile as sf
import soxr
import torch

from .codes import MAX_RATE, MIN_RATE
from .errors import VqtoolError
from .media import IMAGE_SUFFIXES, STDIO, atomic_path, read_bytes, write_stdout

SAMPLE_RATE = 16_000
AUDIO_SUFFIXES = {".wav", ".flac", ".ogg", ".oga", ".mp3"}  # libsndfile >= 1.1 reads MP3
OUTPUT_FORMATS = {".wav": "WAV", ".flac": "FLAC"}
SNIFF_BYTES = 12


def audio_magic(head: bytes) -> bool:
    """WAV/RF64 (RIFF....WAVE: WebP is RIFF....WEBP), FLAC, Ogg, MP3 (ID3 tag or an MPEG frame sync)."""
    if head[:4] in (b"RIFF", b"RF64"):
        return head[8:12] == b"WAVE"
    return head[:4] in (b"fLaC", b"OggS") or head[:3] == b"ID3" or (
        len(head) >= 2 and head[0] == 0xFF and head[1] & 0xE6 in (0xE2, 0xE4, 0xE6))


def looks_like_audio(source: str, head: bytes | None = None) -> bool:
    """By suffix for files (an image suffix is an image), by content for stdin or other suffixes."""
    suffix = Path(source).suffix.lower() if source != STDIO else ""
    if suffix in AUDIO_SUFFIXES:
        return True
    if suffix in IMAGE_SUFFIXES:
        return False
    if head is None and source != STDIO:
        try:
            with open(source, "rb") as handle:
                head = handle.read(SNIFF_BYTES)
        except OSError:
            return False
    return bool(head) and audio_magic(head)


@dataclass
class AudioInfo:
    source: str
    sample_rate: int  # of the input, before resampling
    frames: int  # input samples per channel
    channels: int
    subtype: str

    @property
    def seconds(self) -> float:
        return self.frames / self.sample_rate

    def frames_at(self, rate: int = SAMPLE_RATE) -> int:
        return math.ceil(self.frames * rate / self.sample_rate)


def _open(source: str, data: bytes | None = None) -> tuple[sf.SoundFile, AudioInfo]:
    if data is None and source == STDIO:
        data = read_bytes(STDIO)
    if data is not None and not data:
        raise VqtoolError("empty file", source)
    try:
        handle = sf.SoundFile(io.BytesIO(data) if data is not None else source)
    except FileNotFoundError:
        raise VqtoolError("no such file", source) from None
    except Exception as exc:  # noqa: BLE001  libsndfile's complaints about a hostile file come in several types
        if data is None and Path(source).is_file() and Path(source).stat().st_size == 0:
            raise VqtoolError("empty file", source) from None
        if data is None and not Path(source).exists():
            raise VqtoolError("no such file", source) from None
        reason = str(exc).split(":")[-1].strip() or "unreadable"
        raise VqtoolError(f"not readable audio ({reason})", source) from None
    info = AudioInfo(source, handle.samplerate, handle.frames, handle.channels, handle.subtype)
    if info.frames <= 0:
        handle.close()
        raise VqtoolError("audio has no samples", source)
    if not MIN_RATE <= info.sample_rate <= MAX_RATE:
        handle.close()
        raise VqtoolError(f"sample rate {info.sample_rate} Hz is outside {MIN_RATE}-{MAX_RATE} Hz", source)
    return handle, info


def stream_audio(source: str, block_seconds: float = 10.0,
                 data: bytes | None = None) -> tuple[AudioInfo, Iterator[np.ndarray]]:
    """(info, blocks): 16 kHz mono float32 blocks of about `block_seconds`, resampled on the fly."""
    handle, info = _open(source, data)

    def blocks():
        with handle:
            resampler = (soxr.ResampleStream(info.sample_rate, SAMPLE_RATE, 1, dtype="float32")
                         if info.sample_rate != SAMPLE_RATE else None)
            size = max(1, int(block_seconds * info.sample_rate))
            while True:
                try:
                    block = handle.read(size, dtype="float32", always_2d=True)
                except Exception as exc:  # noqa: BLE001  as above
                    raise VqtoolError(f"corrupt audio data ({exc})", source) from None
                last = len(block) < size
                if not np.isfinite(block).all():
                    raise VqtoolError("audio has NaN or infinite samples", source)
                mono = np.ascontiguousarray(block.mean(axis=1), dtype=np.float32)
                if resampler is not None:
                    mono = resampler.resample_chunk(mono, last=last)
                if len(mono):
                    yield mono
                if last:
                    return

    return info, blocks()


def audio_source(source: str, block_seconds: float = 10.0, data: bytes | None = None):
    """(info, open_blocks): `open_blocks()` streams the input (a file, '-', or `data`, its bytes) from
    its start again, as often as a caller needs (files are re-read; stdin is kept in memory)."""
    data = read_bytes(STDIO) if source == STDIO and data is None else data
    handle, info = _open(source, data)
    handle.close()
    return info, lambda: stream_audio(source, block_seconds, data)[1]


def read_audio(source: str, data: bytes | None = None) -> tuple[np.ndarray, AudioInfo]:
    """A whole input as 16 kHz mono float32 (for clips; long files should use stream_audio)."""
    info, blocks = stream_audio(source, data=data)
    parts = list(blocks)
    samples = np.concatenate(parts) if parts else np.zeros(0, np.float32)
    return samples, info


def resample(samples: np.ndarray, rate_in: int, rate_out: int) -> np.ndarray:
    if rate_in == rate_out:
        return samples
    return soxr.resample(samples, rate_in, rate_out).astype(np.float32)


LOUDNESS_BLOCK_SECONDS = 0.4  # BS.1770's gating block: shorter audio is measured padded with silence
MAX_LEVEL_GAIN_DB = 24.0  # level matching never amplifies or attenuates more than this
PEAK_CEILING = 0.99  # nor pushes a sample past this (matching a loud input then falls short rather than clip)


def loudness(wave: np.ndarray, rate: int = SAMPLE_RATE) -> float:
    """ITU-R BS.1770 integrated loudness in LUFS (pyloudnorm); -inf for silence under its -70 LUFS gate."""
    import pyloudnorm

    wave = np.asarray(wave, dtype=np.float64)
    wave = np.pad(wave, (0, max(0, math.ceil(LOUDNESS_BLOCK_SECONDS * rate) + 1 - len(wave))))
    with np.errstate(divide="ignore"):
        return float(pyloudnorm.Meter(rate).integrated_loudness(wave))


def level_gain(reference: np.ndarray, output: np.ndarray, rate: int = SAMPLE_RATE) -> float | None:
    """The factor that gives `output` the loudness of `reference` (None where either is silent), bounded by
    MAX_LEVEL_GAIN_DB and by PEAK_CEILING on the output's samples."""
    wanted, got = loudness(reference, rate), loudness(output, rate)
    if not (math.isfinite(wanted) and math.isfinite(got)):
        return None
    gain = 10 ** (float(np.clip(wanted - got, -MAX_LEVEL_GAIN_DB, MAX_LEVEL_GAIN_DB)) / 20)
    peak = float(np.abs(output).max(initial=0.0))
    return min(gain, PEAK_CEILING / peak) if peak * gain > PEAK_CEILING else gain


SPEECH_CHECK_SECONDS = (2.0, 30.0)  # the speech check judges inputs this long or longer, on their first 30 s
LOW_ENERGY_SPEECH = 0.2  # speech has at least this share of low-energy frames (speechocean762: 0.37 and up)


def low_energy_share(wave: np.ndarray, rate: int = SAMPLE_RATE) -> float:
    """Share of 20 ms frames with less than half the mean energy of the second around them (Scheirer &
    Slaney, 1997): speech pauses between syllables and words, sustained music and steady noise rarely do."""
    frame = rate // 50
    count = len(wave) // frame
    energy = np.square(np.asarray(wave[: count * frame], dtype=np.float64).reshape(count, frame)).mean(1)
    second = np.ones(min(50, count)) / min(50, count)
    return float((energy < 0.5 * np.convolve(energy, second, mode="same")).mean())


def sounds_like_speech(wave: np.ndarray, rate: int = SAMPLE_RATE) -> bool | None:
    """False for input that is not speech by `low_energy_share` (music, noise); None when the input is too
    short or too quiet to tell. Measured: no speechocean762 utterance (1,000) under the threshold; white and
    pink noise, sustained chords and legato melodies all under it; staccato notes (0.36) and so percussive
    music pass as speech."""
    wave = np.asarray(wave[: int(SPEECH_CHECK_SECONDS[1] * rate)])
    if len(wave) < SPEECH_CHECK_SECONDS[0] * rate or not math.isfinite(loudness(wave, rate)):
        return None
    return low_energy_share(wave, rate) >= LOW_ENERGY_SPEECH


def output_format(target: str, default: str = "WAV") -> str:
    if target == STDIO:
        return default
    suffix = Path(target).suffix.lower()
    if suffix not in OUTPUT_FORMATS:
        raise VqtoolError(f"unknown audio suffix '{suffix}' (use .wav or .flac)", target)
    return OUTPUT_FORMATS[suffix]


class BlockResampler:
    """16 kHz blocks to `rate`, one block at a time (the filter's state carries across blocks); call
    it with `last=True` once at the end to flush the tail."""

    def __init__(self, rate: int):
        self.stream = soxr.ResampleStream(SAMPLE_RATE, rate, 1, dtype="float32") if rate != SAMPLE_RATE else None

    def __call__(self, block: np.ndarray, last: bool = False) -> np.ndarray:
        block = np.asarray(block, dtype=np.float32)
        return block if self.stream is None else self.stream.resample_chunk(block, last=last)


class AudioWriter:
    """Write 16 kHz blocks at `rate` to a file (atomically, format by suffix) or stdout (in
    `stdout_format`, buffered: WAV and FLAC headers are finished with a seek, which a pipe cannot do)."""

    def __init__(self, target: str, rate: int = SAMPLE_RATE, stdout_format: str = "WAV"):
        self.target, self.rate = target, rate
        self.format = output_format(target, stdout_format)
        self.written = 0

    def __enter__(self):
        self._stack = contextlib.ExitStack()
        if self.target == STDIO:
            self._buffer = io.BytesIO()
            sink = self._buffer
        else:
            sink = str(self._stack.enter_context(atomic_path(Path(self.target))))
        subtype = "PCM_16"
        self._file = sf.SoundFile(sink, "w", self.rate, 1, subtype, format=self.format)
        self._resample = BlockResampler(self.rate)
        return self

    def write(self, block: np.ndarray, last: bool = False) -> None:
        block = self._resample(block, last)
        self._file.write(np.clip(block, -1.0, 1.0))
        self.written += len(block)

    def __exit__(self, kind, value, traceback):
        try:
            if kind is None:
                self.write(np.zeros(0, np.float32), last=True)  # the resampler's tail
            self._file.close()
            if kind is None and self.target == STDIO:
                write_stdout(self._buffer.getvalue())
        finally:
            self._stack.__exit__(kind, value, traceback)  # renames the file only on success
        return False


def write_audio(target: str, samples: np.ndarray, rate: int = SAMPLE_RATE) -> None:
    with AudioWriter(target, rate) as writer:
        writer.write(samples, last=True)


# --- spectral front end -------------------------------------------------------------------------------
def mel_filterbank(bins: int, n_fft: int, rate: int = SAMPLE_RATE, fmin: float = 0.0,
                   fmax: float | None = None) -> torch.Tensor:
    """Triangular filters on the HTK mel scale, (bins, n_fft // 2 + 1), each normalised to unit area."""
    def to_mel(f):
        return 2595.0 * np.log10(1.0 + np.asarray(f) / 700.0)

    def to_hz(m):
        return 700.0 * (10.0 ** (np.asarray(m) / 2595.0) - 1.0)

    fmax = fmax or rate / 2
    edges = to_hz(np.linspace(to_mel(fmin), to_mel(fmax), bins + 2))
    freqs = np.linspace(0, rate / 2, n_fft // 2 + 1)
    lower = (freqs[None] - edges[:-2, None]) / (edges[1:-1, None] - edges[:-2, None])
    upper = (edges[2:, None] - freqs[None]) / (edges[2:, None] - edges[1:-1, None])
    weights = np.maximum(0, np.minimum(lower, upper))
    weights *= 2.0 / (edges[2:, None] - edges[:-2, None])
    return torch.tensor(weights, dtype=torch.float32)


class Spectral(torch.nn.Module):
    """STFT magnitudes, log-mel features and Griffin-Lim inversion with one set of settings."""

    def __init__(self, n_fft: int = 512, hop: int = 160, mels: int = 80):
        super().__init__()
        self.n_fft, self.hop = n_fft, hop
        self.register_buffer("window", torch.hann_window(n_fft), persistent=False)
        self.register_buffer("mel", mel_filterbank(mels, n_fft), persistent=False)

    def magnitude(self, wave: torch.Tensor) -> torch.Tensor:
        """(N, samples) -> (N, n_fft/2+1, samples // hop + 1)."""
        spec = torch.stft(wave, self.n_fft, self.hop, window=self.window, center=True, pad_mode="reflect"
                          if wave.shape[-1] > self.n_fft // 2 else "constant", return_complex=True)
        return spec.abs()

    def log_mel(self, magnitude: torch.Tensor) -> torch.Tensor:
        return torch.log(self.mel @ magnitude + 1e-5)

    def griffin_lim(self, magnitude: torch.Tensor, length: int, iterations: int = 32,
                    momentum: float = 0.99) -> torch.Tensor:
        """Waveform whose STFT magnitude approaches `magnitude` (fast Griffin-Lim, Perraudin et al. 2013),
        starting from zero phase so that the result is deterministic."""
        phase = torch.ones_like(magnitude, dtype=torch.complex64)
        previous = torch.zeros_like(phase)
        for _ in range(iterations):
            wave = torch.istft(magnitude * phase, self.n_fft, self.hop, window=self.window, length=length)
            rebuilt = torch.stft(wave, self.n_fft, self.hop, window=self.window, return_complex=True)
            accelerated = rebuilt - (momentum / (1 + momentum)) * previous
            previous = rebuilt
            phase = accelerated / accelerated.abs().clamp_min(1e-8)
        return torch.istft(magnitude * phase, self.n_fft, self.hop, window=self.window, length=length)


def warp_frequency(features: torch.Tensor, factors: torch.Tensor) -> torch.Tensor:
    """Vocal tract length perturbation: stretch each clip's frequency axis (N, bands, frames; mel or
    linear bands) by its factor (band i takes the value at i * factor, linearly interpolated; a factor
    below 1 raises pitch and formants). It makes a classifier less tied to the few voices it was
    trained on, and gives the speech decoder voices nobody recorded."""
    bands = features.shape[1]
    position = (torch.arange(bands, device=features.device)[None] * factors.to(features.device)[:, None]
                ).clamp(0, bands - 1)  # (N, bands)
    low = position.floor().long()
    high = (low + 1).clamp_max(bands - 1)
    weight = (position - low)[..., None]
    take = lambda index: features.gather(1, index[..., None].expand(-1, -1, features.shape[2]))  # noqa: E731
    return take(low) * (1 - weight) + take(high) * weight
