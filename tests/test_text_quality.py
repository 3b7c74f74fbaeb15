"""The shipped text VAEs on their test splits: the card's accuracy reproduces on the whole split, the
matcher beats the majority class, and the codes carry part of the sentence."""
import pytest
import torch

import vqtool
from vqtool.hub import describe

MODELS = {"text-sick": "sick", "text-msrp": "msrp"}


@pytest.fixture(scope="module", params=list(MODELS))
def shipped(request, shared_data):
    from vqtool.data.sentences import read_pairs
    from vqtool.families.text.task import pair_tensors

    torch.set_num_threads(1)
    model = vqtool.load(request.param, device="cpu")
    pairs = read_pairs(shared_data / "sentence-pairs", MODELS[request.param], "test")
    return request.param, model, pairs, pair_tensors(model.vocabulary, pairs, model.config.length)


def test_the_card_reproduces_on_the_test_pairs(shipped):
    from vqtool.families.text.task import pair_metrics

    name, model, _, tensors = shipped
    found = pair_metrics(model, tensors, "cpu", MODELS[name])
    card = describe(name)["metrics"]
    assert found["accuracy"] == pytest.approx(card["test_accuracy"], abs=2e-4)
    if "f1" in found:
        assert found["f1"] == pytest.approx(card["test_f1"], abs=2e-4)


MARGIN = {"text-sick": 0.05, "text-msrp": 0.005}  # over the majority class (measured: +12.2 and +0.9 points)


def test_the_matcher_beats_the_majority_class(shipped):
    """The whole test split through the library call users make, against always saying the training
    split's most frequent label."""
    name, model, pairs, _ = shipped
    guess = model.match([p.a for p in pairs], [p.b for p in pairs]).argmax(1)
    truth = torch.tensor([p.label for p in pairs])
    accuracy = float((torch.from_numpy(guess) == truth).float().mean())
    majority = describe(name)["metrics"]["test_majority_accuracy"]
    assert accuracy >= majority + MARGIN[name], (accuracy, majority)


def test_the_codes_carry_part_of_the_sentence(shipped):
    """Decoded from their codes, 300 test sentences keep a share of their words in place, and the
    card's training record holds the validation curve the weights were chosen on."""
    import random

    name, model, pairs, _ = shipped
    sentences = list(dict.fromkeys(s for p in pairs for s in (p.a, p.b)))
    random.Random(0).shuffle(sentences)  # the card's order (task.text_task); its first 300 of 2,000
    sentences = sentences[:300]
    tokens = model.tokens(sentences)
    with torch.no_grad():
        ids = model.generate(model.encode(tokens)[0])
    real = tokens != 0
    accuracy = float(((ids == tokens) & real).sum() / real.sum())
    card = describe(name)["metrics"]
    assert accuracy >= card["test_word_accuracy"] - 0.05 and accuracy > 0.1, accuracy
    training = card["training"]
    assert training["selected_step"] in [p["step"] for p in training["curve"]]
