"""Greedy and beam search: beam size 1 is greedy, a wide beam finds what brute force finds,
batching changes nothing, and every returned score is the model's log-probability."""

from __future__ import annotations

import math
import random

import pytest
import torch
from torch import Tensor
from toy import BOS, EOS, PAD, one_thread, reverse_batch, train_reverse

from rnnkit import graphs
from rnnkit.model import DecoderStep, EncoderOutput, Seq2Seq
from rnnkit.search import Hypothesis, beam_search, greedy_search, length_penalty

V = 12


def random_model(cell: str = "gru", attention: str = "bahdanau", seed: int = 0) -> Seq2Seq:
    torch.manual_seed(seed)
    model = Seq2Seq(V, V, 8, 16, cell=cell, attention=attention, dropout=0.0, emb_dropout=0.0)
    return model.eval()


@pytest.fixture(autouse=True)
def _one_thread():
    with one_thread():  # tiny matrices: a second thread only waits on a busy machine
        yield


@pytest.fixture(scope="module")
def trained() -> Seq2Seq:
    """A GRU + Bahdanau reverser (~99 % exact match after 150 steps, a few seconds)."""
    torch.manual_seed(0)
    model = Seq2Seq(V, V, 32, 64, cell="gru", dropout=0.0, emb_dropout=0.0)
    return train_reverse(model, seed=0, steps=150, lo=3, hi=10)


def sources(seed: int = 7, B: int = 6, lo: int = 2, hi: int = 9) -> tuple[Tensor, Tensor]:
    src, lengths, _ = reverse_batch(random.Random(seed), B, lo, hi, V)
    return src, lengths


def models(trained_model: Seq2Seq) -> list[Seq2Seq]:
    return [random_model("gru"), random_model("lstm", "luong", seed=1), trained_model]


def full_sequence(h: Hypothesis, limit: int) -> list[int]:
    """The output Y as scored: the tokens, plus EOS unless the hypothesis was cut at the limit."""
    return h.tokens + ([] if len(h.tokens) == limit else [EOS])


def rescore(model: Seq2Seq, src: Tensor, n: int, ys: list[int]) -> tuple[float, Tensor | None]:
    """log p(Y | x) = Σ_t log p(y_t | y_<t, x) from one teacher-forced forward pass, and α."""
    tgt_in = torch.tensor([[BOS] + ys[:-1]])
    logits, att = model(src[None, :n], torch.tensor([n]), tgt_in)
    logp = torch.log_softmax(logits[0].double(), -1)
    return float(logp[torch.arange(len(ys)), ys].sum()), None if att is None else att[0]


# ------------------------------------------------------------------------------ greedy


@torch.no_grad()
def test_greedy_takes_the_argmax_and_scores_its_log_probability(trained: Seq2Seq):
    src, lengths = sources()
    for model in models(trained):
        hyps = greedy_search(model, src, lengths, max_len_a=1.0, max_len_b=2)
        for b, h in enumerate(hyps):
            n = int(lengths[b])
            ys = full_sequence(h, n + 2)
            assert len(ys) <= n + 2 and EOS not in h.tokens
            tgt_in = torch.tensor([[BOS] + ys[:-1]])
            logits, _ = model(src[b : b + 1, :n], lengths[b : b + 1], tgt_in)
            assert logits[0].argmax(-1).tolist() == ys  # the argmax at every step
            score, att = rescore(model, src[b], n, ys)
            assert h.score == pytest.approx(score, abs=1e-4)
            if att is not None:
                torch.testing.assert_close(h.attention, att, atol=1e-5, rtol=0)


# ------------------------------------------------------------------ beam size 1 = greedy


@torch.no_grad()
def test_beam_of_one_is_greedy(trained: Seq2Seq):
    """With α = 0, K = 1 keeps the argmax and stops at the first EOS: greedy search."""
    src, lengths = sources(B=10)
    for model in models(trained):
        greedy = greedy_search(model, src, lengths, max_len_a=1.0, max_len_b=3)
        beam = beam_search(model, src, lengths, 1, 0.0, max_len_a=1.0, max_len_b=3)
        for g, (b,) in zip(greedy, beam):
            assert b.tokens == g.tokens
            assert b.score == pytest.approx(g.score, abs=1e-5)
            if g.attention is not None:
                torch.testing.assert_close(b.attention, g.attention, atol=1e-6, rtol=0)


# --------------------------------------------------------------------------- brute force

BF_V = 7  # PAD UNK BOS EOS + 3 symbols; all but PAD and BOS may be output
OUTPUTS = [v for v in range(BF_V) if v not in (PAD, BOS, EOS)]  # what may precede EOS


def enumerate_outputs(model: Seq2Seq, src: Tensor, n: int, limit: int) -> list[tuple]:
    """Every output within ``limit`` tokens and its summed log-probability, via decode_step.

    An output is y_1 .. y_m EOS with m + 1 ≤ limit and no EOS before, or, cut at the
    limit, any limit tokens without EOS; |Y| is its number of tokens, EOS included.
    Returns ``(tokens without EOS, |Y|, log p)`` for all of them.
    """
    enc = model.encode(src[None, :n], torch.tensor([n]))
    prefixes: list[list[int]] = [[]]
    scores = torch.zeros(1, dtype=torch.float64)
    state = model.init_state(enc)
    out = []
    for t in range(limit):
        rows = torch.zeros(len(prefixes), dtype=torch.long)
        y = torch.tensor([p[-1] if p else BOS for p in prefixes])
        step = model.decode_step(y, state, enc.index_select(rows))
        total = scores[:, None] + torch.log_softmax(step.logits.double(), -1)  # (P, V)
        grow = [(i, v) for i in range(len(prefixes)) for v in OUTPUTS]
        for i, p in enumerate(prefixes):
            out.append((p, t + 1, float(total[i, EOS])))
        if t + 1 == limit:
            out += [(prefixes[i] + [v], limit, float(total[i, v])) for i, v in grow]
            break
        index = torch.tensor([i for i, _ in grow])
        prefixes = [prefixes[i] + [v] for i, v in grow]
        scores = total[index, torch.tensor([v for _, v in grow])]
        state = {k: s.index_select(0, index) for k, s in step.state.items()}
    return out


def sharp_random_model(seed: int) -> Seq2Seq:
    """A random model with larger embeddings and output weights: near-uniform outputs
    make the empty output always best; these make the best length and greedy's failures
    vary from model to model."""
    torch.manual_seed(seed)
    model = Seq2Seq(BF_V, BF_V, 4, 8, cell="gru", dropout=0.0, emb_dropout=0.0)
    with torch.no_grad():
        model.decoder.embed.weight.mul_(3)
        model.W_out.weight.mul_(4)
    return model.double().eval()


@torch.no_grad()
@pytest.mark.parametrize("n_best", [1, 5])
@pytest.mark.parametrize("alpha", [0.0, 1.0])
def test_a_wide_beam_finds_the_n_best_outputs_that_brute_force_finds(alpha: float, n_best: int):
    """Sources of 1, 2, 3 tokens with a = 1, b = 1: at most 2, 3, 4 output tokens.
    K = V·(V-1)^(L-2) keeps every prefix alive and ranks every candidate of steps < L
    in the top K, so beam search is exact here; it must return the n best outputs by
    ((5 + |Y|) / 6)^-α · log p(Y | x), with those scores. (n_best = 1 stops the search
    earliest: it checks the bound on what an alive hypothesis can still reach.)"""
    limits, K = [2, 3, 4], BF_V * (BF_V - 1) ** 2
    best_lengths, greedy_not_best = set(), 0
    for seed in range(6):
        model = sharp_random_model(seed)
        src = torch.randint(4, BF_V, (3, 3), generator=torch.Generator().manual_seed(seed))
        lengths = torch.tensor([1, 2, 3])
        src[torch.arange(3) >= lengths[:, None]] = PAD
        beams = beam_search(model, src, lengths, K, alpha, 1.0, 1, n_best=n_best, exact=True)
        greedy = greedy_search(model, src, lengths, 1.0, 1)
        for b, limit in enumerate(limits):
            outputs = enumerate_outputs(model, src[b], b + 1, limit)
            n = len(OUTPUTS)
            assert len(outputs) == sum(n**m for m in range(limit)) + n**limit
            normed = {tuple(t): s / length_penalty(m, alpha) for t, m, s in outputs}
            ranked = sorted(normed.values(), reverse=True)
            assert len(beams[b]) == n_best
            for h, want in zip(beams[b], ranked):
                assert h.score == pytest.approx(want, abs=1e-5)  # the k-th best score
                assert normed[tuple(h.tokens)] == pytest.approx(h.score, abs=1e-5)  # is its own
            best = beams[b][0].tokens
            best_lengths.add(len(full_sequence(beams[b][0], limit)))
            greedy_not_best += greedy[b].tokens != best
    assert len(best_lengths) >= 3 and greedy_not_best > 0  # the search had work to do


class ScriptedModel:
    """A stand-in with the search interface whose log-probabilities are written out:
    p(· | y_<t) is ``softmax(table[y_<t])``, uniform for prefixes not in the table."""

    pad_id, bos_id, eos_id = PAD, BOS, EOS

    def __init__(self, table: dict[tuple[int, ...], list[float]]) -> None:
        self.table = {k: torch.tensor(v) for k, v in table.items()}

    def encode(self, src: Tensor, src_lengths: Tensor) -> EncoderOutput:
        B, S = src.shape
        mask = torch.arange(S) < src_lengths[:, None]
        return EncoderOutput(torch.zeros(B, S, 1), mask, torch.zeros(B, 1), None)

    def init_state(self, enc: EncoderOutput) -> dict[str, Tensor]:
        return {"prefix": torch.zeros(enc.final.shape[0], 0, dtype=torch.long)}

    def decode_step(self, y: Tensor, state: dict[str, Tensor], enc: EncoderOutput) -> DecoderStep:
        prefix = torch.cat([state["prefix"], y[:, None]], 1)  # BOS y_1 .. y_{t-1}
        uniform = torch.zeros(BF_V)
        rows = [self.table.get(tuple(p[1:]), uniform) for p in prefix.tolist()]
        return DecoderStep(torch.log_softmax(torch.stack(rows), -1), {"prefix": prefix}, None, [])


@torch.no_grad()
def test_search_goes_on_while_length_normalisation_can_still_lift_an_alive_hypothesis():
    """Step 1: EOS has log p = -1.0, the best other token 4 has -1.4; after 4 the model is
    nearly sure of 4 4 4. With α = 1 and room for 4 tokens, 4 4 4 4 (cut at the limit)
    scores about -1.4 / lp(4) = -0.93 > -1.0, so the search must go on after step 1
    although its best alive hypothesis is, so far, below the finished one. The margin is
    thin on purpose: a bound on alive hypotheses that used lp(3) (-1.05) would stop."""
    p = [0.05, 0.05, 0.05, math.exp(-1.0), math.exp(-1.4), 0.0, 0.05]  # PAD UNK BOS EOS 4 5 6
    p[5] = 1 - sum(p)  # 0.19: log p = -1.7
    first = [math.log(q) for q in p]
    sure = [0.0, 0.0, 0.0, 0.0, 9.0, 0.0, 0.0]  # p(4) ≈ 0.999
    model = ScriptedModel({(): first, (4,): sure, (4, 4): sure, (4, 4, 4): sure})
    src, lengths = torch.full((1, 3), 4), torch.tensor([3])  # a = 1, b = 1: 4 tokens
    outputs = enumerate_outputs(model, src[0], 3, 4)
    for alpha, want in [(0.0, []), (1.0, [4, 4, 4, 4])]:
        best = max(outputs, key=lambda o: o[2] / length_penalty(o[1], alpha))
        assert best[0] == want
        (h,) = beam_search(model, src, lengths, 8, alpha, 1.0, 1, exact=True)[0]
        assert h.tokens == want
        assert h.score == pytest.approx(best[2] / length_penalty(best[1], alpha), abs=1e-5)
    assert greedy_search(model, src, lengths, 1.0, 1)[0].tokens == []
    # the default rule (OpenNMT's, Joey's) stops at step 1: at the current length EOS wins
    (h,) = beam_search(model, src, lengths, 8, 1.0, 1.0, 1)[0]
    assert h.tokens == [] and h.score == pytest.approx(-1.0 / length_penalty(1, 1.0), abs=1e-5)


# --------------------------------------------------------------------- batching, n-best


@torch.no_grad()
@pytest.mark.parametrize("alpha", [0.0, 1.0])
def test_batched_beam_search_equals_one_sentence_at_a_time(trained: Seq2Seq, alpha: float):
    src, lengths = sources(seed=3, B=5, lo=1, hi=9)
    assert len(set(lengths.tolist())) > 2
    for model in models(trained):
        batched = beam_search(model, src, lengths, 4, alpha, 1.0, 2, n_best=3)
        for b, n in enumerate(lengths.tolist()):
            (alone,) = beam_search(
                model, src[b : b + 1, :n], lengths[b : b + 1], 4, alpha, 1.0, 2, 3
            )
            assert [h.tokens for h in batched[b]] == [h.tokens for h in alone]
            for hb, ha in zip(batched[b], alone):
                assert hb.score == pytest.approx(ha.score, abs=1e-5)
                if ha.attention is not None:
                    torch.testing.assert_close(hb.attention, ha.attention, atol=1e-5, rtol=0)


@torch.no_grad()
@pytest.mark.parametrize("alpha", [0.0, 1.0])
def test_n_best_are_distinct_sorted_and_scored_as_the_model_scores_them(trained, alpha):
    src, lengths = sources(seed=5, B=4)
    ended_with_eos = cut = 0
    for model in models(trained):
        beams = beam_search(model, src, lengths, 6, alpha, 1.0, 2, n_best=4)
        for b, hyps in enumerate(beams):
            n, limit = int(lengths[b]), int(lengths[b]) + 2
            assert len(hyps) == 4
            assert len({tuple(h.tokens) for h in hyps}) == 4
            assert [h.score for h in hyps] == sorted((h.score for h in hyps), reverse=True)
            for h in hyps:
                ys = full_sequence(h, limit)
                eos = ys[-1] == EOS
                ended_with_eos += eos
                cut += not eos
                assert EOS not in h.tokens and len(ys) <= limit
                logp, att = rescore(model, src[b], n, ys)
                assert h.score == pytest.approx(logp / length_penalty(len(ys), alpha), abs=1e-4)
                if att is None:
                    assert h.attention is None
                    continue
                assert h.attention.shape == (len(h.tokens) + eos, n)
                torch.testing.assert_close(h.attention.sum(-1), torch.ones(len(ys)))
                torch.testing.assert_close(h.attention, att, atol=1e-5, rtol=0)
    assert ended_with_eos > 0 and cut > 0


def test_n_best_outside_one_to_beam_size_is_an_error():
    model = random_model()
    src, lengths = sources(B=2)
    for n_best in (0, 4):
        with pytest.raises(ValueError, match="n_best"):
            beam_search(model, src, lengths, beam_size=3, n_best=n_best)


# ----------------------------------------------------------------- coverage penalty


@torch.no_grad()
def test_coverage_penalty_scores_each_hypothesis_by_its_attention(trained: Seq2Seq):
    """score = log p / lp + β Σ_i log(min(Σ_t α_ti, 1)), α from rescoring the output; the
    n best sorted by it; batched = one sentence at a time; β = 0 changes nothing."""
    src, lengths = sources(seed=8, B=5)
    beta, alpha = 0.4, 1.0
    penalised = 0
    for model in models(trained):
        plain = beam_search(model, src, lengths, 4, alpha, 1.0, 2, n_best=3)
        assert [[h.tokens for h in b] for b in plain] == [
            [h.tokens for h in b]
            for b in beam_search(model, src, lengths, 4, alpha, 1.0, 2, 3, coverage=0.0)
        ]
        beams = beam_search(model, src, lengths, 4, alpha, 1.0, 2, n_best=3, coverage=beta)
        for b, hyps in enumerate(beams):
            n = int(lengths[b])
            assert [h.score for h in hyps] == sorted((h.score for h in hyps), reverse=True)
            for h in hyps:
                ys = full_sequence(h, n + 2)
                logp, att = rescore(model, src[b], n, ys)
                cp = beta * float(att.double().sum(0).clamp(max=1.0).log().sum())
                assert cp <= 0
                penalised += cp < -1e-3
                want = logp / length_penalty(len(ys), alpha) + cp
                assert h.score == pytest.approx(want, abs=1e-4)
            (alone,) = beam_search(
                model, src[b : b + 1, :n], lengths[b : b + 1], 4, alpha, 1.0, 2, 3, coverage=beta
            )
            assert [h.tokens for h in alone] == [h.tokens for h in hyps]
    assert penalised > 0  # the penalty was at work


def test_coverage_penalty_needs_attention_and_a_non_negative_beta():
    src, lengths = sources(B=2)
    with pytest.raises(ValueError, match="needs a model with attention"):
        beam_search(random_model("gru", "none"), src, lengths, 3, coverage=0.2)
    with pytest.raises(ValueError, match="coverage must be ≥ 0"):
        beam_search(random_model(), src, lengths, 3, coverage=-0.1)


@torch.no_grad()
@pytest.mark.parametrize("static", ["off", "on"])
def test_no_search_writes_padding_or_bos(static: str):
    """<pad> and <s> are never outputs (label smoothing gives them a little mass, and an
    untrained model a lot): greedy and beam search, eager or on static shapes (the CUDA
    graph path, run eagerly here), leave them out; the scores stay the model's
    log-probabilities of what was written, as enumerate_outputs sums them."""
    with graphs.mode(static):
        _no_padding_or_bos()


def _no_padding_or_bos() -> None:
    seen = 0
    for seed in range(8):
        model = sharp_random_model(seed)
        src = torch.randint(4, BF_V, (3, 3), generator=torch.Generator().manual_seed(seed))
        lengths = torch.tensor([3, 3, 3])
        raw = torch.log_softmax(model.decode_step(
            torch.full((3,), BOS), model.init_state(model.encode(src, lengths)),
            model.encode(src, lengths)).logits, -1).argmax(-1)  # fmt: skip
        seen += int(((raw == PAD) | (raw == BOS)).sum())
        for hyps in (greedy_search(model, src, lengths, 1.0, 1),
                     [h[0] for h in beam_search(model, src, lengths, 3, 0.0, 1.0, 1)]):  # fmt: skip
            for b, h in enumerate(hyps):
                assert PAD not in h.tokens and BOS not in h.tokens
                mine = {tuple(t): s for t, _, s in enumerate_outputs(model, src[b], 3, 4)}
                assert h.score == pytest.approx(mine[tuple(h.tokens)], abs=1e-5)
    assert seen > 0  # unmasked, the first step's argmax was <pad> or <s> somewhere


def test_greedy_keeps_attention_rows_as_it_writes_them_not_for_the_longest_output():
    """The attention buffer was (B, max length, S) from the first step: 56 GiB for a
    100,000-character line that a char model could write 150,000 tokens for."""
    from toy import word_bundle

    model = word_bundle().model
    with torch.no_grad():
        model.W_out.bias.zero_()
        model.W_out.bias[model.eos_id] = 100.0  # EOS first
    src = torch.full((1, 3000), 5, dtype=torch.long)
    (hyp,) = greedy_search(model, src, [3000], 1.0, 3)
    assert hyp.tokens == [] and hyp.attention is not None and hyp.attention.shape == (1, 3000)
    assert hyp.attention.untyped_storage().nbytes() <= 64 * 3000 * 4  # (was 3003 rows)
    with torch.no_grad():
        model.W_out.bias[model.eos_id] = -100.0  # never EOS: rows up to the limit, all kept
    src = torch.full((2, 100), 5, dtype=torch.long)
    hyps = greedy_search(model, src, [100, 40], 1.0, 3)
    assert [h.attention.shape for h in hyps] == [(103, 100), (43, 40)]
    assert all(bool(torch.allclose(h.attention.sum(1), torch.ones(len(h.attention)))) for h in hyps)
