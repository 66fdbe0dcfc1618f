"""A stack of cells advanced one time step: the decoder's recurrent part."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rnnkit.cells.base import Cell, State
from rnnkit.cells.regularisers import Regularisers
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

    ``regularisers`` (:class:`Regularisers`) act as they do in a layer, one step at a time:
    zoneout mixes each new state with the previous one after the step (a fresh mask per
    step in training, the expectation in evaluation); recurrent dropout multiplies the h
    entering ``W_hh`` by a per-sequence mask ``(B, L, H)`` that :meth:`draw` makes and the
    caller carries from step to step (the decoder keeps it in its state); weight drop reads
    a DropConnect copy of each ``W_hh``, drawn by :meth:`draw` once per sequence batch.
    Those copies are the one thing held here between calls (a weight has no batch rows to
    travel in a batch-first state), so in training a stack steps one sequence batch at a
    time: a second :meth:`draw` replaces the first batch's copies. Teacher forcing, the
    only training use, does so; in evaluation there are no copies.
    """

    def __init__(
        self,
        cell: str | type[Cell],
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        dropout: float = 0.0,
        nonlinearity: str | None = None,
        regularisers: Regularisers | None = None,
        **cell_kwargs: Any,
    ) -> None:
        super().__init__()
        self.kind, cls = _cell_class(cell, nonlinearity, cell_kwargs)
        # torch's fused cells; its GRU is the reset-after form only (Cho's: the cell's step)
        self.fusable = isinstance(cell, str) and cell_kwargs.get("reset_after", True)
        self.hidden_size, self.dropout = hidden_size, dropout
        self.has_cell_state = len(cls.state) == 2
        self.cells = nn.ModuleList(
            cls(input_size if k == 0 else hidden_size, hidden_size, True, **cell_kwargs)
            for k in range(num_layers)
        )
        for name in cls.state:  # the bridge, the attention and the output layer read them
            width = cast("Cell", self.cells[0]).state_size(name)
            if width != hidden_size:
                raise ValueError(
                    f"{cls.__name__}: state {name!r} is {width} wide; in an encoder-decoder "
                    f"every state is hidden_size ({hidden_size}) wide"
                )
        self.reg = regularisers or Regularisers()
        self._dropped: list[Tensor] | None = None  # this sequence batch's W_hh copies

    def __getstate__(self) -> dict[str, Any]:
        """Copies and pickles leave out this batch's ``W_hh`` copies (non-leaf tensors of
        its autograd graph, which ``copy.deepcopy`` refuses)."""
        return {**self.__dict__, "_dropped": None}

    def draw(self, h: Tensor) -> Tensor | None:
        """Start a sequence batch (training): a new weight-drop copy of every ``W_hh``, held
        here until the next draw, and the recurrent-dropout mask ``(B, L, H)`` for the
        state ``h (B, L, H)`` (returned, None without recurrent dropout)."""
        self._dropped = None
        if not self.training:
            return None
        if self.reg.weight_drop:
            self._dropped = self._drop_weights()
        return self.reg.recurrent_mask(h, True)

    def _drop_weights(self) -> list[Tensor]:
        cells = cast("list[Cell]", self.cells)
        return [self.reg.drop_weight(cell.weight_hh, True) for cell in cells]

    def _weight_hh(self, k: int, cell: Cell) -> Tensor:
        if not (self.training and self.reg.weight_drop):
            return cell.weight_hh
        if self._dropped is None:  # stepped without a draw: this step starts the sequence
            self._dropped = self._drop_weights()
        return self._dropped[k]

    def _zoneout(self, cell: Cell, new: State, old: State) -> State:
        """s_t = d ⊙ s_{t-1} + (1 - d) ⊙ s̃_t per state (d = z in evaluation)."""
        masks = self.reg.zone(cell.state, new, 1, self.training)
        if masks is None:
            return new
        return tuple(
            s if d is None else torch.lerp(s, o, d if isinstance(d, float) else d[0])
            for s, o, d in zip(new, old, masks)
        )

    @outside_autocast
    def step(
        self,
        x: Tensor,
        h: Tensor,
        c: Tensor | None,
        fused: bool = True,
        record: bool = False,
        mask: Tensor | None = None,
    ) -> tuple[Tensor, Tensor, Tensor | None, list[Any]]:
        """x ``(B, I)``, h / c ``(B, L, H)`` → top output ``(B, H)``, new h, new c, gates.

        ``gates`` holds one ``Gates`` tuple per layer when ``record`` (with zoneout, its
        state fields hold the mixed states); under autocast the step runs without it, in
        the weights' dtype (see :mod:`rnnkit.precision`). ``mask``: the recurrent-dropout
        mask ``(B, L, H)`` of :meth:`draw`, used in training only.
        """
        mask = mask if self.training else None
        zoned = self.reg.zoneout_c or self.reg.zoneout_h
        hs: list[Tensor] = []
        cs: list[Tensor] = []
        gates: list[Any] = []
        for k, cell in enumerate(cast("list[Cell]", self.cells)):
            if k > 0 and self.dropout and self.training:
                x = F.dropout(x, self.dropout, training=True)
            state: State = (h[:, k],) if c is None else (h[:, k], c[:, k])
            new: State
            w_hh, m = self._weight_hh(k, cell), (None if mask is None else mask[:, k])
            # the fused GRU reads h_{t-1} outside W_hh too: a mask there needs the cell
            if fused and self.fusable and not record and (m is None or self.kind != "GRU"):
                new = _fused_step(self.kind, cell, x, state, w_hh, m)
                if zoned:
                    new = self._zoneout(cell, new, state)
            else:
                if m is None and w_hh is cell.weight_hh:
                    new, g = cell.step(cell.project(x), state)
                else:
                    with _lent(cell, w_hh, m):
                        new, g = cell.step(cell.project(x), state)
                if zoned:
                    new = self._zoneout(cell, new, state)
                    g = g._replace(**dict(zip(cell.state, new))) if record else g
                gates.append(g)
            hs.append(new[0])
            if c is not None:
                cs.append(new[1])
            x = new[0]
        return x, torch.stack(hs, 1), (torch.stack(cs, 1) if cs else None), gates

    def extra_repr(self) -> str:
        return f"{self.kind}, layers={len(self.cells)}" + self.reg.keywords()


def _cell_class(
    cell: str | type[Cell], nonlinearity: str | None, cell_kwargs: dict[str, Any]
) -> tuple[str, type[Cell]]:
    """The stack's kind and cell class; ``nonlinearity`` goes into ``cell_kwargs`` for the
    stock RNN (tanh by default) and for a cell class that takes it (IndRNN)."""
    if isinstance(cell, str):
        if cell not in STOCK:
            raise ValueError(f"cell kind must be RNN, LSTM or GRU; got {cell!r}")
        kind, cls = cell, STOCK[cell]
        if cell == "RNN":
            cell_kwargs["nonlinearity"] = nonlinearity or "tanh"
    else:
        kind, cls = cell.__name__, cell
    if nonlinearity is not None and cell != "RNN":
        cell_kwargs["nonlinearity"] = nonlinearity
    if len(cls.state) > 2:
        raise ValueError(f"{cls.__name__}: a decoder cell carries at most two states")
    return kind, cls


def _fused_step(
    kind: str, cell: Cell, x: Tensor, state: State, w_hh: Tensor, mask: Tensor | None
) -> State:
    """One step of a stock cell by torch's fused kernel (``torch.lstm_cell`` ...), reading
    ``w_hh`` and the h entering it times the recurrent-dropout ``mask``."""
    w: tuple[Any, ...] = (cell.weight_ih, w_hh, cell.bias_ih, cell.bias_hh)
    h_in = state[0] if mask is None else state[0] * mask
    if kind == "LSTM":
        return tuple(torch.lstm_cell(x, (h_in, state[1]), *w))
    relu = getattr(cell, "nonlinearity", "tanh") == "relu"
    fn: Any = torch.rnn_relu_cell if relu else _FUSED[kind]
    return (fn(x, h_in, *w),)


@contextmanager
def _lent(cell: Cell, weight_hh: Tensor, mask: Tensor | None) -> Iterator[None]:
    """For one step, ``cell`` reads ``weight_hh`` (a weight-drop copy, or its own) and the
    recurrent-dropout ``mask`` through :meth:`Cell.hh`; its parameters stay as they are."""
    lend = weight_hh is not cell.weight_hh
    if lend:
        cell.__dict__["weight_hh"] = weight_hh  # shadows the parameter for this step
    cell.__dict__["recurrent_mask"] = mask
    try:
        yield
    finally:
        if lend:
            del cell.__dict__["weight_hh"]
        cell.__dict__.pop("recurrent_mask", None)
