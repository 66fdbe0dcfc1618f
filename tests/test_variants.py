"""The built-in variants (LayerNorm LSTM / GRU, peephole LSTM, CIFG LSTM, MGU, IndRNN):
each layer against its equations recomputed by hand from its state_dict, in float64.

The hand loop walks layers, directions, sequences and steps one at a time with plain
torch ops (layer normalisation written out as mean and variance), so it shares nothing
with the library but the parameter names. It checks outputs, final states, every trace
field and the gradients of a weighted-sum loss (autograd through the hand loop).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import pytest
import torch
from torch import Tensor, nn
from torch.func import functional_call

import rnnkit

I, H, T, B = 3, 4, 6, 4
TOL = 1e-9
F64 = torch.float64

Step = Callable[..., tuple[dict[str, Tensor], tuple[Tensor, ...]]]

# ------------------------------------------------------------- the equations by hand


def sig(v: Tensor) -> Tensor:
    return 1 / (1 + torch.exp(-v))


def blocks(t: Tensor | None, n: int) -> tuple:
    """Gate blocks of a stacked weight or bias, in the order of the equations."""
    return (0.0,) * n if t is None else t.split(t.shape[0] // n, dim=0)


def mv(w: Tensor, v: Tensor) -> Tensor:
    return w @ v


def layer_norm(v: Tensor, gain: Tensor, bias: Tensor | None, eps: float) -> Tensor:
    """gain ⊙ (v - μ) / √(σ² + eps) + bias, μ and σ² (biased) over the vector's units."""
    mu = v.sum() / v.shape[0]
    var = ((v - mu) ** 2).sum() / v.shape[0]
    out = gain * (v - mu) / torch.sqrt(var + eps)
    return out if bias is None else out + bias


def masked(h: Tensor, mask: Tensor | None) -> Tensor:
    """The h entering W_hh: recurrent dropout multiplies it by its mask."""
    return h if mask is None else mask * h


def lstm_step(p: dict, x: Tensor, state: tuple, mask: Tensor | None = None, **_):
    h, c = state
    W_ii, W_if, W_ig, W_io = blocks(p["weight_ih"], 4)
    W_hi, W_hf, W_hg, W_ho = blocks(p["weight_hh"], 4)
    b_ii, b_if, b_ig, b_io = blocks(p.get("bias_ih"), 4)
    b_hi, b_hf, b_hg, b_ho = blocks(p.get("bias_hh"), 4)
    hm = masked(h, mask)
    i = sig(mv(W_ii, x) + b_ii + mv(W_hi, hm) + b_hi)
    f = sig(mv(W_if, x) + b_if + mv(W_hf, hm) + b_hf)
    g = torch.tanh(mv(W_ig, x) + b_ig + mv(W_hg, hm) + b_hg)
    o = sig(mv(W_io, x) + b_io + mv(W_ho, hm) + b_ho)
    c = f * c + i * g
    h = o * torch.tanh(c)
    return dict(input=i, forget=f, candidate=g, output=o, cell=c, hidden=h), (h, c)


def gru_step(p: dict, x: Tensor, state: tuple, mask: Tensor | None = None, **_):
    (h,) = state
    W_ir, W_iz, W_in = blocks(p["weight_ih"], 3)
    W_hr, W_hz, W_hn = blocks(p["weight_hh"], 3)
    b_ir, b_iz, b_in = blocks(p.get("bias_ih"), 3)
    b_hr, b_hz, b_hn = blocks(p.get("bias_hh"), 3)
    hm = masked(h, mask)
    r = sig(mv(W_ir, x) + b_ir + mv(W_hr, hm) + b_hr)
    z = sig(mv(W_iz, x) + b_iz + mv(W_hz, hm) + b_hz)
    n = torch.tanh(mv(W_in, x) + b_in + r * (mv(W_hn, hm) + b_hn))
    h = (1 - z) * n + z * h
    return dict(reset=r, update=z, candidate=n, hidden=h), (h,)


def rnn_step(
    p: dict, x: Tensor, state: tuple, mask: Tensor | None = None, nonlinearity="tanh", **_
):
    (h,) = state
    pre = mv(p["weight_ih"], x) + blocks(p.get("bias_ih"), 1)[0]
    pre = pre + mv(p["weight_hh"], masked(h, mask)) + blocks(p.get("bias_hh"), 1)[0]
    h = torch.clamp(pre, min=0) if nonlinearity == "relu" else torch.tanh(pre)
    return dict(hidden=h), (h,)


def ln_lstm_step(p: dict, x: Tensor, state: tuple, mask: Tensor | None = None, eps=1e-5, **_):
    """Ba et al. 2016: LN(W_hh h) + LN(W_ih x) + b, and LN of the cell before its tanh."""
    h, c = state
    a = layer_norm(mv(p["weight_ih"], x), p["ln_ih_gain"], p.get("bias_ih"), eps)
    a = a + layer_norm(mv(p["weight_hh"], masked(h, mask)), p["ln_hh_gain"], p.get("bias_hh"), eps)
    a_i, a_f, a_g, a_o = blocks(a, 4)
    i, f, g, o = sig(a_i), sig(a_f), torch.tanh(a_g), sig(a_o)
    c = f * c + i * g
    h = o * torch.tanh(layer_norm(c, p["ln_cell_gain"], p["ln_cell_bias"], eps))
    return dict(input=i, forget=f, candidate=g, output=o, cell=c, hidden=h), (h, c)


def ln_gru_step(p: dict, x: Tensor, state: tuple, mask: Tensor | None = None, eps=1e-5, **_):
    (h,) = state
    a_r, a_z, a_n = blocks(
        layer_norm(mv(p["weight_ih"], x), p["ln_ih_gain"], p.get("bias_ih"), eps), 3
    )
    hh = layer_norm(mv(p["weight_hh"], masked(h, mask)), p["ln_hh_gain"], p.get("bias_hh"), eps)
    b_r, b_z, b_n = blocks(hh, 3)
    r = sig(a_r + b_r)
    z = sig(a_z + b_z)
    n = torch.tanh(a_n + r * b_n)
    h = (1 - z) * n + z * h
    return dict(reset=r, update=z, candidate=n, hidden=h), (h,)


def peephole_step(p: dict, x: Tensor, state: tuple, mask: Tensor | None = None, **_):
    """Gers & Schmidhuber 2000: i and f look at c_{t-1}, o at c_t."""
    h, c_prev = state
    W_ii, W_if, W_ig, W_io = blocks(p["weight_ih"], 4)
    W_hi, W_hf, W_hg, W_ho = blocks(p["weight_hh"], 4)
    b_ii, b_if, b_ig, b_io = blocks(p.get("bias_ih"), 4)
    b_hi, b_hf, b_hg, b_ho = blocks(p.get("bias_hh"), 4)
    hm = masked(h, mask)
    i = sig(mv(W_ii, x) + b_ii + mv(W_hi, hm) + b_hi + p["peephole_i"] * c_prev)
    f = sig(mv(W_if, x) + b_if + mv(W_hf, hm) + b_hf + p["peephole_f"] * c_prev)
    g = torch.tanh(mv(W_ig, x) + b_ig + mv(W_hg, hm) + b_hg)
    c = f * c_prev + i * g
    o = sig(mv(W_io, x) + b_io + mv(W_ho, hm) + b_ho + p["peephole_o"] * c)
    h = o * torch.tanh(c)
    return dict(input=i, forget=f, candidate=g, output=o, cell=c, hidden=h), (h, c)


def cifg_step(p: dict, x: Tensor, state: tuple, mask: Tensor | None = None, **_):
    """Greff et al. 2017: blocks i g o, f = 1 - i."""
    h, c = state
    W_ii, W_ig, W_io = blocks(p["weight_ih"], 3)
    W_hi, W_hg, W_ho = blocks(p["weight_hh"], 3)
    b_ii, b_ig, b_io = blocks(p.get("bias_ih"), 3)
    b_hi, b_hg, b_ho = blocks(p.get("bias_hh"), 3)
    hm = masked(h, mask)
    i = sig(mv(W_ii, x) + b_ii + mv(W_hi, hm) + b_hi)
    f = 1 - i
    g = torch.tanh(mv(W_ig, x) + b_ig + mv(W_hg, hm) + b_hg)
    o = sig(mv(W_io, x) + b_io + mv(W_ho, hm) + b_ho)
    c = f * c + i * g
    h = o * torch.tanh(c)
    return dict(input=i, forget=f, candidate=g, output=o, cell=c, hidden=h), (h, c)


def mgu_step(p: dict, x: Tensor, state: tuple, mask: Tensor | None = None, **_):
    """Zhou et al. 2016: blocks f, h̃; the candidate sees f ⊙ h_{t-1}."""
    (h,) = state
    W_f, W_h = blocks(p["weight_ih"], 2)
    U_f, U_h = blocks(p["weight_hh"], 2)
    b_if, b_ih = blocks(p.get("bias_ih"), 2)
    b_hf, b_hh = blocks(p.get("bias_hh"), 2)
    f = sig(mv(W_f, x) + b_if + mv(U_f, masked(h, mask)) + b_hf)
    n = torch.tanh(mv(W_h, x) + b_ih + mv(U_h, masked(f * h, mask)) + b_hh)
    h = (1 - f) * h + f * n
    return dict(forget=f, candidate=n, hidden=h), (h,)


def indrnn_step(
    p: dict, x: Tensor, state: tuple, mask: Tensor | None = None, nonlinearity="relu", **_
):
    """Li et al. 2018: h = relu(W x + b + u ⊙ h), u a vector."""
    (h,) = state
    pre = mv(p["weight_ih"], x) + blocks(p.get("bias_ih"), 1)[0]
    pre = pre + p["weight_hh"] * masked(h, mask) + blocks(p.get("bias_hh"), 1)[0]
    h = torch.clamp(pre, min=0) if nonlinearity == "relu" else torch.tanh(pre)
    return dict(hidden=h), (h,)


# name: (layer class, cell class, hand step, number of states)
VARIANTS: dict[str, tuple[type, type, Step, int]] = {
    "LayerNormLSTM": (rnnkit.LayerNormLSTM, rnnkit.LayerNormLSTMCell, ln_lstm_step, 2),
    "LayerNormGRU": (rnnkit.LayerNormGRU, rnnkit.LayerNormGRUCell, ln_gru_step, 1),
    "PeepholeLSTM": (rnnkit.PeepholeLSTM, rnnkit.PeepholeLSTMCell, peephole_step, 2),
    "CIFGLSTM": (rnnkit.CIFGLSTM, rnnkit.CIFGLSTMCell, cifg_step, 2),
    "MGU": (rnnkit.MGU, rnnkit.MGUCell, mgu_step, 1),
    "IndRNN": (rnnkit.IndRNN, rnnkit.IndRNNCell, indrnn_step, 1),
}
STATE_NAMES = {1: ("hidden",), 2: ("hidden", "cell")}


def params_of(sd: dict, sfx: str) -> dict[str, Tensor]:
    """The parameters of one layer and direction, their suffix taken off."""
    return {k[: -len(sfx)]: v for k, v in sd.items() if k.endswith(sfx)}


def layer_by_hand(
    step: Step,
    sd: dict,
    x: Tensor,
    lengths: list[int],
    states: tuple[Tensor, ...],
    num_layers: int,
    directions: int,
    masks: dict | None = None,
    zoneout: tuple[float, ...] | None = None,
    **step_kw,
):
    """Every layer, direction, sequence and step in Python, from the state dict.

    x ``(T, B, I)`` (padding past ``lengths`` is read by nobody); states one
    ``(L·D, B, H)`` tensor per state name; ``masks[(layer, d)]`` a recurrent-dropout
    mask ``(B, H)``; ``zoneout`` a rate per state (evaluation: s = z s_prev + (1 - z) s̃).
    Returns output ``(T, B, D·H)``, final states ``(L·D, B, H)`` and the trace, a dict of
    ``(L·D, T, B, H)`` tensors, zero past each length. Built from lists and torch.stack
    so that autograd differentiates it.
    """
    Tn, Bn = x.shape[:2]
    finals: list[list[Tensor]] = [[] for _ in states]
    traces: dict[str, list[Tensor]] = {}
    layer_in = x
    for layer in range(num_layers):
        outs = []
        for d in range(directions):
            ld = layer * directions + d
            p = params_of(sd, f"_l{layer}" + ("_reverse" if d else ""))
            out_b, fields_b, final_b = [], {}, [[] for _ in states]
            for b in range(Bn):
                state = tuple(s[ld, b] for s in states)
                zero = torch.zeros_like(state[0])
                out_t: list[Tensor] = [zero] * Tn
                fields_t: dict[str, list[Tensor]] = {}
                n = lengths[b]
                mask = None if masks is None else masks[(layer, d)][b]
                for t in range(n) if d == 0 else range(n - 1, -1, -1):
                    fields, new = step(p, layer_in[t, b], state, mask, **step_kw)
                    if zoneout is not None:
                        new = tuple(
                            z * s + (1 - z) * s_new for z, s, s_new in zip(zoneout, state, new)
                        )
                        fields.update(zip(STATE_NAMES[len(new)], new))
                    state = new
                    out_t[t] = state[0]
                    for k, v in fields.items():
                        fields_t.setdefault(k, [zero] * Tn)[t] = v
                out_b.append(torch.stack(out_t))
                for k, v in fields_t.items():
                    fields_b.setdefault(k, []).append(torch.stack(v))
                for k, s in enumerate(state):
                    final_b[k].append(s)
            outs.append(torch.stack(out_b, dim=1))  # (T, B, H)
            for k, v in fields_b.items():
                traces.setdefault(k, []).append(torch.stack(v, dim=1))
            for k, f in enumerate(final_b):
                finals[k].append(torch.stack(f))
        layer_in = torch.cat(outs, dim=2)
    trace = {k: torch.stack(v) for k, v in traces.items()}
    return layer_in, tuple(torch.stack(f) for f in finals), trace


# -------------------------------------------------------------------------- helpers


def weighted_sum(tensors: list[Tensor], seed: int = 99) -> Tensor:
    """A loss with fixed random weights on every element, so no gradient cancels."""
    g = torch.Generator().manual_seed(seed)
    return sum((t * torch.randn(t.shape, generator=g, dtype=t.dtype)).sum() for t in tensors)


def close(a: Tensor, b: Tensor, tol: float = TOL, msg: str | None = None) -> None:
    torch.testing.assert_close(a, b, atol=tol, rtol=0, msg=msg)


def random_lengths(seed: int, batch: int = B, steps: int = T) -> list[int]:
    """Random lengths in [1, T], one of them T (so the padded batch is not shorter)."""
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(1, steps + 1, (batch,), generator=g).tolist()
    lengths[batch // 2] = steps
    return lengths


def random_states(n: int, LD: int, seed: int, batch: int = B) -> tuple[Tensor, ...]:
    g = torch.Generator().manual_seed(seed)
    return tuple(0.5 * torch.randn(LD, batch, H, generator=g, dtype=F64) for _ in range(n))


def make_layer(name: str, seed: int = 0, **kw) -> nn.Module:
    torch.manual_seed(seed)
    return VARIANTS[name][0](I, H, dtype=F64, **kw)


def randomise_extras(m: nn.Module, seed: int) -> None:
    """Layer-norm gains and biases away from their 1 / 0 init, so that a slip between
    them (or a missing one) shows."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in m.named_parameters():
            if name.startswith("ln_"):
                p.copy_(torch.empty(p.shape, dtype=p.dtype).uniform_(0.5, 1.5, generator=g))
                if "_bias" in name:
                    p.sub_(1.0)


def hx_of(states: tuple[Tensor, ...] | None):
    if states is None:
        return None
    return states if len(states) > 1 else states[0]


def finals_of(result, n_states: int) -> tuple[Tensor, ...]:
    return tuple(result[1]) if n_states > 1 else (result[1],)


# --------------------------------------------------------------- layers by hand


CASES = [  # num_layers, bidirectional, batch_first, lengths, hx, bias
    pytest.param(2, True, False, True, True, True, id="2-layer-bidir-lengths-hx"),
    pytest.param(3, False, True, True, False, True, id="3-layer-batch-first-lengths"),
    pytest.param(1, True, True, False, True, False, id="1-layer-bidir-no-bias"),
]


@pytest.mark.parametrize("name", list(VARIANTS))
@pytest.mark.parametrize("L, bidir, batch_first, use_lengths, use_hx, bias", CASES)
def test_layer_equals_equations_by_hand(name, L, bidir, batch_first, use_lengths, use_hx, bias):
    """Outputs, final states, every trace field and every gradient against the hand loop."""
    _, _, step, n_states = VARIANTS[name]
    m = make_layer(name, num_layers=L, bidirectional=bidir, batch_first=batch_first, bias=bias)
    randomise_extras(m, seed=3)
    D = 2 if bidir else 1
    lengths = random_lengths(seed=L) if use_lengths else [T] * B
    g = torch.Generator().manual_seed(1)
    x = torch.randn(T, B, I, generator=g, dtype=F64, requires_grad=True)  # (T, B, I)
    states = random_states(n_states, L * D, seed=2) if use_hx else None
    if states is not None:
        states = tuple(s.requires_grad_() for s in states)

    # the layer
    result = m(
        x.transpose(0, 1) if batch_first else x,
        hx_of(states),
        lengths=lengths if use_lengths else None,
        return_gates=True,
    )
    out, trace = result[0], result[2]
    if batch_first:
        out = out.transpose(0, 1)
        assert all(f.shape[1:3] == (B, T) for f in trace)
        trace = type(trace)(*(f.transpose(1, 2) for f in trace))
    fins = finals_of(result, n_states)

    # by hand, from leaves that are the state dict's tensors
    sd = {k: v.detach().clone().requires_grad_() for k, v in m.state_dict().items()}
    zeros = tuple(torch.zeros(L * D, B, H, dtype=F64) for _ in range(n_states))
    h_states = states if states is not None else zeros
    kw = {"eps": 1e-5} if "LayerNorm" in name else {}
    out_h, fins_h, trace_h = layer_by_hand(step, sd, x, lengths, h_states, L, D, **kw)

    assert set(trace._fields) == set(trace_h)
    close(out, out_h)
    for a, b in zip(fins, fins_h):
        close(a, b)
    for field in trace._fields:
        close(getattr(trace, field), trace_h[field])
    past = torch.arange(T).unsqueeze(1) >= torch.tensor(lengths)  # (T, B)
    assert torch.equal(out[past], torch.zeros_like(out[past]))

    fields = sorted(trace._fields)
    loss = weighted_sum([out, *fins, *(getattr(trace, f) for f in fields)])
    loss_h = weighted_sum([out_h, *fins_h, *(trace_h[f] for f in fields)])
    names = [n for n, _ in m.named_parameters()]
    assert sorted(names) == sorted(sd)
    leaves = [x, *(states or ())]
    grads = torch.autograd.grad(loss, leaves + [getattr(m, n) for n in names])
    grads_h = torch.autograd.grad(loss_h, leaves + [sd[n] for n in names])
    labels = ["x"] + [f"initial state {k}" for k in range(len(states or ()))] + names
    for what, a, b in zip(labels, grads, grads_h, strict=True):
        close(a, b, msg=f"gradient of {what}")
    assert torch.equal(grads[0][past], torch.zeros_like(grads[0][past]))  # padding unread


def test_indrnn_tanh_by_hand():
    m = make_layer("IndRNN", nonlinearity="tanh", bidirectional=True)
    g = torch.Generator().manual_seed(1)
    x = torch.randn(T, B, I, generator=g, dtype=F64)
    lengths = random_lengths(seed=4)
    with torch.no_grad():
        out, h_n, trace = m(x, lengths=lengths, return_gates=True)
        zeros = (torch.zeros(2, B, H, dtype=F64),)
        out_h, (h_n_h,), _ = layer_by_hand(
            indrnn_step, m.state_dict(), x, lengths, zeros, 1, 2, nonlinearity="tanh"
        )
    close(out, out_h)
    close(h_n, h_n_h)
    assert (out < 0).any()  # tanh, not relu


@pytest.mark.parametrize("name", list(VARIANTS))
def test_cell_alone_is_one_step_by_hand(name):
    """Calling a cell on x_t and a state is one step of the equations."""
    _, cell_class, step, n_states = VARIANTS[name]
    torch.manual_seed(0)
    cell = cell_class(I, H, dtype=F64)
    randomise_extras(cell, seed=5)
    g = torch.Generator().manual_seed(1)
    x = torch.randn(B, I, generator=g, dtype=F64)
    state = tuple(torch.randn(B, H, generator=g, dtype=F64) for _ in range(n_states))
    h, new = cell(x, state)  # every variant is called as a Cell: state → (h', state')
    p = dict(cell.named_parameters())
    for b in range(B):
        _, expected = step(p, x[b], tuple(s[b] for s in state))
        for a, e in zip(new, expected):
            close(a[b], e)
        close(h[b], expected[0])


# ------------------------------------------------------------------------ gradcheck


class _Step(nn.Module):
    """A cell's step from raw input, every Gates field out: for functional_call."""

    def __init__(self, cell: nn.Module) -> None:
        super().__init__()
        self.cell = cell

    def forward(self, x: Tensor, *state: Tensor) -> tuple[Tensor, ...]:
        _, gates = self.cell.step(self.cell.project(x), state)
        return tuple(gates)


@pytest.mark.parametrize("name", list(VARIANTS))
def test_gradcheck_cell_step(name):
    _, cell_class, _, n_states = VARIANTS[name]
    torch.manual_seed(0)
    kw = {"nonlinearity": "tanh"} if name == "IndRNN" else {}  # no kink for finite differences
    module = _Step(cell_class(2, 3, dtype=F64, **kw))
    names = [n for n, _ in module.named_parameters()]
    g = torch.Generator().manual_seed(1)
    x = torch.randn(2, 2, generator=g, dtype=F64, requires_grad=True)
    state = [torch.randn(2, 3, generator=g, dtype=F64, requires_grad=True) for _ in range(n_states)]
    params = [p.detach().clone().requires_grad_() for p in module.parameters()]

    def f(x, *rest):
        st, ps = rest[:n_states], rest[n_states:]
        return functional_call(module, dict(zip(names, ps)), (x, *st))

    assert torch.autograd.gradcheck(f, (x, *state, *params))


@pytest.mark.parametrize("name", list(VARIANTS))
def test_gradcheck_through_small_layer(name):
    """Bidirectional, with lengths and an initial state: input, state and parameters."""
    _, _, _, n_states = VARIANTS[name]
    torch.manual_seed(0)
    kw = {"nonlinearity": "tanh"} if name == "IndRNN" else {}
    m = VARIANTS[name][0](2, 2, bidirectional=True, dtype=F64, **kw)
    names = [n for n, _ in m.named_parameters()]
    g = torch.Generator().manual_seed(1)
    x = torch.randn(3, 2, 2, generator=g, dtype=F64, requires_grad=True)
    state = [
        torch.randn(2, 2, 2, generator=g, dtype=F64, requires_grad=True) for _ in range(n_states)
    ]
    params = [p.detach().clone().requires_grad_() for p in m.parameters()]

    def f(x, *rest):
        st, ps = rest[:n_states], rest[n_states:]
        out, fin = functional_call(
            m, dict(zip(names, ps)), (x, hx_of(tuple(st))), {"lengths": [3, 2]}
        )
        return (out, *(fin if n_states > 1 else (fin,)))

    assert torch.autograd.gradcheck(f, (x, *state, *params))


# ---------------------------------------------------------------------- properties


@pytest.mark.parametrize("name", ["LayerNormLSTM", "LayerNormGRU"])
@pytest.mark.parametrize("which", ["weight_ih", "weight_hh"])
def test_layer_norm_removes_the_scale_of_the_weights(name, which):
    """LN(a W v) = LN(W v) for a > 0 when eps = 0: the output does not change when every
    ``weight_ih_l{k}`` (or ``weight_hh_l{k}``) is multiplied by a positive constant."""
    m = make_layer(name, num_layers=2, bidirectional=True, eps=0.0)
    randomise_extras(m, seed=3)
    g = torch.Generator().manual_seed(1)
    x = torch.randn(T, B, I, generator=g, dtype=F64)
    # a nonzero h0: W_hh 0 has no variance to divide by when eps = 0
    states = random_states(VARIANTS[name][3], 4, seed=2)
    lengths = random_lengths(seed=6)
    with torch.no_grad():
        before = m(x, hx_of(states), lengths=lengths)
        for pname, p in m.named_parameters():
            if pname.startswith(which + "_l"):
                p.mul_(7.3)
        after = m(x, hx_of(states), lengths=lengths)
    close(after[0], before[0])
    for a, b in zip(finals_of(after, len(states)), finals_of(before, len(states))):
        close(a, b)


def test_layer_norm_scale_invariance_with_default_eps():
    """With eps = 1e-5 the invariance holds up to the eps term (and plain LSTM weights
    scaled the same way do change the output: the test can tell)."""
    x = torch.randn(T, B, I, generator=torch.Generator().manual_seed(1), dtype=F64)
    states = random_states(2, 1, seed=2)
    m = make_layer("LayerNormLSTM")
    lstm = rnnkit.LSTM(I, H, dtype=F64)
    with torch.no_grad():
        before, plain_before = m(x, states)[0], lstm(x, states)[0]
        for layer in (m, lstm):
            layer.weight_ih_l0.mul_(3.0)
            layer.weight_hh_l0.mul_(3.0)
        after, plain_after = m(x, states)[0], lstm(x, states)[0]
    close(after, before, 1e-3)
    assert (plain_after - plain_before).abs().max() > 1e-2


def test_cifg_forget_plus_input_is_one():
    m = make_layer("CIFGLSTM", num_layers=2, bidirectional=True)
    x = torch.randn(T, B, I, generator=torch.Generator().manual_seed(1), dtype=F64)
    lengths = random_lengths(seed=7)
    with torch.no_grad():
        _, _, trace = m(x, lengths=lengths, return_gates=True)
    real = torch.arange(T).unsqueeze(1) < torch.tensor(lengths)  # (T, B)
    total = (trace.forget + trace.input)[:, real]
    close(total, torch.ones_like(total), 1e-15)
    assert (trace.input[:, real] - 0.5).abs().max() > 0.01  # not a trivial 1/2 + 1/2


def test_peephole_with_zero_peepholes_is_the_lstm():
    """Outputs, states, every gate and the gradients of the shared parameters."""
    m = make_layer("PeepholeLSTM", num_layers=2, bidirectional=True)
    with torch.no_grad():
        for n, p in m.named_parameters():
            if n.startswith("peephole_"):
                p.zero_()
    lstm = rnnkit.LSTM(I, H, num_layers=2, bidirectional=True, dtype=F64)
    sd = {k: v for k, v in m.state_dict().items() if not k.startswith("peephole_")}
    lstm.load_state_dict(sd)
    x = torch.randn(T, B, I, generator=torch.Generator().manual_seed(1), dtype=F64)
    lengths = random_lengths(seed=8)
    results = []
    for layer in (m, lstm):
        out, (h_n, c_n), trace = layer(x, lengths=lengths, return_gates=True)
        loss = weighted_sum([out, h_n, c_n, *trace])
        grads = torch.autograd.grad(loss, [getattr(layer, k) for k in sd])
        results.append([out, h_n, c_n, *trace, *grads])
    for a, b in zip(*results):
        close(a, b)


def test_peepholes_matter():
    """Nonzero peepholes change the gates (the comparison above is not vacuous)."""
    m = make_layer("PeepholeLSTM")
    lstm = rnnkit.LSTM(I, H, dtype=F64)
    lstm.load_state_dict({k: v for k, v in m.state_dict().items() if "peephole" not in k})
    x = torch.randn(T, B, I, generator=torch.Generator().manual_seed(1), dtype=F64)
    with torch.no_grad():
        assert (m(x)[0] - lstm(x)[0]).abs().max() > 1e-3


# ------------------------------------------------------------------------ forget bias


def seeded_lstm(**kw) -> nn.Module:
    torch.manual_seed(0)
    return rnnkit.LSTM(I, H, dtype=F64, **kw)


def forget_slices(m: nn.Module, block: int) -> list[Tensor]:
    """bias_ih + bias_hh, rows of gate block ``block``, for every layer and direction."""
    sd = m.state_dict()
    sums = []
    for k in sd:
        if k.startswith("bias_ih"):
            total = sd[k] + sd["bias_hh" + k[len("bias_ih") :]]
            sums.append(total[block * H : (block + 1) * H])
    return sums


@pytest.mark.parametrize(
    "make, block, sign",
    [
        (lambda **kw: seeded_lstm(**kw), 1, 1),
        (lambda **kw: make_layer("LayerNormLSTM", **kw), 1, 1),
        (lambda **kw: make_layer("PeepholeLSTM", **kw), 1, 1),
        (lambda **kw: make_layer("CIFGLSTM", **kw), 0, -1),
    ],
    ids=["LSTM", "LayerNormLSTM", "PeepholeLSTM", "CIFGLSTM"],
)
def test_forget_bias(make, block, sign):
    """The forget slices (CIFG: the input slices) of the two biases sum to b (CIFG: -b),
    the other slices keep their random init, and reset_parameters does it again."""
    b = 1.7
    m = make(forget_bias=b, num_layers=2, bidirectional=True)
    plain = make(num_layers=2, bidirectional=True)  # same seed: same random draws
    for s in forget_slices(m, block):
        assert torch.equal(s, torch.full_like(s, sign * b))
    other = [k for k in m.state_dict() if k.startswith("bias")]
    for k in other:
        rows = torch.ones(m.state_dict()[k].shape[0], dtype=torch.bool)
        rows[block * H : (block + 1) * H] = False
        assert torch.equal(m.state_dict()[k][rows], plain.state_dict()[k][rows]), k
    with torch.no_grad():
        for p in m.parameters():
            p.fill_(0.3)
    m.reset_parameters()
    for s in forget_slices(m, block):
        assert torch.equal(s, torch.full_like(s, sign * b))


@pytest.mark.parametrize("name", ["LayerNormLSTM", "CIFGLSTM", "PeepholeLSTM"])
def test_forget_bias_makes_the_forget_gate_sigmoid_b(name):
    """With zero weights (and zero peepholes), f = σ(b): the forget bias is a bias on
    the forget gate, CIFG's too (f = 1 - σ(-b) = σ(b)). Layer norm of a zero projection
    is 0 (eps > 0), so only b is left there as well."""
    b = 1.3
    m = make_layer(name, forget_bias=b)
    with torch.no_grad():
        for n, p in m.named_parameters():
            if not n.startswith(("bias", "ln_")):  # weights and peepholes
                p.zero_()
    x = torch.randn(T, B, I, generator=torch.Generator().manual_seed(1), dtype=F64)
    with torch.no_grad():
        _, _, trace = m(x, random_states(2, 1, seed=2), return_gates=True)
    close(trace.forget, torch.full_like(trace.forget, 1 / (1 + math.exp(-b))), 1e-12)


@pytest.mark.parametrize("layer", ["LayerNormLSTM", "PeepholeLSTM", "CIFGLSTM"])
def test_forget_bias_needs_bias(layer):
    with pytest.raises(ValueError, match=f"^{layer}Cell: forget_bias needs bias=True"):
        getattr(rnnkit, layer)(I, H, bias=False, forget_bias=1.0)


# ------------------------------------------------------------ conventions, state dict


EXTRA_NAMES = {
    "LayerNormLSTM": ["ln_ih_gain", "ln_hh_gain", "ln_cell_gain", "ln_cell_bias"],
    "LayerNormGRU": ["ln_ih_gain", "ln_hh_gain"],
    "PeepholeLSTM": ["peephole_i", "peephole_f", "peephole_o"],
    "CIFGLSTM": [],
    "MGU": [],
    "IndRNN": [],
}
CHUNKS = {"LayerNormLSTM": 4, "LayerNormGRU": 3, "PeepholeLSTM": 4, "CIFGLSTM": 3, "MGU": 2}


@pytest.mark.parametrize("name", list(VARIANTS))
def test_state_dict_names_shapes_and_round_trip(name):
    m = make_layer(name, num_layers=2, bidirectional=True)
    sd = m.state_dict()
    base = ["weight_ih", "weight_hh", "bias_ih", "bias_hh"] + EXTRA_NAMES[name]
    expected = [f"{n}_l{k}{s}" for k in range(2) for s in ("", "_reverse") for n in base]
    assert list(sd) == expected
    G = CHUNKS.get(name, 1)
    assert sd["weight_ih_l0"].shape == (G * H, I)
    assert sd["weight_ih_l1_reverse"].shape == (G * H, 2 * H)
    assert sd["weight_hh_l1"].shape == ((H,) if name == "IndRNN" else (G * H, H))

    other = make_layer(name, seed=1, num_layers=2, bidirectional=True)
    assert not torch.equal(other.weight_ih_l0, m.weight_ih_l0)
    other.load_state_dict(sd)
    x = torch.randn(T, B, I, generator=torch.Generator().manual_seed(1), dtype=F64)
    with torch.no_grad():
        a, b = m(x), other(x)
    assert torch.equal(a[0], b[0])
    again = other.state_dict()
    assert list(again) == list(sd) and all(torch.equal(again[k], sd[k]) for k in sd)
    with pytest.raises(RuntimeError):
        other.load_state_dict({k: v for k, v in sd.items() if k != "weight_hh_l1_reverse"})


@pytest.mark.parametrize("name", ["LayerNormLSTM", "MGU"])
def test_packed_and_unbatched_inputs(name):
    """PackedSequence in → PackedSequence out, equal to the padded batch with lengths;
    an unbatched (T, I) input equals a batch of one."""
    from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

    m = make_layer(name, num_layers=2, bidirectional=True)
    x = torch.randn(T, B, I, generator=torch.Generator().manual_seed(1), dtype=F64)
    lengths = random_lengths(seed=9)
    with torch.no_grad():
        out, fin = m(x, lengths=lengths)
        packed_out, packed_fin = m(pack_padded_sequence(x, lengths, enforce_sorted=False))
        one_out, one_fin = m(x[:, 1])
        ref_out, ref_fin = m(x[:, 1:2])
    assert isinstance(packed_out, nn.utils.rnn.PackedSequence)
    close(pad_packed_sequence(packed_out, total_length=T)[0], out, 0)
    for a, b in zip(
        packed_fin if isinstance(fin, tuple) else (packed_fin,),
        fin if isinstance(fin, tuple) else (fin,),
    ):
        close(a, b, 0)
    close(one_out, ref_out[:, 0], 1e-12)
    for a, b in zip(
        one_fin if isinstance(fin, tuple) else (one_fin,),
        ref_fin if isinstance(fin, tuple) else (ref_fin,),
    ):
        close(a, b[:, 0], 1e-12)
