"""The shipped speech checkpoint keeps the numbers its card claims, on a slice of the test data."""
import numpy as np
import pytest

from vqtool import load
from vqtool.data.speech import list_clips, load_waves
from vqtool.families.speech.task import another_clip_each, evaluate_speech


@pytest.fixture(scope="module")
def measured(shared_data):
    model = load("speech", device="cpu")
    rng = np.random.default_rng(7)  # a different slice from the card's
    fsdd = [c for c in list_clips(shared_data / "fsdd") if c.split == "test"]
    unseen = [c for c in list_clips(shared_data / "speechocean") if c.split == "test"]
    fsdd = [fsdd[i] for i in rng.choice(len(fsdd), 24, replace=False)]
    unseen = [unseen[i] for i in rng.choice(len(unseen), 12, replace=False)]
    metrics = evaluate_speech(model, fsdd, unseen, load("speech-speaker-judge", device="cpu"),
                              load("speech-digit-judge", device="cpu"), seed=7)
    return model.metadata, metrics


def test_card_was_measured_on_test_data_with_independent_judges(measured):
    meta, _ = measured
    assert meta["provenance"]["train_split"] == "train" and meta["metrics"]["eval_clips_unseen"] >= 100
    judges = {j["sha256"] for j in meta["provenance"]["judges"].values()}
    assert judges == {load(name, device="cpu").sha256 for name in ("speech-speaker-judge", "speech-digit-judge")}
    assert meta["provenance"]["speaker_encoder"]["sha256"] not in judges  # the judges are not the model's encoder


def test_reconstruction_distance_holds(measured):
    meta, metrics = measured
    recorded = meta["metrics"]
    assert abs(metrics["mcd_db_seen_speakers"] - recorded["mcd_db_seen_speakers"]) < 2.0, metrics
    assert abs(metrics["mcd_db_unseen_speakers"] - recorded["mcd_db_unseen_speakers"]) < 2.0, metrics  # 12 clips vary


def test_conversion_reaches_the_target_voice_and_keeps_the_words(measured):
    meta, metrics = measured
    recorded = meta["metrics"]
    assert metrics["conversion_target_accuracy"] >= recorded["conversion_target_accuracy"] - 0.2, metrics
    assert metrics["digit_accuracy_kept_ratio"] >= recorded["digit_accuracy_kept_ratio"] - 0.15, metrics


def test_zero_shot_output_is_closer_to_the_reference_than_to_the_source(measured):
    _, metrics = measured
    assert metrics["zero_shot_cos_to_reference"] > metrics["zero_shot_cos_to_source"], metrics


def test_vocoder_head_holds_its_numbers(measured):
    meta, metrics = measured
    recorded = meta["metrics"]
    assert meta["config"]["vocoder_width"] > 0 and load("speech", device="cpu").vocoding == "neural"
    assert abs(metrics["mcd_db_vocoder_only"] - recorded["mcd_db_vocoder_only"]) < 2.0, metrics
    assert metrics["high_band_db_unseen_reconstructions"] > recorded["high_band_db_unseen_originals"] - 10, metrics


def test_vocoder_head_is_as_intelligible_as_griffin_lim(shared_data):
    """STOI of reconstructions of unseen voices (speechocean sentences), head against Griffin-Lim, same clips."""
    import warnings

    pytest.importorskip("pystoi")
    from pystoi import stoi

    model = load("speech", device="cpu")
    clips = [c for c in list_clips(shared_data / "speechocean") if c.split == "test"]
    clips = [clips[i] for i in np.random.default_rng(11).choice(len(clips), 8, replace=False)]
    waves = load_waves(clips)
    scores = {}
    for vocoder in ("griffin-lim", "neural"):
        model.use_vocoder(vocoder)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            scores[vocoder] = float(np.mean([stoi(w, model.convert(w, model.voice_of(w)), 16000) for w in waves]))
    assert scores["neural"] >= scores["griffin-lim"] - 0.03, scores
    assert abs(scores["neural"] - model.metadata["metrics"]["stoi_reconstructions_unseen"]) < 0.08, scores


def test_zero_shot_between_unseen_voices_holds_by_resemblyzer(shared_data):
    """Unseen source, unseen reference (the card's `resemblyzer_zero_shot_unseen_pairs_*`) on 16 other test clips."""
    pytest.importorskip("resemblyzer")
    model = load("speech", device="cpu")
    clips = [c for c in list_clips(shared_data / "speechocean") if c.split == "test"]
    rng = np.random.default_rng(13)
    unseen = [clips[i] for i in rng.choice(len(clips), 16, replace=False)]
    fsdd = [c for c in list_clips(shared_data / "fsdd") if c.split == "test"]
    fsdd = [fsdd[i] for i in rng.choice(len(fsdd), 4, replace=False)]  # the evaluation needs two FSDD voices
    metrics = evaluate_speech(model, fsdd, unseen, seed=13, independent=True,
                              unseen_siblings=another_clip_each(unseen, clips, 13))
    recorded = model.metadata["metrics"]
    pairs = "resemblyzer_zero_shot_unseen_pairs_"
    assert metrics[pairs + "cos_to_reference"] > metrics[pairs + "cos_source_to_reference"], metrics
    assert abs(metrics[pairs + "cos_to_reference"] - recorded[pairs + "cos_to_reference"]) < 0.06, metrics
    assert metrics[pairs + "closer_to_reference"] >= recorded[pairs + "closer_to_reference"] - 0.3, metrics
    fitted = pairs + "fitted_cos_to_reference"  # the reference's voice fitted to the decoder, as --to-voice does
    assert abs(metrics[fitted] - recorded[fitted]) < 0.06, metrics
    assert metrics[fitted] > metrics[pairs + "cos_to_reference"] - 0.01, metrics
    unseen_fitted = "resemblyzer_reconstruction_cos_unseen_fitted"
    assert abs(metrics[unseen_fitted] - recorded[unseen_fitted]) < 0.06, metrics
    same_level = pairs + "fitted_same_level_cos_to_reference"  # every clip judged at one level
    assert abs(metrics[same_level] - recorded[same_level]) < 0.06, metrics
    heldout = pairs + "fitted_heldout_cos_to_reference"  # by another clip of the reference speaker, which no fit heard
    assert abs(metrics[heldout] - recorded[heldout]) < 0.06, metrics
    assert metrics[heldout] < metrics[pairs + "real_reference_heldout_cos_to_reference"], metrics
