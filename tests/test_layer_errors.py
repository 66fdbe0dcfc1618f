"""Bad calls fail as torch.nn's do, on every engine and every Recurrent; empty batches work.

Each bad call is made on torch.nn and on the rnnkit layer: the same exception type, and
for the stock layers the same message (the variants name their state the same way).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import pytest
import torch
from torch import Tensor, nn

import rnnkit

STOCK = {
    "LSTM": (nn.LSTM, rnnkit.LSTM),
    "GRU": (nn.GRU, rnnkit.GRU),
    "RNN": (nn.RNN, rnnkit.RNN),
}
VARIANTS = [rnnkit.LayerNormLSTM, rnnkit.MGU, rnnkit.PeepholeLSTM, rnnkit.IndRNN]


def state(kind: str, shape: tuple[int, ...]) -> Tensor | tuple[Tensor, Tensor]:
    return (torch.zeros(shape), torch.zeros(shape)) if kind == "LSTM" else torch.zeros(shape)


BAD: dict[str, Callable[[str], tuple]] = {
    "dtype": lambda kind: (torch.randn(5, 3, 8, dtype=torch.float64), None),
    "input size": lambda kind: (torch.randn(5, 3, 7), None),
    "no steps": lambda kind: (torch.randn(0, 3, 8), None),
    "hidden layers": lambda kind: (torch.randn(5, 3, 8), state(kind, (3, 3, 16))),
    "hidden batch": lambda kind: (torch.randn(5, 3, 8), state(kind, (2, 4, 16))),
    "hidden units": lambda kind: (torch.randn(5, 3, 8), state(kind, (2, 3, 15))),
    "unbatched 3-D state": lambda kind: (torch.randn(5, 8), state(kind, (2, 1, 16))),
    "batched 2-D state": lambda kind: (torch.randn(5, 3, 8), state(kind, (3, 16))),
}


def failure(fn: Callable[[], object]) -> BaseException:
    with pytest.raises(Exception) as info:
        fn()
    return info.value


@pytest.mark.parametrize("engine", ["explicit", "auto", "native"])
@pytest.mark.parametrize("bad", sorted(BAD))
@pytest.mark.parametrize("kind", sorted(STOCK))
def test_stock_layers_refuse_what_torch_refuses(kind: str, bad: str, engine: str) -> None:
    torch_cls, ours_cls = STOCK[kind]
    x, hx = BAD[bad](kind)
    want = failure(lambda: torch_cls(8, 16, 2)(x, hx))
    got = failure(lambda: ours_cls(8, 16, 2, engine=engine)(x, hx))
    assert type(got) is type(want)
    assert str(got) == str(want)


@pytest.mark.parametrize("engine", ["explicit", "reference", "auto", "native"])
@pytest.mark.parametrize("n", [0, 1, 3])
def test_an_lstm_state_that_is_not_a_pair_is_refused(engine: str, n: int) -> None:
    """A third state tensor was ignored on the explicit engine; one was an IndexError
    (torch.nn's too) or "not enough values to unpack"."""
    h = torch.zeros(1, 2, 4)
    layer = rnnkit.LSTM(3, 4, engine=engine)
    with pytest.raises(RuntimeError, match=rf"LSTM: hx must be the pair \(h_0, c_0\), got {n} "):
        layer(torch.randn(5, 2, 3), (h,) * n)
    with pytest.raises(RuntimeError, match=r"got a Tensor"):
        layer(torch.randn(5, 2, 3), h)


@pytest.mark.parametrize("bad", sorted(BAD))
@pytest.mark.parametrize("cls", VARIANTS, ids=lambda c: c.__name__)
def test_variants_refuse_what_torch_refuses(cls: type, bad: str) -> None:
    layer = cls(8, 16, 2)
    kind = "LSTM" if layer.num_states == 2 else "GRU"
    x, hx = BAD[bad](kind)
    want = failure(lambda: STOCK[kind][0](8, 16, 2)(x, hx))
    got = failure(lambda: layer(x, hx))
    assert type(got) is type(want)
    assert str(got).split()[0] == str(want).split()[0]


@pytest.mark.parametrize("lengths", [False, True])
@pytest.mark.parametrize(
    "make",
    [
        lambda: rnnkit.LSTM(8, 16, 2, bidirectional=True, engine="explicit"),
        lambda: rnnkit.LSTM(8, 16, 2, bidirectional=True),
        lambda: rnnkit.GRU(8, 16, batch_first=True, engine="explicit"),
        lambda: rnnkit.GRU(8, 16, batch_first=True),
        lambda: rnnkit.RNN(8, 16, engine="explicit"),
        lambda: rnnkit.LayerNormLSTM(8, 16, 2, bidirectional=True),
    ],
)
def test_empty_batch_as_torch(make: Callable[[], nn.Module], lengths: bool) -> None:
    """B = 0 gives empty outputs and states of the right shapes, and a gradient."""
    layer = make()
    x = torch.randn(0, 5, 8) if layer.batch_first else torch.randn(5, 0, 8)
    x.requires_grad_(True)
    kw = {"lengths": torch.zeros(0, dtype=torch.long)} if lengths else {}
    out, final = layer(x, **kw)
    D = 2 if layer.bidirectional else 1
    assert out.shape == x.shape[:2] + (D * 16,)
    for f in final if isinstance(final, tuple) else (final,):
        assert f.shape == (layer.num_layers * D, 0, 16)
    out.sum().backward()
    assert x.grad is not None and x.grad.shape == x.shape


CELL_BAD: dict[str, Callable[[bool], tuple]] = {
    "3-D input": lambda lstm: (torch.randn(2, 3, 8), None),
    "input size": lambda lstm: (torch.randn(3, 7), None),
    "state batch": lambda lstm: (
        torch.randn(3, 8),
        (torch.zeros(4, 16), torch.zeros(4, 16)) if lstm else torch.zeros(4, 16),
    ),
    "3-D state": lambda lstm: (
        torch.randn(3, 8),
        (torch.zeros(1, 3, 16), torch.zeros(1, 3, 16)) if lstm else torch.zeros(1, 3, 16),
    ),
    "1-D state of a batch": lambda lstm: (
        torch.randn(3, 8),
        (torch.zeros(16), torch.zeros(16)) if lstm else torch.zeros(16),
    ),
    "state units": lambda lstm: (
        torch.randn(3, 8),
        (torch.zeros(3, 16), torch.zeros(3, 15)) if lstm else torch.zeros(3, 15),
    ),
}
CELLS = {
    "LSTMCell": (nn.LSTMCell, rnnkit.LSTMCell),
    "GRUCell": (nn.GRUCell, rnnkit.GRUCell),
    "RNNCell": (nn.RNNCell, rnnkit.RNNCell),
}


@pytest.mark.parametrize("bad", sorted(CELL_BAD))
@pytest.mark.parametrize("kind", sorted(CELLS))
def test_cells_refuse_what_torch_refuses(kind: str, bad: str) -> None:
    torch_cls, ours_cls = CELLS[kind]
    x, hx = CELL_BAD[bad](kind == "LSTMCell")
    want = failure(lambda: torch_cls(8, 16)(x, hx))
    got = failure(lambda: ours_cls(8, 16)(x, hx))
    assert (type(got), str(got)) == (type(want), str(want))


@pytest.mark.parametrize(
    "cls", [rnnkit.LayerNormLSTMCell, rnnkit.MGUCell, rnnkit.CIFGLSTMCell], ids=str
)
def test_variant_cells_batched_unbatched_and_checked(cls: type) -> None:
    """A variant cell called alone takes ``(I,)`` as ``(1, I)``, and checks sizes."""
    torch.manual_seed(0)
    cell = cls(8, 16)
    x = torch.randn(8)
    h, state = cell(x)
    h1, state1 = cell(x.unsqueeze(0))
    assert h.shape == (16,)
    torch.testing.assert_close(h, h1[0])
    h2, _ = cell(x, state)
    h3, _ = cell(x.unsqueeze(0), state1)
    torch.testing.assert_close(h2, h3[0])
    with pytest.raises(RuntimeError, match="inconsistent input_size: got 7 expected 8"):
        cell(torch.randn(3, 7))
    with pytest.raises(RuntimeError, match="hidden0 has inconsistent hidden_size: got 15"):
        cell(torch.randn(3, 8), tuple(torch.zeros(3, 15) for _ in state))


@pytest.mark.parametrize(
    "make",
    [
        lambda: rnnkit.LSTM(8, 16, engine="explicit"),
        lambda: rnnkit.GRU(8, 16, engine="explicit"),
        lambda: rnnkit.LayerNormLSTM(8, 16),
    ],
)
def test_state_of_another_dtype_is_named(make: Callable[[], nn.Module]) -> None:
    """torch.nn gives a matmul or oneDNN error here; rnnkit names the state and dtypes."""
    layer = make()
    two = isinstance(layer, (rnnkit.LSTM, rnnkit.LayerNormLSTM))
    h = torch.zeros(1, 3, 16, dtype=torch.float64)
    hx = (h, torch.zeros(1, 3, 16)) if two else h
    name = "hidden\\[0\\]" if two else "hidden"
    with pytest.raises(RuntimeError, match=f"torch.float32 and {name} tensor with torch.float64"):
        layer(torch.randn(5, 3, 8), hx)


@pytest.mark.parametrize(
    "lengths, error, says",
    [
        (torch.tensor([5.0, 2.9, 4.0]), ValueError, "lengths must be whole numbers, got 2.9"),
        (torch.tensor([5.0, math.nan, 4.0]), ValueError, "lengths must be whole numbers, got nan"),
        (torch.tensor([True, True, True]), TypeError, "lengths must be integers, got a torch.bool"),
        (["5", "2", "4"], TypeError, r"lengths must be integers, one per sequence; got \['5'"),
    ],
)
def test_lengths_that_are_no_whole_numbers_are_refused(lengths, error, says):
    """2.9 was taken as 2, True as 1 and nan as -2^63 (as torch's packing takes them);
    strings were "too many dimensions 'str'"."""
    m, x = rnnkit.LSTM(3, 4), torch.randn(5, 3, 3)
    with pytest.raises(error, match=says):
        m(x, lengths=lengths)
    assert m(x, lengths=torch.tensor([5.0, 2.0, 4.0]))[0].shape == (5, 3, 4)  # a float mask's sum


@pytest.mark.parametrize("make", [lambda: rnnkit.LSTM(3, 4), lambda: rnnkit.MGU(3, 4)])
def test_an_engine_set_after_construction_is_checked(make):
    """m.engine = "bogus" ran the reference loop without a word."""
    m = make()
    m.engine = "bogus"
    with pytest.raises(ValueError, match=rf"{type(m).__name__}: engine must be .*got 'bogus'"):
        m(torch.randn(2, 1, 3))
