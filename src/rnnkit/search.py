"""Greedy and batched beam search over :meth:`Seq2Seq.decode_step`.

Beam search keeps, for every sentence of the batch, the K best partial hypotheses in
one tensor of B·K rows. At each step every alive hypothesis is extended by every
token; of the B × K·V candidates, the 2K best of each sentence are looked at: those of
the K best that end in EOS finish, the best K not ending in EOS stay alive. A sentence is
done when it has n finished hypotheses and no alive one scores better than the n-th of
them at the current length (the stopping rule of OpenNMT and Joey NMT), or when it
reaches its maximum length a·|x| + b. Finished sentences leave the batch.

With α > 0 an alive hypothesis can still overtake later, because the length penalty
grows faster than its log-probability falls. ``exact=True`` keeps a sentence going
until no alive hypothesis can beat the n-th finished one even under the largest length
penalty it can still reach; with a wide enough beam that finds the model's best output,
at the price of running most sentences to (near) their maximum length.

Scores are summed log-probabilities divided by the GNMT length penalty
(Wu et al. 2016, arXiv 1609.08144)::

    lp(Y) = ((5 + |Y|) / 6)^α            α = 0: no normalisation

|Y| counts the output tokens, EOS included. With a coverage penalty β > 0 (GNMT's
second term, OpenNMT's ``-coverage_penalty wu``) a finished hypothesis also gets

    cp(X; Y) = β Σ_i log(min(Σ_t α_{t,i}, 1))       i over the source tokens

which is 0 when every source token received at least one unit of attention over the
output and negative for each one left short: it counts against translations that skip
part of the source. cp ≤ 0, so the stopping rules stay sound.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from rnnkit import graphs
from rnnkit.graphs.beam import beam_tokens
from rnnkit.graphs.seq2seq import greedy_tokens
from rnnkit.hypothesis import (
    Decoding,
    Hypothesis,
    as_lengths,
    coverage_penalty,
    length_penalty,
    max_lengths,
)
from rnnkit.loss import output_log_probs
from rnnkit.model import Seq2Seq, State

__all__ = ["Hypothesis", "greedy_search", "beam_search", "length_penalty", "coverage_penalty"]
__all__ += ["Decoding", "as_lengths", "max_lengths"]


@torch.no_grad()
def greedy_search(
    model: Decoding,
    src: Tensor,
    src_lengths: Tensor | Sequence[int],
    max_len_a: float = 1.5,
    max_len_b: int = 10,
) -> list[Hypothesis]:
    """Pick the most probable token at every step, for a whole batch at once.

    Args:
        src: ``(B, S)`` ids; src_lengths: ``(B,)``.
        max_len_a, max_len_b: at most a·|x| + b output tokens (EOS included).
    Returns:
        One :class:`Hypothesis` per sentence; its score is the summed log-probability.
        Sentences that have written EOS leave the batch.
    """
    if src.shape[0] == 0:  # an empty batch: no sentence, no hypothesis
        return []
    src_lengths = as_lengths(src_lengths)
    # one model on a GPU: static shapes, no host sync per step (rnnkit.graphs)
    if isinstance(model, Seq2Seq) and graphs.active(src.device):
        lims = max_lengths(src_lengths, max_len_a, max_len_b)
        ids, scores, att = greedy_tokens(model, src, src_lengths, lims)
        return _hypotheses(model, ids, scores, att, lims, src_lengths)
    return decode_by(model, src, src_lengths, max_len_a, max_len_b, _argmax)


def _argmax(logp: Tensor) -> Tensor:
    return logp.argmax(-1)


@torch.no_grad()
def decode_by(
    model: Decoding,
    src: Tensor,
    src_lengths: Tensor,
    max_len_a: float,
    max_len_b: int,
    pick: Callable[[Tensor], Tensor],
) -> list[Hypothesis]:
    """One hypothesis per row, growing by the token ``pick(log_probs)`` chooses at each
    step (``(n, V)`` float32, ``<pad>`` and ``<s>`` at -inf → ``(n,)`` ids): greedy
    search, or sampling (:mod:`rnnkit.sampling`). Scores sum the model's
    log-probabilities of the picks; rows that have written EOS leave the batch."""
    if src.shape[0] == 0:
        return []
    enc = model.encode(src, src_lengths)
    state = model.init_state(enc)
    B, dev = src.shape[0], src.device
    lims = max_lengths(src_lengths, max_len_a, max_len_b)
    limits = torch.tensor(lims, device=dev)
    T = int(max(lims))
    ids = torch.full((B, T), model.eos_id, dtype=torch.long, device=dev)
    att = None
    scores = torch.zeros(B, device=dev)
    rows = torch.arange(B, device=dev)  # the sentences still decoding; finished ones leave
    y = torch.full((B,), model.bos_id, dtype=torch.long, device=dev)
    for t in range(T):
        step = model.decode_step(y, state, enc)
        logp = output_log_probs(step.logits, model.pad_id, model.bos_id)
        y = pick(logp)
        scores[rows] += logp.gather(1, y[:, None]).squeeze(1)
        ids[rows, t] = y
        if step.attention is not None:  # rows added as they are needed: (B, T, S) at
            att = _room(att, step.attention, B, t, T)  # once was 56 GiB for a 100k-token line
            att[rows, t] = step.attention
        done = (y == model.eos_id) | (t + 1 >= limits[rows])
        if bool(done.all()):
            break
        state = step.state
        if bool(done.any()):
            keep = (~done).nonzero().view(-1)
            rows, y = rows[keep], y[keep]
            state = {k: v.index_select(0, keep) for k, v in state.items()}
            enc = enc.index_select(keep)
    return _hypotheses(model, ids, scores, att, lims, src_lengths)


def _room(att: Tensor | None, like: Tensor, B: int, t: int, T: int) -> Tensor:
    """``att (B, ≥ t + 1, S)``: the attention rows so far with room for step ``t``
    (doubled when full, at most ``T`` in all)."""
    if att is None:
        return like.new_zeros(B, min(T, 64), like.shape[-1])
    if t < att.shape[1]:
        return att
    more = att.new_zeros(B, min(att.shape[1], T - att.shape[1]), att.shape[2])
    return torch.cat([att, more], 1)


def _hypotheses(
    model: Decoding,
    ids: Tensor,
    scores: Tensor,
    att: Tensor | None,
    limits: list[int],
    src_lengths: Tensor,
) -> list[Hypothesis]:
    """Greedy outputs ``ids (B, T)``, ``scores (B,)``, ``att (B, T, S)`` as hypotheses:
    each cut at its first EOS (excluded) or its length limit."""
    out = []
    for b, seq in enumerate(ids.tolist()):
        seq = seq[: limits[b]]
        n = seq.index(model.eos_id) if model.eos_id in seq else len(seq)
        a = None if att is None else att[b, : min(n + 1, len(seq)), : int(src_lengths[b])]
        out.append(Hypothesis(seq[:n], float(scores[b]), a))
    return out


@dataclass
class _Alive:
    """The hypotheses still growing: K rows for each sentence still in the batch."""

    sentences: list[int]  # input index of each group of K rows
    scores: Tensor  # (n, K) summed log-probabilities
    tokens: Tensor  # (n, K, t)
    attention: Tensor | None  # (n, K, t, S)
    state: State  # decoder state, n·K rows
    enc: Any  # encoder output (an EncoderOutput for one model), n·K rows

    def hypothesis(
        self, i: int, k: int, last: int | None, score: float, src_len: int, beta: float = 0.0
    ) -> Hypothesis:
        """Row (i, k) as a finished hypothesis, plus ``last`` when it did not end in EOS;
        ``score`` plus the coverage penalty β of its attention."""
        tokens = self.tokens[i, k].tolist() + ([] if last is None else [last])
        att = None if self.attention is None else self.attention[i, k, :, :src_len].clone()
        if beta and att is not None:
            score += coverage_penalty(att, beta)
        return Hypothesis(tokens, score, att)

    def advance(self, beam: Tensor, token: Tensor, scores: Tensor, state: State) -> _Alive:
        """Continue row ``beam[i, k]`` of each sentence i with ``token[i, k]``."""
        n, K = scores.shape
        origin = (torch.arange(n, device=beam.device).unsqueeze(1) * K + beam).view(-1)  # (n·K,)
        tokens = torch.cat([self.tokens.view(n * K, -1)[origin], token.view(-1, 1)], 1)
        att = self.attention
        if att is not None:
            att = att.view(n * K, *att.shape[2:])[origin].view(n, K, *att.shape[2:])
        return _Alive(
            self.sentences,
            scores,
            tokens.view(n, K, -1),
            att,
            {k: v.index_select(0, origin) for k, v in state.items()},
            self.enc,
        )

    def select(self, keep: list[int]) -> _Alive:
        """Only the sentences at positions ``keep`` (the others are done)."""
        K = self.scores.shape[1]
        sel = torch.tensor(keep, device=self.scores.device)
        rows = (sel.unsqueeze(1) * K + torch.arange(K, device=sel.device)).view(-1)
        return _Alive(
            [self.sentences[i] for i in keep],
            self.scores[sel],
            self.tokens[sel],
            None if self.attention is None else self.attention[sel],
            {k: v.index_select(0, rows) for k, v in self.state.items()},
            self.enc.index_select(rows),
        )


@torch.no_grad()
def beam_search(
    model: Decoding,
    src: Tensor,
    src_lengths: Tensor | Sequence[int],
    beam_size: int = 5,
    length_penalty_alpha: float = 1.0,
    max_len_a: float = 1.5,
    max_len_b: int = 10,
    n_best: int = 1,
    exact: bool = False,
    coverage: float = 0.0,
) -> list[list[Hypothesis]]:
    """Batched beam search (see module docstring).

    Args:
        src: ``(B, S)`` ids; src_lengths: ``(B,)``.
        beam_size: K hypotheses kept alive per sentence.
        length_penalty_alpha: α of the GNMT length penalty.
        max_len_a, max_len_b: at most a·|x| + b output tokens per sentence.
        n_best: how many finished hypotheses to return per sentence (≤ K).
        exact: stop a sentence only when no alive hypothesis can still win (slower);
            default: when none wins at the current length.
        coverage: β of the coverage penalty added to finished hypotheses' scores
            (0: none; needs a model with attention).
    Returns:
        For each sentence, its n best hypotheses, best first; ``score`` is the
        length-normalised log-probability, ``attention`` is ``(len + 1, S)``
        (the EOS step included when the hypothesis ended with EOS).
    """
    if isinstance(beam_size, bool) or not isinstance(beam_size, int) or beam_size < 1:
        raise ValueError(f"beam_size must be an int ≥ 1, got {beam_size!r}")
    if not 1 <= n_best <= beam_size:
        raise ValueError(f"n_best must lie in [1, beam_size={beam_size}], got {n_best}")
    if src.shape[0] == 0:  # an empty batch: no sentence, no hypothesis
        return []
    K, B, dev, alpha = beam_size, src.shape[0], src.device, length_penalty_alpha
    src_lengths = as_lengths(src_lengths)
    limits = max_lengths(src_lengths, max_len_a, max_len_b)
    src_len = src_lengths.tolist()
    if coverage < 0:
        raise ValueError(f"coverage must be ≥ 0, got {coverage}")
    # one model on a GPU: static shapes, no host sync per step (rnnkit.graphs)
    if isinstance(model, Seq2Seq) and graphs.active(dev) and not coverage:
        found = beam_tokens(model, src, src_lengths, limits, K, alpha, n_best, exact)
        return _beam_hypotheses(found, src_len)
    enc = model.encode(src, src_lengths).index_select(
        torch.arange(B, device=dev).repeat_interleave(K)
    )  # each sentence K times
    scores = torch.full((B, K), float("-inf"), device=dev)
    scores[:, 0] = 0.0  # all K rows start identical: only the first may expand
    alive = _Alive(
        list(range(B)),
        scores,
        torch.empty(B, K, 0, dtype=torch.long, device=dev),
        None,
        model.init_state(enc),
        enc,
    )
    y = torch.full((B * K,), model.bos_id, dtype=torch.long, device=dev)
    finished: list[list[Hypothesis]] = [[] for _ in range(B)]
    for t in range(max(limits)):
        step = model.decode_step(y, alive.state, alive.enc)
        n = len(alive.sentences)
        if coverage and step.attention is None:
            raise ValueError("a coverage penalty needs a model with attention")
        if step.attention is not None:
            a = step.attention.view(n, K, 1, -1)
            alive.attention = a if alive.attention is None else torch.cat([alive.attention, a], 2)
        logp = output_log_probs(step.logits, model.pad_id, model.bos_id).view(n, K, -1)
        V = logp.shape[-1]
        cand, idx = (alive.scores.unsqueeze(-1) + logp).view(n, K * V).topk(min(2 * K, K * V), 1)
        beam, token = idx // V, idx % V  # (n, 2K)
        lp_now = float(length_penalty(t + 1, alpha))
        # EOS among the K best candidates: finished
        for i, j in (
            ((token[:, :K] == model.eos_id) & (cand[:, :K] > float("-inf"))).nonzero().tolist()
        ):
            s = alive.sentences[i]
            finished[s].append(
                alive.hypothesis(
                    i, int(beam[i, j]), None, float(cand[i, j]) / lp_now, src_len[s], coverage
                )
            )
        # the K best other candidates stay alive
        keep_scores, keep = cand.masked_fill(token == model.eos_id, float("-inf")).topk(K, 1)
        keep_beam, keep_tok = beam.gather(1, keep), token.gather(1, keep)
        still = []
        for i, s in enumerate(alive.sentences):
            if t + 1 >= limits[s]:  # out of length: the alive ones finish as they are
                for k in (keep_scores[i] > float("-inf")).nonzero().view(-1).tolist():
                    finished[s].append(
                        alive.hypothesis(
                            i,
                            int(keep_beam[i, k]),
                            int(keep_tok[i, k]),
                            float(keep_scores[i, k]) / lp_now,
                            src_len[s],
                            coverage,
                        )
                    )
            elif not _settled(
                finished[s],
                float(keep_scores[i, 0]),
                n_best,
                float(
                    max(length_penalty(limits[s], alpha), length_penalty(t + 2, alpha))
                    if exact
                    else lp_now
                ),
            ):
                still.append(i)
        alive = alive.advance(keep_beam, keep_tok, keep_scores, step.state)
        if not still:
            break
        if len(still) < n:  # finished sentences leave the batch
            alive = alive.select(still)
        y = alive.tokens[:, :, -1].reshape(-1)
    return [sorted(f, key=lambda h: -h.score)[:n_best] for f in finished]


def _beam_hypotheses(found: tuple[Tensor, ...], src_len: list[int]) -> list[list[Hypothesis]]:
    """What :func:`rnnkit.graphs.beam.beam_tokens` found, as hypotheses (best first)."""
    scores, tokens, length, steps = (t.tolist() for t in found[:4])
    att = found[4] if len(found) > 4 else None
    out = []
    for b, row in enumerate(scores):
        out.append(
            [
                Hypothesis(
                    tokens[b][j][: length[b][j]],
                    score,
                    None if att is None else att[b, j, : steps[b][j], : src_len[b]],
                )
                for j, score in enumerate(row)
                if score > float("-inf")
            ]
        )
    return out


def _settled(finished: list[Hypothesis], best_alive: float, n_best: int, lp_bound: float) -> bool:
    """Whether no alive hypothesis can beat the n-th best finished one any more.

    Alive scores (≤ 0) only fall as they grow; dividing the best of them by the largest
    length penalty still reachable bounds every score it can end with.
    """
    if len(finished) < n_best:
        return False
    nth = sorted((h.score for h in finished), reverse=True)[n_best - 1]
    return best_alive / lp_bound <= nth
