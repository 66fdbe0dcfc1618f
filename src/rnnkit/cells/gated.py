"""Gated variants of the LSTM and the GRU: peepholes, a coupled input-forget gate, the
minimal gated unit, and the independently recurrent network."""

from __future__ import annotations

from typing import Any, NamedTuple

import torch
from torch import Tensor, nn

from rnnkit.cells.base import Cell, State, gate_blocks
from rnnkit.cells.stock import LSTMCell, LSTMGates, RNNCell, cell_forget_bias

__all__ = ["PeepholeLSTMCell", "CIFGLSTMCell", "MGUCell", "MGUGates", "IndRNNCell"]


class PeepholeLSTMCell(LSTMCell):
    """LSTM with peephole connections (Gers & Schmidhuber 2000), gate order i f g o.

        i_t = σ(W_ii x_t + W_hi h_{t-1} + p_i ⊙ c_{t-1} + b_i)
        f_t = σ(W_if x_t + W_hf h_{t-1} + p_f ⊙ c_{t-1} + b_f)
        g_t = tanh(W_ig x_t + W_hg h_{t-1} + b_g)
        c_t = f_t ⊙ c_{t-1} + i_t ⊙ g_t
        o_t = σ(W_io x_t + W_ho h_{t-1} + p_o ⊙ c_t + b_o)     (o sees the new cell)
        h_t = o_t ⊙ tanh(c_t)

    Extra parameters ``peephole_i``, ``peephole_f``, ``peephole_o`` (H,), initialised
    as every weight is (U(-1/√H, 1/√H)); were they zero, the cell would be the LSTM.
    """

    peephole_i: Tensor
    peephole_f: Tensor
    peephole_o: Tensor
    forward = Cell.forward  # type: ignore[assignment]  # h, state = cell(x, state)

    def parameter_shapes(self) -> dict[str, tuple[int, ...]]:
        H = (self.hidden_size,)
        return {**super().parameter_shapes(), "peephole_i": H, "peephole_f": H, "peephole_o": H}

    def step(self, gi: Tensor, state: State) -> tuple[State, LSTMGates]:
        h_prev, c_prev = state
        a_i, a_f, a_g, a_o = (gi + self.hh(h_prev)).chunk(4, dim=1)
        i = torch.sigmoid(a_i + self.peephole_i * c_prev)
        f = torch.sigmoid(a_f + self.peephole_f * c_prev)
        g = torch.tanh(a_g)
        c = f * c_prev + i * g
        o = torch.sigmoid(a_o + self.peephole_o * c)
        h = o * torch.tanh(c)
        return (h, c), LSTMGates(i, f, g, o, c, h)


class CIFGLSTMCell(Cell):
    """LSTM with a coupled input-forget gate (CIFG; Greff et al. 2017, "LSTM: a search
    space odyssey"), three gate blocks in the order i g o.

        i_t = σ(W_ii x_t + b_ii + W_hi h_{t-1} + b_hi)
        f_t = 1 - i_t                                     what is written is forgotten
        g_t = tanh(W_ig x_t + b_ig + W_hg h_{t-1} + b_hg)
        o_t = σ(W_io x_t + b_io + W_ho h_{t-1} + b_ho)
        c_t = f_t ⊙ c_{t-1} + i_t ⊙ g_t
        h_t = o_t ⊙ tanh(c_t)

    ``forget_bias=b`` sets the input slices to sum to -b, so that f = σ(-a_i) starts
    near σ(b), as a forget bias b does.
    """

    Gates = LSTMGates
    state = ("hidden", "cell")
    chunks = 3

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        bias: bool = True,
        forget_bias: float | None = None,
        **kw: Any,
    ) -> None:
        self.forget_bias = forget_bias
        super().__init__(input_size, hidden_size, bias, **kw)

    def reset_parameters(self) -> None:
        super().reset_parameters()
        if self.forget_bias is not None:
            cell_forget_bias(self, 0, -self.forget_bias)

    def step(self, gi: Tensor, state: State) -> tuple[State, LSTMGates]:
        h_prev, c_prev = state
        a_i, a_g, a_o = (gi + self.hh(h_prev)).chunk(3, dim=1)
        i = torch.sigmoid(a_i)
        f = 1 - i
        g = torch.tanh(a_g)
        o = torch.sigmoid(a_o)
        c = f * c_prev + i * g
        h = o * torch.tanh(c)
        return (h, c), LSTMGates(i, f, g, o, c, h)


class MGUGates(NamedTuple):
    """Activations of one MGU step, each ``(B, H)``."""

    forget: Tensor
    candidate: Tensor
    hidden: Tensor


class MGUCell(Cell):
    """Minimal gated unit (Zhou, Wu, Zhang & Zhou 2016, arXiv 1603.09420), blocks f, h̃.

        f_t = σ(W_f x_t + U_f h_{t-1} + b_f)
        h̃_t = tanh(W_h x_t + U_h (f_t ⊙ h_{t-1}) + b_h)
        h_t = (1 - f_t) ⊙ h_{t-1} + f_t ⊙ h̃_t

    W_· are ``weight_ih``'s blocks, U_· ``weight_hh``'s; b = ``bias_ih + bias_hh``.
    """

    Gates = MGUGates
    chunks = 2

    def step(self, gi: Tensor, state: State) -> tuple[State, MGUGates]:
        h_prev = state[0]
        a_f, a_h = gi.chunk(2, dim=1)
        f = torch.sigmoid(a_f + self.hh(h_prev, slice(0, 1)))
        n = torch.tanh(a_h + self.hh(f * h_prev, slice(1, 2)))
        h = (1 - f) * h_prev + f * n
        return (h,), MGUGates(f, n, h)


class IndRNNCell(RNNCell):
    """Independently recurrent neural network (Li, Li, Cook, Zhu & Gao 2018, arXiv
    1803.04831): each unit sees only its own past. The Elman step of :class:`RNNCell`
    with a diagonal recurrent matrix:

        h_t = relu(W x_t + b + u ⊙ h_{t-1})

    ``weight_hh`` is the vector u ``(H,)``, initialised U(0, 1); b = ``bias_ih + bias_hh``.
    ``nonlinearity="tanh"`` is allowed too.
    """

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        bias: bool = True,
        nonlinearity: str = "relu",
        **kw: Any,
    ) -> None:
        super().__init__(input_size, hidden_size, bias, nonlinearity, **kw)

    forward = Cell.forward  # type: ignore[assignment]  # h, state = cell(x, state)

    def parameter_shapes(self) -> dict[str, tuple[int, ...]]:
        return {**super().parameter_shapes(), "weight_hh": (self.hidden_size,)}

    def reset_parameters(self) -> None:
        super().reset_parameters()
        nn.init.uniform_(self.weight_hh, 0.0, 1.0)

    def hh(self, h: Tensor, blocks: slice | int | None = None, bias: bool = True) -> Tensor:
        """u ⊙ h + b_hh (the recurrent-dropout mask, when set, on h)."""
        if blocks is not None:
            gate_blocks(self, blocks)  # its one block, or a clear error
        if self.recurrent_mask is not None:
            h = h * self.recurrent_mask
        out = self.weight_hh * h
        return out + self.bias_hh if bias and self.bias_hh is not None else out
