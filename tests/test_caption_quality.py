"""The shipped `captions-flickr` on the held-out Flickr8k test photos: its card's numbers reproduce, its
captions differ from each other and are about the photo, and its latent is in use."""
import pytest
import torch

import vqtool
from vqtool.hub import describe

MODEL = "captions-flickr"


@pytest.fixture(scope="module")
def model():
    return vqtool.load(MODEL, device="cpu")


@pytest.fixture(scope="module")
def test_set(shared_data, model):
    from vqtool.data.captions import flickr_splits
    from vqtool.data.text import Vocabulary
    from vqtool.families.caption.task import held_out_set

    splits = flickr_splits(shared_data / "flickr8k-1k")
    return splits, held_out_set(splits, splits.test, Vocabulary(model.config.words), model.config.max_words + 1)


def test_the_card_reproduces_on_the_test_photos(model, test_set):
    """The card's first noise seed, recomputed: every per-seed number at N = 5 and 20, and the KL."""
    from vqtool.families.caption.task import EVAL_SEEDS, SPREAD_KEYS, measure, training_captions

    torch.set_num_threads(1)
    splits, data = test_set
    seen = training_captions([c for caps in splits.train.values() for c in caps] + splits.extra_text)
    found = measure(model, {"test": data, "training_captions": seen}, "cpu", seeds=EVAL_SEEDS[:1])
    card = describe(MODEL)["metrics"]
    for n in (5, 20):
        for key in SPREAD_KEYS:
            first = card[f"test_{key}_{n}_per_seed"][0]
            assert found[f"test_{key}_{n}"] == pytest.approx(first, rel=0.02, abs=0.02), (key, n)
    assert found["kl_nats"] == pytest.approx(card["kl_nats"], rel=0.01)


def test_captions_differ_and_are_about_the_photo(model, test_set):
    """Photos whose references say "dog" (or "dogs") at least four times in five get captions that
    say it too; five captions of a photo are mostly different sentences."""
    from vqtool.data.text import tokenise

    splits, data = test_set
    dog = {"dog", "dogs"}
    dogs = [i for i, refs in enumerate(data["references"]) if sum(bool(dog & set(r.split())) for r in refs) >= 4]
    assert len(dogs) >= 10
    features = model.image_features(data["images"][dogs])
    ids, _ = model.generate(features, 5, generator=torch.Generator().manual_seed(0))
    captions = [[model.vocabulary.decode(row) for row in photo] for photo in ids.tolist()]
    said_dog = sum(bool(dog & set(tokenise(c))) for photo in captions for c in photo)
    assert said_dog >= 0.75 * 5 * len(dogs), (said_dog, len(dogs))  # 90 of 105 when measured
    assert sum(len(set(photo)) for photo in captions) / len(captions) >= 3


def test_the_card_holds_the_three_models_and_the_latent_is_used():
    card = describe(MODEL)["metrics"]
    assert card["active_dims"] >= 4 and card["kl_nats"] > 1
    kinds = " ".join(card["baselines"])
    assert "beam search" in kinds and "CVAE" in kinds
