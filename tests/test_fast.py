"""The fast explicit engine (hand-written BPTT) equals the readable reference engine."""

from __future__ import annotations

from typing import NamedTuple

import pytest
import torch
from torch import Tensor, nn
from torch.func import functional_call

import rnnkit
from rnnkit import fast

T, B, I, H = 6, 5, 3, 4
LENGTHS = [6, 1, 3, 6, 1]  # full length twice, length 1 twice: several rows end together


@pytest.fixture
def fast_calls(monkeypatch):
    """Count calls of ``fast.run``, so that a test knows the fast path really ran."""
    calls = []
    real = fast.run

    def spy(*args, **kwargs):
        calls.append(args[0])
        return real(*args, **kwargs)

    monkeypatch.setattr(fast, "run", spy)
    return calls


def make(kind: str, engine: str, dtype=torch.float64, **kw) -> nn.Module:
    torch.manual_seed(0)
    if kind.startswith("RNN"):
        kw["nonlinearity"] = kind.split("_")[1]
        kind = "RNN"
    return getattr(rnnkit, kind)(I, H, engine=engine, dtype=dtype, **kw)


def initial_state(m: nn.Module, batch: int = B, seed: int = 2) -> tuple[Tensor, ...]:
    g = torch.Generator().manual_seed(seed)
    LD = m.num_layers * (2 if m.bidirectional else 1)
    n = 2 if isinstance(m, nn.LSTM) else 1
    return tuple(
        torch.randn(LD, batch, H, generator=g, dtype=torch.float64, requires_grad=True)
        for _ in range(n)
    )


def hx_of(m: nn.Module, states: tuple[Tensor, ...]):
    return states if isinstance(m, nn.LSTM) else states[0]


def finals(m: nn.Module, result) -> tuple[Tensor, ...]:
    return tuple(result[1]) if isinstance(m, nn.LSTM) else (result[1],)


def weighted_sum(tensors: list[Tensor], seed: int = 99) -> Tensor:
    g = torch.Generator().manual_seed(seed)
    return sum((t * torch.randn(t.shape, generator=g, dtype=t.dtype)).sum() for t in tensors)


def close(a: Tensor, b: Tensor, tol: float = 1e-10) -> None:
    torch.testing.assert_close(a, b, atol=tol, rtol=0)


class Case(NamedTuple):
    kind: str
    bias: bool = True
    lengths: bool = False
    bidirectional: bool = False
    layers: int = 1
    batch_first: bool = False


CASES = {
    "lstm_bi_l2_lengths": Case("LSTM", True, True, True, 2),
    "lstm_nobias": Case("LSTM", False),
    "lstm_bi": Case("LSTM", True, False, True),
    "lstm_nobias_lengths_bf": Case("LSTM", False, True, batch_first=True),
    "gru_bi_lengths": Case("GRU", True, True, True),
    "gru_nobias_l2": Case("GRU", False, False, False, 2),
    "gru_nobias_bi_lengths": Case("GRU", False, True, True),
    "gru_bf": Case("GRU", True, batch_first=True),
    "rnn_tanh_bi_l2_lengths": Case("RNN_tanh", True, True, True, 2),
    "rnn_tanh_nobias": Case("RNN_tanh", False),
    "rnn_relu_bi_lengths": Case("RNN_relu", True, True, True),
    "rnn_relu_nobias_bi_l2": Case("RNN_relu", False, False, True, 2),
}


def run_and_grad(m: nn.Module, case: Case, x: Tensor, states, lengths, loss_on="all"):
    result = m(x, hx_of(m, states), lengths=lengths)
    out, fin = result[0], finals(m, result)
    tensors = {"all": [out, *fin], "c_n": [fin[-1]], "h_n": [fin[0]]}[loss_on]
    names, params = zip(*m.named_parameters())
    grads = torch.autograd.grad(weighted_sum(tensors), [x, *states, *params])
    keys = ["input", *(f"state{k}" for k in range(len(states))), *names]
    return out, fin, dict(zip(keys, grads))


@pytest.mark.parametrize("name", list(CASES))
def test_fast_equals_reference(name, fast_calls):
    case = CASES[name]
    kw = {
        "bias": case.bias,
        "bidirectional": case.bidirectional,
        "num_layers": case.layers,
        "batch_first": case.batch_first,
    }
    fast_m, ref_m = make(case.kind, "explicit", **kw), make(case.kind, "reference", **kw)
    ref_m.load_state_dict(fast_m.state_dict())
    g = torch.Generator().manual_seed(1)
    shape = (B, T, I) if case.batch_first else (T, B, I)
    x = torch.randn(shape, generator=g, dtype=torch.float64, requires_grad=True)
    states = initial_state(fast_m)
    lengths = torch.tensor(LENGTHS) if case.lengths else None

    out_r, fin_r, grads_r = run_and_grad(ref_m, case, x, states, lengths)
    assert fast_calls == []
    out_f, fin_f, grads_f = run_and_grad(fast_m, case, x, states, lengths)
    D = 2 if case.bidirectional else 1
    assert len(fast_calls) == case.layers * D  # every layer and direction ran fast

    close(out_f, out_r)
    for a, b in zip(fin_f, fin_r):
        close(a, b)
    assert set(grads_f) == set(grads_r)
    for key, grad in grads_r.items():
        assert grad.abs().max() > 0, key
        close(grads_f[key], grad)


@pytest.mark.parametrize("lengths", [None, LENGTHS])
@pytest.mark.parametrize("loss_on", ["c_n", "h_n"])
def test_lstm_final_state_only_loss(lengths, loss_on, fast_calls):
    """A loss on c_n (or h_n) alone: gradients enter BPTT only at each sequence's end."""
    kw = {"num_layers": 2, "bidirectional": True}
    fast_m, ref_m = make("LSTM", "explicit", **kw), make("LSTM", "reference", **kw)
    ref_m.load_state_dict(fast_m.state_dict())
    x = torch.randn(T, B, I, dtype=torch.float64, requires_grad=True)
    states = initial_state(fast_m)
    lens = None if lengths is None else torch.tensor(lengths)
    case = Case("LSTM")
    _, _, grads_r = run_and_grad(ref_m, case, x, states, lens, loss_on)
    _, _, grads_f = run_and_grad(fast_m, case, x, states, lens, loss_on)
    assert len(fast_calls) == 4
    for key, grad in grads_r.items():
        close(grads_f[key], grad)
    # every sequence's initial cell state influences its final cell state
    assert (grads_f["state1"].abs().sum(-1) > 0).all()
    if lengths is not None:  # nothing flows into padding
        past = torch.arange(T).unsqueeze(1) >= torch.tensor(lengths)
        assert torch.equal(grads_f["input"][past], torch.zeros_like(grads_f["input"][past]))


GRADCHECK = [
    ("LSTM", True, None),
    ("LSTM", False, [3, 1]),
    ("GRU", True, [3, 2]),
    ("GRU", False, None),
    ("RNN_tanh", True, [2, 3]),
    ("RNN_relu", True, None),
]


@pytest.mark.parametrize("kind, bias, lengths", GRADCHECK)
def test_gradcheck_explicit_engine(kind, bias, lengths, fast_calls):
    """Finite differences through the fast engine w.r.t. input, initial state and every
    parameter (bidirectional, tiny sizes, float64)."""
    t, b, i, h = 3, 2, 2, 2
    torch.manual_seed(0)
    nl = {"nonlinearity": kind.split("_")[1]} if kind.startswith("RNN") else {}
    cls = getattr(rnnkit, kind.split("_")[0])
    m = cls(i, h, bias=bias, bidirectional=True, engine="explicit", dtype=torch.float64, **nl)
    names, params = zip(
        *((n, p.detach().clone().requires_grad_()) for n, p in m.named_parameters())
    )
    g = torch.Generator().manual_seed(1)
    x = torch.randn(t, b, i, generator=g, dtype=torch.float64, requires_grad=True)
    n_states = 2 if kind == "LSTM" else 1
    states = [
        torch.randn(2, b, h, generator=g, dtype=torch.float64, requires_grad=True)
        for _ in range(n_states)
    ]

    def f(x, *rest):
        st, ps = rest[:n_states], rest[n_states:]
        hx = tuple(st) if kind == "LSTM" else st[0]
        out, fin = functional_call(m, dict(zip(names, ps)), (x, hx), {"lengths": lengths})
        return (out, *fin) if kind == "LSTM" else (out, fin)

    # the wrapper really routes the parameters (else gradcheck would compare zeros)
    grads = torch.autograd.grad(weighted_sum(list(f(x, *states, *params))), [x, *states, *params])
    assert all(gr.abs().max() > 0 for gr in grads)
    assert torch.autograd.gradcheck(f, (x, *states, *params), eps=1e-6, atol=1e-7)
    assert fast_calls


REGULARISED = {
    "lstm_zoneout": ("LSTM", {"zoneout": 0.3}),
    "lstm_zoneout_c_h": ("LSTM", {"zoneout": (0.2, 0.5)}),
    "lstm_recurrent_dropout": ("LSTM", {"recurrent_dropout": 0.4}),
    "lstm_all_three": ("LSTM", {"zoneout": 0.3, "recurrent_dropout": 0.3, "weight_drop": 0.3}),
    "gru_zoneout": ("GRU", {"zoneout": 0.4}),
    "gru_recurrent_dropout": ("GRU", {"recurrent_dropout": 0.4}),
    "gru_all_three": ("GRU", {"zoneout": 0.3, "recurrent_dropout": 0.3, "weight_drop": 0.3}),
    "rnn_tanh_zoneout": ("RNN_tanh", {"zoneout": 0.4}),
    "rnn_relu_all_three": (
        "RNN_relu",
        {"zoneout": 0.3, "recurrent_dropout": 0.3, "weight_drop": 0.3},
    ),
}


@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("name", list(REGULARISED))
def test_fast_regularisers_equal_the_readable_loop(name, training, fast_calls):
    """Zoneout and recurrent dropout inside the hand-written BPTT: with the same seed
    (so the same masks: both paths draw them in the same order) the fast engine gives the
    readable loop's outputs, final states and every gradient, in training (Bernoulli
    masks) and in evaluation (zoneout's expectation)."""
    kind, kw = REGULARISED[name]
    case = Case(kind, True, True, True, 2)
    x = torch.randn(T, B, I, dtype=torch.float64, requires_grad=True)
    results = []
    for engine in ("explicit", "reference"):
        m = make(kind, engine, num_layers=2, bidirectional=True, **kw).train(training)
        torch.manual_seed(7)
        results.append(run_and_grad(m, case, x, initial_state(m), LENGTHS))
    assert fast_calls, "the fast path did not run"
    (out_f, fin_f, g_f), (out_r, fin_r, g_r) = results
    close(out_f, out_r)
    for a, b in zip(fin_f, fin_r):
        close(a, b)
    for key in g_r:
        close(g_f[key], g_r[key])
