"""The shipped dynamics models on held-out data: their card numbers reproduce, the targets they meet
stay met, the deterministic transitions stay deterministic, and a rollout inside LearnedEnv visits
the grid as a rollout in the true environment does."""

from collections import Counter

import numpy as np
import pytest

import vqtool
from vqtool.data import dynamics as envs
from vqtool.families.dynamics import task


@pytest.fixture(scope="module")
def grid_model():
    return vqtool.load("dynamics-grid", "cpu")


@pytest.fixture(scope="module")
def toy_model():
    return vqtool.load("dynamics-toy", "cpu")


def test_toy_card_reproduces_and_meets_the_nll_target(toy_model):
    card = toy_model.metadata["metrics"]
    now = task.evaluate_model(toy_model, 2000)
    for key in ("test_nll", "test_hellinger", "test_tv", "test_impossible"):
        assert now[key] == pytest.approx(card[key], abs=1e-4), key
    assert now["test_nll"] <= -0.2 < card["reference_best_gaussian_nll"]


def test_toy_table_shows_the_mse_baseline_failing(toy_model):
    rows = {other["model"]: other["metrics"] for other in toy_model.metadata["metrics"]["baselines"].values()}
    assert {"mse", "gaussian", "mdn", "ensemble"} <= set(rows)
    assert rows["mse"]["test_impossible"] > 0.3  # its predictions lie between the curves
    assert toy_model.metadata["metrics"]["test_impossible"] < rows["mse"]["test_impossible"] / 3


def test_grid_on_a_slice_of_the_test_pairs(grid_model):
    """300 held-out pairs, 2,000 samples each: the distances stay near the card's (1,500 pairs)."""
    pairs = envs.grid_split("test")[:300]
    drawn = task.sample_inputs(grid_model, pairs, 2000)
    slice_ = task.grid_distances(pairs, drawn)
    card = grid_model.metadata["metrics"]
    assert slice_["hellinger"] == pytest.approx(card["test_hellinger"], abs=0.03)
    assert slice_["impossible"] <= card["test_impossible"] + 0.02
    assert slice_["deterministic_exact"] >= 0.95


def test_grid_samples_the_ghosts_modes_from_the_start(grid_model):
    counts = dict(grid_model.sample_next(envs.START, 0, 4000, seed=0))
    truth = envs.transition(envs.START, 0)
    assert sum(counts.get(s, 0) for s in truth) / 4000 > 0.9  # states that happen
    assert max(abs(counts.get(s, 0) / 4000 - p) for s, p in truth.items()) < 0.08


def test_learned_environment_visits_the_grid_like_the_true_one(grid_model):
    pytest.importorskip("gymnasium")
    from vqtool.dynamics import GridEnv, LearnedEnv

    def visits(env, steps=3000):
        rng = np.random.default_rng(0)
        env.reset(seed=0)
        ghost2, lengths, length = Counter(), [], 0
        for _ in range(steps):
            obs, _, terminated, truncated, _ = env.step(int(rng.integers(4)))
            ghost2[tuple(obs[4:6])] += 1
            length += 1
            if terminated or truncated:
                lengths.append(length)
                length = 0
                env.reset()
        return ghost2, lengths

    true_visits, true_lengths = visits(GridEnv())
    learned_visits, learned_lengths = visits(LearnedEnv(grid_model))
    cells = set(true_visits) | set(learned_visits)
    tv = 0.5 * sum(abs(true_visits[c] - learned_visits[c]) for c in cells) / 3000
    assert tv < 0.15
    assert all(not envs.WALLS[c] for c in learned_visits)  # never on a wall
    assert np.mean(learned_lengths) == pytest.approx(np.mean(true_lengths), rel=0.35)
