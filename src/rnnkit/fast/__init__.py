"""The fast explicit engine: the same equations as :mod:`rnnkit.cells`, arranged for speed.

What makes it fast, measured against the readable per-step loop with autograd:

- the input projection ``W_i· x_t + b`` of all T steps is one matrix product;
- each step writes into preallocated ``(T, B, ·)`` buffers, in place (no per-step
  allocation, no autograd graph of T·(ops per step) nodes);
- the backward pass is written by hand (backpropagation through time): the loop
  only propagates ``dh`` / ``dc`` and stores the gate gradients ``dG (T, B, G·H)``;
  the weight gradients are then one product over all steps (``dG^T X``) instead of
  T small ones.
- LSTM gates are kept in the order ``i f o g`` inside the loop so that one sigmoid
  covers three gates; the weights are permuted on entry and their gradients back
  on exit, so parameters keep torch's ``i f g o`` layout.

Regularisers (:mod:`rnnkit.cells.regularisers`) run inside the loop too: recurrent
dropout multiplies the h entering ``W_hh`` by its per-sequence mask (and the gradient
leaving it), zoneout mixes each new state with the previous one after the step,
``s_t = d ⊙ s_{t-1} + (1 - d) ⊙ s̃_t``, and splits the gradient the same way.

Padding needs no masking inside the loop: sequences are right-padded, so steps past
a length never influence the real ones; the caller zeroes those outputs and takes
final states at each true last step, and the backward pass sees zero gradient there.
The equality with the reference cells is tested in ``tests/test_fast.py``.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.autograd.forward_ad as fwAD
from torch import Tensor

from rnnkit.fast.gru import _GRU
from rnnkit.fast.lstm import _LSTM
from rnnkit.fast.rnn import _RNN

__all__ = ["supports", "run"]


def supports(kind: str, weights: dict, inputs: tuple[Tensor, ...] = ()) -> bool:
    """Whether the fast path computes this layer: not the LSTM's projection, not Cho's
    GRU, and not while ``torch.jit.trace`` or ``torch.export`` records the layer (its
    in-place steps on per-step views are not theirs to record; the readable loop is),
    nor under a :mod:`torch.func` transform or forward-mode AD (its hand-written backward
    is autograd's alone; the readable loop's ops have every rule they need)."""
    if torch.jit.is_tracing() or torch.compiler.is_exporting():
        return False
    if not torch.compiler.is_compiling() and _transformed(inputs, weights):
        return False
    if kind == "LSTM":
        return weights["w_hr"] is None
    if kind == "GRU":
        return bool(weights["reset_after"])
    return True


def _transformed(inputs: tuple[Tensor, ...], weights: dict) -> bool:
    """A torch.func transform (grad, vmap, jvp, ...) is active, or an input (x, the
    state) or a weight carries a forward-mode tangent."""
    if torch._C._are_functorch_transforms_active():
        return True
    if getattr(fwAD, "_current_level", 0) < 0:  # no dual level open: no tangent anywhere
        return False
    tensors = [*inputs, *(w for w in weights.values() if isinstance(w, Tensor))]
    return any(fwAD.unpack_dual(t).tangent is not None for t in tensors)


def run(
    kind: str,
    x: Tensor,
    state: tuple[Tensor, ...],
    weights: dict,
    lengths: Tensor | None,
    zone: list[Any] | None = None,
    rmask: Tensor | None = None,
) -> tuple[Tensor, Tensor | None]:
    """One direction over x ``(T, B, I)`` from ``state`` (``(h0,)`` or ``(h0, c0)``).

    ``zone``: zoneout per state (hidden, then cell): keep masks ``(T, B, H)`` (or
    ``(T, B, 1)``, broadcast over units), a rate (evaluation) or None; ``rmask``: the
    recurrent-dropout mask ``(B, H)`` or None.
    Returns the hidden states of every step ``(T, B, H)`` and, for the LSTM, the cell
    state at each sequence's last step ``(B, H)``.
    """
    w = weights
    z_h, z_c = (zone[0], zone[1] if len(zone) > 1 else None) if zone else (None, None)
    reg = (_steps(z_h), _steps(z_c), rmask)  # z_c is None but for the LSTM
    if kind == "LSTM":
        last = None if lengths is None else (lengths - 1).tolist()
        h, c_n = _LSTM.apply(
            x, state[0], state[1], w["w_ih"], w["w_hh"], w["b_ih"], w["b_hh"], last, reg
        )
        return h, c_n
    if kind == "GRU":
        return _GRU.apply(x, state[0], w["w_ih"], w["w_hh"], w["b_ih"], w["b_hh"], reg), None
    return _RNN.apply(x, state[0], w["w_ih"], w["w_hh"], w["b_ih"], w["b_hh"], w["relu"], reg), None


def _steps(z: Tensor | float | None) -> Any:
    """Zoneout keep masks as per-step views ``(B, H)`` (a rate stays a number)."""
    return z.unbind(0) if isinstance(z, Tensor) else z
