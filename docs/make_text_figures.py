"""Redraw docs/textvae-labels.png: test accuracy against the share of labelled pairs, for each decoder,
MiniLM + logistic regression and the majority class, from the shipped checkpoints' cards (their
`--compare` runs and `--reference` rows). Reads metadata only.

    python docs/make_text_figures.py
"""

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from vqtool.hub import describe  # noqa: E402

OUT = Path(__file__).resolve().parent / "textvae-labels.png"
STYLE = {"deconv": ("deconv LVM (the paper's model)", "C0", "o"), "lstm": ("LSTM LVM", "C1", "s"),
         "none": ("supervised only", "C2", "^")}
TITLES = {"text-sick": "SICK entailment (3 classes)", "text-msrp": "MSRP paraphrase"}


def main() -> None:
    figure, axes = plt.subplots(1, 2, figsize=(10, 4), dpi=110)
    for ax, name in zip(axes, TITLES):
        info = describe(name)
        metrics, config = info["metrics"], info["config"]
        rows = [(config["decoder"], config["label_fraction"], metrics["test_accuracy"])]
        rows += [(b["decoder"], b["label_fraction"], b["metrics"]["test_accuracy"])
                 for b in metrics.get("baselines", {}).values() if "decoder" in b]
        for decoder, (label, colour, marker) in STYLE.items():
            points = sorted((f, a) for d, f, a in rows if d == decoder)
            if points:
                ax.plot([f * 100 for f, _ in points], [a * 100 for _, a in points], marker=marker, color=colour,
                        label=label)
        minilm = metrics.get("baselines", {}).get("minilm", {}).get("rows", {})
        points = sorted((float(k), v["accuracy"]) for k, v in minilm.items() if k != "majority")
        if points:
            ax.plot([f * 100 for f, _ in points], [a * 100 for _, a in points], marker="D", color="C3", ls="--",
                    label="frozen MiniLM-L6 + logistic regression")
        ax.axhline(metrics["test_majority_accuracy"] * 100, color="grey", ls=":", label="majority class")
        ax.set_xscale("log")
        ax.set_xticks([10, 25, 50, 100], ["10%", "25%", "50%", "100%"])
        ax.set_xlabel("labelled training pairs")
        ax.set_ylabel("test accuracy (%)")
        ax.set_title(TITLES[name])
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8, loc="lower right")
    figure.tight_layout()
    figure.savefig(OUT)
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
