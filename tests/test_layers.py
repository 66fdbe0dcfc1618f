"""Layers: parity with torch.nn for every engine, gate traces recomputed by hand, state
dicts, dropout, lengths and errors."""

from __future__ import annotations

import warnings
from typing import NamedTuple

import pytest
import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence, pad_packed_sequence

import rnnkit

T, B, I, H = 5, 4, 3, 4
LENGTHS = [3, 5, 1, 4]  # unsorted, one full length and one of length 1
ENGINES = ["explicit", "reference", "native", "auto"]
TOL = {torch.float64: 1e-9, torch.float32: 1e-5}
TORCH = {"RNN": nn.RNN, "LSTM": nn.LSTM, "GRU": nn.GRU}


def make_pair(
    kind: str, engine: str = "auto", dtype: torch.dtype = torch.float64, seed: int = 0, **kw
) -> tuple[nn.Module, nn.Module]:
    """A torch.nn layer and the rnnkit layer loaded with its state dict."""
    torch.manual_seed(seed)
    ref = TORCH[kind](I, H, dtype=dtype, **kw)
    ours = getattr(rnnkit, kind)(I, H, engine=engine, dtype=dtype, **kw)
    ours.load_state_dict(ref.state_dict())
    return ref, ours


def initial_state(m: nn.Module, dtype: torch.dtype, batch: tuple[int, ...] = (B,), seed=2):
    """Random (h0,) or (h0, c0), leaves requiring grad, shaped for layer ``m``."""
    g = torch.Generator().manual_seed(seed)
    LD = m.num_layers * (2 if m.bidirectional else 1)
    sizes = [getattr(m, "proj_size", 0) or m.hidden_size]
    if isinstance(m, nn.LSTM):
        sizes.append(m.hidden_size)
    return tuple(
        torch.randn(LD, *batch, s, generator=g, dtype=dtype, requires_grad=True) for s in sizes
    )


def pack_hx(kind: str, states: tuple[Tensor, ...] | None):
    if states is None:
        return None
    return states if kind == "LSTM" else states[0]


def finals(kind: str, result) -> tuple[Tensor, ...]:
    return tuple(result[1]) if kind == "LSTM" else (result[1],)


def weighted_sum(tensors: list[Tensor], seed: int = 99) -> Tensor:
    """Σ w ⊙ t with random (seed-fixed) weights: touches every output and final state."""
    g = torch.Generator().manual_seed(seed)
    return sum((t * torch.randn(t.shape, generator=g, dtype=t.dtype)).sum() for t in tensors)


def close(a: Tensor, b: Tensor, tol: float) -> None:
    torch.testing.assert_close(a, b, atol=tol, rtol=0)


# ------------------------------------------------------------------ parity with torch


class Case(NamedTuple):
    kind: str
    layers: int = 1
    bidirectional: bool = False
    batch_first: bool = False
    bias: bool = True
    h0: bool = False
    mode: str = "full"  # "full", "lengths" (padded + lengths) or "packed"
    nonlinearity: str = "tanh"
    proj_size: int = 0
    dtype: torch.dtype = torch.float64


CASES = {
    "rnn_tanh": Case("RNN"),
    "rnn_tanh_l3_bi_h0_nobias": Case("RNN", 3, True, bias=False, h0=True),
    "rnn_relu_l2_bi_bf_lengths": Case(
        "RNN", 2, True, True, h0=True, mode="lengths", nonlinearity="relu"
    ),
    "rnn_relu_packed_nobias": Case("RNN", bias=False, h0=True, mode="packed", nonlinearity="relu"),
    "lstm_h0": Case("LSTM", h0=True),
    "lstm_l3_bi_bf_lengths_nobias": Case("LSTM", 3, True, True, False, True, "lengths"),
    "lstm_l2_bi_packed": Case("LSTM", 2, True, mode="packed"),
    "lstm_l2_bi_proj_lengths": Case("LSTM", 2, True, h0=True, mode="lengths", proj_size=2),
    "lstm_proj_bf_packed_nobias": Case("LSTM", 1, False, True, False, mode="packed", proj_size=3),
    "gru_bi_bf": Case("GRU", 1, True, True),
    "gru_l3_lengths_nobias": Case("GRU", 3, bias=False, h0=True, mode="lengths"),
    "gru_l2_bi_bf_packed": Case("GRU", 2, True, True, h0=True, mode="packed"),
    "lstm_f32_l2_bi_lengths": Case("LSTM", 2, True, h0=True, mode="lengths", dtype=torch.float32),
    "gru_f32_packed": Case("GRU", 2, h0=True, mode="packed", dtype=torch.float32),
    "rnn_f32_bi_bf": Case("RNN", 1, True, True, h0=True, dtype=torch.float32),
}


def run_case(m: nn.Module, case: Case, x: Tensor, states, is_torch: bool):
    """Run ``m`` on the case's input; return (output data, final states)."""
    hx = pack_hx(case.kind, states)
    bf = case.batch_first
    if case.mode == "packed":
        packed = pack_padded_sequence(x, LENGTHS, batch_first=bf, enforce_sorted=False)
        result = m(packed, hx)
        assert isinstance(result[0], PackedSequence)
        torch.testing.assert_close(result[0].batch_sizes, packed.batch_sizes, rtol=0, atol=0)
        torch.testing.assert_close(result[0].sorted_indices, packed.sorted_indices, rtol=0, atol=0)
        out = result[0].data
    elif case.mode == "lengths" and is_torch:
        packed = pack_padded_sequence(x, LENGTHS, batch_first=bf, enforce_sorted=False)
        result = m(packed, hx)
        out = pad_packed_sequence(result[0], batch_first=bf, total_length=T)[0]
    elif case.mode == "lengths":
        result = m(x, hx, lengths=torch.tensor(LENGTHS))
        out = result[0]
    else:
        result = m(x, hx)
        out = result[0]
    return out, finals(case.kind, result)


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("name", list(CASES))
def test_matches_torch(name, engine):
    case = CASES[name]
    kw = {
        "num_layers": case.layers,
        "bidirectional": case.bidirectional,
        "batch_first": case.batch_first,
        "bias": case.bias,
    }
    if case.kind == "RNN":
        kw["nonlinearity"] = case.nonlinearity
    if case.proj_size:
        kw["proj_size"] = case.proj_size
    ref, ours = make_pair(case.kind, engine, case.dtype, **kw)
    g = torch.Generator().manual_seed(1)
    shape = (B, T, I) if case.batch_first else (T, B, I)
    x = torch.randn(shape, generator=g, dtype=case.dtype, requires_grad=True)
    states = initial_state(ref, case.dtype) if case.h0 else None

    results = {}
    for label, m in (("torch", ref), ("ours", ours)):
        out, fin = run_case(m, case, x, states, is_torch=label == "torch")
        names, params = zip(*m.named_parameters())
        leaves = [x, *(states or ()), *params]
        grads = torch.autograd.grad(weighted_sum([out, *fin]), leaves)
        keys = ["input", *(f"state{k}" for k in range(len(states or ()))), *names]
        results[label] = (out, fin, dict(zip(keys, grads)))

    tol = TOL[case.dtype]
    (out_t, fin_t, grads_t), (out_o, fin_o, grads_o) = results["torch"], results["ours"]
    close(out_o, out_t, tol)
    assert len(fin_o) == len(fin_t) == (2 if case.kind == "LSTM" else 1)
    for a, b in zip(fin_o, fin_t):
        close(a, b, tol)
    assert set(grads_o) == set(grads_t)
    assert any(k.startswith("bias") for k in grads_o) == case.bias
    for key, grad in grads_t.items():
        close(grads_o[key], grad, tol)
    if case.mode == "lengths":
        past = torch.arange(T).unsqueeze(1) >= torch.tensor(LENGTHS)  # (T, B)
        if case.batch_first:
            past = past.T
        assert torch.equal(out_o[past], torch.zeros_like(out_o[past]))
        if case.nonlinearity == "tanh":  # relu outputs may be exactly zero
            assert (out_o[~past] != 0).all()


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("kind", ["RNN", "LSTM", "GRU"])
def test_unbatched_input_equals_batch_of_one(kind, engine):
    ref, ours = make_pair(kind, engine, num_layers=2, bidirectional=True)
    x = torch.randn(T, I, dtype=torch.float64)
    states = initial_state(ours, torch.float64, batch=())
    for hx in (None, pack_hx(kind, states)):
        out, *rest = ours(x, hx)
        hx_b = None if hx is None else pack_hx(kind, tuple(s.unsqueeze(1) for s in states))
        out_b, *rest_b = ours(x.unsqueeze(1), hx_b)
        out_t, *rest_t = ref(x, hx)
        assert out.shape == (T, 2 * H)
        close(out, out_b.squeeze(1), 1e-12)
        close(out, out_t, 1e-9)
        fin, fin_b, fin_t = (
            finals(kind, [0, *rest]),
            finals(kind, [0, *rest_b]),
            finals(kind, [0, *rest_t]),
        )
        for a, b, c in zip(fin, fin_b, fin_t):
            assert a.shape == (4, H)
            close(a, b.squeeze(1), 1e-12)
            close(a, c, 1e-9)


# --------------------------------------------------------------------- gates by hand


def split(t: Tensor | None, n: int) -> tuple:
    return (None,) * n if t is None else t.split(H, dim=0)


def mv(w: Tensor, v: Tensor, b: Tensor | None) -> Tensor:
    return w @ v + (0 if b is None else b)


def step_by_hand(kind: str, p: dict, x: Tensor, h: Tensor, c: Tensor | None, reset_after: bool):
    """One step for one sequence, straight from the equations; returns (fields, h, c)."""
    if kind == "LSTM":
        W_ii, W_if, W_ig, W_io = split(p["weight_ih"], 4)  # torch order: i f g o
        W_hi, W_hf, W_hg, W_ho = split(p["weight_hh"], 4)
        b_ii, b_if, b_ig, b_io = split(p.get("bias_ih"), 4)
        b_hi, b_hf, b_hg, b_ho = split(p.get("bias_hh"), 4)
        i = torch.sigmoid(mv(W_ii, x, b_ii) + mv(W_hi, h, b_hi))
        f = torch.sigmoid(mv(W_if, x, b_if) + mv(W_hf, h, b_hf))
        g = torch.tanh(mv(W_ig, x, b_ig) + mv(W_hg, h, b_hg))
        o = torch.sigmoid(mv(W_io, x, b_io) + mv(W_ho, h, b_ho))
        c = f * c + i * g
        h = o * torch.tanh(c)
        if "weight_hr" in p:
            h = p["weight_hr"] @ h
        return {"input": i, "forget": f, "candidate": g, "output": o, "cell": c, "hidden": h}, h, c
    if kind == "GRU":
        W_ir, W_iz, W_in = split(p["weight_ih"], 3)  # torch order: r z n
        W_hr, W_hz, W_hn = split(p["weight_hh"], 3)
        b_ir, b_iz, b_in = split(p.get("bias_ih"), 3)
        b_hr, b_hz, b_hn = split(p.get("bias_hh"), 3)
        r = torch.sigmoid(mv(W_ir, x, b_ir) + mv(W_hr, h, b_hr))
        z = torch.sigmoid(mv(W_iz, x, b_iz) + mv(W_hz, h, b_hz))
        if reset_after:
            n = torch.tanh(mv(W_in, x, b_in) + r * mv(W_hn, h, b_hn))
        else:
            n = torch.tanh(mv(W_in, x, b_in) + mv(W_hn, r * h, b_hn))
        h = (1 - z) * n + z * h
        return {"reset": r, "update": z, "candidate": n, "hidden": h}, h, None
    h = torch.tanh(
        mv(p["weight_ih"], x, p.get("bias_ih")) + mv(p["weight_hh"], h, p.get("bias_hh"))
    )
    return {"hidden": h}, h, None


def layer_by_hand(kind: str, m: nn.Module, x: Tensor, lengths: list[int], states, reset_after=True):
    """An explicit Python loop over layers, directions, sequences and time.

    x ``(T, B, I)``; returns output ``(T, B, D·H)``, final states and a dict of traces
    ``(L·D, T, B, ·)``, zero past each length. The reverse direction starts at each
    sequence's last real token.
    """
    D = 2 if m.bidirectional else 1
    L = m.num_layers
    sd = m.state_dict()
    h0 = states[0]
    c0 = states[1] if kind == "LSTM" else None
    traces: dict[str, Tensor] = {}
    h_n = torch.zeros_like(h0)
    c_n = None if c0 is None else torch.zeros_like(c0)
    layer_in = x
    for layer in range(L):
        layer_out = x.new_zeros(T, B, D * h0.shape[-1])
        for d in range(D):
            sfx = f"_l{layer}" + ("_reverse" if d else "")
            p = {k[: -len(sfx)]: v for k, v in sd.items() if k.endswith(sfx)}
            for b in range(B):
                h = h0[layer * D + d, b]
                c = None if c0 is None else c0[layer * D + d, b]
                times = range(lengths[b]) if d == 0 else range(lengths[b] - 1, -1, -1)
                for t in times:
                    fields, h, c = step_by_hand(kind, p, layer_in[t, b], h, c, reset_after)
                    for k, v in fields.items():
                        if k not in traces:
                            traces[k] = x.new_zeros(L * D, T, B, v.shape[0])
                        traces[k][layer * D + d, t, b] = v
                    P = h.shape[0]
                    layer_out[t, b, d * P : (d + 1) * P] = h
                h_n[layer * D + d, b] = h
                if c_n is not None:
                    c_n[layer * D + d, b] = c
        layer_in = layer_out
    return layer_in, (h_n,) if c_n is None else (h_n, c_n), traces


GATE_CASES = [
    ("LSTM", "explicit", False, {}),
    ("LSTM", "auto", True, {}),
    ("LSTM", "reference", True, {"proj_size": 2}),
    ("GRU", "explicit", True, {}),
    ("GRU", "reference", False, {}),
    ("GRU", "auto", True, {"reset_after": False}),
    ("RNN", "explicit", True, {}),
]


@pytest.mark.parametrize("kind, engine, batch_first, extra", GATE_CASES)
def test_gate_trace_by_hand(kind, engine, batch_first, extra):
    """2-layer bidirectional layer with lengths: every trace field recomputed by hand."""
    torch.manual_seed(0)
    m = getattr(rnnkit, kind)(
        I,
        H,
        num_layers=2,
        bidirectional=True,
        batch_first=batch_first,
        engine=engine,
        dtype=torch.float64,
        **extra,
    )
    g = torch.Generator().manual_seed(1)
    x = torch.randn(T, B, I, generator=g, dtype=torch.float64)  # (T, B, I)
    states = tuple(s.detach() for s in initial_state(m, torch.float64))
    with torch.no_grad():
        out, fin, expected = layer_by_hand(
            kind, m, x, LENGTHS, states, extra.get("reset_after", True)
        )
        result = m(
            x.transpose(0, 1) if batch_first else x,
            pack_hx(kind, states),
            lengths=LENGTHS,
            return_gates=True,
        )
    trace_type = {"LSTM": rnnkit.LSTMGates, "GRU": rnnkit.GRUGates, "RNN": rnnkit.RNNGates}[kind]
    trace = result[2]
    assert isinstance(trace, trace_type)
    assert set(trace._fields) == set(expected)
    past = torch.arange(T).unsqueeze(1) >= torch.tensor(LENGTHS)  # (T, B)
    for field in trace._fields:
        got = getattr(trace, field)
        P = expected[field].shape[-1]
        assert got.shape == ((4, B, T, P) if batch_first else (4, T, B, P))
        if batch_first:
            got = got.transpose(1, 2)
        close(got, expected[field], 1e-12)
        assert torch.equal(got[:, past], torch.zeros_like(got[:, past]))
    got_out = result[0].transpose(0, 1) if batch_first else result[0]
    close(got_out, out, 1e-12)
    for a, b in zip(finals(kind, result), fin):
        close(a, b, 1e-12)


# ------------------------------------------------------------------------ state dicts


ROUND_TRIP = [
    ("LSTM", {"num_layers": 2, "bidirectional": True, "proj_size": 2}),
    ("LSTM", {"bias": False}),
    ("GRU", {"num_layers": 2, "bidirectional": True}),
    ("RNN", {"nonlinearity": "relu", "bidirectional": True}),
]


def assert_same_state(a: dict, b: dict) -> None:
    assert list(a) == list(b)
    for k in a:
        assert a[k].shape == b[k].shape and torch.equal(a[k], b[k]), k


@pytest.mark.parametrize("kind, kw", ROUND_TRIP)
def test_state_dict_round_trip(kind, kw):
    x = torch.randn(T, B, I, dtype=torch.float64)
    # torch → rnnkit → torch
    torch_a, ours = make_pair(kind, "explicit", seed=0, **kw)
    torch.manual_seed(5)
    torch_b = TORCH[kind](I, H, dtype=torch.float64, **kw)
    torch_b.load_state_dict(ours.state_dict())
    assert_same_state(torch_b.state_dict(), torch_a.state_dict())
    out_a, out_o, out_b = torch_a(x)[0], ours(x)[0], torch_b(x)[0]
    assert torch.equal(out_a, out_b)
    close(out_o, out_a, 1e-12)
    # rnnkit → torch → rnnkit
    torch.manual_seed(6)
    ours_a = getattr(rnnkit, kind)(I, H, dtype=torch.float64, engine="explicit", **kw)
    torch.manual_seed(7)
    mid = TORCH[kind](I, H, dtype=torch.float64, **kw)
    mid.load_state_dict(ours_a.state_dict())
    ours_b = getattr(rnnkit, kind)(I, H, dtype=torch.float64, engine="explicit", **kw)
    ours_b.load_state_dict(mid.state_dict())
    assert_same_state(ours_b.state_dict(), ours_a.state_dict())
    assert torch.equal(ours_a(x)[0], ours_b(x)[0])
    close(mid(x)[0], ours_a(x)[0], 1e-12)
    assert (out_a - mid(x)[0]).abs().max() > 1e-3  # the state really travelled


# ---------------------------------------------------------------------------- dropout


@pytest.mark.parametrize("engine", ["explicit", "reference"])
@pytest.mark.parametrize("kind", ["LSTM", "GRU"])
def test_dropout_between_layers(kind, engine):
    ref, ours = make_pair(kind, engine, num_layers=2, dropout=0.5)
    x = torch.randn(T, B, I, dtype=torch.float64)
    ours.train()
    (out1, fin1), (out2, fin2) = ours(x), ours(x)
    assert (out1 - out2).abs().max() > 1e-3
    # the first layer's final state is computed before any dropout
    h1, h2 = (f[0] if kind == "LSTM" else f for f in (fin1, fin2))
    close(h1[0], h2[0], 0)
    # no dropout on the last layer's output: no exact zeros appear
    assert (out1 != 0).all()
    ours.eval()
    ref.eval()
    (out3, fin3), (out4, _) = ours(x), ours(x)
    assert torch.equal(out3, out4)
    close(out3, ref(x)[0], 1e-12)
    h3 = fin3[0] if kind == "LSTM" else fin3
    close(h1[0], h3[0], 1e-12)


def test_dropout_single_layer_is_identity():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch warns: dropout needs num_layers > 1
        ref, ours = make_pair("LSTM", "explicit", num_layers=1, dropout=0.5)
    x = torch.randn(T, B, I, dtype=torch.float64)
    ours.train()
    ref.train()
    out1, out2 = ours(x)[0], ours(x)[0]
    assert torch.equal(out1, out2)
    close(out1, ref(x)[0], 1e-12)


# ----------------------------------------------------------------- errors and engines


def test_bad_engine_name_raises():
    with pytest.raises(ValueError):
        rnnkit.LSTM(I, H, engine="cudnn")


@pytest.mark.parametrize("kind", ["RNN", "LSTM", "GRU"])
def test_native_engine_refuses_gates(kind):
    m = getattr(rnnkit, kind)(I, H, engine="native")
    with pytest.raises(ValueError):
        m(torch.randn(T, B, I), return_gates=True)


def test_native_engine_refuses_cho_gru():
    m = rnnkit.GRU(I, H, engine="native", reset_after=False)
    with pytest.raises(ValueError):
        m(torch.randn(T, B, I))


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize(
    "lengths", [[0, 5, 5, 5], [6, 5, 5, 5], [-1, 1, 1, 1], [5, 5, 5], [[5, 5, 5, 5]]]
)
def test_bad_lengths_raise(engine, lengths):
    m = rnnkit.LSTM(I, H, engine=engine)
    with pytest.raises(ValueError):
        m(torch.randn(T, B, I), lengths=lengths)


def test_packed_and_lengths_together_raise():
    m = rnnkit.GRU(I, H, engine="explicit")
    packed = pack_padded_sequence(torch.randn(T, B, I), LENGTHS, enforce_sorted=False)
    with pytest.raises(ValueError):
        m(packed, lengths=LENGTHS)


@pytest.mark.parametrize("lengths", [None, LENGTHS])
def test_cho_gru_under_auto(lengths):
    torch.manual_seed(0)
    cho = rnnkit.GRU(I, H, num_layers=2, bidirectional=True, reset_after=False, dtype=torch.float64)
    torch_gru = nn.GRU(I, H, num_layers=2, bidirectional=True, dtype=torch.float64)
    torch_gru.load_state_dict(cho.state_dict())
    kw = {"num_layers": 2, "bidirectional": True, "dtype": torch.float64}
    ref = rnnkit.GRU(I, H, engine="reference", reset_after=False, **kw)
    ref.load_state_dict(cho.state_dict())
    x = torch.randn(T, B, I, dtype=torch.float64)
    out, h_n = cho(x, lengths=lengths)
    out_r, h_r = ref(x, lengths=lengths)
    close(out, out_r, 1e-12)
    close(h_n, h_r, 1e-12)
    if lengths is None:
        out_t = torch_gru(x)[0]
    else:
        packed = pack_padded_sequence(x, lengths, enforce_sorted=False)
        out_t = pad_packed_sequence(torch_gru(packed)[0], total_length=T)[0]
    assert (out - out_t).abs().max() > 1e-3
