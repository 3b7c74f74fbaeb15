"""Model-card words of the motion CVAEs, and their evaluation tables (one row per model and K)."""

from __future__ import annotations

from vqtool.cards import CardText

from . import KINDS

HORIZONS_MS = (80, 160, 320, 400, 560, 1000)
SETS = {"ltd": "LTD's test windows (8 per test file, seed 1234567890)",
        "dense": "dense test windows (one every 10th frame of each test file)",
        "validation": "validation windows (held-out training recordings, at most 100 per action)"}
LTD_ANCHOR = {"euler": (0.25, 0.39, 0.68, 0.79, None, 1.33), "mpjpe": (11.5, 20.4, 37.8, 46.8, None, 96.5)}

CARDS = {
    "motion": CardText(
        intended_use="Research, teaching and animation: several plausible continuations of a person's motion "
                     "(`vqtool predict-motion`, `vqtool.load(NAME).predict(clip, samples)`). Not for "
                     "surveillance or for decisions about people.",
        metric_notes=[
            "Protocol of LTD (Mao et al., 2019) on CMU mocap: files downsampled to 25 frames/s, 50 observed "
            "frames, 25 predicted (1 s); errors at 80, 160, 320, 400, 560 and 1000 ms.",
            "Euler error: each exponential map (root position and rotation zeroed) -> rotation matrix -> Euler "
            "angles (LTD's rotmat2euler), L2 norm over all 117 values of a frame, averaged over windows. 3-D "
            "error (MPJPE): mean distance over the 38 joints in millimetres after forward kinematics of the CMU "
            "skeleton (LTD's offsets x 70), root zeroed.",
            "Best of K: of K sampled futures, the one with the lowest error averaged over all 25 frames, "
            "reported at each horizon (Euler and 3-D each pick their own); mean of K: the average over the K "
            "samples. APD: mean over pairs of the K futures of the L2 distance between their whole 3-D joint "
            "sequences (25 frames x 38 joints x 3, millimetres; the definition of DLow, Yuan & Kitani 2020).",
            "KL: of the data posterior against the model's test-time prior, per latent dimension, on the dense "
            "test windows; a dimension is active above 0.01 nats (a collapsed posterior has none).",
            "Anchors (LTD's deterministic CMU averages over 8 actions): Euler 0.25 / 0.39 / 0.68 / 0.79 / 1.33 "
            "at 80 / 160 / 320 / 400 / 1000 ms; 3-D 11.5 / 20.4 / 37.8 / 46.8 / 96.5 mm. Not like for like: "
            "this test data has 5 of those 8 actions (basketball, jumping, running, soccer, walking).",
        ],
        limitations=[
            "Trained on {data}: 7 actions, about 12,000 training windows (drawn each action equally often); "
            "other motions, skeletons or frame rates are out of its range. Input must be the CMU "
            "exponential-map format at 50 frames/s (or 25 with `--stride 1`).",
            "Predicts joint angles only: the root keeps its last observed position and heading, so a runner "
            "runs on the spot. Trained for 1 s; longer rollouts (`--frames`) drift and freeze.",
            "Best-of-K rewards a model for covering the truth with one of K samples; it does not say that "
            "every sample is plausible. Look at the pictures (docs/motion.md).",
        ],
    ),
}


def _label(meta: dict) -> str:
    return f"{KINDS.get(meta['config'].get('prior'), '?')} `{meta['name']}` (this model)"


def _row(label: str, metrics: dict, prefix: str, kind: str, k: int, which: str) -> str | None:
    keys = [f"{prefix}_{kind}_{which}{k}_{ms}ms" for ms in HORIZONS_MS]
    if keys[0] not in metrics:
        return None
    apd = metrics.get(f"{prefix}_apd{k}_mm")
    cells = [f"{metrics[key]:.3f}" if kind == "euler" else f"{metrics[key]:.1f}" for key in keys]
    return f"| {label} | {which} of {k} | " + " | ".join(cells) + f" | {'' if apd is None else f'{apd:.0f}'} |"


def evaluation_lines(meta: dict) -> list[str]:
    """Tables of this model and the ones it was compared with (`--compare`), per test set."""
    metrics = meta["metrics"]
    models = {**metrics.get("baselines", {}), f"**{_label(meta)}**": metrics}
    lines = []
    for prefix, title in SETS.items():
        if f"{prefix}_windows" not in metrics:
            continue
        for kind, unit in (("euler", "Euler error, radians"), ("mpjpe", "3-D joint error, mm")):
            lines += [f"**{title}, {metrics[f'{prefix}_windows']} windows — {unit}**", "",
                      "| model | K | " + " | ".join(f"{ms} ms" for ms in HORIZONS_MS) + " | APD (mm) |",
                      "|---|---|" + "---|" * (len(HORIZONS_MS) + 1)]
            for label, found in models.items():
                for k in (1, 10, 50):
                    for which in (("best", "mean") if kind == "euler" else ("best",)):
                        row = _row(label, found, prefix, kind, k, which)
                        if row and not (which == "mean" and k == 1):
                            lines.append(row)
            if prefix == "ltd":
                anchor = LTD_ANCHOR[kind]
                lines.append("| LTD (published, 8 actions) | 1 | " + " | ".join("–" if v is None else str(v)
                                                                             for v in anchor) + " | |")
            lines.append("")
    lines += ["**Latent use on the dense test windows**", "", "| model | KL (nats) | active dims |", "|---|---|---|"]
    for label, found in models.items():
        if "kl_nats" in found:
            lines.append(f"| {label} | {found['kl_nats']:.2f} | {found['active_dims']} of "
                         f"{len(found['kl_per_dim'])} |")
    lines += ["", "Per-dimension KL (nats) of this model: "
              + ", ".join(f"{v:.3g}" for v in metrics.get("kl_per_dim", [])) or "none (deterministic)"]
    return lines


def info_lines(config: dict) -> list[str]:
    return [f"  prior {config['prior']}, latent {config['latent']}, {config['observed']} frames in, "
            f"{config['predicted']} out at {config['fps']:g} frames/s"]
