"""``rnnkit.Recurrent``: the layer machinery for any :class:`~rnnkit.cells.Cell`, and the
layers of the built-in variants (LayerNormLSTM, LayerNormGRU, PeepholeLSTM, CIFGLSTM,
MGU, IndRNN).

A layer owns its parameters under torch.nn's names (``weight_ih_l0``,
``weight_hh_l1_reverse``, extra ones as ``ln_cell_gain_l0``); each layer and direction
has a cell that holds none of its own and is handed them for the length of a forward
pass (:func:`~rnnkit.cells.base.bind`), the recurrent weights through DropConnect when
``weight_drop`` is set.
"""

from __future__ import annotations

import numbers
import sys
import warnings
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import PackedSequence

from rnnkit.cells.base import Cell, State, bind, init_parameters, strip, unbind
from rnnkit.cells.gated import CIFGLSTMCell, IndRNNCell, MGUCell, PeepholeLSTMCell
from rnnkit.cells.layernorm import LayerNormGRUCell, LayerNormLSTMCell
from rnnkit.cells.regularisers import Regularisers
from rnnkit.graphs.static import run_layers
from rnnkit.precision import outside_autocast
from rnnkit.unroll import check_input, restore_layout, run_cell, time_major

__all__ = [
    "Recurrent",
    "LayerNormLSTM",
    "LayerNormGRU",
    "PeepholeLSTM",
    "CIFGLSTM",
    "MGU",
    "IndRNN",
]


def _check_arguments(
    layer: type,
    cell_class: Any,
    input_size: int,
    hidden_size: int,
    num_layers: int,
    dropout: float,
    engine: str,
) -> str:
    """What errors call the layer (``Recurrent(MyCell)``; a subclass by its own name,
    ``MGU``), after a ``TypeError`` / ``ValueError`` for a bad argument."""
    name = getattr(cell_class, "__name__", repr(cell_class))
    if not (isinstance(cell_class, type) and issubclass(cell_class, Cell)):
        raise TypeError(f"Recurrent: cell_class must be a subclass of rnnkit.Cell, got {name}")
    name = f"Recurrent({name})" if layer is Recurrent else layer.__name__
    for arg, value in (
        ("input_size", input_size),
        ("hidden_size", hidden_size),
        ("num_layers", num_layers),
    ):
        if isinstance(value, bool) or not isinstance(value, int):  # (TypeError: torch.nn's)
            raise TypeError(f"{name}: {arg} must be a positive integer, got {value!r}")
        if value < 1:
            raise ValueError(f"{name}: {arg} must be a positive integer, got {value!r}")
    if isinstance(dropout, bool) or not isinstance(dropout, numbers.Real) or not 0 <= dropout <= 1:
        raise ValueError(f"{name}: dropout must be a number in [0, 1], got {dropout!r}")
    if dropout and num_layers == 1:  # (torch.nn's warning)
        warnings.warn(
            f"{name}: dropout acts between layers; with num_layers=1 it does "
            f"nothing (dropout={dropout})",
            stacklevel=_outside(),
        )
    if engine not in ("auto", "explicit", "reference"):
        raise ValueError(
            f"{name}: engine must be auto, explicit or reference; got {engine!r}"
            + (" (no fused kernel computes this cell)" if engine == "native" else "")
        )
    return name


class Recurrent(nn.Module):
    """Any cell unrolled over time: stacked, bidirectional, with lengths, regularisers
    and gate traces; the calling conventions of ``rnnkit.LSTM``.

    Args:
        cell_class: a :class:`Cell` subclass, called as
            ``cell_class(input_size, hidden_size, bias, **cell_kwargs)``.
        input_size, hidden_size, num_layers, bias, batch_first, dropout, bidirectional:
            as ``torch.nn.LSTM`` (dropout between layers).
        zoneout: z or ``(z_c, z_h)``; recurrent_dropout: p; weight_drop: p (see
            :mod:`rnnkit.cells.regularisers`).
        engine: ``"explicit"`` (or ``"auto"``): the unrolled cell; ``"reference"``: the
            same (no fast kernel exists for a custom cell). There is no native one.
        cell_kwargs: passed to every cell (``forget_bias=1.0``, ``eps=...``).
    """

    def __init__(
        self,
        cell_class: type[Cell],
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        bias: bool = True,
        batch_first: bool = False,
        dropout: float = 0.0,
        bidirectional: bool = False,
        *,
        zoneout: float | tuple[float, float] = 0.0,
        recurrent_dropout: float = 0.0,
        weight_drop: float = 0.0,
        engine: str = "auto",
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
        **cell_kwargs: Any,
    ) -> None:
        super().__init__()
        name = _check_arguments(
            type(self), cell_class, input_size, hidden_size, num_layers, dropout, engine
        )
        self.cell_class, self.engine = cell_class, engine
        self.input_size, self.hidden_size, self.num_layers = input_size, hidden_size, num_layers
        self.bias, self.batch_first, self.dropout = bias, batch_first, float(dropout)
        self.bidirectional = bidirectional
        has_cell = "cell" in cell_class.state  # (z_c, z_h): z_c for the state named cell
        self.regularisers = Regularisers.make(
            zoneout, recurrent_dropout, weight_drop, name, has_cell
        )
        self.cell_kwargs = cell_kwargs
        # device= and dtype= only when given: a cell whose __init__ lacks **kw then works
        factory: dict[str, Any] = {
            k: v for k, v in (("device", device), ("dtype", dtype)) if v is not None
        }
        _check_keywords(cell_class, {**cell_kwargs, **factory}, name)
        D = 2 if bidirectional else 1
        self._cells: list[tuple[Cell, str, list[str]]] = []  # (cell, suffix, tensor names)
        size = input_size
        for layer in range(num_layers):
            for d in range(D):
                cell = cell_class(size, hidden_size, bias, **factory, **cell_kwargs)
                self._cells.append((cell, _adopt(self, cell, layer, d), strip(cell)))
            size = D * cell.state_size(cell.state[0])  # the next layer reads the outputs

    def train(self, mode: bool = True) -> Recurrent:
        """As ``nn.Module.train``, and the cells (not submodules) follow: a custom cell may
        read ``self.training``."""
        super().train(mode)
        for cell, _, _ in self._cells:
            cell.train(mode)
        return self

    def flatten_parameters(self) -> None:
        """Nothing to do (torch.nn packs its weights for cuDNN here); for code written for
        ``torch.nn.LSTM``."""

    @property
    def num_states(self) -> int:
        return len(self.cell_class.state)

    def reset_parameters(self) -> None:
        """Each cell's own initialisation, on this layer's parameters."""
        for cell, sfx, names in self._cells:
            bound = bind(cell, {n: getattr(self, n + sfx) for n in names})
            try:
                bound.reset_parameters()
            finally:
                unbind(bound, names)

    @outside_autocast  # the recurrence in the weights' dtype (rnnkit.precision)
    def forward(
        self,
        input: Tensor | PackedSequence,
        hx: Any = None,
        lengths: Tensor | list[int] | None = None,
        return_gates: bool = False,
    ) -> Any:
        """Run the layer, as ``rnnkit.LSTM.forward``.

        Args:
            input: ``(T, B, I)`` (``(B, T, I)`` with batch_first), ``(T, I)`` unbatched, or a
                ``PackedSequence``.
            hx: initial state ``(L·D, B, H)``; a tuple ``(h0, c0)`` for cells with two
                states (the LSTM family); zeros if None.
            lengths: ``(B,)`` true lengths of a right-padded batch: zeros past them, final
                states at each last real step, the reverse direction from each last token.
            return_gates: also return the trace, the cell's ``Gates`` with one
                ``(L·D, T, B, H)`` tensor per field (``(L·D, B, T, H)`` with batch_first).
        Returns:
            ``(output, h_n)``, or ``(output, (h_n, c_n))`` for two states; plus the trace.
        """
        if isinstance(input, PackedSequence) and lengths is not None:
            raise ValueError("pass either a PackedSequence or lengths, not both")
        tuple_state = self.num_states > 1
        x, hx, lens, layout = time_major(
            input, hx, lengths, self.batch_first, tuple_state, type(self).__name__
        )
        if self.engine not in ("auto", "explicit", "reference"):  # (set after construction)
            _check_arguments(
                type(self), self.cell_class, self.input_size, self.hidden_size, 1, 0.0, self.engine
            )
        state = _initial_state(self, x, hx)
        D = 2 if self.bidirectional else 1
        trace_type = self.cell_class.Gates if return_gates else None
        out, final, trace = run_layers(
            self,
            x,
            state,
            lens,
            lambda lens, held: _direction(self, return_gates, lens, held),
            (self.num_layers, D, self.dropout),
            trace_type,
            static=self.engine != "reference",
        )
        result_out, final, trace = restore_layout(
            out, final, trace, layout, input, self.batch_first
        )
        result = (result_out, final if tuple_state else final[0])
        return result + (trace,) if return_gates else result

    def extra_repr(self) -> str:
        s = "" if isinstance(self, _Variant) else f"{self.cell_class.__name__}, "
        s += f"{self.input_size}, {self.hidden_size}"
        if self.num_layers != 1:
            s += f", num_layers={self.num_layers}"
        for k in ("bias", "batch_first", "bidirectional"):
            if getattr(self, k) != (k == "bias"):
                s += f", {k}={getattr(self, k)}"
        if self.dropout:
            s += f", dropout={self.dropout}"
        s += self.regularisers.keywords()
        return s + "".join(f", {k}={v!r}" for k, v in self.cell_kwargs.items())


def _outside() -> int:
    """The stack level of the first caller outside rnnkit, for a warning to name the
    user's line (a variant's constructor is one frame deeper than Recurrent's)."""
    frame, level = sys._getframe(1), 1
    while frame.f_back is not None and frame.f_globals.get("__name__", "").startswith("rnnkit"):
        frame, level = frame.f_back, level + 1
    return level


def _adopt(layer: Recurrent, cell: Cell, k: int, d: int) -> str:
    """Register the cell's parameters, buffers and submodules on ``layer`` under
    torch.nn-style names (``weight_ih_l0_reverse``, ``norm_l1``); their suffix."""
    sfx = f"_l{k}" + ("_reverse" if d else "")
    for pname, p in cell._parameters.items():
        layer.register_parameter(pname + sfx, p)
    for bname, b in cell._buffers.items():
        layer.register_buffer(bname + sfx, b, bname not in cell._non_persistent_buffers_set)
    for mname, m in cell.named_children():  # shared: .to(), eval() reach the cell's
        layer.add_module(mname + sfx, m)
    return sfx


def _direction(
    layer: Recurrent, record: bool, lengths: Tensor | None, held: Tensor | None = None
) -> Any:
    """``run(k, d, x, state)`` for :func:`rnnkit.unroll.stack`; ``held``: the ``(T, B, 1)``
    steps past each length, held (static shapes, :mod:`rnnkit.graphs`)."""
    D = 2 if layer.bidirectional else 1
    reg, training = layer.regularisers, layer.training

    def run(k: int, d: int, x: Tensor, state: State) -> tuple[Tensor, State, Any]:
        cell, sfx, names = layer._cells[k * D + d]
        tensors = {n: getattr(layer, n + sfx) for n in names}
        tensors["weight_hh"] = reg.drop_weight(tensors["weight_hh"], training)
        bound = bind(cell, tensors, reg.recurrent_mask(state[0], training))
        try:
            zone = reg.zone(cell.state, state, x.shape[0], training)
            return run_cell(bound, x, state, lengths, bool(d), zone, record, held)
        finally:
            unbind(bound, names)

    return run


def _initial_state(layer: Recurrent, x: Tensor, hx: Any) -> tuple[Tensor, ...]:
    """One ``(L·D, B, ·)`` tensor per state name; zeros when hx is None. Checks x and hx
    as torch.nn does."""
    if hx is not None:
        hx = tuple(hx) if isinstance(hx, (tuple, list)) else (hx,)
        if len(hx) != layer.num_states:
            raise ValueError(
                f"{type(layer).__name__}: hx must hold {layer.num_states} state tensor(s) "
                f"{layer.cell_class.state}, got {len(hx)}"
            )
    LD = layer.num_layers * (2 if layer.bidirectional else 1)
    cell = layer._cells[0][0]
    shapes = [(LD, x.shape[1], cell.state_size(n)) for n in cell.state]
    check_input(x, layer.input_size, next(layer.parameters(), x).dtype, hx, shapes)
    return hx or tuple(x.new_zeros(s) for s in shapes)


class _Variant(Recurrent):
    """A :class:`Recurrent` of one built-in cell: ``Variant(input_size, hidden_size, ...)``."""

    cell: type[Cell]

    def __init__(self, input_size: int, hidden_size: int, *args: Any, **kwargs: Any) -> None:
        super().__init__(self.cell, input_size, hidden_size, *args, **kwargs)


class LayerNormLSTM(_Variant):
    """Layer-normalised LSTM layer (Ba et al. 2016); see :class:`LayerNormLSTMCell`.
    Extra: ``forget_bias=``, ``eps=``."""

    cell = LayerNormLSTMCell


class LayerNormGRU(_Variant):
    """Layer-normalised GRU layer; see :class:`LayerNormGRUCell`. Extra: ``eps=``."""

    cell = LayerNormGRUCell


class PeepholeLSTM(_Variant):
    """LSTM layer with peepholes (Gers & Schmidhuber 2000); see :class:`PeepholeLSTMCell`.
    Extra: ``forget_bias=``."""

    cell = PeepholeLSTMCell


class CIFGLSTM(_Variant):
    """LSTM layer with a coupled input-forget gate (Greff et al. 2017); see
    :class:`CIFGLSTMCell`. Extra: ``forget_bias=``."""

    cell = CIFGLSTMCell


class MGU(_Variant):
    """Minimal gated unit layer (Zhou et al. 2016); see :class:`MGUCell`."""

    cell = MGUCell


class IndRNN(_Variant):
    """Independently recurrent layer (Li et al. 2018); see :class:`IndRNNCell`.
    Extra: ``nonlinearity=``."""

    cell = IndRNNCell


def unknown_keywords(cell_class: type[Cell], kwargs: dict[str, Any]) -> list[str]:
    """The keywords of ``kwargs`` that the cell's ``__init__`` does not take (following
    ``**kw`` along the classes it is handed on to)."""
    params, open_ended = init_parameters(cell_class)
    named = {p.name for p in params}
    return [] if open_ended else [k for k in kwargs if k not in named]


def _check_keywords(cell_class: type[Cell], kwargs: dict[str, Any], where: str) -> None:
    """A keyword the cell's ``__init__`` does not take is a TypeError naming the layer
    and the cell (torch's own named neither: "Cell.__init__() got an unexpected ...")."""
    unknown = unknown_keywords(cell_class, kwargs)
    if unknown and unknown[0] in ("device", "dtype"):
        raise TypeError(
            f"{where}: {cell_class.__name__}.__init__ takes no {unknown[0]}= (take **kw and "
            "hand it on to rnnkit.Cell.__init__)"
        )
    if unknown:
        raise TypeError(f"{where}: {cell_class.__name__} takes no keyword {unknown[0]!r}")
