"""The vanilla-RNN kernel of the fast engine: forward and hand-written BPTT (see
:mod:`rnnkit.fast`)."""

from __future__ import annotations

from typing import Any, cast

import torch
from torch import Tensor

from rnnkit.fast.common import (
    _input_projection,
    _masked,
    _weight_grads,
    _zone_grad,
    first_order_only,
)


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
        reg: tuple[Any, Any, Tensor | None] = (None, None, None),
    ) -> Tensor:
        T = x.shape[0]
        b = None if b_ih is None else b_ih + cast(Tensor, b_hh)
        z_h, _, rmask = reg
        # h̃_t (the activation) goes into ht; with zoneout hs holds the mixed state,
        # without it they are the same memory (hs = [h0; ht])
        if z_h is None:
            hs = torch.cat([h0.unsqueeze(0), _input_projection(x, w_ih, b)])  # (T+1, B, H)
            ht = hs[1:]
        else:
            ht = _input_projection(x, w_ih, b)  # (T, B, H)
            hs = x.new_empty(T + 1, *h0.shape)
            hs[0] = h0
        w_hh_t = w_hh.t()
        Ht, Hs = ht.unbind(0), hs.unbind(0)
        h_in = torch.empty_like(h0)
        for t in range(T):
            hin = Hs[t] if rmask is None else torch.mul(Hs[t], rmask, out=h_in)
            Ht[t].addmm_(hin, w_hh_t)
            Ht[t].relu_() if relu else Ht[t].tanh_()
            if z_h is not None:  # zoneout: h_t = lerp(h̃_t, h_{t-1}, d)
                torch.lerp(Ht[t], Hs[t], z_h if isinstance(z_h, float) else z_h[t], out=Hs[t + 1])
        ctx.save_for_backward(x, w_ih, w_hh, ht, hs)
        ctx.relu, ctx.has_bias, ctx.reg = relu, b_ih is not None, reg
        return hs[1:].clone()  # not a view: callers may modify it in place

    @staticmethod
    def backward(ctx: Any, dH: Tensor) -> tuple[Any, ...]:
        first_order_only()
        x, w_ih, w_hh, ht, hs = ctx.saved_tensors
        T, B, _ = x.shape
        z_h, _, rmask = ctx.reg
        dG = torch.empty_like(ht)
        dh = torch.zeros_like(hs[0])
        carry = torch.empty_like(dh)
        for t in range(T - 1, -1, -1):
            dh.add_(dH[t])
            if z_h is not None:
                _zone_grad(dh, z_h, t, carry)
            h, dg = ht[t], dG[t]
            if ctx.relu:
                torch.mul(dh, h > 0, out=dg)
            else:
                torch.mul(dh, h, out=dg)
                dg.mul_(h)
                torch.sub(dh, dg, out=dg)  # dh ⊙ (1 - h̃²)
            torch.mm(dg, w_hh, out=dh)
            if rmask is not None:
                dh.mul_(rmask)
            if z_h is not None:
                dh.add_(carry)
        need = ctx.needs_input_grad
        dx = torch.mm(dG.view(T * B, dG.shape[2]), w_ih).view(T, B, x.shape[2]) if need[0] else None
        db = dG.sum((0, 1)) if ctx.has_bias and (need[4] or need[5]) else None
        return (
            dx,
            dh,
            _weight_grads(dG, x, need[2]),
            _weight_grads(dG, _masked(hs, rmask), need[3]),
            db,
            db,
            None,
            None,
        )
