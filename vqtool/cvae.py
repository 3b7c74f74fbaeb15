"""The conditional-VAE core shared by the families that sample several outputs for one condition
(motion futures now, image captions next): a Gaussian latent with a choice of prior, its KL terms,
KL annealing, free bits and the per-dimension KL that shows posterior collapse.

Priors (`LatentConfig.prior`):

- ``none``: no latent at all (the deterministic baseline with the same networks).
- ``standard``: the CVAE. Posterior q(z|x,c) = N(mu, sigma^2) from the data and condition features;
  KL(q(z|x,c) || N(0, I)); at test time z ~ N(0, I), independent of the condition.
- ``cpp``: CPP-VAE (Aliakbarian et al., "Sampling Good Latent Variables via CPP-VAEs"). The condition
  has its own VAE: q(z_c|c) = N(mu_c, sigma_c^2), trained with KL(q(z_c|c) || N(0, I)) plus a
  reconstruction of the condition from z_c (the family's condition decoder). The data posterior is
  built on a sample of it, z = mu + sigma * z_c (the reparameterisation with z_c in place of the
  standard-normal noise), i.e. q(z|x,c) = N(mu + sigma * mu_c, (sigma * sigma_c)^2), and its KL is
  taken against the condition posterior as prior: KL(q(z|x,c) || q(z_c|c)). At test time
  z ~ q(z_c|c). Choices the paper leaves open, ours: the condition-posterior KL and reconstruction
  have the same weight (beta, annealed alike) as the data terms; gradients of the data KL reach the
  condition posterior too (no stop-gradient); the condition decoder sees z_c only.
- ``learned``: a conditional prior network p(z|c) = N(mu_p, sigma_p^2) (as in later work);
  KL(q(z|x,c) || p(z|c)); at test time z ~ p(z|c).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

PRIORS = ("none", "standard", "cpp", "learned")
ACTIVE_NATS = 0.01  # a latent dimension whose mean KL is below this carries (almost) nothing: collapsed


@dataclass
class LatentConfig:
    """The latent's settings; a family's config extends this dataclass and is passed as it is."""

    prior: str = "cpp"
    latent: int = 32
    beta: float = 1.0  # final weight of the KL terms
    anneal_steps: int = 2000  # beta grows linearly from 0 over these training steps
    free_bits: float = 0.0  # nats per dimension below which a KL term is not penalised (0: off)


def gaussian_kl(mu_q, logvar_q, mu_p=None, logvar_p=None) -> torch.Tensor:
    """KL(N(mu_q, e^logvar_q) || N(mu_p, e^logvar_p)) per dimension (N(0, I) when p is not given)."""
    if mu_p is None:
        return 0.5 * (mu_q.pow(2) + logvar_q.exp() - 1 - logvar_q)
    return 0.5 * (logvar_p - logvar_q + (logvar_q.exp() + (mu_q - mu_p).pow(2)) / logvar_p.exp() - 1)


def sample(mu, logvar, generator=None) -> torch.Tensor:
    noise = torch.randn(mu.shape, generator=generator, dtype=mu.dtype).to(mu.device)
    return mu + (0.5 * logvar).exp() * noise


def annealed(beta: float, step: int, anneal_steps: int) -> float:
    return beta * min(1.0, (step + 1) / anneal_steps) if anneal_steps > 0 else beta


def penalised(kl_per_dim: torch.Tensor, free_bits: float) -> torch.Tensor:
    """Sum over dimensions of the batch-mean KL, each dimension at least `free_bits` (Kingma et al., 2016)."""
    per_dim = kl_per_dim.mean(0)
    if free_bits > 0:
        per_dim = per_dim.clamp(min=free_bits)
    return per_dim.sum()


class Head(nn.Module):
    """Features -> (mu, logvar) of a diagonal Gaussian; logvar bounded to keep early training sane."""

    def __init__(self, features: int, latent: int):
        super().__init__()
        self.layer = nn.Linear(features, 2 * latent)

    def forward(self, h):
        mu, logvar = self.layer(h).chunk(2, -1)
        return mu, logvar.clamp(-12, 6)


class ConditionalLatent(nn.Module):
    """The latent of a conditional VAE. `posterior(...)` for training (z and the KL terms), `prior(...)`
    for sampling; the family supplies the feature extractors and decoders around it."""

    def __init__(self, config: LatentConfig, data_features: int, condition_features: int):
        super().__init__()
        if config.prior not in PRIORS:
            raise ValueError(f"prior must be one of {', '.join(PRIORS)}, not {config.prior!r}")
        self.config = config
        if config.prior == "none":
            return
        self.posterior_head = Head(data_features + condition_features, config.latent)
        if config.prior == "cpp":
            self.condition_head = Head(condition_features, config.latent)
        if config.prior == "learned":
            self.prior_head = nn.Sequential(nn.Linear(condition_features, condition_features), nn.Tanh(),
                                            Head(condition_features, config.latent))

    @property
    def size(self) -> int:
        return 0 if self.config.prior == "none" else self.config.latent

    def posterior(self, data_h, condition_h, generator=None) -> tuple[torch.Tensor | None, dict]:
        """z for the decoder and {"kl": per-dimension KL of the data posterior against the prior [B, L],
        "condition_kl": (cpp) KL(q(z_c|c) || N(0, I)) [B, L], "z_c": (cpp) the condition's sample}."""
        prior = self.config.prior
        if prior == "none":
            return None, {}
        mu, logvar = self.posterior_head(torch.cat([data_h, condition_h], -1))
        if prior == "standard":
            return sample(mu, logvar, generator), {"kl": gaussian_kl(mu, logvar)}
        if prior == "learned":
            mu_p, logvar_p = self.prior_head(condition_h)
            return sample(mu, logvar, generator), {"kl": gaussian_kl(mu, logvar, mu_p, logvar_p)}
        mu_c, logvar_c = self.condition_head(condition_h)
        z_c = sample(mu_c, logvar_c, generator)
        sigma = (0.5 * logvar).exp()
        z = mu + sigma * z_c  # = a sample of N(mu + sigma * mu_c, (sigma * sigma_c)^2)
        kl = gaussian_kl(mu + sigma * mu_c, logvar + logvar_c, mu_c, logvar_c)
        return z, {"kl": kl, "condition_kl": gaussian_kl(mu_c, logvar_c), "z_c": z_c}

    def prior(self, condition_h, generator=None) -> torch.Tensor | None:
        """One z per row of `condition_h` from the test-time prior (repeat rows for several samples)."""
        prior = self.config.prior
        if prior == "none":
            return None
        if prior == "standard":
            zeros = condition_h.new_zeros(condition_h.shape[0], self.config.latent)
            return sample(zeros, zeros, generator)
        mu, logvar = (self.condition_head if prior == "cpp" else self.prior_head)(condition_h)
        return sample(mu, logvar, generator)

    def kl_loss(self, terms: dict, step: int) -> tuple[torch.Tensor, dict]:
        """The annealed, free-bits KL part of the loss and the numbers to log."""
        c = self.config
        if not terms:
            return torch.zeros(()), {}
        weight = annealed(c.beta, step, c.anneal_steps)
        total = penalised(terms["kl"], c.free_bits)
        logged = {"kl": float(terms["kl"].detach().sum(-1).mean()), "beta": weight}
        if "condition_kl" in terms:
            condition = penalised(terms["condition_kl"], c.free_bits)
            total = total + condition
            logged["condition_kl"] = float(terms["condition_kl"].detach().sum(-1).mean())
        return weight * total, logged


def collapse_report(kl_per_dim: torch.Tensor) -> dict:
    """From per-window, per-dimension KL [N, L]: the mean KL of each dimension and the share above
    ACTIVE_NATS (dimensions that carry information; a collapsed posterior has none)."""
    mean = kl_per_dim.mean(0)
    return {"kl_nats": round(float(mean.sum()), 4), "kl_per_dim": [round(float(v), 4) for v in mean],
            "active_dims": int((mean > ACTIVE_NATS).sum()), "active_share": round(float((mean > ACTIVE_NATS).float().mean()), 4)}
