"""Motion commands: `predict-motion` (several futures of a clip) and `train motion`."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from vqtool.cli.common import (AnnealOpt, BetaOpt, CompareOpt, DeviceOpt, FreeBitsOpt, LatentOpt, ModelsDirOpt,
                               Outputs, PriorOpt, any_folder, compared_models, console, emit_json, json_needs_file,
                               report, train_command, usage)
from vqtool.errors import VqtoolError

from . import ARCHITECTURE, KINDS

DEFAULT_MODEL = "motion-cmu"
MAX_SAMPLES = 1000  # futures per clip; more is refused (each future of 25 frames is ~12 KB of floats)
MAX_FRAMES = 500  # predicted frames (20 s); the model was trained for 25 and drifts long before this


def train_motion(
    data: Path = typer.Option(..., "--data", help="CMU mocap folder with train/ACTION/ACTION_N.txt (its test/ "
                                                  "folder is used for the held-out metrics only)."),
    prior: str = PriorOpt,
    latent: int = LatentOpt,
    hidden: int = typer.Option(256, "--hidden", min=8, help="Encoder output and decoder GRU size."),
    width: int = typer.Option(128, "--width", min=8, help="Channels of the temporal convolutions."),
    beta: float = BetaOpt,
    anneal_steps: int = AnnealOpt,
    free_bits: float = FreeBitsOpt,
    likelihood_std: float = typer.Option(0.1, "--likelihood-std", min=1e-4,
                                         help="Scale (radians) of the Gaussian likelihood of the joint angles."),
    dropout: float = typer.Option(0.2, "--dropout", min=0.0, max=0.9, help="Dropout on the condition's features "
                                  "and the decoder's pose input."),
    weight_decay: float = typer.Option(1e-4, "--weight-decay", min=0.0, help="Adam's L2 weight decay."),
    balance: bool = typer.Option(True, "--balance-actions/--no-balance-actions", help="Draw each action equally "
                                 "often (default) or windows as the files give them."),
    compare: Optional[str] = CompareOpt,
    models_dir: Optional[Path] = ModelsDirOpt,
    *, train,
):
    """Train a motion CVAE on CMU mocap (LTD protocol: 50 frames in, 25 out, at 25 frames/s).

    Example: `vqtool train motion --data ../shared/data/cmu-mocap --prior cpp --name motion-cmu`
    """
    from vqtool.data.motion import channel_stats, motion_splits, test_sets
    from vqtool.training import fit

    from .model import MotionConfig
    from .task import MotionTask

    baselines = compared_models(prior, compare, ARCHITECTURE, KINDS, models_dir)
    if not train.quiet:
        console.print(f"loading {data}…")
    windows, validation, info = motion_splits(data)
    sets = {"validation": validation, **test_sets(data)}
    info = {**info, "eval_split": (f"test/ ({len(sets['ltd'])} LTD windows, {len(sets['dense'])} dense windows); "
                                   if "ltd" in sets else "no test/ folder; ") + f"validation: {len(validation)} "
                                  "windows of train/"}
    stats = channel_stats(windows)
    config = MotionConfig(channels=stats[2].tolist(), hidden=hidden, width=width, prior=prior, latent=latent,
                          beta=beta, anneal_steps=anneal_steps, free_bits=free_bits, likelihood_std=likelihood_std,
                          dropout=dropout, weight_decay=weight_decay, balance_actions=balance)
    fit(MotionTask(config, windows, sets, stats, info, baselines), train.options())


def register(app: typer.Typer, train_app: typer.Typer) -> None:
    app.command("predict-motion")(predict_motion)
    train_command(train_app, "motion", name="motion", steps=8000, lr=1e-3, batch_size=64)(train_motion)


def predict_motion(
    inputs: List[str] = typer.Argument(..., metavar="CLIP...", help="Clips in the CMU exponential-map format "
                                       "(.txt, one frame per line, 117 comma-separated values) or .npy "
                                       "[frames, 117]; '-' for stdin."),
    samples: int = typer.Option(10, "--samples", "-n", help=f"Futures per clip (1..{MAX_SAMPLES})."),
    frames: Optional[int] = typer.Option(None, "--frames", help=f"Frames to predict at 25 frames/s (default: the "
                                         f"model's 25 = 1 s; at most {MAX_FRAMES})."),
    seed: int = typer.Option(0, "--seed", help="Random seed: the same seed gives the same futures."),
    stride: Optional[int] = typer.Option(None, "--stride", min=1, help="Keep every STRIDE-th input frame "
                                         "(default 2: the data files are at 50 frames/s; 1 for 25 frames/s clips)."),
    model: str = typer.Option(DEFAULT_MODEL, "--model", "-m", help="Motion checkpoint."),
    output: Optional[str] = typer.Option(None, "--output", "-o", help="File, folder (several clips) or '-' for "
                                         "stdout. Default: CLIP.futures.FORMAT beside each clip."),
    fmt: Optional[str] = typer.Option(None, "--format", help="txt, npy, png (picture), gif (animation) or bvh "
                                      "(skeleton for Blender); default: the suffix of -o, else txt."),
    device: str = DeviceOpt,
    models_dir: Optional[Path] = ModelsDirOpt,
    as_json: bool = typer.Option(False, "--json", help="One JSON record per clip on stdout (per-future summaries)."),
    quiet: bool = typer.Option(False, "--quiet", "-q"),
):
    """Predict several plausible futures of a person's motion from a clip.

    The model sees the clip's last 2 seconds (50 frames at 25 frames/s, i.e. the last 100 lines of a
    50 frames/s file) and predicts the joint angles; the root keeps its last position and heading.

    Examples:

    `vqtool predict-motion clip.txt -n 10 -o futures.gif`

    `vqtool predict-motion clip.txt -n 5 -o futures.bvh`   (futures_1.bvh ... futures_5.bvh)

    `cat clip.txt | vqtool predict-motion - -n 1 -o - > future.txt`
    """
    from vqtool.data.motion import MOTION_SUFFIXES
    from vqtool.hub import load
    from vqtool.media import expand_inputs

    from .outputs import format_for

    if not 1 <= samples <= MAX_SAMPLES:
        raise usage(f"must lie in 1..{MAX_SAMPLES}, not {samples}", "--samples")
    if frames is not None and not 1 <= frames <= MAX_FRAMES:
        raise usage(f"must lie in 1..{MAX_FRAMES}, not {frames}", "--frames")
    json_needs_file(as_json, output)
    try:
        if fmt is not None:
            suffix = format_for(f"x.{fmt}")
        else:
            named = output not in (None, "-") and Path(output).suffix and not Path(output).is_dir()
            suffix = format_for(output) if named else ".txt"
    except VqtoolError as exc:
        raise usage(str(exc), "--format" if fmt else "--output") from None
    if output == "-" and suffix == ".bvh" and samples > 1:
        raise usage("several .bvh futures are one file each; give a file name (-o out.bvh)", "--output")
    sources = expand_inputs(inputs, MOTION_SUFFIXES)
    net = load(model, device, models_dir, expect=ARCHITECTURE)
    outputs = Outputs(output, len(sources), f".futures{suffix}", sources, quiet, any_folder(inputs))
    targets = outputs.plan(sources)
    failures: list[str] = []
    for source, target in zip(sources, targets):
        try:
            summary = predict_one(net, source, target, suffix, samples, frames, seed, stride, as_json)
            if as_json:
                emit_json({"input": source, "model": net.name, **summary})
        except VqtoolError as exc:
            report(failures, source, exc)
    if not quiet:
        done = len(sources) - len(failures)
        console.print(f"predicted {samples} future(s) of {done} clip(s) with {net.name}"
                      + (f", {len(failures)} failed" if failures else ""))
    if failures:
        raise typer.Exit(1)


def predict_one(net, source: str, target: str, suffix: str, samples: int, frames, seed: int, stride,
                summarise: bool) -> dict:
    """Read one clip, sample its futures, write them; returns the JSON summary (when asked for)."""
    from vqtool.data.motion import parse_motion
    from vqtool.media import read_bytes

    from .outputs import futures_summary, write_futures

    clip = parse_motion(read_bytes(source), source, Path(source).suffix.lower() if source != "-" else ".txt")
    try:
        observed = net.window_of(clip, stride)
    except ValueError as exc:
        raise VqtoolError(str(exc), source) from None
    futures = net.predict(observed, samples, frames, seed, stride=1)
    written = write_futures(target, suffix, observed, futures, net.config.fps)
    return {"output": written, **(futures_summary(observed, futures, net.config.fps) if summarise else {})}
