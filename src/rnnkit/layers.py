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
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence, pad_packed_sequence

from rnnkit import fast
from rnnkit.cells import GRUGates, LSTMGates, RNNGates, gru_step, lstm_step, rnn_step

__all__ = ["RNN", "LSTM", "GRU", "RNNGates", "LSTMGates", "GRUGates", "ENGINES"]

ENGINES = ("auto", "explicit", "native", "reference")


# --------------------------------------------------------------------------- helpers


def _check_lengths(lengths: Tensor | list[int], T: int, B: int) -> Tensor:
    """Lengths as a CPU long tensor ``(B,)`` with 1 ≤ length ≤ T."""
    lengths = torch.as_tensor(lengths, dtype=torch.long, device="cpu")
    if lengths.shape != (B,):
        raise ValueError(f"lengths must have shape ({B},), got {tuple(lengths.shape)}")
    if B and (int(lengths.min()) < 1 or int(lengths.max()) > T):
        raise ValueError(
            f"lengths must lie in [1, {T}], got min {int(lengths.min())}, max {int(lengths.max())}"
        )
    return lengths


def _reverse_index(lengths: Tensor | None, T: int, B: int, device: torch.device) -> Tensor | None:
    """Index ``(T, B)`` that reverses each sequence within its length (an involution)."""
    if lengths is None:
        return None
    t = torch.arange(T, device=device).unsqueeze(1)  # (T, 1)
    last = lengths.to(device).unsqueeze(0) - 1  # (1, B)
    return torch.where(t <= last, last - t, t)


def _time_gather(x: Tensor, index: Tensor) -> Tensor:
    """``x[index[t, b], b]`` for x ``(T, B, ...)``."""
    return x.gather(0, index.view(*index.shape, *([1] * (x.dim() - 2))).expand_as(x))


def _last(seq: Tensor, lengths: Tensor | None) -> Tensor:
    """State at each sequence's last real step: seq ``(T, B, H)`` → ``(B, H)``."""
    if lengths is None:
        return seq[-1]
    idx = (lengths.to(seq.device) - 1).view(1, -1, 1).expand(1, seq.shape[1], seq.shape[2])
    return seq.gather(0, idx).squeeze(0)


# ------------------------------------------------------------------ one direction


def _unroll_reference(
    kind: str, gi: Tensor, state: tuple[Tensor, ...], weights: dict, record: bool
) -> tuple[list[Tensor], list[Any]]:
    """Run the readable cell over ``gi (T, B, G·H)``; return per-step hidden (and cell)
    lists and, if ``record``, the per-step gate tuples."""
    hs: list[Tensor] = []
    cs: list[Tensor] = []
    trace: list[Any] = []
    g: LSTMGates | GRUGates | RNNGates
    h = state[0]
    c = cast(Tensor, state[1] if kind == "LSTM" else None)  # read by the LSTM only
    for t in range(gi.shape[0]):
        if kind == "LSTM":
            g = lstm_step(gi[t], h, c, weights["w_hh"], weights["b_hh"], weights["w_hr"])
            h, c = g.hidden, g.cell
            cs.append(c)
        elif kind == "GRU":
            g = gru_step(gi[t], h, weights["w_hh"], weights["b_hh"], weights["reset_after"])
            h = g.hidden
        else:
            h = rnn_step(gi[t], h, weights["w_hh"], weights["b_hh"], weights["relu"])
            g = RNNGates(h)
        hs.append(h)
        if record:
            trace.append(g)
    return [torch.stack(hs)] + ([torch.stack(cs)] if cs else []), trace


def _run_direction(
    kind: str,
    x: Tensor,
    state: tuple[Tensor, ...],
    weights: dict,
    lengths: Tensor | None,
    reverse: bool,
    engine: str,
    record: bool,
) -> tuple[Tensor, tuple[Tensor, ...], Any]:
    """One layer, one direction. x ``(T, B, I)`` → output ``(T, B, H)``, final state,
    gate trace (a NamedTuple of ``(T, B, H)`` tensors) or None."""
    T, B, _ = x.shape
    rev = _reverse_index(lengths, T, B, x.device) if reverse else None
    if reverse:
        x = x.flip(0) if rev is None else _time_gather(x, rev)

    use_fast = engine == "explicit" and not record and fast.supports(kind, weights)
    if use_fast:
        out, c_n = fast.run(kind, x, state, weights, lengths)
        tail = (cast(Tensor, c_n),) if kind == "LSTM" else ()  # c_n is None but for the LSTM
        final: tuple[Tensor, ...] = (_last(out, lengths),) + tail
        trace = None
    else:
        gi = F.linear(x, weights["w_ih"], weights["b_ih"])  # (T, B, G·H), hoisted out of the loop
        seqs, steps = _unroll_reference(kind, gi, state, weights, record)
        out = seqs[0]
        final = tuple(_last(s, lengths) for s in seqs)
        trace = type(steps[0])(*(torch.stack(f) for f in zip(*steps))) if record else None

    if reverse:
        out = out.flip(0) if rev is None else _time_gather(out, rev)
        if trace is not None:
            trace = type(trace)(
                *(f.flip(0) if rev is None else _time_gather(f, rev) for f in trace)
            )
    return out, final, trace


# ---------------------------------------------------------------------------- layers


class _Recurrent:
    """Shared forward of RNN / LSTM / GRU; mixed into the torch.nn classes."""

    _kind: str  # "RNN", "LSTM" or "GRU"
    engine: str

    def _set_engine(self, engine: str) -> None:
        if engine not in ENGINES:
            raise ValueError(f"engine must be one of {', '.join(ENGINES)}; got {engine!r}")
        self.engine = engine

    def _needs_explicit(self) -> str | None:
        """A reason the native kernels cannot run this layer, or None."""
        return None

    def _pick_engine(self, return_gates: bool) -> str:
        reason = "return_gates=True" if return_gates else self._needs_explicit()
        if self.engine == "native":
            if reason:
                raise ValueError(
                    f"engine='native' cannot serve {reason}: use engine='explicit' or 'auto'"
                )
            return "native"
        if self.engine == "auto":
            return "explicit" if reason else "native"
        return self.engine

    def _layer_weights(self, layer: int, direction: int) -> dict:
        sfx = f"_l{layer}" + ("_reverse" if direction else "")
        get = lambda name: getattr(self, name + sfx, None)  # noqa: E731
        return {
            "w_ih": get("weight_ih"),
            "w_hh": get("weight_hh"),
            "b_ih": get("bias_ih"),
            "b_hh": get("bias_hh"),
            "w_hr": get("weight_hr"),
            "reset_after": getattr(self, "reset_after", True),
            "relu": getattr(self, "nonlinearity", "tanh") == "relu",
        }

    def _initial_state(self, x: Tensor, hx: Any) -> tuple[Tensor, ...]:
        """``(h0,)`` or ``(h0, c0)``, each ``(L·D, B, ·)``; zeros when hx is None."""
        m: Any = self
        LD, B = m.num_layers * (2 if m.bidirectional else 1), x.shape[1]
        real_h = getattr(m, "proj_size", 0) or m.hidden_size
        if hx is None:
            h0 = x.new_zeros(LD, B, real_h)
            return (h0, x.new_zeros(LD, B, m.hidden_size)) if self._kind == "LSTM" else (h0,)
        return tuple(hx) if self._kind == "LSTM" else (hx,)

    def _explicit(
        self,
        x: Tensor,
        state: tuple[Tensor, ...],
        lengths: Tensor | None,
        engine: str,
        record: bool,
    ) -> tuple[Tensor, tuple[Tensor, ...], Any]:
        """x ``(T, B, I)`` → output ``(T, B, D·H)``, final states, trace."""
        m: Any = self
        D = 2 if m.bidirectional else 1
        finals: list[tuple[Tensor, ...]] = []
        traces: list[Any] = []
        for layer in range(m.num_layers):
            outs = []
            for d in range(D):
                s = tuple(st[layer * D + d] for st in state)
                out, fin, trace = _run_direction(
                    self._kind,
                    x,
                    s,
                    self._layer_weights(layer, d),
                    lengths,
                    bool(d),
                    engine,
                    record,
                )
                outs.append(out)
                finals.append(fin)
                traces.append(trace)
            x = outs[0] if D == 1 else torch.cat(outs, dim=2)
            if m.dropout and m.training and layer < m.num_layers - 1:
                x = F.dropout(x, m.dropout, training=True)
        final = tuple(torch.stack(f) for f in zip(*finals))
        trace = type(traces[0])(*(torch.stack(f) for f in zip(*traces))) if record else None
        return x, final, trace

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
        engine = self._pick_engine(return_gates)
        packed = isinstance(input, PackedSequence)
        if packed and lengths is not None:
            raise ValueError("pass either a PackedSequence or lengths, not both")
        if engine == "native" and (packed or lengths is None):
            return super().forward(input, hx)  # type: ignore[misc]
        x, hx, lens, layout = self._time_major(input, hx, lengths)
        if engine == "native":  # padded batch with lengths: pack, run the fused kernel, pad
            assert lens is not None
            seq = pack_padded_sequence(x, lens, enforce_sorted=False)
            out_p, final_any = super().forward(seq, hx)  # type: ignore[misc]
            out = pad_packed_sequence(out_p, total_length=x.shape[0])[0]
            final = tuple(final_any) if self._kind == "LSTM" else (final_any,)
            trace = None
        else:
            state = self._initial_state(x, hx)
            out, final, trace = self._explicit(x, state, lens, engine, return_gates)
            if lens is not None:
                mask = (torch.arange(x.shape[0]).unsqueeze(1) < lens).to(out.device)  # (T, B)
                out = out * mask.unsqueeze(-1).to(out.dtype)
                if trace is not None:
                    trace = type(trace)(*(f * mask.unsqueeze(-1).to(f.dtype) for f in trace))
        result_out, final, trace = _restore_layout(out, final, trace, layout, input)
        result = (result_out, final if self._kind == "LSTM" else final[0])
        return result + (trace,) if return_gates else result

    def _time_major(
        self, input: Tensor | PackedSequence, hx: Any, lengths: Tensor | list[int] | None
    ) -> tuple[Tensor, Any, Tensor | None, str]:
        """Input as a padded ``(T, B, I)`` batch, its lengths, and the layout it came in:
        ``packed``, ``unbatched``, ``batch_first`` or ``time_major``."""
        if isinstance(input, PackedSequence):
            x, lens = pad_packed_sequence(input)  # (T, B, I), original batch order
            return x, hx, lens, "packed"
        x, layout = input, "time_major"
        if x.dim() == 2:
            x, layout = x.unsqueeze(1), "unbatched"
            if hx is not None:
                hx = tuple(h.unsqueeze(1) for h in hx) if self._kind == "LSTM" else hx.unsqueeze(1)
        elif x.dim() != 3:
            raise ValueError(f"{self._kind}: expected a 2-D or 3-D input, got {x.dim()}-D")
        elif cast(Any, self).batch_first:
            x, layout = x.transpose(0, 1), "batch_first"
        if lengths is None:
            return x, hx, None, layout
        return x, hx, _check_lengths(lengths, x.shape[0], x.shape[1]), layout


def _restore_layout(
    out: Tensor, final: tuple[Tensor, ...], trace: Any, layout: str, like: Tensor | PackedSequence
) -> tuple[Any, tuple[Tensor, ...], Any]:
    """Output, final states and trace back in the layout the input came in."""
    if layout == "packed":
        return _repack(out, cast(PackedSequence, like)), final, trace
    if layout == "unbatched":
        trace = None if trace is None else type(trace)(*(f.squeeze(2) for f in trace))
        return out.squeeze(1), tuple(f.squeeze(1) for f in final), trace
    if layout == "batch_first":
        trace = None if trace is None else type(trace)(*(f.transpose(1, 2) for f in trace))
        return out.transpose(0, 1), final, trace
    return out, final, trace


def _repack(out: Tensor, like: PackedSequence) -> PackedSequence:
    """Padded ``(T, B, H)`` in original batch order → a PackedSequence shaped as ``like``."""
    if like.sorted_indices is not None:
        out = out.index_select(1, like.sorted_indices)
    bs = like.batch_sizes.to(out.device)
    mask = torch.arange(out.shape[1], device=out.device).unsqueeze(0) < bs.unsqueeze(1)
    return PackedSequence(out[mask], like.batch_sizes, like.sorted_indices, like.unsorted_indices)


class RNN(_Recurrent, nn.RNN):
    """Drop-in for ``torch.nn.RNN`` (Elman network, tanh or relu); see module docstring."""

    _kind = "RNN"

    def __init__(self, *args: Any, engine: str = "auto", **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._set_engine(engine)


class LSTM(_Recurrent, nn.LSTM):
    """Drop-in for ``torch.nn.LSTM`` (``proj_size`` included); see module docstring."""

    _kind = "LSTM"

    def __init__(self, *args: Any, engine: str = "auto", **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._set_engine(engine)


class GRU(_Recurrent, nn.GRU):
    """Drop-in for ``torch.nn.GRU``; ``reset_after=False`` gives Cho et al. 2014's form
    (explicit engine only: no fused kernel computes it)."""

    _kind = "GRU"

    def __init__(
        self, *args: Any, engine: str = "auto", reset_after: bool = True, **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        self.reset_after = reset_after
        self._set_engine(engine)

    def _needs_explicit(self) -> str | None:
        return None if self.reset_after else "reset_after=False"
