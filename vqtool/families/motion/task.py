"""Training recipe and held-out evaluation of the motion CVAEs (LTD's short-term CMU protocol)."""

from __future__ import annotations

import torch

from vqtool.cvae import collapse_report
from vqtool.training import TaskBase

from .model import MotionConfig, MotionCVAE
from .skeleton import euler_angles, forward_kinematics

HORIZON_FRAMES = [1, 3, 7, 9, 13, 24]  # LTD's eval_frame: 80, 160, 320, 400, 560 and 1000 ms at 25 frames/s
SAMPLE_COUNTS = (1, 10, 50)
EVAL_SEED = 2024  # the evaluation's own random source: every model sees the same noise stream
EVAL_CHUNK = 32  # windows per pass (x K samples each)


def horizon_ms(frame: int, fps: float = 25.0) -> int:
    return int(round((frame + 1) * 1000 / fps))


class MotionTask(TaskBase):
    """Loss per window = sum of squared errors of the future's modelled channels (radians, raw values) /
    (2 likelihood_std^2) — a Gaussian log-likelihood up to a constant — plus, for `cpp`, the same for
    the reconstructed observed frames, plus the annealed KL terms of `vqtool.cvae`."""

    model_class = MotionCVAE

    def __init__(self, config: MotionConfig, train, evaluation_sets: dict, stats, data_info: dict,
                 baselines: dict | None = None):
        self.config, self.train, self.sets, self.data_info = config, train, evaluation_sets, data_info
        self.stats, self.baselines = stats, baselines or {}
        self.groups = list(train.by_action().values())  # window indices of each action

    def build(self) -> MotionCVAE:
        model = MotionCVAE(self.config)
        mean, std, _ = self.stats
        model.mean.copy_(torch.as_tensor(mean))
        model.std.copy_(torch.as_tensor(std))
        return model

    def optimizer_groups(self, model) -> list[dict]:
        return [{"params": list(model.parameters()), "weight_decay": self.config.weight_decay}]

    def batch(self, indices, device, generator):
        if self.config.balance_actions:
            indices = self.balanced(len(indices), generator)
        windows = torch.as_tensor(self.train.windows(indices)).to(device)
        observed = self.config.observed
        return windows[:, :observed], windows[:, observed:observed + self.config.predicted]

    def balanced(self, size: int, generator) -> list[int]:
        """Windows drawn action first, uniformly, then uniformly within the action: the test protocol
        weighs actions equally, while the training files give 70% of the windows to two slow ones."""
        actions = torch.randint(len(self.groups), (size,), generator=generator).tolist()
        where = torch.rand(size, generator=generator).tolist()
        return [self.groups[a][int(u * len(self.groups[a]))] for a, u in zip(actions, where)]

    def loss(self, model, batch, generator):
        observed, future = batch
        out = model(observed, future, generator)
        core = model.module if hasattr(model, "module") else model
        scale = 0.5 / self.config.likelihood_std ** 2
        index = core.channel_index
        error = (out["future"] - future[..., index]).pow(2).sum((1, 2)).mean()
        loss = scale * error
        metrics = {"sq_error": float(error.detach()) / future.shape[1]}
        if "condition" in out:
            condition = (out["condition"] - observed[..., index]).pow(2).sum((1, 2)).mean()
            loss = loss + scale * condition
            metrics["condition_sq_error"] = float(condition.detach()) / observed.shape[1]
        kl, logged = core.latent.kl_loss(out["terms"], int(core.steps_trained))
        return loss + kl, {**metrics, **logged}

    def evaluate(self, model, device) -> dict:
        sets = {name: windows for name, windows in self.sets.items() if len(windows)}
        metrics = measure(model, sets, device)
        if self.baselines:
            metrics["baselines"] = {"zero-velocity": zero_velocity_metrics(sets),
                                    **{label: measure(other.to(device), sets, device)
                                       for label, other in self.baselines.items()}}
        return metrics

    def card_notes(self) -> dict:
        c = self.config
        kind = {"cpp": "CPP-VAE (the condition's posterior as the prior)", "standard": "conditional VAE (N(0, I) prior)",
                "learned": "conditional VAE with a learned conditional prior",
                "none": "deterministic model (the same networks without a latent)"}[c.prior]
        return {"task": "motion", "summary": f"A {kind} of human motion on the CMU mocap skeleton: from "
                f"{c.observed} observed frames ({c.observed / c.fps:g} s at {c.fps:g} frames/s) it predicts "
                f"{c.predicted} more ({c.predicted / c.fps:g} s), as many different futures as asked: "
                f"`vqtool predict-motion clip.txt -n 10 -o futures.gif`."}


def measure(model, sets: dict, device) -> dict:
    """Every number of the card for one model: errors and APD on each set, latent use on the test windows."""
    metrics = {}
    for name, windows in sets.items():
        metrics.update(evaluate_windows(model, windows, name, device))
    if "dense" in sets:
        metrics.update(latent_report(model, sets["dense"], device))
    return metrics


def _errors(futures: torch.Tensor, truth: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per window, sample and frame: Euler error (L2 over all 117 angles, radians) and mean joint error (mm),
    plus the 3-D joints of the futures; futures [N, K, F, 117], truth [N, F, 117] (converted once, not K times)."""
    euler = (euler_angles(futures) - euler_angles(truth)[:, None]).norm(dim=-1)
    joints = forward_kinematics(futures, with_root=False)
    mpjpe = (joints - forward_kinematics(truth, with_root=False)[:, None]).norm(dim=-1).mean(-1)
    return euler, mpjpe, joints


def summarise(euler: torch.Tensor, mpjpe: torch.Tensor, joints: torch.Tensor, prefix: str, k: int) -> dict:
    """Best of K: the sample with the lowest mean error over the whole future, reported at each horizon
    (Euler and 3-D picked separately, each by its own error); mean of K: averaged over the samples."""
    n = euler.shape[0]
    rows = torch.arange(n)
    best_euler = euler[rows, euler.mean(-1).argmin(1)]
    best_mpjpe = mpjpe[rows, mpjpe.mean(-1).argmin(1)]
    out = {}
    for frame in HORIZON_FRAMES:
        ms = horizon_ms(frame)
        out[f"{prefix}_euler_best{k}_{ms}ms"] = round(float(best_euler[:, frame].mean()), 4)
        if k > 1:
            out[f"{prefix}_euler_mean{k}_{ms}ms"] = round(float(euler[:, :, frame].mean()), 4)
        out[f"{prefix}_mpjpe_best{k}_{ms}ms"] = round(float(best_mpjpe[:, frame].mean()), 2)
    if k > 1:
        flat = joints.reshape(n, k, -1).double()
        pairs = torch.cdist(flat, flat)  # [N, K, K]
        out[f"{prefix}_apd{k}_mm"] = round(float(pairs.sum((1, 2)).div(k * (k - 1)).mean()), 1)
    return out


@torch.no_grad()
def evaluate_windows(model, windows, prefix: str, device, counts=SAMPLE_COUNTS) -> dict:
    """The card's numbers on one test set for K in `counts` (K = 1 only for a model without a latent)."""
    model.eval()
    c = model.config
    data = torch.as_tensor(windows.windows())
    stochastic = model.latent.size > 0
    collected: dict[int, list] = {}
    generator = torch.Generator().manual_seed(EVAL_SEED)
    for k in counts if stochastic else (1,):
        parts = []
        for start in range(0, len(data), EVAL_CHUNK):
            chunk = data[start:start + EVAL_CHUNK].to(device)
            futures = model.sample(chunk[:, :c.observed], k, c.predicted, generator).cpu()
            parts.append(_errors(futures, chunk[:, c.observed:c.observed + c.predicted].cpu()))
        collected[k] = [torch.cat(p) for p in zip(*parts)]
    out = {f"{prefix}_windows": len(data)}
    for k, (euler, mpjpe, joints) in collected.items():
        out.update(summarise(euler, mpjpe, joints, prefix, k))
    return out


@torch.no_grad()
def latent_report(model, windows, device) -> dict:
    """Per-dimension KL of the data posterior against the model's prior on test windows (collapse check)."""
    if model.latent.size == 0:
        return {}
    model.eval()
    c = model.config
    data = torch.as_tensor(windows.windows()).to(device)
    generator = torch.Generator().manual_seed(EVAL_SEED)
    kl = torch.cat([model.encode(data[s:s + EVAL_CHUNK, :c.observed],
                                 data[s:s + EVAL_CHUNK, c.observed:c.observed + c.predicted], generator)[3]["kl"].cpu()
                    for s in range(0, len(data), EVAL_CHUNK)])
    return collapse_report(kl)


def zero_velocity_metrics(sets: dict, observed: int = 50, predicted: int = 25) -> dict:
    """The baseline that needs no training: every future frame repeats the last observed one."""
    out = {}
    for prefix, windows in sets.items():
        data = torch.as_tensor(windows.windows())
        futures = data[:, observed - 1:observed, None].expand(-1, 1, predicted, -1)
        euler, mpjpe, joints = _errors(futures, data[:, observed:observed + predicted])
        out.update({f"{prefix}_windows": len(data), **summarise(euler, mpjpe, joints, prefix, 1)})
    return out

