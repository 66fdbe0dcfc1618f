"""The custom-cell API: rnnkit.Recurrent unrolls any rnnkit.Cell.

The stock cells in a Recurrent equal torch.nn's layers; the worked example of
docs/cells.md, executed from the page, equals rnnkit.LSTM gate for gate; a cell with
its own parameter, initialisation and keyword equals its equations by hand.
"""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import NamedTuple

import pytest
import torch
from test_variants import close, layer_by_hand, random_lengths, weighted_sum
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

import rnnkit

I, H, T, B = 3, 4, 6, 4
F64 = torch.float64
DOCS = Path(__file__).resolve().parents[1] / "docs" / "cells.md"


def grads(loss: Tensor, tensors: list[Tensor]) -> list[Tensor]:
    return list(torch.autograd.grad(loss, tensors))


# ------------------------------------------------------- stock cells against torch.nn


TORCH_CASES = [  # cell class, torch class, kwargs of both, num_layers, bidirectional, batch_first
    (rnnkit.LSTMCell, nn.LSTM, {}, 2, True, False),
    (rnnkit.LSTMCell, nn.LSTM, {"bias": False}, 1, False, True),
    (rnnkit.GRUCell, nn.GRU, {}, 3, False, True),
    (rnnkit.GRUCell, nn.GRU, {}, 1, True, False),
    (rnnkit.RNNCell, nn.RNN, {"nonlinearity": "relu"}, 2, True, True),
    (rnnkit.RNNCell, nn.RNN, {"nonlinearity": "tanh"}, 1, False, False),
]


@pytest.mark.parametrize("cell_class, torch_class, kw, L, bidir, batch_first", TORCH_CASES)
def test_recurrent_of_a_stock_cell_is_the_torch_layer(
    cell_class, torch_class, kw, L, bidir, batch_first
):
    """Recurrent(rnnkit.LSTMCell / GRUCell / RNNCell) and torch.nn.LSTM / GRU / RNN with
    the same state dict: outputs, final states and gradients, a padded batch with lengths
    against torch's packed sequence."""
    torch.manual_seed(0)
    ours = rnnkit.Recurrent(
        cell_class, I, H, L, bidirectional=bidir, batch_first=batch_first, dtype=F64, **kw
    )
    ref = torch_class(I, H, L, bidirectional=bidir, batch_first=batch_first, dtype=F64, **kw)
    assert list(ours.state_dict()) == list(ref.state_dict())
    ref.load_state_dict(ours.state_dict())
    two = cell_class is rnnkit.LSTMCell
    D = 2 if bidir else 1
    g = torch.Generator().manual_seed(1)
    shape = (B, T, I) if batch_first else (T, B, I)
    x = torch.randn(*shape, generator=g, dtype=F64, requires_grad=True)
    states = [torch.randn(L * D, B, H, generator=g, dtype=F64) for _ in range(2 if two else 1)]
    hx = tuple(states) if two else states[0]
    lengths = random_lengths(seed=L)

    out, fin = ours(x, hx, lengths=lengths)
    packed = pack_padded_sequence(x, lengths, batch_first=batch_first, enforce_sorted=False)
    out_p, fin_r = ref(packed, hx)
    out_r = pad_packed_sequence(out_p, batch_first=batch_first, total_length=T)[0]
    fins, fins_r = (fin, fin_r) if two else ((fin,), (fin_r,))
    close(out, out_r)
    for a, b in zip(fins, fins_r):
        close(a, b)
    loss = weighted_sum([out, *fins])
    loss_r = weighted_sum([out_r, *fins_r])
    names = list(ours.state_dict())
    for what, a, b in zip(
        ["x"] + names,
        grads(loss, [x] + [getattr(ours, n) for n in names]),
        grads(loss_r, [x] + [getattr(ref, n) for n in names]),
    ):
        close(a, b, msg=f"gradient of {what}")


# ------------------------------------------------------------ the docs/cells.md example


def docs_example() -> dict:
    """Run the first ```python block of docs/cells.md; return its namespace."""
    blocks = re.findall(r"```python\n(.*?)```", DOCS.read_text(encoding="utf-8"), re.DOTALL)
    assert blocks, f"no python block in {DOCS}"
    namespace: dict = {"__name__": "cells_md_example"}
    exec(compile(blocks[0], str(DOCS), "exec"), namespace)
    return namespace


def test_docs_example_is_the_lstm_gate_for_gate():
    """The page's MyLSTMCell in its Recurrent layer equals rnnkit.LSTM with the same
    state dict: output, (h_n, c_n), every trace field and every gradient."""
    ns = docs_example()
    layer = ns["layer"]
    assert isinstance(layer, rnnkit.Recurrent) and layer.cell_class is ns["MyLSTMCell"]
    layer = layer.double()
    lstm = rnnkit.LSTM(8, 16, num_layers=2, bidirectional=True, dtype=F64)
    assert list(layer.state_dict()) == list(lstm.state_dict())
    lstm.load_state_dict(layer.state_dict())

    g = torch.Generator().manual_seed(1)
    x = torch.randn(5, 3, 8, generator=g, dtype=F64, requires_grad=True)
    lengths = [5, 2, 4]
    results = []
    for m, gates in ((layer, ns["MyLSTMGates"]), (lstm, rnnkit.LSTMGates)):
        out, (h_n, c_n), trace = m(x, lengths=lengths, return_gates=True)
        assert type(trace) is gates and trace._fields == rnnkit.LSTMGates._fields
        outs = [out, h_n, c_n, *trace]
        names = list(m.state_dict())
        results.append(outs + grads(weighted_sum(outs), [x] + [getattr(m, n) for n in names]))
    for a, b in zip(*results, strict=True):
        close(a, b)


def test_every_python_block_of_the_page_runs():
    """The usage snippets after the example (they assert what they claim) run in order
    in one namespace, as a reader would paste them."""
    blocks = re.findall(r"```python\n(.*?)```", DOCS.read_text(encoding="utf-8"), re.DOTALL)
    assert len(blocks) > 1
    namespace: dict = {"__name__": "cells_md_page"}
    torch.manual_seed(0)
    for k, block in enumerate(blocks):
        exec(compile(block, f"{DOCS}:block{k}", "exec"), namespace)


def test_docs_example_cell_alone_is_one_lstm_step():
    ns = docs_example()
    torch.manual_seed(0)
    cell = ns["MyLSTMCell"](8, 16, dtype=F64)
    ref = rnnkit.LSTMCell(8, 16, dtype=F64)
    ref.load_state_dict(cell.state_dict())
    g = torch.Generator().manual_seed(1)
    x = torch.randn(3, 8, generator=g, dtype=F64)
    state = (torch.randn(3, 16, generator=g, dtype=F64), torch.randn(3, 16, generator=g, dtype=F64))
    h, (h2, c) = cell(x, state)
    h_r, c_r = ref(x, state)
    close(h, h_r)
    close(h2, h_r)
    close(c, c_r)


# -------------------------------------------------- a cell with its own parameter


class LeakyGates(NamedTuple):
    rate: Tensor
    candidate: Tensor
    hidden: Tensor


class LeakyCell(rnnkit.Cell):
    """A leaky-integrator RNN with a learnt rate per unit.

    a = σ(leak)      h̃_t = tanh(W_ih x_t + b_ih + W_hh h_{t-1} + b_hh)
    h_t = (1 - a) ⊙ h_{t-1} + a ⊙ h̃_t
    """

    Gates = LeakyGates

    def __init__(self, input_size, hidden_size, bias=True, leak_init=0.0, **kw):
        self.leak_init = leak_init
        super().__init__(input_size, hidden_size, bias, **kw)

    def parameter_shapes(self):
        return {**super().parameter_shapes(), "leak": (self.hidden_size,)}

    def reset_parameters(self):
        super().reset_parameters()
        nn.init.constant_(self.leak, self.leak_init)

    def step(self, gi, state):
        (h_prev,) = state
        a = torch.sigmoid(self.leak).expand_as(h_prev)
        n = torch.tanh(gi + self.hh(h_prev))
        h = (1 - a) * h_prev + a * n
        return (h,), LeakyGates(a, n, h)


def leaky_step(p, x, state, mask=None, **_):
    (h,) = state
    a = 1 / (1 + torch.exp(-p["leak"]))
    n = torch.tanh(p["weight_ih"] @ x + p["bias_ih"] + p["weight_hh"] @ h + p["bias_hh"])
    h = (1 - a) * h + a * n
    return dict(rate=a, candidate=n, hidden=h), (h,)


def test_custom_cell_with_its_own_parameter_by_hand():
    """Extra parameter ``leak`` registered as ``leak_l{k}[_reverse]``, initialised by
    the cell's reset_parameters with its keyword; the layer equals the hand loop
    (outputs, finals, trace, gradients, ``leak`` included)."""
    torch.manual_seed(0)
    m = rnnkit.Recurrent(
        LeakyCell, I, H, num_layers=2, bidirectional=True, leak_init=0.7, dtype=F64
    )
    sd = m.state_dict()
    assert [k for k in sd if k.startswith("leak")] == [
        "leak_l0",
        "leak_l0_reverse",
        "leak_l1",
        "leak_l1_reverse",
    ]
    for k in ("leak_l0", "leak_l1_reverse"):
        assert torch.equal(sd[k], torch.full((H,), 0.7, dtype=F64))
    assert "leak_init=0.7" in repr(m)
    with torch.no_grad():
        for k, p in m.named_parameters():
            if k.startswith("leak"):
                p.uniform_(-2, 2)

    g = torch.Generator().manual_seed(1)
    x = torch.randn(T, B, I, generator=g, dtype=F64, requires_grad=True)
    h0 = torch.randn(4, B, H, generator=g, dtype=F64)
    lengths = random_lengths(seed=3)
    out, h_n, trace = m(x, h0, lengths=lengths, return_gates=True)
    sd = {k: v.detach().clone().requires_grad_() for k, v in m.state_dict().items()}
    out_h, (h_n_h,), trace_h = layer_by_hand(leaky_step, sd, x, lengths, (h0,), 2, 2)
    got = [out, h_n, *trace]
    expected = [out_h, h_n_h, *(trace_h[f] for f in LeakyGates._fields)]
    for a, b in zip(got, expected, strict=True):
        close(a, b)
    names = list(sd)
    for what, a, b in zip(
        ["x"] + names,
        grads(weighted_sum(got), [x] + [getattr(m, k) for k in names]),
        grads(weighted_sum(expected), [x] + [sd[k] for k in names]),
    ):
        close(a, b, msg=f"gradient of {what}")

    with torch.no_grad():
        for p in m.parameters():
            p.fill_(5.0)
    m.reset_parameters()
    assert torch.equal(m.leak_l1, torch.full((H,), 0.7, dtype=F64))
    assert m.weight_ih_l0.abs().max() <= H**-0.5


def test_deepcopy_and_engines():
    """A copy is independent of the original; engines explicit / reference / auto are
    one and the same unrolled cell."""
    torch.manual_seed(0)
    m = rnnkit.Recurrent(LeakyCell, I, H, bidirectional=True, dtype=F64)
    twin = copy.deepcopy(m)
    x = torch.randn(T, B, I, generator=torch.Generator().manual_seed(1), dtype=F64)
    with torch.no_grad():
        ref = m(x)[0]
        assert torch.equal(twin(x)[0], ref)
        twin.leak_l0.add_(1.0)
        assert torch.equal(m(x)[0], ref)
        assert not torch.equal(twin(x)[0], ref)
        for engine in ("explicit", "reference"):
            other = rnnkit.Recurrent(LeakyCell, I, H, bidirectional=True, engine=engine, dtype=F64)
            other.load_state_dict(m.state_dict())
            assert torch.equal(other(x)[0], ref)


# --------------------------------------------------------------------------- errors


class NoStep(rnnkit.Cell):
    Gates = LeakyGates


@pytest.mark.parametrize("bad", [nn.LSTMCell, "LSTMCell", rnnkit.LSTMCell(2, 3), int])
def test_bad_cell_class_raises(bad):
    with pytest.raises(TypeError, match="cell_class must be a subclass of rnnkit.Cell"):
        rnnkit.Recurrent(bad, I, H)


def test_native_engine_on_recurrent_raises():
    with pytest.raises(ValueError, match="no fused kernel computes this cell"):
        rnnkit.Recurrent(LeakyCell, I, H, engine="native")
    with pytest.raises(ValueError, match="engine must be auto, explicit or reference"):
        rnnkit.LayerNormLSTM(I, H, engine="fast")


@pytest.mark.parametrize(
    "kw, error, match",
    [
        ({"input_size": 0}, ValueError, "input_size must be a positive integer"),
        ({"hidden_size": 2.5}, TypeError, "hidden_size must be a positive integer"),
        ({"num_layers": True}, TypeError, "num_layers must be a positive integer"),
        ({"dropout": 1.5}, ValueError, r"dropout must be a number in \[0, 1\], got 1.5"),
        ({"dropout": "0.5"}, ValueError, r"dropout must be a number in \[0, 1\], got '0.5'"),
    ],
)
def test_bad_sizes_raise(kw, error, match):
    """As torch.nn's layers: TypeError for a size that is no int, ValueError for a value
    out of range ("0.5" as dropout was "'<=' not supported between 'int' and 'str'")."""
    args = {"input_size": I, "hidden_size": H, **kw}
    with pytest.raises(error, match=match):
        rnnkit.Recurrent(LeakyCell, **args)


def test_dropout_takes_torchs_range_and_warns_as_torch_for_one_layer():
    """dropout=1.0 is torch.nn's to take (every output between layers zero); with one
    layer it does nothing, which torch.nn warns about, and so does Recurrent."""
    out, _ = rnnkit.Recurrent(LeakyCell, I, H, num_layers=2, dropout=1.0)(torch.randn(T, B, I))
    assert out.shape == (T, B, H)
    with pytest.warns(UserWarning, match="with num_layers=1 it does nothing") as caught:
        rnnkit.Recurrent(LeakyCell, I, H, dropout=0.2)
        rnnkit.LayerNormLSTM(I, H, dropout=0.2)  # (a frame deeper: the warning names this line)
    assert {w.filename for w in caught} == {__file__}
    import numpy as np  # torch.nn takes any real number: numpy's too

    assert rnnkit.LayerNormLSTM(I, H, 2, dropout=np.float32(0.25)).dropout == 0.25


def test_wrong_number_of_states_raises():
    m = rnnkit.LayerNormLSTM(I, H)
    h0 = torch.zeros(1, B, H)
    with pytest.raises(ValueError, match=r"hx must hold 2 state tensor\(s\)"):
        m(torch.randn(T, B, I), (h0,))


def test_cell_without_step_raises():
    m = rnnkit.Recurrent(NoStep, I, H)
    with pytest.raises(NotImplementedError, match="NoStep must implement step"):
        m(torch.randn(T, B, I))


class _OneGate(NamedTuple):
    hidden: Tensor


class _TwoGates(NamedTuple):
    hidden: Tensor
    cell: Tensor


class _ForgetsItsCell(rnnkit.Cell):
    """Declares two states, returns one."""

    Gates = _TwoGates
    state = ("hidden", "cell")

    def step(self, gi, state):
        h = torch.tanh(gi + self.hh(state[0]))
        return (h,), _TwoGates(h, h)


class _PlainTupleGates(rnnkit.Cell):
    Gates = _OneGate

    def step(self, gi, state):
        h = torch.tanh(gi + self.hh(state[0]))
        return (h,), (h,)


class _WrongWidth(rnnkit.Cell):
    """Two blocks, but returns both as the state."""

    Gates = _OneGate
    chunks = 2

    def step(self, gi, state):
        h = torch.tanh(gi + self.hh(state[0]))
        return (h,), _OneGate(h)


class _NoReturn(rnnkit.Cell):
    Gates = _OneGate

    def step(self, gi, state):  # type: ignore[return]  (forgets to return)
        torch.tanh(gi + self.hh(state[0]))


class _StateOnly(rnnkit.Cell):
    Gates = _OneGate

    def step(self, gi, state):
        return (torch.tanh(gi + self.hh(state[0])),)


class _GateNone(rnnkit.Cell):
    Gates = _OneGate

    def step(self, gi, state):
        h = torch.tanh(gi + self.hh(state[0]))
        return (h,), _OneGate(None)


class _GateWithoutBatch(rnnkit.Cell):
    """A gate of one value per unit: passed every check, then broke the traces' masks."""

    Gates = _TwoGates

    def step(self, gi, state):
        h = torch.tanh(gi + self.hh(state[0]))
        return (h,), _TwoGates(h, h.mean(0))


@pytest.mark.parametrize(
    ("cls", "says"),
    [
        (_GateNone, "step: gate 'hidden' must be a (B, ·) tensor, B = 2; got NoneType"),
        (_GateWithoutBatch, "must be a (B, ·) tensor, B = 2; got (4,)"),
        (_NoReturn, "step must return (new_state, gates); got NoneType"),
        (_StateOnly, "step must return (new_state, gates); got a tuple of 1"),
        (_ForgetsItsCell, "a tuple of 2 tensor(s) ('hidden', 'cell'); got 1 tensor(s)"),
        (_PlainTupleGates, "gates as a NamedTuple"),
        (_WrongWidth, "state 'hidden' must keep its shape (2, 4), got (2, 8)"),
    ],
)
def test_a_step_that_breaks_the_api_is_a_clear_error(cls, says):
    """The layer checks a custom cell's first step and names the cell and what is wrong."""
    layer = rnnkit.Recurrent(cls, 3, 4)
    with pytest.raises(ValueError) as info:
        layer(torch.randn(5, 2, 3))
    assert cls.__name__ in str(info.value) and says in str(info.value)
    with pytest.raises(ValueError) as info:  # and the cell alone, one step
        cls(3, 4)(torch.randn(2, 3))
    assert cls.__name__ in str(info.value) and says in str(info.value)


def test_reprs_show_the_keywords_given_as_torch_nn_does():
    """RNNCell(3, 4, nonlinearity="relu") printed RNNCell(3, 4) (torch.nn's prints
    nonlinearity=relu); a variant printed its cell class as if it were an argument."""
    assert repr(rnnkit.RNNCell(3, 4, nonlinearity="relu")) == repr(
        nn.RNNCell(3, 4, nonlinearity="relu")
    )
    assert repr(rnnkit.RNNCell(3, 4)) == "RNNCell(3, 4)"
    assert (
        repr(rnnkit.IndRNNCell(3, 4, nonlinearity="tanh")) == "IndRNNCell(3, 4, nonlinearity=tanh)"
    )
    assert repr(rnnkit.IndRNNCell(3, 4)) == "IndRNNCell(3, 4)"  # relu: its default
    ln = rnnkit.LayerNormLSTMCell(3, 4, eps=1e-3, forget_bias=1.0)
    assert repr(ln) == "LayerNormLSTMCell(3, 4, eps=0.001, forget_bias=1.0)"
    assert repr(rnnkit.GRUCell(3, 4, reset_after=False)) == "GRUCell(3, 4, reset_after=False)"
    assert repr(rnnkit.LayerNormLSTM(3, 4, 2)) == "LayerNormLSTM(3, 4, num_layers=2)"
    assert repr(rnnkit.Recurrent(rnnkit.MGUCell, 3, 4)) == "Recurrent(MGUCell, 3, 4)"
