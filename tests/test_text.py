"""Text VAE (Shen et al., 2018): the encoder's strides, cosine logits, the semi-supervised batch, KL
annealing, the labelled shares, selection by validation, CLI forms and bad input, torchrun."""
import json

import numpy as np
import pytest
import torch
from hypothesis import given, settings, strategies as st

from vqtool.families.text import sentence_length
from vqtool.families.text.model import TextConfig, TextVAE, too_long
from vqtool.families.text.task import f1_of, labelled_share

from conftest import run_cli

WORDS = ["<pad>", "<bos>", "<eos>", "<unk>", "a", "dog", "cat", "runs", "sits", "man", "plays", "guitar"]


def tiny(decoder="deconv", layers=3, **kw) -> TextVAE:
    torch.manual_seed(0)
    config = TextConfig(words=WORDS, labels=["ENTAILMENT", "NEUTRAL", "CONTRADICTION"], decoder=decoder,
                        layers=layers, embed=8, channels=[8] + [16] * (layers - 2), features=16, latent=4,
                        hidden=8, matcher_hidden=8, **kw)
    return TextVAE(config).eval()


@pytest.mark.parametrize("layers", [2, 3, 4, 5])
def test_the_strides_reduce_the_fixed_length_to_one(layers):
    model = tiny(layers=layers)
    length = sentence_length(layers)
    assert length == {2: 13, 3: 29, 4: 61, 5: 125}[layers]
    h = model.embedding(torch.zeros(2, length, dtype=torch.long)).transpose(1, 2)
    for conv in model.convolutions:
        h = conv(h)
    assert h.shape[-1] == 1
    mu, _ = model.encode(model.tokens(["a dog runs", "a cat sits"]))
    assert mu.shape == (2, 4)
    assert model.decode(mu).shape == (2, length, len(WORDS))  # the deconvolutions mirror it back


def test_cosine_logits_are_the_cosine_over_the_temperature():
    model = tiny(temperature=0.05)
    h = torch.randn(3, 8)
    expected = torch.stack([torch.nn.functional.cosine_similarity(h[i:i + 1], model.embedding.weight, dim=-1)
                            for i in range(3)]) / 0.05
    expected[:, 0] = 0  # <pad>'s embedding is zero: cosine 0
    assert torch.allclose(model.cosine_logits(h), expected, atol=1e-4)
    dog = model.embedding.weight[WORDS.index("dog")].detach() * 3  # any length: only the direction counts
    logits = model.cosine_logits(dog).detach()
    assert logits.argmax() == WORDS.index("dog") and float(logits.max()) == \
        pytest.approx(1 / 0.05)


@given(st.lists(st.sampled_from(WORDS[4:] + ["zebra", "DOG", "runs!"]), max_size=40))
@settings(max_examples=60, deadline=None)
def test_any_sentence_fits_the_fixed_length_and_decodes_back(words):
    model = tiny()
    text = " ".join(words)
    ids = model.tokens([text])
    assert ids.shape == (1, 29) and too_long(text, 29) == (len(words) > 28)
    known = [w.lower().strip("!") if w.lower().strip("!") in WORDS else "<unk>" for w in words][:28]
    assert model.vocabulary.decode(ids[0].tolist()) == " ".join(known)


def test_lstm_decoder_reads_the_previous_words_and_generates_greedily():
    model = tiny("lstm")
    tokens = model.tokens(["a dog runs", "a man plays a guitar"])
    mu, _ = model.encode(tokens)
    full = model.decode(mu, tokens)
    changed = tokens.clone()
    changed[:, 2] = WORDS.index("cat")
    later = model.decode(mu, changed)
    assert torch.allclose(full[:, :3], later[:, :3]) and not torch.allclose(full[:, 3], later[:, 3])
    ids = model.generate(mu)
    assert ids.shape == (2, 29) and not ((ids == 0) | (ids == 1)).any()  # never <pad> or <bos>


def test_labelled_shares_are_fixed_nested_and_the_same_for_every_run():
    pairs = list(range(1000))
    shares = {f: labelled_share(pairs, f) for f in (0.1, 0.25, 0.5, 1.0)}
    assert [len(shares[f]) for f in shares] == [100, 250, 500, 1000]
    assert set(shares[0.1]) < set(shares[0.25]) < set(shares[0.5]) < set(shares[1.0])
    assert labelled_share(pairs, 0.1) == shares[0.1] and shares[0.1] != list(range(100))


def test_f1_is_the_paraphrase_class_f1():
    from sklearn.metrics import f1_score

    rng = np.random.default_rng(0)
    guess, truth = rng.integers(0, 2, 200), rng.integers(0, 2, 200)
    assert f1_of(guess, truth) == pytest.approx(f1_score(truth, guess))


# ---- a tiny task, trained for real ----

def slice_of(source, target, lines: int) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text("".join(source.read_text(encoding="utf-8-sig").splitlines(keepends=True)[:lines + 1]))


@pytest.fixture(scope="module")
def pairs_folder(tmp_path_factory, shared_data):
    """The first pairs of every SICK and MSRP split (real sentences, a few hundred)."""
    from vqtool.data.sentences import SPLIT_FILES

    folder = tmp_path_factory.mktemp("pairs")
    for task, splits in SPLIT_FILES.items():
        for split, name in splits.items():
            slice_of(shared_data / "sentence-pairs" / name, folder / name, 160 if split == "train" else 40)
    return folder


TINY = ["--embed", "16", "--features", "32", "--latent", "8", "--hidden", "16", "--min-count", "1",
        "--batch-size", "8", "--unlabelled-batch", "8", "--validate-every", "10", "--anneal-steps", "20", "--quiet"]


@pytest.fixture(scope="module")
def tiny_sick(tmp_path_factory, pairs_folder):
    out = tmp_path_factory.mktemp("textvae")
    result = run_cli("train", "textvae", "--data", pairs_folder, "--flickr", out / "none", "--task", "sick",
                     "--labels", "0.25", "--steps", "40", "--name", "tiny", "--out", out, *TINY)
    assert result.returncode == 0, result.stderr.decode()[-2000:]
    return out / "tiny.safetensors"


def test_training_selects_by_validation_and_records_the_curve(tiny_sick):
    from vqtool.hub import read_metadata

    meta = read_metadata(tiny_sick)
    metrics, prov = meta["metrics"], meta["provenance"]
    training = metrics["training"]
    assert [p["step"] for p in training["curve"]] == [10, 20, 30, 40]
    assert training["selected_step"] == max(training["curve"], key=lambda p: p["accuracy"])["step"]
    best = [p for p in training["curve"] if p["step"] == training["selected_step"]][0]
    assert metrics["validation_accuracy"] == pytest.approx(best["accuracy"], abs=1e-6)  # the exported weights
    assert metrics["labelled_pairs"] == 40 and prov["train_items"] == 40 and prov["train_data"] == "sick2014"
    assert 0 <= metrics["test_accuracy"] <= 1 and metrics["test_pairs"] == 40
    assert metrics["test_perplexity"] > 1 and "test_active_dims" in metrics
    assert meta["extra"]["task"] == "textvae" and "weights_dtype" in prov  # float16 by default
    card = tiny_sick.with_suffix(".md").read_text()
    assert "Test accuracy by share of labelled training pairs" in card and "| 25% | 40 |" in card


def test_a_resumed_run_keeps_the_curve_and_exports_the_selected_weights(tmp_path, tiny_sick, pairs_folder):
    import shutil

    from vqtool.hub import read_metadata

    run = tmp_path / "run"
    shutil.copytree(tiny_sick.parent, run)
    (run / "tiny.safetensors").unlink()
    result = run_cli("train", "textvae", "--data", pairs_folder, "--flickr", run / "none", "--task", "sick",
                     "--labels", "0.25", "--steps", "40", "--name", "tiny", "--out", run, "--resume", *TINY)
    assert result.returncode == 0, result.stderr.decode()[-2000:]
    before, after = read_metadata(tiny_sick)["metrics"], read_metadata(run / "tiny.safetensors")["metrics"]
    assert after["training"]["curve"] == before["training"]["curve"]
    assert after["training"]["selected_step"] == before["training"]["selected_step"]
    assert after["validation_accuracy"] == before["validation_accuracy"]
    assert after["test_accuracy"] == before["test_accuracy"]


def test_semi_supervised_batch_mixes_labelled_pairs_and_unlabelled_text(tmp_path, pairs_folder):
    from vqtool.families.text.task import text_task

    settings_ = dict(decoder="deconv", layers=3, embed=8, channels=[8, 16], features=16, latent=4, hidden=8,
                     unlabelled_batch=5, anneal_steps=4)
    task = text_task(pairs_folder, tmp_path / "none", "sick", 0.5, settings_, 1, 6, 10, False, quiet=True)
    batch = task.batch(torch.arange(6), "cpu", torch.Generator().manual_seed(0))
    assert batch["a"].shape == batch["b"].shape == (6, 29) and batch["label"].shape == (6,)
    assert batch["unlabelled"].shape == (5, 29)
    model = task.build()
    betas = [task.loss(model, batch, torch.Generator().manual_seed(0))[1]["beta"] for _ in range(6)]
    assert betas == pytest.approx([0.25, 0.5, 0.75, 1.0, 1.0, 1.0])  # annealed linearly, then held
    supervised = text_task(pairs_folder, tmp_path / "none", "sick", 0.5, {**settings_, "decoder": "none"}, 1, 6, 10,
                           False, quiet=True)
    assert supervised.batch(torch.arange(6), "cpu", torch.Generator())["unlabelled"] is None
    assert set(supervised.loss(supervised.build(), batch | {"unlabelled": None}, torch.Generator())[1]) == \
        {"match_ce", "match_acc"}


def test_unlabelled_text_never_holds_a_held_out_sentence(tmp_path, pairs_folder):
    from vqtool.data.sentences import held_out_sentences, unlabelled_sentences
    from vqtool.data.text import normalise

    text = unlabelled_sentences(pairs_folder, None)
    held = held_out_sentences(pairs_folder)
    train_only = {normalise(s) for s in text.sentences} - held
    assert len(train_only) < len({normalise(s) for s in text.sentences})  # SICK reuses sentences across splits...
    assert text.shared_with_test > 0  # ...and says how many


def test_match_embed_reconstruct_and_interpolate(tmp_path, tiny_sick):
    m = ["-m", tiny_sick]
    one = run_cli("match", "A man is playing a guitar", "A person plays an instrument", *m)
    assert one.returncode == 0, one.stderr.decode()
    label, probability = one.stdout.decode().strip().split("\t")
    assert label in ("entailment", "neutral", "contradiction") and 0 < float(probability) <= 1
    record = json.loads(run_cli("match", "a dog runs", "a cat sits", *m, "--json").stdout)
    assert set(record["probabilities"]) == {"entailment", "neutral", "contradiction"}
    assert sum(record["probabilities"].values()) == pytest.approx(1, abs=1e-3)

    vectors = tmp_path / "v.npy"
    out = run_cli("embed-text", "-", *m, "-o", vectors, input=b"a dog runs\n\n a cat sits \n")
    assert out.returncode == 0 and "skipped 1 blank" in out.stderr.decode()
    array = np.load(vectors)
    assert array.shape == (2, 8) and array.dtype == np.float32
    lines = run_cli("embed-text", "a dog runs", "a cat sits", *m).stdout.decode().splitlines()
    assert np.allclose([json.loads(line)["vector"] for line in lines], array, atol=1e-5)  # the same codes
    piped = run_cli("embed-text", "a dog runs", *m, "-o", "-").stdout
    assert piped[:6] == b"\x93NUMPY"

    again = run_cli("reconstruct-text", "a dog runs", "a cat sits", *m, "--json")
    assert again.returncode == 0 and len(again.stdout.decode().splitlines()) == 2
    walk = json.loads(run_cli("interpolate-text", "a dog runs", "a man plays", "--steps", "4", *m, "--json").stdout)
    assert [s["weight"] for s in walk["steps"]] == pytest.approx([0, 1 / 3, 2 / 3, 1], abs=1e-4)


def test_long_unknown_and_non_utf8_input_are_defined(tmp_path, tiny_sick):
    m = ["-m", tiny_sick]
    long = " ".join(["dog"] * 40)
    out = run_cli("embed-text", long, "zyzzyva quux", *m)
    assert out.returncode == 0
    err = out.stderr.decode()
    assert "1 sentence(s) longer than 28 words were cut" in err and "2 word(s) unknown" in err
    assert json.loads(out.stdout.decode().splitlines()[1])["unknown_words"] == 2
    bad = run_cli("embed-text", "-", *m, input=b"a dog runs\n\xff\xfe broken\na cat\n")
    assert bad.returncode == 1 and len(bad.stdout.decode().splitlines()) == 2  # the rest still runs
    assert "stdin line 2: not UTF-8 text" in bad.stderr.decode() and "Traceback" not in bad.stderr.decode()
    pairs = tmp_path / "pairs.tsv"
    pairs.write_bytes(b"a dog runs\ta cat runs\none column only\n\na man\t\n\xff\tx\na\tb\n")
    result = run_cli("match", "--pairs", pairs, *m)
    assert result.returncode == 1 and len(result.stdout.decode().splitlines()) == 2
    err = result.stderr.decode()
    assert "line 2: expected two tab-separated sentences" in err and "line 4:" in err and "line 5: not UTF-8" in err


@pytest.mark.parametrize("args, needle", [
    (["match", "only one"], "two sentences"),
    (["match", "a", "b", "--pairs", "x.tsv"], "not both"),
    (["interpolate-text", "a", "b", "--steps", "1"], "2..50"),
    (["interpolate-text", "a", " ", "--steps", "3"], "blank"),
    (["embed-text", "a", "-o", "v.txt"], ".npy or .jsonl"),
])
def test_bad_options_are_usage_errors(tiny_sick, args, needle):
    result = run_cli(*args, "-m", tiny_sick)
    assert result.returncode == 2 and needle in result.stderr.decode()


def test_training_options_are_checked(tmp_path, pairs_folder):
    for args, needle in ((["--labels", "0.3"], "0.1, 0.25"), (["--decoder", "gru"], "deconv, lstm, none"),
                         (["--task", "snli"], "sick or msrp")):
        result = run_cli("train", "textvae", "--data", pairs_folder, "--out", tmp_path, "--steps", "1", *args)
        assert result.returncode == 2 and needle in result.stderr.decode()


def test_supervised_only_model_matches_but_cannot_write(tmp_path, pairs_folder):
    result = run_cli("train", "textvae", "--data", pairs_folder, "--flickr", tmp_path / "none", "--task", "msrp",
                     "--labels", "0.1", "--decoder", "none", "--steps", "6", "--name", "sup", "--out", tmp_path,
                     "--validate-every", "3", *TINY[:-5], "--quiet")
    assert result.returncode == 0, result.stderr.decode()[-2000:]
    model = tmp_path / "sup.safetensors"
    said = run_cli("match", "a b", "a c", "-m", model).stdout.decode()
    assert said.split("\t")[0] in ("paraphrase", "not paraphrase")
    refused = run_cli("reconstruct-text", "a dog", "-m", model)
    assert refused.returncode == 1 and "without a decoder" in refused.stderr.decode()


def test_textvae_trains_under_torchrun(tmp_path, pairs_folder):
    from test_distributed import torchrun

    from vqtool.hub import read_metadata

    result = torchrun("-m", "vqtool", "train", "textvae", "--data", pairs_folder, "--flickr", tmp_path / "none",
                      "--decoder", "lstm", "--name", "ddp", "--out", tmp_path, "--steps", "3", *TINY[:10],
                      "--batch-size", "8", "--unlabelled-batch", "4", "--validate-every", "3", "--quiet")
    assert result.returncode == 0, result.stderr.decode()[-2000:]
    meta = read_metadata(tmp_path / "ddp.safetensors")
    assert meta["provenance"]["world_size"] == 2 and meta["metrics"]["training"]["curve"]
