"""`vqtool train classifier` (images: classes or binary attributes) and `vqtool train audio-classifier`
(speakers or digits)."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from vqtool.cli.common import HoldoutOpt, LabelsOpt, LimitOpt, console, split_specs, train_command, usage
from vqtool.errors import VqtoolError


def train_classifier(
    data: Path = typer.Option(..., "--data", help="Folder or .zip of training images (labels = parent folder)."),
    eval_data: Optional[Path] = typer.Option(None, "--eval-data", help="Held-out images for the final accuracy."),
    width: int = typer.Option(32, "--width", help="Channels of the first stage (doubled twice)."),
    attributes: Optional[str] = typer.Option(None, "--attributes", "-a",
                                             help="Classify binary attributes instead of folders (as in `train "
                                                  "fader`): the judge of Fader Network edits."),
    labels: Optional[Path] = LabelsOpt,  # these two with --attributes only
    holdout: Optional[Path] = HoldoutOpt,
    limit: Optional[int] = LimitOpt,
    *, train,
):
    """Train the small image classifier that scores generated samples (or, with --attributes, edited faces).

    Example: `vqtool train classifier --data ../shared/data/cifar10/train.zip --eval-data ../shared/data/cifar10/test.zip --name cifar10-classifier`

    Example: `vqtool train classifier --data ../shared/data/smiles/smiles.zip --attributes smile --name faces-smile-judge`
    """
    from vqtool.classifiers import ClassifierConfig
    from vqtool.data import refuse_test_split
    from vqtool.data.attributes import attribute_splits
    from vqtool.data.images import load_images, provenance
    from vqtool.training import fit

    from .task import ClassifierTask

    refuse_test_split(data)
    if attributes:
        images, held_out, info = attribute_splits(data, split_specs(attributes), labels, holdout, limit=limit)
        config = ClassifierConfig(channels=images.images.shape[-1], width=width, classes=images.classes,
                                  multilabel=True)
        task = ClassifierTask(config, images, None, info, eval_set=held_out)
    else:
        images = load_images(data, limit=limit)
        config = ClassifierConfig(channels=images.images.shape[-1], width=width, classes=images.classes)
        task = ClassifierTask(config, images, str(eval_data) if eval_data else None,
                              provenance(data, images, eval_data))
    fit(task, train.options())


SpeechDataOpt = typer.Option(..., "--data", help="Speech corpus folder (speechocean, fsdd or SPEAKER/*.wav); "
                                                 "repeat for several. Only their train splits are used.")


def train_audio_classifier(
    data: List[Path] = SpeechDataOpt,
    label: str = typer.Option("speaker", "--label", help="What to classify: speaker or digit (FSDD)."),
    width: int = typer.Option(128, "--width", help="Channels of the convolutions."),
    embedding: int = typer.Option(128, "--embedding", help="Embedding size."),
    warp: float = typer.Option(0.0, "--warp", help="Vocal tract length perturbation: stretch the mel axis by a "
                                                   "random factor in 1 ± WARP (0.2 makes a digit judge robust to "
                                                   "voices it never heard)."),
    *, train,
):
    """Train a speaker or digit classifier on speech: the speech model's speaker encoder, or a judge.

    Example: `vqtool train audio-classifier --data ../shared/data/fsdd --data ../shared/data/speechocean --label speaker --name speech-speakers`
    """
    from vqtool.classifiers import AudioClassifierConfig
    from vqtool.data.speech import load_waves, provenance, speakers_of, split_clips
    from vqtool.training import fit

    from .task import AudioClassifierTask

    if label not in ("speaker", "digit"):
        raise usage("use speaker or digit", "--label")
    clips, test = split_clips(data)
    if label == "digit":
        clips = [c for c in clips if c.digit is not None]
        if not clips:
            raise VqtoolError("no digit-labelled clips (FSDD) in the data")
        classes = [str(d) for d in range(10)]
        labels = [c.digit for c in clips]
        held = [c for c in test if c.digit is not None]
        held_out = (load_waves(held), [c.digit for c in held]) if held else None
        unseen = None
    else:
        classes = speakers_of(clips)
        labels = [classes.index(c.speaker) for c in clips]
        held = [c for c in test if c.speaker in classes]
        others = [c for c in test if c.speaker not in classes]
        held_out = (load_waves(held), [classes.index(c.speaker) for c in held]) if held else None
        unseen = (load_waves(others), [c.speaker for c in others]) if others else None
    if not train.quiet:
        console.print(f"{len(clips)} training clips, {len(classes)} classes")
    config = AudioClassifierConfig(width=width, embedding=embedding, label=label, classes=classes)
    task = AudioClassifierTask(config, load_waves(clips), labels, held_out, unseen, provenance(data, clips), warp)
    fit(task, train.options())


def register(app: typer.Typer, train_app: typer.Typer) -> None:
    train_command(train_app, "classifier", name="classifier", steps=6_000, lr=2e-3)(train_classifier)
    train_command(train_app, "audio-classifier", name="speech-speakers", steps=3_000, lr=2e-3,
                  batch_size=64)(train_audio_classifier)
