"""Model-card words of the speech family."""

from __future__ import annotations

from vqtool.cards import CardText, metric_table

CARDS = {
    "speech": CardText(
        intended_use="Research, teaching and creative use of discrete speech codes and voice conversion "
                     "(`vqtool encode`, `vqtool decode --to`, `vqtool convert-voice`, `vqtool.load('speech')`). Not for "
                     "impersonation, speaker verification or any decision about people.",
        metric_notes=[
            "All on test data only: `eval_clips_seen` FSDD test clips (n = 0-4) of training speakers and "
            "`eval_clips_unseen` utterances of speechocean test speakers (never seen in training).",
            "`mcd_db_*`: mel-cepstral distortion between input and output, from 80-bin log-mel frames "
            "(DCT-II, coefficients 1-24, 10/ln10·sqrt(2·Σ), mean over the input's active frames (within 40 dB of "
            "its loudest), no time warping since lengths match). Not comparable with SPTK mel-cepstrum MCD: "
            "compare it with `mcd_db_griffin_lim_only`. `seen`: reconstruction in the stored "
            "voice of the speaker; `unseen`: in the voice taken from the clip itself; `griffin_lim_only`: the "
            "true STFT magnitude through Griffin-Lim, the floor of that vocoder; `vocoder_only` (with a vocoder "
            "head): the true magnitude through the head, which was trained on the decoder's predictions, not on "
            "true magnitudes, so this is not its floor. `high_band_db_unseen_*`: power above 4 kHz relative to "
            "below it (dB, mean over clips) in speechocean's 16 kHz test sentences and in their reconstructions "
            "(`_griffin_lim`: the same through Griffin-Lim instead of the vocoder head): "
            "how much of the upper band comes back (FSDD's 8 kHz recordings have none to give).",
            "Conversion: each FSDD test clip twice, to a random other FSDD voice (`..._fsdd_voices`) and to a "
            "random speechocean voice (`..._other_voices`). `conversion_target_accuracy`: share the speaker judge "
            "(a separately trained 131-way classifier, never used in training) assigns to the target; "
            "`conversion_still_source`: share it still assigns to the source speaker. `speaker_judge_on_*`: the "
            "judge on the unconverted clips and on their reconstructions. The judge knows each speechocean voice "
            "from only 4 training utterances, and its accuracy on their unheard speech cannot be measured (all "
            "4 are training data), so the FSDD-voice numbers are the reliable ones.",
            "`digit_accuracy_*`: the digit judge (trained on FSDD's train split only) on the original clips, on "
            "their reconstructions and on the conversions; `digit_accuracy_kept_ratio` = converted / originals "
            "(target ≥ 0.9); `..._fsdd_voices` / `..._other_voices`: as above (the digit judge heard only the six "
            "FSDD voices in training, with vocal tract length perturbation); `digit_accuracy_zero_shot`: on the "
            "zero-shot conversions below.",
            "Zero-shot: each FSDD test clip converted to the voice of one clip of an unseen speechocean test "
            "speaker; cosine similarity (speaker judge's embedding) of the output to that reference and to the "
            "source, the source-to-reference baseline, and the share of outputs closer to the reference.",
            "Independent judges (`independent_judges` in the provenance; nothing of them trained here): "
            "`resemblyzer_*` use Resemblyzer's pretrained speaker encoder (cosine similarity of its utterance "
            "embeddings): the zero-shot numbers as above (targets: closer to the reference for ≥ 0.8, cosine to "
            "the reference ≥ 0.75) and `resemblyzer_reconstruction_cos_seen` / `_unseen`, output against input "
            "(target ≥ 0.8 for unseen voices); `resemblyzer_zero_shot_unseen_pairs_*`: zero-shot between unseen "
            "voices, each speechocean test sentence converted to the voice of a clip of another unseen speaker "
            "(both sides unseen and read sentences, as the targets mean; from FSDD's digits Resemblyzer keeps "
            "finding the source: they are short, band-limited to 4 kHz and of training speakers, and even the "
            "source itself warped in frequency by up to ±60% stays nearer to it than to the reference); "
            "`resemblyzer_conversion_fsdd_*`: the conversions to another FSDD "
            "voice against the centroids of the FSDD test clips' embeddings (one per speaker): the share closer to "
            "the target's centroid than to the source's, and the mean cosines (real clips to their own speaker's: "
            "`resemblyzer_originals_fsdd_cos_to_own_speaker`). `stoi_*`: short-time objective intelligibility (0-1) of the "
            "reconstructions against their inputs, beside `stoi_griffin_lim_only` (the true magnitude through "
            "Griffin-Lim) and `stoi_vocoder_only` (through the vocoder head); `..._griffin_lim`: the same "
            "reconstructions through Griffin-Lim instead of the head, in the same run. pystoi scores a clip with too "
            "few 384 ms frames of speech 1e-5, counted as 0 in the means: `stoi_undefined_clips_seen` FSDD clips. `loudness_gap_lu_*`: mean |output − input| ITU-R BS.1770 loudness in LU "
            "(`loudness_change_lu_*`: the signed mean), for reconstructions, conversions to built-in voices and "
            "zero-shot conversions, as `convert-voice` writes them (level matched unless `--keep-level`; "
            "target ≤ 1 LU); `..._converted_keep_level`: the conversions at the decoder's own level (`--keep-level`, "
            "and every output before level matching). `conversion_target_accuracy_keep_level` (and "
            "`..._fsdd_voices_keep_level`): the speaker judge on those: the difference from the level-matched "
            "numbers is how much of its verdict rested on loudness. STOI compares 384 ms segments: FSDD's digits "
            "(0.3-0.8 s, 8 kHz) give it little to work with, so `stoi_reconstructions_unseen` (speechocean "
            "sentences) is the informative one.",
            "`..._fitted` (`resemblyzer_zero_shot_unseen_pairs_fitted_*`, `resemblyzer_reconstruction_cos_unseen_fitted`, "
            "`stoi_reconstructions_unseen_fitted`): the same unseen clips and pairs with each reference's voice "
            "fitted to the decoder as `convert-voice --to-voice` does by default (`fitted_voice_steps` steps on the "
            "embedding, then twice as many on per-block scale/shift offsets and per-bin log-gains, each fitted "
            "only to rebuild the reference clip itself); the numbers without `_fitted` use the speaker encoder's "
            "embedding as it is (`--fit-steps 0`).",
            "`..._same_level` (unseen pairs and unseen reconstructions): Resemblyzer with every clip first brought "
            "to -30 dBFS, down as well as up. Resemblyzer itself raises quiet clips to that level but leaves louder "
            "ones as they are, and its embedding is not level-free, so outputs given their source's loudness "
            "(conversion's default) are judged partly by level; these numbers judge voices alone.",
            "`..._heldout`: the same outputs judged by clips they were not made from: each against another test "
            "clip of the reference's speaker (drawn at random from that speaker's other three) and of the source's "
            "speaker, never the reference clip the voice was taken or fitted from, nor the source clip itself; "
            "reconstructions against another clip of their speaker. The reference clip's fit can copy that "
            "recording (its words, its channel) as well as the voice; these numbers count the voice alone. "
            "Ceilings: `resemblyzer_zero_shot_unseen_pairs_real_reference_*_heldout` (the real reference clip "
            "judged the same way) and `resemblyzer_unseen_cos_to_another_clip` (a real clip against another of "
            "its speaker).",
        ],
        limitations=[
            "Griffin-Lim vocoding sounds phasey and metallic: intelligible and in the target's voice colour, "
            "not natural. `mcd_db_griffin_lim_only` is that vocoder's own floor. A vocoder head (where the "
            "checkpoint has one) is one network pass instead of 16 FFT round trips, trained without an "
            "adversarial loss on the decoder's own smooth predictions: it cannot restore what the decoder "
            "smoothed away, so it is judged level with Griffin-Lim rather than better (no listening test was run).",
            "Trained on about 50 minutes of speech: read English by Mandarin L1 speakers (speechocean762) "
            "and six male speakers' digits at 8 kHz (FSDD); other accents, languages, noise and music come "
            "back worse. FSDD voices are band-limited to 4 kHz, so conversions to them are too.",
            "The codes keep some of the source's pitch and timing: conversion changes voice colour more "
            "than prosody.",
            "`vqtool decode` has no input recording to match, so it writes the decoder's own level, which "
            "follows the voice (up to about 14 dB from the input's); `convert-voice` matches the input's loudness.",
            "Voice conversion can impersonate people: convert only voices you have consent to use.",
        ],
    ),
}


def provenance_lines(prov: dict) -> list[str]:
    encoder = prov.get("speaker_encoder")
    if not encoder:
        return []
    return [f"The decoder's voices come from speaker encoder `{encoder.get('name')}` (SHA-256 "
            f"`{str(encoder.get('sha256'))[:16]}…`), built into this checkpoint and frozen. Judges used "
            "in the evaluation only: " + ", ".join(f"`{v.get('name')}` (`{str(v.get('sha256'))[:16]}…`)"
                                                  for v in prov.get("judges", {}).values()) + ".",
            *([f"Independent judges, in the evaluation only: {prov['independent_judges']}."]
              if prov.get("independent_judges") else []),
            *([f"Encoder, codebook, voices and decoder are those of `{prov['vocoder_of'].get('name')}` (SHA-256 "
               f"`{str(prov['vocoder_of'].get('sha256'))[:16]}…`), unchanged: the codes of a recording are the same "
               "and its code files decode with this checkpoint; only the vocoder head was trained (`vqtool train "
               "vocoder`). The table below shows that checkpoint's numbers (Griffin-Lim, same test clips and judges) "
               "beside these; `--vocoder griffin-lim` still decodes its way."
               + (f" That checkpoint was trained for {prov['vocoder_of']['steps']} steps, "
                  f"{prov['vocoder_of'].get('train_seconds')} s: `{prov['vocoder_of'].get('command')}`."
                  if prov["vocoder_of"].get("steps") else "")] if prov.get("vocoder_of") else []),
            *([f"Encoder, codebook, voices and vocoder head are those of `{prov['decoder_of'].get('name')}` "
               f"(SHA-256 `{str(prov['decoder_of'].get('sha256'))[:16]}…`): the codes of a recording are the same and "
               "its code files decode with this checkpoint; only the decoder was trained (`vqtool train speech "
               f"--from-model`), with voice warp {prov.get('voice_warp', 1.0):g}."] if prov.get("decoder_of") else []),
            ""]


def evaluation_lines(meta: dict) -> list[str]:
    """The metrics table; with a vocoder head trained onto an earlier checkpoint (`vocoder_of`), that
    checkpoint's numbers (Griffin-Lim, the same test clips and judges) beside each."""
    metrics, before = meta["metrics"], meta["provenance"].get("vocoder_of")
    if not before or meta["provenance"].get("compared_with"):  # `train --compare-with` names the one to show
        return metric_table(meta)
    old = before.get("metrics", {})
    return [f"| metric | this checkpoint ({meta['config'].get('vocoder_blocks')} ConvNeXt blocks, width "
            f"{meta['config'].get('vocoder_width')}) | `{before.get('name')}` before it (Griffin-Lim) |", "|---|---|---|",
            *[f"| {k} | {v} | {old.get(k, '–') if k != 'training' else '–'} |" for k, v in metrics.items()]]
