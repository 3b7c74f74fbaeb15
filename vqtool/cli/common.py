"""What every command shares: the console, usage errors, one-line error reports, JSON records,
output planning (`Outputs`, `RecordSink`), the common options, and the training options declared once
(`train_command`). Imports no model family and no torch, so that `vqtool --help` starts fast."""

from __future__ import annotations

import inspect
import json
import os
from contextlib import contextmanager
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console

from ..errors import VqtoolError

console = Console(stderr=True)

DEVICE_HELP = "auto, cpu or cuda (cuda:N)."
DeviceOpt = typer.Option("auto", "--device", help=DEVICE_HELP)
ModelsDirOpt = typer.Option(None, "--models-dir", help="Folder of your own checkpoints (default $VQTOOL_HOME/models).")
AttributesOpt = typer.Option(..., "--attributes", "-a",
                             help="Comma-separated binary attributes: NAME (parent folder named NAME, or a 0/1 "
                                  "column of --labels), NAME=COLUMN:VALUE or NAME=COLUMN<NUMBER (also <=, >, >=).")
LabelsOpt = typer.Option(None, "--labels", help="CSV table with a 'file' column naming each image as inside --data.")
HoldoutOpt = typer.Option(None, "--holdout", help="File listing held-out images, one per line: never trained on, "
                                                  "used for the final metrics (default: test.txt beside --data, "
                                                  "which is never trained on either way).")
LimitOpt = typer.Option(None, "--limit", help="Use a random subset of this many training images.")
# the conditional-VAE latent of `vqtool.cvae`, as the families built on it (motion, caption) train it
PriorOpt = typer.Option("cpp", "--prior", help="cpp (CPP-VAE), standard (CVAE), learned (conditional prior) or none "
                                               "(no latent: the deterministic baseline).")
LatentOpt = typer.Option(32, "--latent", min=1, help="Latent dimensions.")
BetaOpt = typer.Option(1.0, "--beta", min=0.0, help="Final weight of the KL terms.")
AnnealOpt = typer.Option(2000, "--anneal-steps", min=0, help="Steps over which beta grows from 0.")
FreeBitsOpt = typer.Option(0.0, "--free-bits", min=0.0, help="Nats per latent dimension not penalised.")
CompareOpt = typer.Option(None, "--compare", help="Comma-separated checkpoints (names or paths) of this architecture "
                                                  "to evaluate beside this one; their numbers go into this "
                                                  "checkpoint's card.")


def usage(message: str, param: str | None = None) -> typer.BadParameter:
    """A usage error (exit 2), reported by typer like any other bad option."""
    return typer.BadParameter(message, param_hint=param)


def emit_json(record: dict) -> None:
    from ..media import write_stdout

    write_stdout((json.dumps(record) + "\n").encode())


def json_needs_file(as_json: bool, output: Optional[str]) -> None:
    """--json prints on stdout, so the data itself cannot go there too."""
    if as_json and output == "-":
        raise usage("--json prints records on stdout, so it needs -o to a file or folder", "--json")


def note(message: str) -> None:
    console.print(f"vqtool: note: {message}", markup=False, highlight=False, soft_wrap=True)


def print_error(message: str) -> None:
    """The one-line error format of every command."""
    from ..errors import one_line

    console.print(f"vqtool: error: {one_line(message)}", markup=False, highlight=False, soft_wrap=True)


PROGRESS_MIN = 64  # items: below this a call ends in a couple of seconds, and a bar would only flicker


@contextmanager
def progress(total: int, what: str, quiet: bool):
    """A bar on stderr for a long call (`advance(n)` after each n items); nothing when quiet, when stderr
    is not a terminal (logs, pipes, tests) or for fewer than PROGRESS_MIN items. It is removed at the end."""
    if quiet or total < PROGRESS_MIN or not console.is_terminal:
        yield lambda n=1: None
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    with Progress(TextColumn(what), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(), console=console,
                  transient=True) as bar:
        task = bar.add_task(what, total=total)
        yield lambda n=1: bar.advance(task, n)


def report(failures: list[str], source: str, exc: VqtoolError) -> None:
    print_error(str(exc) if exc.source else f"{source}: {exc}")
    failures.append(source)


class Outputs:
    """Where each result goes: next to its input (default), into a folder, one file, or stdout.

    Outputs of one call never overwrite each other: a name already taken gets -2, -3, ... (in input
    order, with a note), and an output that is an input of the call is refused before anything is
    written (docs/outputs.md). Several outputs need a folder: `-o x.png` never becomes a directory."""

    def __init__(self, target: Optional[str], count: int, suffix: str, inputs: list[str] = (), quiet: bool = False,
                 from_folder: bool = False):
        from ..media import path_key

        self.target, self.suffix, self.quiet = target, suffix, quiet
        named = target not in (None, "-")
        self.to_dir = named and (Path(target).is_dir() or target.endswith(("/", os.sep))
                                 or ((count > 1 or from_folder) and not Path(target).suffix))
        if named and count > 1 and not self.to_dir:
            raise usage(f"'{target}' names one file, but this call makes {count} outputs; give a folder "
                        f"(-o {Path(target).with_suffix('')}/)", "--output")
        self.folders: dict = {}  # resolved folders, for path_key
        self.inputs = {path_key(s, self.folders) for s in inputs if s != "-"}
        self.claimed: set[str] = set()
        if named and not self.to_dir and path_key(target) in self.inputs:
            raise usage(f"'{target}' is also an input; refusing to overwrite it", "--output")

    def path_for(self, source: str, stem: Optional[str] = None) -> str:
        """The output of one input (or record); claims the name for this call."""
        from ..media import path_key

        if self.target == "-" or (self.target is None and source == "-"):
            return "-"
        stem = stem or (Path(source).stem if source != "-" else "stdin")
        if self.target is not None and not self.to_dir:
            return self.target
        folder = Path(self.target) if self.to_dir else Path(source).parent
        path, number = folder / f"{stem}{self.suffix}", 1
        while (key := path_key(path, self.folders)) in self.claimed:
            number += 1
            path = folder / f"{stem}-{number}{self.suffix}"
        if key in self.inputs:
            raise usage(f"the output for {source} would be {path}, which is an input; choose another -o", "--output")
        if number > 1 and not self.quiet:
            note(f"{source} -> {path} ({stem}{self.suffix} is another output of this call)")
        self.claimed.add(key)
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
        from ..media import write_bytes

        if self.collect:
            self.collected.append(data)
        else:
            write_bytes(self.targets[index], data)

    def close(self, failures: list[str]) -> bool:
        """Write the collected records, if any; False when that failed (reported)."""
        from ..media import write_bytes

        if not self.collected:
            return True
        try:
            write_bytes(self.output, b"".join(self.collected))
            return True
        except VqtoolError as exc:
            report(failures, self.output, exc)
            return False


def any_folder(items: list[str]) -> bool:
    """Whether an input names a folder: then `-o NAME` (no suffix) is a folder too, however many files."""
    return any(item != "-" and Path(item).is_dir() for item in items)


def record_stem(source: str, index: int, record, records_in_source: int) -> str:
    """The output name of a decoded record: the file's own name when it holds one record, else the
    name in the header (made safe) or FILE-N."""
    from ..media import safe_name

    own = Path(source).stem if source != "-" else "stdin"
    if records_in_source == 1 and source != "-":
        return own
    fallback = f"{own}-{index + 1}" if index else own
    return safe_name(record.media["name"], fallback) if record.media.get("name") else fallback


@dataclass
class CodeRequest:
    """The options of `vqtool encode` / `decode` that a family's codec commands act on."""

    model: Optional[str]  # encode: the checkpoint (the family's default filled in); decode: --model
    output: Optional[str]
    device: str
    models_dir: Optional[Path]
    as_json: bool
    quiet: bool
    from_folder: bool = False
    inputs: tuple = ()  # every input of the call (no output may overwrite one)
    batch_size: int = 64
    compress: bool = False
    fmt: str = "png"
    to: Optional[str] = None
    to_voice: Optional[str] = None
    vocoder: Optional[str] = None  # audio: the speech family's vocoder choice
    columns: Optional[int] = None
    given: tuple = ()  # the inputs as named on the command line (folders unexpanded)
    names: tuple = ()  # encode: each input's name relative to the folder it was found in (codes.npz rows)
    model_given: bool = True  # encode: --model was named (else a family may choose per input, as images do)
    quality: Optional[int] = None  # encode: residual stages to keep (the photo model's --quality)


# --- training --------------------------------------------------------------------------------------
@dataclass
class TrainArgs:
    """The options every `vqtool train ...` command has."""

    name: Optional[str]
    out: Optional[Path]
    steps: int
    batch_size: int
    lr: float
    seed: int
    device: str
    resume: bool
    checkpoint_every: int
    time_limit: Optional[float]
    remeasure: Optional[str]
    compare_with: Optional[str]
    quiet: bool

    def options(self, name: Optional[str] = None, run_folder: Optional[str] = None):
        """The shared loop's options (time limit in minutes here, seconds there)."""
        from ..training import TrainOptions

        name = name or self.name
        return TrainOptions(out=self.out or Path("runs") / (run_folder or name), name=name, steps=self.steps,
                            batch_size=self.batch_size, lr=self.lr, seed=self.seed, device=self.device,
                            resume=self.resume, checkpoint_every=self.checkpoint_every, quiet=self.quiet,
                            time_limit=self.time_limit * 60 if self.time_limit else None, remeasure=self.remeasure,
                            compare_with=self.compare_with)


def _train_parameters(name: Optional[str], steps: int, lr: float, batch_size: int, out_help: str,
                      name_help: str) -> list[inspect.Parameter]:
    panel = "Training options (every train command)"
    options = {
        "name": (Optional[str], typer.Option(name, "--name", help=name_help, rich_help_panel=panel)),
        "out": (Optional[Path], typer.Option(None, "--out", help=out_help, rich_help_panel=panel)),
        "steps": (int, typer.Option(steps, "--steps", min=1, rich_help_panel=panel)),
        "batch_size": (int, typer.Option(batch_size, "--batch-size", min=1, rich_help_panel=panel)),
        "lr": (float, typer.Option(lr, "--lr", help="Peak learning rate.", rich_help_panel=panel)),
        "seed": (int, typer.Option(0, "--seed", rich_help_panel=panel)),
        "device": (str, typer.Option("auto", "--device", help=DEVICE_HELP, rich_help_panel=panel)),
        "resume": (bool, typer.Option(False, "--resume", help="Continue from RUN/state.safetensors.",
                                      rich_help_panel=panel)),
        "checkpoint_every": (int, typer.Option(500, "--checkpoint-every", help="Save resumable state every N steps.",
                                               rich_help_panel=panel)),
        "time_limit": (Optional[float], typer.Option(None, "--time-limit", help="Minutes; stop (and export) when "
                                                     "reached.", rich_help_panel=panel)),
        "remeasure": (Optional[str], typer.Option(
            None, "--remeasure", metavar="CHECKPOINT", rich_help_panel=panel,
            help="Train nothing: re-run CHECKPOINT's held-out evaluation with this command's data and judges and "
                 "export it as --name (same weights; new numbers added, changed ones noted in its provenance).")),
        "compare_with": (Optional[str], typer.Option(
            None, "--compare-with", metavar="CHECKPOINT", rich_help_panel=panel,
            help="Record CHECKPOINT's held-out numbers (the model this one would replace) in the new checkpoint; "
                 "its card shows them side by side.")),
        "quiet": (bool, typer.Option(False, "--quiet", "-q", rich_help_panel=panel)),
    }
    return [inspect.Parameter(key, inspect.Parameter.KEYWORD_ONLY, default=option, annotation=hint)
            for key, (hint, option) in options.items()]


def train_command(train_app: typer.Typer, command: str, *, name: Optional[str], steps: int, lr: float,
                  batch_size: int = 128, out_help: str = "Run folder (default runs/NAME).",
                  name_help: str = "Checkpoint name."):
    """Mount `fn(..., train: TrainArgs)` as `vqtool train COMMAND`: its own options first, then the
    shared training options, declared here once with this command's defaults."""

    def mount(fn):
        import typing

        hints = typing.get_type_hints(fn)
        own = [p.replace(annotation=hints[p.name]) for p in inspect.signature(fn).parameters.values()
               if p.name != "train"]
        shared = _train_parameters(name, steps, lr, batch_size, out_help, name_help)
        keys = [f.name for f in fields(TrainArgs)]

        def command_fn(**kwargs):
            return fn(**{k: v for k, v in kwargs.items() if k not in keys},
                      train=TrainArgs(**{k: kwargs[k] for k in keys}))

        command_fn.__signature__ = inspect.Signature(own + shared)
        command_fn.__annotations__ = {p.name: p.annotation for p in own + shared}
        command_fn.__doc__, command_fn.__name__ = fn.__doc__, fn.__name__
        train_app.command(command)(command_fn)
        return fn

    return mount


def compared_models(prior: str, compare: Optional[str], architecture: str, kinds: dict, models_dir) -> dict:
    """--prior checked, and the --compare checkpoints loaded (CPU), labelled by their kind and name."""
    from ..cvae import PRIORS
    from ..hub import load

    if prior not in PRIORS:
        raise usage(f"one of {', '.join(PRIORS)}, not '{prior}'", "--prior")
    baselines = {}
    for name in [n.strip() for n in (compare or "").split(",") if n.strip()]:
        net = load(name, "cpu", models_dir, expect=architecture)
        baselines[f"{kinds[net.config.prior]} `{net.metadata['name']}`"] = net
    return baselines


def compared_checkpoints(compare: Optional[str], architecture: str, models_dir, fits, what: str) -> dict:
    """`--compare A,B`: name -> (metadata, SHA-256) of each checkpoint, read and not re-run, for a card's
    comparison table; one of another architecture, or whose config fails `fits`, is a usage error
    ("'NAME' is not WHAT")."""
    from ..hub import read_metadata, resolve, sha256_file

    out = {}
    for name in [n.strip() for n in (compare or "").split(",") if n.strip()]:
        resolved = resolve(name, models_dir)
        meta = read_metadata(resolved.path)
        if meta["architecture"] != architecture or not fits(meta["config"]):
            raise usage(f"'{name}' is not {what}", "--compare")
        out[meta["name"]] = (meta, sha256_file(resolved.path))
    return out


def require_eval_extra(modules: list[str], opt_out: str) -> None:
    """Before training starts, not after it: an evaluation's libraries are installed (the `eval` extra)."""
    import importlib.util

    missing = [m for m in modules if importlib.util.find_spec(m) is None]
    if missing:
        raise usage(f"the evaluation needs {', '.join(missing)}: pip install 'vqtool[eval]' (or {opt_out})", opt_out)


def split_specs(attributes: str) -> list[str]:
    """`--attributes` -> one rule per comma-separated item."""
    specs = [s.strip() for s in attributes.split(",") if s.strip()]
    if not specs:
        raise usage("name at least one attribute", "--attributes")
    return specs
