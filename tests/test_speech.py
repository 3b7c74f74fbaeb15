"""Speech: audio I/O, streaming in chunks, codes and pipes, voice conversion, bad inputs."""
import io
import json

import numpy as np
import pytest
import soundfile as sf
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import vqtool.families.speech.model as speech
from vqtool.audio import SAMPLE_RATE, read_audio, stream_audio
from vqtool.errors import VqtoolError
from vqtool.hub import load
from vqtool.families.speech.model import chunked

from conftest import run_cli, synthetic_voice


def write(path, samples, rate=16000, subtype=None, fmt=None):
    sf.write(path, samples, rate, subtype=subtype, format=fmt)
    return path


# --- streaming in chunks --------------------------------------------------------------------------
def _blocks(x, size):
    return (x[i:i + size] for i in range(0, len(x), size))


@settings(max_examples=40, deadline=None)
@given(length=st.integers(0, 3000), block=st.integers(1, 4000), chunk=st.sampled_from([64, 96, 160]),
       halo=st.sampled_from([32, 64]))
def test_chunked_matches_one_pass_for_every_ratio(length, block, chunk, halo):
    x = np.random.default_rng(length).standard_normal(length).astype(np.float32)
    same = np.concatenate(list(chunked(_blocks(x, block), lambda w: 3 * w, chunk, halo, 1.0, 8)) or [x[:0]])
    assert np.allclose(same, 3 * x)
    down = list(chunked(_blocks(x, block), lambda w: np.pad(w, (0, -len(w) % 32))[::32], chunk * 32 // 32 * 32,
                        halo // 32 * 32 or 32, 1 / 32))
    assert np.allclose(np.concatenate(down or [x[:0]]), x[::32])
    up = list(chunked(_blocks(x[:200], block), lambda w: np.repeat(w, 4), chunk, halo, 4.0, 8))
    assert np.allclose(np.concatenate(up or [x[:0]]), np.repeat(x[:200], 4))


def test_chunked_conversion_matches_whole_file(tiny_speech, monkeypatch):
    """Codes are identical chunked or whole (the normalisation statistics come from whole-stream passes);
    the audio differs only by Griffin-Lim's phase near the seams."""
    net = load(str(tiny_speech), "cpu")
    monkeypatch.setattr(speech, "CHUNK_CODES", 512)
    wave = np.concatenate([synthetic_voice(1.5, 110, seed=s) for s in range(18)])  # 27 s: three chunks of 512
    chunked_codes = net.encode(wave)
    chunked_audio = net.convert(wave, net.voice("high"))
    monkeypatch.setattr(speech, "CHUNK_CODES", 10_000)
    whole_codes = net.encode(wave)
    whole_audio = net.convert(wave, net.voice("high"))
    assert torch.equal(chunked_codes, whole_codes) and len(chunked_codes) == -(-len(wave) // 320)
    assert len(chunked_audio) == len(whole_audio) == len(wave)
    # the magnitude spectra agree closely (what the ear hears), seams included
    spec = lambda w: torch.stft(torch.from_numpy(w), 512, 160, window=torch.hann_window(512), return_complex=True).abs()
    a, b = spec(chunked_audio), spec(whole_audio)
    distance_db = 20 * torch.log10(torch.linalg.norm(a - b) / torch.linalg.norm(b))
    assert distance_db < -20, float(distance_db)


# --- reading audio ------------------------------------------------------------------------------------
@pytest.mark.parametrize("rate,subtype,channels", [(8000, "PCM_U8", 1), (22050, "PCM_24", 2), (44100, "FLOAT", 1),
                                                   (48000, "PCM_16", 2), (16000, "PCM_32", 1)])
def test_any_rate_depth_and_channel_count_becomes_16k_mono(tmp_path, rate, subtype, channels):
    tone = 0.3 * np.sin(2 * np.pi * 440 * np.arange(rate) / rate)
    samples = np.stack([tone] * channels, 1) if channels > 1 else tone
    path = write(tmp_path / "x.wav", samples, rate, subtype)
    wave, info = read_audio(str(path))
    assert info.sample_rate == rate and info.channels == channels
    assert abs(len(wave) - SAMPLE_RATE) <= 2 and wave.dtype == np.float32
    assert abs(np.sqrt(np.mean(wave[1000:-1000] ** 2)) - 0.3 / np.sqrt(2)) < 0.02  # downmixed, not summed


def test_flac_and_ogg_read(tmp_path):
    tone = (0.2 * np.sin(np.arange(8000) / 5)).astype(np.float32)
    for suffix, fmt in ((".flac", "FLAC"), (".ogg", "OGG")):
        wave, _ = read_audio(str(write(tmp_path / f"x{suffix}", tone, 16000, fmt=fmt)))
        assert abs(len(wave) - 8000) <= 2


@pytest.mark.parametrize("content,reason", [(b"", "empty file"), (b"hello, not audio at all" * 10, "not readable audio"),
                                            (b"RIFF\x24\x00\x00\x00WAVEfmt \x10\x00\x00\x00\x01", "not readable audio")])
def test_bad_audio_is_one_clear_error(tmp_path, content, reason):
    path = tmp_path / "bad.wav"
    path.write_bytes(content)
    with pytest.raises(VqtoolError, match=reason):
        read_audio(str(path))


def test_zero_length_audio_is_refused(tmp_path):
    path = write(tmp_path / "zero.wav", np.zeros(0, np.float32))
    with pytest.raises(VqtoolError, match="no samples"):
        read_audio(str(path))


def test_streaming_reads_in_blocks(tmp_path):
    path = write(tmp_path / "long.wav", np.zeros(44100 * 25, np.float32), 44100)
    info, blocks = stream_audio(str(path), block_seconds=10)
    sizes = [len(b) for b in blocks]
    assert len(sizes) >= 3 and max(sizes) <= 16000 * 10 + 100 and abs(sum(sizes) - 16000 * 25) <= 2


# --- the command line ------------------------------------------------------------------------------
def test_encode_decode_round_trip_keeps_rate_length_and_voice(tmp_path, tiny_speech, voice_folder):
    source = voice_folder / "high" / "0.wav"
    clip = tmp_path / "clip.wav"
    write(clip, sf.read(source)[0], 16000)
    result = run_cli("encode", clip, "-m", tiny_speech, "--json", "-o", tmp_path / "clip.vqc")
    assert result.returncode == 0, result.stderr.decode()
    record = json.loads(result.stdout)
    assert record["codes"] == 75 and record["speaker"] == "high" and record["sample_rate"] == 16000
    result = run_cli("decode", tmp_path / "clip.vqc", "-o", tmp_path / "back.flac")
    assert result.returncode == 0, result.stderr.decode()
    back, rate = sf.read(tmp_path / "back.flac")
    assert rate == 16000 and len(back) == 24000


def test_pipe_encode_to_decode_in_another_voice(tmp_path, tiny_speech, voice_folder):
    clip = write(tmp_path / "c.wav", sf.read(voice_folder / "low" / "1.wav")[0][::2], 8000)  # 8 kHz input
    encoded = run_cli("encode", clip, "-m", tiny_speech, "-o", "-")
    assert encoded.returncode == 0 and encoded.stdout[:4] == b"VQC\x89", encoded.stderr.decode()
    decoded = run_cli("decode", "-", "--to", "spk1", "-o", "-", input=encoded.stdout)
    assert decoded.returncode == 0, decoded.stderr.decode()
    out, rate = sf.read(io.BytesIO(decoded.stdout))
    assert rate == 8000 and len(out) == 12000


def test_stdin_audio_is_recognised_by_content(tmp_path, tiny_speech, voice_folder):
    data = (voice_folder / "low" / "2.wav").read_bytes()
    result = run_cli("encode", "-", "-m", tiny_speech, "-o", tmp_path / "s.vqc", input=data)
    assert result.returncode == 0, result.stderr.decode()
    assert (tmp_path / "s.vqc").read_bytes()[:4] == b"VQC\x89"


def test_convert_voice_to_a_speaker_and_to_a_reference(tmp_path, tiny_speech, voice_folder):
    source = voice_folder / "low" / "3.wav"
    for flag, value in (("--to", "high"), ("--to", "spk0"), ("--to-voice", voice_folder / "high" / "5.wav")):
        out = tmp_path / "out.wav"
        result = run_cli("convert-voice", source, "-m", tiny_speech, flag, value, "-o", out)
        assert result.returncode == 0, result.stderr.decode()
        assert sf.info(out).frames == 24000
    assert run_cli("convert-voice", source, "-m", tiny_speech, "-o", out).returncode == 2  # no voice named
    assert run_cli("convert-voice", source, "-m", tiny_speech, "--to", "high", "--fit-steps", "5",
                   "-o", out).returncode == 2  # nothing to fit


def test_reference_voice_is_fitted_unless_asked_not_to(tmp_path, tiny_speech, voice_folder):
    source, reference = voice_folder / "low" / "3.wav", voice_folder / "high" / "5.wav"
    outputs = {}
    for steps in ("0", "20", None):
        out = tmp_path / f"fit{steps}.wav"
        result = run_cli("convert-voice", source, "-m", tiny_speech, "--to-voice", reference, "-o", out,
                         *(["--fit-steps", steps] if steps else []))
        assert result.returncode == 0, result.stderr.decode()
        outputs[steps] = read_audio(str(out))[0]
    net = load(str(tiny_speech), device="cpu")
    unfitted = net.convert(read_audio(str(source))[0], net.voice_of(read_audio(str(reference))[0]))
    assert np.abs(outputs["0"] - unfitted).max() < 1e-3  # 0 steps: the speaker encoder's voice, as before
    assert np.abs(outputs["20"] - outputs["0"]).max() > 1e-3 and np.abs(outputs[None] - outputs["0"]).max() > 1e-3


def test_convert_voice_gives_the_output_the_input_loudness(tmp_path, tiny_speech, voice_folder):
    from vqtool.audio import loudness

    wave, _ = read_audio(str(voice_folder / "low" / "3.wav"))
    levels = {}
    for gain in (0.03, 0.6):  # -30 dB apart; the encoder normalises its input, so the decoder's level is fixed
        write(tmp_path / f"in{gain}.wav", wave * gain / np.abs(wave).max())
        for keep in (False, True):
            out = tmp_path / f"out{gain}{keep}.wav"
            result = run_cli("convert-voice", tmp_path / f"in{gain}.wav", "-m", tiny_speech, "--to", "high", "-o", out,
                             *(["--keep-level"] if keep else []))
            assert result.returncode == 0, result.stderr.decode()
            levels[gain, keep] = loudness(read_audio(str(out))[0]) - loudness(read_audio(str(tmp_path / f"in{gain}.wav"))[0])
    assert abs(levels[0.03, False]) < 1 and abs(levels[0.6, False]) < 1, levels
    assert abs(levels[0.03, True] - levels[0.6, True]) > 20, levels  # the decoder's own level ignores the input's


def test_level_gain_never_clips_and_leaves_silence_alone():
    from vqtool.audio import PEAK_CEILING, level_gain, loudness

    quiet, loud = synthetic_voice(1.0, 150) * 0.01, synthetic_voice(1.0, 150, seed=1)
    gain = level_gain(quiet * 50, quiet)  # +34 dB wanted
    assert gain == pytest.approx(10 ** (24 / 20))  # bounded by MAX_LEVEL_GAIN_DB
    assert np.abs(loud * level_gain(loud * 10, loud)).max() <= PEAK_CEILING + 1e-6  # bounded by the peak
    assert level_gain(np.zeros(16000), loud) is None and level_gain(loud, np.zeros(16000)) is None
    assert loudness(loud[:100]) < 0  # shorter than one 400 ms block: measured padded, not an error


def test_independent_judges_see_identity_and_level(monkeypatch):
    from vqtool.families.speech.task import independent_metrics

    a = [synthetic_voice(1.5, 110, seed=s) * 0.3 for s in range(3)]
    b = [synthetic_voice(1.5, 240, seed=s + 7) * 0.3 for s in range(3)]
    quieter = [w * 0.1 for w in a]  # -20 dB
    unseen = [b[0], b[1], a[2]]  # unseen pairs: clip i in the voice of clip partner[i]
    partner = np.array([2, 2, 0])
    m = independent_metrics(a, a, unseen, unseen, a, quieter, np.arange(3), a, a,
                            unseen_pairs=(partner, [unseen[p] for p in partner]),  # a perfect conversion
                            fitted=(unseen, [unseen[p] * 3 for p in partner]),  # the same, louder
                            siblings=[b[2], b[0], a[0]])  # another clip of each unseen clip's speaker
    assert m["resemblyzer_zero_shot_unseen_pairs_closer_to_reference"] == 1
    assert m["resemblyzer_zero_shot_unseen_pairs_cos_to_reference"] > 0.99
    assert m["resemblyzer_reconstruction_cos_seen"] > 0.99 and m["stoi_reconstructions_seen"] > 0.99
    assert m["loudness_gap_lu_reconstructions"] == 0 and m["loudness_change_lu_zero_shot"] == pytest.approx(-20, abs=0.1)
    assert m["resemblyzer_zero_shot_cos_to_source"] > 0.99  # a quieter copy of the source is still the source
    assert m["resemblyzer_zero_shot_closer_to_reference"] == 0
    pairs = "resemblyzer_zero_shot_unseen_pairs_"
    assert m[pairs + "fitted_same_level_cos_to_reference"] > 0.99 and m[pairs + "same_level_closer_to_reference"] == 1
    assert m["resemblyzer_reconstruction_cos_unseen_fitted_same_level"] > 0.99
    # judged by other clips of both speakers: the voice is still the reference's, as for the reference itself
    for made in ("fitted_heldout", "same_level_heldout", "real_reference_heldout"):
        assert m[f"{pairs}{made}_closer_to_reference"] == 1, made
    assert m[pairs + "heldout_cos_to_reference"] == m[pairs + "real_reference_heldout_cos_to_reference"]
    assert m["resemblyzer_reconstruction_cos_unseen_heldout"] == m["resemblyzer_unseen_cos_to_another_clip"]


def test_another_clip_each_is_the_same_speaker_never_the_clip():
    from vqtool.data.speech import Clip
    from vqtool.families.speech.task import another_clip_each

    pool = [Clip(f"{s}{i}.wav", s, "test", "speechocean") for s in "abc" for i in range(3)]
    for seed in range(5):
        others = another_clip_each(pool[:6], pool, seed)
        assert all(o.speaker == c.speaker and o.path != c.path for c, o in zip(pool[:6], others))
    assert len({o.path for seed in range(20) for o in another_clip_each(pool[:1], pool, seed)}) == 2
    assert another_clip_each(pool[:1], pool[:1] + pool[3:], 0) is None  # speaker a has no other clip


def test_resemblyzer_judges_every_clip_at_one_level_when_asked():
    """Resemblyzer raises quiet clips to -30 dBFS but leaves louder ones as they are, so its verdict moves
    with the gain; `same_level` hears every clip at -30 dBFS."""
    pytest.importorskip("resemblyzer")
    from vqtool.evaluation import speaker_embedder

    embed = speaker_embedder()
    wave = synthetic_voice(1.5, 150) * 0.3  # -35 dBFS: raised; three times louder it is left as it is
    as_is, same_level = embed([wave, wave * 3]), embed([wave, wave * 3, wave * 0.1], same_level=True)
    assert float(as_is[0] @ as_is[1]) < 0.99
    assert float(same_level[0] @ same_level[1]) > 0.999 and float(same_level[0] @ same_level[2]) > 0.999


def test_non_speech_gets_one_warning_and_still_converts(tmp_path, tiny_speech, shared_data):
    rng = np.random.default_rng(0)
    noise = rng.normal(size=3 * SAMPLE_RATE) * 0.1
    t = np.arange(4 * SAMPLE_RATE) / SAMPLE_RATE
    chord = sum(np.sin(2 * np.pi * f * t) for f in (220, 277, 330)) * 0.2
    write(tmp_path / "noise.wav", noise)
    write(tmp_path / "chord.wav", chord)
    speech_clip = sorted((shared_data / "speechocean" / "audio").glob("*/*.flac"))[0]
    for source, warned in ((tmp_path / "noise.wav", True), (tmp_path / "chord.wav", True), (speech_clip, False)):
        out = tmp_path / f"{source.stem}.out.wav"
        result = run_cli("convert-voice", source, "-m", tiny_speech, "--to", "high", "-o", out)
        assert result.returncode == 0 and out.is_file(), result.stderr.decode()
        lines = [l for l in result.stderr.decode().splitlines() if "does not sound like speech" in l]
        assert len(lines) == (1 if warned else 0), (source, result.stderr.decode())
    result = run_cli("encode", tmp_path / "noise.wav", "-m", tiny_speech, "-o", tmp_path / "noise.vqc")
    assert result.returncode == 0 and b"does not sound like speech" in result.stderr


def test_no_speechocean_test_utterance_is_taken_for_non_speech(shared_data):
    from vqtool.audio import sounds_like_speech

    table = (shared_data / "speechocean" / "utterances.tsv").read_text().splitlines()[1:]
    test = [row.split("\t") for row in table if row.split("\t")[2] == "test"]
    verdicts = [sounds_like_speech(read_audio(str(shared_data / "speechocean" / "audio" / speaker / f"{utt}.flac"))[0])
                for utt, speaker, *_ in test]
    assert len(verdicts) == 500 and False not in verdicts


def test_speakers_lists_the_built_in_voices(tiny_speech):
    result = run_cli("speakers", "-m", tiny_speech, "--json")
    assert result.returncode == 0
    assert [s["name"] for s in json.loads(result.stdout)["speakers"]] == ["high", "low"]


def test_unknown_speaker_lists_the_valid_ones_and_writes_nothing(tmp_path, tiny_speech, voice_folder):
    out = tmp_path / "never.wav"
    result = run_cli("convert-voice", voice_folder / "low" / "0.wav", "-m", tiny_speech, "--to", "bob", "-o", out)
    assert result.returncode == 1 and not out.exists()
    message = result.stderr.decode()
    assert "unknown speaker 'bob'" in message and "high, low" in message and "Traceback" not in message


@pytest.mark.parametrize("reference,reason", [("short", "at least 0.5 s"), ("silent", "silent")])
def test_unusable_reference_clip_is_refused(tmp_path, tiny_speech, voice_folder, reference, reason):
    ref = write(tmp_path / "ref.wav", synthetic_voice(0.3, 200) if reference == "short" else np.zeros(16000))
    out = tmp_path / "never.wav"
    result = run_cli("convert-voice", voice_folder / "low" / "0.wav", "-m", tiny_speech, "--to-voice", ref, "-o", out)
    assert result.returncode == 1 and reason in result.stderr.decode() and not out.exists()


def test_fitted_voice_rebuilds_the_reference_better_and_trains_nothing(tiny_speech, voice_folder):
    from vqtool.families.speech.model import spectral_terms

    net = load(str(tiny_speech), device="cpu")
    before = {k: v.clone() for k, v in net.state_dict().items()}
    trainable = [p.requires_grad for p in net.parameters()]
    wave, _ = read_audio(str(voice_folder / "high" / "5.wav"))

    def reference_loss(voice):
        with torch.no_grad():
            magnitude, log_mel = net.features(net._padded(wave)[0])
            predicted = net.decode_latents(net.encode_features(log_mel).quantized, voice[None])
            return float(sum(spectral_terms(predicted, magnitude)))

    start = net.voice_of(wave)
    assert torch.equal(net.fitted_voice(wave, steps=0), start)
    fitted = net.fitted_voice(wave, steps=30, rate=0.05)
    width = len(start)
    assert fitted.shape == (net.fitted_size,) and abs(float(fitted[:width].norm()) - 1) < 1e-5
    assert not torch.allclose(fitted[:width], start) and fitted[width:].abs().max() > 0
    assert reference_loss(fitted) < reference_loss(start)
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())  # weights and buffers untouched
    assert [p.requires_grad for p in net.parameters()] == trainable and all(p.grad is None for p in net.parameters())
    with pytest.raises(VqtoolError, match="voice of 9 numbers"):
        net.decode(net.encode(wave), torch.ones(9))


def test_bad_inputs_fail_cleanly_without_partial_outputs(tmp_path, tiny_speech):
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"RIFF" + b"\x00" * 40)
    empty = tmp_path / "empty.flac"
    empty.write_bytes(b"")
    for source in (bad, empty, tmp_path / "missing.wav"):
        out = tmp_path / "out.wav"
        result = run_cli("convert-voice", source, "-m", tiny_speech, "--to", "low", "-o", out)
        message = result.stderr.decode()
        assert result.returncode == 1 and str(source) in message and "Traceback" not in message
        assert not out.exists() and not list(tmp_path.glob(".out.wav*"))
    result = run_cli("encode", bad, "-m", tiny_speech, "-o", tmp_path / "bad.vqc")
    assert result.returncode == 1 and not (tmp_path / "bad.vqc").exists()


def test_silence_encodes_and_then_needs_a_voice_to_decode(tmp_path, tiny_speech):
    silent = write(tmp_path / "silent.wav", np.zeros(16000, np.float32))
    assert run_cli("encode", silent, "-m", tiny_speech, "-o", tmp_path / "s.vqc").returncode == 0
    result = run_cli("decode", tmp_path / "s.vqc", "-o", tmp_path / "s.wav")
    assert result.returncode == 1 and "--to" in result.stderr.decode()
    assert run_cli("decode", tmp_path / "s.vqc", "--to", "low", "-o", tmp_path / "s.wav").returncode == 0
    assert np.abs(sf.read(tmp_path / "s.wav")[0]).max() < 0.5


def test_mixing_images_and_audio_or_compressing_audio_is_a_usage_error(tmp_path, tiny_speech, voice_folder):
    clip = voice_folder / "low" / "0.wav"
    assert run_cli("encode", clip, "--compress", "-m", tiny_speech).returncode == 2
    from PIL import Image
    Image.new("RGB", (8, 8)).save(tmp_path / "i.png")
    assert run_cli("encode", clip, tmp_path / "i.png").returncode == 2


def test_several_records_join_into_one_file_or_split_into_a_folder(tmp_path, tiny_speech, voice_folder):
    clips = [voice_folder / "low" / "0.wav", voice_folder / "high" / "1.wav"]
    assert run_cli("encode", *clips, "-m", tiny_speech, "-o", tmp_path / "both.vqc").returncode == 0
    assert run_cli("decode", tmp_path / "both.vqc", "-o", tmp_path / "joined.wav").returncode == 0
    assert sf.info(tmp_path / "joined.wav").frames == 48000
    assert run_cli("decode", tmp_path / "both.vqc", "-o", tmp_path / "split/").returncode == 0
    assert sorted(p.name for p in (tmp_path / "split").iterdir()) == ["0.wav", "1.wav"]


def test_corrupt_audio_header_is_one_clear_error(tmp_path, tiny_speech, voice_folder):
    from vqtool.codes import read_codes

    assert run_cli("encode", voice_folder / "low" / "0.wav", "-m", tiny_speech, "-o", tmp_path / "a.vqc").returncode == 0
    record = read_codes((tmp_path / "a.vqc").read_bytes())[0]
    record.media["samples"] *= 100  # claims far more audio than its codes hold
    (tmp_path / "bad.vqc").write_bytes(record.to_bytes())
    result = run_cli("decode", tmp_path / "bad.vqc", "-o", tmp_path / "bad.wav")
    assert result.returncode == 1 and "samples at" in result.stderr.decode() and not (tmp_path / "bad.wav").exists()


# --- the vocoder head ----------------------------------------------------------------------------------
def test_vocoder_head_keeps_the_codes_and_griffin_lim_stays_selectable(tmp_path, tiny_speech, tiny_vocoder,
                                                                       voice_folder):
    base, net = load(str(tiny_speech), "cpu"), load(str(tiny_vocoder), "cpu")
    assert base.vocoder is None and base.vocoding == "griffin-lim" and net.vocoding == "neural"
    wave = read_audio(str(voice_folder / "low" / "2.wav"))[0]
    assert torch.equal(base.encode(wave), net.encode(wave))  # only a head after the codes was trained
    neural = net.convert(wave, net.voice("high"))
    net.use_vocoder("griffin-lim")
    assert np.array_equal(net.convert(wave, net.voice("high")), base.convert(wave, base.voice("high")))
    assert len(neural) == len(wave) and not np.allclose(neural, base.convert(wave, base.voice("high")))
    with pytest.raises(VqtoolError, match="no neural vocoder"):
        base.use_vocoder("neural")
    prov = net.metadata["provenance"]
    assert prov["vocoder_of"]["sha256"] == base.sha256 and base.sha256 in prov["codes_of"]
    assert "select_by" in net.metadata["metrics"]["training"]  # held-back training clips picked the weights


def test_vocoder_option_on_the_command_line(tmp_path, tiny_speech, tiny_vocoder, voice_folder):
    source = voice_folder / "low" / "3.wav"
    outputs = {}
    for choice in ("neural", "griffin-lim"):
        out = tmp_path / f"{choice}.wav"
        result = run_cli("convert-voice", source, "-m", tiny_vocoder, "--to", "high", "--vocoder", choice, "-o", out)
        assert result.returncode == 0, result.stderr.decode()
        outputs[choice] = sf.read(out)[0]
    assert len(outputs["neural"]) == len(outputs["griffin-lim"]) == 24000
    assert not np.allclose(outputs["neural"], outputs["griffin-lim"])
    bad = run_cli("convert-voice", source, "-m", tiny_vocoder, "--to", "high", "--vocoder", "wavenet",
                  "-o", tmp_path / "x.wav")
    assert bad.returncode == 2 and b"unknown vocoder 'wavenet'" in bad.stderr and not (tmp_path / "x.wav").exists()
    old = run_cli("convert-voice", source, "-m", tiny_speech, "--to", "high", "--vocoder", "neural",
                  "-o", tmp_path / "y.wav")
    assert old.returncode == 1 and b"no neural vocoder" in old.stderr and b"Traceback" not in old.stderr
    assert not (tmp_path / "y.wav").exists()


def test_codes_of_the_model_before_the_vocoder_decode_with_it(tmp_path, tiny_speech, tiny_vocoder, voice_folder):
    codes = tmp_path / "a.vqc"
    assert run_cli("encode", voice_folder / "low" / "1.wav", "-m", tiny_speech, "-o", codes).returncode == 0
    for vocoder in ("neural", "griffin-lim"):
        out = tmp_path / f"{vocoder}.wav"
        result = run_cli("decode", codes, "-m", tiny_vocoder, "--vocoder", vocoder, "-o", out)
        assert result.returncode == 0, result.stderr.decode()
        assert sf.info(out).frames == 24000
    wrong = run_cli("decode", codes, "-m", tiny_vocoder, "--vocoder", "nope", "-o", tmp_path / "z.wav")
    assert wrong.returncode == 2 and not (tmp_path / "z.wav").exists()


# --- voices nobody recorded: frequency warp and decoder fine-tuning -------------------------------------
@settings(max_examples=30, deadline=None)
@given(st.integers(8, 60), st.floats(0.7, 1.4))
def test_warp_moves_a_harmonic_by_the_factor(peak, factor):
    from vqtool.audio import warp_frequency

    spectrum = torch.zeros(1, 257, 3)
    spectrum[0, peak] = 1.0
    warped = warp_frequency(spectrum, torch.tensor([factor]))
    assert abs(float(warped[0, :, 1].argmax()) - peak / factor) <= 1.0  # a factor below 1 raises the voice
    assert torch.equal(warp_frequency(spectrum, torch.tensor([1.0])), spectrum)


def test_voice_warp_gives_half_the_crops_a_scaled_voice_and_its_embedding(tiny_speech, voice_folder):
    from vqtool.data.speech import list_clips, load_waves
    from vqtool.families.speech.task import WARP_STEPS, SpeechTask

    base = load(str(tiny_speech), "cpu")
    clips = list_clips(voice_folder)
    task = SpeechTask(base.config, clips, load_waves(clips), base.speaker_encoder, voice_warp=1.3)
    assert len(task.pool) == WARP_STEPS and float(task.factors[task.unwarped]) == pytest.approx(1.0)
    assert task.factors.min() == pytest.approx(1 / 1.3) and task.factors.max() == pytest.approx(1.3)
    unwarped = base.speaker_encoder.embed(load_waves(clips[:1]))[0]
    owner = base.config.speakers.index(clips[0].speaker)
    assert torch.allclose(task.pool[task.unwarped][owner][0], unwarped, atol=1e-5)
    assert not torch.allclose(task.pool[0][owner][0], unwarped, atol=1e-2)  # a warped voice embeds elsewhere
    warps = torch.cat([task.batch(torch.arange(4), "cpu", torch.Generator().manual_seed(i))[2] for i in range(50)])
    assert 0.4 < float((warps == 1).float().mean()) < 0.75 and set(warps.tolist()) <= set(task.factors.tolist())
    loss, logs = task.loss(task.build(), task.batch(torch.arange(4), "cpu", torch.Generator().manual_seed(0)), None)
    assert torch.isfinite(loss) and "log_l1" in logs


def test_decoder_fine_tune_keeps_codes_voices_and_code_files(tmp_path, tiny_speech, tiny_vocoder, voice_folder):
    out = tmp_path / "warped"
    result = run_cli("train", "speech", "--data", voice_folder, "--from-model", tiny_vocoder, "--voice-warp", "1.3",
                     "--name", "talk-warp", "--out", out, "--steps", "12", "--batch-size", "4", "--quiet")
    assert result.returncode == 0, result.stderr.decode()
    base, tuned = load(str(tiny_vocoder), "cpu"), load(str(out / "talk-warp.safetensors"), "cpu")
    before, after = base.state_dict(), tuned.state_dict()
    changed = {name.split(".")[0] for name in before if not torch.equal(before[name], after[name])}
    assert changed and changed <= {"pre", "blocks", "head"}  # encoder, codebook, voices, vocoder head kept
    wave = read_audio(str(voice_folder / "low" / "2.wav"))[0]
    assert torch.equal(base.encode(wave), tuned.encode(wave))
    prov = tuned.metadata["provenance"]
    assert prov["decoder_of"]["sha256"] == base.sha256 and base.sha256 in prov["codes_of"] and prov["voice_warp"] == 1.3
    assert "only the decoder was trained" in (out / "talk-warp.md").read_text()
    codes = tmp_path / "a.vqc"  # a code file of the model before decodes with the fine-tuned one
    assert run_cli("encode", voice_folder / "low" / "1.wav", "-m", tiny_vocoder, "-o", codes).returncode == 0
    decoded = run_cli("decode", codes, "-m", out / "talk-warp.safetensors", "-o", tmp_path / "a.wav")
    assert decoded.returncode == 0 and sf.info(tmp_path / "a.wav").frames == 24000, decoded.stderr.decode()


def test_decoder_fine_tune_refuses_another_encoder_or_other_speakers(tmp_path, tiny_speech, voice_folder):
    both = run_cli("train", "speech", "--data", voice_folder, "--from-model", tiny_speech, "--speaker-encoder",
                   tiny_speech, "--steps", "1", "--out", tmp_path / "a")
    assert both.returncode == 2 and b"--from-model keeps" in both.stderr
    other = tmp_path / "others"
    (other / "solo").mkdir(parents=True)
    for i in range(3):
        sf.write(other / "solo" / f"{i}.wav", synthetic_voice(1.5, 150.0, seed=i), 16000)
    wrong = run_cli("train", "speech", "--data", other, "--from-model", tiny_speech, "--steps", "1",
                    "--out", tmp_path / "b")
    assert wrong.returncode == 2 and b"differ from the voices" in wrong.stderr and b"Traceback" not in wrong.stderr
    vocoder = run_cli("train", "vocoder", "--speech", tiny_speech, "--data", other, "--steps", "1",
                      "--out", tmp_path / "c")  # the same check when a vocoder head is trained onto a model
    assert vocoder.returncode == 2 and b"differ from the voices" in vocoder.stderr
    assert not any((tmp_path / name).exists() for name in "abc")


def test_chunked_vocoder_output_matches_whole_file(tiny_vocoder, monkeypatch):
    """The head reads a few neighbouring frames only, so the halo covers it: seams are inaudible."""
    net = load(str(tiny_vocoder), "cpu")
    monkeypatch.setattr(speech, "CHUNK_CODES", 512)
    wave = np.concatenate([synthetic_voice(1.5, 110, seed=s) for s in range(18)])  # 27 s: three chunks of 512
    chunked_audio = net.convert(wave, net.voice("high"), keep_level=True)
    monkeypatch.setattr(speech, "CHUNK_CODES", 10_000)
    whole_audio = net.convert(wave, net.voice("high"), keep_level=True)
    error = np.sqrt(np.mean((chunked_audio - whole_audio) ** 2) / np.mean(whole_audio ** 2))
    assert 20 * np.log10(error) < -60, error


def test_kept_activations_give_the_same_codes_and_audio_as_recomputing(tiny_speech, monkeypatch):
    """Streams up to KEEP_SAMPLES keep each window's activations between the statistics passes (each layer
    runs once); longer ones recompute in flat memory. Both must give the same numbers, bit for bit."""
    net = load(str(tiny_speech), "cpu")
    monkeypatch.setattr(speech, "CHUNK_CODES", 512)
    wave = np.concatenate([synthetic_voice(1.5, 110 + 10 * s, seed=s) for s in range(16)])  # 24 s: three chunks of 512
    kept_codes, kept_audio = net.encode(wave), net.convert(wave, net.voice("high"))
    monkeypatch.setattr(speech, "KEEP_SAMPLES", 0)
    assert torch.equal(net.encode(wave), kept_codes)
    assert np.array_equal(net.convert(wave, net.voice("high")), kept_audio)
