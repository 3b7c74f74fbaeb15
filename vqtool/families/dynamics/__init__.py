"""Multimodal transition dynamics (Moerland, Broekens and Jonker, 2017): conditional VAEs that learn the
whole next-state distribution of a stochastic system, against the baselines a model-based RL user would
try first (squared error, one Gaussian, a mixture density network, a PETS-style ensemble)."""

from vqtool.registry import Family

ARCHITECTURE = "dynamics-mlp"
ENVS = {"toy": "the toy function (x -> y, up to three modes)", "grid": "the 7x7 gridworld with two stochastic ghosts"}
MODELS = {"cvae": "conditional VAE (the paper's model)", "mse": "deterministic network, squared error",
          "gaussian": "one Gaussian (grid: one categorical per coordinate), learned variance",
          "mdn": "mixture density network", "ensemble": "five Gaussian networks, bounded log-variance (PETS)"}
LATENTS = ("continuous", "discrete")
PRIORS = ("standard", "learned")  # N(0, I) or uniform (the paper's), or a prior network p(z|x)

FAMILY = Family(
    name="dynamics",
    package=__name__,
    architectures={ARCHITECTURE: "model:DynamicsModel"},
    headline_metrics=("test_nll", "test_hellinger", "test_tv"),
)
