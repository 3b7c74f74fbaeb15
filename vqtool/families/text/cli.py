"""Text VAE commands: `embed-text`, `match`, `reconstruct-text`, `interpolate-text` and `train textvae`."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import List, Optional

import typer

from vqtool.cli.common import (DeviceOpt, ModelsDirOpt, compared_checkpoints, console, emit_json, json_needs_file,
                               note, report, train_command, usage)
from vqtool.errors import VqtoolError

from . import ARCHITECTURE, DECODERS

DEFAULT_MODEL = "text-sick"
FRACTIONS = (0.1, 0.25, 0.5, 1.0)
MAX_STEPS = 50  # interpolate-text
SentencesArg = typer.Argument(..., metavar="TEXT...", help="Sentences, one per argument; '-' reads one per line "
                                                           "from stdin.")
ModelOpt = typer.Option(DEFAULT_MODEL, "--model", "-m", help="text-sick (entailment) or text-msrp (paraphrase), or "
                                                             "a checkpoint path.")


def train_textvae(
    data: Path = typer.Option(..., "--data", help="The sentence-pairs folder (sick2014/, msrp/)."),
    task: str = typer.Option("sick", "--task", help="sick (entailment, 3 classes) or msrp (paraphrase or not)."),
    labels: float = typer.Option(1.0, "--labels", help="Share of the training pairs whose labels are used: 0.1, 0.25, "
                                                       "0.5 or 1.0 (the same pairs for every decoder)."),
    decoder: str = typer.Option("deconv", "--decoder", help="deconv (the paper's model), lstm (its baseline) or none "
                                                            "(the encoder and matcher on the labelled pairs alone)."),
    flickr: Optional[Path] = typer.Option(None, "--flickr", help="Flickr8k-style folder whose all_captions.txt adds "
                                          "unlabelled sentences (default: flickr8k-1k beside --data, if there)."),
    layers: int = typer.Option(3, "--layers", min=2, max=5, help="Convolutions (kernel 5, stride 2): 3 reads 28 "
                               "words, 4 reads 60."),
    embed: int = typer.Option(128, "--embed", min=8, help="Word embedding size (tied with the decoder's output)."),
    features: int = typer.Option(512, "--features", min=8, help="Channels of the last convolution."),
    latent: int = typer.Option(128, "--latent", min=2, help="Latent dimensions."),
    hidden: int = typer.Option(512, "--hidden", min=8, help="LSTM decoder size."),
    temperature: float = typer.Option(0.01, "--temperature", min=1e-4, help="Of the cosine word logits."),
    beta: float = typer.Option(1.0, "--beta", min=0.0, help="Final weight of the KL term."),
    anneal_steps: int = typer.Option(1500, "--anneal-steps", min=0, help="Steps over which beta grows from 0."),
    alpha: float = typer.Option(10.0, "--alpha", min=0.0, help="Weight of the matching loss."),
    dropout: float = typer.Option(0.2, "--dropout", min=0.0, max=0.9, help="On the matcher, in training."),
    unlabelled_batch: int = typer.Option(32, "--unlabelled-batch", min=1, help="Unlabelled sentences per step "
                                         "(--batch-size is labelled pairs per step)."),
    min_count: int = typer.Option(5, "--min-count", min=1, help="Words seen fewer times become <unk>."),
    weight_decay: float = typer.Option(0.0, "--weight-decay", min=0.0),
    validate_every: int = typer.Option(50, "--validate-every", min=1, help="Steps between validation checks (the "
                                       "exported weights are those of the best validation accuracy)."),
    half: bool = typer.Option(True, "--half/--float32", help="Store the weights as float16 (the card's numbers are "
                              "measured on the stored weights) or float32."),
    compare: Optional[str] = typer.Option(None, "--compare", help="Comma-separated text-VAE checkpoints of the same "
                                          "task (other decoders and label shares): their measured numbers and "
                                          "SHA-256 go into this card's tables (measured by the same code on the "
                                          "same test split; not re-run)."),
    reference: Optional[Path] = typer.Option(None, "--reference", help="bench/results/text-baselines.json (frozen "
                                             "MiniLM + logistic regression, measured by bench/bench_text_baselines.py)"
                                             ": its rows for this task go into the card."),
    models_dir: Optional[Path] = ModelsDirOpt,
    *, train,
):
    """Train the deconvolutional text VAE (Shen et al., 2018) jointly with a sentence-pair matcher.

    Example: `vqtool train textvae --data ../shared/data/sentence-pairs --task sick --labels 0.1 --name sick-10`
    """
    if task not in ("sick", "msrp"):
        raise usage(f"sick or msrp, not '{task}'", "--task")
    if labels not in FRACTIONS:
        raise usage(f"one of {', '.join(map(str, FRACTIONS))}, not {labels}", "--labels")
    if decoder not in DECODERS:
        raise usage(f"one of {', '.join(DECODERS)}, not '{decoder}'", "--decoder")
    from vqtool.training import fit  # after the checks: a usage error needs no torch

    from .task import text_task

    flickr = flickr if flickr is not None else data.parent / "flickr8k-1k"
    channels = [features // 2] + [features] * (layers - 2)  # 256, 512, 512, ... before the last (512)
    settings = dict(decoder=decoder, layers=layers, embed=embed, channels=channels, features=features,
                    latent=latent, hidden=hidden, temperature=temperature, beta=beta, anneal_steps=anneal_steps,
                    alpha=alpha, dropout=dropout, unlabelled_batch=unlabelled_batch, weight_decay=weight_decay)
    options = train.options()
    baselines = {**compared_runs(compare, task, models_dir), **reference_rows(reference, task)}
    fit(text_task(data, flickr, task, labels, settings, min_count, options.batch_size, validate_every, half,
                  train.quiet, baselines), options)


def compared_runs(compare: Optional[str], task: str, models_dir) -> dict:
    """name -> {decoder, label_fraction, sha256, metrics} of each --compare checkpoint (read, not re-run)."""
    from .card import training_summary

    out = {}
    for name, (meta, sha256) in compared_checkpoints(compare, ARCHITECTURE, models_dir, lambda c: c.get("task") == task,
                                                     f"a {task} text-VAE checkpoint").items():
        out[name] = {"decoder": meta["config"]["decoder"], "label_fraction": meta["config"]["label_fraction"],
                     "sha256": sha256,
                     "metrics": {**{k: v for k, v in meta["metrics"].items() if k not in ("baselines", "training")},
                                 "training": training_summary(meta["metrics"]["training"])}}
    return out


def reference_rows(reference: Optional[Path], task: str) -> dict:
    import json

    if reference is None:
        return {}
    try:
        data = json.loads(reference.read_text())
        return {"minilm": {"model": data["model"], **data["tasks"][task]}}
    except (OSError, ValueError, KeyError) as exc:
        raise usage(f"not a text-baselines file with a '{task}' entry ({exc})", "--reference") from None


def register(app: typer.Typer, train_app: typer.Typer) -> None:
    app.command("embed-text")(embed_text)
    app.command("match")(match)
    app.command("reconstruct-text")(reconstruct_text)
    app.command("interpolate-text")(interpolate_text)
    train_command(train_app, "textvae", name="textvae", steps=1500, lr=1e-3, batch_size=32)(train_textvae)



class Sentences:
    """Sentences from the command line (one per argument) or stdin (`-`: one per line), each with
    where it came from. Blank lines are skipped (counted); a line that is not UTF-8 is a failure of
    its own and the others still run."""

    def __init__(self, inputs: list[str], failures: list[str]):
        self.texts: list[str] = []
        self.sources: list[str] = []
        self.blank = 0
        for number, item in enumerate(inputs, 1):
            if item == "-":
                self._read_stdin(failures)
            elif item.strip():
                self.texts.append(item)
                self.sources.append(f"argument {number}")
            else:
                self.blank += 1

    def _read_stdin(self, failures: list[str]) -> None:
        for source, line in text_lines(sys.stdin.buffer.read(), "stdin", failures):
            if line.strip():
                self.texts.append(line)
                self.sources.append(source)
            else:
                self.blank += 1


def text_lines(data: bytes, name: str, failures: list[str]):
    """(`NAME line N`, text) for each line that is UTF-8 (a byte-order mark ignored); the others are
    reported, one line each, and left out."""
    for number, raw in enumerate(data.splitlines(), 1):
        source = f"{name} line {number}"
        try:
            yield source, raw.decode("utf-8").removeprefix("\ufeff")
        except UnicodeDecodeError as exc:
            report(failures, source, VqtoolError(f"not UTF-8 text (byte 0x{raw[exc.start]:02x} at column "
                                                 f"{exc.start + 1})"))


def tell_about(net, texts: list[str], sources: list[str], blank: int, quiet: bool) -> list[int]:
    """Notes, once per call, on blank inputs skipped, sentences cut and unknown words; the unknown-word
    count of each sentence."""
    from vqtool.data.text import tokenise

    from .model import too_long

    index = net.vocabulary.index
    unknown = [sum(w not in index for w in tokenise(t)) for t in texts]
    cut = [s for t, s in zip(texts, sources) if too_long(t, net.config.length)]
    length = net.config.length - 1
    if not quiet:
        if blank:
            note(f"skipped {blank} blank input(s)")
        if cut:
            note(f"{len(cut)} sentence(s) longer than {length} words were cut to fit {net.name} (first: {cut[0]})")
        if sum(unknown):
            note(f"{sum(unknown)} word(s) unknown to {net.name} were read as <unk> "
                 f"(in {sum(u > 0 for u in unknown)} sentence(s))")
    return unknown


def _load(model: str, device: str, models_dir):
    from vqtool.hub import load

    return load(model, device, models_dir, expect=ARCHITECTURE)


def embed_text(
    inputs: List[str] = SentencesArg,
    output: Optional[str] = typer.Option(None, "--output", "-o", help="vectors.npy (float32 [N, latent], one row per "
                                         "sentence in order) or vectors.jsonl (the text with its vector); '-' writes "
                                         "the .npy to stdout. Default: JSON lines on stdout."),
    model: str = ModelOpt,
    device: str = DeviceOpt,
    models_dir: Optional[Path] = ModelsDirOpt,
    as_json: bool = typer.Option(False, "--json", help="With -o FILE: print one JSON summary record."),
    quiet: bool = typer.Option(False, "--quiet", "-q"),
):
    """Sentence codes: the posterior mean of each sentence under the text VAE.

    Examples:

    `vqtool embed-text "A man is playing a guitar" "A person plays an instrument"`

    `vqtool embed-text - -o vectors.npy < sentences.txt`
    """
    import json

    import numpy as np

    from vqtool.media import write_bytes

    fmt = None if output is None else "npy" if output == "-" else Path(output).suffix.lower().lstrip(".")
    if fmt not in (None, "npy", "jsonl"):
        raise usage(f"vectors go to a .npy or .jsonl file, not '{output}'", "--output")
    json_needs_file(as_json, output)
    if as_json and output is None:
        raise usage("--json summarises a file written with -o; without -o the vectors are JSON lines already",
                    "--json")
    failures: list[str] = []
    sentences = Sentences(inputs, failures)
    net = _load(model, device, models_dir)
    unknown = tell_about(net, sentences.texts, sentences.sources, sentences.blank, quiet)
    vectors = net.embed(sentences.texts)
    lines = [json.dumps({"text": t, "source": s, "unknown_words": u, "vector": [round(float(x), 6) for x in v]})
             for t, s, u, v in zip(sentences.texts, sentences.sources, unknown, vectors)]
    if fmt == "npy":
        import io

        buffer = io.BytesIO()
        np.save(buffer, vectors.astype(np.float32))
        write_bytes(output, buffer.getvalue())
    elif fmt == "jsonl":
        write_bytes(output, "".join(line + "\n" for line in lines).encode())
    else:
        _print_lines(lines)
    if as_json:
        emit_json({"output": output, "model": net.name, "sentences": len(vectors), "dimensions": int(vectors.shape[1]),
                   "failed": failures})
    elif not quiet and output not in (None, "-"):
        console.print(f"wrote {output}: {len(vectors)} vector(s) of {vectors.shape[1]} from {net.name}")
    if failures:
        raise typer.Exit(1)


def _print_lines(lines: list[str]) -> None:
    from vqtool.media import write_stdout

    write_stdout("".join(line + "\n" for line in lines).encode())


def label_names(net) -> list[str]:
    """The matcher's classes as the CLI prints them: lower case (entailment, paraphrase, ...)."""
    return [label.lower() for label in net.config.labels]


def match(
    sentences: Optional[List[str]] = typer.Argument(None, metavar="[A B]", help="Two sentences."),
    pairs: Optional[str] = typer.Option(None, "--pairs", "-p", help="A file of pairs, two tab-separated sentences per "
                                        "line ('-': stdin); one result line per pair."),
    model: str = ModelOpt,
    device: str = DeviceOpt,
    models_dir: Optional[Path] = ModelsDirOpt,
    as_json: bool = typer.Option(False, "--json", help="One JSON record per pair: the label, its probability and "
                                 "every class's."),
    quiet: bool = typer.Option(False, "--quiet", "-q"),
):
    """Does B follow from A? The label of a sentence pair and its probability.

    text-sick says entailment, neutral or contradiction (SICK); text-msrp paraphrase or not paraphrase
    (MSRP). Prints `LABEL<TAB>PROBABILITY`, one line per pair.

    Examples:

    `vqtool match "A man is playing a guitar" "A person plays an instrument"`

    `vqtool match --pairs pairs.tsv -m text-msrp --json`
    """
    import json

    if (pairs is None) == (not sentences):
        raise usage("give two sentences, or --pairs FILE (not both)", "--pairs")
    if sentences and len(sentences) != 2:
        raise usage(f"match takes two sentences, not {len(sentences)} (more pairs: --pairs FILE)")
    failures: list[str] = []
    if sentences:
        firsts, seconds, sources = [sentences[0]], [sentences[1]], ["arguments"]
    else:
        firsts, seconds, sources = read_pairs_file(pairs, failures)
    net = _load(model, device, models_dir)
    tell_about(net, firsts + seconds, sources + sources, 0, quiet)
    probabilities = net.match(firsts, seconds) if firsts else []
    names = label_names(net)
    lines = []
    for a, b, source, p in zip(firsts, seconds, sources, probabilities):
        best = int(p.argmax())
        if as_json:
            lines.append(json.dumps({"a": a, "b": b, "source": source, "label": names[best],
                                     "probability": round(float(p[best]), 4),
                                     "probabilities": {n: round(float(x), 4) for n, x in zip(names, p)}}))
        else:
            lines.append(f"{names[best]}\t{float(p[best]):.3f}")
    _print_lines(lines)
    if failures:
        raise typer.Exit(1)


def read_pairs_file(path: str, failures: list[str]) -> tuple[list[str], list[str], list[str]]:
    """Two tab-separated sentences per line; a line without exactly two non-blank columns, or not UTF-8,
    is reported and skipped; blank lines are skipped."""
    from vqtool.media import read_bytes

    name = "stdin" if path == "-" else path
    try:
        data = sys.stdin.buffer.read() if path == "-" else read_bytes(path)
    except VqtoolError as exc:
        report(failures, name, exc)
        return [], [], []
    firsts, seconds, sources = [], [], []
    for source, line in text_lines(data, name, failures):
        if not line.strip():
            continue
        columns = line.split("\t")
        if len(columns) != 2 or not all(c.strip() for c in columns):
            report(failures, source, VqtoolError(f"expected two tab-separated sentences, found {len(columns)} "
                                                 "column(s)" + (" (one empty)" if len(columns) == 2 else "")))
            continue
        firsts.append(columns[0])
        seconds.append(columns[1])
        sources.append(source)
    return firsts, seconds, sources


def _decoder_needed(net) -> None:
    if net.config.decoder == "none":
        raise VqtoolError(f"{net.name} was trained without a decoder (supervised only): it cannot write sentences")


def reconstruct_text(
    inputs: List[str] = SentencesArg,
    model: str = ModelOpt,
    device: str = DeviceOpt,
    models_dir: Optional[Path] = ModelsDirOpt,
    as_json: bool = typer.Option(False, "--json", help="One JSON record per sentence: input and reconstruction."),
    quiet: bool = typer.Option(False, "--quiet", "-q"),
):
    """Each sentence through its code and back: what the code carries (one line per sentence).

    Words the model does not know come back as <unk>; punctuation and case are not kept.

    Example: `vqtool reconstruct-text "a dog is running through the grass"`
    """
    import json

    failures: list[str] = []
    sentences = Sentences(inputs, failures)
    net = _load(model, device, models_dir)
    _decoder_needed(net)
    tell_about(net, sentences.texts, sentences.sources, sentences.blank, quiet)
    out = net.reconstruct(sentences.texts) if sentences.texts else []
    _print_lines([json.dumps({"text": t, "source": s, "reconstruction": r}) if as_json else r
                  for t, s, r in zip(sentences.texts, sentences.sources, out)])
    if failures:
        raise typer.Exit(1)


def interpolate_text(
    first: str = typer.Argument(..., metavar="A"),
    second: str = typer.Argument(..., metavar="B"),
    steps: int = typer.Option(5, "--steps", "-n", help=f"Sentences from A's code to B's, both ends included "
                              f"(2..{MAX_STEPS})."),
    model: str = ModelOpt,
    device: str = DeviceOpt,
    models_dir: Optional[Path] = ModelsDirOpt,
    as_json: bool = typer.Option(False, "--json", help="One JSON record: the weights and the sentences."),
    quiet: bool = typer.Option(False, "--quiet", "-q"),
):
    """Walk the straight line between two sentences' codes and decode each step: is the space smooth?

    Example: `vqtool interpolate-text "a dog runs on the beach" "two men play football" --steps 5`
    """

    if not 2 <= steps <= MAX_STEPS:
        raise usage(f"must lie in 2..{MAX_STEPS}, not {steps}", "--steps")
    blank = [name for name, text in (("A", first), ("B", second)) if not text.strip()]
    if blank:
        raise usage(f"{' and '.join(blank)} is blank: give two sentences")
    net = _load(model, device, models_dir)
    _decoder_needed(net)
    tell_about(net, [first, second], ["A", "B"], 0, quiet)
    out = net.interpolate(first, second, steps)
    if as_json:
        emit_json({"a": first, "b": second, "model": net.name,
                   "steps": [{"weight": round(i / (steps - 1), 4), "text": t} for i, t in enumerate(out)]})
    else:
        _print_lines(out)
