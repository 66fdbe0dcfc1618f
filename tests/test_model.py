"""The encoder-decoder: each decoder style follows its equations, forward() is the same
computation as decode_step() by hand, engines agree, padding and batch neighbours change
nothing, the loss is the cross-entropy recomputed by hand, and a toy task is learnt
(with attention; without it, long sequences are not)."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import Tensor, nn
from toy import BOS, PAD, exact_match, one_thread, train_reverse

from rnnkit.model import Seq2Seq, sequence_loss

V, E, H = 11, 5, 6
LENGTHS = [4, 7, 1, 5]  # unsorted, one full-length source and one of length 1
T_IN = 6  # decoder inputs BOS y_1 .. y_5
CELLS = ["rnn", "lstm", "gru"]
# (attention, luong score, bidirectional encoder): "dot" needs enc size == hidden size
STYLES = [
    ("bahdanau", "general", True),
    ("luong", "general", True),
    ("luong", "concat", True),
    ("luong", "dot", False),
    ("none", "general", True),
]
STYLE_IDS = ["bahdanau", "luong-general", "luong-concat", "luong-dot", "none"]


@pytest.fixture(autouse=True)
def _one_thread():
    with one_thread():  # tiny matrices: a second thread only waits on a busy machine
        yield


def make_model(
    cell: str = "gru",
    attention: str = "bahdanau",
    luong_score: str = "general",
    bidirectional: bool = True,
    seed: int = 0,
    **kw,
) -> Seq2Seq:
    """A small float64 model in eval mode (no dropout)."""
    torch.manual_seed(seed)
    kw = {"enc_layers": 2, "dec_layers": 2, **kw}
    model = Seq2Seq(
        V,
        V,
        E,
        H,
        cell=cell,
        attention=attention,
        luong_score=luong_score,
        bidirectional=bidirectional,
        **kw,
    )
    return model.double().eval()


def make_batch(seed: int = 1, lengths: list[int] = LENGTHS) -> tuple[Tensor, Tensor, Tensor]:
    """src ``(B, S)`` padded with PAD, src_lengths ``(B,)``, decoder inputs ``(B, T_IN)``."""
    g = torch.Generator().manual_seed(seed)
    B, S = len(lengths), max(lengths)
    src = torch.randint(4, V, (B, S), generator=g)
    src[torch.arange(S) >= torch.tensor(lengths)[:, None]] = PAD
    tgt_in = torch.randint(4, V, (B, T_IN), generator=g)
    tgt_in[:, 0] = BOS
    return src, torch.tensor(lengths), tgt_in


def by_hand(model: Seq2Seq, src: Tensor, lengths: Tensor, tgt_in: Tensor):
    """decode_step over the decoder inputs: logits ``(B, T, V)``, α ``(B, T, S)`` or None."""
    enc = model.encode(src, lengths)
    state = model.init_state(enc)
    logits, alphas = [], []
    for t in range(tgt_in.shape[1]):
        step = model.decode_step(tgt_in[:, t], state, enc)
        logits.append(step.logits)
        alphas.append(step.attention)
        state = step.state
    att = None if alphas[0] is None else torch.stack(alphas, 1)
    return torch.stack(logits, 1), att


def close(a: Tensor, b: Tensor, tol: float = 1e-10) -> None:
    torch.testing.assert_close(a, b, rtol=0.0, atol=tol)


# --------------------------------------------------------------- decode_step vs forward


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize(("attention", "score", "bidir"), STYLES, ids=STYLE_IDS)
def test_forward_equals_decode_step_by_hand(cell: str, attention: str, score: str, bidir: bool):
    model = make_model(cell, attention, score, bidir)
    src, lengths, tgt_in = make_batch()
    logits, att = model(src, lengths, tgt_in)
    assert logits.shape == (len(LENGTHS), T_IN, V)
    want_logits, want_att = by_hand(model, src, lengths, tgt_in)
    close(logits, want_logits)
    if attention == "none":
        assert att is None and want_att is None
    else:
        assert att is not None and want_att is not None
        close(att, want_att)


def test_encoder_final_is_last_forward_and_first_backward_state():
    """C = [h→_n; h←_1]: the forward direction's state at each source's last real token
    and the backward direction's at its first."""
    model = make_model("lstm", enc_layers=2)
    src, lengths, _ = make_batch()
    enc = model.encode(src, lengths)
    for b, n in enumerate(LENGTHS):
        close(enc.final[b], torch.cat([enc.states[b, n - 1, :H], enc.states[b, 0, H:]]))
        assert enc.mask[b].tolist() == [j < n for j in range(max(LENGTHS))]


def _stack_by_hand(model: Seq2Seq, x: Tensor, h_prev: Tensor) -> Tensor:
    """The decoder's GRU layers as torch.nn.GRUCells on the same weights: new h (B, L, H)."""
    hs = []
    for k, ours in enumerate(model.decoder.rnn.cells):
        cell = nn.GRUCell(ours.input_size, H, dtype=torch.float64)
        cell.load_state_dict(ours.state_dict())
        x = cell(x, h_prev[:, k])
        hs.append(x)
    return torch.stack(hs, 1)


def _luong_by_hand(model: Seq2Seq, y, state, enc):
    d = model.decoder
    e = d.embed(y)
    h = _stack_by_hand(model, torch.cat([e, state["feed"]], 1), state["h"])
    s = h[:, -1]  # s_t: the top layer's new state is the query
    energy = torch.einsum("bh,bsh->bs", s, d.attention.W_a(enc.states))  # s^T W_a h_j
    alpha = torch.softmax(energy.masked_fill(~enc.mask, float("-inf")), -1)
    c = torch.einsum("bs,bsk->bk", alpha, enc.states)
    h_tilde = torch.tanh(d.W_c(torch.cat([c, s], 1)))
    return model.W_out(h_tilde), h, alpha, h_tilde


def _bahdanau_or_none_by_hand(model: Seq2Seq, y, state, enc):
    d = model.decoder
    e, s_prev = d.embed(y), state["h"][:, -1]  # s_{t-1}: the top layer's previous state
    alpha = None
    if d.attention is None:
        c = enc.final  # the fixed summary C
    else:
        a = d.attention  # e_tj = v^T tanh(W s_{t-1} + U h_j)
        energy = a.v(torch.tanh(a.W(s_prev)[:, None] + a.U(enc.states))).squeeze(-1)
        alpha = torch.softmax(energy.masked_fill(~enc.mask, float("-inf")), -1)
        c = torch.einsum("bs,bsk->bk", alpha, enc.states)
    h = _stack_by_hand(model, torch.cat([e, c], 1), state["h"])
    o = torch.tanh(d.W_o(torch.cat([h[:, -1], c, e], 1)))
    return model.W_out(o), h, alpha, None


@pytest.mark.parametrize("attention", ["bahdanau", "luong", "none"])
def test_decode_step_follows_the_equations_of_its_style(attention: str):
    """Three steps of a two-layer GRU decoder recomputed from the module docstring's
    equations with torch.nn.GRUCells on the same weights."""
    model = make_model("gru", attention)
    src, lengths, tgt_in = make_batch()
    enc = model.encode(src, lengths)
    state = model.init_state(enc)
    hand = _luong_by_hand if attention == "luong" else _bahdanau_or_none_by_hand
    for t in range(3):
        logits, h, alpha, feed = hand(model, tgt_in[:, t], state, enc)
        step = model.decode_step(tgt_in[:, t], state, enc)
        close(step.logits, logits)
        close(step.state["h"], h)
        if alpha is None:
            assert step.attention is None
        else:
            close(step.attention, alpha)
        if feed is not None:
            close(step.state["feed"], feed)  # input feeding: h̃_t goes into step t + 1
        state = step.state


# ---------------------------------------------------------------- engines and gate traces


@pytest.mark.parametrize("cell", CELLS)
def test_engines_give_the_same_logits_and_gradients(cell: str):
    src, lengths, tgt_in = make_batch()
    base = make_model(cell, engine="reference")
    results = {}
    for engine in ["reference", "explicit", "native", "auto"]:
        model = make_model(cell, engine=engine, seed=5)
        model.load_state_dict(base.state_dict())
        logits, _ = model(src, lengths, tgt_in)
        logits.pow(2).sum().backward()
        grads = {k: p.grad for k, p in model.named_parameters()}
        results[engine] = (logits.detach(), grads)
    ref_logits, ref_grads = results["reference"]
    for logits, grads in results.values():
        close(logits, ref_logits, 1e-9)
        for k, g in grads.items():
            close(g, ref_grads[k], 1e-9)


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_recorded_gates_hold_the_new_state_of_every_layer(cell: str):
    model = make_model(cell, engine="native")
    src, lengths, tgt_in = make_batch()
    enc = model.encode(src, lengths)
    state = model.init_state(enc)
    for t in range(3):
        plain = model.decode_step(tgt_in[:, t], state, enc)
        rec = model.decode_step(tgt_in[:, t], state, enc, record=True)
        close(rec.logits, plain.logits)
        assert len(rec.gates) == 2  # one trace per decoder layer
        for k, g in enumerate(rec.gates):
            close(g.hidden, rec.state["h"][:, k])
            if cell == "lstm":
                close(g.cell, rec.state["c"][:, k])
                close(g.hidden, g.output * torch.tanh(g.cell))
        state = rec.state


# ------------------------------------------------------------ padding and batch neighbours


@pytest.mark.parametrize("engine", ["native", "explicit"])
@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("attention", ["bahdanau", "luong", "none"])
def test_extra_padding_and_batch_neighbours_change_nothing(attention: str, cell: str, engine):
    model = make_model(cell, attention, engine=engine)
    src, lengths, tgt_in = make_batch()
    logits, att = model(src, lengths, tgt_in)
    padded = torch.cat([src, torch.full((len(LENGTHS), 3), PAD)], 1)
    logits_p, att_p = model(padded, lengths, tgt_in)
    close(logits_p, logits, 1e-6)
    for b, n in enumerate(LENGTHS):
        alone, att_alone = model(src[b : b + 1, :n], lengths[b : b + 1], tgt_in[b : b + 1])
        close(alone[0], logits[b], 1e-6)
        if att is not None:
            close(att_alone[0], att[b, :, :n], 1e-6)
    if att is not None:
        close(att_p[:, :, : src.shape[1]], att, 1e-6)
        assert bool((att_p[:, :, src.shape[1] :] == 0).all())


@pytest.mark.parametrize(("attention", "score", "bidir"), STYLES[:4], ids=STYLE_IDS[:4])
def test_attention_sums_to_one_over_the_source_and_is_zero_on_padding(attention, score, bidir):
    model = make_model("gru", attention, score, bidir)
    src, lengths, tgt_in = make_batch()
    _, att = model(src, lengths, tgt_in)
    assert att is not None and att.shape == (len(LENGTHS), T_IN, src.shape[1])
    real = torch.arange(src.shape[1]) < lengths[:, None]  # (B, S)
    close(att.sum(-1), torch.ones(len(LENGTHS), T_IN, dtype=att.dtype), 1e-12)
    assert bool((att.masked_select(~real[:, None, :]) == 0).all())
    assert bool((att.masked_select(real[:, None, :]) > 0).all())


# ------------------------------------------------------ tied embeddings, bridge, bad config


def test_tied_embeddings_share_one_parameter_whose_gradient_is_the_sum_of_both_uses():
    tied = make_model("gru", tie_embeddings=True)
    assert tied.W_out.weight is tied.decoder.embed.weight
    n_shared = sum(p is tied.decoder.embed.weight for p in tied.parameters())
    assert n_shared == 1  # listed once: the optimiser updates it once
    untied = copy.deepcopy(tied)
    untied.W_out.weight = nn.Parameter(tied.W_out.weight.detach().clone())
    src, lengths, tgt_in = make_batch()
    for m in (tied, untied):
        logits, _ = m(src, lengths, tgt_in)
        sequence_loss(logits, tgt_in.roll(-1, 1), PAD)[0].backward()
    shared = tied.decoder.embed.weight.grad
    assert shared is not None and float(shared.abs().sum()) > 0
    close(shared, untied.decoder.embed.weight.grad + untied.W_out.weight.grad, 1e-9)


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("attention", ["bahdanau", "luong"])
def test_zeros_bridge_starts_from_zero_and_learned_bridge_from_tanh_of_the_summary(
    cell: str, attention: str
):
    src, lengths, _ = make_batch()
    zeros = make_model(cell, attention, bridge="zeros")
    assert zeros.decoder.bridge is None
    state = zeros.init_state(zeros.encode(src, lengths))
    assert set(state) == {"h"} | ({"c"} if cell == "lstm" else set()) | (
        {"feed"} if attention == "luong" else set()
    )
    for v in state.values():
        assert bool((v == 0).all())
    learned = make_model(cell, attention)
    enc = learned.encode(src, lengths)
    s0 = torch.tanh(learned.decoder.bridge(enc.final))  # (B, H), copied into every layer
    state = learned.init_state(enc)
    assert state["h"].shape == (len(LENGTHS), 2, H)
    for k in range(2):
        close(state["h"][:, k], s0)


@pytest.mark.parametrize(
    ("kw", "word"), [({"cell": "tcn"}, "tcn"), ({"attention": "x"}, "x"), ({"bridge": "y"}, "y")]
)
def test_unknown_choices_are_errors_that_name_them(kw: dict, word: str):
    with pytest.raises(ValueError, match=repr(word)):
        Seq2Seq(V, V, E, H, **kw)


# ------------------------------------------------------------------------ sequence loss


def _loss_inputs():
    g = torch.Generator().manual_seed(4)
    logits = torch.randn(3, 5, V, generator=g, dtype=torch.float64)
    target = torch.randint(3, V, (3, 5), generator=g)
    target[0, 3:] = PAD
    target[2, 1:] = PAD
    return logits, target


def test_sequence_loss_is_the_summed_nll_of_real_tokens_and_ignores_padding():
    logits, target = _loss_inputs()
    loss, n = sequence_loss(logits, target, PAD)
    logp = torch.log_softmax(logits, -1)
    real = [(b, t) for b in range(3) for t in range(5) if target[b, t] != PAD]
    assert n == len(real) == 9
    close(loss, -sum(logp[b, t, target[b, t]] for b, t in real), 1e-12)
    noisy = logits.clone()
    noisy[target == PAD] = 100 * torch.randn_like(noisy[target == PAD])
    close(sequence_loss(noisy, target, PAD)[0], loss, 1e-12)


@pytest.mark.parametrize("eps", [0.1, 0.3])
def test_label_smoothing_mixes_nll_with_the_mean_over_the_vocabulary(eps: float):
    """Per real token: (1 - ε) · (-log p_y) + ε · mean_v(-log p_v)."""
    logits, target = _loss_inputs()
    loss, _ = sequence_loss(logits, target, PAD, label_smoothing=eps)
    logp = torch.log_softmax(logits, -1)
    want = sum(
        (1 - eps) * -logp[b, t, target[b, t]] + eps * -logp[b, t].mean()
        for b in range(3)
        for t in range(5)
        if target[b, t] != PAD
    )
    close(loss, want, 1e-12)
    noisy = logits.clone()
    noisy[target == PAD] = 100 * torch.randn_like(noisy[target == PAD])
    close(sequence_loss(noisy, target, PAD, label_smoothing=eps)[0], loss, 1e-12)


# ----------------------------------------------------------------------- teacher forcing


def _pick(use_ref: Tensor, a: Tensor, b: Tensor) -> Tensor:
    return torch.where(use_ref.view(-1, *[1] * (a.dim() - 1)), a, b)


@pytest.mark.parametrize("attention", ["bahdanau", "luong"])
def test_teacher_forcing_zero_feeds_the_models_own_argmax(attention: str):
    model = make_model("lstm", attention)
    src, lengths, tgt_in = make_batch()
    logits, _ = model(src, lengths, tgt_in, teacher_forcing=0.0)
    enc = model.encode(src, lengths)
    state, y, want = model.init_state(enc), tgt_in[:, 0], []
    for _ in range(T_IN):
        step = model.decode_step(y, state, enc)
        want.append(step.logits)
        state, y = step.state, step.logits.argmax(-1)
    close(logits, torch.stack(want, 1))
    assert (logits - model(src, lengths, tgt_in)[0]).abs().max() > 1e-3  # ≠ teacher forced


def test_teacher_forcing_half_feeds_at_each_step_either_the_reference_or_the_argmax():
    """Walk the steps by hand: every row's next logits must come from feeding the
    reference token or the model's own argmax, and both must happen."""
    model = make_model("gru", "bahdanau")
    src, lengths, _ = make_batch()
    tgt_in = torch.randint(4, V, (len(LENGTHS), 12), generator=torch.Generator().manual_seed(9))
    tgt_in[:, 0] = BOS
    torch.manual_seed(3)
    logits, _ = model(src, lengths, tgt_in, teacher_forcing=0.5)
    enc = model.encode(src, lengths)
    step = model.decode_step(tgt_in[:, 0], model.init_state(enc), enc)
    close(logits[:, 0], step.logits)
    fed_ref = fed_own = 0
    for t in range(1, tgt_in.shape[1]):
        ref_y, own_y = tgt_in[:, t], step.logits.argmax(-1)
        ref = model.decode_step(ref_y, step.state, enc)
        own = model.decode_step(own_y, step.state, enc)
        is_ref = (ref.logits - logits[:, t]).abs().amax(-1) < 1e-10
        is_own = (own.logits - logits[:, t]).abs().amax(-1) < 1e-10
        assert bool((is_ref | is_own).all())
        differs = ref_y != own_y
        fed_ref += int((is_ref & differs).sum())
        fed_own += int((is_own & differs).sum())
        state = {k: _pick(is_ref, ref.state[k], own.state[k]) for k in ref.state}
        step = ref._replace(logits=_pick(is_ref, ref.logits, own.logits), state=state)
    assert fed_ref > 0 and fed_own > 0


def test_scheduled_sampling_trains():
    model = make_model("gru", "luong").train()
    src, lengths, tgt_in = make_batch()
    logits, _ = model(src, lengths, tgt_in, teacher_forcing=0.5)
    sequence_loss(logits, tgt_in.roll(-1, 1), PAD)[0].backward()
    assert all(p.grad is not None for p in model.parameters())
    assert float(model.encoder.embed.weight.grad.abs().sum()) > 0


# ------------------------------------------------------------------- learning: reverse task

# Reverse task over symbols 4..11. Every model: embeddings 32, hidden 64, bidirectional
# one-layer encoder, batches of 64, Adam 3e-3 decayed linearly to 0 (without the decay
# the end point oscillates between 91 and 100 %), gradient norm clipped at 1. Measured
# on 3 seeds (2 cores, one thread): GRU + Bahdanau, LSTM + Luong and vanilla RNN +
# Bahdanau all reach 100 % exact match in 300 steps (~5-8 s; 99.8-100 % in 200). On
# lengths 15-25, 250 steps give 99.2-99.6 % with Bahdanau attention and 0 % without.
TOY_V = 12


def toy_model(cell: str, attention: str, seed: int = 0) -> Seq2Seq:
    torch.manual_seed(seed)
    return Seq2Seq(
        TOY_V, TOY_V, 32, 64, cell=cell, attention=attention, dropout=0.0, emb_dropout=0.0
    )


@pytest.mark.slow
@pytest.mark.parametrize(
    ("cell", "attention"), [("gru", "bahdanau"), ("lstm", "luong"), ("rnn", "bahdanau")]
)
def test_attention_model_learns_to_reverse(cell: str, attention: str):
    model = train_reverse(toy_model(cell, attention), seed=0, steps=200, lo=3, hi=10)
    assert exact_match(model, seed=1000, n=500, lo=3, hi=10) >= 0.99


@pytest.mark.slow
def test_without_attention_long_sequences_are_not_learnt():
    """The fixed-size summary C is the bottleneck (Bahdanau et al. 2015, fig. 2): same
    size, same budget, the model without attention reverses far fewer long sequences."""
    accuracy = {}  # (seeds 1 and 2 give 0.93 and 0.99 against 0.0)
    for attention in ("bahdanau", "none"):
        model = toy_model("gru", attention)
        model = train_reverse(model, seed=0, steps=150, lo=10, hi=16, batch_size=32)
        accuracy[attention] = exact_match(model, seed=1000, n=500, lo=10, hi=16)
    assert accuracy["bahdanau"] >= 0.8
    assert accuracy["bahdanau"] - accuracy["none"] >= 0.5
