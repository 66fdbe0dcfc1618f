"""Greedy and batched beam search over :meth:`Seq2Seq.decode_step`.

Beam search keeps, for every sentence of the batch, the K best partial hypotheses in
one tensor of B·K rows. At each step every alive hypothesis is extended by every
token; of the B × K·V candidates, the 2K best of each sentence are looked at: those
ending in EOS become finished hypotheses, the best K others stay alive. A sentence is
done when its n best finished hypotheses cannot be beaten by any alive one, or when it
reaches its maximum length a·|x| + b. Finished sentences leave the batch.

Scores are summed log-probabilities divided by the GNMT length penalty
(Wu et al. 2016, arXiv 1609.08144)::

    lp(Y) = ((5 + |Y|) / 6)^α            α = 0: no normalisation

|Y| counts the output tokens, EOS included.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from rnnkit.model import Seq2Seq

__all__ = ["Hypothesis", "greedy_search", "beam_search", "length_penalty"]


@dataclass
class Hypothesis:
    """One output: token ids (EOS excluded), its score and attention ``(len, S)``."""

    tokens: list[int]
    score: float
    attention: Tensor | None


def length_penalty(length: int | Tensor, alpha: float) -> float | Tensor:
    """GNMT length penalty ((5 + |Y|) / 6)^α."""
    return ((5 + length) / 6) ** alpha


def _max_lengths(src_lengths: Tensor, a: float, b: int) -> list[int]:
    return [max(1, int(a * n + b)) for n in src_lengths.tolist()]


@torch.no_grad()
def greedy_search(
    model: Seq2Seq, src: Tensor, src_lengths: Tensor, max_len_a: float = 1.5, max_len_b: int = 10
) -> list[Hypothesis]:
    """Pick the most probable token at every step, for a whole batch at once.

    Args:
        src: ``(B, S)`` ids; src_lengths: ``(B,)``.
        max_len_a, max_len_b: at most a·|x| + b output tokens (EOS included).
    Returns:
        One :class:`Hypothesis` per sentence; its score is the summed log-probability.
    """
    enc = model.encode(src, src_lengths)
    state = model.init_state(enc)
    B = src.shape[0]
    limits = torch.tensor(_max_lengths(src_lengths, max_len_a, max_len_b), device=src.device)
    y = torch.full((B,), model.bos_id, dtype=torch.long, device=src.device)
    done = torch.zeros(B, dtype=torch.bool, device=src.device)
    scores = torch.zeros(B, device=src.device)
    tokens, alphas = [], []
    for t in range(int(limits.max())):
        step = model.decode_step(y, state, enc)
        logp = torch.log_softmax(step.logits.float(), -1)
        best, y = logp.max(-1)
        scores += torch.where(done, 0.0, best)
        tokens.append(y)
        if step.attention is not None:
            alphas.append(step.attention)
        state = step.state
        done |= (y == model.eos_id) | (t + 1 >= limits)
        if bool(done.all()):
            break
    ids = torch.stack(tokens, 1).tolist()  # (B, T)
    att = torch.stack(alphas, 1) if alphas else None  # (B, T, S)
    out = []
    for b in range(B):
        seq = ids[b][: int(limits[b])]
        n = seq.index(model.eos_id) if model.eos_id in seq else len(seq)
        a = None if att is None else att[b, : min(n + 1, len(seq)), : int(src_lengths[b])]
        out.append(Hypothesis(seq[:n], float(scores[b]), a))
    return out


@torch.no_grad()
def beam_search(
    model: Seq2Seq,
    src: Tensor,
    src_lengths: Tensor,
    beam_size: int = 5,
    length_penalty_alpha: float = 1.0,
    max_len_a: float = 1.5,
    max_len_b: int = 10,
    n_best: int = 1,
) -> list[list[Hypothesis]]:
    """Batched beam search (see module docstring).

    Args:
        src: ``(B, S)`` ids; src_lengths: ``(B,)``.
        beam_size: K hypotheses kept alive per sentence.
        length_penalty_alpha: α of the GNMT length penalty.
        max_len_a, max_len_b: at most a·|x| + b output tokens per sentence.
        n_best: how many finished hypotheses to return per sentence (≤ K).
    Returns:
        For each sentence, its n best hypotheses, best first; ``score`` is the
        length-normalised log-probability, ``attention`` is ``(len + 1, S)``
        (the EOS step included when the hypothesis ended with EOS).
    """
    if not 1 <= n_best <= beam_size:
        raise ValueError(f"n_best must lie in [1, beam_size={beam_size}], got {n_best}")
    K, B, dev = beam_size, src.shape[0], src.device
    limits = _max_lengths(src_lengths, max_len_a, max_len_b)
    lp_max = [float(length_penalty(n, length_penalty_alpha)) for n in limits]
    src_len = src_lengths.tolist()
    enc = model.encode(src, src_lengths)
    rows = torch.arange(B, device=dev).repeat_interleave(K)  # (B·K,) sentence of each row
    enc = enc.index_select(rows)
    state = model.init_state(enc)
    y = torch.full((B * K,), model.bos_id, dtype=torch.long, device=dev)
    alive = torch.full((B, K), float("-inf"), device=dev)
    alive[:, 0] = 0.0  # all K rows start identical: only the first may expand
    seqs = torch.empty(B, K, 0, dtype=torch.long, device=dev)
    atts: Tensor | None = None  # (B, K, t, S)
    active = list(range(B))  # sentence ids still in the batch
    finished: list[list[Hypothesis]] = [[] for _ in range(B)]

    for t in range(max(limits)):
        n = len(active)
        step = model.decode_step(y, state, enc)
        V = step.logits.shape[-1]
        logp = torch.log_softmax(step.logits.float(), -1).view(n, K, V)
        cand = (alive.unsqueeze(-1) + logp).view(n, K * V)
        top_scores, top_idx = cand.topk(min(2 * K, K * V), dim=1)  # (n, 2K)
        beam, token = top_idx // V, top_idx % V
        if step.attention is not None:
            a = step.attention.view(n, K, 1, -1)
            atts = a if atts is None else torch.cat([atts, a], 2)
        # finished: EOS among the K best candidates (or every candidate at the length limit)
        is_eos = token == model.eos_id
        at_limit = [t + 1 >= limits[s] for s in active]
        fin = is_eos.clone()
        fin[:, K:] = False
        fin_list = fin.nonzero().tolist()
        lp_now = float(length_penalty(t + 1, length_penalty_alpha))
        for i, j in fin_list:
            if top_scores[i, j] == float("-inf"):
                continue
            finished[active[i]].append(
                _hyp(
                    seqs,
                    atts,
                    i,
                    int(beam[i, j]),
                    None,
                    float(top_scores[i, j]) / lp_now,
                    src_len[active[i]],
                )
            )
        # alive: the K best non-EOS candidates of each sentence
        masked = top_scores.masked_fill(is_eos, float("-inf"))
        keep_scores, keep = masked.topk(K, dim=1)  # (n, K)
        keep_beam, keep_tok = beam.gather(1, keep), token.gather(1, keep)
        for i, s in enumerate(active):
            if at_limit[i]:  # out of length: the alive ones finish as they are
                for k in range(K):
                    if keep_scores[i, k] > float("-inf"):
                        finished[s].append(
                            _hyp(
                                seqs,
                                atts,
                                i,
                                int(keep_beam[i, k]),
                                int(keep_tok[i, k]),
                                float(keep_scores[i, k]) / lp_now,
                                src_len[s],
                            )
                        )
        # sentence done: n_best finished that no alive hypothesis can beat any more
        still = []
        for i, s in enumerate(active):
            # alive scores only fall; the largest penalty still reachable bounds them
            lp_bound = max(lp_max[s], float(length_penalty(t + 2, length_penalty_alpha)))
            best_alive = float(keep_scores[i, 0]) / lp_bound
            fs = sorted(h.score for h in finished[s])[::-1]
            done = at_limit[i] or (len(fs) >= n_best and best_alive <= fs[n_best - 1])
            if not done:
                still.append(i)
        origin = (torch.arange(n, device=dev).unsqueeze(1) * K + keep_beam).view(-1)  # (n·K,)
        seqs = torch.cat([seqs.view(n * K, -1)[origin], keep_tok.view(-1, 1)], 1).view(n, K, -1)
        if atts is not None:
            atts = atts.view(n * K, *atts.shape[2:])[origin].view(n, K, *atts.shape[2:])
        alive, y = keep_scores, keep_tok.view(-1)
        state = {k: v.index_select(0, origin) for k, v in step.state.items()}
        if len(still) < n:  # drop finished sentences from the batch
            if not still:
                break
            sel = torch.tensor(still, device=dev)
            sel_rows = (sel.unsqueeze(1) * K + torch.arange(K, device=dev)).view(-1)
            active = [active[i] for i in still]
            alive, seqs, y = alive[sel], seqs[sel], y[sel_rows]
            atts = None if atts is None else atts[sel]
            state = {k: v.index_select(0, sel_rows) for k, v in state.items()}
            enc = enc.index_select(sel_rows)
    return [sorted(f, key=lambda h: -h.score)[:n_best] for f in finished]


def _hyp(
    seqs: Tensor, atts: Tensor | None, i: int, k: int, last: int | None, score: float, src_len: int
) -> Hypothesis:
    """Hypothesis from alive row (i, k), plus ``last`` token when it did not end in EOS."""
    tokens = seqs[i, k].tolist() + ([] if last is None else [last])
    att = None if atts is None else atts[i, k, :, :src_len].clone()
    return Hypothesis(tokens, score, att)
