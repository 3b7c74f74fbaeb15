"""What would it take to pass Resemblyzer's zero-shot test? Signal-processing stand-ins for a voice
converter, no model involved: the source clip scaled in frequency (pitch and formants together) by a
factor, optionally also given the reference's average log-spectrum (over its active frames), then
resynthesised by Griffin-Lim; and, as the ceiling, a real second utterance of the reference speaker.
Prints, per source kind, the share nearer the reference than the source and the mean cosines.

    python docs/zero_shot_oracles.py [--pairs 24]
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
FACTORS = (0.625, 0.8, 1.0, 1.25, 1.6)


def active_mean(log_magnitude: torch.Tensor) -> torch.Tensor:
    """The average log-spectrum over frames within 40 dB of the loudest (silence has no voice)."""
    energy = torch.logsumexp(2 * log_magnitude, dim=0)
    return log_magnitude[:, energy > energy.max() - 4 * math.log(10)].mean(1, keepdim=True)


def main() -> None:
    from vqtool.audio import Spectral, warp_frequency
    from vqtool.data.speech import list_clips, load_waves
    from vqtool.evaluation import speaker_embedder

    from make_zero_shot_figure import pairs  # the same pairing as the figure (this folder)

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=24)
    args = parser.parse_args()
    embed = speaker_embedder()
    spectral = Spectral()
    rng = np.random.default_rng(0)
    unseen = [c for c in list_clips(DATA / "speechocean") if c.split == "test"]
    fsdd = [c for c in list_clips(DATA / "fsdd") if c.split == "test"]
    print("| source | stand-in | nearer the reference | cosine to reference | cosine to source |")
    print("|---|---|---|---|---|")
    for kind, pool in (("FSDD digit", fsdd), ("unseen speechocean sentence", unseen)):
        triples = pairs(rng, [pool[i] for i in rng.choice(len(pool), args.pairs, replace=False)], unseen)
        src, ref = load_waves([s for s, _, _ in triples]), load_waves([r for _, r, _ in triples])
        seconds = [t for _, _, t in triples]
        e_src, e_ref = embed(src), embed(ref)

        def row(name: str, outputs: list) -> None:
            e_out = embed(outputs)
            to_ref, to_src = (e_out * e_ref).sum(1), (e_out * e_src).sum(1)
            print(f"| {kind} | {name} | {np.mean(to_ref > to_src):.0%} | {to_ref.mean():.3f} | {to_src.mean():.3f} |")

        for envelope in (False, True):
            for factor in FACTORS:
                outputs = []
                for wave, reference in zip(src, ref):
                    log_magnitude = torch.log(spectral.magnitude(torch.from_numpy(wave)[None]).clamp_min(1e-5))
                    log_magnitude = torch.log(warp_frequency(log_magnitude.exp(), torch.tensor([factor])).clamp_min(1e-5))
                    if envelope:
                        target = torch.log(spectral.magnitude(torch.from_numpy(reference)[None]).clamp_min(1e-5))
                        log_magnitude = log_magnitude - active_mean(log_magnitude[0]) + active_mean(target[0])
                    outputs.append(spectral.griffin_lim(log_magnitude.exp(), len(wave), 32)[0].numpy())
                scaled = f"frequencies x {1 / factor:.2f}" + (" + reference's average spectrum" if envelope else "")
                row(scaled, outputs)
        row("**a real second utterance of the reference speaker**", load_waves(seconds))


if __name__ == "__main__":
    main()
