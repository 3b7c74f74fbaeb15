"""The `vqtool` command: a thin layer over the library. Data goes to stdout, messages to stderr."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import List, Optional

import typer
from rich.console import Console

from . import __version__
from .errors import StdoutClosed, VqtoolError

console = Console(stderr=True)
app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  rich_markup_mode="markdown",
                  help="Discrete codes and controllable generation from media.\n\n"
                       "Examples:\n\n"
                       "    vqtool encode photo.png                  # writes photo.vqc\n\n"
                       "    vqtool decode photo.vqc -o back.png\n\n"
                       "    vqtool encode photo.png -o - | vqtool decode - -o back.png\n\n"
                       "    vqtool convert-voice talk.wav --to spk3 -o other.wav\n\n"
                       "    vqtool fade face.jpg --smile 0.7 -o smiling.png\n\n"
                       "    vqtool models list")
train_app = typer.Typer(no_args_is_help=True, help="Train a checkpoint (runs unchanged under torchrun).")
models_app = typer.Typer(no_args_is_help=True, help="List and describe checkpoints.")
app.add_typer(train_app, name="train")
app.add_typer(models_app, name="models")

DeviceOpt = typer.Option("auto", "--device", help="auto, cpu or cuda (cuda:N).")
ModelsDirOpt = typer.Option(None, "--models-dir", help="Folder of your own checkpoints (default $VQTOOL_HOME/models).")


def _version(value: bool):
    if value:
        typer.echo(f"vqtool {__version__}")
        raise typer.Exit()


@app.callback()
def _root(version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                       help="Print the version and exit.")):
    """Discrete codes and controllable generation from media."""


def usage(message: str, param: str | None = None) -> typer.BadParameter:
    """A usage error (exit 2), reported by typer like any other bad option."""
    return typer.BadParameter(message, param_hint=param)


def emit_json(record: dict) -> None:
    from .media import write_stdout

    write_stdout((json.dumps(record) + "\n").encode())


# --- training ------------------------------------------------------------------------------------
DataOpt = typer.Option(..., "--data", help="Folder or .zip of training images (labels = parent folder).")
OutOpt = typer.Option(None, "--out", help="Run folder (default runs/NAME).")
BatchOpt = typer.Option(128, "--batch-size", min=1)
SeedOpt = typer.Option(0, "--seed")
ResumeOpt = typer.Option(False, "--resume", help="Continue from RUN/state.safetensors.")
LimitOpt = typer.Option(None, "--limit", help="Use a random subset of this many training images.")
TimeLimitOpt = typer.Option(None, "--time-limit", help="Minutes; stop (and export) when reached.")
AttributesOpt = typer.Option(..., "--attributes", "-a",
                             help="Comma-separated binary attributes: NAME (parent folder named NAME, or a 0/1 "
                                  "column of --labels), NAME=COLUMN:VALUE or NAME=COLUMN<NUMBER (also <=, >, >=).")
LabelsOpt = typer.Option(None, "--labels", help="CSV table with a 'file' column naming each image as inside --data.")
HoldoutOpt = typer.Option(None, "--holdout", help="File listing held-out images, one per line: never trained on, "
                                                  "used for the final metrics (default: test.txt beside --data, "
                                                  "which is never trained on either way).")
CheckpointOpt = typer.Option(500, "--checkpoint-every", help="Save resumable state every N steps.")


def split_specs(attributes: str) -> list[str]:
    """`--attributes` -> one rule per comma-separated item."""
    specs = [s.strip() for s in attributes.split(",") if s.strip()]
    if not specs:
        raise usage("name at least one attribute", "--attributes")
    return specs


def train_options(name: str, out: Optional[Path], steps: int, batch_size: int, lr: float, seed: int, device: str,
                  resume: bool, quiet: bool, time_limit: Optional[float], checkpoint_every: int = 500,
                  run_folder: Optional[str] = None):
    """The shared loop's options from the options every `train` command has (time limit in minutes)."""
    from .training import TrainOptions

    return TrainOptions(out=out or Path("runs") / (run_folder or name), name=name, steps=steps, batch_size=batch_size,
                        lr=lr, seed=seed, device=device, resume=resume, checkpoint_every=checkpoint_every,
                        quiet=quiet, time_limit=time_limit * 60 if time_limit else None)


def _data_info(data: Path, train, eval_data: Optional[Path]) -> dict:
    """Provenance of the training and held-out data, as every checkpoint records it."""
    from .data import fingerprint

    return {"train_data": str(data), "train_split": data.stem, "train_items": len(train),
            "train_sha256": fingerprint(data), "classes": train.classes,
            "eval_data": str(eval_data) if eval_data else None,
            "eval_split": eval_data.stem if eval_data else None}


@train_app.command("vqvae")
def train_vqvae(
    data: Path = DataOpt,
    eval_data: Optional[Path] = typer.Option(None, "--eval-data", help="Held-out images for the final metrics."),
    name: str = typer.Option("vqvae", "--name", help="Checkpoint name."),
    out: Optional[Path] = OutOpt,
    steps: int = typer.Option(10_000, "--steps", min=1),
    batch_size: int = BatchOpt,
    lr: float = typer.Option(3e-4, "--lr"),
    seed: int = SeedOpt,
    device: str = DeviceOpt,
    resume: bool = ResumeOpt,
    image_size: Optional[int] = typer.Option(None, "--image-size", help="Centre-crop and resize to this size."),
    hidden: int = typer.Option(128, "--hidden"),
    res_hidden: int = typer.Option(64, "--res-hidden"),
    res_blocks: int = typer.Option(2, "--res-blocks"),
    downsamples: int = typer.Option(2, "--downsamples", help="Number of stride-2 layers: codes cover 2**N pixels."),
    embedding_dim: int = typer.Option(64, "--embedding-dim"),
    num_codes: int = typer.Option(512, "--codes", help="Codebook size K."),
    ema: bool = typer.Option(True, "--ema/--no-ema", help="EMA codebook updates (gamma 0.99) or codebook loss."),
    flip: bool = typer.Option(True, "--flip/--no-flip", help="Random horizontal flips."),
    limit: Optional[int] = LimitOpt,
    eval_limit: Optional[int] = typer.Option(None, "--eval-limit"),
    checkpoint_every: int = CheckpointOpt,
    time_limit: Optional[float] = TimeLimitOpt,
    quiet: bool = typer.Option(False, "--quiet", "-q"),
):
    """Train an image VQ-VAE.

    Example: `vqtool train vqvae --data ../shared/data/cifar10/train.zip --eval-data ../shared/data/cifar10/test.zip --name cifar10`
    """
    from .data import load_images, refuse_test_split
    from .training import fit
    from .vqvae import VQVAEConfig, VQVAETask

    refuse_test_split(data)
    if not quiet:
        console.print(f"loading {data}…")
    train = load_images(data, size=image_size, limit=limit)
    config = VQVAEConfig(channels=train.images.shape[-1], hidden=hidden, res_hidden=res_hidden,
                         res_blocks=res_blocks, downsamples=downsamples, embedding_dim=embedding_dim,
                         num_codes=num_codes, ema=ema)
    info = _data_info(data, train, eval_data)
    task = VQVAETask(config, train, str(eval_data) if eval_data else None, flip, eval_limit, info)
    fit(task, train_options(name, out, steps, batch_size, lr, seed, device, resume, quiet, time_limit, checkpoint_every))


@train_app.command("prior")
def train_prior(
    data: Path = DataOpt,
    vqvae: str = typer.Option("cifar10", "--vqvae", help="The trained VQ-VAE whose codes the prior models."),
    eval_data: Optional[Path] = typer.Option(None, "--eval-data", help="Held-out images for the final metrics."),
    judge: Optional[str] = typer.Option(None, "--judge", help="Classifier checkpoint that scores class-conditional "
                                                              "samples in the final metrics."),
    name: Optional[str] = typer.Option(None, "--name", help="Checkpoint name (default: the VQ-VAE's name)."),
    out: Optional[Path] = typer.Option(None, "--out", help="Run folder (default runs/NAME-prior)."),
    steps: int = typer.Option(20_000, "--steps", min=1),
    batch_size: int = BatchOpt,
    lr: float = typer.Option(5e-4, "--lr"),
    seed: int = SeedOpt,
    device: str = DeviceOpt,
    resume: bool = ResumeOpt,
    hidden: int = typer.Option(96, "--hidden", help="Channels of each stack."),
    layers: int = typer.Option(12, "--layers", help="Gated layers; reach grows by one code per layer."),
    class_dropout: float = typer.Option(0.2, "--class-dropout", min=0.0, max=1.0,
                                        help="Share of examples trained without their class (the unconditional prior)."),
    unconditional: bool = typer.Option(False, "--unconditional", help="Ignore the class labels."),
    flip: bool = typer.Option(True, "--flip/--no-flip", help="Also train on the codes of mirrored images."),
    limit: Optional[int] = LimitOpt,
    eval_limit: Optional[int] = typer.Option(None, "--eval-limit"),
    checkpoint_every: int = CheckpointOpt,
    time_limit: Optional[float] = TimeLimitOpt,
    models_dir: Optional[Path] = ModelsDirOpt,
    quiet: bool = typer.Option(False, "--quiet", "-q"),
):
    """Train a class-conditional gated PixelCNN prior over a VQ-VAE's codes.

    The training images are encoded once; the exported checkpoint is the VQ-VAE with the prior inside
    (one name for encode, decode, sample and compress).

    Example: `vqtool train prior --vqvae cifar10 --data ../shared/data/cifar10/train.zip --eval-data ../shared/data/cifar10/test.zip`
    """
    from .data import load_images, refuse_test_split
    from .hub import load
    from .prior import PriorConfig
    from .priortask import PriorTask
    from .training import fit

    refuse_test_split(data)
    base = load(vqvae, device, models_dir, expect="vqvae-image")
    if base.config.prior:
        console.print(f"{vqvae} already has a prior; training a new one over the same codes")
    name = name or Path(base.name).stem
    if not quiet:
        console.print(f"loading {data} and encoding it with {base.name}…")
    train = load_images(data, limit=limit)
    classes = [] if unconditional else train.classes
    prior = PriorConfig(num_codes=base.config.num_codes, classes=classes, hidden=hidden, layers=layers,
                        class_dropout=class_dropout if classes else 0.0)
    info = {**_data_info(data, train, eval_data), "flip": flip,
            "codec": {"name": base.name, "sha256": base.sha256, **base.metadata.get("provenance", {})}}
    task = PriorTask(base, prior, train, str(eval_data) if eval_data else None, flip, eval_limit, judge, info,
                     name)
    fit(task, train_options(name, out, steps, batch_size, lr, seed, device, resume, quiet, time_limit, checkpoint_every,
                            run_folder=f"{name}-prior"))


@train_app.command("classifier")
def train_classifier(
    data: Path = DataOpt,
    eval_data: Optional[Path] = typer.Option(None, "--eval-data", help="Held-out images for the final accuracy."),
    name: str = typer.Option("classifier", "--name", help="Checkpoint name."),
    out: Optional[Path] = OutOpt,
    steps: int = typer.Option(6_000, "--steps", min=1),
    batch_size: int = BatchOpt,
    lr: float = typer.Option(2e-3, "--lr"),
    seed: int = SeedOpt,
    device: str = DeviceOpt,
    resume: bool = ResumeOpt,
    width: int = typer.Option(32, "--width", help="Channels of the first stage (doubled twice)."),
    attributes: Optional[str] = typer.Option(None, "--attributes", "-a",
                                             help="Classify binary attributes instead of folders (as in `train "
                                                  "fader`): the judge of Fader Network edits."),
    labels: Optional[Path] = LabelsOpt,  # these two with --attributes only
    holdout: Optional[Path] = HoldoutOpt,
    limit: Optional[int] = LimitOpt,
    time_limit: Optional[float] = TimeLimitOpt,
    quiet: bool = typer.Option(False, "--quiet", "-q"),
):
    """Train the small image classifier that scores generated samples (or, with --attributes, edited faces).

    Example: `vqtool train classifier --data ../shared/data/cifar10/train.zip --eval-data ../shared/data/cifar10/test.zip --name cifar10-classifier`

    Example: `vqtool train classifier --data ../shared/data/smiles/smiles.zip --attributes smile --name faces-smile-judge`
    """
    from .classifier import ClassifierConfig, ClassifierTask
    from .data import attribute_splits, load_images, refuse_test_split
    from .training import fit

    refuse_test_split(data)
    if attributes:
        train, held_out, info = attribute_splits(data, split_specs(attributes), labels, holdout, limit=limit)
        config = ClassifierConfig(channels=train.images.shape[-1], width=width, classes=train.classes, multilabel=True)
        task = ClassifierTask(config, train, None, info, eval_set=held_out)
    else:
        train = load_images(data, limit=limit)
        config = ClassifierConfig(channels=train.images.shape[-1], width=width, classes=train.classes)
        task = ClassifierTask(config, train, str(eval_data) if eval_data else None, _data_info(data, train, eval_data))
    fit(task, train_options(name, out, steps, batch_size, lr, seed, device, resume, quiet, time_limit))


# --- codes -------------------------------------------------------------------------------------------
class Outputs:
    """Where each result goes: next to its input (default), into a folder, one file, or stdout.

    Outputs of one call never overwrite each other: a name already taken gets -2, -3, ... (in input
    order, with a note), and an output that is an input of the call is refused before anything is
    written (docs/outputs.md). Several outputs need a folder: `-o x.png` never becomes a directory."""

    def __init__(self, target: Optional[str], count: int, suffix: str, inputs: list[str] = (), quiet: bool = False,
                 from_folder: bool = False):
        from .media import path_key

        self.target, self.suffix, self.quiet = target, suffix, quiet
        named = target not in (None, "-")
        self.to_dir = named and (Path(target).is_dir() or target.endswith(("/", os.sep))
                                 or ((count > 1 or from_folder) and not Path(target).suffix))
        if named and count > 1 and not self.to_dir:
            raise usage(f"'{target}' names one file, but this call makes {count} outputs; give a folder "
                        f"(-o {Path(target).with_suffix('')}/)", "--output")
        self.inputs = {path_key(s) for s in inputs if s != "-"}
        self.claimed: set[str] = set()
        if named and not self.to_dir and path_key(target) in self.inputs:
            raise usage(f"'{target}' is also an input; refusing to overwrite it", "--output")

    def path_for(self, source: str, stem: Optional[str] = None) -> str:
        """The output of one input (or record); claims the name for this call."""
        from .media import path_key

        if self.target == "-" or (self.target is None and source == "-"):
            return "-"
        stem = stem or (Path(source).stem if source != "-" else "stdin")
        if self.target is not None and not self.to_dir:
            return self.target
        folder = Path(self.target) if self.to_dir else Path(source).parent
        path, number = folder / f"{stem}{self.suffix}", 1
        while path_key(path) in self.claimed:
            number += 1
            path = folder / f"{stem}-{number}{self.suffix}"
        if path_key(path) in self.inputs:
            raise usage(f"the output for {source} would be {path}, which is an input; choose another -o", "--output")
        if number > 1 and not self.quiet:
            console.print(f"vqtool: note: {source} -> {path} ({stem}{self.suffix} is another output of this call)",
                          markup=False, highlight=False, soft_wrap=True)
        self.claimed.add(path_key(path))
        return str(path)

    def plan(self, sources: list[str]) -> list[str]:
        """Every output path up front, so that a refusal comes before anything is written."""
        return [self.path_for(source) for source in sources]


class RecordSink:
    """Where `encode` puts its records: a file each, all in one `.vqc` file (`-o all.vqc`), or stdout."""

    def __init__(self, output: Optional[str], sources: list[str], quiet: bool, from_folder: bool):
        self.output, self.sources, self.collected = output, sources, []
        self.collect = output not in (None, "-") and output.endswith(".vqc") and not Path(output).is_dir()
        outputs = Outputs(output, 1 if self.collect else len(sources), ".vqc", sources, quiet, from_folder)
        self.targets = [output] * len(sources) if self.collect else outputs.plan(sources)

    def name_of(self, index: int) -> dict:
        """`{"name": stem}` for a record in a stream (it keeps its input's name), else `{}` (a file of
        its own is named by the file). Bytes that are not UTF-8 in a file name become U+FFFD."""
        source = self.sources[index]
        if source == "-" or not ((self.collect and len(self.sources) > 1) or self.targets[index] == "-"):
            return {}
        return {"name": Path(source).stem.encode("utf-8", "surrogateescape").decode("utf-8", "replace")}

    def put(self, index: int, data: bytes) -> None:
        from .media import write_bytes

        if self.collect:
            self.collected.append(data)
        else:
            write_bytes(self.targets[index], data)

    def close(self, failures: list[str]) -> bool:
        """Write the collected records, if any; False when that failed (reported)."""
        from .media import write_bytes

        if not self.collected:
            return True
        try:
            write_bytes(self.output, b"".join(self.collected))
            return True
        except VqtoolError as exc:
            _report(failures, self.output, exc)
            return False


def any_folder(items: list[str]) -> bool:
    """Whether an input names a folder: then `-o NAME` (no suffix) is a folder too, however many files."""
    return any(item != "-" and Path(item).is_dir() for item in items)


def record_stem(source: str, index: int, record, records_in_source: int) -> str:
    """The output name of a decoded record: the file's own name when it holds one record, else the
    name in the header (made safe) or FILE-N."""
    from .media import safe_name

    own = Path(source).stem if source != "-" else "stdin"
    if records_in_source == 1 and source != "-":
        return own
    fallback = f"{own}-{index + 1}" if index else own
    return safe_name(record.media["name"], fallback) if record.media.get("name") else fallback


def print_error(message: str) -> None:
    """The one-line error format of every command."""
    from .errors import one_line

    console.print(f"vqtool: error: {one_line(message)}", markup=False, highlight=False, soft_wrap=True)


def _report(failures: list[str], source: str, exc: VqtoolError) -> None:
    print_error(str(exc) if exc.source else f"{source}: {exc}")
    failures.append(source)


PIXELS_PER_CALL = 1 << 22  # about 4 megapixels per model call: bounds memory for large photos


def _image_batches(sources: list[str], batch_size: int, mode: str, failures: list[str]):
    """(index, source, array) of the decoded images in batches of at most `batch_size` images and
    PIXELS_PER_CALL pixels."""
    from .media import image_to_array, read_image

    batch, pixels = [], 0
    for index, source in enumerate(sources):
        try:
            array = image_to_array(read_image(source, mode))
        except VqtoolError as exc:
            _report(failures, source, exc)
            continue
        size = array.shape[0] * array.shape[1]
        if batch and (len(batch) == batch_size or pixels + size > PIXELS_PER_CALL):
            yield batch
            batch, pixels = [], 0
        batch.append((index, source, array))
        pixels += size
    if batch:
        yield batch


def _split_media(items: list[str], quiet: bool) -> tuple[list[str], bool, bool]:
    """`encode`'s inputs, whether they are audio, and whether a folder was named. Files named on the
    command line must be of one kind; files of the other kind found inside folders are skipped with a note."""
    from .audio import AUDIO_SUFFIXES, SNIFF_BYTES, looks_like_audio
    from .media import IMAGE_SUFFIXES, expand_inputs, read_bytes

    if items.count("-") > 1:
        raise usage("stdin ('-') can be read only once")
    tagged = []  # (source, is audio, from a folder)
    for item in items:
        folder = item != "-" and Path(item).is_dir()
        for source in expand_inputs([item], IMAGE_SUFFIXES | AUDIO_SUFFIXES):
            head = read_bytes(source)[:SNIFF_BYTES] if source == "-" else None
            tagged.append((source, looks_like_audio(source, head), folder))
    named = {audio for _, audio, folder in tagged if not folder}
    if len(named) > 1:
        raise usage("encode images and audio in separate calls")
    audio = named.pop() if named else sum(a for _, a, _ in tagged) * 2 > len(tagged)
    skipped = [s for s, a, _ in tagged if a != audio]
    if skipped and not quiet:
        console.print(f"vqtool: note: skipping {len(skipped)} {'image' if audio else 'audio'} file(s) found in "
                      f"folders (first: {skipped[0]}); encode them in a separate call",
                      markup=False, highlight=False, soft_wrap=True)
    return [s for s, a, _ in tagged if a == audio], audio, any(folder for _, _, folder in tagged)


@app.command()
def encode(
    inputs: List[str] = typer.Argument(..., metavar="INPUT", help="Image or audio files or folders; '-' reads one from stdin."),
    model: Optional[str] = typer.Option(None, "--model", "-m", help="Checkpoint name or path "
                                                                    "(default: cifar10 for images, speech for audio)."),
    output: Optional[str] = typer.Option(None, "--output", "-o",
                                         help="File, folder (for many inputs) or '-' for stdout. "
                                              "Default: INPUT with the .vqc suffix."),
    batch_size: int = typer.Option(64, "--batch-size", min=1, help="Images per model call."),
    device: str = DeviceOpt,
    models_dir: Optional[Path] = ModelsDirOpt,
    compress: bool = typer.Option(False, "--compress", help="Range-code the codes under the model's learned prior "
                                                            "(smaller; decoding is sequential)."),
    as_json: bool = typer.Option(False, "--json", help="One JSON record per output on stdout."),
    quiet: bool = typer.Option(False, "--quiet", "-q"),
):
    """Encode images or audio to .vqc code files.

    Images of any size are accepted: the grid has ceil(H/4) x ceil(W/4) codes (for a 4-pixel stride)
    and decoding restores the exact original size. Alpha is composited on white.

    Audio (WAV, FLAC, OGG; recognised by suffix, or by content on stdin) becomes 16 kHz mono and one
    code per 20 ms; the record keeps the sample rate, length and the speaker's voice.

    Examples:

    `vqtool encode photo.png`  (writes photo.vqc)

    `vqtool encode shots/ -o codes/`

    `vqtool encode a.png b.png -o both.vqc`  (one file, two records)

    `vqtool encode photo.png -o - | vqtool decode - -o back.png`

    `vqtool encode photo.png --compress`  (range-coded under the prior)

    `vqtool encode speech.wav -o - | vqtool decode - --to spk3 -o other-voice.wav`
    """
    import numpy as np

    from .codes import CodeFile
    from .compress import compress as range_code
    from .hub import load

    if as_json and output == "-":
        raise usage("--json prints records on stdout, so it needs -o to a file or folder", "--json")
    sources, audio, from_folder = _split_media(inputs, quiet)
    if audio:
        if compress:
            raise usage("--compress needs a learned prior, which only the image models have", "--compress")
        from .cli_speech import encode_audio

        return encode_audio(sources, model or "speech", output, device, models_dir, as_json, quiet, from_folder)
    net = load(model or "cifar10", device, models_dir, expect="vqvae-image")
    if compress:
        net.require_prior()
    sink = RecordSink(output, sources, quiet, from_folder)
    failures: list[str] = []
    written = 0
    mode = "RGB" if net.config.channels == 3 else "L"
    for chunk in _image_batches(sources, batch_size, mode, failures):
        results = {}
        for shape in {array.shape for _, _, array in chunk}:
            group = [(index, source, array) for index, source, array in chunk if array.shape == shape]
            codes = net.encode(np.stack([array for _, _, array in group])).cpu()
            try:
                payloads = range_code(net.prior, codes) if compress else [None] * len(group)
            except VqtoolError as exc:  # too large to range-code: every image of this size fails
                for _, source, _ in group:
                    _report(failures, source, VqtoolError(str(exc), source))
                continue
            for (index, source, array), grid, payload in zip(group, codes.numpy(), payloads):
                results[index] = (array, grid, payload)
        for index, source, _ in chunk:
            if index not in results:
                continue
            array, grid, payload = results[index]
            record = CodeFile(grid, net.name, net.sha256, net.config.num_codes,
                              {"kind": "image", "height": array.shape[0], "width": array.shape[1],
                               "channels": array.shape[2], **sink.name_of(index)})
            try:
                data = record.to_bytes(payload)
                sink.put(index, data)
            except VqtoolError as exc:
                _report(failures, source, exc)
                continue
            written += 1
            if as_json:
                emit_json({"input": source, "output": sink.targets[index], "model": net.name, "grid": list(grid.shape),
                           "width": array.shape[1], "height": array.shape[0], "bytes": len(data),
                           "coding": "range-prior" if compress else "packed"})
    if not sink.close(failures):
        written = 0
    if not quiet:
        console.print(f"encoded {written} image(s) with {net.name}" + (f", {len(failures)} failed" if failures else ""))
    if failures:
        raise typer.Exit(1)


def _records(source: str):
    """(source, index, CodeFile) for every record of one input ('-' streams stdin)."""
    import io

    from .codes import iter_records
    from .media import read_bytes

    stream = sys.stdin.buffer if source == "-" else io.BytesIO(read_bytes(source))
    yield from ((source, i, r) for i, r in enumerate(iter_records(stream, "<stdin>" if source == "-" else source)))


class ModelCache:
    """Load each checkpoint once and check that it is the one the codes were made with, and that the
    record's grid fits it."""

    def __init__(self, override: Optional[str], device: str, models_dir):
        self.override, self.device, self.models_dir, self.loaded = override, device, models_dir, {}

    def for_record(self, record, source: str):
        from .hub import load

        name = self.override or record.model
        if name not in self.loaded:
            kind = "vqvae-speech" if record.media.get("kind") == "audio" else "vqvae-image"
            self.loaded[name] = load(name, self.device, self.models_dir, expect=kind)
        net = self.loaded[name]
        # packed codes depend only on the VQ-VAE, which a checkpoint with a prior added keeps unchanged
        codec = net.metadata.get("extra", {}).get("codec_sha256") if record.coding == "packed" else None
        if not (record.made_by(net.sha256) or (codec and record.made_by(codec))):
            raise VqtoolError(f"codes were made by checkpoint {record.checkpoint_sha256[:12]}… of model "
                              f"'{record.model}', but '{name}' is {net.sha256[:12]}…; decode them with that model",
                              source)
        check_grid(net, record, source)
        return net


def check_grid(net, record, source: str) -> None:
    """The grid must fit the recorded size at the model's stride (a header that claims a small image
    over a huge grid, or hours of audio over a few codes, or the reverse, is corrupt). Audio allows
    two codes of slack: resampling rounds the length."""
    media = record.media
    if media["kind"] == "image":
        expected = (-(-media["height"] // net.stride), -(-media["width"] // net.stride))
        claim, slack = f"a {media['width']}x{media['height']} image at stride {net.stride}", 0
    else:
        from .audio import SAMPLE_RATE

        samples_16k = -(-media["samples"] * SAMPLE_RATE // media["sample_rate"])
        expected = (-(-samples_16k // net.config.samples_per_code),)
        claim, slack = f"{media['samples']} samples at {media['sample_rate']} Hz", 2
    if len(record.grid) != len(expected) or any(abs(g - e) > slack for g, e in zip(record.grid, expected)):
        raise VqtoolError(f"corrupt .vqc header ({claim} needs a {'x'.join(map(str, expected))} grid, "
                          f"not {'x'.join(map(str, record.grid))})", source)


@app.command()
def decode(
    inputs: List[str] = typer.Argument(..., metavar="CODES", help=".vqc files or folders; '-' reads records from stdin."),
    output: Optional[str] = typer.Option(None, "--output", "-o",
                                         help="File (suffix picks the format), folder, or '-' for stdout. "
                                              "Default: INPUT.decoded.png beside each input."),
    model: Optional[str] = typer.Option(None, "--model", "-m", help="Override the model named in the header."),
    fmt: str = typer.Option("png", "--format", help="Format when the output has no suffix (stdout, folders): an "
                                                    "image format, or wav/flac for audio (audio defaults to wav)."),
    to: Optional[str] = typer.Option(None, "--to", help="Audio: decode in this built-in voice (spkN or a name)."),
    to_voice: Optional[str] = typer.Option(None, "--to-voice", help="Audio: decode in the voice of this reference clip."),
    columns: Optional[int] = typer.Option(None, "--columns", min=1, help="Grid width when several records go "
                                                                         "into one image (default: square)."),
    device: str = DeviceOpt,
    models_dir: Optional[Path] = ModelsDirOpt,
    as_json: bool = typer.Option(False, "--json", help="One JSON record per output on stdout."),
    quiet: bool = typer.Option(False, "--quiet", "-q"),
):
    """Decode .vqc code files back to images or audio, with the checkpoint named in their header.

    Several image records into one image file (or '-') make one grid image; into a folder, one image
    each. Audio comes back at its original sample rate and length, in the original voice unless
    --to or --to-voice picks another; several audio records into one file are joined.

    Examples:

    `vqtool decode photo.vqc -o back.png`

    `vqtool decode codes/ -o images/`

    `cat a.vqc | vqtool decode - -o - > a.png`

    `vqtool sample --codes -n 16 -o - | vqtool decode - -o grid.png`

    `vqtool decode speech.vqc --to spk3 -o other-voice.wav`
    """
    import math
    from collections import Counter

    from .audio import OUTPUT_FORMATS
    from .cli_speech import decode_audio
    from .compress import restore
    from .media import IMAGE_FORMATS, encode_image, expand_inputs, image_format_for, tile, write_bytes

    if as_json and output == "-":
        raise usage("--json prints records on stdout, so it needs -o to a file or folder", "--json")
    if "." + fmt.lower() not in {**IMAGE_FORMATS, **OUTPUT_FORMATS}:
        known = sorted({**IMAGE_FORMATS, **OUTPUT_FORMATS})
        raise usage(f"unknown format '{fmt}' (use one of {', '.join(s[1:] for s in known)})", "--format")
    default_format = IMAGE_FORMATS.get("." + fmt.lower(), "PNG")
    sources = expand_inputs(inputs, {".vqc"})
    cache = ModelCache(model, device, models_dir)
    suffix = "." + fmt.lower() if output is not None else ".decoded." + fmt.lower()
    failures: list[str] = []
    written = 0
    pending = []
    for source in sources:
        try:
            pending.extend(_records(source))
        except VqtoolError as exc:
            _report(failures, source, exc)
    counts = Counter(source for source, _, _ in pending)
    from_folder = any_folder(inputs)
    # (source, index, record, output stem, name in messages)
    named = [(source, index, record, record_stem(source, index, record, counts[source]),
              source if counts[source] == 1 else f"{source} (record {index + 1})")
             for source, index, record in pending]
    sounds = [p for p in named if p[2].media["kind"] == "audio"]
    images = [p for p in named if p[2].media["kind"] == "image"]
    if (to or to_voice) and not sounds:
        raise usage("--to and --to-voice choose the voice of audio records; these codes hold none", "--to")
    if (to or to_voice) and images and not quiet:
        console.print("vqtool: note: --to/--to-voice apply to the audio records only", markup=False, highlight=False)
    if sounds:
        written += decode_audio(sounds, output, cache, to, to_voice, fmt, as_json, failures, sources, quiet,
                                from_folder)
    # several records into one image file (or stdout) make one grid, as `vqtool sample` writes them
    as_grid = len(images) > 1 and output is not None and (output == "-" or (
        Path(output).suffix.lower() in IMAGE_FORMATS and not Path(output).is_dir()))
    outputs = Outputs(output, 1 if as_grid else len(images), suffix, sources, quiet, from_folder)
    targets = [None if as_grid else outputs.path_for(source, stem) for source, _, _, stem, _ in images]
    cells = []
    for (source, index, record, _, label), target in zip(images, targets):
        try:
            net = cache.for_record(record, label)
            codes = restore(net.prior, record, label)
            pixels = net.to_uint8(net.decode(codes, (record.media["height"], record.media["width"])))[0]
            if as_grid:
                cells.append(pixels)
                continue
            data = encode_image(pixels, image_format_for(target, default_format))
            write_bytes(target, data)
            written += 1
            if as_json:
                emit_json({"input": source, "record": index, "output": target, "model": net.name,
                           "width": pixels.shape[1], "height": pixels.shape[0], "bytes": len(data)})
        except VqtoolError as exc:
            _report(failures, label, exc)
    if cells:
        try:
            sheet = tile(cells, columns or math.ceil(math.sqrt(len(cells))))
            data = encode_image(sheet, image_format_for(output, default_format))
            write_bytes(output, data)
        except VqtoolError as exc:
            _report(failures, output, exc)
            cells = []
        written += len(cells)
        if as_json and cells:
            emit_json({"output": output, "records": len(cells), "width": sheet.shape[1], "height": sheet.shape[0],
                       "bytes": len(data)})
    if not quiet:
        console.print(f"decoded {written} record(s)" + (f", {len(failures)} failed" if failures else ""))
    if failures:
        raise typer.Exit(1)


MAX_SAMPLES = 10_000  # per call: beyond this, loop in the shell (memory grows with N)


@app.command()
def sample(
    model: str = typer.Option("cifar10", "--model", "-m", help="Checkpoint (with a learned prior) name or path."),
    count: int = typer.Option(16, "-n", "--count", min=1, help=f"Samples to draw (per class with --class all; "
                                                                  f"at most {MAX_SAMPLES} in all)."),
    label: Optional[str] = typer.Option(None, "--class", help="Class name or index; 'all' for N of every class. "
                                                              "Default: unconditional."),
    temperature: float = typer.Option(1.0, "--temperature", help="Divides the logits; < 1 is safer, > 1 wilder."),
    top_k: Optional[int] = typer.Option(None, "--top-k", help="Draw only among the K most likely codes."),
    seed: int = typer.Option(0, "--seed", help="Same seed, same samples."),
    output: Optional[str] = typer.Option(None, "--output", "-o",
                                         help="Image file: one grid; folder: one PNG per sample; '-': stdout "
                                              "(grid, or .vqc records with --codes). Default samples.png / samples.vqc."),
    codes: bool = typer.Option(False, "--codes", help="Write .vqc code records instead of images."),
    columns: Optional[int] = typer.Option(None, "--columns", min=1, help="Grid width (default: square, or N per "
                                                                         "class row with --class all)."),
    naive: bool = typer.Option(False, "--naive", help="Re-run the whole network at every position (slow; "
                                                      "same samples), for checking and benchmarks."),
    device: str = DeviceOpt,
    models_dir: Optional[Path] = ModelsDirOpt,
    as_json: bool = typer.Option(False, "--json", help="One JSON record per written file on stdout."),
    quiet: bool = typer.Option(False, "--quiet", "-q"),
):
    """Draw new images (or their codes) from the model's learned prior.

    Examples:

    `vqtool sample --class cat -n 16 --seed 1 -o cats.png`

    `vqtool sample --class all -n 10 -o grid.png`  (a row per class)

    `vqtool sample -n 8 -o samples/`  (one PNG per sample)

    `vqtool sample --codes -n 16 -o - | vqtool decode - -o grid.png`
    """
    import math

    from .codes import CodeFile
    from .hub import load
    from .media import encode_image, image_format_for, tile, write_bytes

    if temperature <= 0:
        raise usage(f"must be positive, not {temperature}", "--temperature")
    if as_json and output == "-":
        raise usage("--json prints records on stdout, so it needs -o to a file or folder", "--json")
    if count > MAX_SAMPLES:
        raise usage(f"{count} samples asked for; at most {MAX_SAMPLES} per call", "-n")
    net = load(model, device, models_dir, expect="vqvae-image")
    prior = net.require_prior()
    if top_k is not None and not 1 <= top_k <= prior.config.num_codes:
        raise usage(f"must lie in 1..{prior.config.num_codes} (the codebook size), not {top_k}", "--top-k")
    try:
        if label == "all":
            if not net.classes:
                raise VqtoolError("the prior is unconditional")
            labels = [i for i in range(len(net.classes)) for _ in range(count)]
            columns = columns or count
        else:
            labels = [net.class_index(label) if label is not None else -1] * count
    except VqtoolError as exc:
        raise usage(str(exc), "--class") from None
    if len(labels) > MAX_SAMPLES:
        raise usage(f"{len(labels)} samples asked for; at most {MAX_SAMPLES} per call", "-n")
    output = output or ("samples.vqc" if codes else "samples.png")
    to_dir = output != "-" and (Path(output).is_dir() or output.endswith("/") or not Path(output).suffix)
    if not quiet:
        console.print(f"sampling {len(labels)} code grid(s) from {net.name}'s prior"
                      + (" (naive loop)" if naive else ""))
    grids = net.sample(labels, seed, temperature, top_k, cached=not naive).cpu()
    s = net.stride
    media = {"kind": "image", "height": grids.shape[1] * s, "width": grids.shape[2] * s, "channels": net.config.channels}
    names = [f"sample-{i + 1:04d}" + (f"-{net.classes[k]}" if k >= 0 else "") for i, k in enumerate(labels)]
    written = []
    if codes:
        records = [CodeFile(g.numpy(), net.name, net.sha256, net.config.num_codes, {**media, "name": name},
                            {"sample": {"class": net.classes[k] if k >= 0 else None, "seed": seed,
                                        "temperature": temperature, "top_k": top_k}}).to_bytes()
                   for g, k, name in zip(grids, labels, names)]
        if to_dir:
            written = [(str(Path(output) / f"{name}.vqc"), data) for name, data in zip(names, records)]
        else:
            written = [(output, b"".join(records))]
    else:
        pixels = [net.to_uint8(net.decode(grids[i:i + 256])) for i in range(0, len(grids), 256)]
        images = [image for part in pixels for image in part]
        if to_dir:
            written = [(str(Path(output) / f"{name}.png"), encode_image(image)) for name, image in zip(names, images)]
        else:
            sheet = tile(images, columns or math.ceil(math.sqrt(len(images))))
            written = [(output, encode_image(sheet, image_format_for(output)))]
    for target, data in written:
        write_bytes(target, data)
        if as_json:
            emit_json({"output": target, "model": net.name, "samples": len(labels) if len(written) == 1 else 1,
                       "class": label, "seed": seed, "temperature": temperature, "top_k": top_k, "bytes": len(data)})
    if not quiet:
        console.print(f"wrote {len(labels)} sample(s) to {output}")


@app.command()
def inspect(
    inputs: List[str] = typer.Argument(..., metavar="CODES", help=".vqc files; '-' for stdin."),
    as_json: bool = typer.Option(False, "--json", help="One JSON record per code record."),
    top: int = typer.Option(10, "--top", help="How many of the most frequent codes to show."),
):
    """Show a .vqc file's header, code grid and code histogram.

    Example: `vqtool inspect photo.vqc --json`
    """
    import math

    import numpy as np

    from .codes import bits_per_code, entropy_bits
    from .media import write_stdout

    failures: list[str] = []
    for source in inputs:
        try:
            for _, index, record in _records(source):
                count = math.prod(record.grid)
                info = {"input": source, "record": index, "model": record.model,
                        "checkpoint_sha256": record.checkpoint_sha256, "codebook_size": record.codebook_size,
                        "grid": list(record.grid), "coding": record.coding,
                        "payload_bytes": len(record.payload),
                        "bits_per_code": round(8 * len(record.payload) / max(count, 1), 3),
                        "packed_bits_per_code": bits_per_code(record.codebook_size), "media": record.media}
                if record.codes is not None:
                    counts = np.bincount(record.codes.ravel(), minlength=record.codebook_size)
                    info.update({"distinct_codes": int((counts > 0).sum()),
                                 "entropy_bits_per_code": round(entropy_bits(counts), 3),
                                 "histogram": {str(i): int(c) for i, c in enumerate(counts) if c}})
                if as_json:
                    emit_json(info)
                    continue
                coding = ("range-coded under the prior" if record.coding == "range-prior"
                          else f"bit-packed at {info['packed_bits_per_code']} bits")
                lines = [f"{source}" + (f" (record {index + 1})" if index else ""),
                         f"  model        {record.model} (checkpoint {record.checkpoint_sha256[:12]}…)",
                         f"  codebook     K = {record.codebook_size}",
                         f"  grid         {' x '.join(map(str, record.grid))} = {count} codes",
                         f"  payload      {info['payload_bytes']} bytes, {info['bits_per_code']} bits per code "
                         f"({coding})",
                         f"  media        {json.dumps(record.media)}"]
                if "histogram" in info:
                    frequent = sorted(info["histogram"].items(), key=lambda kv: -kv[1])[:top]
                    lines += [f"  histogram    {info['distinct_codes']} distinct codes, entropy "
                              f"{info['entropy_bits_per_code']} bits/code",
                              "  most used    " + ", ".join(f"{c}×{n}" for c, n in frequent)]
                write_stdout(("\n".join(lines) + "\n").encode())
        except VqtoolError as exc:
            _report(failures, source, exc)
    if failures:
        raise typer.Exit(1)


@app.command()
def compare(
    reference: str = typer.Argument(..., help="Original image."),
    other: str = typer.Argument(..., help="Image to compare with it (e.g. a reconstruction)."),
    as_json: bool = typer.Option(False, "--json", help="One JSON record."),
):
    """PSNR and MSE between two images of the same size (pixels in [0, 1]).

    Example: `vqtool compare photo.png photo.decoded.png`
    """
    import numpy as np

    from .media import image_to_array, read_image

    a, b = (image_to_array(read_image(path)).astype(np.float64) / 255 for path in (reference, other))
    if a.shape != b.shape:
        raise VqtoolError(f"size {b.shape[1]}x{b.shape[0]} differs from {reference}'s {a.shape[1]}x{a.shape[0]}", other)
    mse = float(((a - b) ** 2).mean())
    psnr = float("inf") if mse == 0 else -10 * float(np.log10(mse))
    if as_json:
        emit_json({"reference": reference, "other": other, "mse": mse, "psnr_db": psnr})
    else:
        sys.stdout.write(f"PSNR {psnr:.2f} dB  (MSE {mse:.6f}, {a.shape[1]}x{a.shape[0]})\n")


# --- models --------------------------------------------------------------------------------------
@models_app.command("list")
def models_list(models_dir: Optional[Path] = ModelsDirOpt,
                as_json: bool = typer.Option(False, "--json", help="One JSON record per model.")):
    """List the checkpoints a name can reach (bundled first, then your folder)."""
    from .hub import catalogue, describe

    for name, resolved in sorted(catalogue(models_dir).items()):
        try:
            info = describe(name, models_dir)
        except VqtoolError as exc:
            info = {"name": name, "path": str(resolved.path), "error": str(exc)}
        record = {k: info.get(k) for k in ("name", "architecture", "bundled", "path", "size_bytes", "error")
                  if info.get(k) is not None}
        record["metrics"] = info.get("metrics", {})
        if as_json:
            emit_json(record)
        else:
            metrics = ", ".join(f"{k} {v}" for k, v in record["metrics"].items()
                                if k in ("psnr_db", "perplexity", "bits_per_dim", "accuracy", "sample_accuracy"))
            origin = "bundled" if record.get("bundled") else "user"
            sys.stdout.write(f"{name:20} {record.get('architecture', '?'):16} {origin:8} {metrics}\n")


@models_app.command("info")
def models_info(name: str = typer.Argument(..., help="Checkpoint name or path."),
                models_dir: Optional[Path] = ModelsDirOpt,
                as_json: bool = typer.Option(False, "--json", help="The whole record as JSON.")):
    """Describe one checkpoint: config, training provenance, held-out metrics, card."""
    from .hub import describe

    info = describe(name, models_dir)
    if as_json:
        emit_json(info)
        return
    lines = [f"{info['name']}  ({info['architecture']}, {info['size_bytes'] / 1e6:.1f} MB, "
             f"{'bundled, SHA-256 pinned' if info['bundled'] else 'user checkpoint'})",
             f"  path     {info['path']}", f"  card     {info['card']}",
             f"  config   {json.dumps(info['config'])}",
             f"  trained  {info['provenance'].get('command')}",
             "  metrics  " + ", ".join(f"{k}={v}" for k, v in info["metrics"].items())]
    if "attributes" in info["config"]:
        config = info["config"]
        low, high = config.get("alpha_range", (0, 1))
        lines.insert(3, "  attributes " + ", ".join(f"{a} ({rule})" for a, rule in zip(config["attributes"],
                                                                                      config.get("rules", [])))
                     + f"; sliders from 0 (without) to 1 (with), allowed {low}..{high}")
    sys.stdout.write("\n".join(lines) + "\n")


def _terminate(signum, frame):
    """SIGTERM unwinds (exit 143), so that temporary outputs are removed on the way out."""
    raise SystemExit(128 + signum)


def main() -> None:
    """Entry point: user errors are one line on stderr with exit 1; usage errors exit 2; a closed
    stdout (`vqtool ... | head`) ends quietly with exit 0."""
    import signal

    signal.signal(signal.SIGTERM, _terminate)
    try:
        app()
    except VqtoolError as exc:
        print_error(str(exc))
        sys.exit(1)
    except KeyboardInterrupt:
        sys.exit(130)
    except (StdoutClosed, BrokenPipeError):
        _quiet_stdout()
        sys.exit(0)
    except Exception as exc:  # a bug: still one line, the traceback only on request
        if os.environ.get("VQTOOL_DEBUG"):
            raise
        console.print(f"vqtool: internal error: {exc.__class__.__name__}: {exc} (set VQTOOL_DEBUG=1 for a traceback)",
                      markup=False, highlight=False, soft_wrap=True)
        sys.exit(1)


def _quiet_stdout() -> None:
    """After the reader of our stdout went away, stop Python complaining while it flushes at exit."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())


from . import cli_speech  # noqa: E402,F401  (registers the speech commands on `app`)
from . import cli_fader  # noqa: E402,F401  (registers the Fader Network commands on `app`)
