"""The generic code-file commands: `encode`, `decode`, `inspect`, `compare`. Media go to the family
codec that reads them (images: vqtool/families/image, audio: vqtool/families/speech), found through
the registry by the media kind of each input or record."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import List, Optional

import typer

from .. import registry
from ..errors import VqtoolError
from .common import (CodeRequest, DeviceOpt, ModelsDirOpt, any_folder, console, emit_json, json_needs_file, note,
                     record_stem, report, usage)


def _split_media(items: list[str], quiet: bool) -> tuple[list[str], str, bool, list[str]]:
    """`encode`'s inputs, their media kind (image or audio), whether a folder was named, and each input's
    name relative to the folder it was found in. Files named on the command line must be of one kind;
    files of the other kind found inside folders are skipped with a note."""
    from collections import Counter

    from ..audio import AUDIO_SUFFIXES
    from ..codearrays import relative_names
    from ..codefiles import media_kind
    from ..media import IMAGE_SUFFIXES, expand_inputs, read_bytes

    if items.count("-") > 1:
        raise usage("stdin ('-') can be read only once")
    tagged = []  # (source, media kind, from a folder)
    roots = {}  # source -> the folder it was found in
    for item in items:
        folder = item != "-" and Path(item).is_dir()
        for source in expand_inputs([item], IMAGE_SUFFIXES | AUDIO_SUFFIXES):
            tagged.append((source, media_kind(source, read_bytes(source) if source == "-" else None), folder))
            if folder:
                roots.setdefault(source, item)
    named = {kind for _, kind, folder in tagged if not folder}
    if len(named) > 1:
        raise usage("encode images and audio in separate calls")
    # named files decide; in folders alone, the majority does (a tie goes to images)
    kind = named.pop() if named else ("audio" if Counter(k for _, k, _ in tagged)["audio"] * 2 > len(tagged)
                                      else "image")
    skipped = [s for s, k, _ in tagged if k != kind]
    if skipped and not quiet:
        note(f"skipping {len(skipped)} {'image' if kind == 'audio' else 'audio'} file(s) found in folders (first: "
             f"{skipped[0]}); encode them in a separate call")
    sources = [s for s, k, _ in tagged if k == kind]
    return sources, kind, any(f for _, _, f in tagged), relative_names(sources, [roots.get(s) for s in sources])


def encode(
    inputs: List[str] = typer.Argument(..., metavar="INPUT", help="Image or audio files or folders; '-' reads one from stdin."),
    model: Optional[str] = typer.Option(None, "--model", "-m", help="Checkpoint name or path (default: photos for "
                                                                    "images, cifar10 for images of at most 32x32 "
                                                                    "pixels and for codes.npz, speech for audio)."),
    output: Optional[str] = typer.Option(None, "--output", "-o",
                                         help="File, folder (for many inputs), '-' for stdout, or NAME.npz: the codes "
                                              "of all images as one array (docs/codes-npz.md). "
                                              "Default: INPUT with the .vqc suffix."),
    batch_size: int = typer.Option(64, "--batch-size", min=1, help="Images per model call."),
    device: str = DeviceOpt,
    models_dir: Optional[Path] = ModelsDirOpt,
    compress: bool = typer.Option(False, "--compress", help="Range-code the codes: under the photo model's context "
                                                            "model (any size), or cifar10's learned prior (small "
                                                            "images; decoding is sequential)."),
    quality: Optional[int] = typer.Option(None, "--quality", min=1, help="Photo model: residual stages to keep, "
                                                                         "1 (smallest) to 8 (best, the default); "
                                                                         "decoding needs no option."),
    as_json: bool = typer.Option(False, "--json", help="One JSON record per output on stdout."),
    quiet: bool = typer.Option(False, "--quiet", "-q"),
):
    """Encode images or audio to .vqc code files.

    Images of any size are accepted and decoding restores the exact original size. Photographs go to
    the `photos` model (8 residual code grids of ceil(H/8) x ceil(W/8); `--quality q` keeps the first
    q); images of at most 32x32 pixels to `cifar10` (one grid of ceil(H/4) x ceil(W/4)), unless
    --model names one. Alpha is composited on white.

    Audio (WAV, FLAC, OGG; recognised by suffix, or by content on stdin) becomes 16 kHz mono and one
    code per 20 ms; the record keeps the sample rate, length and the speaker's voice.

    Examples:

    `vqtool encode photo.png`  (writes photo.vqc)

    `vqtool encode shots/ -o codes/`

    `vqtool encode a.png b.png -o both.vqc`  (one file, two records)

    `vqtool encode photo.png -o - | vqtool decode - -o back.png`

    `vqtool encode photo.jpg --compress --quality 4`  (range-coded, 4 of 8 stages)

    `vqtool encode images/ -o codes.npz`  (one array for a whole dataset: codes, names, sizes)

    `vqtool encode speech.wav -o - | vqtool decode - --to spk3 -o other-voice.wav`
    """
    from ..codearrays import SUFFIX

    json_needs_file(as_json, output)
    sources, kind, from_folder, names = _split_media(inputs, quiet)
    if output is not None and output.lower().endswith(SUFFIX):
        if kind != "image":
            raise usage("a codes.npz holds image code grids; encode audio to .vqc files", "--output")
        if compress:
            raise usage("a codes.npz holds the codes themselves; --compress writes range-coded .vqc files",
                        "--compress")
        if Path(output).is_dir():
            raise usage(f"'{output}' is a folder; a codes.npz is one file", "--output")
    family = registry.for_media(kind)
    if quality is not None and kind != "image":
        raise usage("--quality applies to images (the photo model)", "--quality")
    request = CodeRequest(model or family.media[kind].default_model, output, device, models_dir, as_json, quiet,
                          from_folder, tuple(sources), batch_size=batch_size, compress=compress, given=tuple(inputs),
                          names=tuple(names), model_given=model is not None, quality=quality)
    family.module("cli").encode_media(sources, request)


def _records(source: str):
    """(source, index, CodeFile) for every record of one input ('-' streams stdin)."""
    import io

    from ..codes import iter_records
    from ..media import read_bytes, stdin_stream

    stream = stdin_stream() if source == "-" else io.BytesIO(read_bytes(source))
    yield from ((source, i, r) for i, r in enumerate(iter_records(stream, "<stdin>" if source == "-" else source)))


def _array_rows(source: str, data: bytes | None, cache) -> list:
    """(source, index, CodeFile, output stem, name in messages) for every row of a codes.npz. The array
    is checked as a whole first (format, names, length, checkpoint), so that a foreign or truncated
    file is one error, not one per row. Rows decode to their stored relative path (folders kept)."""
    from ..codearrays import open_code_array
    from ..codes import CodeFile

    label = "<stdin>" if source == "-" else source
    array = open_code_array(label, data)
    try:
        meta = array.meta
        entries = []
        for start, codes in array.chunks():
            for offset, grid in enumerate(codes):
                row = start + offset
                name = array.names[row]
                height, width = (int(v) for v in array.sizes[row])
                record = CodeFile(grid, meta["model"], meta["checkpoint_sha256"], meta["codebook_size"],
                                  {"kind": "image", "height": height, "width": width, "channels": meta["channels"]})
                if row == 0:
                    cache.for_record(record, label)  # the checkpoint and grid, once for the whole array
                stem = name.rsplit(".", 1)[0] if "." in name.rsplit("/", 1)[-1] else name
                entries.append((source, row, record, stem, f"{label}:{name}"))
        return entries
    finally:
        array.close()


def decode(
    inputs: List[str] = typer.Argument(..., metavar="CODES", help=".vqc files or folders, codes.npz arrays; '-' reads "
                                                                  "records (or an array) from stdin."),
    output: Optional[str] = typer.Option(None, "--output", "-o",
                                         help="File (suffix picks the format), folder, or '-' for stdout. "
                                              "Default: INPUT.decoded.png beside each input."),
    model: Optional[str] = typer.Option(None, "--model", "-m", help="Override the model named in the header."),
    fmt: str = typer.Option("png", "--format", help="Format when the output has no suffix (stdout, folders): an "
                                                    "image format, or wav/flac for audio (audio defaults to wav)."),
    to: Optional[str] = typer.Option(None, "--to", help="Audio: decode in this built-in voice (spkN or a name)."),
    to_voice: Optional[str] = typer.Option(None, "--to-voice", help="Audio: decode in the voice of this reference clip."),
    vocoder: Optional[str] = typer.Option(None, "--vocoder", help="Audio: 'neural' (the checkpoint's vocoder head, "
                                          "the default where it has one) or 'griffin-lim' (for comparison)."),
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

    `vqtool decode codes.npz -o images/`  (every row, under its stored relative path)
    """
    from collections import Counter

    from ..audio import OUTPUT_FORMATS
    from ..codearrays import is_code_array
    from ..codefiles import ModelCache
    from ..media import IMAGE_FORMATS, expand_inputs, peek_stdin, read_bytes

    json_needs_file(as_json, output)
    if "." + fmt.lower() not in {**IMAGE_FORMATS, **OUTPUT_FORMATS}:
        known = sorted({**IMAGE_FORMATS, **OUTPUT_FORMATS})
        raise usage(f"unknown format '{fmt}' (use one of {', '.join(s[1:] for s in known)})", "--format")
    sources = expand_inputs(inputs, {".vqc"})
    cache = ModelCache(model, device, models_dir)
    failures: list[str] = []
    pending, rows = [], []
    for source in sources:
        try:
            # stdin: sniffed without consuming it (a stream of .vqc records is read as it comes)
            if is_code_array(source, peek_stdin(4) if source == "-" else None):
                rows.extend(_array_rows(source, read_bytes(source) if source == "-" else None, cache))
            else:
                pending.extend(_records(source))
        except VqtoolError as exc:
            report(failures, source, exc)
    counts = Counter(source for source, _, _ in pending)
    # (source, index, record, output stem, name in messages), grouped by media kind
    by_kind: dict[str, list] = {"image": rows} if rows else {}
    for source, index, record in pending:
        by_kind.setdefault(record.media["kind"], []).append(
            (source, index, record, record_stem(source, index, record, counts[source]),
             source if counts[source] == 1 else f"{source} (record {index + 1})"))
    if (to or to_voice) and "audio" not in by_kind:
        raise usage("--to and --to-voice choose the voice of audio records; these codes hold none", "--to")
    if (to or to_voice or vocoder) and set(by_kind) - {"audio"} and not quiet:
        note("--to/--to-voice/--vocoder apply to the audio records only")
    request = CodeRequest(None, output, device, models_dir, as_json, quiet, any_folder(inputs), tuple(sources),
                          fmt=fmt, to=to, to_voice=to_voice, vocoder=vocoder, columns=columns)
    written = 0
    for kind in sorted(by_kind):  # audio before image
        written += registry.for_media(kind).module("cli").decode_media(by_kind[kind], request, cache, failures)
    if not quiet:
        console.print(f"decoded {written} record(s)" + (f", {len(failures)} failed" if failures else ""))
    if failures:
        raise typer.Exit(1)


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

    from ..codes import bits_per_code, entropy_bits
    from ..media import write_stdout

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
            report(failures, source, exc)
    if failures:
        raise typer.Exit(1)


def compare(
    reference: str = typer.Argument(..., help="Original image."),
    other: str = typer.Argument(..., help="Image to compare with it (e.g. a reconstruction)."),
    as_json: bool = typer.Option(False, "--json", help="One JSON record."),
):
    """PSNR and MSE between two images of the same size (pixels in [0, 1]).

    Example: `vqtool compare photo.png photo.decoded.png`
    """
    import numpy as np

    from ..evaluation import psnr_db
    from ..media import image_to_array, read_image

    a, b = (image_to_array(read_image(path)).astype(np.float64) / 255 for path in (reference, other))
    if a.shape != b.shape:
        raise VqtoolError(f"size {b.shape[1]}x{b.shape[0]} differs from {reference}'s {a.shape[1]}x{a.shape[0]}", other)
    mse = float(((a - b) ** 2).mean())
    psnr = float("inf") if mse == 0 else psnr_db(mse)
    if as_json:
        emit_json({"reference": reference, "other": other, "mse": mse, "psnr_db": psnr})
    else:
        sys.stdout.write(f"PSNR {psnr:.2f} dB  (MSE {mse:.6f}, {a.shape[1]}x{a.shape[0]})\n")


