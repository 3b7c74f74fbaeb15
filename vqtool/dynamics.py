"""The gridworld as `gymnasium` environments: the true one (`GridEnv`) and one whose transitions are
sampled from a learned next-state model (`LearnedEnv`), so that a planner or an RL agent written for
gymnasium runs inside either unchanged::

    import vqtool
    from vqtool.dynamics import GridEnv, LearnedEnv

    real = GridEnv()
    dream = LearnedEnv(vqtool.load("dynamics-grid"))
    obs, info = dream.reset(seed=0)
    obs, reward, terminated, truncated, info = dream.step(dream.action_space.sample())

Observations are the six coordinates (agent x, y, ghost 1 x, y, ghost 2 x, y; 0-6, x to the right, y
up); actions 0-3 are up, down, right, left. Reward and episode end follow from the next state by the
gridworld's rule (`vqtool.data.dynamics.reward_of`: caught by a ghost -1, at the goal (6, 6) +10), in
both environments: a learned model supplies only the transitions. Needs the `rl` extra (gymnasium).
"""

from __future__ import annotations

import numpy as np

from .data import dynamics as grid
from .errors import VqtoolError

try:
    import gymnasium
    from gymnasium import spaces
except ImportError as exc:  # pragma: no cover - the rl extra is missing
    raise VqtoolError("vqtool.dynamics needs gymnasium: pip install 'vqtool[rl]'") from exc

__all__ = ["GridEnv", "LearnedEnv"]


class _GridBase(gymnasium.Env):
    metadata = {"render_modes": []}

    def __init__(self, max_steps: int = 100):
        self.observation_space = spaces.MultiDiscrete([grid.SIZE] * 6, seed=None)
        self.action_space = spaces.Discrete(4)
        self.max_steps = max_steps
        self.state = grid.START
        self.steps = 0

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        """Start at the paper's start state, or at `options["state"]` (six ints)."""
        super().reset(seed=seed)
        self.state = grid.check_state((options or {}).get("state", grid.START))
        self.steps = 0
        return self._observation(), {}

    def step(self, action):
        if not self.action_space.contains(action):
            raise ValueError(f"action must be 0-3 (up, down, right, left), not {action!r}")
        self.state = tuple(int(v) for v in self._next(int(action)))
        self.steps += 1
        reward, terminated = grid.reward_of(self.state)
        return self._observation(), reward, terminated, self.steps >= self.max_steps and not terminated, {}

    def _observation(self) -> np.ndarray:
        return np.array(self.state, dtype=np.int64)

    def _next(self, action: int):
        raise NotImplementedError


class GridEnv(_GridBase):
    """The true gridworld: next states drawn from the exact transition distribution."""

    def _next(self, action: int):
        outcomes = grid.transition(self.state, action)
        states, probabilities = list(outcomes), np.array(list(outcomes.values()))
        return states[self.np_random.choice(len(states), p=probabilities / probabilities.sum())]


class LearnedEnv(_GridBase):
    """The gridworld with transitions sampled from a learned model of it (a `dynamics-grid` checkpoint,
    or any model with `sample(rows [B, 7], n, generator) -> [B, n, 6]` and `config.env == "grid"`)."""

    def __init__(self, model, max_steps: int = 100):
        if getattr(getattr(model, "config", None), "env", None) != "grid":
            raise VqtoolError("LearnedEnv needs a model of the gridworld (e.g. dynamics-grid)")
        super().__init__(max_steps)
        self.model = model
        self._generator = None

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        import torch

        observation, info = super().reset(seed=seed, options=options)
        if seed is not None or self._generator is None:
            self._generator = torch.Generator().manual_seed(int(self.np_random.integers(2 ** 62)))
        return observation, info

    def _next(self, action: int):
        import torch

        row = torch.tensor([[*self.state, action]])
        return self.model.sample(row, 1, self._generator)[0, 0].tolist()
