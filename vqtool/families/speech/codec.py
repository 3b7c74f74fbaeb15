"""Audio records of `.vqc` files: codes streamed from a recording with the speaker's voice beside
them, checked against the checkpoint that reads them, decoded in that voice or another."""

from __future__ import annotations

from typing import Iterator

import numpy as np

from vqtool.audio import SAMPLE_RATE, AudioInfo, audio_source
from vqtool.codes import MAX_AUDIO_SECONDS, CodeFile
from vqtool.errors import VqtoolError

VOICE_SECONDS = 30  # the voice embedding is taken from the first 30 s


def opening(open_blocks, seconds: float = VOICE_SECONDS) -> np.ndarray:
    """The first `seconds` of a stream at 16 kHz: what its voice and its speech check are taken from."""
    head, kept = [], 0
    for block in open_blocks():
        head.append(block[: int(seconds * SAMPLE_RATE) - kept])
        kept += len(head[-1])
        if kept >= seconds * SAMPLE_RATE:
            break
    return np.concatenate(head) if head else np.zeros(0, np.float32)


def encode_record(net, source: str, name: dict | None = None,
                  data: bytes | None = None) -> tuple[CodeFile, AudioInfo, np.ndarray]:
    """The record of one recording (a file, '-', or its bytes), codes computed chunk by chunk; with the
    recording's info and its opening seconds (`opening`)."""
    from .model import SILENCE_RMS, voice_to_text

    info, open_blocks = audio_source(source, data=data)
    if info.seconds > MAX_AUDIO_SECONDS:  # its record could not be read back
        raise VqtoolError(f"{info.seconds / 3600:.1f} hours of audio; a .vqc record holds at most "
                          f"{MAX_AUDIO_SECONDS // 3600} (split the file, or use convert-voice, which streams)", source)
    codes = np.concatenate(list(net.encode_stream(open_blocks))).astype(np.int64)
    start = opening(open_blocks)
    media = {"kind": "audio", "sample_rate": info.sample_rate, "samples": info.frames,
             "code_rate": SAMPLE_RATE / net.config.samples_per_code}
    extra = {}
    if float(np.sqrt(np.mean(start.astype(np.float64) ** 2))) >= SILENCE_RMS:
        voice = net.speaker_encoder.embed([start])[0]
        media["speaker"] = net.nearest_speaker(voice)
        extra["voice"] = voice_to_text(voice)
    media.update(name or {})
    return CodeFile(codes, net.name, net.sha256, net.config.num_codes, media, extra), info, start


def encode(net, source: str, data: bytes | None = None, compress: bool = False) -> bytes:
    if compress:
        raise VqtoolError("--compress needs a learned prior, which only the image models have")
    return encode_record(net, source, data=data)[0].to_bytes()


def check_record(net, record, source: str) -> None:
    """The codes must fit the recorded length (two codes of slack: resampling rounds the length)."""
    media = record.media
    samples_16k = -(-media["samples"] * SAMPLE_RATE // media["sample_rate"])
    expected = -(-samples_16k // net.config.samples_per_code)
    if len(record.grid) != 1 or abs(record.grid[0] - expected) > 2:
        raise VqtoolError(f"corrupt .vqc header ({media['samples']} samples at {media['sample_rate']} Hz needs a "
                          f"{expected} grid, not {'x'.join(map(str, record.grid))})", source)


def resolve_voice(net, to: str | None = None, to_voice: str | None = None, fit_steps: int | None = None):
    """A built-in speaker (`to`: spkN or a name) or the voice of a reference clip (`to_voice`, fitted to the
    decoder in `fit_steps` steps, default model.FIT_STEPS: see model.fitted_voice), or None."""
    from vqtool.audio import read_audio

    from .model import FIT_STEPS

    if to:
        return net.voice(to)
    if to_voice:
        wave, _ = read_audio(to_voice)
        return net.fitted_voice(wave, FIT_STEPS if fit_steps is None else fit_steps, source=to_voice)
    return None


def record_voice(net, record, source: str):
    """The voice the record carries (its speaker's embedding)."""
    from .model import voice_from_text

    if "voice" not in record.extra:
        raise VqtoolError("record carries no voice (silent input?); pass --to or --to-voice", source)
    return voice_from_text(record.extra["voice"], net.speaker_table.shape[1], source)


def decode_blocks(net, record, voice) -> Iterator[np.ndarray]:
    """16 kHz blocks of the decoded record, cut to its length (resample them to `media.sample_rate`)."""
    rate = record.media["sample_rate"]
    left = record.media["samples"] * SAMPLE_RATE // rate or None  # at 16 kHz, before resampling
    for block in net.decode_stream(iter([np.asarray(record.codes, np.float32)]), voice):
        block = block[:left] if left is not None else block
        if left is not None:
            left -= len(block)
        yield block


def decode(net, record, source: str, voice=None) -> tuple[np.ndarray, int]:
    """(float32 mono samples at the recorded rate, that rate), in `voice` or the record's own; the
    samples `vqtool decode` writes, before their 16-bit rounding."""
    from vqtool.audio import BlockResampler

    voice = record_voice(net, record, source) if voice is None else voice
    rate = record.media["sample_rate"]
    resample = BlockResampler(rate)
    parts = [resample(block) for block in decode_blocks(net, record, voice)]
    parts.append(resample(np.zeros(0, np.float32), last=True))
    return np.clip(np.concatenate(parts), -1.0, 1.0), rate
