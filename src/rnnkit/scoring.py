"""Forced decoding: how probable a model (or an ensemble) finds given translations.

For each pair (x, y) the summed log-probability of the target's tokens, EOS included::

    log p(y | x) = Σ_t log p(y_t | y_<t, x)

the quantity beam search maximises (its scores with length penalty α = 0). Uses: rerank an
n-best list, filter a noisy parallel corpus (low scores per token flag misaligned pairs),
compare models on a test set by perplexity (Marian's ``marian-scorer``, Sockeye's
``sockeye-score``, fairseq's ``--score-reference``). Text goes through the model's own
lowercasing, tokenizers and vocabularies; a target piece outside the vocabulary is scored
as ``<unk>``, as it was trained.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import NamedTuple

import torch

from rnnkit.checkpoint import Bundle
from rnnkit.data import Batch, Example, encode_pairs, make_batches
from rnnkit.data.batching import DECODE_TOKENS
from rnnkit.prepare import lowercase_pairs
from rnnkit.search import Decoding

__all__ = ["PairScore", "bundle_examples", "score_pairs", "summary", "totals"]


class PairScore(NamedTuple):
    """One pair: ``log_prob`` = log p(y | x) (≤ 0), ``tokens`` = |y| with EOS."""

    log_prob: float
    tokens: int


def bundle_examples(bundle: Bundle, pairs: Sequence[tuple[str, str]]) -> list[Example]:
    """``pairs`` as the model reads them, as training saw text: lowercased with
    ``data.lowercase``, tokenised and numbered by the bundle's tokenizers and
    vocabularies."""
    return encode_pairs(
        lowercase_pairs(list(pairs), bundle.config.data.lowercase),
        bundle.src_tokenizer,
        bundle.tgt_tokenizer,
        bundle.src_vocab,
        bundle.tgt_vocab,
    )


def score_pairs(
    bundle: Bundle,
    sources: Sequence[str],
    targets: Sequence[str],
    batch_size: int | None = None,
    model: Decoding | None = None,
    progress: Callable[[int], None] | None = None,
) -> list[PairScore]:
    """Score each ``targets[i]`` as a translation of ``sources[i]``, in input order.

    Args:
        batch_size: pairs per batch; default from the checkpoint's ``decode.batch_size``.
        model: an :class:`rnnkit.ensemble.Ensemble` (its mean distribution is scored)
            instead of ``bundle.model``.
        progress: called with the number of pairs scored after each batch.
    Raises:
        ValueError: ``sources`` and ``targets`` differ in length, one is a string (not a
            list of them), or ``batch_size`` < 1.
    """
    if isinstance(sources, str) or isinstance(targets, str):
        raise ValueError("sources and targets are lists of sentences, not one string")
    if batch_size is not None and batch_size < 1:
        raise ValueError(f"batch_size must be ≥ 1 (None: the checkpoint's), got {batch_size}")
    if len(sources) != len(targets):
        raise ValueError(f"{len(sources)} sources but {len(targets)} targets")
    model = bundle.model if model is None else model
    device = next(model.parameters()).device
    pairs = [(x if x.strip() else "", y if y.strip() else "") for x, y in zip(sources, targets)]
    examples = bundle_examples(bundle, pairs)  # an empty line is EOS alone
    pad = bundle.tgt_vocab.pad_id
    size = bundle.config.decode.batch_size if batch_size is None else batch_size
    out: list[PairScore] = [PairScore(0.0, 0)] * len(examples)
    for b in make_batches(examples, DECODE_TOKENS, size, False, 0, pad):
        logp, real = _forced(model, b.to(device), pad)
        for r, i in enumerate(b.indices.tolist()):
            out[i] = PairScore(float(logp[r].sum()), int(real[r]))
        if progress is not None:
            progress(len(b.indices))
    return out


@torch.no_grad()
def _forced(model: Decoding, b: Batch, pad: int) -> tuple[torch.Tensor, torch.Tensor]:
    """log p(y_t | y_<t, x) of every target token of batch ``b`` (``tgt`` = BOS y EOS),
    0 at padding, ``(B, T)`` on the CPU; and each row's number of real tokens."""
    enc = model.encode(b.src, b.src_lengths)
    state = model.init_state(enc)
    gold = b.tgt[:, 1:]
    cols = []
    for t in range(gold.shape[1]):
        step = model.decode_step(b.tgt[:, t], state, enc)
        logp = torch.log_softmax(step.logits.double(), -1)
        cols.append(logp.gather(1, gold[:, t : t + 1]).squeeze(1))
        state = step.state
    real = gold != pad
    return torch.stack(cols, 1).masked_fill(~real, 0.0).cpu(), real.sum(1).cpu()


def summary(scores: Sequence[PairScore]) -> dict[str, float]:
    """Totals of :func:`score_pairs`: pairs, target tokens, summed log-probability, mean
    negative log-probability per token (nats) and perplexity exp of that."""
    return totals(len(scores), sum(s.tokens for s in scores), sum(s.log_prob for s in scores))


def totals(pairs: int, tokens: int, log_prob: float) -> dict[str, float]:
    """:func:`summary` of ``pairs`` scores of ``tokens`` target tokens in all, summing to
    ``log_prob`` (for scores added up as they come, chunk by chunk)."""
    nll = -log_prob / tokens if tokens else 0.0
    return {
        "pairs": pairs,
        "tokens": tokens,
        "log_prob": round(log_prob, 4),
        "nll_per_token": round(nll, 4),
        "perplexity": round(math.exp(nll), 4),
    }
