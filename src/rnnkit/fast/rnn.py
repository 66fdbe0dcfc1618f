"""The vanilla-RNN kernel of the fast engine: forward and hand-written BPTT (see
:mod:`rnnkit.fast`)."""

from __future__ import annotations

from typing import Any, cast

import torch
from torch import Tensor

from rnnkit.fast.common import _input_projection, _weight_grads


class _RNN(torch.autograd.Function):
    @staticmethod
    def forward(
        ctx: Any,
        x: Tensor,
        h0: Tensor,
        w_ih: Tensor,
        w_hh: Tensor,
        b_ih: Tensor | None,
        b_hh: Tensor | None,
        relu: bool,
    ) -> Tensor:
        T = x.shape[0]
        b = None if b_ih is None else b_ih + cast(Tensor, b_hh)
        hs = torch.cat([h0.unsqueeze(0), _input_projection(x, w_ih, b)])  # (T+1, B, H)
        w_hh_t = w_hh.t()
        for t in range(T):
            h = hs[t + 1]
            h.addmm_(hs[t], w_hh_t)
            h.relu_() if relu else h.tanh_()
        ctx.save_for_backward(x, w_ih, w_hh, hs)
        ctx.relu, ctx.has_bias = relu, b_ih is not None
        return hs[1:].clone()  # not a view: callers may modify it in place

    @staticmethod
    def backward(ctx: Any, dH: Tensor) -> tuple[Any, ...]:
        x, w_ih, w_hh, hs = ctx.saved_tensors
        T, B, _ = x.shape
        dG = torch.empty_like(hs[1:])
        dh = torch.zeros_like(hs[0])
        for t in range(T - 1, -1, -1):
            dh.add_(dH[t])
            h, dg = hs[t + 1], dG[t]
            if ctx.relu:
                torch.mul(dh, h > 0, out=dg)
            else:
                torch.mul(dh, h, out=dg)
                dg.mul_(h)
                torch.sub(dh, dg, out=dg)  # dh ⊙ (1 - h²)
            torch.mm(dg, w_hh, out=dh)
        need = ctx.needs_input_grad
        dx = torch.mm(dG.view(T * B, -1), w_ih).view(T, B, -1) if need[0] else None
        db = dG.sum((0, 1)) if ctx.has_bias and (need[4] or need[5]) else None
        return (
            dx,
            dh,
            _weight_grads(dG, x, need[2]),
            _weight_grads(dG, hs[:-1], need[3]),
            db,
            db,
            None,
        )
