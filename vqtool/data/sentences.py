"""Sentence pairs (../shared/data/sentence-pairs) for the deconvolutional text VAE: SICK 2014 (entailment,
3-way, and relatedness 1-5) and MSRP (paraphrase or not), their official splits, and the unlabelled
sentences a semi-supervised model may read.

Splits: SICK `SICK_train.txt` / `SICK_trial.txt` (validation) / `SICK_test_annotated.txt`; MSRP
`msr-para-train.tsv` / `msr-para-val.tsv` / `msr-para-test.tsv` (its README: train and test as in the
recent papers, the validation split the last 500 training pairs).

Unlabelled sentences: the training sentences of both tasks, plus the Flickr8k captions of
`flickr8k-1k/all_captions.txt`, less every caption that is held-out text for some task here. SICK's
sentences were written from Flickr8k captions, so a caption whose normalised form (`text.normalise`:
case, spacing and punctuation ignored) equals a sentence of a SICK or MSRP test or validation pair is
dropped, and so are the captions of the 96 Flickr test photos (`flickr8k-1k/test.txt`, the caption
task's test data); `UnlabelledText.dropped` counts each reason. Both corpora reuse sentences across
their splits by design (SICK builds its pairs from one pool of sentences: 3,743 of the 5,007 distinct
test sentences also occur in training pairs; MSRP 250 of 3,389): a test pair is new as a pair and a
label, not always in its sentences. Those sentences stay training text, as the labelled pairs that hold
them are training data (`UnlabelledText.shared_with_test` counts them); what is measured is labels."""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import VqtoolError
from .text import normalise

SICK_LABELS = ("ENTAILMENT", "NEUTRAL", "CONTRADICTION")
MSRP_LABELS = ("not paraphrase", "paraphrase")
TASKS = ("sick", "msrp")
CATALOGUE = {"sick": "sick2014", "msrp": "msrp"}  # each task's entry in vqtool/data/catalogue.py
SPLIT_FILES = {
    "sick": {"train": "sick2014/SICK_train.txt", "validation": "sick2014/SICK_trial.txt",
             "test": "sick2014/SICK_test_annotated.txt"},
    "msrp": {"train": "msrp/msr-para-train.tsv", "validation": "msrp/msr-para-val.tsv",
             "test": "msrp/msr-para-test.tsv"},
}


@dataclass(frozen=True)
class SentencePair:
    a: str
    b: str
    label: int  # index into the task's labels
    relatedness: float | None = None  # SICK only, 1-5


def _rows(path: Path) -> list[list[str]]:
    """Tab-separated rows after the header; quotes are text (MSRP's strings hold unbalanced ones)."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise VqtoolError(f"cannot read the sentence pairs ({exc})", str(path)) from None
    rows = list(csv.reader(io.StringIO(text), delimiter="\t", quoting=csv.QUOTE_NONE))
    return [r for r in rows[1:] if any(cell.strip() for cell in r)]


def read_sick(path: Path) -> list[SentencePair]:
    pairs = []
    for number, row in enumerate(_rows(path), 2):
        try:
            pairs.append(SentencePair(row[1], row[2], SICK_LABELS.index(row[4].strip()), float(row[3])))
        except (IndexError, ValueError):
            raise VqtoolError(f"line {number} is not `pair_ID, sentence_A, sentence_B, relatedness, "
                              "entailment`", str(path)) from None
    return pairs


def read_msrp(path: Path) -> list[SentencePair]:
    pairs = []
    for number, row in enumerate(_rows(path), 2):
        try:
            label = int(row[0])
            if label not in (0, 1):
                raise ValueError
            pairs.append(SentencePair(row[3], row[4], label))
        except (IndexError, ValueError):
            raise VqtoolError(f"line {number} is not `quality (0/1), id, id, string, string`", str(path)) from None
    return pairs


def read_pairs(root: str | Path, task: str, split: str) -> list[SentencePair]:
    if task not in TASKS:
        raise VqtoolError(f"unknown task {task!r} (one of {', '.join(TASKS)})")
    path = Path(root) / SPLIT_FILES[task][split]
    return (read_sick if task == "sick" else read_msrp)(path)


def labels_of(task: str) -> tuple[str, ...]:
    return SICK_LABELS if task == "sick" else MSRP_LABELS


@dataclass
class UnlabelledText:
    sentences: list[str]
    dropped: dict[str, int] = field(default_factory=dict)  # reason -> captions left out
    shared_with_test: int = 0  # training sentences that also occur in a test pair (kept, see above)


def split_sentences(root: str | Path, split: str) -> set[str]:
    """Normalised sentences of every SICK and MSRP pair of one split."""
    found = {normalise(s) for task in TASKS for pair in read_pairs(root, task, split) for s in (pair.a, pair.b)}
    found.discard("")
    return found


def held_out_sentences(root: str | Path) -> set[str]:
    """Normalised sentences of every SICK and MSRP validation and test pair."""
    return split_sentences(root, "validation") | split_sentences(root, "test")


def unlabelled_sentences(root: str | Path, flickr: str | Path | None) -> UnlabelledText:
    """Training sentences of both tasks (each once, in file order) and the Flickr8k captions that are
    nobody's held-out text."""
    from .captions import read_caption_table

    sentences, seen = [], set()
    for task in TASKS:
        for pair in read_pairs(root, task, "train"):
            for sentence in (pair.a, pair.b):
                if sentence not in seen:
                    seen.add(sentence)
                    sentences.append(sentence)
    test = split_sentences(root, "test")
    out = UnlabelledText(sentences, {}, sum(normalise(s) in test for s in sentences))
    if flickr is None or not (Path(flickr) / "all_captions.txt").is_file():
        return out
    flickr = Path(flickr)
    held = test | split_sentences(root, "validation")  # = held_out_sentences, the test pairs read once
    test_photos = set((flickr / "test.txt").read_text().split()) if (flickr / "test.txt").is_file() else set()
    dropped = {"matches a SICK or MSRP validation or test sentence": 0, "caption of a Flickr test photo": 0}
    for name, captions in sorted(read_caption_table(flickr / "all_captions.txt").items()):
        for caption in captions:
            if name in test_photos:
                dropped["caption of a Flickr test photo"] += 1
            elif normalise(caption) in held:
                dropped["matches a SICK or MSRP validation or test sentence"] += 1
            else:
                out.sentences.append(caption)
    out.dropped = dropped
    return out
