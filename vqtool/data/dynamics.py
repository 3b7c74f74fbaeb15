"""The two stochastic systems of Moerland, Broekens and Jonker (2017), "Learning Multimodal Transition
Dynamics for Model-Based Reinforcement Learning", written here from the definitions of their public
code (tmoer/multimodal_varinf: datasets/Dataset2.py, rlenv/grid.py); docs/dynamics.md states them.

- The **toy function**: x ~ U(-1, 1); y is one of up to three curves of x plus N(0, 0.1^2) noise.
- The **gridworld**: 7x7 with walls, an agent that moves deterministically, ghost 1 moving uniformly
  over its valid moves, ghost 2 with up/down/right/left probabilities 0.1/0.1/0.4/0.4 renormalised over
  its valid moves. The state is (agent x, y, ghost 1 x, y, ghost 2 x, y); if the agent steps onto a
  ghost the episode ends there and the ghosts do not move (the deterministic transitions).

Both are generated, not downloaded: the splits are fixed by seeds, so every number the project reports
is measured on the same held-out data. The exact next-state distribution of any grid (state, action)
is enumerable (`transition`); the toy's conditional density is known in closed form (`toy_density`).
numpy only (the training sampler `grid_step` takes torch tensors and imports torch when called).
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np

# ---------------------------------------------------------------------------------------- toy function
TOY_NOISE = 0.1
TOY_SIZES = {"train": 2000, "validation": 500, "test": 500}
TOY_SEEDS = {"train": 20170001, "validation": 20170002, "test": 20170003}


def toy_modes(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The curves y can follow at each x and their probabilities: (means [N, 3], weights [N, 3])."""
    x = np.asarray(x, dtype=np.float64)
    means, weights = np.zeros(x.shape + (3,)), np.zeros(x.shape + (3,))
    left, middle, right = x < -0.3, (x >= -0.3) & (x < 0.3), x >= 0.3
    means[left, 0], weights[left, 0] = 2.5, 1.0
    means[middle, 0], means[middle, 1] = 4 * x[middle] + 4, -4 * x[middle] + 1.5
    weights[middle, 0], weights[middle, 1] = 0.2, 0.8
    means[right, 0], means[right, 1], means[right, 2] = np.log(x[right] + 1) + 5, -x[right] + 0.2, 5 * x[right] ** 2
    weights[right] = (0.3, 0.35, 0.35)
    return means, weights


def toy_sample(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One y for each x, drawn from the toy function."""
    means, weights = toy_modes(x)
    cumulative = weights.cumsum(-1)
    mode = (rng.random(np.shape(x))[..., None] > cumulative).sum(-1).clip(0, 2)
    return np.take_along_axis(means, mode[..., None], -1)[..., 0] + rng.normal(0, TOY_NOISE, np.shape(x))


def toy_density(y: np.ndarray, x: np.ndarray) -> np.ndarray:
    """p(y | x) of the toy function (a mixture of Gaussians)."""
    means, weights = toy_modes(x)
    z = (np.asarray(y, dtype=np.float64)[..., None] - means) / TOY_NOISE
    return (weights * np.exp(-0.5 * z ** 2)).sum(-1) / (TOY_NOISE * math.sqrt(2 * math.pi))


def toy_bin_probabilities(x: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """The exact probability of each bin [edges[i], edges[i+1]) at each x: [N, bins] (the outer bins
    reach to -inf and +inf)."""
    from math import erf

    means, weights = toy_modes(x)
    cdf = np.vectorize(lambda v: 0.5 * (1 + erf(v / math.sqrt(2))))
    inner = edges[1:-1]
    below = (weights[..., None] * cdf((inner - means[..., None]) / TOY_NOISE)).sum(-2)  # P(y < edge)
    below = np.concatenate([np.zeros(below.shape[:-1] + (1,)), below, np.ones(below.shape[:-1] + (1,))], -1)
    return np.diff(below, axis=-1)


def toy_split(split: str) -> tuple[np.ndarray, np.ndarray]:
    """(x, y) of a fixed split: train 2,000, validation 500, test 500 (float32)."""
    rng = np.random.default_rng(TOY_SEEDS[split])
    x = rng.uniform(-1, 1, TOY_SIZES[split])
    return x.astype(np.float32), toy_sample(x, rng).astype(np.float32)


@lru_cache(maxsize=1)
def toy_floors() -> dict:
    """Reference numbers from the generator: the true NLL per point (nats; population, by Monte Carlo
    over 2,000,000 points) and the NLL of the best unimodal Gaussian (the true conditional mean and
    variance at each x, averaged over a fine grid of x)."""
    rng = np.random.default_rng(7)
    x = rng.uniform(-1, 1, 2_000_000)
    y = toy_sample(x, rng)
    true_nll = float(-np.log(toy_density(y, x)).mean())
    grid = np.linspace(-1, 1, 200_001)
    means, weights = toy_modes(grid)
    mean = (weights * means).sum(-1)
    variance = (weights * (means ** 2)).sum(-1) - mean ** 2 + TOY_NOISE ** 2
    gaussian = float((0.5 * np.log(2 * math.pi * math.e * variance)).mean())
    return {"true_nll": round(true_nll, 4), "best_gaussian_nll": round(gaussian, 4)}


# ---------------------------------------------------------------------------------------- gridworld
SIZE = 7
ACTIONS = ("up", "down", "right", "left")
MOVES = np.array([(0, 1), (0, -1), (1, 0), (-1, 0)])  # (dx, dy) of each action, world[x, y]
GHOST2_WEIGHTS = np.array([0.1, 0.1, 0.4, 0.4])
START = (0, 0, 1, 3, 5, 3)
GOAL = (6, 6)
GRID_TEST_PAIRS, GRID_VALIDATION_PAIRS = 1500, 750
GRID_SEEDS = {"validation": 20170102, "test": 20170103}


def world() -> np.ndarray:
    """1 where a wall is: world[x, y]."""
    w = np.zeros((SIZE, SIZE), dtype=np.int8)
    w[1:6, 1] = 1
    w[1:3, 4] = 1
    w[4:6, 4] = 1
    return w


WALLS = world()
FREE = [(x, y) for x in range(SIZE) for y in range(SIZE) if not WALLS[x, y]]  # 40 cells


def _valid_moves() -> np.ndarray:
    """valid[x, y, a]: whether action a from (x, y) stays on the grid and off the walls."""
    valid = np.zeros((SIZE, SIZE, 4), dtype=bool)
    for x, y in FREE:
        for a, (dx, dy) in enumerate(MOVES):
            nx, ny = x + dx, y + dy
            valid[x, y, a] = 0 <= nx < SIZE and 0 <= ny < SIZE and not WALLS[nx, ny]
    return valid


VALID = _valid_moves()


def check_state(state) -> tuple[int, ...]:
    """A state as six ints, or ValueError naming what is wrong with it."""
    values = tuple(int(v) for v in state)
    if len(values) != 6:
        raise ValueError(f"a grid state has 6 numbers (agent x,y, ghost 1 x,y, ghost 2 x,y), not {len(values)}")
    for who, (x, y) in zip(("agent", "ghost 1", "ghost 2"), (values[0:2], values[2:4], values[4:6])):
        if not (0 <= x < SIZE and 0 <= y < SIZE):
            raise ValueError(f"the {who} at ({x},{y}) is outside the 7x7 grid")
        if WALLS[x, y]:
            raise ValueError(f"the {who} at ({x},{y}) is on a wall")
    return values


def _step_agent(x: int, y: int, action: int) -> tuple[int, int]:
    if VALID[x, y, action]:
        return x + int(MOVES[action][0]), y + int(MOVES[action][1])
    return x, y


def ghost_moves(x: int, y: int, ghost: int) -> list[tuple[tuple[int, int], float]]:
    """((x', y'), probability) of each move of ghost 1 (uniform) or 2 (weighted), over its valid moves."""
    weights = VALID[x, y] * (np.ones(4) if ghost == 1 else GHOST2_WEIGHTS)
    weights = weights / weights.sum()
    return [((x + int(MOVES[a][0]), y + int(MOVES[a][1])), float(weights[a])) for a in range(4) if weights[a] > 0]


def transition(state, action: int) -> dict[tuple[int, ...], float]:
    """The exact next-state distribution of one (state, action): {next state: probability}."""
    px, py, g1x, g1y, g2x, g2y = check_state(state)
    px, py = _step_agent(px, py, int(action))
    if (px, py) in ((g1x, g1y), (g2x, g2y)):  # caught: the episode ends, the ghosts stay
        return {(px, py, g1x, g1y, g2x, g2y): 1.0}
    out = {}
    for (a, b), p1 in ghost_moves(g1x, g1y, 1):
        for (c, d), p2 in ghost_moves(g2x, g2y, 2):
            out[(px, py, a, b, c, d)] = out.get((px, py, a, b, c, d), 0.0) + p1 * p2
    return out


def reward_of(next_state) -> tuple[float, bool]:
    """(reward, episode over) from the next state: -1 caught by a ghost, +10 at the goal, else 0."""
    s = tuple(int(v) for v in next_state)
    if s[0:2] in (s[2:4], s[4:6]):
        return -1.0, True
    if s[0:2] == GOAL:
        return 10.0, True
    return 0.0, False


@lru_cache(maxsize=1)
def all_pairs() -> np.ndarray:
    """Every valid (state, action) as rows of 7 ints: 40^3 states x 4 actions = 256,000 (cached: do
    not modify)."""
    cells = np.array(FREE)
    i, j, k, a = np.meshgrid(*(np.arange(len(cells)),) * 3, np.arange(4), indexing="ij")
    return np.concatenate([cells[i.ravel()], cells[j.ravel()], cells[k.ravel()], a.reshape(-1, 1)], 1)


def pair_key(pairs: np.ndarray) -> np.ndarray:
    """One integer per (state, action) row (base 7 digits, then the action)."""
    pairs = np.asarray(pairs, dtype=np.int64)
    key = np.zeros(len(pairs), dtype=np.int64)
    for column in range(6):
        key = key * SIZE + pairs[:, column]
    return key * 4 + pairs[:, 6]


@lru_cache(maxsize=None)
def grid_split(split: str) -> np.ndarray:
    """Held-out (state, action) rows drawn uniformly over the valid ones: test 1,500, validation 750
    (validation never repeats a test pair)."""
    pairs = all_pairs()
    chosen = np.random.default_rng(GRID_SEEDS["test"]).choice(len(pairs), GRID_TEST_PAIRS, replace=False)
    if split == "test":
        return pairs[chosen]
    rest = np.setdiff1d(np.arange(len(pairs)), chosen)
    return pairs[np.random.default_rng(GRID_SEEDS["validation"]).choice(rest, GRID_VALIDATION_PAIRS, replace=False)]


@lru_cache(maxsize=1)
def training_pairs() -> np.ndarray:
    """Every valid (state, action) except the held-out ones (253,750): training draws from these."""
    pairs = all_pairs()
    held = np.concatenate([pair_key(grid_split("test")), pair_key(grid_split("validation"))])
    return pairs[~np.isin(pair_key(pairs), held)]


@lru_cache(maxsize=1)
def grid_floors() -> dict:
    """Over every valid (state, action), by enumeration: the mean entropy of the next state (nats) and
    the share of deterministic transitions."""
    entropy, deterministic = [], 0
    ghost_entropy = {}
    for x, y in FREE:
        for ghost in (1, 2):
            p = np.array([q for _, q in ghost_moves(x, y, ghost)])
            ghost_entropy[(x, y, ghost)] = float(-(p * np.log(p)).sum())
    for px, py, g1x, g1y, g2x, g2y, action in all_pairs():
        nx, ny = _step_agent(px, py, action)
        if (nx, ny) in ((g1x, g1y), (g2x, g2y)):
            deterministic += 1
            entropy.append(0.0)
        else:
            entropy.append(ghost_entropy[(g1x, g1y, 1)] + ghost_entropy[(g2x, g2y, 2)])
    count = len(entropy)
    return {"true_entropy": round(float(np.mean(entropy)), 4), "deterministic_share": round(deterministic / count, 4),
            "pairs": count}


def grid_step(states, actions, generator=None):
    """Next states of a batch (torch: states [B, 6] long, actions [B] long), sampled from the true
    dynamics with `generator`: the training sampler."""
    import torch

    valid = torch.as_tensor(VALID, device=states.device)
    moves = torch.as_tensor(MOVES, device=states.device)
    agent, one, two = states[:, 0:2], states[:, 2:4], states[:, 4:6]
    can = valid[agent[:, 0], agent[:, 1], actions]
    agent = torch.where(can[:, None], agent + moves[actions], agent)
    caught = (agent == one).all(1) | (agent == two).all(1)
    out = [agent]
    for position, weights in ((one, torch.ones(4)), (two, torch.as_tensor(GHOST2_WEIGHTS))):
        probabilities = valid[position[:, 0], position[:, 1]].double() * weights.double().to(states.device)
        move = torch.multinomial(probabilities.cpu(), 1, generator=generator)[:, 0].to(states.device)
        out.append(torch.where(caught[:, None], position, position + moves[move]))
    return torch.cat(out, 1)
