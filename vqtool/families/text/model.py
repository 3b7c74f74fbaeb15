"""The deconvolutional latent-variable model of Shen et al. (2018) and its two baselines, one class.

Encoder: word embeddings of a sentence padded or cut to a fixed length, then `layers` 1-D
convolutions (kernel 5, stride 2, no padding, ReLU between them), which reduce the length to 1:
length = 2^(layers + 2) - 3 (29 words with 3 layers, 61 with 4). A linear head gives the mean and
log-variance of a diagonal Gaussian code z. Decoders:

- ``deconv``: a linear layer lifts z to the last convolution's channels at length 1, and transposed
  convolutions mirroring the encoder bring it back to the full length, all positions at once;
- ``lstm``: an LSTM language model whose every step sees the previous word and z (start state from z);
- ``none``: no decoder; the encoder and the matcher trained on labelled pairs alone.

Both decoders score a position's output against the tied word embeddings by cosine similarity over a
temperature (Zhang et al., 2017: logits = cos(h, e_w) / tau). The matcher reads the two sentences'
posterior means u, v as [u, v, u*v, |u - v|] through one hidden layer (Conneau et al., 2017)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from vqtool.cvae import Head, sample
from vqtool.data.text import BOS, Vocabulary, tokenise
from vqtool.hub import bounded

from . import ARCHITECTURE, DECODERS, sentence_length

KERNEL, STRIDE = 5, 2
EMBED_BATCH = 256  # sentences per pass of the library calls


def word_ids(vocabulary: Vocabulary, texts: list[str], length: int, device=None) -> torch.Tensor:
    """Texts -> word ids [N, length]: cut to length - 1 words, then <eos>, padded (Vocabulary.encode)."""
    ids = [vocabulary.encode(text, length) for text in texts]
    return torch.tensor(ids, dtype=torch.long, device=device).view(len(texts), length)


def too_long(text: str, length: int) -> bool:
    """Whether a text loses words when read at this length (its words and <eos> do not fit)."""
    return len(tokenise(text)) > length - 1


@dataclass
class TextConfig:
    words: list[str] = field(default_factory=list)  # the vocabulary, specials first (vqtool.data.text)
    task: str = "sick"
    labels: list[str] = field(default_factory=list)  # the matcher's classes, in label-id order
    decoder: str = "deconv"  # deconv | lstm | none
    layers: int = bounded(3, 2, 8)  # convolutions; the sentence length follows (sentence_length)
    embed: int = 128
    channels: list[int] = bounded([256, 512], 0, 8)  # all but the last convolution
    features: int = 512  # the last convolution's channels
    latent: int = 128
    hidden: int = 512  # LSTM decoder
    temperature: float = 0.01  # of the cosine logits
    beta: float = 1.0  # final weight of the KL term
    anneal_steps: int = 1500  # beta grows linearly from 0 over these steps
    alpha: float = 10.0  # weight of the matching loss against reconstruction + KL (per sentence, nats)
    matcher_hidden: int = 256
    dropout: float = 0.2  # on the matcher's input and hidden layer, in training
    unlabelled_batch: int = 32  # sentences per step besides the labelled pairs (the batch size is pairs)
    label_fraction: float = 1.0
    weight_decay: float = 0.0

    @property
    def length(self) -> int:
        return sentence_length(self.layers)


class TextVAE(nn.Module):
    Config = TextConfig
    architecture = ARCHITECTURE

    def __init__(self, config: TextConfig):
        super().__init__()
        self.config = c = config
        if c.decoder not in DECODERS:
            raise ValueError(f"decoder must be one of {', '.join(DECODERS)}, not {c.decoder!r}")
        if len(c.channels) != c.layers - 1:
            raise ValueError(f"{c.layers} layers need {c.layers - 1} channel counts, not {c.channels}")
        self.vocabulary = Vocabulary(c.words)
        weight = torch.empty(len(c.words), c.embed)
        if not weight.is_meta:  # normal_ on the meta device (hub's shape check) imports torch._dynamo
            nn.init.normal_(weight, std=0.3)
            weight[0] = 0  # <pad>
        self.embedding = nn.Embedding(len(c.words), c.embed, padding_idx=0, _weight=weight)
        widths = [c.embed, *c.channels, c.features]
        self.convolutions = nn.ModuleList(nn.Conv1d(a, b, KERNEL, STRIDE) for a, b in zip(widths, widths[1:]))
        self.head = Head(c.features, c.latent)
        self.register_buffer("steps_trained", torch.zeros((), dtype=torch.long))
        if c.decoder == "deconv":
            self.lift = nn.Linear(c.latent, c.features)
            back = widths[::-1]
            self.deconvolutions = nn.ModuleList(nn.ConvTranspose1d(a, b, KERNEL, STRIDE) for a, b in zip(back, back[1:]))
        elif c.decoder == "lstm":
            self.start = nn.Linear(c.latent, 2 * c.hidden)
            self.lstm = nn.LSTM(c.embed + c.latent, c.hidden, batch_first=True)
            self.out = nn.Linear(c.hidden, c.embed)
        self.matcher = nn.Sequential(nn.Dropout(c.dropout), nn.Linear(4 * c.latent, c.matcher_hidden), nn.ReLU(),
                                     nn.Dropout(c.dropout), nn.Linear(c.matcher_hidden, len(c.labels)))

    def forward(self, tokens: torch.Tensor, pairs: int, generator=None) -> dict:
        """Training pass over sentences [N, length] whose first 2 * `pairs` rows are the labelled pairs'
        first then second sentences: posterior, word logits from a sample of z (none without a
        decoder) and the matcher's logits on the posterior means."""
        if self.training:
            with torch.no_grad():
                self.steps_trained += 1  # drives the KL annealing; resumes with the weights
        mu, logvar = self.encode(tokens)
        out = {"mu": mu, "logvar": logvar, "match": self.match_logits(mu[:pairs], mu[pairs:2 * pairs])}
        if self.config.decoder != "none":  # logits of real words only: padding is never a target
            out["logits"] = self.cosine_logits(self.decode_features(sample(mu, logvar, generator), tokens)[tokens != 0])
        return out

    # --- the networks --------------------------------------------------------------------------------

    def encode(self, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Word ids [N, length] -> the posterior's mean and log-variance [N, latent]."""
        h = self.embedding(tokens).transpose(1, 2)
        for i, conv in enumerate(self.convolutions):
            h = conv(h)
            if i < len(self.convolutions) - 1:
                h = F.relu(h)
        return self.head(F.relu(h.squeeze(-1)))

    def cosine_logits(self, h: torch.Tensor) -> torch.Tensor:
        """Decoder outputs [..., embed] -> word logits [..., vocabulary]: cosine with each word's embedding / tau."""
        words = F.normalize(self.embedding.weight, dim=-1) / self.config.temperature  # [V, E]: cheaper than [..., V]
        return F.normalize(h, dim=-1) @ words.T

    def decode(self, z: torch.Tensor, tokens: torch.Tensor | None = None) -> torch.Tensor:
        """Word logits [N, length, vocabulary] of a sentence given z; the LSTM reads `tokens` (teacher forcing)."""
        return self.cosine_logits(self.decode_features(z, tokens))

    def decode_features(self, z: torch.Tensor, tokens: torch.Tensor | None = None) -> torch.Tensor:
        """The decoder's output [N, length, embed], before the cosine against the embeddings."""
        if self.config.decoder == "deconv":
            h = F.relu(self.lift(z)).unsqueeze(-1)
            for i, deconv in enumerate(self.deconvolutions):
                h = deconv(h)
                if i < len(self.deconvolutions) - 1:
                    h = F.relu(h)
            return h.transpose(1, 2)
        if self.config.decoder == "lstm":
            previous = torch.cat([torch.full_like(tokens[:, :1], self.vocabulary.index[BOS]), tokens[:, :-1]], 1)
            out, _ = self.lstm(self._lstm_input(previous, z), self._start(z))
            return self.out(out)
        raise ValueError("a model trained without a decoder cannot reconstruct sentences")

    def _lstm_input(self, words, z):
        return torch.cat([self.embedding(words), z.unsqueeze(1).expand(-1, words.shape[1], -1)], -1)

    def _start(self, z):
        h, c = torch.tanh(self.start(z)).chunk(2, -1)
        return h.unsqueeze(0).contiguous(), c.unsqueeze(0).contiguous()

    def match_logits(self, u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        return self.matcher(torch.cat([u, v, u * v, (u - v).abs()], -1))

    def pair_logits(self, first: torch.Tensor, second: torch.Tensor) -> torch.Tensor:
        """The matcher's logits for pairs of word-id rows, on their posterior means."""
        return self.match_logits(self.encode(first)[0], self.encode(second)[0])

    @torch.no_grad()
    def generate(self, z: torch.Tensor) -> torch.Tensor:
        """The most likely words [N, length] given z: every position at once (deconv), greedy (lstm).
        <pad> and <bos> are never chosen (they are never targets)."""
        banned = [0, self.vocabulary.index[BOS]]
        if self.config.decoder == "deconv":
            logits = self.decode(z)
            logits[..., banned] = -torch.inf
            return logits.argmax(-1)
        state, word = self._start(z), torch.full((len(z), 1), self.vocabulary.index[BOS], device=z.device)
        out = []
        for _ in range(self.config.length):
            h, state = self.lstm(self._lstm_input(word, z), state)
            logits = self.cosine_logits(self.out(h))
            logits[..., banned] = -torch.inf
            word = logits.argmax(-1)
            out.append(word)
        return torch.cat(out, 1)

    # --- the library API: plain text in, arrays and text out ---------------------------------------------

    def tokens(self, sentences: list[str]) -> torch.Tensor:
        """Word ids [N, length] on the model's device (too_long says which sentences lose words)."""
        return word_ids(self.vocabulary, sentences, self.config.length, self.embedding.weight.device)

    def codes(self, sentences: list[str]) -> torch.Tensor:
        """Posterior means [N, latent] on the model's device, EMBED_BATCH sentences a pass."""
        self.eval()
        out = [self.encode(self.tokens(sentences[s:s + EMBED_BATCH]))[0] for s in range(0, len(sentences), EMBED_BATCH)]
        return torch.cat(out) if out else self.embedding.weight.new_zeros(0, self.config.latent)

    @torch.no_grad()
    def embed(self, sentences: list[str]) -> np.ndarray:
        """Each sentence's code (the posterior mean) [N, latent], float32."""
        return self.codes(sentences).float().cpu().numpy()

    @torch.no_grad()
    def match(self, first: list[str], second: list[str]) -> np.ndarray:
        """Class probabilities [N, labels] of each pair (first[i], second[i])."""
        if len(first) != len(second):
            raise ValueError(f"{len(first)} first sentences but {len(second)} second ones")
        return torch.softmax(self.match_logits(self.codes(first), self.codes(second)), -1).cpu().numpy()

    @torch.no_grad()
    def reconstruct(self, sentences: list[str]) -> list[str]:
        """Each sentence through its code and back (the posterior mean, most likely words)."""
        return self.decode_codes(self.codes(sentences))

    @torch.no_grad()
    def interpolate(self, first: str, second: str, steps: int = 5) -> list[str]:
        """Sentences decoded from `steps` codes evenly spaced from `first`'s to `second`'s (both included)."""
        u, v = self.codes([first, second])
        weights = torch.linspace(0, 1, steps, device=u.device).unsqueeze(1)
        return self.decode_codes((1 - weights) * u + weights * v)

    def decode_codes(self, codes: torch.Tensor) -> list[str]:
        self.eval()
        ids = self.generate(codes.to(self.embedding.weight.device))
        return [self.vocabulary.decode(row) for row in ids.cpu().tolist()]
