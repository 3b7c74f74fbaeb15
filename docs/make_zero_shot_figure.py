"""Redraw docs/speech-zero-shot.png: zero-shot conversion as Resemblyzer (a pretrained speaker encoder
nobody here trained) sees it. Each dot is one output: its cosine to the source clip (x) and to the
reference clip whose voice it was given (y); above the diagonal it is nearer the reference. Left: from
FSDD test digits (training speakers, 8 kHz, under a second); right: between speechocean test speakers
(both unseen, read sentences). Grey: a real second utterance of the reference speaker, the ceiling.
Red: the reference's voice as the speaker encoder embeds it (`--fit-steps 0`); blue: fitted to the
decoder first (`fitted_voice`, what `convert-voice --to-voice` does by default).

    python docs/make_zero_shot_figure.py [--model speech] [--pairs 60]
"""

from __future__ import annotations

import argparse
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
OUT = ROOT / "docs" / "speech-zero-shot.png"


def pairs(rng, sources, references):
    """(source, reference, second clip of the reference's speaker or None) for each source, speakers differ."""
    by_speaker = defaultdict(list)
    for clip in references:
        by_speaker[clip.speaker].append(clip)
    out = []
    for source in sources:
        speaker = str(rng.choice(sorted(s for s in by_speaker if s != source.speaker and len(by_speaker[s]) > 1)))
        first, second = rng.choice(len(by_speaker[speaker]), 2, replace=False)
        out.append((source, by_speaker[speaker][first], by_speaker[speaker][second]))
    return out


def main() -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    import vqtool
    from vqtool.data.speech import list_clips, load_waves
    from vqtool.evaluation import speaker_embedder

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="speech")
    parser.add_argument("--pairs", type=int, default=60)
    args = parser.parse_args()
    embed = speaker_embedder()
    model = vqtool.load(args.model, device="cpu")
    rng = np.random.default_rng(0)
    fsdd = [c for c in list_clips(DATA / "fsdd") if c.split == "test"]
    unseen = [c for c in list_clips(DATA / "speechocean") if c.split == "test"]
    panels = {"from FSDD digits (training speakers, 8 kHz, < 1 s)": [fsdd[i] for i in rng.choice(len(fsdd), args.pairs, replace=False)],
              "between unseen speechocean voices (read sentences)": [unseen[i] for i in rng.choice(len(unseen), args.pairs, replace=False)]}
    figure, axes = plt.subplots(1, 2, figsize=(10, 4.8), sharex=True, sharey=True)
    for axis, (title, sources) in zip(axes, panels.items()):
        triples = pairs(rng, sources, unseen)
        source_waves = load_waves([s for s, _, _ in triples])
        reference_waves = load_waves([r for _, r, _ in triples])
        e_src, e_ref = embed(source_waves), embed(reference_waves)
        e_real = embed(load_waves([t for _, _, t in triples]))
        real = ((e_real * e_src).sum(1), (e_real * e_ref).sum(1))
        axis.scatter(*real, s=14, c="0.7", label=f"real 2nd utterance of the reference speaker "
                     f"({np.mean(real[1] > real[0]):.0%} above)")
        for name, colour, voice_of in (("encoder's embedding", "tab:red", model.voice_of),
                                       ("fitted voice", "tab:blue", model.fitted_voice)):
            e_out = embed([model.convert(w, voice_of(r)) for w, r in zip(source_waves, reference_waves)])
            converted = ((e_out * e_src).sum(1), (e_out * e_ref).sum(1))
            axis.scatter(*converted, s=14, c=colour, label=f"zero-shot, {name} ({np.mean(converted[1] > converted[0]):.0%} "
                         f"above; mean y {converted[1].mean():.2f})")
        axis.plot([0, 1], [0, 1], "k--", lw=0.8)
        axis.axhline(0.75, color="tab:blue", lw=0.8, ls=":")
        axis.set(title=title, xlabel="cosine to the source", xlim=(0.2, 1), ylim=(0.2, 1))
        axis.legend(loc="lower right", fontsize=7)
    axes[0].set_ylabel("cosine to the reference (dotted: target 0.75)")
    figure.suptitle(f"Zero-shot voice conversion by `{Path(args.model).stem}`, judged by Resemblyzer "
                    f"({args.pairs} test pairs per panel)", fontsize=10)
    figure.tight_layout()
    figure.savefig(OUT, dpi=110)
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
