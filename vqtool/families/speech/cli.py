"""Speech commands: `convert-voice`, `speakers`, `train speech`, and the audio half of `encode` / `decode`."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from vqtool.cli.common import (CodeRequest, DeviceOpt, ModelsDirOpt, Outputs, RecordSink, any_folder, console,
                               emit_json, json_needs_file, note, report, require_eval_extra, train_command, usage)
from vqtool.errors import VqtoolError

from . import ARCHITECTURE

SpeechDataOpt = typer.Option(..., "--data", help="Speech corpus folder (speechocean, fsdd or SPEAKER/*.wav); "
                                                 "repeat for several. Only their train splits are used.")


def train_speech(
    data: List[Path] = SpeechDataOpt,
    speaker_encoder: Optional[str] = typer.Option(None, "--speaker-encoder", help="A classifier-audio checkpoint "
                                                  "trained on speakers (its embedding is the voice); needed to train."),
    speaker_judge: Optional[str] = typer.Option(None, "--speaker-judge", help="Speaker classifier for the evaluation."),
    digit_judge: Optional[str] = typer.Option(None, "--digit-judge", help="Digit classifier for the evaluation."),
    eval_clips: int = typer.Option(100, "--eval-clips", help="Test clips per evaluation set."),
    independent: bool = typer.Option(True, "--independent-judges/--no-independent-judges", help="Also judge by "
                                     "Resemblyzer's pretrained speaker encoder, BS.1770 loudness and STOI "
                                     "(pip install 'vqtool[eval]')."),
    hidden: int = typer.Option(256, "--hidden"),
    num_codes: int = typer.Option(512, "--codes", help="Codebook size K."),
    embedding_dim: int = typer.Option(64, "--embedding-dim"),
    griffin_lim_iterations: int = typer.Option(16, "--griffin-lim-iterations", min=1,
                                               help="Phase-reconstruction iterations when decoding (speed/quality)."),
    voice_warp: float = typer.Option(1.0, "--voice-warp", min=1.0, max=2.0, help="Teach the decoder voices "
                                     "nobody recorded: half the crops' targets get their frequencies scaled by a random "
                                     "factor from 1/W to W (pitch and formants together), the voice embedding alike (1: off)."),
    from_model: Optional[str] = typer.Option(None, "--from-model", help="Fine-tune only the decoder of this "
                                             "trained speech model: its encoder, codebook, voices and vocoder "
                                             "head stay, so its code files still decode."),
    models_dir: Optional[Path] = ModelsDirOpt,
    *, train,
):
    """Train the speech VQ-VAE (codes every 20 ms, a speaker-conditioned decoder).

    Example: `vqtool train speech --data ../shared/data/fsdd --data ../shared/data/speechocean --speaker-encoder speech-speakers`
    """
    from vqtool.data.speech import load_waves, provenance, speakers_of, split_clips
    from vqtool.evaluation import AUDIO_CLASSIFIER
    from vqtool.hub import load
    from vqtool.training import fit

    from .model import SpeechConfig
    from .task import SpeechTask

    if from_model and speaker_encoder:
        raise usage("--from-model keeps that model's speaker encoder; leave out --speaker-encoder", "--speaker-encoder")
    if speaker_encoder is None and not from_model and not train.remeasure:
        raise usage("training needs the voice embedding: --speaker-encoder CLASSIFIER", "--speaker-encoder")
    base = load(from_model, "cpu", models_dir, expect=ARCHITECTURE).eval() if from_model else None
    encoder = load(speaker_encoder, "cpu", models_dir, expect=AUDIO_CLASSIFIER) if speaker_encoder else None
    clips, test = split_clips(data)
    speakers = speakers_of(clips)
    if base is not None:
        _check_voices(base, clips)
    evaluation, judged = _evaluation(test, speakers, speaker_judge, digit_judge, eval_clips, independent, train.seed,
                                     models_dir)
    config = base.config if base is not None else SpeechConfig(
        hidden=hidden, num_codes=num_codes, embedding_dim=embedding_dim, speakers=speakers,
        griffin_lim_iterations=griffin_lim_iterations, speaker_encoder={**encoder.metadata["config"]} if encoder else {})
    if not train.quiet:
        console.print(f"{len(clips)} training clips from {len(speakers)} speakers"
                      + (f"; decoder of {base.name}" if base is not None else ""))
    info = {**provenance(data, clips), **judged, **({"voice_warp": voice_warp} if voice_warp != 1.0 else {}),
            **({"speaker_encoder": {"name": encoder.name, "sha256": encoder.sha256}} if encoder else {}),
            **(_built_on(base, "decoder_of") if base is not None else {})}
    voices = base.speaker_encoder if base is not None else encoder  # None: --remeasure, nothing to condition on
    task = SpeechTask(config, clips, load_waves(clips) if voices is not None else [], voices, evaluation, info,
                      voice_warp, base)
    fit(task, train.options())


def _built_on(base, key: str) -> dict:
    """What a checkpoint that trains one part of `base` (its `vocoder_of` or `decoder_of`) records of it: its
    speaker encoder, name, numbers and training, and the codes it keeps (`codes_of`)."""
    prov = base.metadata["provenance"]
    return {**{k: prov[k] for k in ("speaker_encoder",) if k in prov},
            key: {"name": base.name, "sha256": base.sha256, "metrics": base.metadata.get("metrics", {}),
                  **{k: prov.get(k) for k in ("steps", "train_seconds", "command")}},
            "codes_of": _same_codes(base)}


def _check_voices(base, clips: list) -> None:
    """Training onto a model needs the data it was trained on: a clip of each of its voices and no others."""
    given, voices = {c.speaker for c in clips}, set(base.config.speakers)
    if given != voices:
        odd = sorted(given ^ voices)
        raise usage(f"the training speakers differ from the voices of {base.name} ({len(odd)} differ: "
                    f"{', '.join(odd[:3])}{'…' if len(odd) > 3 else ''}): give the data it was trained on", "--data")


def _evaluation(test: list, speakers: list[str], speaker_judge, digit_judge, eval_clips: int, independent: bool,
                seed: int, models_dir) -> tuple[dict | None, dict]:
    """The held-out evaluation's clips and judges (the task's `evaluation`), and what provenance records of
    them: test clips of training speakers (FSDD digits) and of speakers never seen, `eval_clips` each."""
    import numpy as np

    from vqtool.evaluation import AUDIO_CLASSIFIER, judge_record, load_judge

    from .task import INDEPENDENT_JUDGES, another_clip_each

    rng = np.random.default_rng(seed)
    seen = [c for c in test if c.speaker in speakers and c.digit is not None]
    unseen = [c for c in test if c.speaker not in speakers]
    pick = lambda clips: [clips[i] for i in sorted(rng.choice(len(clips), min(eval_clips, len(clips)),  # noqa: E731
                                                               replace=False))] if clips else []
    evaluation = {"fsdd_test": pick(seen), "unseen_test": pick(unseen),
                  "speaker_judge": load_judge(speaker_judge, AUDIO_CLASSIFIER, "cpu", models_dir)
                  if speaker_judge else None,
                  "digit_judge": load_judge(digit_judge, AUDIO_CLASSIFIER, "cpu", models_dir) if digit_judge else None,
                  "independent": independent}
    if not evaluation["fsdd_test"] or not evaluation["unseen_test"]:
        return None, {}
    if independent:  # checked before training, not after it
        require_eval_extra(["resemblyzer", "pystoi"], "--no-independent-judges")
        evaluation["unseen_siblings"] = another_clip_each(evaluation["unseen_test"], unseen, seed)
    return evaluation, {**({"independent_judges": INDEPENDENT_JUDGES} if independent else {}),
                        "judges": {k: judge_record(evaluation[k]) for k in ("speaker_judge", "digit_judge")
                                   if evaluation[k] is not None}}


def _same_codes(base) -> list[str]:
    """Every checkpoint whose codes `base`'s are (itself, what it was re-measured from, its own codes_of)."""
    prov = base.metadata["provenance"]
    return [base.sha256, *(run["from_sha256"] for run in prov.get("remeasured", []) if run.get("from_sha256")),
            *prov.get("codes_of", [])]


def train_vocoder(
    data: List[Path] = SpeechDataOpt,
    speech: str = typer.Option("speech", "--speech", help="The trained speech model whose vocoder head is trained."),
    width: int = typer.Option(128, "--width", min=8, max=1024, help="Channels of the vocoder's ConvNeXt blocks."),
    blocks: int = typer.Option(4, "--blocks", min=1, max=32, help="ConvNeXt blocks."),
    held: int = typer.Option(64, "--validation", min=1, help="Training clips held back to pick the best weights."),
    phase_weight: float = typer.Option(0.3, "--phase-weight", min=0.0, help="Weight of APNet's phase losses "
                                       "against the real phase (0: phase learned only through the spectra of the wave)."),
    speaker_judge: Optional[str] = typer.Option(None, "--speaker-judge", help="Speaker classifier for the evaluation."),
    digit_judge: Optional[str] = typer.Option(None, "--digit-judge", help="Digit classifier for the evaluation."),
    eval_clips: int = typer.Option(100, "--eval-clips", help="Test clips per evaluation set."),
    independent: bool = typer.Option(True, "--independent-judges/--no-independent-judges", help="Also judge by "
                                     "Resemblyzer, BS.1770 loudness and STOI (pip install 'vqtool[eval]')."),
    models_dir: Optional[Path] = ModelsDirOpt,
    *, train,
):
    """Train a speech model's vocoder head (Vocos-style: magnitude and phase per frame, one inverse STFT)
    in place of Griffin-Lim. Encoder, codebook, voices and decoder are kept, so codes do not change.

    Example: `vqtool train vocoder --speech speech --data ../shared/data/fsdd --data ../shared/data/speechocean --speaker-judge speech-speaker-judge --digit-judge speech-digit-judge`
    """
    import numpy as np

    from vqtool.data.speech import load_waves, provenance, split_clips
    from vqtool.hub import load
    from vqtool.training import fit

    from .task import VocoderTask

    base = load(speech, "cpu", models_dir, expect=ARCHITECTURE)
    clips, test = split_clips(data)
    speakers = base.config.speakers
    _check_voices(base, clips)
    if held >= len(clips):
        raise usage(f"{held} validation clips leave none of the {len(clips)} to train on", "--validation")
    order = np.random.default_rng(train.seed).permutation(len(clips))
    kept, back = [clips[i] for i in sorted(order[held:])], [clips[i] for i in sorted(order[:held])]
    evaluation, judged = _evaluation(test, speakers, speaker_judge, digit_judge, eval_clips, independent, train.seed,
                                     models_dir)
    info = {**provenance(data, kept), "validation_items": held, **judged, **_built_on(base, "vocoder_of")}
    if not train.quiet:
        console.print(f"{len(kept)} training clips, {held} held back; vocoder for {base.name}")
    task = VocoderTask(base, width, blocks, kept, load_waves(kept), list(zip(back, load_waves(back))), evaluation,
                       info, phase_weight)
    fit(task, train.options(train.name or Path(base.name).stem, run_folder=f"{Path(base.name).stem}-vocoder"))


# --- the audio half of `vqtool encode` and `vqtool decode` -------------------------------------------
def _load_speech(model: str, device: str, models_dir):
    from vqtool.hub import load

    return load(model, device, models_dir, expect=ARCHITECTURE)


def warn_if_not_speech(source: str, opening, quiet: bool) -> None:
    """One warning line for input whose opening (codec.opening) does not sound like speech; it is still
    processed."""
    from vqtool.audio import sounds_like_speech

    if not quiet and sounds_like_speech(opening) is False:
        note(f"{source}: does not sound like speech (too few pauses: music or noise?); the model was trained on "
             "speech, so expect a poor result")


VocoderOpt = typer.Option(None, "--vocoder", help="'neural' (the checkpoint's vocoder head, the default where it "
                                                  "has one) or 'griffin-lim' (for comparison).")


def _check_vocoder(vocoder: Optional[str]) -> None:
    from .model import VOCODERS

    if vocoder is not None and vocoder not in VOCODERS:
        raise usage(f"unknown vocoder '{vocoder}' (use {' or '.join(VOCODERS)})", "--vocoder")


def _voice(net, to: Optional[str], to_voice: Optional[str], fit_steps: Optional[int] = None):
    from .codec import resolve_voice

    if to and to_voice:
        raise usage("give --to or --to-voice, not both", "--to")
    return resolve_voice(net, to, to_voice, fit_steps)


def encode_media(sources: list[str], request: CodeRequest) -> None:
    """`vqtool encode` for audio: one record per input, codes streamed chunk by chunk."""
    from .codec import encode_record

    if request.compress:
        raise usage("--compress needs a learned prior, which only the image models have", "--compress")
    net = _load_speech(request.model, request.device, request.models_dir)
    sink = RecordSink(request.output, sources, request.quiet, request.from_folder)
    failures: list[str] = []
    for index, source in enumerate(sources):
        try:
            record, info, start = encode_record(net, source, sink.name_of(index))
            warn_if_not_speech(source, start, request.quiet)
            data = record.to_bytes()
            sink.put(index, data)
        except VqtoolError as exc:
            report(failures, source, exc)
            continue
        if request.as_json:
            emit_json({"input": source, "output": sink.targets[index], "model": net.name,
                       "codes": int(record.codes.size), "seconds": round(info.seconds, 3),
                       "sample_rate": info.sample_rate, "speaker": record.media.get("speaker"), "bytes": len(data)})
    sink.close(failures)
    if not request.quiet:
        console.print(f"encoded {len(sources) - len(failures)} audio file(s) with {net.name}"
                      + (f", {len(failures)} failed" if failures else ""))
    if failures:
        raise typer.Exit(1)


def decode_media(pending: list, request: CodeRequest, cache, failures: list[str]) -> int:
    """`vqtool decode` for audio records (source, index, record, output stem, name in messages); several
    into one audio file are joined."""
    from vqtool.audio import OUTPUT_FORMATS, AudioWriter
    from vqtool.media import STDIO

    from .codec import decode_blocks, record_voice

    output, fmt = request.output, request.fmt
    fmt = fmt.lower() if "." + fmt.lower() in OUTPUT_FORMATS else "wav"
    join = len(pending) > 1 and output is not None and (output == STDIO or Path(output).suffix.lower() in OUTPUT_FORMATS)
    outputs = Outputs(output, 1 if join else len(pending), f".{fmt}" if output is not None else f".decoded.{fmt}",
                      list(request.inputs), request.quiet, request.from_folder)
    _check_vocoder(request.vocoder)
    jobs, voices = [], {}
    for source, index, record, stem, label in pending:
        try:
            net = cache.for_record(record, label)
            if request.vocoder:
                net.use_vocoder(request.vocoder)
            if id(net) not in voices:  # a reference clip is read once, not once per record
                voices[id(net)] = _voice(net, request.to, request.to_voice)
            voice = voices[id(net)]
            if voice is None:
                voice = record_voice(net, record, label)
            target = output if join else outputs.path_for(source, stem)
            jobs.append((source, index, record, net, voice, target))
        except VqtoolError as exc:
            report(failures, label, exc)

    def write(writer, net, record, voice):
        for block in decode_blocks(net, record, voice):
            writer.write(block)

    written = 0
    if join and jobs:
        rate = jobs[0][2].media["sample_rate"]
        try:
            with AudioWriter(output, rate, OUTPUT_FORMATS["." + fmt]) as writer:
                for _, _, record, net, voice, _ in jobs:
                    write(writer, net, record, voice)
        except VqtoolError as exc:
            report(failures, output, exc)
            return 0
        written = len(jobs)
        if request.as_json:
            emit_json({"output": output, "records": written, "sample_rate": rate, "samples": writer.written})
        return written
    for source, index, record, net, voice, target in jobs:
        try:
            rate = record.media["sample_rate"]
            with AudioWriter(target, rate, OUTPUT_FORMATS["." + fmt]) as writer:
                write(writer, net, record, voice)
        except VqtoolError as exc:
            report(failures, source, exc)
            continue
        written += 1
        if request.as_json:
            emit_json({"input": source, "record": index, "output": target, "model": net.name,
                       "sample_rate": rate, "samples": writer.written})
    return written


def convert_voice(
    inputs: List[str] = typer.Argument(..., metavar="INPUT", help="Audio files or folders (WAV, FLAC, OGG); '-' is stdin."),
    to: Optional[str] = typer.Option(None, "--to", help="Built-in voice: spkN or a name (see `vqtool speakers`)."),
    to_voice: Optional[str] = typer.Option(None, "--to-voice", help="Reference clip of any voice (zero-shot, >= 0.5 s)."),
    fit_steps: Optional[int] = typer.Option(None, "--fit-steps", min=0, max=10_000, help="With --to-voice: gradient "
                                            "steps fitting the reference's voice to the decoder (0: the speaker "
                                            "encoder's embedding as it is; default 50: ~17 s for a 10 s reference on one thread, once per reference)."),
    keep_level: bool = typer.Option(False, "--keep-level", help="Keep the decoder's own level (by default the output "
                                    "is given the input's loudness, ITU-R BS.1770)."),
    vocoder: Optional[str] = VocoderOpt,
    output: Optional[str] = typer.Option(None, "--output", "-o", help="File (.wav or .flac), folder, or '-' for stdout "
                                                                      "(WAV). Default: INPUT.converted.wav."),
    model: str = typer.Option("speech", "--model", "-m", help="Speech checkpoint name or path."),
    device: str = DeviceOpt,
    models_dir: Optional[Path] = ModelsDirOpt,
    as_json: bool = typer.Option(False, "--json", help="One JSON record per output on stdout."),
    quiet: bool = typer.Option(False, "--quiet", "-q"),
):
    """Say the same words in another voice: encode to codes, decode with the target voice.

    Files are streamed in 41 s chunks (memory stays flat for hours of audio); the output keeps the
    input's sample rate, length and loudness (`--keep-level`: the decoder's own level). A reference
    clip's voice is first fitted to the decoder (`--fit-steps`; 0: the speaker encoder's embedding).

    Examples:

    `vqtool convert-voice a.wav --to spk3 -o b.wav`

    `vqtool convert-voice a.wav --to-voice someone.flac -o b.wav`

    `cat a.wav | vqtool convert-voice - --to george -o - > b.wav`
    """
    from vqtool.audio import AUDIO_SUFFIXES, AudioWriter, audio_source
    from vqtool.media import expand_inputs

    from .codec import opening

    if not to and not to_voice:
        raise usage("say which voice: --to SPEAKER or --to-voice REFERENCE.wav", "--to")
    if fit_steps is not None and not to_voice:
        raise usage("--fit-steps fits a reference clip's voice: it needs --to-voice", "--fit-steps")
    json_needs_file(as_json, output)
    _check_vocoder(vocoder)
    sources = expand_inputs(inputs, AUDIO_SUFFIXES)
    net = _load_speech(model, device, models_dir)
    if vocoder:
        net.use_vocoder(vocoder)
    voice = _voice(net, to, to_voice, fit_steps)
    outputs = Outputs(output, len(sources), ".wav" if output is not None else ".converted.wav", sources, quiet,
                      any_folder(inputs))
    failures: list[str] = []
    for source, target in zip(sources, outputs.plan(sources)):
        try:
            info, open_blocks = audio_source(source)
            warn_if_not_speech(source, opening(open_blocks), quiet)
            with AudioWriter(target, info.sample_rate) as writer:
                for block in net.convert_stream(open_blocks, voice, keep_level):
                    writer.write(block)
        except VqtoolError as exc:
            report(failures, source, exc)
            continue
        if as_json:
            emit_json({"input": source, "output": target, "model": net.name, "to": to or to_voice,
                       "seconds": round(info.seconds, 3), "sample_rate": info.sample_rate})
    if not quiet:
        console.print(f"converted {len(sources) - len(failures)} file(s) to {to or to_voice}"
                      + (f", {len(failures)} failed" if failures else ""))
    if failures:
        raise typer.Exit(1)


def speakers(
    model: str = typer.Option("speech", "--model", "-m", help="Speech checkpoint name or path."),
    models_dir: Optional[Path] = ModelsDirOpt,
    as_json: bool = typer.Option(False, "--json", help="One JSON object on stdout."),
):
    """List a speech model's built-in voices (use them as `--to spkN` or `--to NAME`)."""
    import sys

    from vqtool.hub import describe

    info = describe(model, models_dir)
    if info["architecture"] != ARCHITECTURE:
        raise VqtoolError(f"is a {info['architecture']} checkpoint; this needs a {ARCHITECTURE} one", model)
    names = info["config"]["speakers"]
    if as_json:
        emit_json({"model": info["name"], "speakers": [{"index": i, "id": f"spk{i}", "name": n}
                                                       for i, n in enumerate(names)]})
        return
    sys.stdout.write("".join(f"spk{i}\t{n}\n" for i, n in enumerate(names)))


def register(app: typer.Typer, train_app: typer.Typer) -> None:
    app.command("convert-voice")(convert_voice)
    app.command()(speakers)
    train_command(train_app, "speech", name="speech", steps=6_000, lr=1e-3, batch_size=32)(train_speech)
    train_command(train_app, "vocoder", name=None, steps=8_000, lr=1e-3, batch_size=16,
                  out_help="Run folder (default runs/SPEECH-vocoder).",
                  name_help="Checkpoint name (default: the speech model's name).")(train_vocoder)
