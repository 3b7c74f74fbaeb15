"""Training and held-out evaluation of the speech VQ-VAE.

Training: random 1.28 s crops from each training speaker's clips joined end to end, with a random
gain. The decoder is conditioned on the speaker encoder's embedding of *another* random clip of
the same speaker, so it learns to follow any embedding in that space (what zero-shot conversion
feeds it), not a lookup table. Loss: L1 on log-magnitude plus spectral convergence, plus the VQ
commitment term; the codebook learns by EMA.

With `voice_warp` (w > 1), half the crops take a random factor of a 9-step log grid from 1/w to w (so
about 4 in 9 get a voice nobody recorded): the target spectrum is scaled in frequency by it (pitch and
formants together) while the encoder still hears the crop as recorded, and the voice is the embedding
of another clip of the speaker scaled the same way. The codes then carry the source's pitch and formants, but the output's must come from
the voice embedding: the shortcut that kept the source's voice in zero-shot conversion is closed.
With a `base` model only its decoder trains (encoder, codebook, voices and vocoder head kept), so
the codes of a recording, and its code files, stay the same.

Evaluation (test data only): reconstruction distance on the FSDD test split (training speakers)
and on speechocean's test speakers (never seen); voice conversion judged by two separately trained
classifiers (speaker and digit); zero-shot similarity by the speaker judge's embedding.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import replace

import numpy as np
import torch
import torch.nn.functional as F

from vqtool.audio import Spectral, loudness, warp_frequency
from vqtool.classifiers import AudioClassifier
from vqtool.data.speech import Clip, load_waves, log_mels
from vqtool.training import TaskBase

from .model import FIT_STEPS, SpeechConfig, SpeechVQVAE, spectral_terms
from .vocoder import phase_losses

CROP_SAMPLES = 20_480  # 1.28 s, 64 codes
WARP_STEPS = 9  # voice-warp factors on a log grid, 1 in the middle: each clip is embedded once per factor
DECODER_PARTS = ("pre", "blocks", "head")  # what trains when a base model's decoder is fine-tuned


def warp_factors(voice_warp: float) -> torch.Tensor:
    """Frequency factors from 1/voice_warp to voice_warp, evenly spaced in log (just 1 without warping)."""
    if voice_warp <= 1.0:
        return torch.ones(1)
    return torch.exp(torch.linspace(-math.log(voice_warp), math.log(voice_warp), WARP_STEPS))


def cepstral_distance(reference: np.ndarray, other: np.ndarray, spectral: Spectral, coefficients: int = 24) -> float:
    """Mel-cepstral distortion in dB between two time-aligned clips: DCT-II of 80-bin log-mel frames,
    coefficients 1..24, (10 / ln 10) * sqrt(2 * sum of squared differences), averaged over the
    reference's active frames (energy within 40 dB of its loudest frame; silence has no voice)."""
    length = min(len(reference), len(other))
    a, b = log_mels([reference[:length], other[:length]], spectral)
    n = a.shape[0]
    k = torch.arange(n, dtype=torch.float32)
    dct = torch.cos(math.pi / n * (k[None] + 0.5) * k[:, None]) * math.sqrt(2 / n)
    diff = (dct @ (a - b))[1:coefficients + 1]
    energy = torch.logsumexp(a, 0)
    active = energy > energy.max() - 40 / 20 * math.log(10)
    return float((10 / math.log(10) * torch.sqrt(2 * (diff ** 2).sum(0)))[active].mean())


def high_band_db(wave: np.ndarray, spectral: Spectral, split_hz: float = 4000.0) -> float:
    """Power above `split_hz` relative to below it, in dB (a 16 kHz wave): how much of the upper band an
    output keeps (FSDD's 8 kHz recordings have none; speechocean's 16 kHz ones do)."""
    power = spectral.magnitude(torch.from_numpy(np.asarray(wave, np.float32))[None])[0].double() ** 2
    split = int(split_hz / 8000 * (power.shape[0] - 1))
    return float(10 * torch.log10(power[split:].sum() / power[:split].sum().clamp_min(1e-20) + 1e-20))


class SpeechTask(TaskBase):
    model_class = SpeechVQVAE

    def __init__(self, config: SpeechConfig, clips: list[Clip], waves: list[np.ndarray], encoder: AudioClassifier,
                 evaluation: dict | None = None, data_info: dict | None = None, voice_warp: float = 1.0,
                 base: SpeechVQVAE | None = None):
        self.config, self.encoder, self.evaluation, self.data_info = config, encoder, evaluation or {}, data_info or {}
        self.base, self.factors = base, warp_factors(voice_warp)
        if encoder is None:  # --remeasure: nothing is trained, so no conditioning pool
            return
        speakers = config.speakers
        self.streams = [np.concatenate([w for c, w in zip(clips, waves) if c.speaker == name])
                        for name in speakers]  # one long waveform per speaker
        lengths = np.array([len(s) for s in self.streams])
        self.slots = np.maximum(1, lengths // CROP_SAMPLES)  # crops per speaker per epoch
        self.slot_owner = np.repeat(np.arange(len(speakers)), self.slots)
        # the conditioning pool: each clip's embedding (per warp factor), grouped by speaker
        owner = torch.tensor([speakers.index(c.speaker) for c in clips])
        self.pool = [[embeddings[owner == i] for i in range(len(speakers))]
                     for embeddings in (encoder.embed(waves, float(f)) for f in self.factors)]
        self.unwarped = len(self.factors) // 2
        self.table = F.normalize(torch.stack([p.mean(0) for p in self.pool[self.unwarped]]), dim=1)

    def build(self) -> SpeechVQVAE:
        model = SpeechVQVAE(self.config)
        if self.base is None:
            model.speaker_encoder.load_state_dict(self.encoder.state_dict())
            model.speaker_table.copy_(self.table)
            return model
        model.load_state_dict(self.base.state_dict())  # its voices, codebook and vocoder head included
        for name, param in model.named_parameters():
            param.requires_grad_(name.split(".")[0] in DECODER_PARTS)
        model.codes_frozen = True
        return model

    def optimizer_groups(self, model) -> list[dict]:
        return [{"params": [p for p in model.parameters() if p.requires_grad]}]

    def dataset_size(self) -> int:
        return int(self.slot_owner.size)

    def batch(self, indices, device, generator):
        waves, voices, warps = [], [], []
        for i in indices.tolist():
            owner = int(self.slot_owner[i])
            stream = self.streams[owner]
            start = int(torch.randint(0, max(1, len(stream) - CROP_SAMPLES), (1,), generator=generator))
            crop = stream[start:start + CROP_SAMPLES]
            waves.append(np.pad(crop, (0, CROP_SAMPLES - len(crop))))
            warp = self.unwarped  # half the crops keep their voice, the others take any factor of the grid
            if len(self.factors) > 1 and float(torch.rand(1, generator=generator)) < 0.5:
                warp = int(torch.randint(0, len(self.factors), (1,), generator=generator))
            pool = self.pool[warp][owner]
            voices.append(pool[int(torch.randint(0, len(pool), (1,), generator=generator))])
            warps.append(self.factors[warp])
        wave = torch.from_numpy(np.stack(waves))
        gain = 10 ** ((torch.rand(len(waves), 1, generator=generator) * 2 - 1) * 6 / 20)
        return (wave * gain).to(device), torch.stack(voices).to(device), torch.stack(warps).to(device)

    def loss(self, model, batch, generator):
        wave, voice, warp = batch
        predicted, magnitude, quant = model(wave, voice)
        if bool((warp != 1).any()):  # the voice nobody recorded: the crop's spectrum, frequencies scaled
            magnitude = warp_frequency(magnitude, warp)
        l1, convergence = spectral_terms(predicted, magnitude)
        loss = l1 + convergence + quant.loss
        return loss, {"log_l1": l1.item(), "spectral_convergence": convergence.item(),
                      "perplexity": quant.perplexity.item()}

    def evaluate(self, model: SpeechVQVAE, device) -> dict:
        if not self.evaluation:
            return {}
        judges = {k: self.evaluation[k].to(device) for k in ("speaker_judge", "digit_judge") if self.evaluation.get(k)}
        return evaluate_speech(model, **{**self.evaluation, **judges})

    def card_notes(self) -> dict:
        c = self.config
        vocoder = (f"a Vocos-style vocoder head ({c.vocoder_blocks} ConvNeXt blocks of width {c.vocoder_width}) "
                   "predicting magnitude and phase for one inverse STFT (Griffin-Lim still selectable)"
                   if c.vocoder_width else "Griffin-Lim")
        warp = float(self.factors.max())
        return {"task": "speech", "summary": (
            f"Speech VQ-VAE: 16 kHz speech to {c.num_codes} codes at {16000 // c.samples_per_code} per second "
            f"({c.samples_per_code}x fewer than samples) and back in any of {len(c.speakers)} built-in voices or a "
            "voice taken from a reference clip (zero-shot). Decoder: dilated convolutions predicting the STFT "
            f"log-magnitude, then {vocoder}."
            + (f" The decoder learned on about 4 in 9 of its crops a voice nobody recorded: the target's "
               f"frequencies scaled by 1/{warp:g} to {warp:g} (pitch and formants together), the voice embedding "
               "scaled alike, the encoder hearing the crop as recorded."
               if warp > 1 else ""))}


class VocoderTask(SpeechTask):
    """Recipe for `fit`: the vocoder head of a trained speech model, everything else frozen (codes, voices
    and predicted magnitudes unchanged). It learns on the decoder's own predictions for training speech,
    each in a voice of its speaker (as training conditioned the decoder), against the real crop: so it
    learns to correct the predicted magnitude as well as to phase it. Loss: log-mel L1 and a
    multi-resolution STFT loss of the output wave (what makes the phases consistent), and, weighted by
    `phase_weight`, APNet's phase losses against the real crop's phase. Held-back training clips pick
    the best weights."""

    validate_every = 500
    select_by = "negative_mel_l1"
    resolutions = ((256, 64), (512, 128), (1024, 256))

    def __init__(self, base: SpeechVQVAE, width: int, blocks: int, clips: list[Clip], waves: list[np.ndarray],
                 held: list[tuple[Clip, np.ndarray]], evaluation: dict | None = None, data_info: dict | None = None,
                 phase_weight: float = 0.3):
        config = replace(base.config, vocoder_width=width, vocoder_blocks=blocks)
        super().__init__(config, clips, waves, base.speaker_encoder, evaluation, data_info)
        self.phase_weight = phase_weight
        self.base = base.eval()
        self.table = base.speaker_table.cpu()
        self.spectral = Spectral(config.n_fft, config.hop, config.mels)
        # each held clip repeated to a crop's length (zero padding would make the score mostly silence's)
        self.held_waves = torch.from_numpy(np.stack([np.resize(w, CROP_SAMPLES) for _, w in held]))
        self.held_voices = torch.stack([self.table[config.speakers.index(c.speaker)] for c, _ in held])

    def build(self) -> SpeechVQVAE:
        model = SpeechVQVAE(self.config)
        model.load_state_dict({**model.state_dict(), **self.base.state_dict()})
        for name, param in model.named_parameters():
            param.requires_grad_(name.startswith("vocoder."))
        return model

    @torch.no_grad()
    def predicted(self, wave: torch.Tensor, voice: torch.Tensor) -> torch.Tensor:
        """The frozen decoder's log-magnitude of the crops' own codes, frames + 1 (a centred STFT's)."""
        self.base.to(wave.device)
        log_magnitude, _, _ = self.base(wave, voice)
        return torch.cat([log_magnitude, log_magnitude[..., -1:]], -1)

    def terms(self, spectrum: torch.Tensor, wave: torch.Tensor) -> dict[str, torch.Tensor]:
        c, spectral = self.config, self.spectral.to(wave.device)
        out = self.base.inverse_stft(spectrum, wave.shape[-1])  # the frozen base has the same STFT settings
        terms = {"mel_l1": (spectral.log_mel(spectral.magnitude(out)) - spectral.log_mel(spectral.magnitude(wave)))
                 .abs().mean()}
        stft_loss = 0.0
        for n_fft, hop in self.resolutions:
            window = torch.hann_window(n_fft, device=wave.device)
            a, b = (torch.stft(x, n_fft, hop, window=window, return_complex=True).abs() for x in (out, wave))
            stft_loss = stft_loss + (torch.log(a + 1e-5) - torch.log(b + 1e-5)).abs().mean() + (
                torch.linalg.norm(a - b, dim=(1, 2)) / torch.linalg.norm(b, dim=(1, 2)).clamp_min(1e-5)).mean()
        terms["stft"] = stft_loss / len(self.resolutions)
        target = torch.stft(wave, c.n_fft, c.hop, window=spectral.window, return_complex=True)
        weight = target.abs() / target.abs().mean(dim=(1, 2), keepdim=True).clamp_min(1e-8)
        terms.update(phase_losses(spectrum.angle(), target.angle(), weight))
        return terms

    def loss(self, model, batch, generator):
        wave, voice, _ = batch  # unwarped: the vocoder learns real voices
        terms = self.terms(model(log_magnitude=self.predicted(wave, voice)), wave)
        loss = terms["mel_l1"] + terms["stft"] + self.phase_weight * (terms["phase"] + terms["group_delay"]
                                                                      + terms["frequency"])
        return loss, {k: v.item() for k, v in terms.items()}

    def validate(self, model: SpeechVQVAE, device) -> dict:
        totals: dict = {}
        for start in range(0, len(self.held_waves), 16):
            wave, voice = self.held_waves[start:start + 16].to(device), self.held_voices[start:start + 16].to(device)
            for key, value in self.terms(model(log_magnitude=self.predicted(wave, voice)), wave).items():
                totals[key] = totals.get(key, 0.0) + value.item() * len(wave)
        point = {key: round(value / len(self.held_waves), 5) for key, value in totals.items()}
        return {**point, "negative_mel_l1": -point["mel_l1"]}


def evaluate_speech(model: SpeechVQVAE, fsdd_test: list[Clip], unseen_test: list[Clip], speaker_judge=None,
                    digit_judge=None, seed: int = 0, independent: bool = False,
                    unseen_siblings: list[Clip] | None = None) -> dict:
    """Reconstruction, conversion and zero-shot metrics on test clips only (see the model card); with
    `independent`, also those of judges nobody here trained (independent_metrics); `unseen_siblings`: for
    each unseen clip another clip of its speaker (another_clip_each), to judge voices by clips no fit heard."""
    rng = np.random.default_rng(seed)
    spectral = Spectral(model.config.n_fft, model.config.hop, model.config.mels)
    metrics: dict = {}
    src_waves = load_waves(fsdd_test)
    unseen_waves = load_waves(unseen_test)
    speakers = model.config.speakers
    # reconstruction: training speakers in their own stored voice, unseen speakers in their own clip's voice
    recon = [model.convert(w, model.voice(c.speaker)) for c, w in zip(fsdd_test, src_waves)]
    unseen_recon = [model.convert(w, model.voice_of(w)) for w in unseen_waves]
    vocoded = [vocode(model, w) for w in src_waves]
    metrics["mcd_db_seen_speakers"] = round(float(np.mean([cepstral_distance(a, b, spectral)
                                                           for a, b in zip(src_waves, recon)])), 3)
    metrics["mcd_db_unseen_speakers"] = round(float(np.mean([cepstral_distance(a, b, spectral)
                                                             for a, b in zip(unseen_waves, unseen_recon)])), 3)
    metrics["mcd_db_griffin_lim_only"] = round(float(np.mean([cepstral_distance(a, b, spectral)
                                                              for a, b in zip(src_waves, vocoded)])), 3)
    neural = [vocode(model, w, neural=True) for w in src_waves] if model.vocoder is not None else None
    if neural:
        metrics["mcd_db_vocoder_only"] = round(float(np.mean([cepstral_distance(a, b, spectral)
                                                              for a, b in zip(src_waves, neural)])), 3)
    metrics["eval_clips_seen"], metrics["eval_clips_unseen"] = len(src_waves), len(unseen_waves)
    bands = {"unseen_originals": unseen_waves, "unseen_reconstructions": unseen_recon}
    griffin_lim = None
    if model.vocoding == "neural":  # the same reconstructions through Griffin-Lim, compared in this run
        model.use_vocoder("griffin-lim")
        griffin_lim = ([model.convert(w, model.voice(c.speaker)) for c, w in zip(fsdd_test, src_waves)],
                       [model.convert(w, model.voice_of(w)) for w in unseen_waves])
        model.use_vocoder("neural")
        bands["unseen_reconstructions_griffin_lim"] = griffin_lim[1]
    for name, waves in bands.items():
        metrics[f"high_band_db_{name}"] = round(float(np.mean([high_band_db(w, spectral) for w in waves])), 2)
    # conversion: each clip to a random other FSDD voice (the judges' home voices) and to a random other voice
    home = sorted({c.speaker for c in fsdd_test})
    others = [i for i, name in enumerate(speakers) if name not in home]
    targets = [speakers.index(str(rng.choice([n for n in home if n != c.speaker]))) for c in fsdd_test]
    targets += [int(rng.choice(others)) for _ in fsdd_test] if others else []
    groups = {"fsdd_voices": slice(0, len(fsdd_test)), "other_voices": slice(len(fsdd_test), len(targets))}
    sources = (src_waves * 2)[: len(targets)]
    converted = [model.convert(w, model.speaker_table[t].cpu()) for w, t in zip(sources, targets)]
    # zero-shot: each clip to the voice of one clip of an unseen speaker
    ref_index = rng.integers(0, len(unseen_test), len(fsdd_test))
    zero_shot = [model.convert(w, model.voice_of(unseen_waves[r])) for w, r in zip(src_waves, ref_index)]
    partner = other_speakers_clip(unseen_test, rng) if independent else None
    unseen_pairs = None if partner is None else (  # each unseen clip in the voice of another unseen speaker's
        partner, [model.convert(w, model.voice_of(unseen_waves[r])) for w, r in zip(unseen_waves, partner)])
    if independent:  # as `convert-voice --keep-level` writes them (the behaviour before level matching)
        kept_level = [model.convert(w, model.speaker_table[t].cpu(), keep_level=True) for w, t in zip(sources, targets)]
    if speaker_judge is not None:
        classes = speaker_judge.config.classes
        wanted = np.array([classes.index(speakers[t]) if speakers[t] in classes else -1 for t in targets])
        source_ids = np.array([classes.index(c.speaker) for c in fsdd_test])
        predicted = speaker_judge.predict(converted)
        metrics["speaker_judge_on_originals"] = round(float((speaker_judge.predict(src_waves) == source_ids).mean()), 4)
        metrics["speaker_judge_on_reconstructions"] = round(float((speaker_judge.predict(recon) == source_ids).mean()), 4)
        metrics["conversion_target_accuracy"] = round(float((predicted == wanted).mean()), 4)
        if independent:  # the judge on the decoder's own level: how much of its verdict is loudness
            at_own_level = speaker_judge.predict(kept_level)
            metrics["conversion_target_accuracy_keep_level"] = round(float((at_own_level == wanted).mean()), 4)
            part = groups["fsdd_voices"]
            metrics["conversion_target_accuracy_fsdd_voices_keep_level"] = round(
                float((at_own_level == wanted)[part].mean()), 4)
        for group, part in groups.items():
            if part.stop > part.start:
                metrics[f"conversion_target_accuracy_{group}"] = round(float((predicted == wanted)[part].mean()), 4)
        metrics["conversion_still_source"] = round(float((predicted == np.tile(source_ids, 2)[: len(targets)]).mean()), 4)
        e_src = speaker_judge.embed(src_waves).numpy()
        e_ref = speaker_judge.embed(unseen_waves).numpy()[ref_index]
        metrics.update(pair_verdicts("zero_shot", speaker_judge.embed(zero_shot).numpy(), e_ref, e_src))
        metrics["zero_shot_cos_source_to_reference"] = mean_cosine(e_src, e_ref)
    if independent:
        fitted = None if partner is None else fitted_outputs(model, unseen_waves, partner)
        metrics.update(independent_metrics(
            src_waves, recon, unseen_waves, unseen_recon, vocoded, zero_shot, ref_index,
            sources, converted, kept_level, neural_vocoded=neural, griffin_lim=griffin_lim, unseen_pairs=unseen_pairs,
            fitted=fitted, siblings=load_waves(unseen_siblings) if unseen_siblings else None,
            fsdd=([c.speaker for c in fsdd_test], [speakers[t] for t in targets[groups["fsdd_voices"]]])))
    if digit_judge is not None:
        digits = np.array([c.digit for c in fsdd_test])
        original = float((digit_judge.predict(src_waves) == digits).mean())
        right = digit_judge.predict(converted) == np.tile(digits, 2)[: len(targets)]
        metrics["digit_accuracy_originals"] = round(original, 4)
        metrics["digit_accuracy_reconstructions"] = round(float((digit_judge.predict(recon) == digits).mean()), 4)
        metrics["digit_accuracy_converted"] = round(float(right.mean()), 4)
        for group, part in groups.items():
            if part.stop > part.start:
                metrics[f"digit_accuracy_converted_{group}"] = round(float(right[part].mean()), 4)
        metrics["digit_accuracy_kept_ratio"] = round(float(right.mean()) / max(original, 1e-9), 4)
        metrics["digit_accuracy_zero_shot"] = round(float((digit_judge.predict(zero_shot) == digits).mean()), 4)
    return metrics


def fitted_outputs(model: SpeechVQVAE, unseen: list[np.ndarray], partner: np.ndarray) -> tuple[list, list]:
    """(reconstructions, pair outputs) of the unseen clips with each clip's voice fitted to the decoder
    (`fitted_voice`, as `--to-voice` does by default): fitted once per clip, used for both."""
    voices = [model.fitted_voice(w) for w in unseen]
    return ([model.convert(w, v) for w, v in zip(unseen, voices)],
            [model.convert(w, voices[r]) for w, r in zip(unseen, partner)])


def another_clip_each(clips: list[Clip], pool: list[Clip], seed: int) -> list[Clip] | None:
    """For each clip, a random other clip of its speaker from `pool` (None when a speaker has no other): what
    a voice made from the clip is judged against when the judge must not hear the clip it was made from."""
    rng = np.random.default_rng([seed, 20])  # its own stream: the other draws of the evaluation stay as they were
    others = [[d for d in pool if d.speaker == c.speaker and d.path != c.path] for c in clips]
    return [js[int(rng.integers(len(js)))] for js in others] if all(others) else None


def other_speakers_clip(clips: list[Clip], rng: np.random.Generator) -> np.ndarray | None:
    """For each clip, the index of a random clip of another speaker (None with a single speaker)."""
    others = [[j for j, d in enumerate(clips) if d.speaker != c.speaker] for c in clips]
    return np.array([int(rng.choice(js)) for js in others]) if all(others) else None


@torch.no_grad()
def vocode(model: SpeechVQVAE, wave: np.ndarray, neural: bool = False) -> np.ndarray:
    """Griffin-Lim (or, with `neural`, the vocoder head) on the true magnitude: the ceiling the codes cannot
    beat (for Griffin-Lim; the head learned on the decoder's predictions, not on true magnitudes)."""
    padded, length = model._padded(wave)
    magnitude = model.spectral.magnitude(padded)
    if neural:
        wave = model.inverse_stft(model.vocoder(torch.log(magnitude.clamp_min(1e-5))), padded.shape[-1])
    else:
        wave = model.spectral.griffin_lim(magnitude, padded.shape[-1], model.config.griffin_lim_iterations)
    return wave[0, :length].cpu().numpy()


def mean_cosine(a: np.ndarray, b: np.ndarray) -> float:
    """Mean row-by-row cosine of unit embeddings, rounded as the cards show it."""
    return round(float((a * b).sum(1).mean()), 4)


def pair_verdicts(key: str, e_made: np.ndarray, e_reference: np.ndarray, e_source: np.ndarray) -> dict:
    """Mean cosines of the outputs' embeddings to the reference's and to the source's (row by row), and the
    share nearer the reference."""
    to_ref, to_src = (e_made * e_reference).sum(1), (e_made * e_source).sum(1)
    return {f"{key}_cos_to_reference": round(float(to_ref.mean()), 4),
            f"{key}_cos_to_source": round(float(to_src.mean()), 4),
            f"{key}_closer_to_reference": round(float((to_ref > to_src).mean()), 4)}


INDEPENDENT_JUDGES = ("Resemblyzer 0.1.4 VoiceEncoder (pretrained weights inside its wheel; never trained on this "
                      "project's data), ITU-R BS.1770 loudness (pyloudnorm), STOI (pystoi)")


def independent_metrics(originals, recon, unseen, unseen_recon, vocoded, zero_shot, references, sources,
                        converted, kept_level=None, fsdd: tuple | None = None, neural_vocoded=None,
                        griffin_lim: tuple | None = None, unseen_pairs: tuple | None = None,
                        fitted: tuple | None = None, siblings: list | None = None) -> dict:
    """Judges nobody here trained (the `eval` extra): Resemblyzer's pretrained speaker encoder (weights in its
    wheel; cosine similarities of its utterance embeddings), ITU-R BS.1770 loudness (pyloudnorm) and STOI
    (pystoi). Every list is of 16 kHz waves; pairs are aligned; `references[i]`: the index in `unseen` of the
    clip whose voice zero-shot output i was given; `griffin_lim`: (seen, unseen) reconstructions through
    Griffin-Lim when `recon` came through a vocoder head; `unseen_pairs`: (partner, outputs), output i being
    unseen clip i in the voice of unseen clip partner[i], another speaker's; `fitted`: (reconstructions, outputs)
    of the same unseen clips and pairs with fitted voices (fitted_outputs); `siblings[i]`: another clip of unseen
    clip i's speaker, which no fit heard (`_heldout` numbers: whose voice an output is, by clips it was not
    made from)."""
    from pystoi import stoi

    from vqtool.evaluation import speaker_embedder

    embed = speaker_embedder()

    def level_gap(inputs, outputs):  # mean |LUFS out - LUFS in| and the mean signed gap
        gaps = np.array([loudness(b) - loudness(a) for a, b in zip(inputs, outputs)])
        gaps = gaps[np.isfinite(gaps)]  # a clip under the -70 LUFS gate has no loudness
        return round(float(np.abs(gaps).mean()), 2), round(float(gaps.mean()), 2)

    # each clip embedded once (unit-length embeddings); `_same_level`: every clip judged at one level (outputs
    # have their source's loudness); `e_sibling`: another clip of each unseen clip's speaker, no fit heard it
    levels = ("", "_same_level") if unseen_pairs or fitted else ("",)
    e_src, e_ref = embed(originals), embed(unseen)[references]
    e_unseen = {level: embed(unseen, same_level=bool(level)) for level in levels}
    e_sibling = {level: embed(siblings, same_level=bool(level)) for level in levels} if siblings else None
    metrics = {
        **pair_verdicts("resemblyzer_zero_shot", embed(zero_shot), e_ref, e_src),
        "resemblyzer_zero_shot_cos_source_to_reference": mean_cosine(e_src, e_ref),
        "resemblyzer_reconstruction_cos_seen": mean_cosine(e_src, embed(recon)),
        "stoi_reconstructions_seen": round(float(np.mean([stoi(a, b[:len(a)], 16000) for a, b in zip(originals, recon)])), 4),
        "stoi_reconstructions_unseen": round(float(np.mean([stoi(a, b[:len(a)], 16000)
                                                            for a, b in zip(unseen, unseen_recon)])), 4),
        "stoi_griffin_lim_only": round(float(np.mean([stoi(a, b[:len(a)], 16000) for a, b in zip(originals, vocoded)])), 4),
        # pystoi gives 1e-5 to a clip with too few 384 ms frames of speech: those count as 0 in the means above
        "stoi_undefined_clips_seen": int(sum(stoi(a, a, 16000) < 1e-3 for a in originals)),
    }
    if unseen_pairs:  # source and reference both unseen, both read sentences: the pairs
        partner, outputs = unseen_pairs
        key = "resemblyzer_zero_shot_unseen_pairs"
        metrics[f"{key}_cos_source_to_reference"] = mean_cosine(e_unseen[""], e_unseen[""][partner])
        # with fitted voices: the same pairs, each reference's voice fitted to the decoder (fitted_outputs)
        made = {"": outputs, **({"_fitted": fitted[1]} if fitted else {})}
        for name, level in itertools.product(made, levels):
            e_pair, e_in = embed(made[name], same_level=bool(level)), e_unseen[level]
            metrics.update(pair_verdicts(f"{key}{name}{level}", e_pair, e_in[partner], e_in))
            if e_sibling:  # by other clips of both speakers: not the reference the voice was fitted on, nor the source
                metrics.update(pair_verdicts(f"{key}{name}{level}_heldout", e_pair, e_sibling[level][partner],
                                             e_sibling[level]))
        for level in levels if e_sibling else ():  # the reference clip itself, judged alike: the ceiling
            metrics.update(pair_verdicts(f"{key}_real_reference{level}_heldout", e_unseen[level][partner],
                                         e_sibling[level][partner], e_sibling[level]))
    # reconstructions of unseen voices, in the clip's own voice and (`_fitted`) with it fitted to the decoder
    rebuilt = {"": unseen_recon, **({"_fitted": fitted[0]} if fitted else {})}
    for name, level in itertools.product(rebuilt, levels):
        e_made, key = embed(rebuilt[name], same_level=bool(level)), f"resemblyzer_reconstruction_cos_unseen{name}{level}"
        metrics[key] = mean_cosine(e_unseen[level], e_made)
        if e_sibling:  # against another clip of the speaker; the real clip against it is the ceiling
            metrics[f"{key}_heldout"] = mean_cosine(e_sibling[level], e_made)
    for level in levels if e_sibling else ():
        metrics[f"resemblyzer_unseen_cos_to_another_clip{level}"] = mean_cosine(e_sibling[level], e_unseen[level])
    if fitted:
        metrics["stoi_reconstructions_unseen_fitted"] = round(float(np.mean(
            [stoi(a, b[:len(a)], 16000) for a, b in zip(unseen, fitted[0])])), 4)
        metrics["fitted_voice_steps"] = FIT_STEPS
    if griffin_lim:
        for name, inputs, outputs in (("seen", originals, griffin_lim[0]), ("unseen", unseen, griffin_lim[1])):
            metrics[f"stoi_reconstructions_{name}_griffin_lim"] = round(float(np.mean(
                [stoi(a, b[:len(a)], 16000) for a, b in zip(inputs, outputs)])), 4)
    if neural_vocoded:
        metrics["stoi_vocoder_only"] = round(float(np.mean([stoi(a, b[:len(a)], 16000)
                                                            for a, b in zip(originals, neural_vocoded)])), 4)
    if fsdd:  # (speaker of each original, target of each of its conversions to an FSDD voice, which come first)
        owners, wanted = fsdd
        centroid = {name: e_src[[o == name for o in owners]].mean(0) for name in set(owners)}
        centroid = {name: c / np.linalg.norm(c) for name, c in centroid.items()}
        e_conv = embed(converted[:len(wanted)])
        to_target = np.array([e @ centroid[t] for e, t in zip(e_conv, wanted)])
        to_source = np.array([e @ centroid[o] for e, o in zip(e_conv, owners)])
        metrics["resemblyzer_conversion_fsdd_closer_to_target"] = round(float((to_target > to_source).mean()), 4)
        metrics["resemblyzer_conversion_fsdd_cos_to_target"] = round(float(to_target.mean()), 4)
        metrics["resemblyzer_conversion_fsdd_cos_to_source"] = round(float(to_source.mean()), 4)
        metrics["resemblyzer_originals_fsdd_cos_to_own_speaker"] = round(
            float(np.mean([e @ centroid[o] for e, o in zip(e_src, owners)])), 4)
    pairs = {"reconstructions": (originals, recon), "converted": (sources, converted),
             "zero_shot": (originals, zero_shot), **({"converted_keep_level": (sources, kept_level)} if kept_level else {})}
    for name, (inputs, outputs) in pairs.items():
        metrics[f"loudness_gap_lu_{name}"], metrics[f"loudness_change_lu_{name}"] = level_gap(inputs, outputs)
    return metrics
