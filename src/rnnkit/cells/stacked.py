"""A stack of cells advanced one time step: the decoder's recurrent part."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rnnkit.cells.base import Cell
from rnnkit.cells.stock import GRUCell, LSTMCell, RNNCell
from rnnkit.precision import outside_autocast

__all__ = ["StackedCell"]

STOCK: dict[str, type[Cell]] = {"RNN": RNNCell, "LSTM": LSTMCell, "GRU": GRUCell}
_FUSED: dict[str, Callable[..., Any]] = {
    "RNN": torch.rnn_tanh_cell,
    "LSTM": torch.lstm_cell,
    "GRU": torch.gru_cell,
}


class StackedCell(nn.Module):
    """One time step through ``num_layers`` cells, dropout between layers.

    A decoder advances one token at a time, so its recurrent part is a stack of cells
    rather than a layer. State is ``h (B, L, H)`` (and ``c (B, L, H)`` for a cell with a
    cell state, the LSTM family), batch first so that beam search can reorder it with
    one ``index_select``.

    ``cell`` is ``"RNN"``, ``"LSTM"``, ``"GRU"`` or any :class:`Cell` class (one or two
    state tensors). ``step(..., fused=True)`` runs torch's fused kernels
    (``torch.lstm_cell`` ...) on the stock cells' parameters; otherwise each cell's
    readable :meth:`Cell.step`, which also returns every gate.
    """

    def __init__(
        self,
        cell: str | type[Cell],
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        dropout: float = 0.0,
        nonlinearity: str = "tanh",
        **cell_kwargs: Any,
    ) -> None:
        super().__init__()
        if isinstance(cell, str):
            if cell not in STOCK:
                raise ValueError(f"cell kind must be RNN, LSTM or GRU; got {cell!r}")
            self.kind, cls = cell, STOCK[cell]
            if cell == "RNN":
                cell_kwargs["nonlinearity"] = nonlinearity
        else:
            self.kind, cls = cell.__name__, cell
        if len(cls.state) > 2:
            raise ValueError(f"{cls.__name__}: a decoder cell carries at most two states")
        self.fusable = isinstance(cell, str)
        self.hidden_size, self.dropout = hidden_size, dropout
        self.has_cell_state = len(cls.state) == 2
        self.cells = nn.ModuleList(
            cls(input_size if k == 0 else hidden_size, hidden_size, **cell_kwargs)
            for k in range(num_layers)
        )

    @outside_autocast
    def step(
        self, x: Tensor, h: Tensor, c: Tensor | None, fused: bool = True, record: bool = False
    ) -> tuple[Tensor, Tensor, Tensor | None, list[Any]]:
        """x ``(B, I)``, h / c ``(B, L, H)`` → top output ``(B, H)``, new h, new c, gates.

        ``gates`` holds one ``Gates`` tuple per layer when ``record``; under autocast the
        step runs without it, in the weights' dtype (see :mod:`rnnkit.precision`).
        """
        hs: list[Tensor] = []
        cs: list[Tensor] = []
        gates: list[Any] = []
        for k, cell in enumerate(cast("list[Cell]", self.cells)):
            if k > 0 and self.dropout and self.training:
                x = F.dropout(x, self.dropout, training=True)
            state = (h[:, k],) if c is None else (h[:, k], c[:, k])
            new: tuple[Tensor, ...]
            if fused and self.fusable and not record:
                w: tuple[Any, ...] = (cell.weight_ih, cell.weight_hh, cell.bias_ih, cell.bias_hh)
                if self.kind == "LSTM":
                    new = torch.lstm_cell(x, state, *w)
                else:
                    relu = getattr(cell, "nonlinearity", "tanh") == "relu"
                    fn: Any = torch.rnn_relu_cell if relu else _FUSED[self.kind]
                    new = (fn(x, state[0], *w),)
            else:
                new, g = cell.step(cell.project(x), state)
                gates.append(g)
            hs.append(new[0])
            if c is not None:
                cs.append(new[1])
            x = new[0]
        return x, torch.stack(hs, 1), (torch.stack(cs, 1) if cs else None), gates
