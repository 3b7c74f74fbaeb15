"""Speed of the gridworld next-state models on this machine's CPU: next-state samples per second at
batch 1 (one `model.sample` call per sample, the way a planner steps a LearnedEnv) and 4,096 (one call),
for every model kind at the shipped sizes (256 hidden units, 2 layers; weights do not change the speed,
so fresh ones are used), against the true environment's own step rate (`GridEnv.step`, one at a time,
and the vectorised training sampler `grid_step` at 4,096) and `LearnedEnv.step`. Achieved GFLOP/s
(torch's FlopCounterMode) against the measured float32 matmul peak. Medians of 5 repeats.

    python bench/bench_dynamics.py [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import platform
from pathlib import Path

import torch
from bench_caption import flops_of
from bench_motion import median_seconds
from bench_vqvae import matmul_peak

ROOT = Path(__file__).resolve().parent.parent
BIG = 4096
KINDS = {"cvae (continuous)": dict(model="cvae"), "cvae (discrete)": dict(model="cvae", kind="discrete"),
         "mse": dict(model="mse"), "gaussian": dict(model="gaussian"), "mdn": dict(model="mdn"),
         "ensemble": dict(model="ensemble")}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    from vqtool.data import dynamics as envs
    from vqtool.dynamics import GridEnv, LearnedEnv
    from vqtool.families.dynamics.model import DynamicsConfig, DynamicsModel

    peak = matmul_peak(args.threads)
    torch.set_num_threads(args.threads)
    pairs = torch.from_numpy(envs.grid_split("test"))
    big = pairs[torch.arange(BIG) % len(pairs)]
    generator = torch.Generator().manual_seed(0)
    true_env = GridEnv()
    true_env.reset(seed=0)

    def true_step():
        _, _, terminated, truncated, _ = true_env.step(int(torch.randint(4, (1,), generator=generator)))
        if terminated or truncated:
            true_env.reset()

    rows = {"true env, GridEnv.step": (1 / median_seconds(true_step), None, None),
            f"true sampler, grid_step x{BIG}": (BIG / median_seconds(lambda: envs.grid_step(big[:, :6], big[:, 6], generator)),
                                                None, None)}
    for name, settings in KINDS.items():
        torch.manual_seed(0)
        model = DynamicsModel(DynamicsConfig(env="grid", hidden=256, **settings)).eval()
        one = 1 / median_seconds(lambda: model.sample(pairs[:1], 1, generator))
        many_seconds = median_seconds(lambda: model.sample(big, 1, generator))
        flops = flops_of(lambda: model.sample(big, 1, generator))
        rows[name] = (one, BIG / many_seconds, flops / many_seconds / 1e9)
        if name == "cvae (discrete)":
            learned = LearnedEnv(model)
            learned.reset(seed=0)

            def learned_step():
                _, _, terminated, truncated, _ = learned.step(int(torch.randint(4, (1,), generator=generator)))
                if terminated or truncated:
                    learned.reset()

            rows["LearnedEnv.step (cvae discrete)"] = (1 / median_seconds(learned_step), None, None)
    env_rate = rows["true env, GridEnv.step"][0]
    print(f"{'':36}{'batch 1 /s':>12}{f'batch {BIG} /s':>15}{'x batch 1':>10}{'x GridEnv':>10}{'GFLOP/s':>9}{'of peak':>9}")
    for name, (one, many, gflops) in rows.items():
        cells = [f"{one:12,.0f}", f"{many:15,.0f}" if many else f"{'':15}", f"{many / one:10.0f}" if many else f"{'':10}",
                 f"{(many or one) / env_rate:10.2f}", f"{gflops:9.2f}" if gflops else f"{'':9}",
                 f"{gflops / peak:9.1%}" if gflops else f"{'':9}"]
        print(f"{name:36}" + "".join(cells))
    print(f"float32 matmul peak: {peak:.1f} GFLOP/s on {args.threads} thread(s)")
    out = ROOT / "bench" / "results" / "dynamics.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps({"machine": platform.processor() or platform.machine(), "threads": args.threads,
                               "matmul_peak_gflops": round(peak, 1),
                               "rows": {k: {"batch1_per_s": round(a, 1), f"batch{BIG}_per_s": b and round(b, 1),
                                            "gflops": c and round(c, 2)} for k, (a, b, c) in rows.items()}}, indent=1))


if __name__ == "__main__":
    main()
