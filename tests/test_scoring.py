"""Forced decoding (``rnnkit score``): the log-probability the model gives a translation,
checked against the teacher-forced forward pass and against beam search's own scores."""

from __future__ import annotations

import io
import math
import random
import sys

import pytest
import torch
from toy import WORDS, one_thread, save_bundle, word_bundle

from rnnkit.checkpoint import Bundle
from rnnkit.cli import main
from rnnkit.ensemble import Ensemble
from rnnkit.scoring import score_pairs, summary
from rnnkit.search import beam_search


@pytest.fixture(autouse=True)
def _one_thread():
    with one_thread():
        yield


def sentences(seed: int, n: int) -> list[str]:
    rng = random.Random(seed)
    return [" ".join(rng.choices(WORDS, k=rng.randint(1, 7))) for _ in range(n)]


@torch.no_grad()
def token_log_probs(b: Bundle, src: str, tgt: str) -> torch.Tensor:
    """log p(y_t | y_<t, x) of each target token, from one teacher-forced forward pass."""
    x = b.src_vocab.encode(src.split())
    y = b.tgt_vocab.encode(tgt.split())
    tgt_in = torch.tensor([[b.tgt_vocab.bos_id] + y[:-1]])
    logits, _ = b.model(torch.tensor([x]), torch.tensor([len(x)]), tgt_in)
    logp = torch.log_softmax(logits[0].double(), -1)
    return logp[torch.arange(len(y)), y]


def forward_log_prob(b: Bundle, src: str, tgt: str) -> float:
    return float(token_log_probs(b, src, tgt).sum())


def test_equals_the_teacher_forced_forward_pass_in_any_batching():
    b = word_bundle()
    src, tgt = sentences(1, 11), sentences(2, 11)
    one = score_pairs(b, src, tgt, batch_size=1)
    many = score_pairs(b, src, tgt, batch_size=5)  # sorted by length inside, order restored
    for s, t, x, y in zip(src, tgt, one, many):
        want = forward_log_prob(b, s, t)
        assert x.log_prob == pytest.approx(want, abs=1e-5)
        assert y.log_prob == pytest.approx(want, abs=1e-5)
        assert x.tokens == len(t.split()) + 1


def test_scores_what_beam_search_scored():
    """Beam search's hypotheses, with α = 0, score their summed log-probability: scoring
    their text gives that number back."""
    b = word_bundle(seed=9, cell="lstm")  # an untrained model that writes words, then EOS
    src = sentences(4, 6)
    ids = [b.src_vocab.encode(s.split()) for s in src]
    checked = 0
    for s, x in zip(src, ids):
        (h,) = beam_search(b.model, torch.tensor([x]), torch.tensor([len(x)]), 3, 0.0, 2.0, 20)[0]
        if len(h.tokens) == 2 * len(x) + 20:
            continue  # cut at the length limit: no EOS, not a complete translation
        text = " ".join(b.tgt_vocab.decode(h.tokens))
        (got,) = score_pairs(b, [s], [text])
        assert got.log_prob == pytest.approx(h.score, abs=1e-4)
        checked += bool(h.tokens)
    assert checked >= 3  # outputs with words, ended by EOS, not cut at the limit


def test_ensemble_scores_the_mean_distribution():
    a, c = word_bundle(0), word_bundle(5, "lstm")
    src, tgt = sentences(6, 5), sentences(7, 5)
    twice = score_pairs(a, src, tgt, model=Ensemble([a.model, a.model]))
    for x, y in zip(twice, score_pairs(a, src, tgt)):
        assert x.log_prob == pytest.approx(y.log_prob, abs=1e-5)
    both = score_pairs(a, src, tgt, model=Ensemble([a.model, c.model]))
    for s, t, x in zip(src, tgt, both):
        pa, pc = token_log_probs(a, s, t), token_log_probs(c, s, t)
        want = float(((pa.exp() + pc.exp()) / 2).log().sum())  # Σ_t log of the mean
        assert x.log_prob == pytest.approx(want, abs=1e-5)
        assert x.log_prob > float(pa.sum() + pc.sum()) / 2  # Jensen: above the mean of logs


def test_unknown_words_empty_lines_and_lowercasing():
    b = word_bundle()
    (unk,) = score_pairs(b, ["a b"], ["zzz c"])
    assert unk.tokens == 3 and b.tgt_vocab.encode(["zzz"]) == [
        b.tgt_vocab.unk_id,
        b.tgt_vocab.eos_id,
    ]
    assert unk.log_prob == pytest.approx(forward_log_prob(b, "a b", "zzz c"), abs=1e-5)
    (empty,) = score_pairs(b, ["a b"], [""])
    assert empty.tokens == 1 and empty.log_prob < 0  # EOS alone
    low = word_bundle(lowercase=True)
    assert score_pairs(low, ["A B"], ["C D"]) == score_pairs(low, ["a b"], ["c d"])
    with pytest.raises(ValueError, match="2 sources but 1 targets"):
        score_pairs(b, ["a", "b"], ["c"])
    tot = summary(score_pairs(b, ["a b", "c"], ["c d", "e"]))
    assert tot["pairs"] == 2 and tot["tokens"] == 5
    assert tot["perplexity"] == pytest.approx(math.exp(-tot["log_prob"] / 5), rel=1e-3)


def test_cli_writes_one_score_per_pair(tmp_path, capsys):
    b = word_bundle()
    ckpt = save_bundle(b, tmp_path / "m.pt")
    src, tgt = sentences(8, 5), sentences(9, 5)
    (tmp_path / "s.txt").write_text("\n".join(src) + "\n", encoding="utf-8")
    (tmp_path / "t.txt").write_text("\n".join(tgt) + "\n", encoding="utf-8")
    args = ["score", str(ckpt), "--src", str(tmp_path / "s.txt"), "--tgt", str(tmp_path / "t.txt")]
    assert main(args) == 0
    out, err = capsys.readouterr()
    got = [float(x) for x in out.splitlines()]
    want = score_pairs(b, src, tgt)
    assert got == pytest.approx([w.log_prob for w in want], abs=1e-4)
    assert "scored 5 pairs" in err and "perplexity" in err
    assert main(args + ["--normalize", "--output", str(tmp_path / "o.txt")]) == 0
    norm = [float(x) for x in (tmp_path / "o.txt").read_text().splitlines()]
    assert norm == pytest.approx([w.log_prob / w.tokens for w in want], abs=1e-4)
    (tmp_path / "t.txt").write_text("a\n", encoding="utf-8")
    capsys.readouterr()
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "s.txt has 5 lines but" in err[0] and "t.txt has 1" in err[0]


class _Stdin:
    def __init__(self, text: str) -> None:
        self.buffer = io.BytesIO(text.encode("utf-8"))

    def isatty(self) -> bool:
        return False


def test_cli_scores_a_corpus_chunk_by_chunk(tmp_path, capsys, monkeypatch):
    """A corpus to filter can be millions of pairs: it is read and scored a chunk at a
    time (here 3 pairs), each chunk's scores written to stdout as soon as they are done;
    the scores and totals are those of one call."""
    import rnnkit.translate

    monkeypatch.setattr(rnnkit.translate, "CHUNK", 3)
    b = word_bundle()
    ckpt = save_bundle(b, tmp_path / "m.pt")
    src, tgt = sentences(10, 8), sentences(11, 8)
    (tmp_path / "s.txt").write_text("\n".join(src) + "\n", encoding="utf-8")
    (tmp_path / "t.txt").write_text("\n".join(tgt) + "\n", encoding="utf-8")
    want = score_pairs(b, src, tgt)
    tot = summary(want)
    said = f"scored 8 pairs, {tot['tokens']} target tokens: log-probability {tot['log_prob']:.2f}"

    args = ["score", str(ckpt), "--src", str(tmp_path / "s.txt"), "--tgt"]
    assert main([*args, str(tmp_path / "t.txt")]) == 0
    out, err = capsys.readouterr()
    assert [float(x) for x in out.splitlines()] == pytest.approx(
        [w.log_prob for w in want], abs=1e-4
    )
    assert said in err

    monkeypatch.setattr(sys, "stdin", _Stdin("\n".join(tgt) + "\n"))  # the targets piped in
    assert main([*args, "-"]) == 0
    out, err = capsys.readouterr()
    assert [float(x) for x in out.splitlines()] == pytest.approx(
        [w.log_prob for w in want], abs=1e-4
    )
    assert said in err

    monkeypatch.setattr(sys, "stdin", _Stdin("\n".join(tgt[:7]) + "\n"))  # one line short
    assert main([*args, "-"]) == 2
    out, err = capsys.readouterr()
    assert len(out.splitlines()) == 6  # the two full chunks before it were written
    assert err.endswith(f"rnnkit: error: <stdin> has fewer lines than {tmp_path / 's.txt'}\n")

    assert main(["score", str(ckpt), "--src", "-", "--tgt", "-"]) == 2
    assert "--src and --tgt cannot both be stdin" in capsys.readouterr().err


def test_an_unk_in_a_translation_is_scored_as_the_unknown_token():
    """A word-level model writes <unk> for a word it lacks; rnnkit score split that text
    into '<', 'unk', '>' (n-best reranking scored other tokens than the search had)."""
    from rnnkit.data import CharTokenizer

    b = word_bundle()
    src, tgt = "a b c", f"{WORDS[0]} <unk> {WORDS[1]}"
    (got,) = score_pairs(b, [src], [tgt])
    assert got.tokens == 4  # three words and EOS
    assert got.log_prob == pytest.approx(forward_log_prob(b, src, tgt), abs=1e-5)
    assert CharTokenizer().encode("a<unk> b") == ["a", "<unk>", "▁", "b"]
