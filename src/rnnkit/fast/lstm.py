"""The LSTM kernel of the fast engine: forward and hand-written BPTT (see :mod:`rnnkit.fast`)."""

from __future__ import annotations

from typing import Any, cast, overload

import torch
from torch import Tensor

from rnnkit.fast.common import (
    _input_projection,
    _masked,
    _weight_grads,
    _zone_grad,
    first_order_only,
)


# torch stacks LSTM gates as i f g o; inside the loop we use i f o g.
@overload
def _ifgo_to_ifog(w: Tensor) -> Tensor: ...
@overload
def _ifgo_to_ifog(w: None) -> None: ...
def _ifgo_to_ifog(w: Tensor | None) -> Tensor | None:
    if w is None:
        return None
    i, f, g, o = w.chunk(4, 0)
    return torch.cat([i, f, o, g], 0)


@overload
def _ifog_to_ifgo(w: Tensor) -> Tensor: ...
@overload
def _ifog_to_ifgo(w: None) -> None: ...
@overload
def _ifog_to_ifgo(w: Tensor | None) -> Tensor | None: ...
def _ifog_to_ifgo(w: Tensor | None) -> Tensor | None:
    if w is None:
        return None
    i, f, o, g = w.chunk(4, 0)
    return torch.cat([i, f, g, o], 0)


class _LSTM(torch.autograd.Function):
    @staticmethod
    def forward(
        ctx: Any,
        x: Tensor,
        h0: Tensor,
        c0: Tensor,
        w_ih: Tensor,
        w_hh: Tensor,
        b_ih: Tensor | None,
        b_hh: Tensor | None,
        last: list[int] | None,
        reg: tuple[Any, Any, Tensor | None] = (None, None, None),
    ) -> tuple[Tensor, Tensor]:
        T, B, _ = x.shape
        H = w_hh.shape[1]
        w_ih_p, w_hh_p = _ifgo_to_ifog(w_ih), _ifgo_to_ifog(w_hh)
        b = None if b_ih is None else _ifgo_to_ifog(b_ih + cast(Tensor, b_hh))
        acts = _input_projection(x, w_ih_p, b)  # (T, B, 4H): pre-activations, then i f o g
        hs = x.new_empty(T + 1, B, H)
        cs = x.new_empty(T + 1, B, H)
        tanh_c = x.new_empty(T, B, H)
        hs[0] = h0
        cs[0] = c0
        w_hh_t = w_hh_p.t()
        # per-step views made once (unbind is one call); the loop only runs kernels
        A, S, G = acts.unbind(0), acts[..., : 3 * H].unbind(0), acts[..., 3 * H :].unbind(0)
        I, F, O = (acts[..., k * H : (k + 1) * H].unbind(0) for k in range(3))
        Hs, Cs, TC = hs.unbind(0), cs.unbind(0), tanh_c.unbind(0)
        z_h, z_c, rmask = reg
        h_in = torch.empty_like(h0)
        for t in range(T):
            if rmask is None:
                A[t].addmm_(Hs[t], w_hh_t)
            else:  # recurrent dropout on the h entering W_hh
                A[t].addmm_(torch.mul(Hs[t], rmask, out=h_in), w_hh_t)
            S[t].sigmoid_()  # i f o
            G[t].tanh_()  # g = C̃
            torch.mul(F[t], Cs[t], out=Cs[t + 1])  # c = f ⊙ c_prev + i ⊙ g
            Cs[t + 1].addcmul_(I[t], G[t])
            torch.tanh(Cs[t + 1], out=TC[t])  # h = o ⊙ tanh(c)
            torch.mul(O[t], TC[t], out=Hs[t + 1])
            if z_c is not None:  # zoneout: s_t = lerp(s̃_t, s_{t-1}, d)
                Cs[t + 1].lerp_(Cs[t], z_c if isinstance(z_c, float) else z_c[t])
            if z_h is not None:
                Hs[t + 1].lerp_(Hs[t], z_h if isinstance(z_h, float) else z_h[t])
        ctx.save_for_backward(x, w_ih_p, w_hh_p, acts, hs, cs, tanh_c)
        ctx.has_bias, ctx.reg = b_ih is not None, reg
        if last is None:
            c_n = cs[T]
            ctx.ends = {T - 1: None}
        else:
            idx = torch.tensor(last, dtype=torch.long, device=x.device)
            c_n = cs[1:][idx, torch.arange(B, device=x.device)]
            ends: dict[int, list[int]] = {}
            for bi, t in enumerate(last):
                ends.setdefault(t, []).append(bi)
            ctx.ends = ends
        return hs[1:].clone(), c_n.clone()  # not views: callers may modify them in place

    @staticmethod
    def backward(ctx: Any, dH: Tensor, dc_n: Tensor) -> tuple[Any, ...]:
        first_order_only()
        x, w_ih_p, w_hh_p, acts, hs, cs, tanh_c = ctx.saved_tensors
        T, B, _ = x.shape
        H = hs.shape[2]
        dG = torch.empty_like(acts)  # (T, B, 4H), gate order i f o g
        dh = torch.zeros_like(hs[0])
        dc = torch.zeros_like(cs[0])
        tmp = torch.empty_like(dc)
        I, F, O, G = (acts[..., k * H : (k + 1) * H].unbind(0) for k in range(4))
        dI, dF, dO, dG_ = (dG[..., k * H : (k + 1) * H].unbind(0) for k in range(4))
        S, dS, dGt = acts[..., : 3 * H].unbind(0), dG[..., : 3 * H].unbind(0), dG.unbind(0)
        Cs, TC, dHs = cs.unbind(0), tanh_c.unbind(0), dH.unbind(0)
        z_h, z_c, rmask = ctx.reg
        carry_h, carry_c = torch.empty_like(dh), torch.empty_like(dc)
        for t in range(T - 1, -1, -1):
            dh.add_(dHs[t])
            if t in ctx.ends:
                rows = ctx.ends[t]
                if rows is None:
                    dc.add_(dc_n)
                else:
                    dc[rows] += dc_n[rows]
            if z_h is not None:
                _zone_grad(dh, z_h, t, carry_h)
            if z_c is not None:
                _zone_grad(dc, z_c, t, carry_c)
            # dc += dh ⊙ o ⊙ (1 - tanh²(c))
            torch.mul(TC[t], TC[t], out=tmp)
            tmp.neg_().add_(1).mul_(O[t]).mul_(dh)
            dc.add_(tmp)
            torch.mul(dc, G[t], out=dI[t])
            torch.mul(dc, Cs[t], out=dF[t])
            torch.mul(dh, TC[t], out=dO[t])
            torch.mul(dc, I[t], out=dG_[t])
            # σ' = σ(1 - σ) on i f o, tanh' = 1 - tanh² on g
            dS[t].mul_(S[t])
            dS[t].addcmul_(dS[t], S[t], value=-1)
            torch.mul(G[t], G[t], out=tmp)
            dG_[t].addcmul_(dG_[t], tmp, value=-1)
            dc.mul_(F[t])
            torch.mm(dGt[t], w_hh_p, out=dh)
            if rmask is not None:
                dh.mul_(rmask)
            if z_h is not None:
                dh.add_(carry_h)
            if z_c is not None:
                dc.add_(carry_c)
        need = ctx.needs_input_grad
        dx = (
            torch.mm(dG.view(T * B, dG.shape[2]), w_ih_p).view(T, B, x.shape[2])
            if need[0]
            else None
        )
        dw_ih = _ifog_to_ifgo(_weight_grads(dG, x, need[3]))
        dw_hh = _ifog_to_ifgo(_weight_grads(dG, _masked(hs, rmask), need[4]))
        db = _ifog_to_ifgo(dG.sum((0, 1))) if ctx.has_bias and (need[5] or need[6]) else None
        return dx, dh, dc, dw_ih, dw_hh, db, db, None, None
