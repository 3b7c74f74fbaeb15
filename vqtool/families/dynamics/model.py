"""Next-state models of one shape: inputs (toy: x; grid: state and action) -> a distribution over the
next state (toy: y; grid: the six coordinates), with a log-likelihood and a sampler.

Output densities (`GaussianOutput`, `CategoricalOutput`): the toy's y is a Gaussian whose log-variance
is softly bounded (as PETS bounds it); the grid's next state is one categorical over 0..6 per
coordinate, so that every likelihood model there is a proper distribution over grid states and their
NLLs compare. Models (`DynamicsConfig.model`):

- ``cvae``: p(y|x) = E_{z ~ p(z|x)} p(y|x,z), trained on the ELBO with q(z|x,y); the latent is continuous
  (Gaussian, optionally through affine-coupling flow layers) or discrete (N categorical variables of K
  classes, one-hot samples in training too, by the straight-through Gumbel-softmax estimator); the prior is N(0, I) / uniform (the paper's) or
  learned from x. Its NLL is the importance-weighted bound with k samples from q.
- ``gaussian``: one output density from x (on the grid: independent coordinates).
- ``mdn``: a mixture of `components` output densities with weights from x.
- ``ensemble``: `members` independent ``gaussian`` networks, each trained on its own bootstrap of every
  batch; the model is their equal mixture (sampling picks a member, then samples it).
- ``mse``: a point prediction trained with squared error (grid: the six coordinates as numbers, rounded
  to the nearest cell when sampled). It has no likelihood of its own.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from vqtool.cvae import LatentConfig, annealed, gaussian_kl
from vqtool.data.dynamics import SIZE
from vqtool.hub import bounded

from . import ARCHITECTURE, ENVS, LATENTS, MODELS, PRIORS

LOGVAR_BOUNDS = (-10.0, 4.0)
COORDINATES = 6


@dataclass
class DynamicsConfig(LatentConfig):
    env: str = "toy"
    model: str = "cvae"
    prior: str = "standard"  # cvae: standard (N(0, I) or uniform) or learned (p(z|x))
    latent: int = 3  # continuous latent dimensions
    anneal_steps: int = 0
    kind: str = "continuous"  # cvae latent: continuous or discrete
    variables: int = 3  # discrete latent: N categorical variables ...
    categories: int = 3  # ... of K classes each
    flows: int = bounded(0, 0, 64)  # affine-coupling layers on the continuous posterior
    hidden: int = 128
    layers: int = bounded(2, 1, 64)
    components: int = 5  # mdn
    members: int = 5  # ensemble
    tau_start: float = 2.0  # Gumbel-softmax temperature, annealed linearly ...
    tau_end: float = 0.5
    tau_steps: int = 5000  # ... over these steps
    relaxed: bool = False  # discrete latent: the decoder reads the relaxed sample in training (the paper's
    # Gumbel-softmax) instead of the one-hot one through the straight-through estimator
    argmax: bool = False  # cvae on the grid: each coordinate's most likely value given z (the paper's
    # sampling), so that every bit of randomness comes from z; else a draw from the categoricals


def mlp(inputs: int, hidden: int, layers: int, outputs: int) -> nn.Sequential:
    parts, width = [], inputs
    for _ in range(layers):
        parts += [nn.Linear(width, hidden), nn.ReLU()]
        width = hidden
    return nn.Sequential(*parts, nn.Linear(width, outputs))


def soft_bounded(logvar: torch.Tensor) -> torch.Tensor:
    low, high = LOGVAR_BOUNDS
    logvar = high - F.softplus(high - logvar)
    return low + F.softplus(logvar - low)


class GaussianOutput:
    """y in R: params (mean, log-variance)."""

    size, target_size = 2, 1

    def log_prob(self, params, y):
        mean, logvar = params[..., 0], soft_bounded(params[..., 1])
        return -0.5 * (math.log(2 * math.pi) + logvar + (y[..., 0] - mean) ** 2 / logvar.exp())

    def sample(self, params, generator):
        mean, logvar = params[..., 0], soft_bounded(params[..., 1])
        noise = torch.randn(mean.shape, generator=generator).to(mean.device)
        return (mean + (0.5 * logvar).exp() * noise).unsqueeze(-1)


class CategoricalOutput:
    """Six grid coordinates: params are 6 x 7 logits."""

    size, target_size = COORDINATES * SIZE, COORDINATES

    def log_prob(self, params, y):
        logp = params.unflatten(-1, (COORDINATES, SIZE)).log_softmax(-1)
        index = y.long().unsqueeze(-1).expand(*logp.shape[:-1], 1)  # gather does not broadcast (mixtures)
        return logp.gather(-1, index).squeeze(-1).sum(-1)

    def sample(self, params, generator):
        probs = params.unflatten(-1, (COORDINATES, SIZE)).softmax(-1)
        flat = probs.reshape(-1, SIZE).float().cpu()
        return torch.multinomial(flat, 1, generator=generator).view(probs.shape[:-1]).to(params.device)


OUTPUTS = {"toy": GaussianOutput, "grid": CategoricalOutput}


def gumbel(shape, generator, device) -> torch.Tensor:
    u = torch.rand(shape, generator=generator).clamp(1e-10, 1 - 1e-10).to(device)
    return -torch.log(-torch.log(u))


def normal_log_prob(z, mu=None, logvar=None) -> torch.Tensor:
    """log N(z; mu, e^logvar), summed over the last dimension (N(0, I) without mu)."""
    if mu is None:
        return (-0.5 * (math.log(2 * math.pi) + z ** 2)).sum(-1)
    return (-0.5 * (math.log(2 * math.pi) + logvar + (z - mu) ** 2 / logvar.exp())).sum(-1)


class Coupling(nn.Module):
    """One affine-coupling layer (Real NVP) on z, conditioned on the encoder's features; alternate
    layers transform alternate halves."""

    def __init__(self, latent: int, features: int, hidden: int, flip: bool):
        super().__init__()
        mask = (torch.arange(latent) % 2 == (1 if flip else 0)).float()
        self.register_buffer("mask", mask)
        self.net = mlp(latent + features, hidden, 1, 2 * latent)
        nn.init.zeros_(self.net[-1].weight)
        nn.init.zeros_(self.net[-1].bias)

    def forward(self, z, h):
        scale, shift = self.net(torch.cat([z * self.mask, h], -1)).chunk(2, -1)
        scale = torch.tanh(scale) * (1 - self.mask)
        shift = shift * (1 - self.mask)
        return z * scale.exp() + shift, scale.sum(-1)


class DynamicsModel(nn.Module):
    Config = DynamicsConfig
    architecture = ARCHITECTURE

    def __init__(self, config: DynamicsConfig):
        super().__init__()
        c = self.config = config
        if c.env not in ENVS or c.model not in MODELS or c.kind not in LATENTS or c.prior not in PRIORS:
            raise ValueError(f"unknown env/model/latent/prior: {c.env}/{c.model}/{c.kind}/{c.prior}")
        self.output = OUTPUTS[c.env]()
        inputs = 1 if c.env == "toy" else COORDINATES * SIZE + 3 * SIZE * SIZE + 2 * (2 * SIZE - 1) ** 2 + 4
        self.register_buffer("steps_trained", torch.zeros((), dtype=torch.long))
        out = self.output.size
        if c.model == "mse":
            self.net = mlp(inputs, c.hidden, c.layers, self.output.target_size)
        elif c.model == "gaussian":
            self.net = mlp(inputs, c.hidden, c.layers, out)
        elif c.model == "mdn":
            self.net = mlp(inputs, c.hidden, c.layers, c.components * (1 + out))
        elif c.model == "ensemble":
            self.members = nn.ModuleList(mlp(inputs, c.hidden, c.layers, out) for _ in range(c.members))
        else:
            code = c.latent if c.kind == "continuous" else c.variables * c.categories
            targets = 1 if c.env == "toy" else COORDINATES * SIZE + 3 * SIZE * SIZE
            self.encoder = mlp(inputs + targets, c.hidden, c.layers - 1, c.hidden)
            posterior = 2 * c.latent if c.kind == "continuous" else code
            self.posterior = nn.Linear(c.hidden, posterior)
            self.flows = nn.ModuleList(Coupling(c.latent, c.hidden, c.hidden, i % 2 == 1) for i in range(c.flows))
            if c.prior == "learned":
                self.prior_net = mlp(inputs, c.hidden, c.layers, posterior)
            self.decoder = mlp(inputs + code, c.hidden, c.layers, out)

    # ------------------------------------------------------------------------------- encodings
    def features(self, inputs: torch.Tensor) -> torch.Tensor:
        """toy: x [B] -> [B, 1]; grid: (state, action) rows [B, 7] -> one-hots of the six coordinates, of
        the three entities' cells, of each ghost's position relative to the agent (so that "the agent
        steps onto a ghost", a catch, is one conjunction with the action away) and of the action:
        [B, 42 + 147 + 338 + 4]."""
        if self.config.env == "toy":
            return inputs.float().view(-1, 1)
        inputs = inputs.long()
        cells = inputs[:, 0:6:2] * SIZE + inputs[:, 1:6:2]
        span = 2 * SIZE - 1
        relative = (inputs[:, 2:6:2] - inputs[:, 0:1] + SIZE - 1) * span + inputs[:, 3:6:2] - inputs[:, 1:2] + SIZE - 1
        return torch.cat([F.one_hot(inputs[:, :6], SIZE).flatten(1), F.one_hot(cells, SIZE * SIZE).flatten(1),
                          F.one_hot(relative, span * span).flatten(1), F.one_hot(inputs[:, 6], 4)], 1).float()

    def target_tensor(self, targets: torch.Tensor) -> torch.Tensor:
        return targets.float().view(-1, 1) if self.config.env == "toy" else targets.long()

    def target_features(self, targets: torch.Tensor) -> torch.Tensor:
        """What the posterior reads of the next state: as `features` (without an action)."""
        if self.config.env == "toy":
            return targets.float().view(-1, 1)
        targets = targets.long()
        cells = targets[:, 0::2] * SIZE + targets[:, 1::2]
        return torch.cat([F.one_hot(targets, SIZE).flatten(1), F.one_hot(cells, SIZE * SIZE).flatten(1)], 1).float()

    # ------------------------------------------------------------------------------- latent
    def _prior_params(self, xf):
        c = self.config
        if c.prior == "learned":
            params = self.prior_net(xf)
        else:
            params = xf.new_zeros(len(xf), 2 * c.latent if c.kind == "continuous" else c.variables * c.categories)
        if c.kind == "continuous":
            mu, logvar = params.chunk(2, -1)
            return mu, logvar.clamp(-8, 6)
        return params.view(len(xf), c.variables, c.categories).log_softmax(-1)

    def _posterior(self, xf, yf):
        h = F.relu(self.encoder(torch.cat([xf, yf], -1)))
        params = self.posterior(h)
        if self.config.kind == "continuous":
            mu, logvar = params.chunk(2, -1)
            return h, (mu, logvar.clamp(-12, 6))
        return h, params.view(len(xf), self.config.variables, self.config.categories).log_softmax(-1)

    def _flow(self, z, h):
        logdet = z.new_zeros(len(z))
        for layer in self.flows:
            z, step = layer(z, h)
            logdet = logdet + step
        return z, logdet

    def tau(self) -> float:
        c = self.config
        share = min(1.0, float(self.steps_trained) / max(1, c.tau_steps))
        return c.tau_start + (c.tau_end - c.tau_start) * share

    def _latent_terms(self, xf, yf, generator, hard: bool):
        """z from q(z|x,y), with log q(z) - log p(z) (one-sample) and the analytic KL when there is one."""
        c = self.config
        h, q = self._posterior(xf, yf)
        prior = self._prior_params(xf)
        if c.kind == "continuous":
            mu, logvar = q
            z0 = mu + (0.5 * logvar).exp() * torch.randn(mu.shape, generator=generator).to(mu.device)
            z, logdet = self._flow(z0, h)
            log_q = normal_log_prob(z0, mu, logvar) - logdet
            log_p = normal_log_prob(z, *prior) if c.prior == "learned" else normal_log_prob(z)
            kl = None
            if not self.flows:
                kl = gaussian_kl(mu, logvar, *(prior if c.prior == "learned" else ())).sum(-1)
            return z, log_q - log_p, kl
        log_q = q
        noise = gumbel(log_q.shape, generator, log_q.device)
        z = F.one_hot((log_q + noise).argmax(-1), c.categories).float()
        if not hard:  # training: the relaxed sample (the paper's), or straight-through: the one-hot sample
            soft = ((log_q + noise) / self.tau()).softmax(-1)  # of test time, gradients through the relaxation
            z = soft if c.relaxed else z + soft - soft.detach()
        ratio = ((log_q - prior) * z).sum((-1, -2)) if hard else None
        kl = (log_q.exp() * (log_q - prior)).sum((-1, -2))
        return z.flatten(1), ratio, kl

    def _prior_sample(self, xf, generator):
        c = self.config
        prior = self._prior_params(xf)
        if c.kind == "continuous":
            mu, logvar = prior
            return mu + (0.5 * logvar).exp() * torch.randn(mu.shape, generator=generator).to(mu.device)
        index = (prior + gumbel(prior.shape, generator, prior.device)).argmax(-1)
        return F.one_hot(index, c.categories).float().flatten(1)

    # ------------------------------------------------------------------------------- training
    def forward(self, inputs, targets, generator=None):
        """The training loss and the numbers to log (one step: counts it)."""
        c = self.config
        self.steps_trained += 1
        xf, y = self.features(inputs), self.target_tensor(targets)
        if c.model == "mse":
            loss = F.mse_loss(self.net(xf), y.float())
            return loss, {"mse": float(loss.detach())}
        if c.model == "ensemble":
            total = 0.0
            for member in self.members:
                rows = torch.randint(len(xf), (len(xf),), generator=generator).to(xf.device)  # its bootstrap
                total = total - self.output.log_prob(member(xf[rows]), y[rows]).mean()
            return total, {"nll": float(total.detach()) / len(self.members)}
        if c.model != "cvae":
            nll = -self._log_prob(xf, y).mean()
            return nll, {"nll": float(nll.detach())}
        z, ratio, kl = self._latent_terms(xf, self.target_features(targets), generator, hard=False)
        kl = kl if kl is not None else ratio
        reconstruction = -self.output.log_prob(self.decoder(torch.cat([xf, z], -1)), y).mean()
        beta = annealed(c.beta, int(self.steps_trained) - 1, c.anneal_steps)
        penalised = kl.mean().clamp(min=c.free_bits) if c.free_bits > 0 else kl.mean()
        logged = {"nll": float(reconstruction.detach()), "kl": float(kl.detach().mean()), "beta": beta}
        if c.kind == "discrete":
            logged["tau"] = self.tau()
        return reconstruction + beta * penalised, logged

    def _log_prob(self, xf, y) -> torch.Tensor:
        c = self.config
        if c.model == "gaussian":
            return self.output.log_prob(self.net(xf), y)
        if c.model == "mdn":
            params = self.net(xf)
            weights = params[:, :c.components].log_softmax(-1)
            parts = params[:, c.components:].view(len(xf), c.components, self.output.size)
            return torch.logsumexp(weights + self.output.log_prob(parts, y.unsqueeze(1)), -1)
        if c.model == "ensemble":
            each = torch.stack([self.output.log_prob(m(xf), y) for m in self.members], -1)
            return torch.logsumexp(each, -1) - math.log(len(self.members))
        raise ValueError(f"{c.model} has no closed-form likelihood")

    # ------------------------------------------------------------------------------- library
    @torch.no_grad()
    def log_likelihood(self, inputs, targets, k: int = 40, generator=None) -> torch.Tensor:
        """log p(y|x) per row (nats): exact, or for the CVAE the importance-weighted bound with k samples
        of q(z|x,y) (Burda et al., 2016). The squared-error model has none (ValueError)."""
        c = self.config
        device = self.steps_trained.device
        xf, y = self.features(inputs.to(device)), self.target_tensor(targets.to(device))
        if c.model == "mse":
            raise ValueError("the squared-error model predicts a point: it has no likelihood")
        if c.model != "cvae":
            return self._log_prob(xf, y).cpu()
        rows = len(xf)
        xk, yk = xf.repeat_interleave(k, 0), y.repeat_interleave(k, 0)
        yf = self.target_features(targets.to(device)).repeat_interleave(k, 0)
        z, ratio, _ = self._latent_terms(xk, yf, generator, hard=True)
        log_w = self.output.log_prob(self.decoder(torch.cat([xk, z], -1)), yk) - ratio
        return (torch.logsumexp(log_w.view(rows, k), -1) - math.log(k)).cpu()

    @torch.no_grad()
    def sample(self, inputs, n: int = 1, generator=None) -> torch.Tensor:
        """n next states per input row: toy [B, n] floats; grid [B, n, 6] longs."""
        c = self.config
        device = self.steps_trained.device
        xf = self.features(inputs.to(device)).repeat_interleave(n, 0)
        if c.model == "mse":
            point = self.net(xf)
            out = point[:, 0] if c.env == "toy" else point.round().clamp(0, SIZE - 1).long()
        elif c.argmax and c.model == "cvae" and c.env == "grid":
            out = self._sample_params(xf, generator).unflatten(-1, (COORDINATES, SIZE)).argmax(-1)
        else:
            params = self._sample_params(xf, generator)
            out = self.output.sample(params, generator)
            out = out[:, 0] if c.env == "toy" else out
        return out.view(len(inputs), n, *out.shape[1:]).cpu()

    def _sample_params(self, xf, generator):
        c = self.config
        if c.model == "gaussian":
            return self.net(xf)
        if c.model == "cvae":
            return self.decoder(torch.cat([xf, self._prior_sample(xf, generator)], -1))
        if c.model == "mdn":
            params = self.net(xf)
            pick = torch.multinomial(params[:, :c.components].softmax(-1).float().cpu(), 1, generator=generator)
            parts = params[:, c.components:].view(len(xf), c.components, self.output.size)
            return parts[torch.arange(len(xf)), pick[:, 0].to(xf.device)]
        pick = torch.randint(len(self.members), (len(xf),), generator=generator).to(xf.device)
        each = torch.stack([m(xf) for m in self.members], 1)
        return each[torch.arange(len(xf)), pick]

    def sample_next(self, state, action: int, n: int = 100, seed: int | None = None) -> list[tuple[tuple, int]]:
        """Grid: n sampled next states of one (state, action), as (state, count), most frequent first."""
        from collections import Counter

        generator = torch.Generator().manual_seed(seed) if seed is not None else None
        row = torch.tensor([[*state, action]])
        counts = Counter(tuple(int(v) for v in s) for s in self.sample(row, n, generator)[0])
        return sorted(counts.items(), key=lambda item: (-item[1], item[0]))

    def sample_y(self, x: float, n: int = 100, seed: int | None = None) -> np.ndarray:
        """Toy: n sampled y values at one x."""
        generator = torch.Generator().manual_seed(seed) if seed is not None else None
        return self.sample(torch.tensor([x], dtype=torch.float32), n, generator)[0].numpy()
