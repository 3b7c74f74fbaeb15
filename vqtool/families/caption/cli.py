"""Caption commands: `caption` (several captions of each photo) and `train caption`."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from vqtool.cli.common import (AnnealOpt, BetaOpt, CompareOpt, DeviceOpt, FreeBitsOpt, LatentOpt, ModelsDirOpt,
                               PriorOpt, compared_models, console, emit_json, json_needs_file, note, report,
                               train_command, usage)
from vqtool.errors import VqtoolError

from . import ARCHITECTURE, KINDS

DEFAULT_MODEL = "captions-flickr"
MAX_SAMPLES = 100  # captions per photo
MAX_BEAM = 50
MAX_WORDS = 60
CHUNK = 16  # photos per pass of the image encoder
SHEET_SUFFIXES = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG"}
SHEET_MOST = 100  # photos in one contact sheet (25 rows of 4: about 10,000 pixels tall)


def train_caption(
    data: Path = typer.Option(..., "--data", help="Flickr8k-style folder: images/, captions.txt (image,caption), "
                                                  "test.txt (held-out photos), optionally all_captions.txt."),
    prior: str = PriorOpt,
    latent: int = LatentOpt,
    hidden: int = typer.Option(512, "--hidden", min=8, help="Decoder LSTM size."),
    embed: int = typer.Option(256, "--embed", min=8, help="Word embedding size (tied with the output layer)."),
    condition: int = typer.Option(256, "--condition", min=8, help="Size of the photo's features after projection."),
    beta: float = BetaOpt,
    anneal_steps: int = AnnealOpt,
    free_bits: float = FreeBitsOpt,
    feature_std: float = typer.Option(3.0, "--feature-std", min=1e-3, help="Scale of the Gaussian likelihood of the "
                                      "reconstructed (standardised) image features (cpp; 3 was chosen on validation "
                                      "among 1, 3 and 10: at 1 the caption posterior collapses)."),
    dropout: float = typer.Option(0.3, "--dropout", min=0.0, max=0.9),
    word_dropout: float = typer.Option(0.25, "--word-dropout", min=0.0, max=0.9,
                                       help="Share of the decoder's input words replaced by <unk> in training."),
    text_share: float = typer.Option(0.25, "--text-share", min=0.0, max=0.9, help="Share of each batch drawn from "
                                     "captions of photos that are not in the folder (all_captions.txt)."),
    min_count: int = typer.Option(5, "--min-count", min=1, help="Words seen fewer times in the training text "
                                  "become <unk>."),
    max_words: int = typer.Option(20, "--max-words", min=4, max=MAX_WORDS, help="Training captions are cut here."),
    views: int = typer.Option(4, "--views", min=1, max=16, help="Crops per training photo (features computed once)."),
    weight_decay: float = typer.Option(0.0, "--weight-decay", min=0.0),
    validation: int = typer.Option(50, "--validation", min=1, help="Training-folder photos held out for validation."),
    half: bool = typer.Option(True, "--half/--float32", help="Store the weights as float16 (default: half the size; "
                              "the card's numbers are measured on the stored weights) or float32."),
    compare: Optional[str] = CompareOpt,
    models_dir: Optional[Path] = ModelsDirOpt,
    *, train,
):
    """Train a caption CVAE on photos with captions (frozen ImageNet EfficientNet-Lite0 features).

    Example: `vqtool train caption --data ../shared/data/flickr8k-1k --prior cpp --name captions-flickr`
    """

    from vqtool.training import fit

    from .task import caption_task

    baselines = compared_models(prior, compare, ARCHITECTURE, KINDS, models_dir)
    settings = dict(prior=prior, latent=latent, hidden=hidden, embed=embed, condition=condition, beta=beta,
                    anneal_steps=anneal_steps, free_bits=free_bits, feature_std=feature_std, dropout=dropout,
                    word_dropout=word_dropout, text_share=text_share, weight_decay=weight_decay, max_words=max_words)
    options = train.options()
    fit(caption_task(data, settings, min_count, views, validation, options.out, baselines, half, train.quiet), options)


def register(app: typer.Typer, train_app: typer.Typer) -> None:
    app.command("caption")(caption)
    train_command(train_app, "caption", name="caption", steps=4000, lr=1e-3, batch_size=64)(train_caption)


def caption(
    inputs: List[str] = typer.Argument(..., metavar="IMAGE...", help="Photos (any size; folders are searched for "
                                       "images); '-' reads one from stdin."),
    samples: int = typer.Option(5, "--samples", "-n", help=f"Captions per photo (1..{MAX_SAMPLES})."),
    seed: int = typer.Option(0, "--seed", help="Random seed: the same seed gives the same captions."),
    temperature: Optional[float] = typer.Option(None, "--temperature", "-t", help="Sample the words at this "
                                                "temperature (> 0) instead of decoding them (greedy or --beam)."),
    beam: int = typer.Option(1, "--beam", "-b", help=f"Beam width (1..{MAX_BEAM}). Latent models: each caption's "
                             "latent is decoded with a beam of this width (1: greedy). The deterministic model "
                             "returns the N best of a beam of width max(B, N)."),
    rank: bool = typer.Option(False, "--rank", help="Order each photo's captions by consensus (agreement with the "
                              "others, sentence BLEU-4; needs the eval extra), most typical first."),
    max_words: Optional[int] = typer.Option(None, "--max-words", help=f"Longest caption (default: the model's; at "
                                            f"most {MAX_WORDS})."),
    model: str = typer.Option(DEFAULT_MODEL, "--model", "-m", help="Caption checkpoint."),
    output: Optional[str] = typer.Option(None, "--output", "-o", help="Contact sheet (.png or .jpg): each photo "
                                         "with its captions under it; '-' writes the PNG to stdout."),
    device: str = DeviceOpt,
    models_dir: Optional[Path] = ModelsDirOpt,
    as_json: bool = typer.Option(False, "--json", help="One JSON record per photo: its captions and their "
                                 "log-probabilities."),
    quiet: bool = typer.Option(False, "--quiet", "-q"),
):
    """Write several different captions for each photo.

    Captions go to stdout, one per line (with several photos: `PHOTO<TAB>caption`). The photo is
    resized so its shorter side is 256 pixels and centre-cropped to 224x224, as the image encoder
    expects: what lies outside the central square is not seen.

    Examples:

    `vqtool caption photo.jpg -n 5`

    `vqtool caption photos/ -n 3 --rank -o sheet.png`

    `cat photo.jpg | vqtool caption - --json`
    """
    from vqtool.hub import load
    from vqtool.media import IMAGE_SUFFIXES, expand_inputs, path_key

    from .outputs import thumbnail

    if not 1 <= samples <= MAX_SAMPLES:
        raise usage(f"must lie in 1..{MAX_SAMPLES}, not {samples}", "--samples")
    if not 1 <= beam <= MAX_BEAM:
        raise usage(f"must lie in 1..{MAX_BEAM}, not {beam}", "--beam")
    if temperature is not None and not 0 < temperature <= 100:
        raise usage(f"must be above 0 (and at most 100), not {temperature}", "--temperature")
    if temperature is not None and beam > 1:
        raise usage("--temperature samples the words, --beam searches them: choose one", "--beam")
    if max_words is not None and not 1 <= max_words <= MAX_WORDS:
        raise usage(f"must lie in 1..{MAX_WORDS}, not {max_words}", "--max-words")
    json_needs_file(as_json, output)
    fmt = None
    if output is not None:
        fmt = "PNG" if output == "-" else SHEET_SUFFIXES.get(Path(output).suffix.lower())
        if fmt is None:
            raise usage(f"the contact sheet is a .png or .jpg file, not '{output}'", "--output")
        if output != "-" and path_key(output) in {path_key(i) for i in inputs if i != "-"}:
            raise usage(f"'{output}' is also an input; refusing to overwrite it", "--output")
    if rank:
        from .metrics import consensus_order  # fails now, with the install hint, if the extra is missing
    sources = expand_inputs(inputs, IMAGE_SUFFIXES)
    net = load(model, device, models_dir, expect=ARCHITECTURE)
    failures: list[str] = []
    shown, texts = [], []
    with_names = len(sources) > 1
    for start in range(0, len(sources), CHUNK):
        images, names = _read_chunk(sources[start:start + CHUNK], failures)
        if not images:
            continue
        results = net.caption(images, samples, beam, temperature, seed, max_words)
        for name, image, captions in zip(names, images, results):
            if rank:
                order = consensus_order([c for c, _ in captions])
                captions = [captions[i] for i in order]
            if as_json:
                emit_json({"input": name, "model": net.name,
                           "captions": [{"text": c, "logprob": lp} for c, lp in captions]})
            elif output != "-":
                _print_captions(name, captions, with_names)
            if output is not None and len(shown) < SHEET_MOST:
                shown.append(thumbnail(image))  # not the full photo: a folder of them would fill memory
                texts.append([c for c, _ in captions])
    if output is not None and shown:
        if len(sources) - len(failures) > SHEET_MOST and not quiet:
            note(f"the contact sheet shows the first {SHEET_MOST} photos; all are captioned on stdout")
        _write_sheet(output, fmt, shown, texts, quiet)
    if not quiet:
        done = len(sources) - len(failures)
        console.print(f"captioned {done} photo(s) with {net.name} ({KINDS.get(net.config.prior, net.config.prior)})"
                      + (f", {len(failures)} failed" if failures else ""))
    if failures:
        raise typer.Exit(1)


def _read_chunk(sources: list[str], failures: list[str]):
    from vqtool.media import read_image

    images, names = [], []
    for source in sources:
        try:
            images.append(read_image(source))
            names.append(source)
        except VqtoolError as exc:
            report(failures, source, exc)
    return images, names


def _print_captions(name: str, captions, with_names: bool) -> None:
    from vqtool.media import write_stdout

    prefix = f"{name}\t" if with_names else ""
    write_stdout("".join(f"{prefix}{text}\n" for text, _ in captions).encode())


def _write_sheet(output: str, fmt: str, images, texts, quiet: bool) -> None:
    from vqtool.media import encode_image, write_bytes

    from .outputs import contact_sheet

    write_bytes(output, encode_image(contact_sheet(images, texts), fmt))
    if not quiet and output != "-":
        console.print(f"wrote {output}")
