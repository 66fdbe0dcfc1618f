"""Regularisers on the decoder (``Seq2Seq(regularise="decoder" | "both")``, config
``model.regularise``): the decoder's stack of cells applies zoneout, recurrent dropout and
weight drop one step at a time, with the layers' semantics (docs/cells.md) — checked here
against the plain step computed by hand, on torch's fused cell kernels and on our cells."""

from __future__ import annotations

import copy

import pytest
import torch
from toy import one_thread

from rnnkit.cells import StackedCell
from rnnkit.cells.regularisers import Regularisers
from rnnkit.config import ConfigError, load_config
from rnnkit.model import Seq2Seq


@pytest.fixture(autouse=True)
def _one_thread():
    with one_thread():
        yield


I, H, L = 6, 9, 2


def stacks(kind: str, **reg: float) -> tuple[StackedCell, StackedCell]:
    """A regularised stack and a plain one holding the same parameters (float64)."""
    torch.manual_seed(0)
    plain = StackedCell(kind, I, H, L).double()
    regd = StackedCell(kind, I, H, L, regularisers=Regularisers.make(**reg)).double()
    regd.load_state_dict(plain.state_dict())
    return regd, plain


def start(kind: str, B: int = 4) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    g = torch.Generator().manual_seed(1)
    x = torch.randn(B, I, generator=g, dtype=torch.float64)
    h = torch.randn(B, L, H, generator=g, dtype=torch.float64)
    c = torch.randn(B, L, H, generator=g, dtype=torch.float64) if kind == "LSTM" else None
    return x, h, c


def layer_by_layer(plain: StackedCell, x, h, c, mix):
    """The plain stack stepped one layer at a time, ``mix(k, new, old)`` after each layer
    (what the regularised stack must compute, its masks given)."""
    hs, cs = [], []
    for k in range(L):
        hk = h[:, k : k + 1]
        ck = None if c is None else c[:, k : k + 1]
        one = StackedCell(plain.kind, x.shape[1], H, 1).double()
        one.cells[0].load_state_dict(plain.cells[k].state_dict())
        _, nh, nc, _ = one.step(x, hk, ck, fused=False)
        new = (nh[:, 0],) if nc is None else (nh[:, 0], nc[:, 0])
        old = (h[:, k],) if c is None else (h[:, k], c[:, k])
        new = mix(k, new, old)
        hs.append(new[0])
        if c is not None:
            cs.append(new[1])
        x = new[0]
    return torch.stack(hs, 1), (torch.stack(cs, 1) if cs else None)


@pytest.mark.parametrize("kind", ["LSTM", "GRU", "RNN"])
@pytest.mark.parametrize("fused", [True, False])
def test_zoneout_in_evaluation_is_the_expectation(kind, fused):
    """s = z s_prev + (1 - z) s̃ for every state, layer by layer; recorded gates hold the
    mixed states."""
    z = 0.3
    regd, plain = stacks(kind, zoneout=z)
    regd.eval(), plain.eval()
    x, h, c = start(kind)
    _, got_h, got_c, gates = regd.step(x, h, c, fused=fused, record=not fused)
    want_h, want_c = layer_by_layer(
        plain, x, h, c, lambda k, new, old: tuple(z * o + (1 - z) * s for s, o in zip(new, old))
    )
    torch.testing.assert_close(got_h, want_h, atol=1e-12, rtol=0)
    if c is not None:
        torch.testing.assert_close(got_c, want_c, atol=1e-12, rtol=0)
    if not fused:
        for k, g in enumerate(gates):
            torch.testing.assert_close(g.hidden, got_h[:, k], atol=0, rtol=0)


@pytest.mark.parametrize("kind", ["LSTM", "GRU"])
def test_zoneout_in_training_keeps_or_updates_each_unit(kind):
    """Each unit is either its previous value or the plain step's (layer 0, where the
    input is the same); about a fraction z keep theirs, drawn afresh at each step."""
    z = 0.4
    regd, plain = stacks(kind, zoneout=z)
    regd.train(), plain.eval()
    x, h, c = start(kind, B=400)
    _, want_h, _, _ = plain.step(x, h, c)
    kept = []
    for _ in range(2):
        _, got_h, _, _ = regd.step(x, h, c)
        old, new = h[:, 0], want_h[:, 0]
        keep = got_h[:, 0] == old
        assert torch.equal(got_h[:, 0][~keep], new[~keep])
        kept.append(keep)
    frac = torch.stack(kept).double().mean().item()
    assert abs(frac - z) < 0.03, frac  # 7,200 draws: sd 0.006
    assert not torch.equal(kept[0], kept[1])  # a fresh mask per step


@pytest.mark.parametrize("kind", ["LSTM", "GRU", "RNN"])
def test_recurrent_dropout_masks_the_h_entering_w_hh(kind):
    """With the mask m of a sequence: the step equals the plain cell given h ⊙ m in its
    recurrent product only (the GRU's interpolation keeps the unmasked h), fused or not."""
    p = 0.4
    regd, plain = stacks(kind, recurrent_dropout=p)
    regd.train(), plain.eval()
    x, h, c = start(kind)
    torch.manual_seed(2)
    mask = regd.draw(h)
    assert mask is not None and mask.shape == h.shape
    assert set(mask.unique().tolist()) == {0.0, 1 / (1 - p)}

    def by_hand(k, new, old):
        cell = plain.cells[k]
        xk = x if k == 0 else by_hand.prev
        hm = old[0] * mask[:, k]
        gh = torch.nn.functional.linear(hm, cell.weight_hh, cell.bias_hh)
        gi = cell.project(xk)
        if kind == "LSTM":
            i, f, g, o = (gi + gh).chunk(4, 1)
            cn = torch.sigmoid(f) * old[1] + torch.sigmoid(i) * torch.tanh(g)
            out = (torch.sigmoid(o) * torch.tanh(cn), cn)
        elif kind == "GRU":
            (ir, iz, in_), (hr, hz, hn) = gi.chunk(3, 1), gh.chunk(3, 1)
            r, u = torch.sigmoid(ir + hr), torch.sigmoid(iz + hz)
            out = ((1 - u) * torch.tanh(in_ + r * hn) + u * old[0],)
        else:
            out = (torch.tanh(gi + gh),)
        by_hand.prev = out[0]
        return out

    want_h, want_c = layer_by_layer(plain, x, h, c, by_hand)
    for fused in (True, False):
        _, got_h, got_c, _ = regd.step(x, h, c, fused=fused, mask=mask)
        torch.testing.assert_close(got_h, want_h, atol=1e-12, rtol=0)
        if c is not None:
            torch.testing.assert_close(got_c, want_c, atol=1e-12, rtol=0)
    regd.eval()  # no dropout in evaluation, whatever mask is passed
    torch.testing.assert_close(regd.step(x, h, c, mask=mask)[1], plain.step(x, h, c)[1])


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_recurrent_dropout_mask_travels_with_the_decoder_state(cell):
    """One mask per sequence: drawn by init_state in training, the same tensor at every
    step; none in evaluation."""
    model = Seq2Seq(10, 11, 6, 8, cell=cell, recurrent_dropout=0.5, regularise="decoder")
    src, lengths = torch.randint(4, 10, (3, 5)), torch.tensor([5, 4, 2])
    enc = model.encode(src, lengths)
    state = model.init_state(enc)
    mask = state["drop"]
    assert mask.shape == (3, 1, 8)
    y = torch.full((3,), model.bos_id)
    for _ in range(3):
        state = model.decode_step(y, state, enc).state
        assert state["drop"] is mask
    model.eval()
    assert "drop" not in model.init_state(model.encode(src, lengths))


@pytest.mark.parametrize("cell", ["lstm", "gru", "layernorm_lstm"])
def test_weight_drop_one_copy_per_sequence_batch(cell):
    """init_state draws one DropConnect copy of each W_hh that every step of the batch
    reads; the parameter is untouched and its gradient exactly zero where dropped; the
    next batch draws anew; evaluation reads the parameter."""
    torch.manual_seed(0)
    model = Seq2Seq(10, 11, 6, 8, cell=cell, weight_drop=0.5, regularise="both", dec_layers=2)
    model.train()
    rnn = model.decoder.rnn
    before = [cl.weight_hh.detach().clone() for cl in rnn.cells]
    src, lengths = torch.randint(4, 10, (3, 5)), torch.tensor([5, 4, 2])
    tgt = torch.randint(4, 11, (3, 6))
    logits, _ = model(src, lengths, tgt)
    first = list(rnn._dropped)
    logits.sum().backward()
    for k, (cl, w0, d) in enumerate(zip(rnn.cells, before, first)):
        assert torch.equal(cl.weight_hh, w0)
        dropped = d == 0
        assert 0.3 < dropped.double().mean() < 0.7, k
        assert torch.all(cl.weight_hh.grad[dropped] == 0)
        assert cl.weight_hh.grad[~dropped].abs().sum() > 0
    twin = copy.deepcopy(model)  # the batch's copies stay behind (non-leaf tensors)
    assert twin.decoder.rnn._dropped is None and rnn._dropped is not None
    model(src, lengths, tgt)
    assert not torch.equal(rnn._dropped[0] == 0, first[0] == 0)  # a new draw
    model.eval()
    model.init_state(model.encode(src, lengths))
    assert rnn._dropped is None


def test_no_rates_or_encoder_only_leave_the_decoder_as_it_was():
    """regularise="both" with every rate 0, and the default (encoder) with rates set, give
    the decoder of a plain model: the same logits in training, draw for draw."""
    src, lengths = torch.randint(4, 10, (3, 5)), torch.tensor([5, 4, 2])
    tgt = torch.randint(4, 11, (3, 6))
    out, first = [], None
    for kw in (dict(), dict(regularise="both"), dict(zoneout=0.3, weight_drop=0.2)):
        model = Seq2Seq(10, 11, 6, 8, cell="lstm", engine="explicit", dropout=0.0, **kw)
        assert model.decoder.rnn.reg == Regularisers()
        if first is None:
            first, enc = model, model.encode(src, lengths)  # one encoding for all three
        model.load_state_dict(first.state_dict())
        torch.manual_seed(1)
        out.append(model.teacher_forced(enc, tgt)[0])
    assert torch.equal(out[0], out[1])
    assert torch.equal(out[0], out[2])


def test_config_key_and_errors():
    cfg = load_config(None, ["model.regularise=both", "model.zoneout=0.1"])
    assert cfg.model.regularise == "both"
    with pytest.raises(ConfigError, match="model.regularise"):
        load_config(None, ["model.regularise=decoders"])
    with pytest.raises(ValueError, match="regularise must be one of"):
        Seq2Seq(10, 10, regularise="all")


def test_static_shapes_path_with_decoder_regularisers():
    """The bucketed teacher-forced loss (rnnkit.graphs) with all three on the decoder: in
    evaluation it equals the plain loss (zoneout's expectation on both paths); in training
    it runs the random draws and gives finite gradients to every decoder parameter."""
    import random

    from toy import reverse_batch

    from rnnkit import graphs
    from rnnkit.graphs.seq2seq import loss_sum
    from rnnkit.model import sequence_loss

    torch.manual_seed(0)
    reg = dict(zoneout=0.2, recurrent_dropout=0.3, weight_drop=0.3, regularise="decoder")
    model = Seq2Seq(12, 12, 8, 16, cell="lstm", dec_layers=2, **reg).double().eval()
    src, lengths, tgt = reverse_batch(random.Random(3), 5, 2, 10, 12)
    with graphs.mode("on"):
        static = loss_sum(model, src, lengths, tgt, 0.1)
    logits, _ = model(src, lengths, tgt[:, :-1])
    plain, _ = sequence_loss(logits, tgt[:, 1:], model.pad_id, 0.1)
    torch.testing.assert_close(static, plain, atol=1e-9, rtol=1e-12)
    model.train()
    with graphs.mode("on"):
        loss = loss_sum(model, src, lengths, tgt, 0.1)
    loss.backward()
    assert torch.isfinite(loss)
    for name, p in model.decoder.rnn.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, name


@pytest.mark.parametrize("graphed", [False, True])
def test_training_run_saves_and_reloads_the_decoder_regularisers(graphed, tmp_path, request):
    """``model.regularise: both`` through the trainer — also through the training-graph
    wrapper (CUDA stood in for on the CPU), where the masks are drawn inside the graphed
    decoder loop: the checkpoint rebuilds a model whose decoder carries the rates, and
    translation (evaluation: the expectation) is deterministic."""
    if graphed:
        from fake_graphs import REPLAYS

        request.getfixturevalue("stand_in_for_cuda")
        REPLAYS.clear()
    from rnnkit.checkpoint import load_bundle
    from rnnkit.config import config_from_dict
    from rnnkit.train import train
    from rnnkit.translate import translate_lines

    d = {
        "data": {"task": "dates", "task_size": 120, "task_dev": 8, "task_test": 8},
        "model": {"cell": "lstm", "emb_size": 16, "hidden_size": 24, "regularise": "both"},
        "train": {"batch_size": 16, "max_steps": 6, "validate_every": 6, "patience": 0},
        "decode": {"beam_size": 2, "max_len_b": 12},
    }
    d["model"].update(zoneout=0.1, recurrent_dropout=0.2, weight_drop=0.2)
    d["train"].update(checkpoint_every=6, device="cpu", graphs="on" if graphed else "off")
    train(config_from_dict(d), tmp_path)
    if graphed:
        assert len(REPLAYS) >= 6  # every batch's loss went through the wrapper
    bundle = load_bundle(tmp_path / "last.pt")
    reg = bundle.model.decoder.rnn.reg
    assert (reg.zoneout_h, reg.recurrent_dropout, reg.weight_drop) == (0.1, 0.2, 0.2)
    assert bundle.model.encoder.rnn.regularisers == reg
    lines = ["9 may 2018", "monday 1 jan 2001"]
    first = [(t[0].text, t[0].score) for t in translate_lines(bundle, lines)]
    assert first == [(t[0].text, t[0].score) for t in translate_lines(bundle, lines)]


@pytest.mark.parametrize("reg", [{"weight_drop": 0.5}, {"recurrent_dropout": 0.5}])
def test_a_state_made_by_hand_starts_a_new_sequence(reg):
    """decode_step from a state built by hand (no init_state) draws new masks and a new
    weight-drop copy of W_hh for that sequence: it reused the previous batch's copy, whose
    graph a backward had freed ("backward through the graph a second time")."""
    model = Seq2Seq(10, 11, 6, 8, cell="lstm", regularise="decoder", **reg).train()
    src, lengths = torch.randint(4, 10, (3, 5)), torch.tensor([5, 4, 2])
    seen = []
    for _ in range(2):
        enc = model.encode(src, lengths)
        h = torch.zeros(3, 1, 8)
        state = {"h": h, "c": h}
        step = model.decode_step(torch.full((3,), 2), state, enc)
        step = model.decode_step(torch.full((3,), 5), step.state, enc)  # the same sequence
        step.logits.sum().backward()  # the first batch's graph is freed here
        seen.append(step.state["drop"] if "drop" in step.state else model.decoder.rnn._dropped)
    assert not torch.equal(torch.stack(list(seen[0])), torch.stack(list(seen[1])))
