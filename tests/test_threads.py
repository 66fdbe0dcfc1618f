"""Layers called from several threads at once (a thread pool serving one model): each
call computes what it computes alone, as torch.nn's layers do."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any, NamedTuple

import pytest
import torch
from toy import one_thread

import rnnkit

LAYERS = {
    "lstm-reference": lambda: rnnkit.LSTM(8, 8, 2, engine="reference"),
    "gru-cho": lambda: rnnkit.GRU(8, 8, bidirectional=True, reset_after=False),
    "layernorm-lstm": lambda: rnnkit.LayerNormLSTM(8, 8, 2),
    "mgu": lambda: rnnkit.MGU(8, 8, bidirectional=True),
}


@pytest.mark.parametrize("name", LAYERS)
def test_calls_from_four_threads_at_once_each_get_their_own_result(name):
    """The layer's weights were lent to one shared cell for a call and taken back at its
    end: a second thread's call ran on the first's tensors or on none (wrong outputs,
    TypeError: linear() ... not NoneType)."""
    torch.manual_seed(0)
    layer = LAYERS[name]().eval()
    xs = [torch.randn(30, 3, 8) for _ in range(4)]
    with one_thread(), torch.no_grad():
        alone = [layer(x, return_gates=True) for x in xs]

        def call(i: int) -> bool:
            out, _, gates = layer(xs[i % 4], return_gates=True)
            want_out, _, want_gates = alone[i % 4]
            return torch.equal(out, want_out) and all(map(torch.equal, gates, want_gates))

        with ThreadPoolExecutor(4) as pool:
            results = list(pool.map(call, range(48)))
    assert all(results), f"{results.count(False)} of 48 calls went wrong"


def test_parameters_are_initialised_in_place_and_the_cells_stay_bare():
    """reset_parameters still reaches the layer's own tensors, and no tensor stays on
    the layer's hidden cells after a call."""
    layer = rnnkit.LayerNormLSTM(4, 5)
    with torch.no_grad():
        layer.weight_hh_l0.zero_()
    layer.reset_parameters()
    assert layer.weight_hh_l0.abs().sum() > 0
    layer(torch.randn(3, 2, 4))
    cell = layer._cells[0][0]
    assert all(getattr(cell, n) is None for n in layer._cells[0][2])


class _Scale(torch.nn.Module):
    def forward(self, g: torch.Tensor) -> torch.Tensor:
        return 2.0 * g


class _G(NamedTuple):
    hidden: torch.Tensor


class ParametrizedCell(rnnkit.Cell):
    """An extra parameter under torch.nn.utils.parametrize (as weight_norm puts one)."""

    state = ("hidden",)
    Gates = _G

    def __init__(self, *args: Any, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.gain = torch.nn.Parameter(torch.ones(self.hidden_size))
        torch.nn.utils.parametrize.register_parametrization(self, "gain", _Scale())

    def step(self, gi: torch.Tensor, state: tuple[torch.Tensor, ...]) -> Any:
        h = torch.tanh(self.gain * (gi + self.hh(state[0])))
        return (h,), _G(h)


class PickyCell(ParametrizedCell):
    """Leaves a plain attribute out of its pickled state."""

    def __init__(self, *args: Any, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.act = torch.tanh

    def __getstate__(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if k != "act"}

    def step(self, gi: torch.Tensor, state: tuple[torch.Tensor, ...]) -> Any:
        h = self.act(self.gain * (gi + self.hh(state[0])))
        return (h,), _G(h)


@pytest.mark.parametrize("cell", [ParametrizedCell, PickyCell])
def test_cells_that_pickling_would_refuse_or_change_still_run(cell):
    """The copy a call steps is made without pickling's hooks: a parametrized cell
    ("Serialization of parametrized modules is only supported through state_dict()")
    and one whose __getstate__ leaves an attribute out ran before copies, and still do."""
    layer = rnnkit.Recurrent(cell, 3, 5, num_layers=2)
    layer.reset_parameters()
    out, h = layer(torch.randn(4, 2, 3))
    assert out.shape == (4, 2, 5) and torch.isfinite(out).all()
