"""Sampling: outputs drawn from the model's distribution instead of searched for.

At each step the next token is drawn from p(y_t | y_<t, x), sharpened or flattened by a
temperature τ (softmax of logits / τ), optionally restricted to the k most probable
tokens (top-k, Fan et al. 2018) or to the smallest set whose probability reaches p
(nucleus sampling, Holtzman et al. 2020). Sampled back-translations train better
forward models than beam-searched ones (Edunov et al. 2018, "Understanding
Back-Translation at Scale"): they cover the variety of the data where beam search gives
its most probable, blandest output. The draws come from one seeded generator, so the
same seed gives the same samples; a hypothesis' score is the *model's* summed
log-probability of its tokens (τ and the truncation do not enter it), as greedy search
reports, so scores are comparable across settings and with ``rnnkit score``. Padding
and BOS are never drawn; ``<unk>`` may be, as the model was trained to write it.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from rnnkit.search import Decoding, Hypothesis, as_lengths, decode_by

__all__ = ["Sampling", "sample_search"]


@dataclass(frozen=True)
class Sampling:
    """How to draw: ``temperature`` τ > 0, ``top_k`` (0: all tokens), ``top_p`` in (0, 1]
    (1: no nucleus cut), ``seed`` of the generator."""

    temperature: float = 1.0
    top_k: int = 0
    top_p: float = 1.0
    seed: int = 1

    def __post_init__(self) -> None:
        if not 0 < self.temperature < math.inf:
            raise ValueError(f"temperature must be > 0 and finite, got {self.temperature}")
        if not 0 <= self.seed < 2**63:
            raise ValueError(f"seed must be in 0 .. 2**63 - 1, got {self.seed}")
        if self.top_k < 0:
            raise ValueError(f"top_k must be ≥ 0 (0: no cut), got {self.top_k}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must lie in (0, 1], got {self.top_p}")

    def generator(self, device: torch.device | str) -> torch.Generator:
        """A new generator on ``device``, seeded with ``seed``."""
        g = torch.Generator(device=device)
        g.manual_seed(self.seed)
        return g


def _filtered(logits: Tensor, s: Sampling) -> Tensor:
    """``logits / τ`` (less their maximum: the same distribution) with the tokens outside
    top-k / the nucleus at -inf. The best token's z is 0, so a tiny τ sends the others to
    -inf (greedy search's pick) instead of the best to +inf (and softmax to nan)."""
    z = (logits - logits.max(-1, keepdim=True).values) / s.temperature
    if s.top_k and s.top_k < z.shape[-1]:
        kth = z.topk(s.top_k, -1).values[:, -1:]
        z = z.masked_fill(z < kth, float("-inf"))
    if s.top_p < 1:
        sorted_z, order = z.sort(-1, descending=True)
        probs = torch.softmax(sorted_z, -1)
        before = probs.cumsum(-1) - probs  # mass of the more probable tokens
        drop = before >= s.top_p  # the first token is always kept
        z = z.scatter(1, order, sorted_z.masked_fill(drop, float("-inf")))
    return z


@torch.no_grad()
def sample_search(
    model: Decoding,
    src: Tensor,
    src_lengths: Tensor | Sequence[int],
    n: int = 1,
    sampling: Sampling | None = None,
    max_len_a: float = 1.5,
    max_len_b: int = 10,
    generator: torch.Generator | None = None,
) -> list[list[Hypothesis]]:
    """``n`` independent samples for each sentence of the batch, best score first.

    Args:
        src: ``(B, S)`` ids; src_lengths: ``(B,)``.
        sampling: temperature, top-k, top-p, seed (default :class:`Sampling`()).
        generator: draw from this one (continuing its stream) instead of a new one
            seeded with ``sampling.seed``.
    """
    if isinstance(n, bool) or not isinstance(n, numbers.Integral):  # (a Sampling there)
        raise TypeError(f"n must be an int, got {type(n).__name__}; pass sampling=...")
    if n < 1:
        raise ValueError(f"n must be ≥ 1, got {n}")
    src_lengths = as_lengths(src_lengths)
    s = sampling or Sampling()
    generator = generator or s.generator(src.device)

    def draw(logp: Tensor) -> Tensor:
        # from the log-probabilities (logits less a constant: the same softmax at any
        # temperature) in which padding and BOS are -inf: never outputs
        probs = torch.softmax(_filtered(logp, s), -1)
        return torch.multinomial(probs, 1, generator=generator).squeeze(1)

    hyps = decode_by(
        model,
        src.repeat_interleave(n, 0),
        src_lengths.repeat_interleave(n, 0),
        max_len_a,
        max_len_b,
        draw,
    )
    return [sorted(hyps[b * n : (b + 1) * n], key=lambda h: -h.score) for b in range(len(src))]
