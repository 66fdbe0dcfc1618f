"""Pieces every kernel of the fast engine shares: the hoisted products, zoneout's split
of a gradient, the states that entered ``W_hh``."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor


def first_order_only() -> None:
    """Called first in a hand-written backward: under ``create_graph=True`` (grad mode on
    there) its gradients would silently carry no graph, so a second derivative (a
    gradient penalty, MAML) would come out as zeros; say so instead."""
    if torch.is_grad_enabled():
        raise RuntimeError(
            "rnnkit: engine 'explicit' has a hand-written backward, which cannot be "
            "differentiated again (create_graph=True); for second derivatives use "
            "engine='reference' (or 'native' for RNN / LSTM / GRU)"
        )


def _zone_grad(d: Tensor, keep: Any, t: int, carry: Tensor) -> None:
    """Split the gradient ``d`` of a zoned-out state: ``carry`` gets the part that flows to
    the previous state (d ⊙ keep), ``d`` keeps the part of the new candidate (d ⊙ (1 - keep))."""
    k = keep if isinstance(keep, float) else keep[t]
    torch.mul(d, k, out=carry)
    d.sub_(carry)


def _masked(hs: Tensor, rmask: Tensor | None) -> Tensor:
    """The states that entered ``W_hh``: ``hs[:-1]``, times the recurrent-dropout mask."""
    return hs[:-1] if rmask is None else hs[:-1] * rmask


def _input_projection(x: Tensor, w_ih: Tensor, b: Tensor | None) -> Tensor:
    """``x W_ih^T + b`` for all steps at once: ``(T, B, I)`` → ``(T, B, G·H)``."""
    T, B, I = x.shape
    x2 = x.reshape(T * B, I)
    out = torch.mm(x2, w_ih.t()) if b is None else torch.addmm(b, x2, w_ih.t())
    return out.view(T, B, w_ih.shape[0])


def _weight_grads(dG: Tensor, inputs: Tensor, need: bool) -> Tensor | None:
    """Σ_t dG_t^T inputs_t as one product: ``(T, B, G)``, ``(T, B, K)`` → ``(G, K)``."""
    if not need:
        return None
    return torch.mm(dG.reshape(-1, dG.shape[-1]).t(), inputs.reshape(-1, inputs.shape[-1]))


def _bias_grad(dG: Tensor, has_bias: bool, need: bool) -> Tensor | None:
    """Σ_t Σ_b dG: ``(T, B, G)`` → ``(G,)``."""
    return dG.sum((0, 1)) if (has_bias and need) else None
