"""Dynamics commands: `dynamics sample`, `dynamics eval`, `dynamics plot` and `train dynamics`."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from vqtool.cli.common import (DeviceOpt, ModelsDirOpt, compared_checkpoints, console, emit_json, train_command,
                               usage)
from vqtool.errors import VqtoolError

from . import ARCHITECTURE, ENVS, LATENTS, MODELS, PRIORS

ACTION_NAMES = ("up", "down", "right", "left")
MAX_SAMPLES = 1_000_000
ArgmaxOpt = typer.Option(False, "--argmax", help="Grid CVAE: each coordinate's most likely value given the latent "
                         "(the paper's sampling: every bit of randomness from z; fewer impossible states, farther "
                         "from the true frequencies, docs/dynamics.md).")
ModelOpt = typer.Option("dynamics-grid", "--model", "-m", help="dynamics-grid or dynamics-toy, or a checkpoint path.")


def train_dynamics(
    env: str = typer.Option("toy", "--env", help="toy (the toy function) or grid (the gridworld)."),
    model: str = typer.Option("cvae", "--model", help="cvae (the paper's), mse, gaussian, mdn or ensemble."),
    kind: str = typer.Option("continuous", "--latent-kind", help="cvae latent: continuous or discrete (Gumbel-softmax)."),
    latent: int = typer.Option(3, "--latent", min=1, help="Continuous latent dimensions."),
    variables: int = typer.Option(3, "--variables", min=1, help="Discrete latent: categorical variables."),
    categories: int = typer.Option(3, "--categories", min=2, help="Discrete latent: classes of each variable."),
    flows: int = typer.Option(0, "--flows", min=0, help="Affine-coupling layers on the continuous posterior."),
    prior: str = typer.Option("standard", "--prior", help="standard (N(0, I) or uniform, the paper's) or learned "
                                                          "(a prior network on the input)."),
    hidden: int = typer.Option(128, "--hidden", min=4),
    layers: int = typer.Option(2, "--layers", min=1, max=8, help="Hidden layers of each network."),
    components: int = typer.Option(5, "--components", min=1, help="mdn: mixture components."),
    members: int = typer.Option(5, "--members", min=1, help="ensemble: networks."),
    beta: float = typer.Option(1.0, "--beta", min=0.0, help="Final weight of the KL term."),
    anneal_steps: int = typer.Option(0, "--anneal-steps", min=0, help="Steps over which beta grows from 0."),
    free_bits: float = typer.Option(0.0, "--free-bits", min=0.0, help="Nats of KL not penalised (per example)."),
    relaxed: bool = typer.Option(False, "--relaxed/--straight-through", help="Discrete latent in training: the "
                                 "decoder reads the relaxed Gumbel-softmax sample (the paper's) or the one-hot one "
                                 "(straight-through, as at test time)."),
    tau_start: float = typer.Option(2.0, "--tau-start", min=0.01),
    tau_end: float = typer.Option(0.5, "--tau-end", min=0.01),
    tau_steps: int = typer.Option(5000, "--tau-steps", min=1, help="Steps over which the Gumbel-softmax temperature "
                                                                   "goes from --tau-start to --tau-end."),
    validate_every: int = typer.Option(500, "--validate-every", min=1, help="Steps between validation checks (the "
                                       "exported weights are those of the best validation NLL)."),
    samples: int = typer.Option(2000, "--samples", min=10, help="Samples per test input for the distances."),
    half: bool = typer.Option(False, "--half/--float32", help="Store the weights as float16 or float32."),
    compare: Optional[str] = typer.Option(None, "--compare", help="Comma-separated dynamics checkpoints of the same "
                                          "system: their measured numbers and SHA-256 go into this card's table "
                                          "(measured by the same code on the same test split; not re-run)."),
    models_dir: Optional[Path] = ModelsDirOpt,
    *, train,
):
    """Train a next-state model of the toy function or the gridworld (Moerland et al., 2017).

    Example: `vqtool train dynamics --env grid --model cvae --latent-kind discrete --name grid-cvae`
    """
    for value, allowed, option in ((env, ENVS, "--env"), (model, MODELS, "--model"), (kind, LATENTS, "--latent-kind"),
                                   (prior, PRIORS, "--prior")):
        if value not in allowed:
            raise usage(f"one of {', '.join(allowed)}, not '{value}'", option)
    import torch

    from vqtool.training import fit

    from .model import DynamicsConfig
    from .task import DynamicsTask, data_info

    config = DynamicsConfig(env=env, model=model, kind=kind, latent=latent, variables=variables, categories=categories,
                            flows=flows, prior=prior, hidden=hidden, layers=layers, components=components,
                            members=members, beta=beta, anneal_steps=anneal_steps, free_bits=free_bits,
                            tau_start=tau_start, tau_end=tau_end, tau_steps=tau_steps, relaxed=relaxed)
    task = DynamicsTask(config, data_info(env), validate_every, compared_runs(compare, env, models_dir), samples)
    if half:
        task.storage_dtype = torch.float16
    fit(task, train.options())


def compared_runs(compare: Optional[str], env: str, models_dir) -> dict:
    """name -> {model, config, sha256, metrics} of each --compare checkpoint (read, not re-run)."""
    out = {}
    for name, (meta, sha256) in compared_checkpoints(compare, ARCHITECTURE, models_dir, lambda c: c.get("env") == env,
                                                     f"a {env} dynamics checkpoint").items():
        metrics = {k: v for k, v in meta["metrics"].items() if k not in ("baselines", "training")}
        if "training" in meta["metrics"]:
            metrics["selected_step"] = meta["metrics"]["training"].get("selected_step")
        out[name] = {"model": meta["config"]["model"], "config": meta["config"], "sha256": sha256, "metrics": metrics}
    return out


# ------------------------------------------------------------------------------------ parsing
def parse_state(text: str) -> tuple[int, ...]:
    """`"0,0,1,3,5,3"` -> a valid grid state (usage error naming the fault)."""
    from vqtool.data.dynamics import check_state

    parts = [p.strip() for p in text.replace(" ", ",").split(",") if p.strip()]
    try:
        values = [int(p) for p in parts]
    except ValueError:
        raise usage(f"six whole numbers separated by commas (agent x,y, ghost 1 x,y, ghost 2 x,y), not '{text}'",
                    "--state") from None
    try:
        return check_state(values)
    except ValueError as exc:
        raise usage(str(exc), "--state") from None


def parse_action(text: str) -> int:
    key = text.strip().lower()
    if key in ACTION_NAMES:
        return ACTION_NAMES.index(key)
    if key in ("0", "1", "2", "3"):
        return int(key)
    raise usage(f"up, down, right or left (or 0-3), not '{text}'", "--action")


def _load(model: str, device: str, models_dir, argmax: bool = False):
    from vqtool.hub import load

    net = load(model, device, models_dir, expect=ARCHITECTURE)
    if argmax:
        if net.config.model != "cvae" or net.config.env != "grid":
            raise usage("--argmax is for grid CVAEs (their randomness is in z)", "--argmax")
        net.config.argmax = True
    return net


# ------------------------------------------------------------------------------------ commands
def sample(
    model: str = ModelOpt,
    state: Optional[str] = typer.Option(None, "--state", help="Grid: agent x,y, ghost 1 x,y, ghost 2 x,y "
                                        "(e.g. 0,0,1,3,5,3; x to the right, y up, 0-6)."),
    action: Optional[str] = typer.Option(None, "--action", "-a", help="Grid: up, down, right or left."),
    x: Optional[float] = typer.Option(None, "--x", help="Toy: the input x in [-1, 1]."),
    n: int = typer.Option(100, "-n", "--samples", help=f"Samples to draw (1..{MAX_SAMPLES:,})."),
    seed: Optional[int] = typer.Option(None, "--seed", help="Same seed, same samples."),
    argmax: bool = ArgmaxOpt,
    device: str = DeviceOpt,
    models_dir: Optional[Path] = ModelsDirOpt,
    as_json: bool = typer.Option(False, "--json", help="One JSON record: the samples and (grid) the frequency of each "
                                 "distinct next state beside its true probability."),
):
    """Sample next states from a learned model.

    Grid: one line per distinct next state, `STATE<TAB>COUNT<TAB>FREQUENCY<TAB>TRUE` (TRUE: its exact
    probability in the real gridworld), most frequent first. Toy: one sampled y per line.

    Examples:

    `vqtool dynamics sample -m dynamics-grid --state 0,0,1,3,5,3 --action up -n 1000`

    `vqtool dynamics sample -m dynamics-toy --x 0.5 -n 100 --json`
    """
    if not 1 <= n <= MAX_SAMPLES:
        raise usage(f"must lie in 1..{MAX_SAMPLES:,}, not {n}", "-n")
    net = _load(model, device, models_dir, argmax)
    if net.config.env == "grid":
        if x is not None or state is None or action is None:
            raise usage(f"{net.name} models the gridworld: give --state and --action (not --x)")
        _sample_grid(net, parse_state(state), parse_action(action), n, seed, as_json)
    else:
        if x is None or state is not None or action is not None:
            raise usage(f"{net.name} models the toy function: give --x (not --state/--action)")
        if not -1 <= x <= 1:
            raise usage(f"the toy function is defined for x in [-1, 1], not {x}", "--x")
        values = [round(float(v), 5) for v in net.sample_y(x, n, seed)]
        if as_json:
            emit_json({"model": net.name, "x": x, "n": n, "seed": seed, "samples": values})
        else:
            _print("".join(f"{v}\n" for v in values))


def _sample_grid(net, state: tuple, action: int, n: int, seed, as_json: bool) -> None:
    from vqtool.data.dynamics import transition

    counts = net.sample_next(state, action, n, seed)
    truth = transition(state, action)
    rows = [{"state": list(s), "count": c, "frequency": round(c / n, 5), "true_probability": round(truth.get(s, 0.0), 5)}
            for s, c in counts]
    drawn = dict(counts)
    missed = [{"state": list(s), "count": 0, "frequency": 0.0, "true_probability": round(p, 5)}
              for s, p in sorted(truth.items(), key=lambda item: -item[1]) if s not in drawn]
    if as_json:
        samples = [list(s) for s, c in counts for _ in range(c)]
        emit_json({"model": net.name, "state": list(state), "action": ACTION_NAMES[action], "n": n, "seed": seed,
                   "samples": samples, "frequencies": rows + missed})
    else:
        _print("".join(f"{','.join(map(str, r['state']))}\t{r['count']}\t{r['frequency']:.4f}\t{r['true_probability']:.4f}\n"
                       for r in rows + missed))


def _print(text: str) -> None:
    from vqtool.media import write_stdout

    write_stdout(text.encode())


def evaluate(
    model: str = ModelOpt,
    samples: int = typer.Option(2000, "--samples", min=10, help="Samples per test input for the distances."),
    argmax: bool = ArgmaxOpt,
    device: str = DeviceOpt,
    models_dir: Optional[Path] = ModelsDirOpt,
    as_json: bool = typer.Option(False, "--json", help="One JSON record: the card's numbers and these."),
):
    """Re-measure a checkpoint's card numbers on the test split (NLL, Hellinger, TV, KL, floors).

    Example: `vqtool dynamics eval -m dynamics-grid`
    """
    from .task import evaluate_model

    net = _load(model, device, models_dir, argmax)
    now = evaluate_model(net, samples)  # the model's sampling and likelihood run without gradients
    card = net.metadata.get("metrics", {})
    if as_json:
        emit_json({"model": net.name, "card": {k: v for k, v in card.items() if k in now}, "measured": now})
        return
    lines = [f"{'metric':<28}{'card':>12}{'now':>12}"]
    for key, value in now.items():
        before = card.get(key)
        lines.append(f"{key:<28}{_shown(before):>12}{_shown(value):>12}")
    _print("\n".join(lines) + "\n")


def _shown(value) -> str:
    if value is None:
        return "-"
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def plot(
    models: List[str] = typer.Option(..., "--model", "-m", help="Checkpoints to draw (repeat -m), all of one system."),
    output: str = typer.Option(..., "--output", "-o", help="PNG file to write."),
    states: int = typer.Option(4, "--states", min=1, max=8, help="Grid: how many (state, action) pairs to draw."),
    samples: int = typer.Option(2000, "--samples", min=10, help="Samples per input."),
    device: str = DeviceOpt,
    models_dir: Optional[Path] = ModelsDirOpt,
):
    """Draw models against the true system (matplotlib, PNG).

    Toy: the test data beside each model's samples over x. Grid: for a few held-out states, the true
    next positions of the ghosts beside each model's sampled ones.

    Example: `vqtool dynamics plot -m dynamics-toy -m runs/toy-mse/toy-mse.safetensors -o toy.png`
    """
    if not output.lower().endswith(".png"):
        raise usage(f"plots are PNG files, not '{output}'", "--output")
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise VqtoolError("plots need matplotlib: pip install 'vqtool[figures]'") from None
    from .plots import draw

    nets = [_load(m, device, models_dir) for m in models]
    if len({net.config.env for net in nets}) > 1:
        raise usage("draw models of one system at a time (all toy or all grid)", "--model")
    draw(nets, output, states, samples)
    console.print(f"wrote {output}")


def register(app: typer.Typer, train_app: typer.Typer) -> None:
    dynamics_app = typer.Typer(no_args_is_help=True, help="Learned next-state models of stochastic systems "
                                                          "(multimodal transition dynamics).")
    dynamics_app.command("sample")(sample)
    dynamics_app.command("eval")(evaluate)
    dynamics_app.command("plot")(plot)
    app.add_typer(dynamics_app, name="dynamics")
    train_command(train_app, "dynamics", name="dynamics", steps=10_000, lr=1e-3, batch_size=128)(train_dynamics)
