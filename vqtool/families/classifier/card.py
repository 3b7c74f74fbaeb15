"""Model-card words of the classifiers: sample judges, attribute judges, speaker encoders."""

from __future__ import annotations

from vqtool.cards import CardText

CARDS = {
    "classifier": CardText(
        intended_use="Scoring how recognisable generated samples are (`vqtool train prior --judge`), research and "
                     "teaching. Not for decisions about people.",
        metric_notes=[
            "`accuracy`: top-1 accuracy on all held-out images.",
        ],
        limitations=[
            "A small CNN trained on 32x32 CIFAR-10 only: any other image gets one of the ten labels, often "
            "confidently. It exists to score generated samples, not to classify photos.",
        ],
    ),
    "attribute-classifier": CardText(
        intended_use="Judging Fader Network edits in evaluation, research and teaching. Not for "
                     "classifying or making decisions about people.",
        metric_notes=[
            "`accuracy_NAME`: share of held-out faces whose attribute it reads right (probability > 0.5); "
            "`accuracy`: their mean.",
        ],
        limitations=[
            "A small CNN trained on the same kind of 64x64 faces only; on anything else its answer means nothing. "
            "It exists to judge edits, not to classify people.",
        ],
    ),
    "audio-classifier": CardText(
        intended_use="Conditioning the speech decoder on a voice (speaker encoder) or judging its outputs in "
                     "evaluation (judges). Not for identifying or verifying people.",
        metric_notes=[
            "`accuracy`: top-1 accuracy on held-out clips of the training classes (FSDD's test split: n = 0-4).",
            "`unseen_speaker_eer`: equal error rate of same/different-speaker decisions by embedding cosine over "
            "all pairs of clips of speechocean's 125 test speakers, none of whom were seen in training.",
        ],
        limitations=[
            "Trained on a few minutes per speaker: it identifies only the voices it was trained on, and "
            "exists to condition the speech decoder or to judge its outputs, not to identify people.",
        ],
    ),
}
