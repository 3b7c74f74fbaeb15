"""Accuracy and diversity of sets of captions, as the diverse-captioning literature reports them.

BLEU comes from `sacrebleu` (tokenize="none": captions are compared as our tokeniser writes them,
lower case, words separated by spaces; sentence-level BLEU with effective order, its recommended
setting), CIDEr-D from `pycocoevalcap` (its document frequencies from the references of the images
scored; Java's PTB tokeniser is not used, our tokeniser's output goes in). Both on a 0-100 scale.

- oracle (best of N): per photo the caption with the highest score against the references (sentence
  BLEU-4 for BLEU, CIDEr-D for CIDEr); corpus BLEU-4 of those picks, mean CIDEr-D of the best.
- consensus re-ranking: per photo the caption that agrees most with its N-1 siblings (highest sentence
  BLEU-4 against them; ties to the earlier caption), scored like a single caption.
- Div-1 / Div-2: distinct words / distinct bigrams among a photo's N captions over the number of words
  in them; mean over photos.
- mBLEU-4: sentence BLEU-4 of each caption against the photo's other N-1; mean (lower: more diverse).
- unique: distinct captions per photo (mean); novel: share of all captions that are no training caption."""

from __future__ import annotations

from statistics import mean

from vqtool.errors import VqtoolError


def _libraries():
    try:
        from pycocoevalcap.cider.cider import Cider
        from sacrebleu.metrics import BLEU
    except ImportError:
        raise VqtoolError("caption metrics need the evaluation extra: pip install 'vqtool[eval]' "
                          "(sacrebleu, pycocoevalcap)") from None
    return BLEU, Cider


def _bleu(sentence: bool):
    BLEU, _ = _libraries()
    return BLEU(tokenize="none", effective_order=sentence)


def sentence_bleu(caption: str, references: list[str], scorer=None) -> float:
    scorer = scorer or _bleu(True)
    return float(scorer.sentence_score(caption, references).score)


def corpus_bleu(captions: list[str], references: list[list[str]]) -> float:
    """BLEU-4 of one caption per photo against that photo's references (any number each)."""
    most = max(len(r) for r in references)
    streams = [[refs[i] if i < len(refs) else None for refs in references] for i in range(most)]
    return float(_bleu(False).corpus_score(captions, streams).score)


def cider_per_photo(captions: list[str], references: list[list[str]]) -> list[float]:
    """CIDEr-D (x100) of one caption per photo."""
    _, Cider = _libraries()
    gts = {i: refs for i, refs in enumerate(references)}
    res = {i: [caption if caption else "<empty>"] for i, caption in enumerate(captions)}
    _, scores = Cider().compute_score(gts, res)
    return [100.0 * float(s) for s in scores]


def distinct_ratio(captions: list[str], n: int) -> float:
    grams, words = set(), 0
    for caption in captions:
        tokens = caption.split()
        words += len(tokens)
        grams.update(tuple(tokens[i:i + n]) for i in range(len(tokens) - n + 1))
    return len(grams) / words if words else 0.0


def agreement(captions: list[str], scorer=None) -> list[float]:
    """Sentence BLEU-4 of each caption against the others of its set (the mBLEU terms)."""
    scorer = scorer or _bleu(True)
    if len(captions) < 2:
        return [100.0] * len(captions)
    return [sentence_bleu(c, captions[:i] + captions[i + 1:], scorer) for i, c in enumerate(captions)]


def consensus_order(captions: list[str], scores: list[float] | None = None) -> list[int]:
    """Indices of a set of captions, most agreed-with first (stable: ties keep the given order);
    `scores`: their `agreement`, when already computed."""
    scores = agreement(captions) if scores is None else scores
    return sorted(range(len(captions)), key=lambda i: -scores[i])


def caption_set_metrics(sets: list[list[str]], references: list[list[str]], training: set[str] | None = None) -> dict:
    """Every number of the card for N captions per photo (`sets[i]`, references[i] the photo's references)."""
    scorer = _bleu(True)
    n = len(sets[0])
    oracle_bleu_pick = [max(s, key=lambda c: sentence_bleu(c, refs, scorer)) for s, refs in zip(sets, references)]
    per_sample_cider = [cider_per_photo([s[k] for s in sets], references) for k in range(n)]
    agreements = [agreement(s, scorer) for s in sets]
    consensus = [s[consensus_order(s, a)[0]] for s, a in zip(sets, agreements)]
    flat = [c for s in sets for c in s]
    out = {
        "photos": len(sets), "samples": n,
        "oracle_bleu4": corpus_bleu(oracle_bleu_pick, references),
        "oracle_cider": mean(max(per_sample_cider[k][i] for k in range(n)) for i in range(len(sets))),
        "consensus_bleu4": corpus_bleu(consensus, references),
        "consensus_cider": mean(cider_per_photo(consensus, references)),
        "first_bleu4": corpus_bleu([s[0] for s in sets], references),
        "div1": mean(distinct_ratio(s, 1) for s in sets),
        "div2": mean(distinct_ratio(s, 2) for s in sets),
        "mbleu4": mean(mean(a) for a in agreements) if n > 1 else 100.0,
        "unique": mean(len(set(s)) for s in sets),
    }
    if training is not None:
        out["novel"] = sum(c not in training for c in flat) / len(flat)
    return {k: round(v, 4) if isinstance(v, float) else v for k, v in out.items()}
