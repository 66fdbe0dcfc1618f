"""Edges of the layers and the cell API that a researcher meets: padding that holds
nan, Cho's GRU in StackedCell's fused path, gates returned as another NamedTuple,
unbatched one-state hx as a tuple, open-ended gate blocks, packed batch_first traces."""

from __future__ import annotations

from typing import NamedTuple

import pytest
import torch
from test_train import one_thread  # noqa: F401 (fixture: one thread)
from torch import Tensor
from torch.nn.utils.rnn import pack_padded_sequence

import rnnkit
from rnnkit import graphs
from rnnkit.cells import StackedCell

LAYERS = [
    lambda: rnnkit.LSTM(3, 5, engine="explicit"),
    lambda: rnnkit.LSTM(3, 5, engine="reference"),
    lambda: rnnkit.GRU(3, 5, engine="explicit", bidirectional=True),
    lambda: rnnkit.LSTM(3, 5, engine="explicit", zoneout=0.2),
    lambda: rnnkit.MGU(3, 5),
    lambda: rnnkit.LayerNormLSTM(3, 5, num_layers=2),
]


@pytest.mark.parametrize("make", LAYERS)
@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_nan_in_the_padding_stays_out_of_outputs_and_gradients(make, bad):
    """The padding was zeroed by multiplying by 0: nan past a length stayed nan in the
    output, and 0 · nan made every weight's gradient nan (the native engine, which
    packs, was fine). The real steps must equal those of a clean input."""
    torch.manual_seed(0)
    x = torch.randn(4, 2, 3)
    lens = torch.tensor([4, 2])
    dirty = x.clone()
    dirty[2:, 1] = bad
    m = make()
    m.eval()  # (zoneout: its expectation, the same for both runs)
    out, _ = m(dirty, lengths=lens)
    out.sum().backward()
    assert torch.equal(out[2:, 1], torch.zeros_like(out[2:, 1]))
    grads = {n: p.grad.clone() for n, p in m.named_parameters()}
    assert all(torch.isfinite(g).all() for g in grads.values())
    m.zero_grad()
    clean, _ = m(x, lengths=lens)
    clean.sum().backward()
    assert torch.allclose(out, clean, atol=1e-6)
    assert all(torch.allclose(grads[n], p.grad, atol=1e-6) for n, p in m.named_parameters())


def test_stacked_cells_fused_path_keeps_chos_gru():
    """StackedCell("GRU", reset_after=False) ran torch.gru_cell (reset after) on its
    default fused path: 0.08 from its own cells' result."""
    torch.manual_seed(0)
    s = StackedCell("GRU", 4, 6, num_layers=1, reset_after=False)
    x, h = torch.randn(3, 4), torch.randn(3, 1, 6)
    fused = s.step(x, h, None)[0]
    assert torch.allclose(fused, s.cells[0](x, h[:, 0]), atol=1e-6)
    assert torch.allclose(fused, s.step(x, h, None, fused=False)[0], atol=1e-6)
    stock = StackedCell("GRU", 4, 6, num_layers=1)  # reset after: torch's kernel still
    assert stock.fusable


class Declared(NamedTuple):
    hidden: Tensor
    rate: Tensor


class Returned(NamedTuple):
    rate: Tensor
    hidden: Tensor


class Swapped(rnnkit.Cell):
    Gates = Declared

    def step(self, gi: Tensor, state: tuple[Tensor, ...]) -> tuple[tuple[Tensor, ...], Returned]:
        h = torch.tanh(gi + self.hh(state[0]))
        return (h,), Returned(torch.sigmoid(gi), h)


@pytest.mark.parametrize("mode", ["off", "on"])
def test_gates_of_another_type_are_refused_not_relabelled(mode):
    """Static shapes rebuilt the trace as the declared Gates by position: trace.hidden
    held the 'rate' gate (on the GPU's default path); eagerly it was another type."""
    m = rnnkit.Recurrent(Swapped, 3, 5)
    said = r"Swapped.step must return its gates as Swapped.Gates \(Declared\); got Returned"
    with graphs.mode(mode), pytest.raises(ValueError, match=said):
        m(torch.randn(4, 2, 3), return_gates=True)


def test_unbatched_input_takes_a_one_state_hx_as_a_tuple():
    """The batched path took (h0,) for a one-state cell; unbatched raised AttributeError."""
    torch.manual_seed(0)
    m = rnnkit.MGU(4, 6)
    x, h0 = torch.randn(5, 4), torch.randn(1, 6)
    out, h = m(x, (h0,))
    ref, h_ref = m(x.unsqueeze(1), (h0.unsqueeze(1),))
    assert torch.allclose(out, ref.squeeze(1)) and torch.allclose(h, h_ref.squeeze(1))
    assert torch.allclose(m(x, h0)[0], out)


class G2(NamedTuple):
    candidate: Tensor
    hidden: Tensor


class OpenEnded(rnnkit.Cell):
    Gates = G2
    chunks = 2

    def step(self, gi: Tensor, state: tuple[Tensor, ...]) -> tuple[tuple[Tensor, ...], G2]:
        n = torch.tanh(gi[:, self.hidden_size :] + self.hh(state[0], slice(1, None)))
        return (n,), G2(n, n)


class Strided(OpenEnded):
    def step(self, gi: Tensor, state: tuple[Tensor, ...]) -> tuple[tuple[Tensor, ...], G2]:
        n = torch.tanh(gi[:, self.hidden_size :] + self.hh(state[0], slice(0, 2, 2)))
        return (n,), G2(n, n)


def test_gate_blocks_may_be_an_open_ended_slice():
    """hh(h, slice(1, None)) raised "NoneType * int"; now the blocks from 1 on."""
    torch.manual_seed(0)
    cell = OpenEnded(3, 5)
    h = torch.randn(2, 5)
    W, b = cell.weight_hh[5:], cell.bias_hh[5:]
    assert torch.allclose(cell.hh(h, slice(1, None)), h @ W.T + b)
    assert torch.allclose(cell.hh(h, slice(-1, None)), h @ W.T + b)
    rnnkit.Recurrent(OpenEnded, 3, 5)(torch.randn(4, 2, 3))
    with pytest.raises(ValueError, match=r"Strided.hh: blocks must be consecutive gate blocks"):
        rnnkit.Recurrent(Strided, 3, 5)(torch.randn(4, 2, 3))


def test_a_gate_block_may_be_an_int_and_a_wrong_one_says_what_is_wrong():
    """hh(h, 1) was an AttributeError ('int' object has no attribute 'indices')."""
    torch.manual_seed(0)
    cell = OpenEnded(3, 5)
    h = torch.randn(2, 5)
    second = h @ cell.weight_hh[5:].T + cell.bias_hh[5:]
    assert torch.allclose(cell.hh(h, 1), second)
    assert torch.allclose(cell.hh(h, -1), second)
    assert torch.allclose(cell.hh(h, 0, bias=False), h @ cell.weight_hh[:5].T)
    with pytest.raises(IndexError, match=r"OpenEnded.hh: gate block 2 out of range for 2"):
        cell.hh(h, 2)
    with pytest.raises(TypeError, match=r"OpenEnded.hh: blocks must be .* got tuple"):
        cell.hh(h, (0, 1))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"at least one .* got slice\(1, 1, None\)"):
        cell.hh(h, slice(1, 1))


@pytest.mark.parametrize(
    "make",
    [
        lambda: rnnkit.LSTM(4, 6, batch_first=True, engine="explicit"),
        lambda: rnnkit.MGU(4, 6, batch_first=True),
    ],  # fmt: skip
)
def test_a_packed_batch_gives_the_trace_of_its_padded_batch(make):
    """With batch_first the trace is (L·D, B, T, H), as documented; a PackedSequence
    gave (L·D, T, B, H)."""
    torch.manual_seed(0)
    m = make()
    x, lens = torch.randn(3, 5, 4), torch.tensor([5, 2, 4])
    _, _, padded = m(x, lengths=lens, return_gates=True)
    seq = pack_padded_sequence(x, lens, batch_first=True, enforce_sorted=False)
    _, _, packed = m(seq, return_gates=True)
    assert padded.hidden.shape == (1, 3, 5, 6)
    for a, b in zip(padded, packed):
        assert torch.allclose(a, b, atol=1e-6)
