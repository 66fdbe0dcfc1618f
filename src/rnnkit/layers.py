"""Recurrent layers: a cell unrolled over time, stacked and bidirectional.

``rnnkit.RNN``, ``rnnkit.LSTM`` and ``rnnkit.GRU`` subclass ``torch.nn.RNN/LSTM/GRU``:
same constructor, parameters, ``state_dict()`` keys and return values, so a torch
state dict loads into them and back. They add

- ``forward(x, hx=None, lengths=None, return_gates=False)``: a padded batch plus
  lengths (no packing), and a trace of every gate and state;
- ``engine=``: ``"native"`` runs torch's fused kernels (oneDNN / cuDNN) on the same
  parameters, ``"explicit"`` runs our own unrolled cells (every feature), ``"auto"``
  picks native unless a feature needs explicit. ``"reference"`` is the explicit
  engine without the fast path of :mod:`rnnkit.fast`: the readable cells, one step at
  a time, with autograd doing the backward pass.
"""

from __future__ import annotations

from typing import Any, cast

import torch
from torch import Tensor, nn
from torch.autograd import forward_ad
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence, pad_packed_sequence

from rnnkit import fast
from rnnkit.cells.base import Cell, State, bind, strip, unbind
from rnnkit.cells.regularisers import Regularisers
from rnnkit.cells.stock import (
    GRUCell,
    GRUGates,
    LSTMCell,
    LSTMGates,
    RNNCell,
    RNNGates,
    set_forget_bias,
)
from rnnkit.graphs.static import run_layers
from rnnkit.precision import outside_autocast
from rnnkit.unroll import (
    check_input,
    freeze,
    last,
    restore_layout,
    reverse_index,
    reverse_out,
    run_cell,
    time_major,
    time_reverse,
)

__all__ = ["RNN", "LSTM", "GRU", "RNNGates", "LSTMGates", "GRUGates", "ENGINES"]

ENGINES = ("auto", "explicit", "native", "reference")


def _transformed() -> bool:
    """Whether a torch.func transform (grad, vmap, jacrev, ...) or forward-mode AD (a
    ``dual_level``) is running: packing for the fused kernel works under neither."""
    active = getattr(torch._C, "_are_functorch_transforms_active", None)
    return bool(active and active()) or getattr(forward_ad, "_current_level", -1) >= 0


def _stock_cell(kind: str, layer: Any) -> tuple[Cell, list[str]]:
    """A parameter-less stock cell that a layer binds its weights to (see
    :func:`rnnkit.cells.base.bind`)."""
    H, bias = layer.hidden_size, layer.bias  # on "meta": no memory, no draw from the RNG
    if kind == "LSTM":
        cell: Cell = LSTMCell(1, H, bias, device="meta")
    elif kind == "GRU":
        cell = GRUCell(1, H, bias, device="meta", reset_after=layer.reset_after)
    else:
        cell = RNNCell(1, H, bias, nonlinearity=layer.nonlinearity, device="meta")
    return cell, strip(cell) + (["weight_hr"] if kind == "LSTM" else [])


def _run_direction(
    layer: Any,
    x: Tensor,
    state: State,
    weights: dict,
    lengths: Tensor | None,
    reverse: bool,
    engine: str,
    record: bool,
    hold: Tensor | None = None,
) -> tuple[Tensor, State, Any]:
    """One layer, one direction. x ``(T, B, I)`` → output ``(T, B, H)``, final state,
    gate trace (a NamedTuple of ``(T, B, H)`` tensors) or None. ``hold``: the steps past
    each length as a ``(T, B, 1)`` mask, held rather than indexed (static shapes)."""
    kind, reg, training = layer._kind, layer.regularisers, layer.training
    weights = dict(weights, w_hh=reg.drop_weight(weights["w_hh"], training))
    if engine == "explicit" and not record and fast.supports(kind, weights, (x, *state)):
        rev = reverse_index(lengths, x.shape[0], x.shape[1], x.device) if reverse else None
        rmask = reg.recurrent_mask(state[0], training)  # drawn in the order the loop draws
        zone = reg.zone(layer._cell[0].state, state, x.shape[0], training)
        zone = freeze(zone, hold, len(state))
        xd = time_reverse(x, rev) if reverse else x
        out, c_n = fast.run(
            kind, xd, state, weights, None if hold is not None else lengths, zone, rmask
        )
        tail = (cast(Tensor, c_n),) if kind == "LSTM" else ()  # c_n is None but for the LSTM
        final = (last(out, lengths, hold is not None),) + tail
        return reverse_out(out, None, reverse, rev)[0], final, None
    cell, names = layer._cell
    tensors = {
        "weight_ih": weights["w_ih"],
        "weight_hh": weights["w_hh"],
        "bias_ih": weights["b_ih"],
        "bias_hh": weights["b_hh"],
        "weight_hr": weights["w_hr"],
    }
    bound = bind(cell, tensors, reg.recurrent_mask(state[0], training))
    try:
        zone = reg.zone(cell.state, state, x.shape[0], training)
        return run_cell(bound, x, state, lengths, reverse, zone, record, hold)
    finally:
        unbind(bound, names)


def _layer_weights(layer: Any, k: int, direction: int) -> dict:
    """The tensors of layer ``k`` in one direction (None for those it lacks) and the
    options of its cell, for :func:`_run_direction`."""
    sfx = f"_l{k}" + ("_reverse" if direction else "")
    get = lambda name: getattr(layer, name + sfx, None)  # noqa: E731
    return {
        "w_ih": get("weight_ih"),
        "w_hh": get("weight_hh"),
        "b_ih": get("bias_ih"),
        "b_hh": get("bias_hh"),
        "w_hr": get("weight_hr"),
        "reset_after": getattr(layer, "reset_after", True),
        "relu": getattr(layer, "nonlinearity", "tanh") == "relu",
    }


def _check_pair(hx: Any) -> None:
    """An LSTM's hx is the pair ``(h_0, c_0)`` (a third tensor was ignored, one was an
    IndexError)."""
    if isinstance(hx, (tuple, list)) and len(hx) == 2:
        return
    n = len(hx) if isinstance(hx, (tuple, list)) else None
    got = f"a {type(hx).__name__}" if n is None else f"{n} tensor" + "s" * (n != 1)
    raise RuntimeError(f"LSTM: hx must be the pair (h_0, c_0), got {got}")


def _initial_state(layer: Any, x: Tensor, hx: Any) -> tuple[Tensor, ...]:
    """``(h0,)`` or ``(h0, c0)``, each ``(L·D, B, ·)``; zeros when hx is None. Checks x
    and hx as torch.nn does."""
    LD, B = layer.num_layers * (2 if layer.bidirectional else 1), x.shape[1]
    real_h = getattr(layer, "proj_size", 0) or layer.hidden_size
    lstm = layer._kind == "LSTM"
    shapes = [(LD, B, real_h)] + ([(LD, B, layer.hidden_size)] if lstm else [])
    state = None if hx is None else tuple(hx) if lstm else (hx,)
    check_input(x, layer.input_size, next(layer.parameters(), x).dtype, state, shapes)
    return state or tuple(x.new_zeros(s) for s in shapes)


def _run_explicit(
    layer: Any, x: Tensor, hx: Any, lens: Tensor | None, engine: str, record: bool
) -> tuple[Tensor, State, Any]:
    """The layer on the explicit (or reference) engine: x ``(T, B, I)`` time-major →
    output, final state, gate trace (None unless ``record``)."""

    def run_for(lens: Tensor | None, held: Tensor | None) -> Any:
        def run(k: int, d: int, x: Tensor, s: State) -> tuple[Tensor, State, Any]:
            w = _layer_weights(layer, k, d)
            return _run_direction(layer, x, s, w, lens, bool(d), engine, record, held)

        return run

    shape = (layer.num_layers, 2 if layer.bidirectional else 1, layer.dropout)
    trace_type = type(layer._cell[0]).Gates if record else None
    init = _initial_state(layer, x, hx)
    static = engine == "explicit"
    return run_layers(layer, x, init, lens, run_for, shape, trace_type, static=static)


# ---------------------------------------------------------------------------- layers


class _Recurrent:
    """Shared forward of RNN / LSTM / GRU; mixed into the torch.nn classes."""

    _kind: str  # "RNN", "LSTM" or "GRU"
    engine: str

    def _set_engine(self, engine: str) -> None:
        if engine not in ENGINES:
            raise ValueError(
                f"{type(self).__name__}: engine must be one of {', '.join(ENGINES)}; got {engine!r}"
            )
        self.engine = engine

    def _needs_explicit(self) -> str | None:
        """A reason the native kernels cannot run this layer, or None."""
        return self.regularisers.first_on()

    def _pick_engine(self, return_gates: bool, lengths: bool = False) -> str:
        """The engine of one call; ``lengths``: the batch comes with lengths, which
        ``auto`` runs on the explicit engine while torch.export records (packing's sizes
        depend on the lengths' values, unknown then)."""
        reason = "return_gates=True" if return_gates else self._needs_explicit()
        if not reason and lengths and torch.compiler.is_exporting():
            reason = "lengths under torch.export"
        if not reason and lengths and _transformed():  # (torch.func: packing has no storage)
            reason = "lengths under torch.func or forward-mode AD"
        if self.engine == "native":
            if reason:
                raise ValueError(
                    f"engine='native' cannot serve {reason}: use engine='explicit' or 'auto'"
                )
            return "native"
        if self.engine == "auto":
            return "explicit" if reason else "native"
        if self.engine not in ENGINES:  # (set after construction: it ran the reference loop)
            self._set_engine(self.engine)
        return self.engine

    def _setup(
        self,
        engine: str,
        zoneout: Any,
        recurrent_dropout: float,
        weight_drop: float,
        forget_bias: float | None = None,
    ) -> None:
        """What rnnkit adds to the torch.nn layer: engine, regularisers, forget bias."""
        m: Any = self
        self._set_engine(engine)
        self.regularisers = Regularisers.make(
            zoneout, recurrent_dropout, weight_drop, type(self).__name__, self._kind == "LSTM"
        )
        self._cell = _stock_cell(self._kind, m)
        self.forget_bias = forget_bias
        if forget_bias is not None:
            if not m.bias:
                raise ValueError(f"{type(self).__name__}: forget_bias needs bias=True")
            self._set_forget_bias()

    def extra_repr(self) -> str:
        s = super().extra_repr()  # type: ignore[misc]
        if self.engine != "auto":
            s += f", engine={self.engine!r}"
        if getattr(self, "forget_bias", None) is not None:
            s += f", forget_bias={self.forget_bias}"
        return s + self.regularisers.keywords()

    def _set_forget_bias(self) -> None:
        m: Any = self
        for name, p in m.named_parameters():
            if name.startswith("bias_ih"):
                b = cast(float, self.forget_bias)
                bias_hh = getattr(m, "bias_hh" + name[7:])
                set_forget_bias(p, bias_hh, m.hidden_size, 1, b, type(self).__name__)

    @outside_autocast  # the recurrence in the weights' dtype (rnnkit.precision)
    def forward(
        self,
        input: Tensor | PackedSequence,
        hx: Any = None,
        lengths: Tensor | list[int] | None = None,
        return_gates: bool = False,
    ) -> Any:
        """Run the layer.

        Args:
            input: ``(T, B, I)`` (``(B, T, I)`` with batch_first), ``(T, I)`` unbatched, or a
                ``PackedSequence``.
            hx: initial state ``(L·D, B, H)`` (LSTM: a pair ``(h0, c0)``); zeros if None.
            lengths: ``(B,)`` true lengths of a right-padded batch. Outputs are zero past
                each length, final states are taken at each sequence's last real step, and
                the reverse direction starts at its last real token.
            return_gates: also return a trace of every gate and state, each
                ``(L·D, T, B, H)`` (``(L·D, B, T, H)`` with batch_first), zero past lengths.
        Returns:
            ``(output, h_n)`` / ``(output, (h_n, c_n))`` as torch.nn, plus the trace.
        """
        m: Any = self
        if self._kind == "LSTM" and hx is not None:
            _check_pair(hx)
        packed = isinstance(input, PackedSequence)
        engine = self._pick_engine(return_gates, lengths is not None)
        if packed and lengths is not None:
            raise ValueError("pass either a PackedSequence or lengths, not both")
        empty = isinstance(input, Tensor) and input.dim() == 3
        empty = empty and cast(Tensor, input).shape[0 if m.batch_first else 1] == 0
        if engine == "native" and (packed or lengths is None or empty):  # empty: nothing to pack
            return super().forward(input, hx)  # type: ignore[misc]
        lstm = self._kind == "LSTM"
        x, hx, lens, layout = time_major(input, hx, lengths, m.batch_first, lstm, self._kind)
        if engine == "native":  # padded batch with lengths: pack, run the fused kernel, pad
            assert lens is not None
            seq = pack_padded_sequence(x, lens, enforce_sorted=False)
            out_p, final_any = super().forward(seq, hx)  # type: ignore[misc]
            out = pad_packed_sequence(out_p, total_length=x.shape[0])[0]
            final = tuple(final_any) if lstm else (final_any,)
            trace = None
        else:
            out, final, trace = _run_explicit(m, x, hx, lens, engine, return_gates)
        result_out, final, trace = restore_layout(out, final, trace, layout, input, m.batch_first)
        result = (result_out, final if lstm else final[0])
        return result + (trace,) if return_gates else result


_REGULARISER_DOC = """
    Regularisers (explicit engine; ``auto`` picks it when one is set): ``zoneout=z`` (or
    ``(z_c, z_h)`` for the LSTM), ``recurrent_dropout=p``, ``weight_drop=p``; see
    :mod:`rnnkit.cells.regularisers`."""


class RNN(_Recurrent, nn.RNN):
    """Drop-in for ``torch.nn.RNN`` (Elman network, tanh or relu); see module docstring."""

    __doc__ = (__doc__ or "") + _REGULARISER_DOC
    _kind = "RNN"

    def __init__(
        self,
        *args: Any,
        engine: str = "auto",
        zoneout: float = 0.0,
        recurrent_dropout: float = 0.0,
        weight_drop: float = 0.0,
        **kwargs: Any,
    ) -> None:
        _no_forget_bias("RNN", kwargs)
        super().__init__(*args, **kwargs)
        self._setup(engine, zoneout, recurrent_dropout, weight_drop)


def _no_forget_bias(kind: str, kwargs: dict[str, Any]) -> None:
    """torch's own error named its base class ("RNNBase.__init__() got an unexpected
    keyword argument 'forget_bias'")."""
    if "forget_bias" in kwargs:
        raise TypeError(
            f"{kind} takes no keyword 'forget_bias': it has no forget gate (LSTM, "
            "LayerNormLSTM, PeepholeLSTM and CIFGLSTM take it)"
        )


class LSTM(_Recurrent, nn.LSTM):
    """Drop-in for ``torch.nn.LSTM`` (``proj_size`` included); see module docstring.
    ``forget_bias=b``: the forget slices of the two biases sum to b at initialisation
    (Jozefowicz et al. 2015); any engine."""

    __doc__ = (__doc__ or "") + _REGULARISER_DOC
    _kind = "LSTM"

    def __init__(
        self,
        *args: Any,
        engine: str = "auto",
        forget_bias: float | None = None,
        zoneout: float | tuple[float, float] = 0.0,
        recurrent_dropout: float = 0.0,
        weight_drop: float = 0.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self._setup(engine, zoneout, recurrent_dropout, weight_drop, forget_bias)

    def reset_parameters(self) -> None:
        super().reset_parameters()
        if getattr(self, "forget_bias", None) is not None:
            self._set_forget_bias()


class GRU(_Recurrent, nn.GRU):
    """Drop-in for ``torch.nn.GRU``; ``reset_after=False`` gives Cho et al. 2014's form
    (explicit engine only: no fused kernel computes it)."""

    __doc__ = (__doc__ or "") + _REGULARISER_DOC
    _kind = "GRU"

    def __init__(
        self,
        *args: Any,
        engine: str = "auto",
        reset_after: bool = True,
        zoneout: float = 0.0,
        recurrent_dropout: float = 0.0,
        weight_drop: float = 0.0,
        **kwargs: Any,
    ) -> None:
        if not isinstance(reset_after, bool):  # ("false" was true)
            raise TypeError(f"GRU: reset_after must be True or False, got {reset_after!r}")
        _no_forget_bias("GRU", kwargs)
        super().__init__(*args, **kwargs)
        self.reset_after = reset_after
        self._setup(engine, zoneout, recurrent_dropout, weight_drop)

    def _needs_explicit(self) -> str | None:
        return super()._needs_explicit() or (None if self.reset_after else "reset_after=False")

    def extra_repr(self) -> str:
        return super().extra_repr() + ("" if self.reset_after else ", reset_after=False")
