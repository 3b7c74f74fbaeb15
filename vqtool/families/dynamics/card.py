"""Model-card words of the dynamics models, and their table: every model of one system (this one and
its --compare runs) against the true system's floors."""

from __future__ import annotations

from vqtool.cards import CardText

from . import MODELS

CARDS = {
    "dynamics": CardText(
        intended_use="Research and teaching on model-based RL: a learned simulator of a small stochastic system "
                     "that samples plausible next states (`vqtool dynamics sample`, `vqtool.dynamics.LearnedEnv` "
                     "for planners and agents), and a measured comparison of how well conditional VAEs and the usual "
                     "baselines learn a multimodal next-state distribution (the table).",
        metric_notes=[
            "NLL (nats, lower is better): toy, -mean log p(y|x) over the 500 test points; grid, the expected NLL "
            "of the next state under the true distribution, -Σ p(s'|s,a) log q(s'|s,a), over the 1,500 held-out "
            "(state, action) pairs (exact over the true outcomes; its floor is the true entropy). CVAE: the "
            "importance-weighted bound with k = 40 samples of q(z|x,y), so an upper bound on its NLL. The "
            "squared-error model has none on the grid; on the toy it is read as a Gaussian with its validation "
            "residuals' variance.",
            "Hellinger, TV, KL: between the model's samples (the count per test input is in the table's heading) and the true next-state "
            "distribution, exact for the grid, over bins of y 0.1 wide for the toy; KL with 1e-5 inside the logs "
            "(as the paper's code). `floor`: the same numbers for the true system's own samples of the same size, "
            "what a perfect model scores here.",
            "Impossible: share of samples the true system never produces (grid: probability 0, e.g. a ghost "
            "moved diagonally or a state between cells; toy: more than 3 noise deviations from every curve). "
            "Deterministic (grid): on the test pairs whose next state is certain (the agent walks into a ghost), "
            "the share of samples that are exactly it.",
            "Weights are those of the best validation NLL (squared error for `mse`), checked every 500 steps on "
            "a separate validation split (toy: 500 points; grid: 750 pairs never in training or test); `val. NLL` "
            "is that NLL (k = 10 for the CVAE), by which the shipped model was also chosen among the runs of "
            "the table.",
        ],
        limitations=[
            "Learns one small system ({data}); a model of another system is trained for it (`vqtool train "
            "dynamics`). The grid model's states are the paper's six coordinates; it knows nothing of pixels.",
            "A sample-based distance has a floor set by the sample size (the `floor` row): differences below it "
            "are noise.",
            "Rewards and episode ends in `LearnedEnv` are computed from the sampled next state with the "
            "gridworld's own rule (caught: -1, goal: +10); only the transitions are learned.",
        ],
    ),
}

COLUMNS = (("test_nll", "NLL"), ("test_hellinger", "Hellinger"), ("test_tv", "TV"),
           ("test_kl_true_model", "KL(true‖model)"), ("test_kl_model_true", "KL(model‖true)"),
           ("test_impossible", "impossible"), ("validation_nll", "val. NLL"))
GRID_COLUMNS = (("test_deterministic_exact", "deterministic"),)


def describe(config: dict) -> str:
    model = config["model"]
    if model == "cvae":
        latent = (f"{config['latent']}-d Gaussian" + (f" + {config['flows']} flows" if config.get("flows") else "")
                  if config["kind"] == "continuous" else f"{config['variables']}×{config['categories']} discrete" + (" (relaxed)" if config.get("relaxed") else ""))
        return f"CVAE, {latent}, {config['prior']} prior"
    return {"mse": "MSE (point)", "gaussian": "Gaussian" if config["env"] == "toy" else "factorised categorical",
            "mdn": f"MDN, {config['components']} components", "ensemble": f"ensemble of {config['members']}"}[model]


PERCENT = ("test_impossible", "test_deterministic_exact")


def _cell(key: str, value) -> str:
    if value is None:
        return "–"
    return f"{value:.2%}" if key in PERCENT else f"{value:.3f}"


def _row(name: str, config: dict, metrics: dict, columns, bold: bool) -> str:
    cells = [_cell(key, metrics.get(key)) for key, _ in columns]
    label = f"{describe(config)} `{name}`"
    return f"| {'**' + label + '**' if bold else label} | " + " | ".join(cells) + " |"


def evaluation_lines(meta: dict) -> list[str]:
    m, env = meta["metrics"], meta["config"]["env"]
    columns = COLUMNS + (GRID_COLUMNS if env == "grid" else ())
    samples = m.get("samples")
    lines = [f"**Test split, {m.get('test_inputs')} inputs, {samples} samples each** (lower is better except "
             "`deterministic`; bold: this model)", "",
             "| model | " + " | ".join(title for _, title in columns) + " |", "|---|" + "---|" * len(columns)]
    lines.append(_row(meta["name"], meta["config"], m, columns, True))
    for name, other in m.get("baselines", {}).items():
        lines.append(_row(name, other["config"], other["metrics"], columns, False))
    floors = {k.replace("floor_", "test_"): v for k, v in m.items() if k.startswith("floor_")}
    floors["test_nll"] = m.get("true_nll_test") if env == "toy" else m.get("true_entropy_test")
    floors["test_deterministic_exact"] = 1.0
    floors["validation_nll"] = None
    cells = [_cell(k, floors.get(k)) for k, _ in columns]
    lines.append("| true system (floor) | " + " | ".join(cells) + " |")
    if env == "toy":
        lines += ["", f"Reference NLL from the generator (population): true {m.get('reference_true_nll')} nats per "
                      f"point, best unimodal Gaussian {m.get('reference_best_gaussian_nll')}. "
                      "Target: CVAE ≤ -0.2 and clearly below the best unimodal Gaussian."]
    else:
        lines += ["", f"Reference over all {m.get('reference_pairs', 256000):,} valid (state, action) pairs: true "
                      f"next-state entropy {m.get('reference_true_entropy')} nats, deterministic transitions "
                      f"{m.get('reference_deterministic_share', 0):.1%} ({m.get('test_deterministic_pairs')} of the "
                      "test pairs). Target: CVAE Hellinger ≤ 0.05, deterministic transitions kept deterministic."]
    return lines


def info_lines(config: dict) -> list[str]:
    return [f"  {describe(config)} ({MODELS[config['model']]}); system {config['env']}, hidden {config['hidden']} x "
            f"{config['layers']}"]
