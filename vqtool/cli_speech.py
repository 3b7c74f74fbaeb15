"""Speech commands: `convert-voice`, `speakers` and the speech training commands; `encode` and
`decode` hand audio to the helpers here. Registered on the one `vqtool` app by cli.py."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from .cli import (CheckpointOpt, DeviceOpt, ModelsDirOpt, OutOpt, ResumeOpt, SeedOpt, TimeLimitOpt, app,
                  console, emit_json, train_app, train_options, usage)
from .errors import VqtoolError

SpeechDataOpt = typer.Option(..., "--data", help="Speech corpus folder (speechocean, fsdd or SPEAKER/*.wav); "
                                                 "repeat for several. Only their train splits are used.")


def _speech_info(data: list[Path], clips) -> dict:
    from .data import fingerprint

    return {"train_data": ", ".join(map(str, data)), "train_split": "train", "train_items": len(clips),
            "train_sha256": ",".join(fingerprint(d)[:16] for d in data),
            "eval_split": "test"}


@train_app.command("audio-classifier")
def train_audio_classifier(
    data: List[Path] = SpeechDataOpt,
    label: str = typer.Option("speaker", "--label", help="What to classify: speaker or digit (FSDD)."),
    name: str = typer.Option("speech-speakers", "--name", help="Checkpoint name."),
    out: Optional[Path] = OutOpt,
    steps: int = typer.Option(3_000, "--steps", min=1),
    batch_size: int = typer.Option(64, "--batch-size", min=1),
    lr: float = typer.Option(2e-3, "--lr"),
    seed: int = SeedOpt,
    device: str = DeviceOpt,
    resume: bool = ResumeOpt,
    width: int = typer.Option(128, "--width", help="Channels of the convolutions."),
    embedding: int = typer.Option(128, "--embedding", help="Embedding size."),
    warp: float = typer.Option(0.0, "--warp", help="Vocal tract length perturbation: stretch the mel axis by a "
                                                   "random factor in 1 ± WARP (0.2 makes a digit judge robust to "
                                                   "voices it never heard)."),
    checkpoint_every: int = CheckpointOpt,
    time_limit: Optional[float] = TimeLimitOpt,
    quiet: bool = typer.Option(False, "--quiet", "-q"),
):
    """Train a speaker or digit classifier on speech: the speech model's speaker encoder, or a judge.

    Example: `vqtool train audio-classifier --data ../shared/data/fsdd --data ../shared/data/speechocean --label speaker --name speech-speakers`
    """
    from .audioclass import AudioClassifierConfig, AudioClassifierTask
    from .speechdata import load_waves, speakers_of, split_clips
    from .training import fit

    if label not in ("speaker", "digit"):
        raise usage("use speaker or digit", "--label")
    train, test = split_clips(data)
    if label == "digit":
        train = [c for c in train if c.digit is not None]
        if not train:
            raise VqtoolError("no digit-labelled clips (FSDD) in the data")
        classes = [str(d) for d in range(10)]
        labels = [c.digit for c in train]
        held = [c for c in test if c.digit is not None]
        held_out = (load_waves(held), [c.digit for c in held]) if held else None
        unseen = None
    else:
        classes = speakers_of(train)
        labels = [classes.index(c.speaker) for c in train]
        held = [c for c in test if c.speaker in classes]
        others = [c for c in test if c.speaker not in classes]
        held_out = (load_waves(held), [classes.index(c.speaker) for c in held]) if held else None
        unseen = (load_waves(others), [c.speaker for c in others]) if others else None
    if not quiet:
        console.print(f"{len(train)} training clips, {len(classes)} classes")
    config = AudioClassifierConfig(width=width, embedding=embedding, label=label, classes=classes)
    task = AudioClassifierTask(config, load_waves(train), labels, held_out, unseen, _speech_info(data, train), warp)
    fit(task, train_options(name, out, steps, batch_size, lr, seed, device, resume, quiet, time_limit, checkpoint_every))


@train_app.command("speech")
def train_speech(
    data: List[Path] = SpeechDataOpt,
    speaker_encoder: str = typer.Option(..., "--speaker-encoder", help="A classifier-audio checkpoint trained "
                                                                       "on speakers (its embedding is the voice)."),
    speaker_judge: Optional[str] = typer.Option(None, "--speaker-judge", help="Speaker classifier for the evaluation."),
    digit_judge: Optional[str] = typer.Option(None, "--digit-judge", help="Digit classifier for the evaluation."),
    eval_clips: int = typer.Option(100, "--eval-clips", help="Test clips per evaluation set."),
    name: str = typer.Option("speech", "--name", help="Checkpoint name."),
    out: Optional[Path] = OutOpt,
    steps: int = typer.Option(6_000, "--steps", min=1),
    batch_size: int = typer.Option(32, "--batch-size", min=1),
    lr: float = typer.Option(1e-3, "--lr"),
    seed: int = SeedOpt,
    device: str = DeviceOpt,
    resume: bool = ResumeOpt,
    hidden: int = typer.Option(256, "--hidden"),
    num_codes: int = typer.Option(512, "--codes", help="Codebook size K."),
    embedding_dim: int = typer.Option(64, "--embedding-dim"),
    griffin_lim_iterations: int = typer.Option(16, "--griffin-lim-iterations", min=1,
                                               help="Phase-reconstruction iterations when decoding (speed/quality)."),
    checkpoint_every: int = CheckpointOpt,
    time_limit: Optional[float] = TimeLimitOpt,
    quiet: bool = typer.Option(False, "--quiet", "-q"),
):
    """Train the speech VQ-VAE (codes every 20 ms, a speaker-conditioned decoder).

    Example: `vqtool train speech --data ../shared/data/fsdd --data ../shared/data/speechocean --speaker-encoder speech-speakers`
    """
    import numpy as np

    from .hub import load
    from .speech import SpeechConfig
    from .speechdata import load_waves, speakers_of, split_clips
    from .speechtask import SpeechTask
    from .training import fit

    encoder = load(speaker_encoder, "cpu", expect="classifier-audio")
    train, test = split_clips(data)
    speakers = speakers_of(train)
    rng = np.random.default_rng(seed)
    seen = [c for c in test if c.speaker in speakers and c.digit is not None]
    unseen = [c for c in test if c.speaker not in speakers]
    pick = lambda clips: [clips[i] for i in sorted(rng.choice(len(clips), min(eval_clips, len(clips)),  # noqa: E731
                                                               replace=False))] if clips else []
    evaluation = {"fsdd_test": pick(seen), "unseen_test": pick(unseen),
                  "speaker_judge": load(speaker_judge, "cpu", expect="classifier-audio") if speaker_judge else None,
                  "digit_judge": load(digit_judge, "cpu", expect="classifier-audio") if digit_judge else None}
    if not evaluation["fsdd_test"] or not evaluation["unseen_test"]:
        evaluation = None
    config = SpeechConfig(hidden=hidden, num_codes=num_codes, embedding_dim=embedding_dim, speakers=speakers,
                          griffin_lim_iterations=griffin_lim_iterations,
                          speaker_encoder={**encoder.metadata["config"]})
    if not quiet:
        console.print(f"{len(train)} training clips from {len(speakers)} speakers")
    info = {**_speech_info(data, train), "speaker_encoder": {"name": encoder.name, "sha256": encoder.sha256},
            **({"judges": {k: {"name": evaluation[k].name, "sha256": evaluation[k].sha256}
                           for k in ("speaker_judge", "digit_judge") if evaluation[k] is not None}}
               if evaluation else {})}
    task = SpeechTask(config, train, load_waves(train), encoder, evaluation, info)
    fit(task, train_options(name, out, steps, batch_size, lr, seed, device, resume, quiet, time_limit, checkpoint_every))


# --- codes and conversion ------------------------------------------------------------------------------
def _load_speech(model: str, device: str, models_dir):
    from .hub import load

    return load(model, device, models_dir, expect="vqvae-speech")


def resolve_voice(net, to: Optional[str], to_voice: Optional[str]):
    """The target voice: a built-in speaker (--to) or the voice of a reference clip (--to-voice)."""
    from .audio import read_audio

    if to and to_voice:
        raise usage("give --to or --to-voice, not both", "--to")
    if to:
        return net.voice(to)
    if to_voice:
        wave, _ = read_audio(to_voice)
        return net.voice_of(wave, to_voice)
    return None


def encode_audio(sources: list[str], model: str, output: Optional[str], device: str, models_dir, as_json: bool,
                 quiet: bool, from_folder: bool = False) -> None:
    """`vqtool encode` for audio: one record per input, codes streamed chunk by chunk."""
    import numpy as np

    from .audio import SAMPLE_RATE, audio_source
    from .cli import RecordSink, _report
    from .codes import MAX_AUDIO_SECONDS, CodeFile
    from .speech import SILENCE_RMS, voice_to_text

    net = _load_speech(model, device, models_dir)
    sink = RecordSink(output, sources, quiet, from_folder)
    failures: list[str] = []
    for index, source in enumerate(sources):
        try:
            info, open_blocks = audio_source(source)
            if info.seconds > MAX_AUDIO_SECONDS:  # its record could not be read back
                raise VqtoolError(f"{info.seconds / 3600:.1f} hours of audio; a .vqc record holds at most "
                                  f"{MAX_AUDIO_SECONDS // 3600} (split the file, or use convert-voice, which streams)",
                                  source)
            codes = np.concatenate(list(net.encode_stream(open_blocks))).astype(np.int64)
            head, kept = [], 0  # the first 30 s, for the voice embedding
            for block in open_blocks():
                head.append(block[: 30 * SAMPLE_RATE - kept])
                kept += len(head[-1])
                if kept >= 30 * SAMPLE_RATE:
                    break
            start = np.concatenate(head)
            media = {"kind": "audio", "sample_rate": info.sample_rate, "samples": info.frames,
                     "code_rate": SAMPLE_RATE / net.config.samples_per_code}
            extra = {}
            if float(np.sqrt(np.mean(start.astype(np.float64) ** 2))) >= SILENCE_RMS:
                voice = net.speaker_encoder.embed([start])[0]
                media["speaker"] = net.nearest_speaker(voice)
                extra["voice"] = voice_to_text(voice)
            media.update(sink.name_of(index))
            data = CodeFile(codes, net.name, net.sha256, net.config.num_codes, media, extra).to_bytes()
            sink.put(index, data)
        except VqtoolError as exc:
            _report(failures, source, exc)
            continue
        if as_json:
            emit_json({"input": source, "output": sink.targets[index], "model": net.name, "codes": int(codes.size),
                       "seconds": round(info.seconds, 3), "sample_rate": info.sample_rate,
                       "speaker": media.get("speaker"), "bytes": len(data)})
    sink.close(failures)
    if not quiet:
        console.print(f"encoded {len(sources) - len(failures)} audio file(s) with {net.name}"
                      + (f", {len(failures)} failed" if failures else ""))
    if failures:
        raise typer.Exit(1)


def decode_audio(pending, output: Optional[str], cache, to: Optional[str], to_voice: Optional[str], fmt: str,
                 as_json: bool, failures: list[str], inputs: list[str], quiet: bool, from_folder: bool = False) -> int:
    """`vqtool decode` for audio records (source, index, record, output stem, name in messages); several
    into one audio file are joined."""
    import numpy as np

    from .audio import OUTPUT_FORMATS, SAMPLE_RATE, AudioWriter
    from .cli import Outputs, _report
    from .media import STDIO
    from .speech import voice_from_text

    fmt = fmt.lower() if "." + fmt.lower() in OUTPUT_FORMATS else "wav"
    join = len(pending) > 1 and output is not None and (output == STDIO or Path(output).suffix.lower() in OUTPUT_FORMATS)
    outputs = Outputs(output, 1 if join else len(pending), f".{fmt}" if output is not None else f".decoded.{fmt}",
                      inputs, quiet, from_folder)
    jobs, voices = [], {}
    for source, index, record, stem, label in pending:
        try:
            net = cache.for_record(record, label)
            if id(net) not in voices:  # a reference clip is read once, not once per record
                voices[id(net)] = resolve_voice(net, to, to_voice)
            voice = voices[id(net)]
            if voice is None:
                if "voice" not in record.extra:
                    raise VqtoolError("record carries no voice (silent input?); pass --to or --to-voice", label)
                voice = voice_from_text(record.extra["voice"], net.speaker_table.shape[1], label)
            target = output if join else outputs.path_for(source, stem)
            jobs.append((source, index, record, net, voice, target))
        except VqtoolError as exc:
            _report(failures, label, exc)

    def write(writer, net, record, voice):
        rate = record.media["sample_rate"]
        left = record.media["samples"] * SAMPLE_RATE // rate or None  # at 16 kHz, before resampling
        for block in net.decode_stream(iter([np.asarray(record.codes, np.float32)]), voice):
            block = block[:left] if left is not None else block
            if left is not None:
                left -= len(block)
            writer.write(block)

    written = 0
    if join and jobs:
        rate = jobs[0][2].media["sample_rate"]
        try:
            with AudioWriter(output, rate, OUTPUT_FORMATS["." + fmt]) as writer:
                for _, _, record, net, voice, _ in jobs:
                    write(writer, net, record, voice)
        except VqtoolError as exc:
            _report(failures, output, exc)
            return 0
        written = len(jobs)
        if as_json:
            emit_json({"output": output, "records": written, "sample_rate": rate, "samples": writer.written})
        return written
    for source, index, record, net, voice, target in jobs:
        try:
            rate = record.media["sample_rate"]
            with AudioWriter(target, rate, OUTPUT_FORMATS["." + fmt]) as writer:
                write(writer, net, record, voice)
        except VqtoolError as exc:
            _report(failures, source, exc)
            continue
        written += 1
        if as_json:
            emit_json({"input": source, "record": index, "output": target, "model": net.name,
                       "sample_rate": rate, "samples": writer.written})
    return written


@app.command("convert-voice")
def convert_voice(
    inputs: List[str] = typer.Argument(..., metavar="INPUT", help="Audio files or folders (WAV, FLAC, OGG); '-' is stdin."),
    to: Optional[str] = typer.Option(None, "--to", help="Built-in voice: spkN or a name (see `vqtool speakers`)."),
    to_voice: Optional[str] = typer.Option(None, "--to-voice", help="Reference clip of any voice (zero-shot, >= 0.5 s)."),
    output: Optional[str] = typer.Option(None, "--output", "-o", help="File (.wav or .flac), folder, or '-' for stdout "
                                                                      "(WAV). Default: INPUT.converted.wav."),
    model: str = typer.Option("speech", "--model", "-m", help="Speech checkpoint name or path."),
    device: str = DeviceOpt,
    models_dir: Optional[Path] = ModelsDirOpt,
    as_json: bool = typer.Option(False, "--json", help="One JSON record per output on stdout."),
    quiet: bool = typer.Option(False, "--quiet", "-q"),
):
    """Say the same words in another voice: encode to codes, decode with the target voice.

    Files are streamed in 10 s chunks (memory stays flat for hours of audio); the output keeps the
    input's sample rate and length.

    Examples:

    `vqtool convert-voice a.wav --to spk3 -o b.wav`

    `vqtool convert-voice a.wav --to-voice someone.flac -o b.wav`

    `cat a.wav | vqtool convert-voice - --to george -o - > b.wav`
    """
    from .audio import AUDIO_SUFFIXES, AudioWriter, audio_source
    from .cli import Outputs, _report, any_folder
    from .media import expand_inputs

    if not to and not to_voice:
        raise usage("say which voice: --to SPEAKER or --to-voice REFERENCE.wav", "--to")
    if as_json and output == "-":
        raise usage("--json prints records on stdout, so it needs -o to a file or folder", "--json")
    sources = expand_inputs(inputs, AUDIO_SUFFIXES)
    net = _load_speech(model, device, models_dir)
    voice = resolve_voice(net, to, to_voice)
    outputs = Outputs(output, len(sources), ".wav" if output is not None else ".converted.wav", sources, quiet,
                      any_folder(inputs))
    failures: list[str] = []
    for source, target in zip(sources, outputs.plan(sources)):
        try:
            info, open_blocks = audio_source(source)
            with AudioWriter(target, info.sample_rate) as writer:
                for block in net.convert_stream(open_blocks, voice):
                    writer.write(block)
        except VqtoolError as exc:
            _report(failures, source, exc)
            continue
        if as_json:
            emit_json({"input": source, "output": target, "model": net.name, "to": to or to_voice,
                       "seconds": round(info.seconds, 3), "sample_rate": info.sample_rate})
    if not quiet:
        console.print(f"converted {len(sources) - len(failures)} file(s) to {to or to_voice}"
                      + (f", {len(failures)} failed" if failures else ""))
    if failures:
        raise typer.Exit(1)


@app.command()
def speakers(
    model: str = typer.Option("speech", "--model", "-m", help="Speech checkpoint name or path."),
    models_dir: Optional[Path] = ModelsDirOpt,
    as_json: bool = typer.Option(False, "--json", help="One JSON object on stdout."),
):
    """List a speech model's built-in voices (use them as `--to spkN` or `--to NAME`)."""
    import sys

    from .hub import describe

    info = describe(model, models_dir)
    if info["architecture"] != "vqvae-speech":
        raise VqtoolError(f"is a {info['architecture']} checkpoint; this needs a vqvae-speech one", model)
    names = info["config"]["speakers"]
    if as_json:
        emit_json({"model": info["name"], "speakers": [{"index": i, "id": f"spk{i}", "name": n}
                                                       for i, n in enumerate(names)]})
        return
    sys.stdout.write("".join(f"spk{i}\t{n}\n" for i, n in enumerate(names)))
