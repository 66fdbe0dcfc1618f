"""One time step of a vanilla RNN, an LSTM and a GRU, gates written out.

Each step comes twice: a pure function (``lstm_step`` ...) that takes the input
projection ``W_i· x_t + b_i·`` already computed, so that a layer can compute it for
every time step at once, and a module (``LSTMCell`` ...) that is a drop-in for the
``torch.nn`` cell of the same name (same constructor, parameter names and layout).

Gate order in the stacked weights is the one of ``torch.nn``: LSTM ``i f g o``,
GRU ``r z n``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any, NamedTuple, cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = [
    "LSTMGates",
    "GRUGates",
    "RNNGates",
    "rnn_step",
    "lstm_step",
    "gru_step",
    "RNNCell",
    "LSTMCell",
    "GRUCell",
    "StackedCell",
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


def rnn_step(
    gi: Tensor, h_prev: Tensor, w_hh: Tensor, b_hh: Tensor | None, relu: bool = False
) -> Tensor:
    """Elman RNN step (Elman 1990).

        h_t = tanh(W_ih x_t + b_ih + W_hh h_{t-1} + b_hh)      (or relu)

    Args:
        gi: input projection ``W_ih x_t + b_ih``, ``(B, H)``.
        h_prev: previous hidden state ``(B, H)``.
        w_hh: ``(H, H)``; b_hh: ``(H,)`` or None.
        relu: use ReLU instead of tanh.
    Returns:
        h_t ``(B, H)``.
    """
    pre = gi + F.linear(h_prev, w_hh, b_hh)
    return torch.relu(pre) if relu else torch.tanh(pre)


def lstm_step(
    gi: Tensor,
    h_prev: Tensor,
    c_prev: Tensor,
    w_hh: Tensor,
    b_hh: Tensor | None,
    w_hr: Tensor | None = None,
) -> LSTMGates:
    """LSTM step (Hochreiter & Schmidhuber 1997; forget gate: Gers et al. 2000).

        i_t = σ(W_ii x_t + b_ii + W_hi h_{t-1} + b_hi)      input ("addition") gate
        f_t = σ(W_if x_t + b_if + W_hf h_{t-1} + b_hf)      forget gate
        g_t = tanh(W_ig x_t + b_ig + W_hg h_{t-1} + b_hg)   candidate C̃_t
        o_t = σ(W_io x_t + b_io + W_ho h_{t-1} + b_ho)      output gate
        c_t = f_t ⊙ c_{t-1} + i_t ⊙ g_t                      cell state
        h_t = o_t ⊙ tanh(c_t)                               (h_t = W_hr h_t with projection)

    Args:
        gi: input projection ``W_ih x_t + b_ih``, ``(B, 4H)`` in gate order i f g o.
        h_prev: ``(B, P)`` (P = H without projection); c_prev: ``(B, H)``.
        w_hh: ``(4H, P)``; b_hh: ``(4H,)`` or None; w_hr: ``(P, H)`` or None.
    Returns:
        ``LSTMGates`` of this step; ``hidden`` and ``cell`` are the new state.
    """
    i, f, g, o = (gi + F.linear(h_prev, w_hh, b_hh)).chunk(4, dim=1)
    i = torch.sigmoid(i)
    f = torch.sigmoid(f)
    g = torch.tanh(g)
    o = torch.sigmoid(o)
    c = f * c_prev + i * g
    h = o * torch.tanh(c)
    if w_hr is not None:
        h = F.linear(h, w_hr)
    return LSTMGates(i, f, g, o, c, h)


def gru_step(
    gi: Tensor,
    h_prev: Tensor,
    w_hh: Tensor,
    b_hh: Tensor | None,
    reset_after: bool = True,
) -> GRUGates:
    """GRU step (Cho et al. 2014).

        r_t = σ(W_ir x_t + b_ir + W_hr h_{t-1} + b_hr)      reset gate
        z_t = σ(W_iz x_t + b_iz + W_hz h_{t-1} + b_hz)      update gate
        n_t = tanh(W_in x_t + b_in + r_t ⊙ (W_hn h_{t-1} + b_hn))     reset_after=True
        n_t = tanh(W_in x_t + b_in + W_hn (r_t ⊙ h_{t-1}) + b_hn)     reset_after=False
        h_t = (1 - z_t) ⊙ n_t + z_t ⊙ h_{t-1}

    ``reset_after=True`` is the form of torch.nn.GRU and cuDNN; ``False`` is the
    original paper's, with the reset gate applied before the recurrent matrix.

    Args:
        gi: input projection ``W_ih x_t + b_ih``, ``(B, 3H)`` in gate order r z n.
        h_prev: ``(B, H)``; w_hh: ``(3H, H)``; b_hh: ``(3H,)`` or None.
    Returns:
        ``GRUGates`` of this step; ``hidden`` is the new state.
    """
    gi_r, gi_z, gi_n = gi.chunk(3, dim=1)
    w_hr, w_hz, w_hn = w_hh.chunk(3, dim=0)
    b_hr, b_hz, b_hn = b_hh.chunk(3) if b_hh is not None else (None, None, None)
    r = torch.sigmoid(gi_r + F.linear(h_prev, w_hr, b_hr))
    z = torch.sigmoid(gi_z + F.linear(h_prev, w_hz, b_hz))
    if reset_after:
        n = torch.tanh(gi_n + r * F.linear(h_prev, w_hn, b_hn))
    else:
        n = torch.tanh(gi_n + F.linear(r * h_prev, w_hn, b_hn))
    h = (1 - z) * n + z * h_prev
    return GRUGates(r, z, n, h)


class _CellBase(nn.Module):
    """Parameters laid out as in ``torch.nn.RNNCellBase``: ``weight_ih (G·H, I)``,
    ``weight_hh (G·H, H)``, ``bias_ih``, ``bias_hh`` with G gate blocks."""

    weight_ih: nn.Parameter
    weight_hh: nn.Parameter
    bias_ih: nn.Parameter | None
    bias_hh: nn.Parameter | None

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        bias: bool,
        num_chunks: int,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        GH = num_chunks * hidden_size  # G·H: one block of H rows per gate
        self.input_size = input_size
        self.hidden_size = hidden_size
        self.bias = bias
        self.weight_ih = nn.Parameter(torch.empty(GH, input_size, device=device, dtype=dtype))
        self.weight_hh = nn.Parameter(torch.empty(GH, hidden_size, device=device, dtype=dtype))
        if bias:
            self.bias_ih = nn.Parameter(torch.empty(GH, device=device, dtype=dtype))
            self.bias_hh = nn.Parameter(torch.empty(GH, device=device, dtype=dtype))
        else:
            self.register_parameter("bias_ih", None)
            self.register_parameter("bias_hh", None)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """U(-1/√H, 1/√H) for every weight and bias, as torch.nn does."""
        bound = 1.0 / math.sqrt(self.hidden_size) if self.hidden_size > 0 else 0.0
        for p in self.parameters():
            nn.init.uniform_(p, -bound, bound)

    def _zeros(self, x: Tensor) -> Tensor:
        return x.new_zeros(x.shape[0], self.hidden_size)

    def extra_repr(self) -> str:
        return f"{self.input_size}, {self.hidden_size}" + ("" if self.bias else ", bias=False")


def _batched(x: Tensor, name: str) -> tuple[Tensor, bool]:
    """Accept ``(B, I)`` or an unbatched ``(I,)`` input as torch cells do."""
    if x.dim() == 1:
        return x.unsqueeze(0), True
    if x.dim() != 2:
        raise ValueError(f"{name}: expected input of shape (B, I) or (I,), got {tuple(x.shape)}")
    return x, False


class RNNCell(_CellBase):
    """Drop-in for ``torch.nn.RNNCell``: ``h' = tanh(W_ih x + b_ih + W_hh h + b_hh)``."""

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
                f"RNNCell: nonlinearity must be 'tanh' or 'relu', got {nonlinearity!r}"
            )
        self.nonlinearity = nonlinearity
        super().__init__(input_size, hidden_size, bias, 1, device, dtype)

    def forward(self, x: Tensor, hx: Tensor | None = None) -> Tensor:
        """x ``(B, I)``, hx ``(B, H)`` → h' ``(B, H)``."""
        x, unbatched = _batched(x, "RNNCell")
        h = self._zeros(x) if hx is None else (hx.unsqueeze(0) if unbatched else hx)
        gi = F.linear(x, self.weight_ih, self.bias_ih)
        h = rnn_step(gi, h, self.weight_hh, self.bias_hh, relu=self.nonlinearity == "relu")
        return h.squeeze(0) if unbatched else h


class LSTMCell(_CellBase):
    """Drop-in for ``torch.nn.LSTMCell``; see :func:`lstm_step` for the equations."""

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        bias: bool = True,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__(input_size, hidden_size, bias, 4, device, dtype)

    def forward(
        self, x: Tensor, hx: tuple[Tensor, Tensor] | None = None, return_gates: bool = False
    ) -> tuple[Tensor, Tensor] | LSTMGates:
        """x ``(B, I)``, hx ``(h, c)`` each ``(B, H)`` → ``(h', c')``, or all gates."""
        x, unbatched = _batched(x, "LSTMCell")
        if hx is None:
            h, c = self._zeros(x), self._zeros(x)
        else:
            h, c = (s.unsqueeze(0) for s in hx) if unbatched else hx
        gi = F.linear(x, self.weight_ih, self.bias_ih)
        gates = lstm_step(gi, h, c, self.weight_hh, self.bias_hh)
        if unbatched:
            gates = LSTMGates(*(g.squeeze(0) for g in gates))
        return gates if return_gates else (gates.hidden, gates.cell)


class GRUCell(_CellBase):
    """Drop-in for ``torch.nn.GRUCell``; see :func:`gru_step` for the equations.

    ``reset_after=False`` gives the original Cho et al. 2014 form.
    """

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        bias: bool = True,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
        reset_after: bool = True,
    ) -> None:
        self.reset_after = reset_after
        super().__init__(input_size, hidden_size, bias, 3, device, dtype)

    def forward(
        self, x: Tensor, hx: Tensor | None = None, return_gates: bool = False
    ) -> Tensor | GRUGates:
        """x ``(B, I)``, hx ``(B, H)`` → h' ``(B, H)``, or all gates."""
        x, unbatched = _batched(x, "GRUCell")
        h = self._zeros(x) if hx is None else (hx.unsqueeze(0) if unbatched else hx)
        gi = F.linear(x, self.weight_ih, self.bias_ih)
        gates = gru_step(gi, h, self.weight_hh, self.bias_hh, self.reset_after)
        if unbatched:
            gates = GRUGates(*(g.squeeze(0) for g in gates))
        return gates if return_gates else gates.hidden


_FUSED: dict[str, Callable[..., Any]] = {
    "RNN": torch.rnn_tanh_cell,
    "LSTM": torch.lstm_cell,
    "GRU": torch.gru_cell,
}


class StackedCell(nn.Module):
    """One time step through ``num_layers`` cells, dropout between layers.

    A decoder advances one token at a time, so its recurrent part is a stack of cells
    rather than a layer. State is ``h (B, L, H)`` (and ``c (B, L, H)`` for the LSTM),
    batch first so that beam search can reorder it with one ``index_select``.

    ``step(..., fused=True)`` runs torch's fused cell kernels (``torch.lstm_cell`` ...)
    on the same parameters; ``fused=False`` the readable steps above, which also
    return every gate.
    """

    def __init__(
        self,
        kind: str,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        dropout: float = 0.0,
        nonlinearity: str = "tanh",
    ) -> None:
        super().__init__()
        if kind not in _FUSED:
            raise ValueError(f"cell kind must be RNN, LSTM or GRU; got {kind!r}")
        self.kind, self.hidden_size, self.dropout = kind, hidden_size, dropout
        cls = {"RNN": RNNCell, "LSTM": LSTMCell, "GRU": GRUCell}[kind]
        extra = {"nonlinearity": nonlinearity} if kind == "RNN" else {}
        self.cells = nn.ModuleList(
            cls(input_size if k == 0 else hidden_size, hidden_size, **extra)
            for k in range(num_layers)
        )

    def step(
        self, x: Tensor, h: Tensor, c: Tensor | None, fused: bool = True, record: bool = False
    ) -> tuple[Tensor, Tensor, Tensor | None, list[Any]]:
        """x ``(B, I)``, h / c ``(B, L, H)`` → top output ``(B, H)``, new h, new c, gates.

        ``gates`` holds one ``LSTMGates`` / ``GRUGates`` per layer when ``record``.
        """
        hs: list[Tensor]
        cs: list[Tensor]
        gates: list[LSTMGates | GRUGates | RNNGates]
        hs, cs, gates = [], [], []
        relu = getattr(self.cells[0], "nonlinearity", "tanh") == "relu"
        for k, cell in enumerate(cast("Iterable[_CellBase]", self.cells)):
            if k > 0 and self.dropout and self.training:
                x = F.dropout(x, self.dropout, training=True)
            w = (cell.weight_ih, cell.weight_hh, cell.bias_ih, cell.bias_hh)
            if fused and not record:
                if self.kind == "LSTM":
                    assert c is not None
                    h_k, c_k = torch.lstm_cell(x, (h[:, k], c[:, k]), *w)
                    cs.append(c_k)
                else:
                    fn = torch.rnn_relu_cell if relu else _FUSED[self.kind]
                    h_k = fn(x, h[:, k], *w)
            else:
                gi = F.linear(x, cell.weight_ih, cell.bias_ih)
                if self.kind == "LSTM":
                    assert c is not None
                    g = lstm_step(gi, h[:, k], c[:, k], cell.weight_hh, cell.bias_hh)
                    h_k = g.hidden
                    cs.append(g.cell)
                    gates.append(g)
                elif self.kind == "GRU":
                    g2 = gru_step(
                        gi,
                        h[:, k],
                        cell.weight_hh,
                        cell.bias_hh,
                        getattr(cell, "reset_after", True),
                    )
                    h_k = g2.hidden
                    gates.append(g2)
                else:
                    h_k = rnn_step(gi, h[:, k], cell.weight_hh, cell.bias_hh, relu)
                    gates.append(RNNGates(h_k))
            hs.append(h_k)
            x = h_k
        return x, torch.stack(hs, 1), (torch.stack(cs, 1) if cs else None), gates
