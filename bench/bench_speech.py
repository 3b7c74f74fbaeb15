"""Speed and streaming of the speech model on this machine's CPU.

1. Real-time factor (audio seconds per processing second) of encode, decode and convert on ONE
   thread, for a 30 s clip of real speech (speechocean test speakers), with the time split between
   the networks and the vocoder (the neural head against Griffin-Lim, where the checkpoint has a head),
   and the decoder network's GFLOP/s against the measured matmul peak.
2. Encode + decode of 2 minutes (several chunks) at three chunk sizes, in the same run: what the halos
   around each chunk cost.
3. Chunked versus whole-file conversion of the same 2 minutes: the codes must be identical (normalisation
   statistics come from whole-stream passes); the audio is compared as waveform SNR and as
   magnitude-spectrum distance in dB.
4. A 1-hour file converted by the real CLI in a subprocess: wall time and peak resident memory.

Writes bench/results/speech-<model>.json.   python bench/bench_speech.py [--model speech] [--hour]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from unittest import mock

import numpy as np
import soundfile as sf
import torch

from bench_vqvae import matmul_peak

ROOT = Path(__file__).resolve().parent.parent
DATA = Path(os.environ.get("VQTOOL_DATA", ROOT.parent / "shared" / "data"))


def test_speech(seconds: float) -> np.ndarray:
    """Real speech from held-out speakers, joined to `seconds`."""
    from vqtool.data.speech import list_clips, load_waves

    clips = [c for c in list_clips(DATA / "speechocean") if c.split == "test"]
    waves, total = [], 0
    for wave in load_waves(clips[:200]):
        waves.append(wave)
        total += len(wave)
        if total >= seconds * 16000:
            break
    return np.concatenate(waves)[: int(seconds * 16000)]


def timed(call, repeats: int = 3) -> float:
    call()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        best = min(best, time.perf_counter() - start)
    return best


def conv_flops(model, run) -> int:
    total = 0

    def hook(module, inputs, output):
        nonlocal total
        total += 2 * output.shape[0] * module.in_channels * module.out_channels * module.kernel_size[0] \
            * output.shape[-1] // module.groups

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, torch.nn.Conv1d)]
    run()
    for handle in handles:
        handle.remove()
    return total


def speed(model, wave: np.ndarray) -> dict:
    import vqtool.families.speech.model as speech

    seconds = len(wave) / 16000
    voice = model.voice(model.config.speakers[0])
    codes = model.encode(wave)
    latents = model.quantizer.lookup(codes[None])
    padded, _ = model._padded(wave)
    with torch.no_grad():
        log_mag = model.decode_latents(latents, voice[None])
    magnitude = torch.cat([log_mag.exp(), log_mag.exp()[..., -1:]], -1)
    chosen = model.vocoding
    rows = {
        "encode": timed(lambda: model.encode(wave)),
        f"decode ({chosen})": timed(lambda: model.decode(codes, voice)),
        "convert": timed(lambda: model.convert(wave, voice)),
        "convert --keep-level": timed(lambda: model.convert(wave, voice, keep_level=True)),
        "decoder network only": timed(lambda: model.decode_latents(latents, voice[None])),
        "griffin-lim only": timed(lambda: model.spectral.griffin_lim(magnitude, padded.shape[-1],
                                                                      model.config.griffin_lim_iterations)),
    }
    with mock.patch.object(speech, "KEEP_SAMPLES", 0):  # as before activations were kept between passes
        rows["encode, layers recomputed each pass"] = timed(lambda: model.encode(wave))
    if model.vocoder is not None:
        log_magnitude = torch.cat([log_mag, log_mag[..., -1:]], -1)
        with torch.no_grad():
            rows["vocoder head + inverse STFT only"] = timed(lambda: model.synthesise(log_magnitude, padded.shape[-1]))
        model.use_vocoder("griffin-lim")
        rows["decode (griffin-lim)"] = timed(lambda: model.decode(codes, voice))
        model.use_vocoder(chosen)
    with torch.no_grad():
        flops = conv_flops(model, lambda: model.decode_latents(latents, voice[None]))  # the vocoder is not in it
    peak = matmul_peak(1)
    result = {op: {"seconds": round(t, 4), "real_time_factor": round(seconds / t, 1)} for op, t in rows.items()}
    for name in [k for k in rows if k.startswith("decode (")]:
        both = rows["encode"] + rows[name]
        result[f"encode+{name}"] = {"seconds": round(both, 4), "real_time_factor": round(seconds / both, 1)}
    fit_seconds = min(seconds, speech.FIT_SECONDS)  # once per reference clip, not per second converted
    fit = timed(lambda: model.fitted_voice(wave[: int(fit_seconds * 16000)]))
    result[f"fit a reference voice ({speech.FIT_STEPS} + {2 * speech.FIT_STEPS} steps, {fit_seconds:g} s clip)"] = {
        "seconds": round(fit, 4), "real_time_factor": round(fit_seconds / fit, 1)}
    result["decoder network only"]["gflops"] = round(flops / rows["decoder network only"] / 1e9, 1)
    result["matmul_peak_gflops_1_thread"] = round(peak, 1)
    result["audio_seconds"] = seconds
    result["chunk_seconds"] = speech.CHUNK_CODES * model.config.samples_per_code / 16000
    return result


def chunk_sizes(model, wave: np.ndarray, sizes=(512, 1024, 2048), repeats: int = 3) -> dict:
    """Encode + decode at each chunk size (codes per chunk; the halo stays), interleaved, median of `repeats`."""
    import vqtool.families.speech.model as speech

    shipped = speech.CHUNK_CODES
    voice, times = model.voice(model.config.speakers[0]), {n: [] for n in sorted({*sizes, shipped})}
    for _ in range(repeats + 1):
        for size in times:
            with mock.patch.object(speech, "CHUNK_CODES", size):
                start = time.perf_counter()
                model.decode(model.encode(wave), voice)
                times[size].append(time.perf_counter() - start)
    seconds = len(wave) / 16000
    median = {n: float(np.median(t[1:])) for n, t in times.items()}  # the first round warms up
    return {f"{n} codes ({n * model.config.samples_per_code / 16000:g} s)": {
        "seconds": round(t, 4), "real_time_factor": round(seconds / t, 1),
        "time_over_shipped": round(t / median[shipped], 3)} for n, t in median.items()}


def seams(model, wave: np.ndarray) -> dict:
    import vqtool.families.speech.model as speech

    voice = model.voice(model.config.speakers[0])
    chunked_codes, chunked_audio = model.encode(wave), model.convert(wave, voice, keep_level=True)
    chunked_level = model.convert(wave, voice)  # level matched on the first window
    with mock.patch.object(speech, "CHUNK_CODES", 1_000_000):
        whole_codes, whole_audio = model.encode(wave), model.convert(wave, voice, keep_level=True)
        whole_level = model.convert(wave, voice)  # level matched on the whole file
    rms = lambda w: float(np.sqrt(np.mean(np.square(w, dtype=np.float64))))  # noqa: E731
    spec = lambda w: torch.stft(torch.from_numpy(w), 512, 160, window=torch.hann_window(512),  # noqa: E731
                                return_complex=True).abs()
    a, b = spec(chunked_audio), spec(whole_audio)
    snr = 10 * np.log10(np.sum(whole_audio ** 2) / max(np.sum((whole_audio - chunked_audio) ** 2), 1e-20))
    return {"codes_identical": bool(torch.equal(chunked_codes, whole_codes)),
            "codes_agreeing": round(float((chunked_codes == whole_codes).float().mean()), 4),
            "waveform_difference_db": round(float(-snr), 2),
            "magnitude_difference_db": round(float(20 * torch.log10(torch.linalg.norm(a - b) / torch.linalg.norm(b))), 2),
            "level_gain_chunked_over_whole_db": round(20 * float(np.log10(rms(chunked_level) / rms(whole_level))), 2),
            "note": "difference relative to the whole-file output, in dB (more negative: closer), at the "
                    "decoder's level (--keep-level); the level-matched gain is measured on the first chunk "
                    "when chunked, on the whole file when not: their ratio in dB"}


def high_water_mb(pid: int) -> float:
    """Peak resident memory of a running process (Linux's VmHWM), 0 where it cannot be read."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0.0
    return next((int(line.split()[1]) / 1024 for line in status.splitlines() if line.startswith("VmHWM")), 0.0)


def hour(model_name: str, minutes: float) -> dict:
    wave = test_speech(60)
    with tempfile.TemporaryDirectory() as folder:
        source, target = Path(folder) / "hour.wav", Path(folder) / "out.wav"
        with sf.SoundFile(source, "w", 16000, 1, "PCM_16") as handle:
            for _ in range(int(minutes)):
                handle.write(wave)
        start = time.perf_counter()
        child = subprocess.Popen([sys.executable, "-m", "vqtool", "convert-voice", str(source), "--to", "spk0",
                                  "-m", model_name, "-o", str(target), "-q"], stderr=subprocess.PIPE,
                                 env={**os.environ, "OMP_NUM_THREADS": "1"})
        peak = 0.0
        while child.poll() is None:  # the child's own high-water mark (ru_maxrss would count this process's
            peak = max(peak, high_water_mb(child.pid))  # pages too: they are the child's until it execs)
            time.sleep(0.05)
        elapsed = time.perf_counter() - start
        if child.returncode != 0:
            raise SystemExit(child.stderr.read().decode())
        frames = sf.info(target).frames
    return {"minutes": minutes, "wall_seconds": round(elapsed, 1), "real_time_factor": round(minutes * 60 / elapsed, 1),
            "peak_rss_mb": round(peak, 1), "output_frames": frames, "input_frames": int(minutes) * len(wave)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="speech")
    parser.add_argument("--hour", action="store_true", help="also convert a 60-minute file through the CLI")
    args = parser.parse_args()
    import vqtool

    torch.set_num_threads(1)
    model = vqtool.load(args.model, device="cpu")
    wave = test_speech(30)
    long = np.tile(wave, 4)  # 2 minutes: three chunks of 41 s
    report = {"model": args.model, "machine": platform.processor() or platform.machine(), "threads": 1,
              "torch": torch.__version__, "speed": speed(model, wave), "chunk_sizes_2min": chunk_sizes(model, long),
              "seams_2min": seams(model, long)}
    if args.hour:
        report["one_hour_file"] = hour(args.model, 60)
    print(f"{'operation (1 thread, 30 s of speech)':40} {'seconds':>8} {'x real time':>12}")
    for op, row in report["speed"].items():
        if isinstance(row, dict):
            print(f"{op:40} {row['seconds']:8.3f} {row['real_time_factor']:12.1f}")
    print(f"decoder network: {report['speed']['decoder network only']['gflops']} GFLOP/s of "
          f"{report['speed']['matmul_peak_gflops_1_thread']} GFLOP/s matmul peak (1 thread)")
    print(f"{'encode + decode, 2 min, chunk size':40} {'seconds':>8} {'x real time':>12} {'/ shipped':>10}")
    for size, row in report["chunk_sizes_2min"].items():
        print(f"{size:40} {row['seconds']:8.3f} {row['real_time_factor']:12.1f} {row['time_over_shipped']:10.3f}")
    print("chunked vs whole (2 min):", json.dumps(report["seams_2min"]))
    if args.hour:
        print("one-hour file:", json.dumps(report["one_hour_file"]))
    out = ROOT / "bench" / "results" / f"speech-{Path(args.model).stem}.json"
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
