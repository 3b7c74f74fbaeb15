"""Image commands: `sample`, `train vqvae`, `train prior`, and the image half of `encode` / `decode`."""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path
from typing import Optional

import typer

from vqtool.cli.common import (CodeRequest, DeviceOpt, LimitOpt, ModelsDirOpt, Outputs, RecordSink, console,
                               emit_json, json_needs_file, progress, report, train_command, usage)
from vqtool.errors import VqtoolError

from . import ARCHITECTURE, PHOTO_ARCHITECTURE

IMAGE_ARCHITECTURES = (ARCHITECTURE, PHOTO_ARCHITECTURE)  # what `vqtool encode` / `decode` load for images

DataOpt = typer.Option(..., "--data", help="Folder or .zip of training images (labels = parent folder).")
EvalDataOpt = typer.Option(None, "--eval-data", help="Held-out images for the final metrics.")


def train_vqvae(
    data: Path = DataOpt,
    eval_data: Optional[Path] = EvalDataOpt,
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
    *, train,
):
    """Train an image VQ-VAE.

    Example: `vqtool train vqvae --data ../shared/data/cifar10/train.zip --eval-data ../shared/data/cifar10/test.zip --name cifar10`
    """
    from vqtool.data import refuse_test_split
    from vqtool.data.images import load_images, provenance
    from vqtool.training import fit

    from .model import VQVAEConfig
    from .task import VQVAETask

    refuse_test_split(data)
    if not train.quiet:
        console.print(f"loading {data}…")
    images = load_images(data, size=image_size, limit=limit)
    config = VQVAEConfig(channels=images.images.shape[-1], hidden=hidden, res_hidden=res_hidden,
                         res_blocks=res_blocks, downsamples=downsamples, embedding_dim=embedding_dim,
                         num_codes=num_codes, ema=ema)
    task = VQVAETask(config, images, str(eval_data) if eval_data else None, flip, eval_limit,
                     provenance(data, images, eval_data))
    fit(task, train.options())


def train_prior(
    data: Optional[Path] = typer.Option(None, "--data", help="Folder or .zip of training images (labels = parent "
                                                             "folder); with --codes, images to fit the pixel scale."),
    codes: Optional[Path] = typer.Option(None, "--codes", help="Train on a codes.npz made by `vqtool encode DIR -o "
                                                               "codes.npz` with this VQ-VAE (labels = the names' "
                                                               "parent folders) instead of encoding --data."),
    vqvae: str = typer.Option("cifar10", "--vqvae", help="The trained VQ-VAE whose codes the prior models."),
    eval_data: Optional[Path] = EvalDataOpt,
    judge: Optional[str] = typer.Option(None, "--judge", help="Classifier checkpoint that scores class-conditional "
                                                              "samples in the final metrics."),
    hidden: int = typer.Option(96, "--hidden", help="Channels of each stack."),
    layers: int = typer.Option(12, "--layers", help="Gated layers; reach grows by one code per layer."),
    class_dropout: float = typer.Option(0.2, "--class-dropout", min=0.0, max=1.0,
                                        help="Share of examples trained without their class (the unconditional prior)."),
    unconditional: bool = typer.Option(False, "--unconditional", help="Ignore the class labels."),
    flip: bool = typer.Option(True, "--flip/--no-flip", help="Also train on the codes of mirrored images "
                                                             "(images only: a codes.npz has no mirror images)."),
    limit: Optional[int] = LimitOpt,
    eval_limit: Optional[int] = typer.Option(None, "--eval-limit"),
    models_dir: Optional[Path] = ModelsDirOpt,
    *, train,
):
    """Train a class-conditional gated PixelCNN prior over a VQ-VAE's codes.

    The training images are encoded once (or read from a codes.npz); the exported checkpoint is the
    VQ-VAE with the prior inside (one name for encode, decode, sample and compress).

    Example: `vqtool train prior --vqvae cifar10 --data ../shared/data/cifar10/train.zip --eval-data ../shared/data/cifar10/test.zip`

    From codes: `vqtool encode train/ -o train-codes.npz && vqtool train prior --codes train-codes.npz`
    """
    from vqtool.data import refuse_test_split
    from vqtool.evaluation import IMAGE_CLASSIFIER, load_judge
    from vqtool.hub import load
    from vqtool.training import fit

    from .prior import PriorConfig
    from .task import PriorTask

    if data is None and codes is None:
        raise usage("give the training images (--data) or their codes (--codes)", "--data")
    for path in [p for p in (data, codes) if p is not None]:
        refuse_test_split(path)
    base = load(vqvae, train.device, models_dir, expect=ARCHITECTURE)
    scorer = load_judge(judge, IMAGE_CLASSIFIER, "cpu", models_dir) if judge else None
    if base.config.prior:
        console.print(f"{vqvae} already has a prior; training a new one over the same codes")
    name = train.name or Path(base.name).stem
    if codes is not None:
        grids, labels, classes, scale_images, info = _codes_from_array(base, codes, data, limit, flip, train.quiet)
    else:
        grids, labels, classes, scale_images, info = _codes_from_images(base, data, limit, flip, train.quiet)
    info.update({"eval_data": str(eval_data) if eval_data else None,
                 "eval_split": eval_data.stem if eval_data else None,
                 "codec": {"name": base.name, "sha256": base.sha256, **base.metadata.get("provenance", {})}})
    if unconditional:
        classes = []
    prior = PriorConfig(num_codes=base.config.num_codes, classes=classes, hidden=hidden, layers=layers,
                        class_dropout=class_dropout if classes else 0.0)
    task = PriorTask(base, prior, grids, labels, scale_images, str(eval_data) if eval_data else None, eval_limit,
                     scorer, info, name)
    fit(task, train.options(name, run_folder=f"{name}-prior"))


def train_decoder(
    data: Path = DataOpt,
    vqvae: str = typer.Option("cifar10", "--vqvae", help="The trained VQ-VAE whose decoder is retrained."),
    eval_data: Optional[Path] = EvalDataOpt,
    mixtures: int = typer.Option(5, "--mixtures", min=1, help="Logistic components per pixel."),
    decoder_res_blocks: Optional[int] = typer.Option(None, "--res-blocks", min=0,
                                                     help="Residual blocks of the new decoder (default: the old's)."),
    validation: int = typer.Option(2000, "--validation", min=1,
                                   help="Training images held back to pick the best weights."),
    judge: Optional[str] = typer.Option(None, "--judge", help="Classifier checkpoint that scores class-conditional "
                                                              "samples in the final metrics."),
    limit: Optional[int] = LimitOpt,
    eval_limit: Optional[int] = typer.Option(None, "--eval-limit"),
    models_dir: Optional[Path] = ModelsDirOpt,
    *, train,
):
    """Retrain a VQ-VAE's decoder by the likelihood of the pixels (a discretised logistic mixture, PixelCNN++).

    Encoder, codebook and prior are kept, so codes and their prior bits do not change; the decoder then
    gives the paper's bits/dim directly, and decodes to the mixture's mean.

    Example: `vqtool train decoder --vqvae cifar10 --data ../shared/data/cifar10/train.zip --eval-data ../shared/data/cifar10/test.zip --judge cifar10-classifier`
    """
    from vqtool.data import refuse_test_split
    from vqtool.data.images import load_images, provenance
    from vqtool.evaluation import IMAGE_CLASSIFIER, load_judge
    from vqtool.hub import load
    from vqtool.training import fit

    from .task import DecoderTask

    refuse_test_split(data)
    base = load(vqvae, train.device, models_dir, expect=ARCHITECTURE)
    scorer = load_judge(judge, IMAGE_CLASSIFIER, "cpu", models_dir) if judge else None
    if not train.quiet:
        console.print(f"loading {data} and encoding it with {base.name}…")
    images = load_images(data, limit=limit)
    if validation >= len(images):
        raise usage(f"{validation} validation images leave none of the {len(images)} to train on", "--validation")
    name = train.name or Path(base.name).stem
    measured = base.metadata.get("metrics", {})
    info = {**provenance(data, images, eval_data), "flip": True,
            "decoder_of": {"name": base.name, "sha256": base.sha256,
                           "metrics": {k: measured[k] for k in ("psnr_db", "decoder_bits_per_dim", "bits_per_dim",
                                                                 "sample_accuracy") if k in measured}}}
    task = DecoderTask(base, mixtures, decoder_res_blocks, images.images, str(eval_data) if eval_data else None,
                       validation, eval_limit, scorer, info, name)
    fit(task, train.options(name, run_folder=f"{name}-decoder"))


def _codes_from_images(base, data: Path, limit, flip: bool, quiet: bool) -> tuple:
    """(grids, labels, classes, images for the pixel scale, provenance) of a folder or zip of images,
    encoded once (and mirrored when `flip`)."""
    from vqtool.data.images import load_images, provenance

    from .task import training_codes

    if not quiet:
        console.print(f"loading {data} and encoding it with {base.name}…")
    images = load_images(data, limit=limit)
    grids, labels = training_codes(base, images, flip)
    return grids, labels, images.classes, images.images[:2000], {**provenance(data, images, None), "flip": flip}


def _codes_from_array(base, codes: Path, data: Optional[Path], limit, flip: bool, quiet: bool) -> tuple:
    """The same from a codes.npz of this VQ-VAE; the pixel scale is kept from its prior, or fitted on
    `data`. An array encoded from a test split is refused."""
    import torch

    from vqtool.data import fingerprint, refuse_test_split
    from vqtool.data.images import load_images, seeded_subset

    from .task import array_codes

    if data is None and not base.config.prior:
        raise usage(f"{base.name} has no prior whose pixel scale a prior from codes could keep; add --data "
                    "(training images) to fit it", "--codes")
    if not quiet:
        console.print(f"reading {codes}…" + (" (no mirror images: --flip needs --data)" if flip else ""))
    grids, labels, classes, meta = array_codes(base, str(codes))
    for given in meta.get("inputs", []):  # what the array was encoded from
        if isinstance(given, str):
            refuse_test_split(given)
    if limit:
        keep = torch.as_tensor(seeded_subset(len(grids), limit))
        grids, labels = grids[keep], labels[keep]
    scale_images = load_images(data, limit=2000).images if data is not None else None
    info = {"train_data": str(codes), "train_split": codes.stem, "train_items": len(grids),
            "train_sha256": fingerprint(codes), "classes": classes, "codes_inputs": meta.get("inputs", []),
            "flip": False}
    return grids, labels, classes, scale_images, info


def train_photos(
    data: Path = typer.Option(..., "--data", help="Folder of training photographs. A `test.txt` beside it "
                                                  "lists held-out photos: never trained on, used for the final metrics."),
    stages: int = typer.Option(8, "--stages", min=1, max=32, help="Residual codebooks (--quality 1..stages)."),
    num_codes: int = typer.Option(256, "--codes", help="Codebook size K of each stage."),
    embedding_dim: int = typer.Option(32, "--embedding-dim"),
    widths: str = typer.Option("64,128,192", "--widths", help="Channels after each stride-2 layer (three: 8x8 pixels "
                                                               "per code)."),
    crop: int = typer.Option(64, "--crop", help="Training crop size in pixels (a multiple of the stride)."),
    context_hidden: int = typer.Option(32, "--context-hidden", help="Channels of the context model."),
    calibration: int = typer.Option(24, "--calibration", help="Training photos whose codes set the integer "
                                                              "context model's ranges."),
    limit: Optional[int] = LimitOpt,
    eval_limit: Optional[int] = typer.Option(None, "--eval-limit"),
    *, train,
):
    """Train the photo model: residual codebooks over real photographs, with its context model.

    Example: `vqtool train photos --data ../shared/data/flickr8k-1k/images --name photos`
    """
    from vqtool.data import fingerprint, refuse_test_split
    from vqtool.data.images import seeded_subset
    from vqtool.media import IMAGE_SUFFIXES
    from vqtool.training import fit

    from .photo import PhotoConfig
    from .photo_task import PhotoTask, load_photos

    refuse_test_split(data)
    if not data.is_dir():
        raise usage(f"'{data}' is not a folder of photos", "--data")
    try:
        sizes = [int(w) for w in widths.split(",")]
    except ValueError:
        raise usage(f"comma-separated channel counts, not '{widths}'", "--widths") from None
    held_list = data.parent / "test.txt"
    held_names = set(held_list.read_text().split()) if held_list.is_file() else set()
    files = sorted(p for p in data.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    train_files = [p for p in files if p.name not in held_names]
    held_files = [p for p in files if p.name in held_names]
    if limit:
        train_files = [train_files[i] for i in seeded_subset(len(train_files), limit)]
    if eval_limit is not None:
        held_files = held_files[:eval_limit]
    if not train_files:
        raise usage(f"no training photos in '{data}'", "--data")
    if not train.quiet:
        console.print(f"loading {len(train_files)} training photos ({len(held_files)} held out by {held_list.name})…")
    photos = load_photos(train_files)
    config = PhotoConfig(widths=sizes, embedding_dim=embedding_dim, num_codes=num_codes, stages=stages,
                         context_hidden=context_hidden)
    if crop % 2 ** len(sizes):
        raise usage(f"must be a multiple of the stride {2 ** len(sizes)}", "--crop")
    calibration_photos = [photos[i] for i in seeded_subset(len(photos), calibration)]
    info = {"train_data": str(data), "train_split": "flickr8k-1k minus test.txt", "train_items": len(train_files),
            "train_sha256": fingerprint(data), "held_out_list": str(held_list) if held_names else None,
            "eval_data": str(data) if held_files else None, "eval_split": "test.txt" if held_files else None,
            "eval_items": len(held_files), "crop": crop}
    task = PhotoTask(config, photos, load_photos(held_files), calibration_photos, crop, data_info=info)
    fit(task, train.options())


MAX_SAMPLES = 10_000  # per call: beyond this, loop in the shell (memory grows with N)


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
    from vqtool.hub import load
    from vqtool.media import encode_image, image_format_for, tile, write_bytes

    from .codec import image_record

    if temperature <= 0:
        raise usage(f"must be positive, not {temperature}", "--temperature")
    json_needs_file(as_json, output)
    if count > MAX_SAMPLES:
        raise usage(f"{count} samples asked for; at most {MAX_SAMPLES} per call", "-n")
    net = load(model, device, models_dir, expect=ARCHITECTURE)
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
    shape = (grids.shape[1] * net.stride, grids.shape[2] * net.stride, net.config.channels)
    names = [f"sample-{i + 1:04d}" + (f"-{net.classes[k]}" if k >= 0 else "") for i, k in enumerate(labels)]
    written = []
    if codes:
        records = [image_record(g.numpy(), shape, net.name, net.sha256, net.config.num_codes, {"name": name},
                                {"sample": {"class": net.classes[k] if k >= 0 else None, "seed": seed,
                                            "temperature": temperature, "top_k": top_k}}).to_bytes()
                   for g, k, name in zip(grids, labels, names)]
        if to_dir:
            written = [(str(Path(output) / f"{name}.vqc"), data) for name, data in zip(names, records)]
        else:
            written = [(output, b"".join(records))]
    else:
        from vqtool.evaluation import in_batches

        images = list(net.to_uint8(in_batches(net.decode, grids, 256)))
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


# --- the image half of `vqtool encode` and `vqtool decode` ------------------------------------------
PIXELS_PER_CALL = 1 << 22  # about 4 megapixels per model call: bounds memory for large photos


READ_AHEAD = 2  # batches of images read and decoded ahead of the model, by a small thread pool


def _image_batches(sources: list[str], batch_size: int, mode: str, failures: list[str]):
    """(index, source, array) of the decoded images in batches of at most `batch_size` images and
    PIXELS_PER_CALL pixels. Files are read and decoded by a small thread pool (Pillow releases the
    GIL) while the model encodes the batch before. At most READ_AHEAD batches of the last batch's
    size wait (two large photos, or two batches of 64 small images): memory stays bounded by pixels."""
    from collections import deque
    from concurrent.futures import ThreadPoolExecutor

    from vqtool.media import image_to_array, read_image
    from vqtool.threads import available_cores

    def read(source):
        try:
            return image_to_array(read_image(source, mode))
        except VqtoolError as exc:
            return exc

    batch, pixels, waiting, last_size = [], 0, deque(), 1

    def settle():
        """Take the oldest read; the batch it completes, if any."""
        nonlocal batch, pixels, last_size
        index, source, future = waiting.popleft()
        array = future.result()
        if isinstance(array, VqtoolError):
            report(failures, source, array)
            return None
        size, full = array.shape[0] * array.shape[1], None
        if batch and (len(batch) == batch_size or pixels + size > PIXELS_PER_CALL):
            full, batch, pixels, last_size = batch, [], 0, len(batch)
        batch.append((index, source, array))
        pixels += size
        return full

    with ThreadPoolExecutor(max_workers=min(4, available_cores())) as pool:
        for index, source in enumerate(sources):
            waiting.append((index, source, pool.submit(read, source)))
            while len(waiting) > READ_AHEAD * max(last_size, len(batch)):
                if full := settle():
                    yield full
        while waiting:
            if full := settle():
                yield full
    if batch:
        yield batch


class _Models:
    """The checkpoint(s) `vqtool encode` uses: --model for every image, else each image's size picks
    (`codec.default_model`: cifar10 for images of at most 32x32 pixels, photos for the rest). Each is
    loaded once, when first needed, and checked for what the request asks of it."""

    def __init__(self, request: CodeRequest):
        self.request, self.loaded = request, {}

    def get(self, name: str):
        from vqtool.hub import load

        from .codec import is_photo

        if name not in self.loaded:
            request = self.request
            net = load(name, request.device, request.models_dir, expect=IMAGE_ARCHITECTURES)
            if request.quality is not None and not is_photo(net):
                raise usage(f"{net.name} has one codebook; --quality needs the photo model (-m photos)", "--quality")
            if request.quality is not None and request.quality > net.config.stages:
                raise usage(f"must lie in 1..{net.config.stages} for {net.name}", "--quality")
            if request.compress and not is_photo(net):
                net.require_prior()
            self.loaded[name] = net
        return self.loaded[name]

    def split(self, chunk: list):
        """(net, part of the chunk) for each checkpoint the chunk's images go to, in order."""
        from .codec import default_model

        if self.request.model_given:
            yield self.get(self.request.model), chunk
            return
        groups: dict = {}
        for item in chunk:
            groups.setdefault(default_model(*item[2].shape[:2]), []).append(item)
        for name, part in groups.items():
            yield self.get(name), part

    def names(self) -> str:
        return " and ".join(net.name for net in self.loaded.values()) or self.request.model


def encode_media(sources: list[str], request: CodeRequest) -> None:
    """`vqtool encode` for images: batched model calls, one record per image, or one row each of a
    codes.npz (`-o NAME.npz`, one-codebook models only: cifar10 unless --model names one)."""
    from vqtool.codearrays import SUFFIX, CodeArrayWriter

    from .codec import image_mode, is_photo

    if not request.model_given and request.quality is not None:  # quality levels are the photo model's
        request = replace(request, model="photos", model_given=True)
    if not request.model_given and request.output is not None and request.output.lower().endswith(SUFFIX):
        request = replace(request, model="cifar10", model_given=True)  # arrays hold one grid per image
    models = _Models(request)
    mode = image_mode(models.get(request.model)) if request.model_given else "RGB"
    if request.output is not None and request.output.lower().endswith(SUFFIX):
        net = models.get(request.model)
        if is_photo(net):
            raise usage(f"a codes.npz holds one code grid per image; {net.name}'s residual grids go to .vqc files",
                        "--output")
        if request.quality is not None:
            raise usage("a codes.npz holds one code grid per image", "--quality")
        sink = CodeArrayWriter(request.output, net.name, net.sha256, net.config.num_codes, "image",
                               list(request.given))
        put = _put_rows
    else:
        sink = RecordSink(request.output, sources, request.quiet, request.from_folder)
        put = _put_records
    failures: list[str] = []
    written = 0
    try:
        with progress(len(sources), "encoding", request.quiet) as advance:
            for chunk in _image_batches(sources, request.batch_size, mode, failures):
                for net, part in models.split(chunk):
                    written += put(net, part, request, sink, failures)
                advance(len(chunk))
    except BaseException:
        if isinstance(sink, CodeArrayWriter):
            sink.discard()
        raise
    if isinstance(sink, CodeArrayWriter):
        try:
            sink.close()
        except VqtoolError as exc:
            report(failures, request.output, exc)
            written = 0
    elif not sink.close(failures):
        written = 0
    if not request.quiet:
        where = f" into {request.output}" if isinstance(sink, CodeArrayWriter) and written else ""
        console.print(f"encoded {written} image(s) with {models.names()}{where}"
                      + (f", {len(failures)} failed" if failures else ""))
    if failures:
        raise typer.Exit(1)


def _put_rows(net, chunk: list, request: CodeRequest, sink, failures: list[str]) -> int:
    """Encode one batch of (index, source, array) into rows of a codes.npz; how many went."""
    from .codec import encode_grids

    written = 0
    for (index, source, array), grid in zip(chunk, encode_grids(net, [array for _, _, array in chunk])):
        name = request.names[index] if request.names else source
        try:
            row = sink.add(grid, name, array.shape, source)
        except VqtoolError as exc:
            report(failures, source, exc)
            continue
        written += 1
        if request.as_json:
            emit_json({"input": source, "output": request.output, "row": row, "name": name, "model": net.name,
                       "grid": list(grid.shape), "width": array.shape[1], "height": array.shape[0]})
    return written


def _put_records(net, chunk: list, request: CodeRequest, sink: RecordSink, failures: list[str]) -> int:
    """Encode one batch of (index, source, array) and hand each record to the sink; how many went."""
    from .codec import encode_arrays, grid_for, is_photo

    written = 0
    results = encode_arrays(net, [array for _, _, array in chunk], request.compress,
                            [sink.name_of(index) for index, _, _ in chunk], request.quality)
    for (index, source, array), data in zip(chunk, results):
        if isinstance(data, bytes):
            try:
                sink.put(index, data)
            except VqtoolError as exc:
                data = exc
        if isinstance(data, VqtoolError):
            report(failures, source, data)
            continue
        written += 1
        if request.as_json:
            grid = list(grid_for(net, *array.shape[:2], request.quality))
            coding = ("range-context" if is_photo(net) else "range-prior") if request.compress else "packed"
            emit_json({"input": source, "output": sink.targets[index], "model": net.name, "grid": grid,
                       "width": array.shape[1], "height": array.shape[0], "bytes": len(data), "coding": coding})
    return written


DECODE_BATCH = 256  # records per model call in `vqtool decode`
BATCH_CODES = 4096  # grids above this many codes (64 x 64) decode one at a time


def _restored(pending: list, cache, failures: list[str]):
    """(entry, net, codes) of each record that can be read, in order. Range-coded records of one
    checkpoint and grid are decoded together, DECODE_BATCH at a time, in one walk of the prior."""
    from .codec import restore_codes
    from .compress import restore_many

    for start in range(0, len(pending), DECODE_BATCH):
        window = []
        for entry in pending[start:start + DECODE_BATCH]:
            try:
                window.append((entry, cache.for_record(entry[2], entry[4])))
            except VqtoolError as exc:
                report(failures, entry[4], exc)
        groups: dict = {}
        for entry, net in window:
            if entry[2].coding == "range-prior":
                groups.setdefault((id(net), tuple(entry[2].grid)), []).append((entry, net))
        restored = {}
        for group in groups.values():
            results = restore_many(group[0][1].prior, [e[2] for e, _ in group], [e[4] for e, _ in group])
            restored.update({id(entry): result for (entry, _), result in zip(group, results)})
        for entry, net in window:
            codes = restored.get(id(entry), entry[2].codes)
            if entry[2].coding == "range-context":  # the photo model's records: each decodes in parallel alone
                try:
                    codes = restore_codes(net, entry[2], entry[4])
                except VqtoolError as exc:
                    codes = exc
            if isinstance(codes, VqtoolError):
                report(failures, entry[4], codes)
                continue
            yield entry, net, codes


def _decoded(pending: list, cache, failures: list[str]):
    """(entry, net, (H, W, C) uint8 pixels) of each record that decodes, in order: records of one
    checkpoint and grid go through the model DECODE_BATCH at a time (their pixels equal one-at-a-time
    decoding: the model decodes in fixed chunks)."""
    import numpy as np
    import torch

    run: list = []  # (entry, codes, net) of one checkpoint and grid

    def flush():
        if not run:
            return
        net = run[0][2]
        images = net.to_uint8(net.decode(torch.from_numpy(np.stack([codes for _, codes, _ in run]).astype(np.int64))))
        for (entry, _, _), image in zip(run, images):
            media = entry[2].media
            yield entry, net, image[:media["height"], :media["width"]]
        run.clear()

    for entry, net, codes in _restored(pending, cache, failures):
        if run and (run[0][2] is not net or run[0][1].shape != codes.shape or len(run) == DECODE_BATCH
                    or codes.size > BATCH_CODES):
            yield from flush()
        run.append((entry, codes, net))
    yield from flush()


def decode_media(pending: list, request: CodeRequest, cache, failures: list[str]) -> int:
    """`vqtool decode` for image records (source, index, record, output stem, name in messages):
    several into one image file (or stdout) make one grid, as `vqtool sample` writes them. Images are
    compressed and written by a small thread pool (Pillow and file writes release the GIL) while the
    model decodes the next batch; at most two batches wait in memory."""
    from collections import deque
    from concurrent.futures import ThreadPoolExecutor

    from vqtool.media import IMAGE_FORMATS, encode_image, image_format_for, tile, write_bytes
    from vqtool.threads import available_cores, core_for_writers

    output, fmt = request.output, request.fmt
    default_format = IMAGE_FORMATS.get("." + fmt.lower(), "PNG")
    suffix = "." + fmt.lower() if output is not None else ".decoded." + fmt.lower()
    as_grid = len(pending) > 1 and output is not None and (output == "-" or (
        Path(output).suffix.lower() in IMAGE_FORMATS and not Path(output).is_dir()))
    outputs = Outputs(output, 1 if as_grid else len(pending), suffix, list(request.inputs), request.quiet,
                      request.from_folder)
    targets = {id(entry): None if as_grid else outputs.path_for(entry[0], entry[3]) for entry in pending}
    cells, written, waiting = [], 0, deque()

    def store(target, pixels):
        data = encode_image(pixels, image_format_for(target, default_format))
        write_bytes(target, data)
        return len(data)

    def collect(job) -> int:
        (source, index, _, _, label), net, pixels, target, future = job
        try:
            size = future.result()
        except VqtoolError as exc:
            report(failures, label, exc)
            return 0
        if request.as_json:
            emit_json({"input": source, "record": index, "output": target, "model": net.name,
                       "width": pixels.shape[1], "height": pixels.shape[0], "bytes": size})
        return 1

    with ThreadPoolExecutor(max_workers=min(4, available_cores())) as pool, core_for_writers(), \
            progress(len(pending), "decoding", request.quiet) as advance:
        for entry, net, pixels in _decoded(pending, cache, failures):
            advance()
            if as_grid:
                cells.append(pixels)
                continue
            target = targets[id(entry)]
            waiting.append((entry, net, pixels, target, pool.submit(store, target, pixels)))
            while len(waiting) > 2 * DECODE_BATCH:
                written += collect(waiting.popleft())
        for job in waiting:
            written += collect(job)
    if cells:
        try:
            sheet = tile(cells, request.columns or math.ceil(math.sqrt(len(cells))))
            data = encode_image(sheet, image_format_for(output, default_format))
            write_bytes(output, data)
        except VqtoolError as exc:
            report(failures, output, exc)
            cells = []
        written += len(cells)
        if request.as_json and cells:
            emit_json({"output": output, "records": len(cells), "width": sheet.shape[1], "height": sheet.shape[0],
                       "bytes": len(data)})
    return written


def register(app: typer.Typer, train_app: typer.Typer) -> None:
    app.command()(sample)
    train_command(train_app, "vqvae", name="vqvae", steps=10_000, lr=3e-4)(train_vqvae)
    train_command(train_app, "photos", name="photos", steps=24_000, lr=7e-4, batch_size=32)(train_photos)
    train_command(train_app, "prior", name=None, steps=20_000, lr=5e-4,
                  out_help="Run folder (default runs/NAME-prior).",
                  name_help="Checkpoint name (default: the VQ-VAE's name).")(train_prior)
    train_command(train_app, "decoder", name=None, steps=30_000, lr=4e-4,
                  out_help="Run folder (default runs/NAME-decoder).",
                  name_help="Checkpoint name (default: the VQ-VAE's name).")(train_decoder)
