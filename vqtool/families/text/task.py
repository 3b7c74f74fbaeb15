"""Semi-supervised training of the text VAE on sentence pairs, and its held-out evaluation.

A training step reads `batch_size` labelled pairs (drawn from the task's labelled share, epoch by
epoch, by the shared loop) and `unlabelled_batch` unlabelled sentences (drawn at random from
`vqtool.data.sentences.unlabelled_sentences`). Loss, per step:

    mean over every sentence read (both of each pair and the unlabelled ones) of
        reconstruction NLL (nats, summed over words and <eos>) + beta_t * KL(q(z|x) || N(0, I))
    + alpha * cross-entropy of the matcher on the labelled pairs

with beta_t annealed linearly from 0. `none` drops the first line (and reads no unlabelled text).
The labelled share is the first `fraction` of the training pairs in a fixed shuffled order (seed
LABEL_SEED, the same for every decoder and training seed), so the models at one fraction see the same
labels. The exported weights are those of the best validation accuracy (checked every
`validate_every` steps; `vqtool.training.Validation`)."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from vqtool.cvae import annealed, collapse_report, gaussian_kl
from vqtool.training import TaskBase

from .model import TextConfig, TextVAE, too_long, word_ids

LABEL_SEED = 20180202
RECONSTRUCTION_SENTENCES = 2000  # distinct test sentences for perplexity and word accuracy
EVAL_BATCH = 256


def labelled_share(pairs: list, fraction: float) -> list:
    """The first `fraction` of the pairs in a fixed shuffled order (at least one pair)."""
    order = list(range(len(pairs)))
    random.Random(LABEL_SEED).shuffle(order)
    return [pairs[i] for i in sorted(order[:max(1, round(fraction * len(pairs)))])]


def pair_tensors(vocab, pairs: list, length: int) -> dict:
    return {"a": word_ids(vocab, [p.a for p in pairs], length), "b": word_ids(vocab, [p.b for p in pairs], length),
            "label": torch.tensor([p.label for p in pairs], dtype=torch.long)}


def f1_of(predicted: np.ndarray, truth: np.ndarray, positive: int = 1) -> float:
    """F1 of the positive class (MSRP's `paraphrase`), as MRPC reports it."""
    tp = float(((predicted == positive) & (truth == positive)).sum())
    both = float((predicted == positive).sum() + (truth == positive).sum())
    return 2 * tp / both if both else 0.0


class TextTask(TaskBase):
    model_class = TextVAE
    select_by = "accuracy"

    def __init__(self, config: TextConfig, labelled: dict, unlabelled: torch.Tensor, evaluation: dict,
                 data_info: dict, validate_every: int = 50, baselines: dict | None = None):
        """labelled: pair_tensors of the labelled share; unlabelled: word ids [M, length] (empty for
        `none`); evaluation: {"validation": pair_tensors, "test": pair_tensors, "test_sentences": word ids,
        "majority": the training labels' most frequent class}; baselines: other runs' measured numbers
        and the MiniLM reference (cli.compared_runs, cli.reference_rows), stored as they are."""
        self.config, self.labelled, self.unlabelled = config, labelled, unlabelled
        self.evaluation, self.data_info, self.validate_every = evaluation, data_info, validate_every
        self.baselines = baselines or {}

    def dataset_size(self) -> int:
        return len(self.labelled["label"])

    def optimizer_groups(self, model) -> list[dict]:
        return [{"params": list(model.parameters()), "weight_decay": self.config.weight_decay}]

    def batch(self, indices, device, generator):
        pairs = {k: v[indices].to(device) for k, v in self.labelled.items()}
        count = self.config.unlabelled_batch if self.config.decoder != "none" else 0
        rows = torch.randint(len(self.unlabelled), (count,), generator=generator) if count else None
        pairs["unlabelled"] = self.unlabelled[rows].to(device) if count else None
        return pairs

    def loss(self, model, batch, generator):
        c = self.config
        pairs = len(batch["label"])
        parts = [batch["a"], batch["b"]] + ([batch["unlabelled"]] if batch["unlabelled"] is not None else [])
        tokens = torch.cat(parts)
        out = model(tokens, pairs, generator)
        ce = F.cross_entropy(out["match"], batch["label"])
        logged = {"match_ce": float(ce.detach()),
                  "match_acc": float((out["match"].argmax(-1) == batch["label"]).float().mean())}
        if c.decoder == "none":
            return c.alpha * ce, logged
        real = tokens != 0
        per_word = F.cross_entropy(out["logits"], tokens[real], reduction="none")
        sentence = torch.arange(len(tokens), device=tokens.device).unsqueeze(1).expand_as(tokens)[real]
        nll = torch.zeros(len(tokens), device=tokens.device).index_add(0, sentence, per_word)
        kl = gaussian_kl(out["mu"], out["logvar"]).sum(1)
        core = model.module if hasattr(model, "module") else model
        beta = annealed(c.beta, int(core.steps_trained) - 1, c.anneal_steps)  # forward counted this step
        words = real.sum()
        logged.update(nll=float(nll.detach().mean()), ppl=float(torch.exp(nll.detach().sum() / words)),
                      kl=float(kl.detach().mean()), beta=beta)
        return nll.mean() + beta * kl.mean() + c.alpha * ce, logged

    def validate(self, model, device) -> dict:
        return pair_metrics(model, self.evaluation["validation"], device, self.config.task)

    def evaluate(self, model, device) -> dict:
        ev, task = self.evaluation, self.config.task
        out = {f"test_{k}": v for k, v in pair_metrics(model, ev["test"], device, task).items()}
        out.update({f"validation_{k}": v for k, v in pair_metrics(model, ev["validation"], device, task).items()})
        out.update(majority_metrics(ev["majority"], ev["test"]["label"], task))
        out["test_pairs"], out["validation_pairs"] = len(ev["test"]["label"]), len(ev["validation"]["label"])
        out["labelled_pairs"], out["steps_per_epoch"] = self.dataset_size(), self.steps_per_epoch()
        if self.config.decoder != "none":
            out.update(reconstruction_metrics(model, ev["test_sentences"], device))
        if self.baselines:
            out["baselines"] = self.baselines
        return out

    def steps_per_epoch(self) -> float:
        """Steps for one pass over the unlabelled sentences (VAE) or the labelled pairs (`none`)."""
        if self.config.decoder == "none":
            return round(self.dataset_size() / self.data_info.get("batch_size", 32), 2)
        return round(len(self.unlabelled) / self.config.unlabelled_batch, 2)

    def card_notes(self) -> dict:
        from . import DECODERS

        c = self.config
        share = "all" if c.label_fraction >= 1 else f"{c.label_fraction:.0%}"
        what = {"sick": "entailment, neutral or contradiction (SICK)", "msrp": "paraphrase or not (MSRP)"}[c.task]
        kind = DECODERS[c.decoder]
        return {"task": "textvae", "summary": f"{kind[0].upper() + kind[1:]} of sentences, trained with {share} "
                f"of the labelled pairs to tell {what}: `vqtool match \"A\" \"B\"`, `vqtool embed-text`."}


@torch.no_grad()
def pair_metrics(model, pairs: dict, device, task: str) -> dict:
    """Accuracy (and for MSRP the paraphrase F1) of the matcher on the posterior means."""
    model.eval()
    predicted = []
    for s in range(0, len(pairs["label"]), EVAL_BATCH):
        logits = model.pair_logits(pairs["a"][s:s + EVAL_BATCH].to(device), pairs["b"][s:s + EVAL_BATCH].to(device))
        predicted.append(logits.argmax(-1).cpu())
    guess, truth = torch.cat(predicted).numpy(), pairs["label"].numpy()
    out = {"accuracy": round(float((guess == truth).mean()), 4)}
    if task == "msrp":
        out["f1"] = round(f1_of(guess, truth), 4)
    return out


def majority_metrics(majority: int, truth: torch.Tensor, task: str) -> dict:
    guess, truth = np.full(len(truth), majority), truth.numpy()
    out = {"test_majority_accuracy": round(float((guess == truth).mean()), 4)}
    if task == "msrp":
        out["test_majority_f1"] = round(f1_of(guess, truth), 4)
    return out


@torch.no_grad()
def reconstruction_metrics(model, tokens: torch.Tensor, device) -> dict:
    """From the posterior mean of each test sentence: perplexity per word (+<eos>; the LSTM reads the
    true previous words), word accuracy of the decoded sentence position by position (the LSTM decodes
    greedily from its own words), and the per-dimension KL (active units)."""
    model.eval()
    nll = words = right = 0.0
    kls = []
    for s in range(0, len(tokens), EVAL_BATCH):
        chunk = tokens[s:s + EVAL_BATCH].to(device)
        mu, logvar = model.encode(chunk)
        real = chunk != 0
        nll += float(F.cross_entropy(model.decode(mu, chunk).transpose(1, 2), chunk, ignore_index=0, reduction="sum"))
        right += float(((model.generate(mu) == chunk) & real).sum())
        words += float(real.sum())
        kls.append(gaussian_kl(mu, logvar).cpu())
    report = collapse_report(torch.cat(kls))
    return {"test_perplexity": round(float(np.exp(nll / words)), 3), "test_word_accuracy": round(right / words, 4),
            "test_kl_nats": report["kl_nats"], "test_active_dims": report["active_dims"],
            "test_sentences": len(tokens)}


def text_task(root, flickr, task: str, fraction: float, settings: dict, min_count: int, batch_size: int,
              validate_every: int, half: bool, quiet: bool = False, baselines: dict | None = None) -> TextTask:
    """Everything `train textvae` needs: pairs, the labelled share, unlabelled sentences (held-out text
    dropped and counted), the vocabulary of the training text, word ids."""
    from rich.console import Console

    from vqtool.data.sentences import CATALOGUE, SPLIT_FILES, labels_of, read_pairs, unlabelled_sentences
    from vqtool.data.text import Vocabulary
    from vqtool.hub import sha256_file

    console = Console(stderr=True, quiet=quiet)
    train_pairs = read_pairs(root, task, "train")
    labelled = labelled_share(train_pairs, fraction)
    text = unlabelled_sentences(root, flickr)
    vocab = Vocabulary.build(text.sentences, min_count)
    config = TextConfig(words=vocab.words, task=task, labels=list(labels_of(task)), label_fraction=fraction, **settings)
    length = config.length
    console.print(f"{task}: {len(labelled)} of {len(train_pairs)} training pairs labelled; {len(text.sentences)} "
                  f"unlabelled sentences; {len(vocab)} words")
    validation, test = read_pairs(root, task, "validation"), read_pairs(root, task, "test")
    sentences = list(dict.fromkeys(s for p in test for s in (p.a, p.b)))
    random.Random(0).shuffle(sentences)
    sentences = sentences[:RECONSTRUCTION_SENTENCES]
    counts = np.bincount([p.label for p in train_pairs], minlength=len(config.labels))
    evaluation = {"validation": pair_tensors(vocab, validation, length), "test": pair_tensors(vocab, test, length),
                  "test_sentences": word_ids(vocab, sentences, length),
                  "majority": int(counts.argmax())}
    unlabelled = word_ids(vocab, text.sentences if config.decoder != "none" else [], length)
    files = SPLIT_FILES[task]
    info = {"train_data": CATALOGUE[task], "train_split": files["train"], "train_items": len(labelled),
            "train_sha256": sha256_file(Path(root) / files["train"]), "training_pairs": len(train_pairs),
            "eval_split": f"{files['test']} ({len(test)} pairs; validation {files['validation']})",
            "label_seed": LABEL_SEED, "unlabelled_sentences": len(text.sentences) if config.decoder != "none" else 0,
            "unlabelled_dropped": text.dropped, "unlabelled_shared_with_test": text.shared_with_test,
            "unlabelled_cut": sum(too_long(s, length) for s in text.sentences), "vocabulary": f"{len(vocab)} words (seen >= {min_count} times in the unlabelled "
            "text: training sentences of both tasks and the kept Flickr8k captions; the rest -> <unk>)",
            "sentence_length": length, "batch_size": batch_size,
            "test_sentences_for_reconstruction": len(sentences)}
    out = TextTask(config, pair_tensors(vocab, labelled, length), unlabelled, evaluation, info, validate_every,
                   baselines)
    out.storage_dtype = torch.float16 if half else None
    return out
