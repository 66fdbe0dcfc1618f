"""One time step of a vanilla RNN, an LSTM and a GRU, gates written out.

``RNNCell``, ``LSTMCell`` and ``GRUCell`` are :class:`~rnnkit.cells.base.Cell`\\ s and
drop-ins for the ``torch.nn`` cells of the same names (same constructor, parameter
names and layout, same call). Their :meth:`step` is the readable reference that the
layers unroll, that the fast engine (:mod:`rnnkit.fast`) is tested equal to.

Gate order in the stacked weights is the one of ``torch.nn``: LSTM ``i f g o``,
GRU ``r z n``.
"""

from __future__ import annotations

import math
from typing import Any, Literal, NamedTuple, overload

import torch
import torch.nn.functional as F
from torch import Tensor

from rnnkit.cells.base import Cell, State

__all__ = [
    "LSTMGates",
    "GRUGates",
    "RNNGates",
    "RNNCell",
    "LSTMCell",
    "GRUCell",
    "cell_forget_bias",
    "set_forget_bias",
]


class LSTMGates(NamedTuple):
    """Activations of one LSTM step, each ``(B, H)`` (``hidden`` is ``(B, P)`` with projection)."""

    input: Tensor
    forget: Tensor
    candidate: Tensor
    output: Tensor
    cell: Tensor
    hidden: Tensor


class RNNGates(NamedTuple):
    """Trace of a vanilla RNN: the hidden state only."""

    hidden: Tensor


class GRUGates(NamedTuple):
    """Activations of one GRU step, each ``(B, H)``."""

    reset: Tensor
    update: Tensor
    candidate: Tensor
    hidden: Tensor


def set_forget_bias(
    bias_ih: Tensor | None, bias_hh: Tensor | None, H: int, block: int, b: float, owner: str = ""
) -> None:
    """Jozefowicz et al. 2015: the forget slices (gate block ``block``, H rows) of the two
    biases sum to ``b`` at initialisation: ``bias_ih`` gets b, ``bias_hh`` 0. ``owner``
    names the cell or layer in errors."""
    who = f"{owner}: " if owner else ""
    if isinstance(b, bool) or not isinstance(b, int | float):
        raise TypeError(f"{who}forget_bias must be a number, got {b!r}")
    if not math.isfinite(b):
        raise ValueError(f"{who}forget_bias must be finite, got {b}")
    if bias_ih is None or bias_hh is None:
        raise ValueError(f"{who}forget_bias needs bias=True")
    rows = slice(block * H, (block + 1) * H)
    with torch.no_grad():
        bias_ih[rows] = b
        bias_hh[rows] = 0.0


def cell_forget_bias(cell: Cell, block: int, b: float) -> None:
    """:func:`set_forget_bias` on ``cell``'s own biases, its class named in errors."""
    set_forget_bias(cell.bias_ih, cell.bias_hh, cell.hidden_size, block, b, type(cell).__name__)


def _squeeze(gates: Any, unbatched: bool) -> Any:
    return type(gates)(*(g.squeeze(0) for g in gates)) if unbatched else gates


class RNNCell(Cell):
    """Elman RNN step (Elman 1990); drop-in for ``torch.nn.RNNCell``.

    h_t = tanh(W_ih x_t + b_ih + W_hh h_{t-1} + b_hh)      (or relu)
    """

    Gates = RNNGates

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        bias: bool = True,
        nonlinearity: str = "tanh",
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        if nonlinearity not in ("tanh", "relu"):
            raise ValueError(
                f"{type(self).__name__}: nonlinearity must be 'tanh' or 'relu', "
                f"got {nonlinearity!r}"
            )
        self.nonlinearity = nonlinearity
        super().__init__(input_size, hidden_size, bias, device, dtype)

    def step(self, gi: Tensor, state: State) -> tuple[State, RNNGates]:
        pre = gi + self.hh(state[0])
        h = torch.relu(pre) if self.nonlinearity == "relu" else torch.tanh(pre)
        return (h,), RNNGates(h)

    def forward(self, x: Tensor, hx: Tensor | None = None) -> Tensor:  # type: ignore[override]
        """x ``(B, I)``, hx ``(B, H)`` → h' ``(B, H)``."""
        x, state, unbatched = self.batched(x, hx)
        (h,), _ = self.step(self.project(x), state)
        return h.squeeze(0) if unbatched else h


class LSTMCell(Cell):
    """LSTM step (Hochreiter & Schmidhuber 1997; forget gate: Gers et al. 2000); drop-in
    for ``torch.nn.LSTMCell``.

        i_t = σ(W_ii x_t + b_ii + W_hi h_{t-1} + b_hi)      input ("addition") gate
        f_t = σ(W_if x_t + b_if + W_hf h_{t-1} + b_hf)      forget gate
        g_t = tanh(W_ig x_t + b_ig + W_hg h_{t-1} + b_hg)   candidate C̃_t
        o_t = σ(W_io x_t + b_io + W_ho h_{t-1} + b_ho)      output gate
        c_t = f_t ⊙ c_{t-1} + i_t ⊙ g_t                      cell state
        h_t = o_t ⊙ tanh(c_t)                               (h_t = W_hr h_t with projection)

    ``forget_bias=b`` sets the forget slices of the biases to sum to b (Jozefowicz et al.
    2015). ``weight_hr`` (a projection, as ``torch.nn.LSTM(proj_size=P)``) is given by a
    layer; a cell alone has none.
    """

    Gates = LSTMGates
    state = ("hidden", "cell")
    chunks = 4
    weight_hr: Tensor | None = None

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        bias: bool = True,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
        forget_bias: float | None = None,
    ) -> None:
        self.forget_bias = forget_bias
        super().__init__(input_size, hidden_size, bias, device, dtype)

    def reset_parameters(self) -> None:
        super().reset_parameters()
        if self.forget_bias is not None:
            cell_forget_bias(self, 1, self.forget_bias)

    def state_size(self, name: str) -> int:
        w_hr = self.weight_hr
        return w_hr.shape[0] if name == "hidden" and w_hr is not None else self.hidden_size

    def step(self, gi: Tensor, state: State) -> tuple[State, LSTMGates]:
        h_prev, c_prev = state
        i, f, g, o = (gi + self.hh(h_prev)).chunk(4, dim=1)
        i = torch.sigmoid(i)
        f = torch.sigmoid(f)
        g = torch.tanh(g)
        o = torch.sigmoid(o)
        c = f * c_prev + i * g
        h = o * torch.tanh(c)
        if self.weight_hr is not None:
            h = F.linear(h, self.weight_hr)
        return (h, c), LSTMGates(i, f, g, o, c, h)

    @overload  # type: ignore[override]
    def forward(
        self,
        x: Tensor,
        hx: tuple[Tensor, Tensor] | None = None,
        return_gates: Literal[False] = False,
    ) -> tuple[Tensor, Tensor]: ...
    @overload
    def forward(
        self, x: Tensor, hx: tuple[Tensor, Tensor] | None, return_gates: Literal[True]
    ) -> LSTMGates: ...
    @overload
    def forward(
        self, x: Tensor, hx: tuple[Tensor, Tensor] | None = None, *, return_gates: Literal[True]
    ) -> LSTMGates: ...
    @overload
    def forward(
        self, x: Tensor, hx: tuple[Tensor, Tensor] | None = None, return_gates: bool = False
    ) -> tuple[Tensor, Tensor] | LSTMGates: ...
    def forward(
        self, x: Tensor, hx: tuple[Tensor, Tensor] | None = None, return_gates: bool = False
    ) -> tuple[Tensor, Tensor] | LSTMGates:
        """x ``(B, I)``, hx ``(h, c)`` each ``(B, H)`` → ``(h', c')``, or all gates."""
        x, state, unbatched = self.batched(x, hx)
        _, gates = self.step(self.project(x), state)
        gates = _squeeze(gates, unbatched)
        return gates if return_gates else (gates.hidden, gates.cell)


class GRUCell(Cell):
    """GRU step (Cho et al. 2014); drop-in for ``torch.nn.GRUCell``.

        r_t = σ(W_ir x_t + b_ir + W_hr h_{t-1} + b_hr)      reset gate
        z_t = σ(W_iz x_t + b_iz + W_hz h_{t-1} + b_hz)      update gate
        n_t = tanh(W_in x_t + b_in + r_t ⊙ (W_hn h_{t-1} + b_hn))     reset_after=True
        n_t = tanh(W_in x_t + b_in + W_hn (r_t ⊙ h_{t-1}) + b_hn)     reset_after=False
        h_t = (1 - z_t) ⊙ n_t + z_t ⊙ h_{t-1}

    ``reset_after=True`` is the form of torch.nn.GRU and cuDNN; ``False`` is the
    original paper's, with the reset gate applied before the recurrent matrix.
    """

    Gates = GRUGates
    chunks = 3

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        bias: bool = True,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
        reset_after: bool = True,
    ) -> None:
        if not isinstance(reset_after, bool):  # ("false" was true)
            raise TypeError(f"GRUCell: reset_after must be True or False, got {reset_after!r}")
        self.reset_after = reset_after
        super().__init__(input_size, hidden_size, bias, device, dtype)

    def step(self, gi: Tensor, state: State) -> tuple[State, GRUGates]:
        h_prev = state[0]
        gi_r, gi_z, gi_n = gi.chunk(3, dim=1)
        if self.reset_after:  # one product for the three blocks
            gh_r, gh_z, gh_n = self.hh(h_prev).chunk(3, dim=1)
        else:
            gh_r, gh_z = self.hh(h_prev, slice(0, 2)).chunk(2, dim=1)
        r = torch.sigmoid(gi_r + gh_r)
        z = torch.sigmoid(gi_z + gh_z)
        if self.reset_after:
            n = torch.tanh(gi_n + r * gh_n)
        else:
            n = torch.tanh(gi_n + self.hh(r * h_prev, slice(2, 3)))
        h = (1 - z) * n + z * h_prev
        return (h,), GRUGates(r, z, n, h)

    @overload  # type: ignore[override]
    def forward(
        self, x: Tensor, hx: Tensor | None = None, return_gates: Literal[False] = False
    ) -> Tensor: ...
    @overload
    def forward(self, x: Tensor, hx: Tensor | None, return_gates: Literal[True]) -> GRUGates: ...
    @overload
    def forward(
        self, x: Tensor, hx: Tensor | None = None, *, return_gates: Literal[True]
    ) -> GRUGates: ...
    @overload
    def forward(
        self, x: Tensor, hx: Tensor | None = None, return_gates: bool = False
    ) -> Tensor | GRUGates: ...
    def forward(
        self, x: Tensor, hx: Tensor | None = None, return_gates: bool = False
    ) -> Tensor | GRUGates:
        """x ``(B, I)``, hx ``(B, H)`` → h' ``(B, H)``, or all gates."""
        x, state, unbatched = self.batched(x, hx)
        _, gates = self.step(self.project(x), state)
        gates = _squeeze(gates, unbatched)
        return gates if return_gates else gates.hidden
