"""Batched beam search on static shapes: the search of :func:`rnnkit.search.beam_search`,
with every decision a tensor operation, so that the whole search is one CUDA graph.

The host-side search keeps finished hypotheses in Python lists and drops finished
sentences from the batch; here every sentence keeps its K rows to the end of the bucket,
and its finished hypotheses live in a tensor of its ``n_best`` best so far, merged at
each step with the step's new ones (a stable sort: on a tie the earlier one stays
first, as in the list). A sentence that is done (settled, or at its length limit) stops
adding hypotheses. The stopping rule, the length penalty and the scores (float64, as the
Python floats of the host-side search) are the same, and so are the results
(``tests/test_graphs_seq2seq.py``).
"""

from __future__ import annotations

from typing import cast

import torch
from torch import Tensor

from rnnkit.graphs.seq2seq import call_decoder, decoding
from rnnkit.loss import output_log_probs
from rnnkit.model import EncoderOutput, Seq2Seq

__all__ = ["beam_tokens"]

NEG = float("-inf")


def _lp(length: Tensor | float, alpha: float) -> Tensor | float:
    return ((5 + length) / 6) ** alpha


class _Finished:
    """The n best finished hypotheses of each sentence ``(n, N, ·)``, best first."""

    def __init__(self, n: int, N: int, T: int, S: int | None, dev: torch.device) -> None:
        self.scores = torch.full((n, N), NEG, dtype=torch.float64, device=dev)
        self.tokens = torch.zeros(n, N, T, dtype=torch.long, device=dev)
        self.length = torch.zeros(n, N, dtype=torch.long, device=dev)
        self.steps = torch.zeros(n, N, dtype=torch.long, device=dev)  # decoder steps taken
        self.att = None if S is None else torch.zeros(n, N, T, S, device=dev)
        self.count = torch.zeros(n, dtype=torch.long, device=dev)

    def add(
        self, scores: Tensor, tokens: Tensor, length: int, steps: int, att: Tensor | None
    ) -> None:
        """Candidates ``scores (n, M)`` (-inf: none), ``tokens (n, M, T)`` of ``length``
        tokens after ``steps`` decoder steps, ``att (n, M, T, S)``: merged after the ones
        already there."""
        N = self.scores.shape[1]
        self.count = self.count + (scores > NEG).sum(1)
        all_scores = torch.cat([self.scores, scores], 1)
        order = all_scores.sort(dim=1, descending=True, stable=True).indices[:, :N]  # (n, N)
        self.scores = all_scores.gather(1, order)
        lengths = torch.cat([self.length, torch.full_like(scores, length, dtype=torch.long)], 1)
        self.length = lengths.gather(1, order)
        steps_ = torch.cat([self.steps, torch.full_like(scores, steps, dtype=torch.long)], 1)
        self.steps = steps_.gather(1, order)
        T = self.tokens.shape[2]
        both = torch.cat([self.tokens, tokens], 1)
        self.tokens = both.gather(1, order.unsqueeze(-1).expand(-1, -1, T))
        if self.att is not None and att is not None:
            both_att = torch.cat([self.att, att], 1)
            idx = order[:, :, None, None].expand(-1, -1, *self.att.shape[2:])
            self.att = both_att.gather(1, idx)


@torch.no_grad()
def beam_tokens(
    model: Seq2Seq,
    src: Tensor,
    src_lengths: Tensor,
    limits: list[int],
    K: int,
    alpha: float,
    n_best: int,
    exact: bool,
) -> tuple[Tensor, ...]:
    """Beam search of the whole bucket for ``max(limits)`` steps (rounded up).

    Returns, for the B sentences: scores ``(B, n_best)`` (float64, -inf: none), tokens
    ``(B, n_best, T)``, their lengths and decoder steps ``(B, n_best)`` (steps = length + 1
    when the hypothesis ended with EOS), and attention ``(B, n_best, T, S)`` (a row per
    step) when the model attends.
    """
    B = src.shape[0]
    enc, lim, T = decoding(model, src, src_lengths, limits)

    def run(enc: EncoderOutput, extra: tuple[Tensor, ...]) -> tuple[Tensor, ...]:
        return _search(model, enc, extra[0], T, K, alpha, n_best, exact)

    outs = call_decoder(model, ("beam", T, K, alpha, n_best, exact), enc, (lim,), run)
    return tuple(o[:B] for o in outs)


def _search(
    model: Seq2Seq,
    enc: EncoderOutput,
    lim: Tensor,
    T: int,
    K: int,
    alpha: float,
    n_best: int,
    exact: bool,
) -> tuple[Tensor, ...]:
    n, dev, eos = lim.shape[0], lim.device, model.eos_id
    S = enc.states.shape[1]
    enc = enc.index_select(torch.arange(n, device=dev).repeat_interleave(K))  # K rows each
    state = model.init_state(enc)
    scores = torch.full((n, K), NEG, device=dev)
    scores[:, 0] = 0.0  # all K rows start identical: only the first may expand
    tokens = torch.zeros(n, K, T, dtype=torch.long, device=dev)
    att: Tensor | None = None
    fin = _Finished(n, n_best, T, None if model.decoder.attention is None else S, dev)
    done = torch.zeros(n, dtype=torch.bool, device=dev)
    lp_limit = cast(Tensor, _lp(lim.double(), alpha))
    y = torch.full((n * K,), model.bos_id, dtype=torch.long, device=dev)
    rows = torch.arange(n, device=dev).unsqueeze(1) * K
    for t in range(T):
        step = model.decode_step(y, state, enc)
        if step.attention is not None:
            if att is None:
                att = step.attention.new_zeros(n, K, T, step.attention.shape[-1])
            att[:, :, t] = step.attention.view(n, K, -1)
        logp = output_log_probs(step.logits, model.pad_id, model.bos_id).view(n, K, -1)
        V = logp.shape[-1]
        cand, idx = (scores.unsqueeze(-1) + logp).view(n, K * V).topk(min(2 * K, K * V), 1)
        beam, token = idx // V, idx % V  # (n, 2K)
        lp_now = float(_lp(t + 1, alpha))
        # EOS among the K best candidates: finished, the EOS not among the tokens
        is_eos = (token[:, :K] == eos) & (cand[:, :K] > NEG) & ~done.unsqueeze(1)
        fin.add(
            (cand[:, :K].double() / lp_now).masked_fill(~is_eos, NEG),
            _rows(tokens, beam[:, :K]),
            t,
            t + 1,
            None if att is None else _rows(att, beam[:, :K]),
        )
        # the K best other candidates stay alive
        keep_scores, keep = cand.masked_fill(token == eos, NEG).topk(K, 1)
        keep_beam, keep_tok = beam.gather(1, keep), token.gather(1, keep)
        tokens = _rows(tokens, keep_beam)
        tokens[:, :, t] = keep_tok
        att = None if att is None else _rows(att, keep_beam)
        # out of length: the alive ones finish as they are, their last token included
        at_limit = (lim <= t + 1) & ~done
        alive_ok = (keep_scores > NEG) & at_limit.unsqueeze(1)
        fin.add(
            (keep_scores.double() / lp_now).masked_fill(~alive_ok, NEG), tokens, t + 1, t + 1, att
        )
        bound = torch.maximum(lp_limit, torch.full_like(lp_limit, float(_lp(t + 2, alpha))))
        bound = bound if exact else torch.full_like(lp_limit, lp_now)
        nth = fin.scores[:, n_best - 1]
        settled = (fin.count >= n_best) & (keep_scores[:, 0].double() / bound <= nth)
        done = done | at_limit | settled
        state = {k: v.index_select(0, (rows + keep_beam).view(-1)) for k, v in step.state.items()}
        scores = keep_scores
        y = keep_tok.reshape(-1)
    return (fin.scores, fin.tokens, fin.length, fin.steps) + (() if fin.att is None else (fin.att,))


def _rows(x: Tensor, beam: Tensor) -> Tensor:
    """``x (n, K, ...)`` reordered along K by ``beam (n, M)`` → ``(n, M, ...)``."""
    idx = beam.view(*beam.shape, *([1] * (x.dim() - 2))).expand(*beam.shape, *x.shape[2:])
    return x.gather(1, idx)
