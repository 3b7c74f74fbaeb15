"""Training on the toy function and the gridworld, and the held-out evaluation against the true
distributions.

Toy: the fixed 2,000 training points, batches drawn epoch by epoch. Grid: each batch is a batch of
(state, action) pairs drawn epoch by epoch from every valid pair except the held-out ones, with a next
state sampled afresh from the true dynamics at every step (the paper trains on fresh transitions too),
so the grid's test pairs are (state, action) pairs the model never trained on.

Evaluation (`evaluate_model`, also behind `vqtool dynamics eval`):
- NLL (nats): toy, -mean log p(y|x) over the 500 test points; grid, the expected NLL of the next
  state under the true distribution, -sum_s' p(s'|s,a) log q(s'|s,a), averaged over the 1,500 test pairs
  (exact over the true outcomes rather than one sampled next state; its floor is the true entropy). The
  CVAE's is the importance-weighted bound with k = 40 samples of q(z|x,y). The squared-error model has
  no likelihood: on the toy it is given the Gaussian whose variance is its validation residuals'.
- Distances between the model's samples (`samples` per test input) and the true distribution: grid,
  over next states (exact true probabilities); toy, over bins of y 0.1 wide (exact true bin masses).
  The `floor_*` numbers are the same distances for the true system's own samples, same count: what a
  perfect model would score at this sample size.
- `impossible`: share of samples the true system never produces (grid: probability 0; toy: more than
  3 noise deviations from every curve at that x). `deterministic_*` (grid): on the test pairs whose next
  state is certain, the share of samples that are exactly it, and the share of those pairs where all are.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
import torch

from vqtool.data import dynamics as envs
from vqtool.evaluation import distribution_distances
from vqtool.training import TaskBase

from .model import DynamicsConfig, DynamicsModel

EVAL_SAMPLES = 2000  # samples per test input for the distances
VALIDATION_K = 10
TEST_K = 40
TOY_EDGES = np.round(np.arange(-2.5, 8.5 + 1e-9, 0.1), 6)  # the outer bins reach to -inf / +inf
IMPOSSIBLE_DEVIATIONS = 3.0
EVAL_SEED = 1234
CHUNK = 200_000  # rows per model call when sampling


class DynamicsTask(TaskBase):
    model_class = DynamicsModel
    select_by = "score"

    def __init__(self, config: DynamicsConfig, data_info: dict, validate_every: int = 500,
                 baselines: dict | None = None, samples: int = EVAL_SAMPLES):
        self.config, self.data_info, self.validate_every = config, data_info, validate_every
        self.baselines, self.samples = baselines or {}, samples
        if config.env == "toy":
            x, y = envs.toy_split("train")
            self.train_x, self.train_y = torch.from_numpy(x), torch.from_numpy(y)
        else:
            self.train_pairs = torch.tensor(envs.training_pairs())  # a copy: the cached array stays as it is

    def dataset_size(self) -> int:
        return len(self.train_x) if self.config.env == "toy" else len(self.train_pairs)

    def batch(self, indices, device, generator):
        if self.config.env == "toy":
            return self.train_x[indices].to(device), self.train_y[indices].to(device)
        pairs = self.train_pairs[indices]
        return pairs.to(device), envs.grid_step(pairs[:, :6], pairs[:, 6], generator).to(device)

    def loss(self, model, batch, generator):
        return model(*batch, generator)

    def validate(self, model, device) -> dict:
        return validation_metrics(model, self.config.env)

    def evaluate(self, model, device) -> dict:
        out = evaluate_model(model, self.samples)
        out.update({f"validation_{k}": v for k, v in validation_metrics(model, self.config.env).items()})
        if self.baselines:
            out["baselines"] = self.baselines
        return out

    def card_notes(self) -> dict:
        return {"task": "dynamics", "summary": f"{self.config.model} next-state model of the {self.config.env} system "
                                                "(Moerland et al., 2017)."}


def data_info(env: str) -> dict:
    """Provenance of the generated data: what, which seeds, a SHA-256 of the training inputs."""
    import hashlib

    if env == "toy":
        x, y = envs.toy_split("train")
        digest = hashlib.sha256(x.tobytes() + y.tobytes()).hexdigest()
        return {"train_data": "dynamics-toy", "train_split": f"train (seed {envs.TOY_SEEDS['train']})",
                "train_items": len(x), "train_sha256": digest,
                "eval_split": f"test, {envs.TOY_SIZES['test']} points (seed {envs.TOY_SEEDS['test']}); validation "
                              f"{envs.TOY_SIZES['validation']} (seed {envs.TOY_SEEDS['validation']})"}
    pairs = envs.training_pairs()
    return {"train_data": "dynamics-grid", "train_split": "every valid (state, action) but the held-out ones, next "
                                                          "state sampled afresh each step",
            "train_items": len(pairs), "train_sha256": hashlib.sha256(pairs.tobytes()).hexdigest(),
            "eval_split": f"test, {envs.GRID_TEST_PAIRS} (state, action) pairs (seed {envs.GRID_SEEDS['test']}); "
                          f"validation {envs.GRID_VALIDATION_PAIRS} (seed {envs.GRID_SEEDS['validation']})"}


# ------------------------------------------------------------------------------------ held-out data
@lru_cache(maxsize=None)
def split_outcomes(split: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """`outcome_rows` of a held-out grid split, enumerated once per process (validation reads them every
    `validate_every` steps)."""
    return outcome_rows(envs.grid_split(split))


def outcome_rows(pairs: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Every true outcome of each (state, action): (pair index, input row, next state, probability)."""
    index, inputs, nexts, probs = [], [], [], []
    for i, row in enumerate(pairs):
        for nxt, p in envs.transition(row[:6], int(row[6])).items():
            index.append(i)
            inputs.append(row)
            nexts.append(nxt)
            probs.append(p)
    return np.array(index), np.array(inputs), np.array(nexts), np.array(probs)


def _generator() -> torch.Generator:
    return torch.Generator().manual_seed(EVAL_SEED)


def _nll(model, env: str, split: str, k: int) -> float | None:
    """The NLL of a split (module docstring); None for the squared-error model on the grid."""
    generator = _generator()
    if env == "toy":
        x, y = envs.toy_split(split)
        if model.config.model == "mse":
            return _mse_gaussian_nll(model, x, y)
        return float(-_in_chunks(lambda a, b: model.log_likelihood(a, b, k, generator), x, y, k).mean())
    if model.config.model == "mse":
        return None
    index, inputs, nexts, probs = split_outcomes(split)
    logq = _in_chunks(lambda a, b: model.log_likelihood(a, b, k, generator), inputs, nexts, k).numpy()
    per_pair = np.bincount(index, weights=-probs * logq)
    return float(per_pair.mean())


def _in_chunks(fn, inputs, targets, k: int) -> torch.Tensor:
    rows = max(1, CHUNK // max(1, k))
    return torch.cat([fn(torch.as_tensor(inputs[i:i + rows]), torch.as_tensor(targets[i:i + rows]))
                      for i in range(0, len(inputs), rows)])


def _mse_gaussian_nll(model, x, y) -> float:
    """The squared-error model as a Gaussian whose variance is its validation residuals' mean square."""
    vx, vy = envs.toy_split("validation")
    variance = float(((model.sample(torch.from_numpy(vx))[:, 0].numpy() - vy) ** 2).mean())
    error = model.sample(torch.from_numpy(x))[:, 0].numpy() - y
    return float((0.5 * (math.log(2 * math.pi * variance) + error ** 2 / variance)).mean())


def validation_metrics(model, env: str) -> dict:
    """{"score": higher is better} for selecting weights: -NLL (k = 10), or -squared error for mse."""
    if model.config.model != "mse":
        nll = _nll(model, env, "validation", VALIDATION_K)
        return {"score": round(-nll, 5), "nll": round(nll, 5)}
    if env == "toy":
        x, y = envs.toy_split("validation")
        error = float(((model.sample(torch.from_numpy(x))[:, 0].numpy() - y) ** 2).mean())
    else:
        index, inputs, nexts, probs = split_outcomes("validation")
        predicted = model.sample(torch.as_tensor(envs.grid_split("validation")))[:, 0].numpy()
        error = float(np.bincount(index, weights=probs * ((predicted[index] - nexts) ** 2).sum(1)).mean())
    return {"score": round(-error, 5), "mse": round(error, 5)}


# ------------------------------------------------------------------------------------ distances
def sample_inputs(model, inputs: np.ndarray, n: int) -> np.ndarray:
    """n samples per input row, in chunks: toy [B, n]; grid [B, n, 6]."""
    generator, rows = _generator(), max(1, CHUNK // n)
    return np.concatenate([model.sample(torch.as_tensor(inputs[i:i + rows]), n, generator).numpy()
                           for i in range(0, len(inputs), rows)])


def state_keys(states: np.ndarray) -> np.ndarray:
    keys = np.zeros(states.shape[:-1], dtype=np.int64)
    for column in range(states.shape[-1]):
        keys = keys * envs.SIZE + states[..., column]
    return keys


def grid_distances(pairs: np.ndarray, samples: np.ndarray) -> dict:
    """Distances of sampled next states [B, n, 6] to the exact distribution of each pair, averaged."""
    rows, impossible, certain_share, certain_all = [], [], [], []
    keys = state_keys(samples.astype(np.int64))
    for row, drawn in zip(pairs, keys):
        truth = envs.transition(row[:6], int(row[6]))
        true_keys = state_keys(np.array(list(truth)))
        values, counts = np.unique(drawn, return_counts=True)
        support = np.union1d(true_keys, values)
        p = np.zeros(len(support))
        p[np.searchsorted(support, true_keys)] = list(truth.values())
        q = np.zeros(len(support))
        q[np.searchsorted(support, values)] = counts / len(drawn)
        rows.append(distribution_distances(p, q))
        impossible.append(q[p == 0].sum())
        if len(truth) == 1:
            certain_share.append(q[p == 1].sum())
            certain_all.append(float(q[p == 1].sum() == 1))
    out = {k: float(np.mean([r[k] for r in rows])) for k in rows[0]}
    out["impossible"] = float(np.mean(impossible))
    out["deterministic_exact"] = float(np.mean(certain_share))
    out["deterministic_pairs_exact"] = float(np.mean(certain_all))
    out["deterministic_pairs"] = len(certain_share)
    return out


def toy_distances(x: np.ndarray, samples: np.ndarray) -> dict:
    """Distances of sampled y [B, n] to the exact bin masses at each x, averaged; `impossible` too."""
    inner = TOY_EDGES[1:-1]
    bins = np.digitize(samples, inner)  # 0 .. len(inner)
    q = np.stack([np.bincount(b, minlength=len(inner) + 1) for b in bins]) / samples.shape[1]
    p = envs.toy_bin_probabilities(x, TOY_EDGES)
    out = distribution_distances(p, q)
    means, weights = envs.toy_modes(x)
    distance = np.abs(samples[..., None] - means[:, None, :]) / envs.TOY_NOISE
    distance = np.where(weights[:, None, :] > 0, distance, np.inf).min(-1)
    out["impossible"] = float((distance > IMPOSSIBLE_DEVIATIONS).mean())
    return out


def true_samples(env: str, inputs: np.ndarray, n: int) -> np.ndarray:
    """The true system's own samples, n per input (for the floors)."""
    if env == "toy":
        rng = np.random.default_rng(EVAL_SEED)
        return envs.toy_sample(np.repeat(inputs[:, None], n, 1), rng)
    rows = torch.as_tensor(np.repeat(inputs, n, 0))
    drawn = envs.grid_step(rows[:, :6], rows[:, 6], _generator())
    return drawn.view(len(inputs), n, 6).numpy()


def distances(env: str, inputs: np.ndarray, samples: np.ndarray) -> dict:
    return toy_distances(inputs, samples) if env == "toy" else grid_distances(inputs, samples)


def evaluate_model(model, n: int = EVAL_SAMPLES, k: int = TEST_K) -> dict:
    """The card's numbers on the test split (module docstring), with the floors at the same n."""
    env = model.config.env
    inputs = envs.toy_split("test")[0] if env == "toy" else envs.grid_split("test")
    out = {"test_nll": _r(_nll(model, env, "test", k)), "iw_samples": k if model.config.model == "cvae" else None,
           "samples": n, "test_inputs": len(inputs)}
    out.update({f"test_{key}": _r(v) for key, v in distances(env, inputs, sample_inputs(model, inputs, n)).items()})
    out.update({f"floor_{key}": _r(v) for key, v in distances(env, inputs, true_samples(env, inputs, n)).items()})
    if env == "toy":
        x, y = envs.toy_split("test")
        out["true_nll_test"] = _r(float(-np.log(envs.toy_density(y, x)).mean()))
        out.update({f"reference_{k}": v for k, v in envs.toy_floors().items()})
    else:
        out.update({f"reference_{k}": v for k, v in envs.grid_floors().items()})
        index, _, _, probs = split_outcomes("test")
        out["true_entropy_test"] = _r(float(np.bincount(index, weights=-probs * np.log(probs)).mean()))
    return {k: v for k, v in out.items() if v is not None}


def _r(value):
    """Floats rounded for the card; counts and missing values as they are."""
    return round(value, 5) if isinstance(value, float) else value
