"""Sampling (``rnnkit translate --sample``): draws follow the model's tempered and truncated
distribution, scores are the model's log-probabilities, a seed gives the same draws."""

from __future__ import annotations

import random

import pytest
import torch
from torch import Tensor
from toy import BOS, EOS, PAD, UNK, one_thread, reverse_batch, save_bundle, word_bundle

from rnnkit.cli import main
from rnnkit.model import Seq2Seq
from rnnkit.sampling import Sampling, sample_search
from rnnkit.search import greedy_search

V = 10


@pytest.fixture(autouse=True)
def _one_thread():
    with one_thread():
        yield


def model(seed: int = 0, scale: float = 1.0) -> Seq2Seq:
    torch.manual_seed(seed)
    m = Seq2Seq(V, V, 8, 16, cell="gru", dropout=0.0, emb_dropout=0.0).eval()
    with torch.no_grad():
        m.W_out.weight.mul_(scale)  # a flatter or sharper first-step distribution
    return m


def sources(B: int = 5, seed: int = 3) -> tuple[Tensor, Tensor]:
    src, lengths, _ = reverse_batch(random.Random(seed), B, 2, 6, V)
    return src, lengths


@torch.no_grad()
def first_step_logits(m: Seq2Seq, src: Tensor, lengths: Tensor) -> Tensor:
    enc = m.encode(src, lengths)
    y = torch.full((src.shape[0],), BOS)
    return m.decode_step(y, m.init_state(enc), enc).logits.float()


def reference(logits: Tensor, s: Sampling) -> Tensor:
    """The distribution to draw from, by the definitions: PAD and BOS out, softmax(logits
    / τ), then only the k most probable tokens, then only the fewest most probable whose
    mass reaches p (each time renormalised)."""
    logits = logits.double().index_fill(0, torch.tensor([PAD, BOS]), float("-inf"))
    p = torch.softmax(logits / s.temperature, -1)  # padding and BOS are never drawn
    order = p.argsort(descending=True).tolist()
    keep = order[: s.top_k] if s.top_k else order
    q = torch.zeros_like(p)
    q[keep] = p[keep] / p[keep].sum()
    mass, nucleus = 0.0, []
    for i in keep:
        nucleus.append(i)
        mass += float(q[i])
        if mass >= s.top_p:
            break
    out = torch.zeros_like(p)
    out[nucleus] = q[nucleus] / q[nucleus].sum()
    return out


def test_top_k_of_one_is_greedy():
    m = model()
    src, lengths = sources()
    greedy = greedy_search(m, src, lengths, 1.0, 3)
    for t in (0.5, 1.0, 3.0):
        out = sample_search(m, src, lengths, 2, Sampling(temperature=t, top_k=1), 1.0, 3)
        for g, samples in zip(greedy, out):
            for h in samples:
                assert h.tokens == g.tokens and h.score == pytest.approx(g.score, abs=1e-5)
    tiny_p = sample_search(m, src, lengths, 1, Sampling(top_p=1e-6), 1.0, 3)
    assert [s[0].tokens for s in tiny_p] == [g.tokens for g in greedy]
    # a temperature near 0 is greedy too (logits / 1e-40 overflowed: softmax gave nan)
    cold = sample_search(m, src, lengths, 1, Sampling(temperature=1e-40), 1.0, 3)
    assert [s[0].tokens for s in cold] == [g.tokens for g in greedy]


@pytest.mark.parametrize(
    "sampling",
    [Sampling(), Sampling(temperature=2.0), Sampling(top_k=3), Sampling(top_p=0.6, seed=4)],
    ids=["plain", "tau2", "top3", "nucleus"],
)
def test_first_tokens_follow_the_filtered_distribution(sampling: Sampling):
    """6,000 draws of the first token against softmax(logits / τ) cut to top-k / the
    nucleus and renormalised: every frequency within 4 standard errors (or ~0 outside
    the kept set)."""
    m = model(seed=1, scale=4.0)
    src, lengths = sources(B=1)
    n = 6000
    (samples,) = sample_search(m, src, lengths, n, sampling, max_len_a=0.0, max_len_b=1)
    first = torch.tensor([(h.tokens or [EOS])[0] for h in samples])
    freq = torch.bincount(first, minlength=V).double() / n
    p = reference(first_step_logits(m, src, lengths)[0], sampling)
    se = (p * (1 - p) / n).sqrt()
    assert torch.all((freq - p).abs() <= 4 * se + 1e-9), (freq, p)
    if sampling.top_k:
        assert int((p > 0).sum()) == sampling.top_k and int((freq > 0).sum()) <= sampling.top_k
    if sampling.top_p < 1:
        kept = p > 0
        full = torch.softmax(first_step_logits(m, src, lengths)[0].double(), -1)
        # the nucleus: the fewest most probable tokens whose mass reaches top_p
        assert full[kept].sum() >= sampling.top_p
        assert full[kept].sum() - full[kept].min() < sampling.top_p


@torch.no_grad()
def test_scores_are_the_models_log_probability_best_first():
    m = model(seed=2)
    src, lengths = sources(B=4)
    out = sample_search(m, src, lengths, 5, Sampling(temperature=1.5), 1.0, 3)
    for b, samples in enumerate(out):
        assert len(samples) == 5
        assert [h.score for h in samples] == sorted((h.score for h in samples), reverse=True)
        n = int(lengths[b])
        for h in samples:
            ys = h.tokens + ([] if len(h.tokens) == n + 3 else [EOS])
            logits, _ = m(src[b : b + 1, :n], lengths[b : b + 1], torch.tensor([[BOS] + ys[:-1]]))
            logp = torch.log_softmax(logits[0].double(), -1)
            assert h.score == pytest.approx(float(logp[torch.arange(len(ys)), ys].sum()), abs=1e-4)


def test_a_seed_gives_the_same_draws():
    m = model(seed=3, scale=0.5)  # flat: samples vary
    src, lengths = sources(B=6)

    def draw(seed: int) -> list[list[list[int]]]:
        out = sample_search(m, src, lengths, 3, Sampling(seed=seed), 1.0, 3)
        return [[h.tokens for h in s] for s in out]

    assert draw(7) == draw(7)
    assert draw(7) != draw(8)


def test_bad_settings_are_refused():
    for kwargs, msg in (
        ({"temperature": 0.0}, "temperature must be > 0"),
        ({"top_k": -1}, "top_k must be ≥ 0"),
        ({"top_p": 0.0}, r"top_p must lie in \(0, 1\]"),
    ):
        with pytest.raises(ValueError, match=msg):
            Sampling(**kwargs)
    src, lengths = sources(B=1)
    with pytest.raises(ValueError, match="n must be ≥ 1"):
        sample_search(model(), src, lengths, 0)


def test_cli_samples_n_per_line_reproducibly(tmp_path, capsys):
    ckpt = save_bundle(word_bundle(seed=4), tmp_path / "m.pt")
    src = tmp_path / "s.txt"
    src.write_text("a b c\nd e\n\nf g h a\n", encoding="utf-8")
    args = ["translate", str(ckpt), "--input", str(src), "--sample", "--n-best", "4"]
    assert main(args + ["--temperature", "1.5", "--top-k", "5"]) == 0
    first = capsys.readouterr().out.splitlines()
    assert [line.split(" ||| ")[0] for line in first] == [str(i) for i in (0,) * 4 + (1,) * 4] + [
        "2"
    ] + ["3"] * 4  # an empty line gives one empty output
    assert main(args + ["--temperature", "1.5", "--top-k", "5"]) == 0
    assert capsys.readouterr().out.splitlines() == first  # the same seed, the same draws
    for bad, msg in (
        (["--top-p", "0.9"], "--top-p needs --sample"),
        (["--seed", "1"], "--seed needs --sample"),  # given at its default: still refused
        (["--temperature", "1.0"], "--temperature needs --sample"),
        (["--sample", "--beam", "3"], "leave out --beam"),
        (["--sample", "--temperature", "-1"], "--temperature must be > 0"),
    ):
        assert main(["translate", str(ckpt), "--input", str(src), *bad]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and msg in err[0]


def test_padding_and_bos_are_never_drawn():
    """Even from a near-uniform distribution (τ = 100) no PAD or BOS is drawn; UNK may be."""
    m = model(seed=5)
    src, lengths = sources(B=4)
    out = sample_search(m, src, lengths, 50, Sampling(temperature=100.0), 1.0, 3)
    drawn = {t for samples in out for h in samples for t in h.tokens}
    assert PAD not in drawn and BOS not in drawn and UNK in drawn
