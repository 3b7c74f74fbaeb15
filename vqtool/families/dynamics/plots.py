"""`vqtool dynamics plot`: the paper's toy figure (test data beside each model's samples over x) and,
for the grid, the ghosts' true next positions beside each model's sampled ones for a few held-out
states, drawn as the paper's code draws them (cell shade = probability)."""

from __future__ import annotations

import numpy as np
import torch

from vqtool.data import dynamics as envs
from vqtool.media import atomic_path

from .card import describe

COLOURS = ("green", "red", "blue")  # agent, ghost 1, ghost 2
SAMPLES_PER_X = 4


def draw(nets: list, output: str, states: int, samples: int) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure = _toy(plt, nets) if nets[0].config.env == "toy" else _grid(plt, nets, states, samples)
    with atomic_path(output) as tmp:
        figure.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
    plt.close(figure)


def _title(net) -> str:
    from pathlib import Path

    return f"{describe(vars(net.config))}\n{Path(net.name).stem}"


def _toy(plt, nets):
    x, y = envs.toy_split("test")
    columns = len(nets) + 1
    figure, axes = plt.subplots(1, columns, figsize=(3.2 * columns, 3.2), sharex=True, sharey=True)
    axes[0].scatter(x, y, s=3, c="black")
    axes[0].set_title("true system\n(500 test points)", fontsize=9)
    generator = torch.Generator().manual_seed(0)
    grid = np.linspace(-1, 1, 500, dtype=np.float32)
    for ax, net in zip(axes[1:], nets):
        drawn = net.sample(torch.from_numpy(grid), SAMPLES_PER_X, generator).numpy()
        ax.scatter(x, y, s=3, c="lightgrey")
        ax.scatter(np.repeat(grid, SAMPLES_PER_X), drawn.ravel(), s=2, c="tab:orange", alpha=0.6)
        ax.set_title(_title(net), fontsize=9)
    for ax in axes:
        ax.set_xlabel("x")
        ax.set_ylim(-2, 8)
    axes[0].set_ylabel("y")
    figure.suptitle(f"Toy function: grey, test data; orange, {SAMPLES_PER_X} samples of each model at 500 x",
                    fontsize=10, y=1.06)
    return figure


def chosen_pairs(count: int) -> np.ndarray:
    """The start state moving up, then held-out pairs where both ghosts have several moves."""
    rows = [np.array([*envs.START, 0])]
    for row in envs.grid_split("test"):
        if len(rows) >= count:
            break
        if len(envs.transition(row[:6], int(row[6]))) >= 6:
            rows.append(row)
    return np.stack(rows[:count])


def _marginals(next_states: np.ndarray) -> np.ndarray:
    """[n, 6] next states -> [3, 7, 7] share of samples with each entity in each cell."""
    out = np.zeros((3, envs.SIZE, envs.SIZE))
    for who in range(3):
        np.add.at(out[who], (next_states[:, 2 * who], next_states[:, 2 * who + 1]), 1)
    return out / len(next_states)


def _true_marginals(row) -> np.ndarray:
    out = np.zeros((3, envs.SIZE, envs.SIZE))
    for nxt, p in envs.transition(row[:6], int(row[6])).items():
        for who in range(3):
            out[who, nxt[2 * who], nxt[2 * who + 1]] += p
    return out


def _board(ax, row, shares, title):
    from matplotlib.patches import Circle, Rectangle

    ax.set_xlim(-0.1, envs.SIZE + 0.1)
    ax.set_ylim(-0.1, envs.SIZE + 0.1)
    ax.set_aspect("equal")
    ax.axis("off")
    for cx in range(envs.SIZE):
        for cy in range(envs.SIZE):
            ax.add_patch(Rectangle((cx, cy), 1, 1, facecolor="black" if envs.WALLS[cx, cy] else "white",
                                   edgecolor="grey", linewidth=0.5))
    for who in range(3):
        for cx, cy in zip(*np.nonzero(shares[who] > 0.005)):
            ax.add_patch(Rectangle((cx, cy), 1, 1, facecolor=COLOURS[who], alpha=min(1.0, 0.15 + shares[who, cx, cy]),
                                   linewidth=0))
            ax.text(cx + 0.5, cy + 0.5, f"{shares[who, cx, cy]:.2f}".lstrip("0"), ha="center", va="center", fontsize=5)
        ax.add_patch(Circle((row[2 * who] + 0.5, row[2 * who + 1] + 0.5), 0.18, facecolor="none",
                            edgecolor=COLOURS[who], linewidth=1.5))
    ax.set_title(title, fontsize=7)


def _grid(plt, nets, states: int, samples: int):
    pairs = chosen_pairs(states)
    columns = len(nets) + 1
    figure, axes = plt.subplots(len(pairs), columns, figsize=(2.3 * columns, 2.4 * len(pairs)), squeeze=False)
    generator = torch.Generator().manual_seed(0)
    drawn = [net.sample(torch.from_numpy(pairs), samples, generator).numpy() for net in nets]
    for i, row in enumerate(pairs):
        action = envs.ACTIONS[int(row[6])]
        _board(axes[i, 0], row, _true_marginals(row), f"true next positions\n(agent moves {action})")
        for j, net in enumerate(nets):
            _board(axes[i, j + 1], row, _marginals(drawn[j][i]), _title(net))
    figure.suptitle("Gridworld: circles, where agent (green), ghost 1 (red) and ghost 2 (blue) are; shaded cells, "
                    f"where each is next (share of {samples} samples; true: exact)", fontsize=8, y=1.0)
    return figure
