"""A recurrent layer on static shapes: pad to the bucket, hold past lengths, slice back.

The layer's own code runs unchanged on the padded batch (its :func:`rnnkit.unroll.stack`
of directions, the fast kernels or the readable loop); only the lengths arrive as a
mask of held steps instead of indices, so every shape depends on the bucket alone and
the whole stack can be captured as one CUDA graph (:mod:`rnnkit.graphs.capture`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn

from rnnkit import graphs
from rnnkit.graphs import capture
from rnnkit.graphs.buckets import bucket, held_steps, pad_to, rows
from rnnkit.unroll import Direction, mask_padding, stack

__all__ = ["run_layers", "run_stack"]

# run_for(lengths (B,), held (T, B, 1) or None) → run(layer, direction, x, state) for stack()
RunFor = Callable[[Tensor | None, Tensor | None], Direction]


def run_layers(
    owner: nn.Module,
    x: Tensor,
    state: tuple[Tensor, ...],
    lengths: Tensor | None,
    run_for: RunFor,
    shape: tuple[int, int, float],
    trace_type: Any,
    static: bool,
) -> tuple[Tensor, tuple[Tensor, ...], Any]:
    """A layer's stack of directions: on static shapes (:func:`run_stack`) when ``static``
    and :mod:`rnnkit.graphs` is active on x's device, else :func:`rnnkit.unroll.stack`
    with lengths as indices; outputs (and trace) zero past each length either way."""
    if static and graphs.active(x.device):
        return run_stack(owner, x, state, lengths, run_for, shape, trace_type)
    num_layers, directions, dropout = shape
    run = run_for(lengths, None)
    out, final, trace = stack(x, state, num_layers, directions, dropout, owner.training, run)
    out, trace = mask_padding(out, trace, lengths)
    return out, final, trace


def run_stack(
    owner: nn.Module,
    x: Tensor,
    state: tuple[Tensor, ...],
    lengths: Tensor | None,
    run_for: RunFor,
    shape: tuple[int, int, float],
    trace_type: Any,
) -> tuple[Tensor, tuple[Tensor, ...], Any]:
    """:func:`rnnkit.unroll.stack` on the bucket of x ``(T, B, I)``.

    Args:
        lengths: ``(B,)`` true lengths (any device) or None (all T).
        run_for: the layer's direction function, given the padded lengths and held steps.
        shape: (num_layers, directions, dropout between layers).
        trace_type: the NamedTuple of the gate trace when one is recorded, else None.
    Returns:
        output ``(T, B, D·H)``, final states ``(L·D, B, ·)`` and the trace (or None),
        as ``stack`` and :func:`rnnkit.unroll.mask_padding` give them on the unpadded batch.
    """
    T, B = x.shape[0], x.shape[1]
    Tb, Bb = bucket(T), rows(B)
    real = None if lengths is None else lengths.to(x.device, torch.long, non_blocking=True)
    every = torch.full((B,), T, dtype=torch.long, device=x.device) if real is None else real
    lens = pad_to(every, Bb, 0)  # padded rows: length 0
    held = held_steps(lens, Tb, x.dtype)
    num_layers, directions, dropout = shape
    n = len(state)

    def fn(xp: Tensor, held: Tensor, lens: Tensor, *sp: Tensor) -> tuple[Tensor, ...]:
        out, final, trace = stack(
            xp, sp, num_layers, directions, dropout, owner.training, run_for(lens, held)
        )
        return (out, *final, *(trace if trace is not None else ()))

    args = (pad_to(pad_to(x, Tb, 0), Bb, 1), held, lens, *(pad_to(s, Bb, 1) for s in state))
    outs = capture.call(owner, (Tb, Bb, trace_type), fn, args)
    out = outs[0][:T, :B]
    final = tuple(f[:, :B] for f in outs[1 : 1 + n])
    trace = None
    if trace_type is not None:
        trace = trace_type(*(f[:, :T, :B] for f in outs[1 + n :]))
    out, trace = mask_padding(out, trace, real)
    return out, final, trace
