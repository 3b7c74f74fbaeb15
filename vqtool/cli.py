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
from .errors import VqtoolError

console = Console(stderr=True)
app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  rich_markup_mode="markdown",
                  help="Discrete codes and controllable generation from media.\n\n"
                       "Examples:\n\n"
                       "    vqtool encode photo.png                  # writes photo.vqc\n\n"
                       "    vqtool decode photo.vqc -o back.png\n\n"
                       "    vqtool encode photo.png -o - | vqtool decode - -o back.png\n\n"
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
    sys.stdout.write(json.dumps(record) + "\n")
    sys.stdout.flush()


# --- training ------------------------------------------------------------------------------------
@train_app.command("vqvae")
def train_vqvae(
    data: Path = typer.Option(..., "--data", help="Folder or .zip of training images (labels = parent folder)."),
    eval_data: Optional[Path] = typer.Option(None, "--eval-data", help="Held-out images for the final metrics."),
    name: str = typer.Option("vqvae", "--name", help="Checkpoint name."),
    out: Optional[Path] = typer.Option(None, "--out", help="Run folder (default runs/NAME)."),
    steps: int = typer.Option(10_000, "--steps", min=1),
    batch_size: int = typer.Option(128, "--batch-size", min=1),
    lr: float = typer.Option(3e-4, "--lr"),
    seed: int = typer.Option(0, "--seed"),
    device: str = DeviceOpt,
    resume: bool = typer.Option(False, "--resume", help="Continue from RUN/state.safetensors."),
    image_size: Optional[int] = typer.Option(None, "--image-size", help="Centre-crop and resize to this size."),
    hidden: int = typer.Option(128, "--hidden"),
    res_hidden: int = typer.Option(64, "--res-hidden"),
    res_blocks: int = typer.Option(2, "--res-blocks"),
    downsamples: int = typer.Option(2, "--downsamples", help="Number of stride-2 layers: codes cover 2**N pixels."),
    embedding_dim: int = typer.Option(64, "--embedding-dim"),
    num_codes: int = typer.Option(512, "--codes", help="Codebook size K."),
    ema: bool = typer.Option(True, "--ema/--no-ema", help="EMA codebook updates (gamma 0.99) or codebook loss."),
    flip: bool = typer.Option(True, "--flip/--no-flip", help="Random horizontal flips."),
    limit: Optional[int] = typer.Option(None, "--limit", help="Use a random subset of this many training images."),
    eval_limit: Optional[int] = typer.Option(None, "--eval-limit"),
    checkpoint_every: int = typer.Option(500, "--checkpoint-every"),
    time_limit: Optional[float] = typer.Option(None, "--time-limit", help="Minutes; stop (and export) when reached."),
    quiet: bool = typer.Option(False, "--quiet", "-q"),
):
    """Train an image VQ-VAE.

    Example: `vqtool train vqvae --data ../shared/data/cifar10/train.zip --eval-data ../shared/data/cifar10/test.zip --name cifar10`
    """
    from .data import fingerprint, load_images, refuse_test_split
    from .training import TrainOptions, fit
    from .vqvae import VQVAEConfig, VQVAETask

    refuse_test_split(data)
    if not quiet:
        console.print(f"loading {data}…")
    train = load_images(data, size=image_size, limit=limit)
    config = VQVAEConfig(channels=train.images.shape[-1], hidden=hidden, res_hidden=res_hidden,
                         res_blocks=res_blocks, downsamples=downsamples, embedding_dim=embedding_dim,
                         num_codes=num_codes, ema=ema)
    info = {"train_data": str(data), "train_split": data.stem, "train_items": len(train),
            "train_sha256": fingerprint(data), "classes": train.classes,
            "eval_data": str(eval_data) if eval_data else None,
            "eval_split": eval_data.stem if eval_data else None}
    task = VQVAETask(config, train, str(eval_data) if eval_data else None, flip, eval_limit, info)
    opts = TrainOptions(out=out or Path("runs") / name, name=name, steps=steps, batch_size=batch_size, lr=lr,
                        seed=seed, device=device, resume=resume, checkpoint_every=checkpoint_every, quiet=quiet,
                        time_limit=time_limit * 60 if time_limit else None)
    fit(task, opts)


# --- codes -------------------------------------------------------------------------------------------
class Outputs:
    """Where each result goes: next to its input (default), into a folder, one file, or stdout."""

    def __init__(self, target: Optional[str], count: int, suffix: str):
        self.target, self.suffix = target, suffix
        self.to_dir = target not in (None, "-") and (count > 1 or Path(target).is_dir() or target.endswith("/"))

    def path_for(self, source: str, stem: Optional[str] = None) -> str:
        stem = stem or (Path(source).stem if source != "-" else "stdin")
        if self.target == "-":
            return "-"
        if self.to_dir:
            return str(Path(self.target) / f"{stem}{self.suffix}")
        if self.target is not None:
            return self.target
        if source == "-":
            return "-"
        return str(Path(source).with_name(f"{stem}{self.suffix}"))


def print_error(message: str) -> None:
    """The one-line error format of every command."""
    console.print(f"vqtool: error: {message}", markup=False, highlight=False, soft_wrap=True)


def _report(failures: list[str], source: str, exc: VqtoolError) -> None:
    print_error(str(exc) if exc.source else f"{source}: {exc}")
    failures.append(source)


PIXELS_PER_CALL = 1 << 22  # about 4 megapixels per model call: bounds memory for large photos


def _image_batches(sources: list[str], batch_size: int, mode: str, failures: list[str]):
    """Decoded images in batches of at most `batch_size` images and PIXELS_PER_CALL pixels."""
    from .media import image_to_array, read_image

    batch, pixels = [], 0
    for source in sources:
        try:
            array = image_to_array(read_image(source, mode))
        except VqtoolError as exc:
            _report(failures, source, exc)
            continue
        size = array.shape[0] * array.shape[1]
        if batch and (len(batch) == batch_size or pixels + size > PIXELS_PER_CALL):
            yield batch
            batch, pixels = [], 0
        batch.append((source, array))
        pixels += size
    if batch:
        yield batch


@app.command()
def encode(
    inputs: List[str] = typer.Argument(..., metavar="INPUT", help="Image files or folders; '-' reads one image from stdin."),
    model: str = typer.Option("cifar10", "--model", "-m", help="Checkpoint name or path."),
    output: Optional[str] = typer.Option(None, "--output", "-o",
                                         help="File, folder (for many inputs) or '-' for stdout. "
                                              "Default: INPUT with the .vqc suffix."),
    batch_size: int = typer.Option(64, "--batch-size", min=1, help="Images per model call."),
    device: str = DeviceOpt,
    models_dir: Optional[Path] = ModelsDirOpt,
    as_json: bool = typer.Option(False, "--json", help="One JSON record per output on stdout."),
    quiet: bool = typer.Option(False, "--quiet", "-q"),
):
    """Encode images to .vqc code files.

    Images of any size are accepted: the grid has ceil(H/4) x ceil(W/4) codes (for a 4-pixel stride)
    and decoding restores the exact original size. Alpha is composited on white.

    Examples:

    `vqtool encode photo.png`  (writes photo.vqc)

    `vqtool encode shots/ -o codes/`

    `vqtool encode a.png b.png -o both.vqc`  (one file, two records)

    `vqtool encode photo.png -o - | vqtool decode - -o back.png`
    """
    import numpy as np

    from .codes import CodeFile
    from .hub import load
    from .media import IMAGE_SUFFIXES, expand_inputs, write_bytes

    if as_json and output == "-":
        raise usage("--json prints records on stdout, so it needs -o to a file or folder", "--json")
    sources = expand_inputs(inputs, IMAGE_SUFFIXES)
    if sources.count("-") > 1:
        raise usage("stdin ('-') can be read only once")
    net = load(model, device, models_dir)
    # several inputs into one NAME.vqc file: the format holds many records back to back
    collect = output not in (None, "-") and output.endswith(".vqc") and not Path(output).is_dir()
    outputs = Outputs(output, 1 if collect else len(sources), ".vqc")
    failures: list[str] = []
    collected: list[bytes] = []
    written = 0
    mode = "RGB" if net.config.channels == 3 else "L"
    for chunk in _image_batches(sources, batch_size, mode, failures):
        results = {}
        for shape in {array.shape for _, array in chunk}:
            group = [(source, array) for source, array in chunk if array.shape == shape]
            codes = net.encode(np.stack([array for _, array in group])).cpu().numpy()
            for (source, array), grid in zip(group, codes):
                results[source] = (array, grid)
        for source, _ in chunk:
            array, grid = results[source]
            stem = Path(source).stem if source != "-" else None
            record = CodeFile(grid, net.name, net.sha256, net.config.num_codes,
                              {"kind": "image", "height": array.shape[0], "width": array.shape[1],
                               "channels": array.shape[2], **({"name": stem} if stem else {})})
            data = record.to_bytes()
            target = outputs.path_for(source)
            if collect:
                collected.append(data)
            else:
                write_bytes(target, data)
            written += 1
            if as_json:
                emit_json({"input": source, "output": target, "model": net.name, "grid": list(grid.shape),
                           "width": array.shape[1], "height": array.shape[0], "bytes": len(data)})
    if collected:
        write_bytes(output, b"".join(collected))
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
    """Load each checkpoint once and check that it is the one the codes were made with."""

    def __init__(self, override: Optional[str], device: str, models_dir):
        self.override, self.device, self.models_dir, self.loaded = override, device, models_dir, {}

    def for_record(self, record, source: str):
        from .hub import load

        name = self.override or record.model
        if name not in self.loaded:
            self.loaded[name] = load(name, self.device, self.models_dir)
        net = self.loaded[name]
        if net.sha256 != record.checkpoint_sha256:
            raise VqtoolError(f"codes were made by checkpoint {record.checkpoint_sha256[:12]}… of model "
                              f"'{record.model}', but '{name}' is {net.sha256[:12]}…; decode them with that model",
                              source)
        return net


@app.command()
def decode(
    inputs: List[str] = typer.Argument(..., metavar="CODES", help=".vqc files or folders; '-' reads records from stdin."),
    output: Optional[str] = typer.Option(None, "--output", "-o",
                                         help="File (suffix picks the format), folder, or '-' for stdout. "
                                              "Default: INPUT.decoded.png beside each input."),
    model: Optional[str] = typer.Option(None, "--model", "-m", help="Override the model named in the header."),
    fmt: str = typer.Option("png", "--format", help="Image format when the output has no suffix (stdout, folders)."),
    device: str = DeviceOpt,
    models_dir: Optional[Path] = ModelsDirOpt,
    as_json: bool = typer.Option(False, "--json", help="One JSON record per output on stdout."),
    quiet: bool = typer.Option(False, "--quiet", "-q"),
):
    """Decode .vqc code files back to images, with the checkpoint named in their header.

    Examples:

    `vqtool decode photo.vqc -o back.png`

    `vqtool decode codes/ -o images/`

    `cat a.vqc | vqtool decode - -o - > a.png`
    """
    from .media import IMAGE_FORMATS, encode_image, expand_inputs, image_format_for, write_bytes

    if as_json and output == "-":
        raise usage("--json prints records on stdout, so it needs -o to a file or folder", "--json")
    if "." + fmt.lower() not in IMAGE_FORMATS:
        raise usage(f"unknown format '{fmt}' (use one of {', '.join(s[1:] for s in sorted(IMAGE_FORMATS))})",
                    "--format")
    default_format = IMAGE_FORMATS["." + fmt.lower()]
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
    outputs = Outputs(output, len(pending), suffix)
    if output == "-" and len(pending) > 1:
        raise usage(f"{len(pending)} code records cannot all go to stdout; give -o a folder", "-o")
    for source, index, record in pending:
        try:
            net = cache.for_record(record, source)
            media = record.media
            size = (media["height"], media["width"]) if "height" in media else None
            pixels = net.to_uint8(net.decode(record.codes, size))[0]
            stem = media.get("name") or (Path(source).stem if source != "-" else "stdin")
            if index and "name" not in media:
                stem = f"{stem}-{index + 1}"
            target = outputs.path_for(source, stem)
            data = encode_image(pixels, image_format_for(target, default_format))
            write_bytes(target, data)
            written += 1
            if as_json:
                emit_json({"input": source, "record": index, "output": target, "model": net.name,
                           "width": pixels.shape[1], "height": pixels.shape[0], "bytes": len(data)})
        except VqtoolError as exc:
            _report(failures, source, exc)
    if not quiet:
        console.print(f"decoded {written} image(s)" + (f", {len(failures)} failed" if failures else ""))
    if failures:
        raise typer.Exit(1)


@app.command()
def inspect(
    inputs: List[str] = typer.Argument(..., metavar="CODES", help=".vqc files; '-' for stdin."),
    as_json: bool = typer.Option(False, "--json", help="One JSON record per code record."),
    top: int = typer.Option(10, "--top", help="How many of the most frequent codes to show."),
):
    """Show a .vqc file's header, code grid and code histogram.

    Example: `vqtool inspect photo.vqc --json`
    """
    import numpy as np

    from .codes import bits_per_code, entropy_bits

    failures: list[str] = []
    for source in inputs:
        try:
            for _, index, record in _records(source):
                counts = np.bincount(record.codes.ravel(), minlength=record.codebook_size)
                info = {"input": source, "record": index, "model": record.model,
                        "checkpoint_sha256": record.checkpoint_sha256, "codebook_size": record.codebook_size,
                        "grid": list(record.grid), "bits_per_code": bits_per_code(record.codebook_size),
                        "media": record.media, "distinct_codes": int((counts > 0).sum()),
                        "entropy_bits_per_code": round(entropy_bits(counts), 3),
                        "histogram": {str(i): int(c) for i, c in enumerate(counts) if c}}
                if as_json:
                    emit_json(info)
                    continue
                frequent = sorted(info["histogram"].items(), key=lambda kv: -kv[1])[:top]
                lines = [f"{source}" + (f" (record {index + 1})" if index else ""),
                         f"  model        {record.model} (checkpoint {record.checkpoint_sha256[:12]}…)",
                         f"  codebook     K = {record.codebook_size}, {info['bits_per_code']} bits per code",
                         f"  grid         {' x '.join(map(str, record.grid))} = {record.codes.size} codes",
                         f"  media        {json.dumps(record.media)}",
                         f"  histogram    {info['distinct_codes']} distinct codes, entropy "
                         f"{info['entropy_bits_per_code']} bits/code",
                         "  most used    " + ", ".join(f"{c}×{n}" for c, n in frequent)]
                sys.stdout.write("\n".join(lines) + "\n")
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
            metrics = ", ".join(f"{k} {v}" for k, v in record["metrics"].items() if k in ("psnr_db", "perplexity"))
            origin = "bundled" if record.get("bundled") else "user"
            sys.stdout.write(f"{name:16} {record.get('architecture', '?'):14} {origin:8} {metrics}\n")


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
    sys.stdout.write("\n".join(lines) + "\n")


def main() -> None:
    """Entry point: user errors are one line on stderr with exit 1; usage errors exit 2."""
    try:
        app()
    except VqtoolError as exc:
        print_error(str(exc))
        sys.exit(1)
    except KeyboardInterrupt:
        sys.exit(130)
    except BrokenPipeError:
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
