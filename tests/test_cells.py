"""Cells: parity with the torch.nn cells, gradients, and every gate recomputed by hand."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor, nn
from torch.func import functional_call

import rnnkit

B, I, H = 3, 4, 5
KINDS = ["rnn_tanh", "rnn_relu", "lstm", "gru"]
TOL = {torch.float64: 1e-9, torch.float32: 1e-5}


def make_pair(kind: str, bias: bool, dtype: torch.dtype) -> tuple[nn.Module, nn.Module]:
    """A torch.nn cell and the rnnkit cell loaded with its state dict."""
    torch.manual_seed(0)
    kw = {"bias": bias, "dtype": dtype}
    if kind.startswith("rnn"):
        nl = kind.split("_")[1]
        ref: nn.Module = nn.RNNCell(I, H, nonlinearity=nl, **kw)
        ours: nn.Module = rnnkit.RNNCell(I, H, nonlinearity=nl, **kw)
    elif kind == "lstm":
        ref, ours = nn.LSTMCell(I, H, **kw), rnnkit.LSTMCell(I, H, **kw)
    else:
        ref, ours = nn.GRUCell(I, H, **kw), rnnkit.GRUCell(I, H, **kw)
    ours.load_state_dict(ref.state_dict())
    return ref, ours


def make_inputs(kind: str, dtype: torch.dtype, batch: tuple[int, ...] = (B,), seed: int = 1):
    """x (B, I) and a state (h or (h, c)), all leaves requiring grad."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(*batch, I, generator=g, dtype=dtype, requires_grad=True)
    states = [
        torch.randn(*batch, H, generator=g, dtype=dtype, requires_grad=True)
        for _ in range(2 if kind == "lstm" else 1)
    ]
    hx = tuple(states) if kind == "lstm" else states[0]
    return x, hx, states


def as_tuple(out) -> tuple[Tensor, ...]:
    return tuple(out) if isinstance(out, tuple) else (out,)


def loss_of(outs: tuple[Tensor, ...]) -> Tensor:
    """A loss with random (seed-fixed) weights on every output, so no gradient cancels."""
    g = torch.Generator().manual_seed(99)
    return sum((o * torch.randn(o.shape, generator=g, dtype=o.dtype)).sum() for o in outs)


def close(a: Tensor, b: Tensor, tol: float) -> None:
    torch.testing.assert_close(a, b, atol=tol, rtol=0)


# ------------------------------------------------------------------ parity with torch


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize(
    "dtype, bias, with_hx",
    [
        (torch.float64, True, True),
        (torch.float64, False, False),
        (torch.float32, True, False),
        (torch.float32, False, True),
    ],
)
def test_cell_matches_torch_outputs_and_gradients(kind, dtype, bias, with_hx):
    ref, ours = make_pair(kind, bias, dtype)
    x, hx, states = make_inputs(kind, dtype)
    if not with_hx:
        hx, states = None, []
    leaves = [x, *states]
    results = []
    for cell in (ref, ours):
        outs = as_tuple(cell(x, hx))
        names, params = zip(*cell.named_parameters())
        grads = torch.autograd.grad(loss_of(outs), leaves + list(params))
        results.append((outs, dict(zip(["x", *map(str, range(len(states))), *names], grads))))
    (ref_outs, ref_grads), (our_outs, our_grads) = results
    tol = TOL[dtype]
    assert len(ref_outs) == len(our_outs)
    for a, b in zip(our_outs, ref_outs):
        close(a, b, tol)
    assert set(our_grads) == set(ref_grads)
    assert ("bias_ih" in our_grads) == bias
    for name, grad in ref_grads.items():
        close(our_grads[name], grad, tol)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("with_hx", [True, False])
def test_unbatched_input(kind, with_hx):
    ref, ours = make_pair(kind, True, torch.float64)
    x, hx, _ = make_inputs(kind, torch.float64, batch=())
    if not with_hx:
        hx = None
    out = as_tuple(ours(x, hx))
    batched_hx = None if hx is None else tuple(s.unsqueeze(0) for s in as_tuple(hx))
    if batched_hx is not None and kind != "lstm":
        batched_hx = batched_hx[0]
    batched = as_tuple(ours(x.unsqueeze(0), batched_hx))
    expected = as_tuple(ref(x, hx))
    for o, ob, e in zip(out, batched, expected):
        assert o.shape == (H,)
        close(o, ob.squeeze(0), 1e-12)
        close(o, e, 1e-12)
    if kind in ("lstm", "gru"):
        gates = ours(x, hx, return_gates=True)
        assert all(g.shape == (H,) for g in gates)
        gates_b = ours(x.unsqueeze(0), batched_hx, return_gates=True)
        for g, gb in zip(gates, gates_b):
            close(g, gb.squeeze(0), 1e-12)


def test_bad_arguments_raise():
    with pytest.raises(ValueError):
        rnnkit.RNNCell(I, H, nonlinearity="sigmoid")
    for cell in (rnnkit.RNNCell(I, H), rnnkit.LSTMCell(I, H), rnnkit.GRUCell(I, H)):
        with pytest.raises(ValueError):
            cell(torch.randn(2, 2, I))


# -------------------------------------------------------------------------- gradcheck


@pytest.mark.parametrize(
    "kind, bias",
    [
        ("rnn_tanh", True),
        ("rnn_relu", True),
        ("lstm", True),
        ("lstm", False),
        ("gru", True),
        ("gru_cho", True),
        ("gru_cho", False),
    ],
)
def test_gradcheck(kind, bias):
    """Finite differences w.r.t. input, state and every parameter, in float64."""
    i, h = 2, 3  # tiny: finite differences cost two forward passes per scalar
    torch.manual_seed(0)
    if kind.startswith("rnn"):
        cell: nn.Module = rnnkit.RNNCell(i, h, bias=bias, nonlinearity=kind.split("_")[1])
    elif kind == "lstm":
        cell = rnnkit.LSTMCell(i, h, bias=bias)
    else:
        cell = rnnkit.GRUCell(i, h, bias=bias, reset_after=kind == "gru")
    cell = cell.double()
    names, params = zip(
        *((n, p.detach().clone().requires_grad_()) for n, p in cell.named_parameters())
    )
    g = torch.Generator().manual_seed(1)
    x = torch.randn(2, i, generator=g, dtype=torch.float64, requires_grad=True)
    states = [
        torch.randn(2, h, generator=g, dtype=torch.float64, requires_grad=True)
        for _ in range(2 if kind == "lstm" else 1)
    ]

    def f(x, *rest):
        st, ps = rest[: len(states)], rest[len(states) :]
        hx = tuple(st) if kind == "lstm" else st[0]
        return functional_call(cell, dict(zip(names, ps)), (x, hx))

    # the wrapper really routes the parameters (else gradcheck would compare zeros)
    grads = torch.autograd.grad(loss_of(as_tuple(f(x, *states, *params))), [x, *states, *params])
    assert all(gr.abs().max() > 0 for gr in grads)
    assert torch.autograd.gradcheck(f, (x, *states, *params), eps=1e-6, atol=1e-7)


# --------------------------------------------------------------------- gates by hand


def lin(x: Tensor, w: Tensor, b: Tensor | None) -> Tensor:
    """W x + b, batched over rows of x."""
    return x @ w.T + (0 if b is None else b)


def split(t: Tensor | None, n: int) -> tuple:
    return (None,) * n if t is None else t.split(H, dim=0)


@pytest.mark.parametrize("bias", [True, False])
def test_lstm_gates_by_hand(bias):
    _, cell = make_pair("lstm", bias, torch.float64)
    x, (h, c), _ = make_inputs("lstm", torch.float64)
    W_ii, W_if, W_ig, W_io = split(cell.weight_ih, 4)  # torch order: i f g o
    W_hi, W_hf, W_hg, W_ho = split(cell.weight_hh, 4)
    b_ii, b_if, b_ig, b_io = split(cell.bias_ih, 4)
    b_hi, b_hf, b_hg, b_ho = split(cell.bias_hh, 4)
    with torch.no_grad():
        i = torch.sigmoid(lin(x, W_ii, b_ii) + lin(h, W_hi, b_hi))
        f = torch.sigmoid(lin(x, W_if, b_if) + lin(h, W_hf, b_hf))
        g = torch.tanh(lin(x, W_ig, b_ig) + lin(h, W_hg, b_hg))
        o = torch.sigmoid(lin(x, W_io, b_io) + lin(h, W_ho, b_ho))
        c_new = f * c + i * g
        h_new = o * torch.tanh(c_new)
        gates = cell(x, (h, c), return_gates=True)
    assert isinstance(gates, rnnkit.LSTMGates)
    expected = rnnkit.LSTMGates(i, f, g, o, c_new, h_new)
    for field in rnnkit.LSTMGates._fields:
        close(getattr(gates, field), getattr(expected, field), 1e-12)
    h_out, c_out = cell(x, (h, c))
    close(h_out, h_new, 1e-12)
    close(c_out, c_new, 1e-12)
    # no state means zero state
    zero = torch.zeros(B, H, dtype=torch.float64)
    for a, b in zip(cell(x, return_gates=True), cell(x, (zero, zero), return_gates=True)):
        close(a, b, 0)


def gru_by_hand(cell: nn.Module, x: Tensor, h: Tensor, reset_after: bool) -> rnnkit.GRUGates:
    W_ir, W_iz, W_in = split(cell.weight_ih, 3)  # torch order: r z n
    W_hr, W_hz, W_hn = split(cell.weight_hh, 3)
    b_ir, b_iz, b_in = split(cell.bias_ih, 3)
    b_hr, b_hz, b_hn = split(cell.bias_hh, 3)
    r = torch.sigmoid(lin(x, W_ir, b_ir) + lin(h, W_hr, b_hr))
    z = torch.sigmoid(lin(x, W_iz, b_iz) + lin(h, W_hz, b_hz))
    if reset_after:  # torch.nn / cuDNN
        n = torch.tanh(lin(x, W_in, b_in) + r * lin(h, W_hn, b_hn))
    else:  # Cho et al. 2014
        n = torch.tanh(lin(x, W_in, b_in) + lin(r * h, W_hn, b_hn))
    return rnnkit.GRUGates(r, z, n, (1 - z) * n + z * h)


@pytest.mark.parametrize("reset_after", [True, False])
@pytest.mark.parametrize("bias", [True, False])
def test_gru_gates_by_hand(reset_after, bias):
    ref, default = make_pair("gru", bias, torch.float64)
    cell = rnnkit.GRUCell(I, H, bias=bias, dtype=torch.float64, reset_after=reset_after)
    cell.load_state_dict(ref.state_dict())
    x, h, _ = make_inputs("gru", torch.float64)
    with torch.no_grad():
        gates = cell(x, h, return_gates=True)
        expected = gru_by_hand(cell, x, h, reset_after)
        assert isinstance(gates, rnnkit.GRUGates)
        for field in rnnkit.GRUGates._fields:
            close(getattr(gates, field), getattr(expected, field), 1e-12)
        close(cell(x, h), expected.hidden, 1e-12)
        other = gru_by_hand(cell, x, h, not reset_after)
        # the two forms differ (the formula matters), and only the candidate and h do
        assert (gates.candidate - other.candidate).abs().max() > 1e-3
        close(gates.reset, other.reset, 1e-12)
        if reset_after:
            close(cell(x, h), ref(x, h), 1e-12)
        else:
            assert (cell(x, h) - default(x, h)).abs().max() > 1e-3


@pytest.mark.parametrize("nonlinearity", ["tanh", "relu"])
def test_rnn_cell_by_hand(nonlinearity):
    ref, cell = make_pair(f"rnn_{nonlinearity}", True, torch.float64)
    x, h, _ = make_inputs("rnn", torch.float64, batch=(8,))
    with torch.no_grad():
        pre = lin(x, cell.weight_ih, cell.bias_ih) + lin(h, cell.weight_hh, cell.bias_hh)
        expected = torch.relu(pre) if nonlinearity == "relu" else torch.tanh(pre)
        out = cell(x, h)
    close(out, expected, 1e-12)
    if nonlinearity == "relu":
        # both branches of relu are exercised, and it is not tanh
        assert (out == 0).any() and (out > 1e-3).any()
        assert (pre < 0).any()
        assert (out - torch.tanh(pre)).abs().max() > 1e-3
