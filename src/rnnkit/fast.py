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

from typing import Any, cast, overload

import torch
from torch import Tensor

__all__ = ["supports", "run"]


def supports(kind: str, weights: dict) -> bool:
    """Whether the fast path computes this layer (LSTM projection and Cho's GRU do not)."""
    if kind == "LSTM":
        return weights["w_hr"] is None
    if kind == "GRU":
        return bool(weights["reset_after"])
    return True


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

    ``zone``: zoneout per state (hidden, then cell): keep masks ``(T, B, H)``, a rate
    (evaluation) or None; ``rmask``: the recurrent-dropout mask ``(B, H)`` or None (the
    vanilla RNN takes neither: see :func:`supports`).
    Returns the hidden states of every step ``(T, B, H)`` and, for the LSTM, the cell
    state at each sequence's last step ``(B, H)``.
    """
    w = weights
    z_h, z_c = (list(zone) + [None])[:2] if zone else (None, None)
    if kind == "LSTM":
        last = None if lengths is None else (lengths - 1).tolist()
        reg = (_steps(z_h), _steps(z_c), rmask)
        h, c_n = _LSTM.apply(
            x, state[0], state[1], w["w_ih"], w["w_hh"], w["b_ih"], w["b_hh"], last, reg
        )
        return h, c_n
    if kind == "GRU":
        reg = (_steps(z_h), None, rmask)
        return _GRU.apply(x, state[0], w["w_ih"], w["w_hh"], w["b_ih"], w["b_hh"], reg), None
    return _RNN.apply(x, state[0], w["w_ih"], w["w_hh"], w["b_ih"], w["b_hh"], w["relu"]), None


def _steps(z: Tensor | float | None) -> Any:
    """Zoneout keep masks as per-step views ``(B, H)`` (a rate stays a number)."""
    return z.unbind(0) if isinstance(z, Tensor) else z


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
    return out.view(T, B, -1)


def _weight_grads(dG: Tensor, inputs: Tensor, need: bool) -> Tensor | None:
    """Σ_t dG_t^T inputs_t as one product: ``(T, B, G)``, ``(T, B, K)`` → ``(G, K)``."""
    if not need:
        return None
    return torch.mm(dG.reshape(-1, dG.shape[-1]).t(), inputs.reshape(-1, inputs.shape[-1]))


def _bias_grad(dG: Tensor, has_bias: bool, need: bool) -> Tensor | None:
    """Σ_t Σ_b dG: ``(T, B, G)`` → ``(G,)``."""
    return dG.sum((0, 1)) if (has_bias and need) else None


# ---------------------------------------------------------------------------- LSTM


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
            idx = torch.tensor(last, device=x.device)
            c_n = cs[1:][idx, torch.arange(B, device=x.device)]
            ends: dict[int, list[int]] = {}
            for bi, t in enumerate(last):
                ends.setdefault(t, []).append(bi)
            ctx.ends = ends
        return hs[1:].clone(), c_n.clone()  # not views: callers may modify them in place

    @staticmethod
    def backward(ctx: Any, dH: Tensor, dc_n: Tensor) -> tuple[Any, ...]:
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
        dx = torch.mm(dG.view(T * B, -1), w_ih_p).view(T, B, -1) if need[0] else None
        dw_ih = _ifog_to_ifgo(_weight_grads(dG, x, need[3]))
        dw_hh = _ifog_to_ifgo(_weight_grads(dG, _masked(hs, rmask), need[4]))
        db = _ifog_to_ifgo(dG.sum((0, 1))) if ctx.has_bias and (need[5] or need[6]) else None
        return dx, dh, dc, dw_ih, dw_hh, db, db, None, None


# ----------------------------------------------------------------------------- GRU


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
        dx = torch.mm(dGi.view(T * B, -1), w_ih).view(T, B, -1) if need[0] else None
        return (
            dx,
            dh,
            _weight_grads(dGi, x, need[2]),
            _weight_grads(dGh, _masked(hs, ctx.reg[2]), need[3]),
            _bias_grad(dGi, ctx.has_bias, need[4]),
            _bias_grad(dGh, ctx.has_bias, need[5]),
            None,
        )


# ----------------------------------------------------------------------------- RNN


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
