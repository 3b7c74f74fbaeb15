"""Text shared by the families that read sentences (captions, sentence pairs): one tokeniser and one
vocabulary.

Tokeniser: lower case; words are runs of letters and digits, with an apostrophe suffix kept
("dog's" -> "dog's"); everything else (punctuation, hyphens, currency signs) separates words and is
dropped. `normalise` joins the words with single spaces: two sentences that differ only in case,
spacing and punctuation normalise to the same string (how unlabelled text is checked against test
sentences). Vocabulary: every word seen at least `min_count` times in a family's training text, most
frequent first after the four specials; other words become `<unk>`."""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field

PAD, BOS, EOS, UNK = "<pad>", "<bos>", "<eos>", "<unk>"
SPECIALS = [PAD, BOS, EOS, UNK]
WORD = re.compile(r"[a-z0-9]+(?:'[a-z]+)?")


def tokenise(text: str) -> list[str]:
    return WORD.findall(text.lower())


def normalise(text: str) -> str:
    return " ".join(tokenise(text))


@dataclass
class Vocabulary:
    words: list[str]
    index: dict[str, int] = field(init=False, repr=False)

    def __post_init__(self):
        self.index = {w: i for i, w in enumerate(self.words)}

    @classmethod
    def build(cls, texts, min_count: int = 3) -> "Vocabulary":
        counts = Counter(w for t in texts for w in tokenise(t))
        kept = sorted((w for w, n in counts.items() if n >= min_count), key=lambda w: (-counts[w], w))
        return cls(SPECIALS + kept)

    def __len__(self) -> int:
        return len(self.words)

    def encode(self, text: str, length: int) -> list[int]:
        """Word ids, cut to `length - 1` words, then <eos>, padded with <pad> (id 0) to `length`."""
        unk = self.index[UNK]
        ids = [self.index.get(w, unk) for w in tokenise(text)][:length - 1] + [self.index[EOS]]
        return ids + [0] * (length - len(ids))

    def decode(self, ids) -> str:
        """Ids up to the first <eos> -> words joined by spaces (specials other than <unk> dropped)."""
        out = []
        for i in ids:
            word = self.words[int(i)]
            if word == EOS:
                break
            if word not in (PAD, BOS):
                out.append(word)
        return " ".join(out)
