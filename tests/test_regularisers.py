"""Zoneout, recurrent dropout and weight drop, on rnnkit.LSTM / GRU / RNN and on the
Recurrent layers: each one's semantics shown by hand, in evaluation and in training.

Training-time masks are random; the tests never compare against a seeded draw. They
read the mask the layer used back out of what it computed (a unit that kept its value
exactly; the masked h handed back by a probe cell whose W_hh is the identity, or solved
from a gate's pre-activation; an exactly zero gradient of h0 or of a dropped weight),
check the statistics of that mask, and recompute the whole layer by hand with it.
"""

from __future__ import annotations

from typing import NamedTuple

import pytest
import torch
from test_variants import (
    STATE_NAMES,
    VARIANTS,
    blocks,
    close,
    finals_of,
    gru_step,
    hx_of,
    layer_by_hand,
    lstm_step,
    params_of,
    random_lengths,
    random_states,
    rnn_step,
    weighted_sum,
)
from torch import Tensor, nn

import rnnkit

I, H, T, B = 3, 4, 6, 4
F64 = torch.float64

# name: (layer class, hand step, number of states)
STOCK = {
    "LSTM": (rnnkit.LSTM, lstm_step, 2),
    "GRU": (rnnkit.GRU, gru_step, 1),
    "RNN": (rnnkit.RNN, rnn_step, 1),
}
ALL = {**STOCK, **{k: (layer, step, n) for k, (layer, _, step, n) in VARIANTS.items()}}


def make(name: str, seed: int = 0, hidden: int = H, **kw) -> nn.Module:
    torch.manual_seed(seed)
    return ALL[name][0](I, hidden, dtype=F64, **kw)


def same_weights(m: nn.Module, name: str, **kw) -> nn.Module:
    """The plain layer (no regulariser) with ``m``'s parameters."""
    plain = make(name, seed=1, **kw)
    plain.load_state_dict(m.state_dict())
    return plain


def fields_of(name: str) -> tuple[str, ...]:
    """The trace fields of a layer, in order."""
    stock = {"LSTM": rnnkit.LSTMGates, "GRU": rnnkit.GRUGates, "RNN": rnnkit.RNNGates}
    return (stock[name] if name in stock else VARIANTS[name][1].Gates)._fields


def run(m: nn.Module, x: Tensor, states, n: int, lengths=None, gates=True) -> list[Tensor]:
    """Output, final states and (``gates``) every trace field, as one list: one forward
    pass. Without the trace rnnkit.LSTM / GRU run their fast engine."""
    out = m(x, hx_of(states), lengths=lengths, return_gates=gates)
    return [out[0], *finals_of(out, n), *(out[2] if gates else ())]


# ------------------------------------------------------------------------- evaluation


@pytest.mark.parametrize("name", list(ALL))
@pytest.mark.parametrize("reg", [{"recurrent_dropout": 0.4}, {"weight_drop": 0.6}])
def test_dropouts_do_nothing_in_evaluation(name, reg):
    """Recurrent dropout and weight drop in eval: the plain layer, outputs and gradients,
    with the trace (the readable loop) and without (the stock layers' fast engine)."""
    kw = {"num_layers": 2, "bidirectional": True}
    m = make(name, **reg, **kw).eval()
    plain = same_weights(m, name, **kw).eval()
    x = torch.randn(T, B, I, generator=torch.Generator().manual_seed(1), dtype=F64)
    lengths = random_lengths(seed=2)
    for gates in (True, False):
        results = []
        for layer in (m, plain):
            outs = run(layer, x, None, ALL[name][2], lengths, gates)
            grads = torch.autograd.grad(weighted_sum(outs), list(layer.parameters()))
            results.append(outs + list(grads))
        for a, b in zip(*results, strict=True):
            close(a, b, 1e-12)
    assert all(
        torch.equal(a, b) for a, b in zip(m.state_dict().values(), plain.state_dict().values())
    )


ZONE_CASES = [
    ("LSTM", (0.3, 0.6)),
    ("LSTM", 0.5),
    ("GRU", 0.4),
    ("RNN", 0.25),
    ("LayerNormLSTM", (0.2, 0.7)),
    ("PeepholeLSTM", 0.35),
    ("MGU", 0.45),
    ("IndRNN", 0.3),
]


@pytest.mark.parametrize("name, z", ZONE_CASES)
def test_zoneout_in_evaluation_is_the_expectation(name, z):
    """s_t = z s_{t-1} + (1 - z) s̃_t with s̃_t the step from the mixed state, per state
    (z_c for the cell, z_h for the hidden state): outputs, finals, trace, gradients."""
    _, step, n = ALL[name]
    m = make(name, zoneout=z, num_layers=2, bidirectional=True).eval()
    g = torch.Generator().manual_seed(1)
    x = torch.randn(T, B, I, generator=g, dtype=F64, requires_grad=True)
    lengths = random_lengths(seed=3)
    states = random_states(n, 4, seed=2)

    z_h, z_c = (z[1], z[0]) if isinstance(z, tuple) else (z, z)
    rates = (z_h, z_c)[:n]
    sd = {k: v.detach().clone().requires_grad_() for k, v in m.state_dict().items()}
    out, fins, trace = layer_by_hand(step, sd, x, lengths, states, 2, 2, zoneout=rates)
    names = [k for k, _ in m.named_parameters()]
    for gates in (True, False):  # the readable loop; the stock layers' fast engine
        got = run(m, x, states, n, lengths, gates)
        expected = [out, *fins, *(trace[f] for f in fields_of(name) if gates)]
        for a, b in zip(got, expected, strict=True):
            close(a, b)
        grads = torch.autograd.grad(weighted_sum(got), [x] + [getattr(m, k) for k in names])
        grads_h = torch.autograd.grad(
            weighted_sum(expected), [x] + [sd[k] for k in names], retain_graph=True
        )
        for what, a, b in zip(["x"] + names, grads, grads_h):
            close(a, b, msg=f"gradient of {what}")

    plain = same_weights(m, name, num_layers=2, bidirectional=True).eval()
    with torch.no_grad():
        assert (plain(x, hx_of(states), lengths=lengths)[0] - got[0]).abs().max() > 1e-3


# --------------------------------------------------------------------- zoneout, training


def zoned(trace_seq: Tensor, s0: Tensor) -> Tensor:
    """d_t: the units that kept their previous value exactly, ``(T, B, H)`` booleans."""
    prev = torch.cat([s0.unsqueeze(0), trace_seq[:-1]])
    return trace_seq == prev


ZONE_TRAINING = [  # name, z, with the trace (else: the stock layers' fast engine)
    ("LSTM", (0.2, 0.5), True),
    ("LSTM", (0.0, 0.4), False),  # no cell zoneout: the hand loop carries c itself
    ("GRU", 0.3, False),
    ("LayerNormLSTM", (0.4, 0.3), True),
    ("MGU", 0.3, True),
]


@pytest.mark.parametrize("name, z, gates", ZONE_TRAINING)
def test_zoneout_in_training_keeps_a_fresh_fraction_z(name, z, gates):
    """In training each unit keeps its previous value with probability z (per state),
    a fresh Bernoulli draw per step, unit and sequence; every other unit is the cell's
    step from the previous (zoned) state, and so is every gate. The mask is read back
    as the units whose value equals the previous step's exactly."""
    _, step, n = ALL[name]
    Hs, Bs, Ts = 24, 24, 8
    m = make(name, hidden=Hs, zoneout=z).train()
    g = torch.Generator().manual_seed(1)
    x = torch.randn(Ts, Bs, I, generator=g, dtype=F64)
    states = tuple(torch.randn(1, Bs, Hs, generator=g, dtype=F64) for _ in range(n))
    with torch.no_grad():
        result = m(x, hx_of(states), return_gates=gates)
    names = STATE_NAMES[n]
    if gates:
        trace = result[2]
        close(result[0], trace.hidden[0], 0)
        seqs = {s: getattr(trace, s)[0] for s in names}
    else:
        seqs = {"hidden": result[0]}  # (T, B, H): the zoned hidden states
    rates = dict(zip(names, (z[1], z[0]) if isinstance(z, tuple) else (z, z)))
    d = {s: zoned(seqs[s], states[k][0]) for k, s in enumerate(names) if s in seqs}
    for s, rate in rates.items():
        if not rate:
            continue
        frac = d[s].double().mean().item()
        assert abs(frac - rate) < 0.03, (s, frac, rate)
        both = (d[s][1:] & d[s][:-1]).double().mean().item()  # fresh per step: ≈ z², not z
        assert abs(both - rate**2) < 0.03, (s, both)
        assert not torch.equal(d[s][0], d[s][0][:1].expand_as(d[s][0]))  # per sequence
    if len(d) == 2 and all(rates.values()):  # the two states draw their own masks
        joint = (d["hidden"] & d["cell"]).double().mean().item()
        assert abs(joint - rates["hidden"] * rates["cell"]) < 0.03

    # every step by hand from the previous zoned state; kept units are the old values
    p = params_of(m.state_dict(), "_l0")
    c_n = []
    for b in range(Bs):
        prev = tuple(s[0, b] for s in states)
        for t in range(Ts):
            fields, new = step(p, x[t, b], prev)
            now = []
            for k, s in enumerate(names):
                if s not in seqs:  # not zoned (z = 0) and not observed: carried by hand
                    now.append(new[k])
                    continue
                close(seqs[s][t, b], torch.where(d[s][t, b], prev[k], new[k]))
                now.append(seqs[s][t, b])
            if gates:
                for f, v in fields.items():
                    if f not in names:
                        close(getattr(trace, f)[0, t, b], v)
            prev = tuple(now)
        c_n.append(prev[-1])
    if "cell" in names and not gates:  # the hand-carried cell state ends where c_n is
        close(result[1][1][0], torch.stack(c_n))


# ------------------------------------------------------------- recurrent dropout


class ProbeGates(NamedTuple):
    hidden: Tensor
    recurrent: Tensor  # what W_hh received: the h entering it, since W_hh = I


class ProbeCell(rnnkit.Cell):
    """h_t = tanh(W_ih x_t + b_ih + W_hh h_{t-1} + b_hh), also returning W_hh h_{t-1}."""

    Gates = ProbeGates

    def step(self, gi, state):
        (h_prev,) = state
        h = torch.tanh(gi + self.hh(h_prev))
        return (h,), ProbeGates(h, self.hh(h_prev, bias=False))


def probe_masks(m: nn.Module, x: Tensor, h0: Tensor) -> Tensor:
    """The masks that W_hh = I saw, ``(D, T, B, H)``: recurrent ⊘ the h entering it."""
    _, _, trace = m(x, h0, return_gates=True)
    h = trace.hidden  # (D, T, B, H)
    prev_fwd = torch.cat([h0[:1].unsqueeze(1), h[:1, :-1]], dim=1)
    prev_bwd = torch.cat([h[1:, 1:], h0[1:].unsqueeze(1)], dim=1)
    return trace.recurrent / torch.cat([prev_fwd, prev_bwd])


def test_recurrent_dropout_one_mask_per_sequence_seen_through_a_probe():
    """With W_hh = I a cell hands back the masked h: the same mask at every step, values
    0 or 1/(1 - p), a fraction p of zeros, per sequence and direction, new each forward;
    none in evaluation."""
    p, Hs, Bs = 0.3, 32, 16
    m = rnnkit.Recurrent(ProbeCell, I, Hs, bidirectional=True, recurrent_dropout=p, dtype=F64)
    with torch.no_grad():
        for k in ("weight_hh_l0", "weight_hh_l0_reverse"):
            getattr(m, k).copy_(torch.eye(Hs))
    g = torch.Generator().manual_seed(1)
    x = torch.randn(T, Bs, I, generator=g, dtype=F64)
    h0 = torch.randn(2, Bs, Hs, generator=g, dtype=F64)
    with torch.no_grad():
        masks = probe_masks(m.train(), x, h0)
        again = probe_masks(m, x, h0)
        none = probe_masks(m.eval(), x, h0)
    close(masks, masks[:, :1].expand_as(masks), 1e-12)  # the same at every step
    mask = masks[:, 0]  # (D, B, H)
    scale = 1 / (1 - p)
    snapped = (mask > scale / 2).to(F64) * scale
    close(mask, snapped, 1e-12)
    assert abs((snapped == 0).double().mean().item() - p) < 0.04
    assert not torch.equal(snapped[0], snapped[1])  # one mask per direction
    assert not torch.equal(snapped[0, 0], snapped[0, 1])  # per sequence
    assert not torch.equal(again[:, 0], masks[:, 0])  # a new draw per forward
    close(none, torch.ones_like(none), 1e-12)


def recover_masks(kind: str, p: dict, x: Tensor, h0: Tensor, trace, d: int) -> Tensor:
    """The recurrent-dropout mask of direction ``d``, solved from the first gate at each
    step: logit(gate) - W_i· x - b = W_h· (m ⊙ h_prev). Returns ``(T, B, H)``."""
    first = trace.input if kind == "LSTM" else trace.reset
    G = 4 if kind == "LSTM" else 3
    W_x, W_h = blocks(p["weight_ih"], G)[0], blocks(p["weight_hh"], G)[0]
    b = blocks(p["bias_ih"], G)[0] + blocks(p["bias_hh"], G)[0]
    h = trace.hidden[d]  # (T, B, H), reading order
    prev = (
        torch.cat([h0[d].unsqueeze(0), h[:-1]])
        if d == 0
        else torch.cat([h[1:], h0[d].unsqueeze(0)])
    )
    a = first[d]
    rhs = torch.log(a / (1 - a)) - x @ W_x.T - b  # (T, B, H)
    hm = torch.linalg.solve(W_h, rhs.reshape(-1, rhs.shape[-1]).T).T.reshape(rhs.shape)
    return hm / prev


@pytest.mark.parametrize("kind", ["LSTM", "GRU"])
def test_recurrent_dropout_on_stock_layers_by_hand(kind):
    """rnnkit.LSTM / GRU: read the mask back from the gates at every step (the same at
    every step, 0 or 1/(1 - p)), then the whole bidirectional layer recomputed by hand
    with that one mask on the h entering every W_hh block equals the layer."""
    pr = 0.5
    layer_class, step, n = STOCK[kind]
    Hs = 6
    torch.manual_seed(0)
    m = layer_class(I, Hs, bidirectional=True, recurrent_dropout=pr, dtype=F64).train()
    g = torch.Generator().manual_seed(1)
    x = torch.randn(T, B, I, generator=g, dtype=F64, requires_grad=True)
    states = tuple(torch.randn(2, B, Hs, generator=g, dtype=F64) for _ in range(n))
    out, fin, trace = m(x, hx_of(states), return_gates=True)
    masks = {}
    for d in range(2):
        p = params_of(m.state_dict(), "_l0" + ("_reverse" if d else ""))
        with torch.no_grad():
            mt = recover_masks(kind, p, x, states[0], trace, d)
        close(mt, mt[:1].expand_as(mt), 1e-6)  # one mask for every step
        snapped = (mt[0] > 0.5 / (1 - pr)).to(F64) / (1 - pr)
        close(mt[0], snapped, 1e-6)
        assert 0 < (snapped == 0).sum() < snapped.numel()
        masks[(0, d)] = snapped
    assert not torch.equal(masks[(0, 0)], masks[(0, 1)])
    sd = {k: v.detach().clone().requires_grad_() for k, v in m.state_dict().items()}
    out_h, fins_h, trace_h = layer_by_hand(step, sd, x, [T] * B, states, 1, 2, masks=masks)
    close(out, out_h)
    for a, b in zip(finals_of((out, fin), n), fins_h):
        close(a, b)
    for f in trace._fields:
        close(getattr(trace, f), trace_h[f])
    names = [k for k, _ in m.named_parameters()]
    grads = torch.autograd.grad(weighted_sum([out]), [x] + [getattr(m, k) for k in names])
    grads_h = torch.autograd.grad(weighted_sum([out_h]), [x] + [sd[k] for k in names])
    for what, a, b in zip(["x"] + names, grads, grads_h):
        close(a, b, msg=f"gradient of {what}")


def test_recurrent_dropout_in_the_fast_lstm_by_hand():
    """rnnkit.LSTM without a trace (its fast engine): h0 reaches the output only through
    W_hh (m ⊙ h0), so the gradient with respect to h0 is exactly zero where the mask is,
    which reads the mask back; the layer recomputed by hand with that mask at every step
    equals the layer, and so do the gradients."""
    pr, Hs, Bs = 0.4, 12, 8
    torch.manual_seed(0)
    m = rnnkit.LSTM(I, Hs, bidirectional=True, recurrent_dropout=pr, dtype=F64).train()
    g = torch.Generator().manual_seed(1)
    x = torch.randn(T, Bs, I, generator=g, dtype=F64, requires_grad=True)
    h0 = torch.randn(2, Bs, Hs, generator=g, dtype=F64, requires_grad=True)
    c0 = torch.randn(2, Bs, Hs, generator=g, dtype=F64)
    out, (h_n, c_n) = m(x, (h0, c0))
    names = [k for k, _ in m.named_parameters()]
    grads = torch.autograd.grad(
        weighted_sum([out, h_n, c_n]), [h0, x] + [getattr(m, k) for k in names]
    )
    kept = grads[0] != 0  # (D, B, H)
    frac = 1 - kept.double().mean().item()
    assert abs(frac - pr) < 5 * (pr * (1 - pr) / kept.numel()) ** 0.5, frac
    assert not torch.equal(kept[0], kept[1])
    masks = {(0, d): kept[d].to(F64) / (1 - pr) for d in range(2)}

    sd = {k: v.detach().clone().requires_grad_() for k, v in m.state_dict().items()}
    out_h, fins_h, _ = layer_by_hand(lstm_step, sd, x, [T] * Bs, (h0, c0), 1, 2, masks=masks)
    for a, b in zip([out, h_n, c_n], [out_h, *fins_h]):
        close(a, b)
    grads_h = torch.autograd.grad(weighted_sum([out_h, *fins_h]), [h0, x] + [sd[k] for k in names])
    for what, a, b in zip(["h0", "x"] + names, grads, grads_h):
        close(a, b, msg=f"gradient of {what}")


# ---------------------------------------------------------------------- weight drop


WEIGHT_DROP = [  # name, with the trace (else: the stock layers' fast engine)
    ("LSTM", False),
    ("LSTM", True),
    ("GRU", False),
    ("RNN", False),
    ("LayerNormLSTM", True),
    ("IndRNN", False),
]


@pytest.mark.parametrize("name, gates", WEIGHT_DROP)
def test_weight_drop_one_mask_per_forward_parameters_untouched(name, gates):
    """DropConnect on W_hh in training: the state dict is bit-identical after a forward
    and backward; W_hh gets gradients, exactly zero on the dropped weights (a fraction p:
    one mask per forward, not one per step, which would leave about p^T); no other
    parameter is dropped; the layer equals the hand loop with W_hh ⊙ mask / (1 - p);
    the next forward draws a new mask."""
    pr, Bs = 0.5, 6
    Hs = 200 if name == "IndRNN" else 16  # IndRNN's W_hh is a vector: H weights
    kw = {"nonlinearity": "tanh"} if name == "IndRNN" else {}  # no unit dead at every step
    _, step, n = ALL[name]
    m = make(name, hidden=Hs, weight_drop=pr, **kw).train()
    before = {k: v.clone() for k, v in m.state_dict().items()}
    g = torch.Generator().manual_seed(1)
    x = torch.randn(T, Bs, I, generator=g, dtype=F64)
    states = tuple(torch.randn(1, Bs, Hs, generator=g, dtype=F64) for _ in range(n))

    def grads_of_one_forward():
        m.zero_grad()
        outs = run(m, x, states, n, gates=gates)
        weighted_sum(outs).backward()
        return outs, {k: p.grad.clone() for k, p in m.named_parameters()}

    outs, grads = grads_of_one_forward()
    after = m.state_dict()
    assert list(after) == list(before)
    assert all(torch.equal(after[k], before[k]) for k in before)

    kept = grads["weight_hh_l0"] != 0
    frac = 1 - kept.double().mean().item()
    assert abs(frac - pr) < 5 * (pr * (1 - pr) / kept.numel()) ** 0.5, frac
    assert frac > 10 * pr**T  # not a mask per step
    for k, gr in grads.items():
        if k != "weight_hh_l0":
            assert (gr != 0).all(), k

    sd = {k: v.detach() for k, v in m.state_dict().items()}
    sd["weight_hh_l0"] = torch.where(kept, sd["weight_hh_l0"] / (1 - pr), 0.0)
    out_h, fins_h, trace_h = layer_by_hand(step, sd, x, [T] * Bs, states, 1, 1, **kw)
    expected = [out_h, *fins_h, *(trace_h[f] for f in fields_of(name) if gates)]
    for a, b in zip(outs, expected, strict=True):
        close(a, b)

    _, grads2 = grads_of_one_forward()
    assert not torch.equal(grads2["weight_hh_l0"] != 0, kept)


# ---------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    "make_layer",
    [
        lambda **kw: rnnkit.GRU(I, H, **kw),
        lambda **kw: rnnkit.RNN(I, H, **kw),
        lambda **kw: rnnkit.MGU(I, H, **kw),
        lambda **kw: rnnkit.IndRNN(I, H, **kw),
        lambda **kw: rnnkit.LayerNormGRU(I, H, **kw),
    ],
    ids=["GRU", "RNN", "MGU", "IndRNN", "LayerNormGRU"],
)
def test_zoneout_pair_needs_a_cell_state(make_layer):
    with pytest.raises(ValueError, match=r"zoneout=\(z_c, z_h\) needs a cell with a cell state"):
        make_layer(zoneout=(0.1, 0.2))


@pytest.mark.parametrize(
    "make_layer",
    [
        lambda **kw: rnnkit.LSTM(I, H, **kw),
        lambda **kw: rnnkit.LayerNormLSTM(I, H, **kw),
        lambda **kw: rnnkit.Recurrent(rnnkit.CIFGLSTMCell, I, H, **kw),
    ],
    ids=["LSTM", "LayerNormLSTM", "Recurrent-CIFG"],
)
@pytest.mark.parametrize(
    "kw, what",
    [
        ({"zoneout": 1.0}, "zoneout"),
        ({"zoneout": -0.1}, "zoneout"),
        ({"zoneout": (0.2, 1.5)}, "zoneout"),
        ({"zoneout": (0.1, 0.2, 0.3)}, "zoneout"),
        ({"recurrent_dropout": 1.0}, "recurrent_dropout"),
        ({"recurrent_dropout": "0.1"}, "recurrent_dropout"),
        ({"weight_drop": -0.5}, "weight_drop"),
        ({"weight_drop": True}, "weight_drop"),
    ],
)
def test_rates_out_of_range_raise(make_layer, kw, what):
    with pytest.raises(ValueError, match=what):
        make_layer(**kw)


def test_native_engine_refuses_regularisers():
    x = torch.randn(T, B, I)
    for kw in ({"zoneout": 0.1}, {"recurrent_dropout": 0.1}, {"weight_drop": 0.1}):
        m = rnnkit.LSTM(I, H, engine="native", **kw)
        with pytest.raises(ValueError, match="engine='native' cannot serve"):
            m(x)
