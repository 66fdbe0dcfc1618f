"""The GRU kernel of the fast engine: forward and hand-written BPTT (see :mod:`rnnkit.fast`)."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from rnnkit.fast.common import (
    _bias_grad,
    _input_projection,
    _masked,
    _weight_grads,
    _zone_grad,
    first_order_only,
)


class _GRU(torch.autograd.Function):
    @staticmethod
    def forward(
        ctx: Any,
        x: Tensor,
        h0: Tensor,
        w_ih: Tensor,
        w_hh: Tensor,
        b_ih: Tensor | None,
        b_hh: Tensor | None,
        reg: tuple[Any, Any, Tensor | None] = (None, None, None),
    ) -> Tensor:
        T, B, _ = x.shape
        H = w_hh.shape[1]
        acts = _input_projection(x, w_ih, b_ih)  # (T, B, 3H): W_i· x + b_i·, then r z n
        gh = x.new_empty(T, B, 3 * H)  # W_h· h_{t-1} + b_h·
        hs = x.new_empty(T + 1, B, H)
        hs[0] = h0
        w_hh_t = w_hh.t()
        RZ, GHrz = acts[..., : 2 * H].unbind(0), gh[..., : 2 * H].unbind(0)
        R, Z, N = (acts[..., k * H : (k + 1) * H].unbind(0) for k in range(3))
        GH, GHn, Hs = gh.unbind(0), gh[..., 2 * H :].unbind(0), hs.unbind(0)
        z_h, _, rmask = reg
        h_in = torch.empty_like(h0)
        for t in range(T):
            hin = Hs[t] if rmask is None else torch.mul(Hs[t], rmask, out=h_in)
            if b_hh is None:
                torch.mm(hin, w_hh_t, out=GH[t])
            else:
                torch.addmm(b_hh, hin, w_hh_t, out=GH[t])
            RZ[t].add_(GHrz[t]).sigmoid_()  # r, z
            N[t].addcmul_(R[t], GHn[t]).tanh_()  # n = tanh(W_in x + b_in + r ⊙ (W_hn h + b_hn))
            torch.sub(Hs[t], N[t], out=Hs[t + 1])  # h = (1 - z) ⊙ n + z ⊙ h_prev
            Hs[t + 1].mul_(Z[t]).add_(N[t])
            if z_h is not None:  # zoneout: h_t = lerp(h̃_t, h_{t-1}, d)
                Hs[t + 1].lerp_(Hs[t], z_h if isinstance(z_h, float) else z_h[t])
        ctx.save_for_backward(x, w_ih, w_hh, acts, gh, hs)
        ctx.has_bias, ctx.reg = b_ih is not None, reg
        return hs[1:].clone()  # not a view: callers may modify it in place

    @staticmethod
    def backward(ctx: Any, dH: Tensor) -> tuple[Any, ...]:
        first_order_only()
        x, w_ih, w_hh, acts, gh, hs = ctx.saved_tensors
        T, B, _ = x.shape
        H = hs.shape[2]
        dGi = torch.empty_like(acts)  # gradient of W_i· x + b_i·
        dGh = torch.empty_like(acts)  # gradient of W_h· h + b_h·
        dh = torch.zeros_like(hs[0])
        tmp = torch.empty_like(dh)
        R, Z, N = (acts[..., k * H : (k + 1) * H].unbind(0) for k in range(3))
        dR, dZ, dN = (dGi[..., k * H : (k + 1) * H].unbind(0) for k in range(3))
        RZ, dRZi, dRZh = (v[..., : 2 * H].unbind(0) for v in (acts, dGi, dGh))
        GHn, dGHn, dGH = gh[..., 2 * H :].unbind(0), dGh[..., 2 * H :].unbind(0), dGh.unbind(0)
        Hs, dHs = hs.unbind(0), dH.unbind(0)
        z_h, _, rmask = ctx.reg
        carry = torch.empty_like(dh)
        for t in range(T - 1, -1, -1):
            dh.add_(dHs[t])
            if z_h is not None:
                _zone_grad(dh, z_h, t, carry)
            torch.sub(Hs[t], N[t], out=dZ[t])  # ∂h/∂z = h_prev - n
            dZ[t].mul_(dh)
            torch.mul(dh, Z[t], out=dN[t])  # ∂h/∂n = 1 - z
            torch.sub(dh, dN[t], out=dN[t])
            torch.mul(N[t], N[t], out=tmp)
            dN[t].addcmul_(dN[t], tmp, value=-1)  # tanh' = 1 - n²
            torch.mul(dN[t], GHn[t], out=dR[t])  # ∂/∂r of r ⊙ (W_hn h + b_hn)
            dRZi[t].mul_(RZ[t])
            dRZi[t].addcmul_(dRZi[t], RZ[t], value=-1)  # σ' = σ(1 - σ)
            dRZh[t].copy_(dRZi[t])
            torch.mul(dN[t], R[t], out=dGHn[t])
            dh.mul_(Z[t])
            if rmask is None:
                dh.addmm_(dGH[t], w_hh)
            else:
                dh.addcmul_(torch.mm(dGH[t], w_hh, out=tmp), rmask)
            if z_h is not None:
                dh.add_(carry)
        need = ctx.needs_input_grad
        dx = (
            torch.mm(dGi.view(T * B, dGi.shape[2]), w_ih).view(T, B, x.shape[2])
            if need[0]
            else None
        )
        return (
            dx,
            dh,
            _weight_grads(dGi, x, need[2]),
            _weight_grads(dGh, _masked(hs, ctx.reg[2]), need[3]),
            _bias_grad(dGi, ctx.has_bias, need[4]),
            _bias_grad(dGh, ctx.has_bias, need[5]),
            None,
        )
