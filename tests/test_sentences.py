"""Sentence pairs for the text VAE: the official splits as the files give them, labels, and unlabelled
text that holds no held-out sentence (the groundwork of the deconvolutional text VAE issue)."""
import pytest
from hypothesis import given, strategies as st

from vqtool.data.sentences import (MSRP_LABELS, SICK_LABELS, held_out_sentences, read_msrp, read_pairs, read_sick,
                                   unlabelled_sentences)
from vqtool.data.text import Vocabulary, normalise, tokenise
from vqtool.errors import VqtoolError

PAIRS = "sentence-pairs"


@given(st.text(max_size=80), st.text(st.characters(max_codepoint=127), max_size=80))
def test_normalise_ignores_case_spacing_and_punctuation(text, ascii_text):
    assert normalise(normalise(text)) == normalise(text) == " ".join(tokenise(text))
    # (ASCII: Unicode case mappings can add letters, "ß".upper() == "SS")
    assert normalise(ascii_text.upper() + " ,.! ") == normalise("  " + ascii_text.lower())


def test_the_official_splits_and_labels(shared_data):
    root = shared_data / PAIRS
    sizes = {(t, s): len(read_pairs(root, t, s)) for t in ("sick", "msrp") for s in ("train", "validation", "test")}
    assert sizes == {("sick", "train"): 4500, ("sick", "validation"): 500, ("sick", "test"): 4927,
                     ("msrp", "train"): 3576, ("msrp", "validation"): 500, ("msrp", "test"): 1725}
    sick = read_pairs(root, "sick", "test")
    assert {SICK_LABELS[p.label] for p in sick} == set(SICK_LABELS) and all(1 <= p.relatedness <= 5 for p in sick)
    msrp = read_pairs(root, "msrp", "test")
    assert sum(p.label for p in msrp) / len(msrp) == pytest.approx(0.665, abs=0.001)  # the README's "always 1"
    assert msrp[0].a.startswith("PCCW's chief operating officer") and MSRP_LABELS[msrp[0].label] == "paraphrase"


def test_unlabelled_text_holds_no_held_out_sentence(shared_data):
    text = unlabelled_sentences(shared_data / PAIRS, shared_data / "flickr8k-1k")
    held = held_out_sentences(shared_data / PAIRS)
    captions = text.sentences[len(text.sentences) - (40455 - sum(text.dropped.values())):]
    assert not {normalise(c) for c in captions} & held  # no caption that is a validation or test sentence
    assert text.dropped["matches a SICK or MSRP validation or test sentence"] > 50
    assert text.dropped["caption of a Flickr test photo"] == 480
    assert text.shared_with_test > 1000  # SICK reuses its sentences across splits; counted, kept as training text
    vocab = Vocabulary.build(text.sentences, min_count=2)
    assert 5000 < len(vocab) < 30000


def test_bad_pair_files_are_named_errors(tmp_path):
    sick = tmp_path / "sick.txt"
    sick.write_text("pair_ID\tsentence_A\tsentence_B\trelatedness_score\tentailment_judgment\n1\ta\tb\t4.5\tMAYBE\n")
    with pytest.raises(VqtoolError, match="line 2"):
        read_sick(sick)
    msrp = tmp_path / "msrp.tsv"
    msrp.write_bytes(b"\xef\xbb\xbfQuality\t#1 ID\t#2 ID\t#1 String\t#2 String\n1\t1\t2\tHe said \"yes.\tHe agreed.\n")
    assert read_msrp(msrp)[0].a == 'He said "yes.'  # a lone quote is text, not a CSV quote
    msrp.write_bytes(b"\xff\xfe")
    with pytest.raises(VqtoolError, match="cannot read"):
        read_msrp(msrp)
