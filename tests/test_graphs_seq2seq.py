"""The encoder-decoder on static shapes (rnnkit.graphs.seq2seq): the padded, bucketed
teacher-forced loss and greedy decoding equal today's, and training with them takes the
same steps. On the CPU these run eagerly; the device script runs them on a GPU."""

from __future__ import annotations

import random

import pytest
import torch
from toy import one_thread, reverse_batch, train_reverse

from rnnkit import graphs
from rnnkit.config import config_from_dict
from rnnkit.graphs.seq2seq import loss_sum
from rnnkit.model import Seq2Seq, sequence_loss
from rnnkit.search import beam_search, greedy_search
from rnnkit.train import train

V = 12


@pytest.fixture(autouse=True)
def _one_thread():
    with one_thread():
        yield


MODELS = {
    "gru_bahdanau_explicit": dict(cell="gru", attention="bahdanau", engine="explicit"),
    "lstm_luong_auto": dict(cell="lstm", attention="luong", engine="auto", enc_layers=2),
    "layernorm_lstm": dict(cell="layernorm_lstm", attention="bahdanau", dec_layers=2),
    "gru_no_attention": dict(cell="gru", attention="none", engine="explicit"),
}


@pytest.mark.parametrize("name", list(MODELS))
def test_static_loss_equals_sequence_loss(name):
    """Padded to (8, 16, 16) from (5, ≤11, ≤12): the same summed loss and the same
    gradient for every parameter (float64; label smoothing on, so every logit counts)."""
    torch.manual_seed(0)
    model = Seq2Seq(V, V, 8, 16, dropout=0.0, emb_dropout=0.0, **MODELS[name]).double().eval()
    src, lengths, tgt = reverse_batch(random.Random(3), 5, 2, 10, V)
    params = list(model.parameters())
    results = []
    for mode in ("off", "on"):
        with graphs.mode(mode):
            if mode == "on":
                loss = loss_sum(model, src, lengths, tgt, 0.1)
            else:
                logits, _ = model(src, lengths, tgt[:, :-1])
                loss, _ = sequence_loss(logits, tgt[:, 1:], model.pad_id, 0.1)
            results.append((loss, torch.autograd.grad(loss, params)))
    (l1, g1), (l2, g2) = results
    torch.testing.assert_close(l2, l1, atol=1e-9, rtol=1e-12)
    for a, b in zip(g2, g1):
        torch.testing.assert_close(a, b, atol=1e-9, rtol=0)


@pytest.fixture(scope="module")
def trained() -> Seq2Seq:
    torch.manual_seed(0)
    model = Seq2Seq(V, V, 32, 64, cell="gru", dropout=0.0, emb_dropout=0.0, engine="explicit")
    with one_thread():
        return train_reverse(model, seed=0, steps=150, lo=3, hi=10)


def test_static_greedy_equals_greedy(trained):
    """Every sentence decoded to the bucket's length (finished ones writing EOS) gives the
    tokens, scores and attention of the greedy search that drops finished sentences; the
    length limits cut where they did (max_len_b small enough to bite)."""
    torch.manual_seed(1)
    untrained = Seq2Seq(V, V, 8, 16, cell="lstm", attention="luong", dropout=0.0).eval()
    src, lengths, _ = reverse_batch(random.Random(5), 11, 2, 9, V)
    for model, b in ((trained, 10), (trained, 3), (untrained, 10)):
        with graphs.mode("off"):
            want = greedy_search(model, src, lengths, max_len_a=0.5, max_len_b=b)
        with graphs.mode("on"):
            got = greedy_search(model, src, lengths, max_len_a=0.5, max_len_b=b)
        assert [h.tokens for h in got] == [h.tokens for h in want]
        assert any(len(h.tokens) >= 3 for h in want)
        for g, w in zip(got, want):
            assert g.score == pytest.approx(w.score, abs=1e-5)
            assert g.attention is not None and w.attention is not None
            torch.testing.assert_close(g.attention, w.attention, atol=1e-6, rtol=0)


BEAMS = [  # (K, n_best, exact, alpha, max_len_b): limits that bite, ties of α, n-best
    (5, 1, False, 1.0, 10),
    (4, 3, True, 1.0, 10),
    (3, 2, False, 0.0, 3),
    (1, 1, False, 1.0, 10),
    (6, 2, True, 0.6, 4),
]


@pytest.mark.parametrize("beam", BEAMS, ids=lambda b: "K{}n{}{}a{}b{}".format(*b))
def test_static_beam_search_equals_beam_search(trained, beam):
    """Every decision of the beam as a tensor operation (finished hypotheses in a
    tensor of the n best, sentences kept to the end of the bucket) finds what the
    host-side search finds: the same hypotheses in the same order, their scores and
    attention; for a trained, an untrained and an attention-less model."""
    K, n_best, exact, alpha, b = beam
    torch.manual_seed(1)
    untrained = Seq2Seq(V, V, 8, 16, cell="lstm", attention="luong", dropout=0.0).eval()
    plain = Seq2Seq(V, V, 8, 16, cell="gru", attention="none", dropout=0.0).eval()
    src, lengths, _ = reverse_batch(random.Random(5), 11, 2, 9, V)
    for model in (trained, untrained, plain):
        args = (model, src, lengths, K, alpha, 0.5, b, n_best, exact)
        with graphs.mode("off"):
            want = beam_search(*args)
        with graphs.mode("on"):
            got = beam_search(*args)
        for g, w in zip(got, want):
            assert [h.tokens for h in g] == [h.tokens for h in w]
            for x, y in zip(g, w):
                assert x.score == pytest.approx(y.score, rel=1e-6, abs=1e-6)
                if y.attention is None:
                    assert x.attention is None
                else:
                    torch.testing.assert_close(x.attention, y.attention, atol=1e-6, rtol=0)


def _dates(out, **train_cfg):
    d = {
        "data": {"task": "dates", "task_size": 120, "task_dev": 8, "task_test": 8},
        "model": {
            "emb_size": 16,
            "hidden_size": 24,
            "dropout": 0.0,
            "emb_dropout": 0.0,
            "engine": "explicit",
        },
        "train": {
            "batch_size": 16,
            "lr": 0.003,
            "scheduler": "none",
            "label_smoothing": 0.1,
            "max_steps": 12,
            "validate_every": 12,
            "checkpoint_every": 12,
            "patience": 0,
            "device": "cpu",
            **train_cfg,
        },
        "decode": {"beam_size": 1, "max_len_a": 0.0, "max_len_b": 12},
    }
    train(config_from_dict(d), out)
    return torch.load(out / "last.pt", weights_only=False)["model"]


def test_training_on_static_shapes_takes_the_same_steps(tmp_path):
    """12 Adam updates with the static loss (and static greedy validation) end where the
    ordinary ones do (float32, sums in another order: 1e-5)."""
    want = _dates(tmp_path / "off", graphs="off")
    got = _dates(tmp_path / "on", graphs="on")
    for k in want:
        torch.testing.assert_close(got[k], want[k], atol=1e-5, rtol=1e-4)


# ------------------------------------------------------------------------------ CUDA

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA (device script)")


@cuda
def test_cuda_graphs_equal_eager_for_the_encoder_decoder(monkeypatch):
    """On the GPU (float32, TF32 off): the graphed loss and its gradients, and graphed
    greedy and beam decoding, equal the same static code run eagerly; a second call replays, a
    new bucket recaptures; a replayed training step makes no host synchronisation."""
    from rnnkit.graphs import capture

    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    torch.manual_seed(0)
    model = Seq2Seq(V, V, 16, 32, cell="gru", engine="explicit", dropout=0.0, emb_dropout=0.0)
    model = model.cuda()
    params = list(model.parameters())
    real_call = capture.call
    for B, hi in ((5, 9), (5, 9), (11, 20)):
        src, lengths, tgt = reverse_batch(random.Random(B + hi), B, 2, hi, V)
        src, tgt = src.cuda(), tgt.cuda()
        got = []
        for graphed in (False, True):
            call = real_call if graphed else (lambda owner, key, fn, args: fn(*args))
            monkeypatch.setattr(capture, "call", call)
            with graphs.mode("on"):
                loss = loss_sum(model, src, lengths, tgt, 0.1)
                grads = torch.autograd.grad(loss, params)
                model.eval()
                hyps = greedy_search(model, src, lengths, max_len_a=1.0, max_len_b=3)
                beams = beam_search(model, src, lengths, 4, 1.0, 1.0, 3, 2, True)
                model.train()
            got.append(
                (loss, grads, [h.tokens for h in hyps], [h.tokens for b in beams for h in b])
            )
        (l1, g1, h1, b1), (l2, g2, h2, b2) = got
        assert b2 == b1
        torch.testing.assert_close(l2, l1, atol=1e-4, rtol=1e-5)
        for a, b in zip(g2, g1):
            torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)
        assert h2 == h1
    assert capture.captured(model) == 6  # two buckets × (loss, greedy, beam)
    monkeypatch.setattr(capture, "call", real_call)
    src, lengths, tgt = reverse_batch(random.Random(14), 5, 2, 9, V)
    src, tgt = src.cuda(), tgt.cuda()
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        with graphs.mode("on"):
            loss_sum(model, src, lengths, tgt, 0.1).backward()
    finally:
        torch.cuda.set_sync_debug_mode(0)


def test_training_through_the_graph_wrapper_with_accumulation(tmp_path, stand_in_for_cuda):
    """The trainer's step through the training graphs (CUDA stood in for on the CPU:
    tests/fake_graphs.py), two batches added up per update: the parameters of 12
    updates equal those of the plain loop."""
    from fake_graphs import REPLAYS

    want = _dates(tmp_path / "off", graphs="off", accumulate=2)
    REPLAYS.clear()
    got = _dates(tmp_path / "on", graphs="on", accumulate=2)
    assert len(REPLAYS) >= 24  # every batch's loss went through the wrapper
    for k in want:
        torch.testing.assert_close(got[k], want[k], atol=1e-5, rtol=1e-4)


def test_decoding_through_inference_graphs(trained, stand_in_for_cuda):
    """Greedy and beam search through the inference-graph wrapper (static inputs copied
    in, a replay, outputs copied out; CUDA stood in for): the same outputs as the plain
    searches, call after call on one captured graph per bucket and search."""
    from fake_graphs import REPLAYS

    from rnnkit.graphs import capture

    capture.clear(trained)
    REPLAYS.clear()
    for seed in (5, 6):  # two batches of one bucket: the second replays the graphs
        src, lengths, _ = reverse_batch(random.Random(seed), 11, 2, 9, V)
        with graphs.mode("off"):
            want = (greedy_search(trained, src, lengths), beam_search(trained, src, lengths, 3))
        with graphs.mode("on"):
            got = (greedy_search(trained, src, lengths), beam_search(trained, src, lengths, 3))
        assert [h.tokens for h in got[0]] == [h.tokens for h in want[0]]
        assert [[h.tokens for h in b] for b in got[1]] == [[h.tokens for h in b] for b in want[1]]
    assert capture.captured(trained) == 2  # greedy, beam
    assert len(REPLAYS) == 8  # 2 batches x 2 searches x (the explicit encoder, the decoder)


@cuda
def test_cuda_graphs_draw_the_decoder_regularisers_afresh_at_each_replay(monkeypatch):
    """Zoneout, recurrent dropout and weight drop on the decoder, inside the captured
    training loop: the capture succeeds, each replay draws new masks (the loss of the
    same batch changes) and stays finite; in evaluation the graph equals eager code."""
    from rnnkit.graphs import capture

    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    torch.manual_seed(0)
    reg = dict(zoneout=0.2, recurrent_dropout=0.3, weight_drop=0.3, regularise="decoder")
    model = Seq2Seq(V, V, 16, 32, cell="lstm", dropout=0.0, emb_dropout=0.0, **reg).cuda()
    src, lengths, tgt = reverse_batch(random.Random(7), 5, 2, 9, V)
    src, tgt = src.cuda(), tgt.cuda()
    losses = []
    with graphs.mode("on"):
        for _ in range(3):
            loss = loss_sum(model, src, lengths, tgt, 0.1)
            loss.backward()
            losses.append(loss.item())
    assert capture.captured(model) == 1
    assert all(torch.isfinite(torch.tensor(losses))) and len(set(losses)) > 1, losses
    model.eval()
    got, real_call = [], capture.call
    for graphed in (False, True):
        call = real_call if graphed else (lambda owner, key, fn, args: fn(*args))
        monkeypatch.setattr(capture, "call", call)
        with graphs.mode("on"), torch.no_grad():
            got.append(greedy_search(model, src, lengths, max_len_a=1.0, max_len_b=3))
    assert [h.tokens for h in got[0]] == [h.tokens for h in got[1]]
