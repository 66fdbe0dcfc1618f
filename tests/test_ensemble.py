"""Ensembles: the mean of the members' distributions at every step, through greedy and beam
search, in batches, from checkpoints and on the command line."""

from __future__ import annotations

import copy
import json
import random
from pathlib import Path

import pytest
import torch
from torch import Tensor
from toy import BOS, EOS, WORDS, one_thread, reverse_batch, save_bundle, train_reverse, word_bundle

from rnnkit.checkpoint import CheckpointError
from rnnkit.cli import main
from rnnkit.ensemble import Ensemble, load_ensemble
from rnnkit.model import Seq2Seq
from rnnkit.search import beam_search, greedy_search, length_penalty

V = 12


@pytest.fixture(autouse=True)
def _one_thread():
    with one_thread():
        yield


@pytest.fixture(scope="module")
def members() -> list[Seq2Seq]:
    """Two half-trained reversers of other cells and attention, and an untrained LSTM
    without attention: members that disagree."""
    with one_thread():
        torch.manual_seed(0)
        gru = Seq2Seq(V, V, 16, 32, cell="gru", dropout=0.0, emb_dropout=0.0)
        gru = train_reverse(gru, seed=0, steps=40, lo=3, hi=8)
        torch.manual_seed(1)
        lstm = Seq2Seq(V, V, 16, 24, cell="lstm", attention="luong", dropout=0.0)
        lstm = train_reverse(lstm, seed=1, steps=40, lo=3, hi=8)
        torch.manual_seed(2)
        bare = Seq2Seq(V, V, 8, 16, cell="lstm", attention="none", dropout=0.0)
    return [gru.eval(), lstm.eval(), bare.eval()]


def sources(seed: int = 5, B: int = 7) -> tuple[Tensor, Tensor]:
    src, lengths, _ = reverse_batch(random.Random(seed), B, 2, 8, V)
    return src, lengths


def ensemble_logp(models: list[Seq2Seq], src: Tensor, n: int, ys: list[int]) -> Tensor:
    """log of the members' mean probability of every token at every position of ``ys``
    (teacher-forced on ys), ``(len(ys), V)``, computed by hand in float64."""
    tgt_in = torch.tensor([[BOS] + ys[:-1]])
    probs = [
        torch.softmax(m(src[None, :n], torch.tensor([n]), tgt_in)[0][0].double(), -1)
        for m in models
    ]
    return torch.stack(probs).mean(0).log()


def full(tokens: list[int], limit: int) -> list[int]:
    return tokens + ([] if len(tokens) == limit else [EOS])


@torch.no_grad()
def test_greedy_takes_the_argmax_of_the_mean_distribution(members):
    src, lengths = sources()
    ens = Ensemble(members)
    for b, h in enumerate(greedy_search(ens, src, lengths, max_len_a=1.0, max_len_b=2)):
        n = int(lengths[b])
        ys = full(h.tokens, n + 2)
        logp = ensemble_logp(members, src[b], n, ys)
        assert logp.argmax(-1).tolist() == ys  # the mean's argmax at every step
        assert h.score == pytest.approx(float(logp[torch.arange(len(ys)), ys].sum()), abs=1e-4)


@torch.no_grad()
def test_beam_scores_are_the_ensembles_log_probability(members):
    """Every hypothesis beam search returns is scored by the ensemble's distribution:
    Σ_t log(1/M Σ_m p_m(y_t | y_<t, x)) over the length penalty."""
    src, lengths = sources(B=6)
    alpha = 0.8
    for models in (members, members[:2]):
        ens = Ensemble(models)
        out = beam_search(ens, src, lengths, 4, alpha, 1.0, 3, n_best=3)
        for b, nbest in enumerate(out):
            n = int(lengths[b])
            assert len(nbest) == 3
            for h in nbest:
                ys = full(h.tokens, n + 3)
                logp = ensemble_logp(models, src[b], n, ys)
                want = float(logp[torch.arange(len(ys)), ys].sum()) / length_penalty(len(ys), alpha)
                assert h.score == pytest.approx(want, abs=1e-4)


@torch.no_grad()
def test_one_member_or_the_same_member_twice_is_that_model(members):
    src, lengths = sources(B=9)
    model = members[0]
    for ens in (Ensemble([model]), Ensemble([model, model])):
        for a, b in zip(
            greedy_search(ens, src, lengths, 1.0, 2), greedy_search(model, src, lengths, 1.0, 2)
        ):
            assert a.tokens == b.tokens and a.score == pytest.approx(b.score, abs=1e-5)
            torch.testing.assert_close(a.attention, b.attention)
        for (a,), (b,) in zip(
            beam_search(ens, src, lengths, 3, 1.0, 1.0, 2),
            beam_search(model, src, lengths, 3, 1.0, 1.0, 2),
        ):
            assert a.tokens == b.tokens and a.score == pytest.approx(b.score, abs=1e-5)


@torch.no_grad()
def test_batched_equals_one_sentence_at_a_time(members):
    """Sentences leave the batch at other steps: every member's state and encoding is
    reordered and cut along."""
    src, lengths = sources(seed=11, B=8)
    ens = Ensemble(members)
    batched = beam_search(ens, src, lengths, 3, 1.0, 1.0, 3, n_best=2)
    for b in range(src.shape[0]):
        n = int(lengths[b])
        alone = beam_search(ens, src[b : b + 1, :n], lengths[b : b + 1], 3, 1.0, 1.0, 3, 2)[0]
        assert [h.tokens for h in alone] == [h.tokens for h in batched[b]]
        for x, y in zip(alone, batched[b]):
            assert x.score == pytest.approx(y.score, abs=1e-5)


@torch.no_grad()
def test_attention_is_the_mean_of_the_members_that_attend(members):
    src, lengths = sources(B=3)
    ens = Ensemble(members)
    enc = ens.encode(src, lengths)
    y = torch.full((3,), BOS)
    step = ens.decode_step(y, ens.init_state(enc), enc)
    atts = []
    for m in members[:2]:  # the third has no attention
        e = m.encode(src, lengths)
        atts.append(m.decode_step(y, m.init_state(e), e).attention)
    torch.testing.assert_close(step.attention, (atts[0] + atts[1]) / 2)
    assert torch.allclose(step.logits.exp().sum(-1), torch.ones(3, dtype=torch.float32))
    bare = Ensemble(members[2:])
    enc = bare.encode(src, lengths)
    assert bare.decode_step(y, bare.init_state(enc), enc).attention is None


def test_members_must_share_the_target_vocabulary(members):
    other = Seq2Seq(V, V + 1, 8, 16, dropout=0.0)
    with pytest.raises(ValueError, match="model 1: 13 target tokens, model 0 has 12"):
        Ensemble([members[0], other])
    with pytest.raises(ValueError, match="at least one"):
        Ensemble([])


# ------------------------------------------------------------------ checkpoints, CLI


def checkpoint(path: Path, seed: int, cell: str, words: list[str] = WORDS) -> Path:
    return save_bundle(word_bundle(seed, cell, words), path)


def test_load_ensemble_checks_vocabularies(tmp_path):
    a = checkpoint(tmp_path / "a.pt", 0, "gru")
    b = checkpoint(tmp_path / "b.pt", 1, "lstm")
    bundle, ens = load_ensemble([a, b])
    assert len(ens.members) == 2 and not ens.training
    assert bundle.tgt_vocab.to_state()["tokens"][-len(WORDS) :] == WORDS
    c = checkpoint(tmp_path / "c.pt", 2, "gru", WORDS[:-1] + ["x"])
    with pytest.raises(CheckpointError, match=r"c\.pt: its source vocabulary differs from"):
        load_ensemble([a, c])
    with pytest.raises(CheckpointError, match="no checkpoints"):
        load_ensemble([])


def test_cli_translate_and_evaluate_with_an_ensemble(tmp_path, capsys):
    a = checkpoint(tmp_path / "a.pt", 0, "gru")
    b = checkpoint(tmp_path / "b.pt", 1, "lstm")
    src = tmp_path / "src.txt"
    src.write_text("a b c\n\nd e\nf\n", encoding="utf-8")
    out = tmp_path / "out.txt"
    assert main(["translate", str(a), str(b), "--input", str(src), "--output", str(out)]) == 0
    lines = out.read_text(encoding="utf-8").splitlines()
    assert len(lines) == 4 and lines[1] == ""
    # what the CLI wrote is what the ensemble of the two decodes
    bundle, ens = load_ensemble([a, b])
    from rnnkit.translate import translate_lines

    want = [r[0].text for r in translate_lines(bundle, ["a b c", "", "d e", "f"], model=ens)]
    assert lines == want
    capsys.readouterr()
    hyp = tmp_path / "hyp.txt"
    args = ["evaluate", str(a), str(b), "--src", str(src), "--ref", str(out), "--output", str(hyp)]
    assert main(args) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["models"] == 2 and result["n"] == 4
    assert hyp.read_text(encoding="utf-8").splitlines() == want
    c = checkpoint(tmp_path / "c.pt", 2, "gru", WORDS[:-1] + ["x"])
    assert main(["translate", str(a), str(c), "--input", str(src)]) != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "c.pt: its source vocabulary differs" in err[0]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA (device script)")
@torch.no_grad()
def test_cuda_decoding_equals_the_cpu(members, monkeypatch):
    """On the GPU (float32, TF32 off), the eager paths that CUDA graphs do not cover: an
    ensemble's greedy and beam search (with a coverage penalty) give the CPU's outputs;
    sampling draws from a CUDA generator, reproducibly, and scores what it drew as the CPU
    scores it."""
    from rnnkit.sampling import Sampling, sample_search

    monkeypatch.setattr(torch.backends.cuda.matmul, "allow_tf32", False)
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)
    src, lengths = sources(B=6)
    cpu = Ensemble(members)
    gpu = Ensemble([copy.deepcopy(m).cuda() for m in members]).eval()
    for a, b in zip(
        greedy_search(cpu, src, lengths, 1.0, 2), greedy_search(gpu, src.cuda(), lengths, 1.0, 2)
    ):
        assert a.tokens == b.tokens and a.score == pytest.approx(b.score, abs=1e-4)
    for x, y in zip(
        beam_search(cpu, src, lengths, 3, 1.0, 1.0, 2, 2, coverage=0.2),
        beam_search(gpu, src.cuda(), lengths, 3, 1.0, 1.0, 2, 2, coverage=0.2),
    ):
        assert [h.tokens for h in x] == [h.tokens for h in y]
        assert [h.score for h in x] == pytest.approx([h.score for h in y], abs=1e-4)
    s = Sampling(temperature=1.3, top_k=5, seed=3)
    one = sample_search(gpu, src.cuda(), lengths, 2, s, 1.0, 2)
    assert [[h.tokens for h in r] for r in one] == [
        [h.tokens for h in r] for r in sample_search(gpu, src.cuda(), lengths, 2, s, 1.0, 2)
    ]
    for b, samples in enumerate(one):
        n = int(lengths[b])
        for h in samples:
            ys = full(h.tokens, n + 2)
            want = float(ensemble_logp(members, src[b], n, ys)[torch.arange(len(ys)), ys].sum())
            assert h.score == pytest.approx(want, abs=1e-4)
