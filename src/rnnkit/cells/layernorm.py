"""Layer-normalised LSTM and GRU cells (Ba, Kiros & Hinton 2016, arXiv 1607.06450).

Each of the two projections is normalised over its G·H units before they are summed,
so the gates do not depend on the scale of ``W_ih`` or ``W_hh``; the LSTM also
normalises its cell state before the output tanh. The β of the two projections'
normalisations would add up with the bias, so the biases ``bias_ih + bias_hh`` play
that role (the same function, no redundant parameter).
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rnnkit.cells.base import Cell, State
from rnnkit.cells.stock import GRUGates, LSTMGates, cell_forget_bias

__all__ = ["LayerNormLSTMCell", "LayerNormGRUCell"]


class _LayerNormCell(Cell):
    """Shared: the gains ``ln_ih_gain``, ``ln_hh_gain`` (G·H,) of the two projections."""

    ln_ih_gain: Tensor
    ln_hh_gain: Tensor

    def __init__(
        self, input_size: int, hidden_size: int, bias: bool = True, eps: float = 1e-5, **kw: Any
    ) -> None:
        if isinstance(eps, bool) or not isinstance(eps, int | float) or not 0 <= eps < math.inf:
            raise ValueError(f"{type(self).__name__}: eps must be a number ≥ 0, got {eps!r}")
        self.eps = eps
        super().__init__(input_size, hidden_size, bias, **kw)

    def parameter_shapes(self) -> dict[str, tuple[int, ...]]:
        GH = self.chunks * self.hidden_size
        return {**super().parameter_shapes(), "ln_ih_gain": (GH,), "ln_hh_gain": (GH,)}

    def reset_parameters(self) -> None:
        super().reset_parameters()
        for name in self.parameter_shapes():
            if name.endswith("_gain"):
                nn.init.ones_(getattr(self, name))
            elif name.startswith("ln_"):
                nn.init.zeros_(getattr(self, name))

    def _ln(self, v: Tensor, gain: Tensor, bias: Tensor | None) -> Tensor:
        """LN(v) = gain ⊙ (v - μ) / σ + bias over the last dimension."""
        return F.layer_norm(v, v.shape[-1:], gain, bias, self.eps)

    def project(self, x: Tensor) -> Tensor:
        """LN(W_ih x) + b_ih, all steps at once."""
        return self._ln(F.linear(x, self.weight_ih), self.ln_ih_gain, self.bias_ih)

    def recurrent(self, h: Tensor) -> Tensor:
        """LN(W_hh h) + b_hh."""
        return self._ln(self.hh(h, bias=False), self.ln_hh_gain, self.bias_hh)


class LayerNormLSTMCell(_LayerNormCell):
    """Layer-normalised LSTM (Ba et al. 2016, eqs. 20–22), gate order i f g o.

        (i, f, g, o) = LN(W_hh h_{t-1}) + LN(W_ih x_t) + b
        c_t = σ(f) ⊙ c_{t-1} + σ(i) ⊙ tanh(g)
        h_t = σ(o) ⊙ tanh(LN(c_t))

    Extra parameters: ``ln_ih_gain``, ``ln_hh_gain`` (4H,), ``ln_cell_gain``,
    ``ln_cell_bias`` (H,); ``eps`` of the normalisation (default 1e-5).
    """

    Gates = LSTMGates
    state = ("hidden", "cell")
    chunks = 4
    ln_cell_gain: Tensor
    ln_cell_bias: Tensor

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        bias: bool = True,
        eps: float = 1e-5,
        forget_bias: float | None = None,
        **kw: Any,
    ) -> None:
        self.forget_bias = forget_bias
        super().__init__(input_size, hidden_size, bias, eps, **kw)

    def parameter_shapes(self) -> dict[str, tuple[int, ...]]:
        H = self.hidden_size
        return {**super().parameter_shapes(), "ln_cell_gain": (H,), "ln_cell_bias": (H,)}

    def reset_parameters(self) -> None:
        super().reset_parameters()
        if self.forget_bias is not None:
            cell_forget_bias(self, 1, self.forget_bias)

    def step(self, gi: Tensor, state: State) -> tuple[State, LSTMGates]:
        h_prev, c_prev = state
        i, f, g, o = (gi + self.recurrent(h_prev)).chunk(4, dim=1)
        i, f, g, o = torch.sigmoid(i), torch.sigmoid(f), torch.tanh(g), torch.sigmoid(o)
        c = f * c_prev + i * g
        h = o * torch.tanh(self._ln(c, self.ln_cell_gain, self.ln_cell_bias))
        return (h, c), LSTMGates(i, f, g, o, c, h)


class LayerNormGRUCell(_LayerNormCell):
    """Layer-normalised GRU, gate order r z n (the normalisation of Ba et al. 2016 on
    the two projections of the GRU, as torch.nn.GRU places the reset gate).

        (a_r, a_z, a_n) = LN(W_ih x_t) + b_ih        (b_r, b_z, b_n) = LN(W_hh h_{t-1}) + b_hh
        r_t = σ(a_r + b_r)      z_t = σ(a_z + b_z)
        n_t = tanh(a_n + r_t ⊙ b_n)
        h_t = (1 - z_t) ⊙ n_t + z_t ⊙ h_{t-1}

    Extra parameters: ``ln_ih_gain``, ``ln_hh_gain`` (3H,).
    """

    Gates = GRUGates
    chunks = 3

    def step(self, gi: Tensor, state: State) -> tuple[State, GRUGates]:
        h_prev = state[0]
        a_r, a_z, a_n = gi.chunk(3, dim=1)
        b_r, b_z, b_n = self.recurrent(h_prev).chunk(3, dim=1)
        r = torch.sigmoid(a_r + b_r)
        z = torch.sigmoid(a_z + b_z)
        n = torch.tanh(a_n + r * b_n)
        h = (1 - z) * n + z * h_prev
        return (h,), GRUGates(r, z, n, h)
