"""Unroll a cell over time: lengths, reversal, stacking, layouts. Shared by the stock
layers (:mod:`rnnkit.layers`) and :class:`rnnkit.Recurrent`.

Sequences are right-padded: steps past a length never influence the real ones, so the
loop needs no mask; outputs are zeroed past each length and final states taken at each
sequence's last real step. The reverse direction reads each sequence backwards from its
own last real token (an index that reverses within each length).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.nn.utils.rnn import PackedSequence, pad_packed_sequence

from rnnkit.cells.base import Cell, State, first_step
from rnnkit.cells.regularisers import ZoneMask

__all__ = [
    "Direction",
    "check_input",
    "check_lengths",
    "freeze",
    "last",
    "mask_padding",
    "restore_layout",
    "reverse_index",
    "reverse_out",
    "run_cell",
    "stack",
    "time_major",
    "time_reverse",
    "unroll",
    "valid_steps",
]

Direction = Callable[[int, int, Tensor, State], tuple[Tensor, State, Any]]


def check_lengths(lengths: Tensor | list[int], T: int, B: int, where_b: str = "") -> Tensor:
    """Lengths as a CPU long tensor ``(B,)`` with 1 ≤ length ≤ T (the range is not
    checked while torch.export records: the lengths' values are the exported program's
    input, not known then). ``where_b``: the input's dimension that B is, for the error."""
    try:
        given = torch.as_tensor(lengths, device="cpu")
    except (TypeError, ValueError, RuntimeError) as e:  # (strings: "too many dimensions 'str'")
        raise TypeError(
            f"lengths must be integers, one per sequence; got {lengths!r} ({e})"
        ) from None
    if given.dtype == torch.bool or given.is_complex():
        raise TypeError(f"lengths must be integers, got a {given.dtype} tensor")
    if given.is_floating_point() and B and not torch.compiler.is_exporting():
        _check_whole(given)  # (2.9 was taken as 2, nan as -2^63)
    lengths = given.to(torch.long)
    if lengths.shape != (B,):
        where = f": one length per sequence, B being the input's {where_b}" if where_b else ""
        raise ValueError(f"lengths must have shape ({B},), got {tuple(lengths.shape)}{where}")
    if B and not torch.compiler.is_exporting():
        _check_range(lengths, T)
    return lengths


@torch.compiler.disable
def _check_whole(lengths: Tensor) -> None:
    """Float lengths must be whole numbers (as a float mask's sum gives them)."""
    bad = lengths[lengths.round() != lengths]  # (nan too)
    if bad.numel():
        raise ValueError(f"lengths must be whole numbers, got {float(bad[0]):g}")


@torch.compiler.disable
def _check_range(lengths: Tensor, T: int) -> None:
    """Run as Python under torch.compile too: it reads the values (a graph break Dynamo
    warned about, "Graph break from Tensor.item()"); disabled, it is a quiet one."""
    low, high = int(lengths.min()), int(lengths.max())
    if low < 1 or high > T:
        raise ValueError(f"lengths must lie in [1, {T}], got min {low}, max {high}")


def check_input(
    x: Tensor, input_size: int, dtype: torch.dtype, hx: tuple[Tensor, ...] | None, shapes: list
) -> None:
    """torch.nn's checks of a ``(T, B, I)`` input and an initial state given by the caller
    (each of its ``shapes``), with torch.nn's messages and exception types."""
    if x.dtype != dtype:
        raise ValueError(
            f"RNN input dtype ({x.dtype}) does not match weight dtype ({dtype}). "
            f"Convert input: input.to({dtype}), or convert model: model.to({x.dtype})"
        )
    if x.shape[-1] != input_size:
        raise RuntimeError(
            f"input.size(-1) must be equal to input_size. Expected {input_size}, got {x.shape[-1]}"
        )
    if x.shape[0] == 0:
        raise RuntimeError("Expected sequence length to be larger than 0 in RNN")
    for k, (h, shape) in enumerate(zip(hx or (), shapes)):
        name = "hidden" if len(shapes) == 1 else f"hidden[{k}]"
        if tuple(h.shape) != tuple(shape):
            raise RuntimeError(f"Expected {name} size {tuple(shape)}, got {list(h.shape)}")
        if h.device != x.device:
            raise RuntimeError(
                "Input and hidden tensors are not at the same device, found input tensor "
                f"at {x.device} and {name} tensor at {h.device}"
            )
        if h.dtype != x.dtype:
            raise RuntimeError(
                f"Input and hidden tensors are not the same dtype, found input tensor with "
                f"{x.dtype} and {name} tensor with {h.dtype}"
            )


def reverse_index(lengths: Tensor | None, T: int, B: int, device: torch.device) -> Tensor | None:
    """Index ``(T, B)`` that reverses each sequence within its length (an involution)."""
    if lengths is None:
        return None
    t = torch.arange(T, device=device).unsqueeze(1)  # (T, 1)
    last = lengths.to(device).unsqueeze(0) - 1  # (1, B)
    return torch.where(t <= last, last - t, t)


def time_reverse(x: Tensor, index: Tensor | None) -> Tensor:
    """``x (T, B, ...)`` reversed in time, within lengths when ``index`` is given."""
    if index is None:
        return x.flip(0)
    return x.gather(0, index.view(*index.shape, *([1] * (x.dim() - 2))).expand_as(x))


def last(seq: Tensor, lengths: Tensor | None, frozen: bool = False) -> Tensor:
    """State at each sequence's last real step: seq ``(T, B, H)`` → ``(B, H)``. ``frozen``:
    the states past each length were held (:func:`freeze`), so the last step is the one."""
    if lengths is None or frozen:
        return seq[-1]
    idx = (lengths.to(seq.device) - 1).view(1, -1, 1).expand(1, seq.shape[1], seq.shape[2])
    return seq.gather(0, idx).squeeze(0)


def freeze(zone: list[ZoneMask] | None, keep: Tensor | None, n: int) -> list[ZoneMask] | None:
    """Zoneout masks that also hold every state past its sequence's length.

    ``keep (T, B, 1)`` is 1 on the steps past each length. A held step is zoneout with
    keep probability 1, so the two combine as k = f + d - f·d (d the zoneout mask or
    rate, 0 when there is none): the state after the last real step is then the final
    one, with no per-length index, which is what static shapes need (:mod:`rnnkit.graphs`).
    """
    if keep is None:
        return zone
    return [keep if d is None else keep + d - keep * d for d in (zone or [None] * n)]


def unroll(
    cell: Cell, gi: Tensor, state: State, zone: list[ZoneMask] | None = None, record: bool = False
) -> tuple[list[Tensor], Any]:
    """Step ``cell`` over ``gi (T, B, G·H)`` from ``state``.

    Returns one ``(T, B, ·)`` sequence per state (the hidden state first) and, when
    ``record``, the trace: the cell's ``Gates`` with one ``(T, B, ·)`` tensor per field.
    ``zone`` (zoneout) mixes each new state with the previous one after the step.
    Without autograd the states go into preallocated buffers (not while torch.jit.trace
    records: its graph may later run with autograd, which refuses those in-place writes).
    """
    T = gi.shape[0]
    grad = torch.is_grad_enabled() or torch.jit.is_tracing()
    seqs: list[list[Tensor]] = [[] for _ in state]
    bufs = [] if grad else [gi.new_empty(T, *s.shape) for s in state]
    slots = [b.unbind(0) for b in bufs]
    masks = [z.unbind(0) if isinstance(z, Tensor) else z for z in zone] if zone else None
    steps = []
    for t, gi_t in enumerate(gi.unbind(0)):  # unbind: one backward node, not T
        new, gates = first_step(cell, gi_t, state) if t == 0 else cell.step(gi_t, state)
        if masks is not None:  # s_t = d ⊙ s_{t-1} + (1 - d) ⊙ s̃_t
            new = tuple(
                s if d is None else torch.lerp(s, old, d if isinstance(d, float) else d[t])
                for s, old, d in zip(new, state, masks)
            )
            if record:
                gates = gates._replace(**dict(zip(cell.state, new)))
        state = new
        for k, s in enumerate(state):
            if grad:
                seqs[k].append(s)
            else:
                slots[k][t].copy_(s)
        if record:
            steps.append(gates)
    out = [torch.stack(s) for s in seqs] if grad else bufs
    trace = type(steps[0])(*(torch.stack(f) for f in zip(*steps))) if record else None
    return out, trace


def run_cell(
    cell: Cell,
    x: Tensor,
    state: State,
    lengths: Tensor | None,
    reverse: bool,
    zone: list[ZoneMask] | None = None,
    record: bool = False,
    hold: Tensor | None = None,
) -> tuple[Tensor, State, Any]:
    """One layer, one direction, any cell: x ``(T, B, I)`` → output ``(T, B, H)``,
    final state (each ``(B, ·)``), trace or None. ``hold``: the ``(T, B, 1)`` mask of
    the steps past each length, held instead of indexed (see :func:`freeze`)."""
    rev = reverse_index(lengths, x.shape[0], x.shape[1], x.device) if reverse else None
    if reverse:
        x = time_reverse(x, rev)
    zone = freeze(zone, hold, len(state))
    seqs, trace = unroll(cell, cell.project(x), state, zone, record)  # one GEMM for all T
    final = tuple(last(s, lengths, hold is not None) for s in seqs)
    out, trace = reverse_out(seqs[0], trace, reverse, rev)
    return out, final, trace


def reverse_out(out: Tensor, trace: Any, reverse: bool, rev: Tensor | None) -> tuple[Tensor, Any]:
    """Put a reversed direction's output and trace back in reading order."""
    if not reverse:
        return out, trace
    if trace is not None:
        trace = type(trace)(*(time_reverse(f, rev) for f in trace))
    return time_reverse(out, rev), trace


def stack(
    x: Tensor,
    state: tuple[Tensor, ...],
    num_layers: int,
    directions: int,
    dropout: float,
    training: bool,
    run: Direction,
) -> tuple[Tensor, tuple[Tensor, ...], Any]:
    """Layers on top of each other, each one or two directions concatenated; dropout
    between layers. ``run(layer, direction, x, state)`` → (out, final, trace).

    x ``(T, B, I)``, state one ``(L·D, B, H)`` tensor per state name → output
    ``(T, B, D·H)``, final states ``(L·D, B, H)``, trace fields ``(L·D, T, B, H)``.
    """
    finals: list[State] = []
    traces: list[Any] = []
    for layer in range(num_layers):
        outs = []
        for d in range(directions):
            s = tuple(st[layer * directions + d] for st in state)
            out, fin, trace = run(layer, d, x, s)
            outs.append(out)
            finals.append(fin)
            traces.append(trace)
        x = outs[0] if directions == 1 else torch.cat(outs, dim=2)
        if dropout and training and layer < num_layers - 1:
            x = F.dropout(x, dropout, training=True)
    final = tuple(torch.stack(f) for f in zip(*finals))
    trace = None if traces[0] is None else type(traces[0])(*(torch.stack(f) for f in zip(*traces)))
    return x, final, trace


def time_major(
    input: Tensor | PackedSequence,
    hx: Any,
    lengths: Tensor | list[int] | None,
    batch_first: bool,
    tuple_state: bool,
    name: str,
) -> tuple[Tensor, Any, Tensor | None, str]:
    """Input as a padded ``(T, B, I)`` batch, its lengths, and the layout it came in:
    ``packed``, ``unbatched``, ``batch_first`` or ``time_major``."""
    if isinstance(input, PackedSequence):
        x, lens = pad_packed_sequence(input)  # (T, B, I), original batch order
        return x, hx, lens, "packed"
    x, layout = input, "time_major"
    if x.dim() not in (2, 3):
        raise ValueError(f"{name}: expected the input to be 2-D or 3-D, got {x.dim()}-D")
    _check_hx_dims(hx, x.dim(), tuple_state)
    if x.dim() == 2:
        x, layout = x.unsqueeze(1), "unbatched"
        if hx is not None:
            given_tuple = isinstance(hx, (tuple, list))  # (h,) also for one state
            hs = tuple(h.unsqueeze(1) for h in (hx if given_tuple else (hx,)))
            hx = hs if tuple_state or given_tuple else hs[0]
    elif batch_first:
        x, layout = x.transpose(0, 1), "batch_first"
    if lengths is None:
        return x, hx, None, layout
    where_b = {"batch_first": "dim 0 (batch_first=True)", "time_major": "dim 1 (batch_first=False)"}
    lens = check_lengths(lengths, x.shape[0], x.shape[1], where_b.get(layout, ""))
    return x.masked_fill(~valid_steps(lens, x.shape[0], x.device), 0), hx, lens, layout


def _check_hx_dims(hx: Any, dim: int, tuple_state: bool) -> None:
    """torch.nn's error for state tensors of another rank than the input's (2-D
    unbatched, 3-D batched): "... hx and cx should also be 2-D but got (3-D, 3-D) tensors"."""
    if hx is None:
        return
    hs = tuple(hx) if isinstance(hx, (tuple, list)) else (hx,)
    if not all(isinstance(h, Tensor) for h in hs) or all(h.dim() == dim for h in hs):
        return  # (not tensors: the state's own check says what it takes)
    kind = "unbatched 2-D" if dim == 2 else "batched 3-D"
    what = "hx and cx" if tuple_state and len(hs) == 2 else "hx"
    got = (
        f"{hs[0].dim()}-D tensor"
        if len(hs) == 1
        else f"({', '.join(f'{h.dim()}-D' for h in hs)}) tensors"
    )
    raise RuntimeError(f"For {kind} input, {what} should also be {dim}-D but got {got}")


def valid_steps(lengths: Tensor, T: int, device: torch.device) -> Tensor:
    """``(T, B, 1)``: True on each sequence's real steps. The padding of an input is
    zeroed with it (a nan or inf there would make the steps past a length nan, and
    0 · nan every weight's gradient)."""
    steps = torch.arange(T, device=device).unsqueeze(1)  # (built there: no blocking copy)
    return (steps < lengths.to(device, non_blocking=True)).unsqueeze(-1)


def mask_padding(out: Tensor, trace: Any, lengths: Tensor | None) -> tuple[Tensor, Any]:
    """Zero the output ``(T, B, ·)`` and every trace field past each length."""
    if lengths is None:
        return out, trace
    pad = ~valid_steps(lengths, out.shape[0], out.device)
    out = out.masked_fill(pad, 0)
    if trace is not None:
        trace = type(trace)(*(f.masked_fill(pad, 0) for f in trace))
    return out, trace


def restore_layout(
    out: Tensor,
    final: tuple[Tensor, ...],
    trace: Any,
    layout: str,
    like: Tensor | PackedSequence,
    batch_first: bool = False,
) -> tuple[Any, tuple[Tensor, ...], Any]:
    """Output, final states and trace back in the layout the input came in."""
    if layout == "packed":  # the trace as documented for the layer's batch_first
        if trace is not None and batch_first:
            trace = type(trace)(*(f.transpose(1, 2) for f in trace))
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
