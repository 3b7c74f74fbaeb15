"""Redraw docs/speech-vocoder.png: one held-out speechocean sentence (a speaker never trained on), its
spectrogram beside the shipped speech model's reconstruction (codes, then the decoder in the voice of the
clip itself) turned into a wave by Griffin-Lim and by the neural vocoder head, with each one's STOI against
the original. Also writes the three waves under out/ to listen to.

    python docs/make_vocoder_figure.py [--clip 0]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
OUT = ROOT / "docs" / "speech-vocoder.png"


def spectrogram_db(wave: np.ndarray) -> np.ndarray:
    magnitude = torch.stft(torch.from_numpy(wave), 512, 160, window=torch.hann_window(512), return_complex=True).abs()
    return 20 * np.log10(magnitude.numpy() + 1e-5)


def main() -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import soundfile as sf
    from pystoi import stoi

    import vqtool
    from vqtool.data.speech import list_clips, load_waves

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clip", type=int, default=0, help="Which speechocean test utterance (in listing order).")
    args = parser.parse_args()
    torch.manual_seed(0)
    net = vqtool.load("speech", device="cpu")
    clip = [c for c in list_clips(DATA / "speechocean") if c.split == "test"][args.clip]
    wave = load_waves([clip])[0]
    voice = net.voice_of(wave)
    outputs = {"original": wave}
    for name in ("griffin-lim", "neural"):
        net.use_vocoder(name)
        outputs[f"reconstruction, {name}"] = net.convert(wave, voice)
    Path(ROOT / "out").mkdir(exist_ok=True)
    fig, axes = plt.subplots(len(outputs), 1, figsize=(9, 2.3 * len(outputs)), sharex=True)
    for ax, (name, out) in zip(axes, outputs.items()):
        sf.write(ROOT / "out" / f"vocoder-{name.split(', ')[-1]}.wav", out, 16000)
        score = "" if name == "original" else f"  (STOI {stoi(wave, out[:len(wave)], 16000):.3f})"
        ax.imshow(spectrogram_db(out), origin="lower", aspect="auto", vmin=-80, vmax=20, cmap="magma",
                  extent=(0, len(out) / 16000, 0, 8))
        ax.set_title(name + score, fontsize=10, loc="left")
        ax.set_ylabel("kHz")
    axes[-1].set_xlabel(f"seconds  (speechocean762 test utterance {Path(clip.path).stem}, speaker never trained on)")
    fig.tight_layout()
    fig.savefig(OUT, dpi=80)
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
