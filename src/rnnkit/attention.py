"""Additive (Bahdanau) and multiplicative (Luong) attention over encoder states.

Every attention here is one function of its inputs, in three equations:

    e_tj = score(s_t, h_j)                 energy of source position j for query s_t
    α_tj = softmax_j(e_tj)                 over real positions; α_tj = 0 on padding
    c_t  = Σ_j α_tj h_j                    context vector

The part of ``score`` that depends only on the keys ``h_j`` (``U h_j`` for Bahdanau,
``W_a h_j`` for Luong "general", ...) is computed by ``project_keys(keys)``. A decoder
calls it once per sentence and passes the result to every step as ``projected_keys``;
the module itself keeps nothing between calls.

Shapes: B batch, T decoder steps, S source positions, Hq query size, Hk key size,
H hidden size of the scoring network.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["masked_softmax", "BahdanauAttention", "LuongAttention"]

LUONG_SCORES = ("dot", "general", "concat")


def masked_softmax(e: Tensor, mask: Tensor | None, checked: bool = False) -> Tensor:
    """Softmax over the last axis restricted to real positions.

        α_j = exp(e_j) / Σ_{k real} exp(e_k)   if j is real,   α_j = 0 otherwise

    Args:
        e: energies ``(..., S)``.
        mask: bool, broadcastable to ``e``, True marks a real (non-padding) position;
            None means every position is real.
        checked: every row of ``mask`` is known to have a real position (the model's
            masks, made from lengths ≥ 1): the check is left out. It reads a result on
            the host, which on a GPU waits for the device at every decoder step and
            cannot be captured in a CUDA graph.
    Returns:
        α with the shape of ``e``: sums to 1 over real positions, exactly 0 elsewhere.
    Raises:
        ValueError: a row of the mask has no real position (its softmax would be NaN).
    """
    if mask is None:
        return torch.softmax(e, dim=-1)
    if mask.dtype != torch.bool:
        raise TypeError(f"attention: mask must be a bool tensor (True = real), got {mask.dtype}")
    if not checked and not bool(mask.any(dim=-1).all()):
        raise ValueError(
            "attention: a row of the mask has no real position (every key is padding); "
            "each source sequence needs at least one real position"
        )
    # exp(-inf - max) is exactly 0.0, and a real position keeps every row's max finite.
    return torch.softmax(e.masked_fill(~mask, float("-inf")), dim=-1)


class _Attention(nn.Module):
    """Shared ``forward``: energies from ``energy``, then masked softmax and the context."""

    def project_keys(self, keys: Tensor) -> Tensor:
        """The part of the score that depends only on the keys, ``(B, S, ·)``."""
        raise NotImplementedError

    def energy(self, s: Tensor, projected_keys: Tensor) -> Tensor:
        """Energies ``e`` ``(B, T, S)`` from queries ``s`` ``(B, T, Hq)``."""
        raise NotImplementedError

    def forward(
        self,
        query: Tensor,
        keys: Tensor,
        mask: Tensor | None = None,
        projected_keys: Tensor | None = None,
        mask_checked: bool = False,
    ) -> tuple[Tensor, Tensor]:
        """Attend from the query over the keys.

            e_j = score(s, h_j),   α = masked softmax(e),   c = Σ_j α_j h_j

        Args:
            query: decoder state s, ``(B, Hq)``, or several decoder steps ``(B, T, Hq)``.
            keys: encoder states h_1..h_S, ``(B, S, Hk)``. Finite at padding positions
                too: their α is 0, but 0 · NaN is NaN (rnnkit's encoders write zeros there).
            mask: bool ``(B, S)``, True marks a real (non-padding) position; None: all real.
            projected_keys: ``self.project_keys(keys)``, computed once per sentence by the
                caller; None computes it here.
            mask_checked: every row of ``mask`` has a real position, known to the caller
                (``masked_softmax``'s ``checked``: no host sync per step on a GPU).
        Returns:
            ``(context, weights)``: ``(B, Hk)`` and ``(B, S)`` for a ``(B, Hq)`` query,
            ``(B, T, Hk)`` and ``(B, T, S)`` for a ``(B, T, Hq)`` query.
        Raises:
            ValueError: bad shapes, or a row of the mask with no real position.
        """
        one_step = query.dim() == 2
        _check_shapes(query, keys, mask)
        if (query.shape[-1], keys.shape[-1]) != (self.query_size, self.key_size):
            raise ValueError(
                f"attention: query size {query.shape[-1]} and key size {keys.shape[-1]}, "
                f"but this module takes query_size={self.query_size}, key_size={self.key_size}"
            )
        s = query.unsqueeze(1) if one_step else query  # (B, T, Hq)
        if projected_keys is None:
            projected_keys = self.project_keys(keys)
        e = self.energy(s, projected_keys)  # (B, T, S)
        mask = None if mask is None else mask.unsqueeze(1)
        alpha = masked_softmax(e, mask, checked=mask_checked)  # (B, T, S)
        context = torch.bmm(alpha, keys)  # (B, T, Hk)
        if one_step:
            return context.squeeze(1), alpha.squeeze(1)
        return context, alpha


def _check_shapes(query: Tensor, keys: Tensor, mask: Tensor | None) -> None:
    if keys.dim() != 3:
        raise ValueError(f"attention: keys must be (B, S, Hk), got shape {tuple(keys.shape)}")
    if query.dim() not in (2, 3):
        raise ValueError(
            f"attention: query must be (B, Hq) or (B, T, Hq), got shape {tuple(query.shape)}"
        )
    if query.shape[0] != keys.shape[0]:
        raise ValueError(f"attention: query batch {query.shape[0]} != keys batch {keys.shape[0]}")
    if mask is not None and mask.shape != keys.shape[:2]:
        raise ValueError(
            f"attention: mask must be (B, S) = {tuple(keys.shape[:2])}, "
            f"got shape {tuple(mask.shape)}"
        )


class BahdanauAttention(_Attention):
    """Additive attention (Bahdanau, Cho & Bengio 2015, arXiv 1409.0473, eq. 5-6 and A.1.2).

        e_j = v^T tanh(W s + U h_j)            W: (H, Hq), U: (H, Hk) with bias, v: (H,)
        α_j = softmax_j(e_j)                   (padding positions get α = 0)
        c   = Σ_j α_j h_j

    ``s`` is the decoder state the step attends from (s_{i-1} in the paper), ``h_j`` the
    encoder state (annotation) of source position j. ``U h_j`` does not depend on the
    decoder step: ``project_keys`` computes it once per sentence.

    Args:
        query_size: Hq, size of the decoder state s.
        key_size: Hk, size of the encoder states h_j.
        hidden_size: H, size of the scoring layer; defaults to ``query_size``.
    """

    def __init__(self, query_size: int, key_size: int, hidden_size: int | None = None) -> None:
        super().__init__()
        H = query_size if hidden_size is None else hidden_size
        self.query_size = query_size
        self.key_size = key_size
        self.hidden_size = H
        self.W = nn.Linear(query_size, H, bias=False)
        self.U = nn.Linear(key_size, H, bias=True)
        self.v = nn.Linear(H, 1, bias=False)

    def project_keys(self, keys: Tensor) -> Tensor:
        """``U h_j`` for every source position.

        Args:
            keys: encoder states ``(B, S, Hk)``.
        Returns:
            ``(B, S, H)``.
        """
        return self.U(keys)

    def energy(self, s: Tensor, projected_keys: Tensor) -> Tensor:
        """``e_tj = v^T tanh(W s_t + U h_j)``.

        Args:
            s: queries ``(B, T, Hq)``.
            projected_keys: ``U h`` ``(B, S, H)``.
        Returns:
            e ``(B, T, S)``.
        """
        Ws = self.W(s)  # (B, T, H)
        hidden = torch.tanh(Ws.unsqueeze(2) + projected_keys.unsqueeze(1))  # (B, T, S, H)
        return self.v(hidden).squeeze(-1)  # (B, T, S)

    def extra_repr(self) -> str:
        sizes = f"query_size={self.query_size}, key_size={self.key_size}"
        return f"{sizes}, hidden_size={self.hidden_size}"


class LuongAttention(_Attention):
    """Multiplicative / global attention (Luong, Pham & Manning 2015, arXiv 1508.04025, eq. 8).

        e_j = s^T h_j                          "dot"      (needs Hq == Hk)
        e_j = s^T W_a h_j                      "general"  W_a: (Hq, Hk)
        e_j = v_a^T tanh(W_a [s; h_j])         "concat"   W_a: (H, Hq + Hk), v_a: (H,)
        α_j = softmax_j(e_j)                   (padding positions get α = 0)
        c   = Σ_j α_j h_j

    ``s`` is the decoder state (h_t in the paper), ``h_j`` the encoder state (h̄_s). The
    key-only part of the score (``h_j`` for dot, ``W_a h_j`` for general, the key half
    ``W_a[:, Hq:] h_j`` for concat) is computed by ``project_keys``. The attentional
    state ``tanh(W_c [c; s])`` of the paper belongs to the decoder, not here.

    Args:
        query_size: Hq, size of the decoder state s.
        key_size: Hk, size of the encoder states h_j.
        score: ``"dot"``, ``"general"`` or ``"concat"``.
        hidden_size: H of the "concat" score; defaults to ``query_size``; unused otherwise.
    Raises:
        ValueError: unknown score, or "dot" with ``query_size != key_size``.
    """

    def __init__(
        self,
        query_size: int,
        key_size: int,
        score: str = "general",
        hidden_size: int | None = None,
    ) -> None:
        super().__init__()
        if score not in LUONG_SCORES:
            raise ValueError(
                f"LuongAttention: unknown score {score!r}; allowed: {', '.join(LUONG_SCORES)}"
            )
        if score == "dot" and query_size != key_size:
            raise ValueError(
                f"LuongAttention: score 'dot' needs query_size == key_size, got "
                f"query_size={query_size}, key_size={key_size}; use 'general' or 'concat'"
            )
        self.query_size = query_size
        self.key_size = key_size
        self.score = score
        self.hidden_size = query_size if hidden_size is None else hidden_size
        if score == "general":
            self.W_a = nn.Linear(key_size, query_size, bias=False)
        elif score == "concat":
            self.W_a = nn.Linear(query_size + key_size, self.hidden_size, bias=False)
            self.v_a = nn.Linear(self.hidden_size, 1, bias=False)

    def project_keys(self, keys: Tensor) -> Tensor:
        """Key-only part of the score.

        Args:
            keys: encoder states ``(B, S, Hk)``.
        Returns:
            dot: ``h`` ``(B, S, Hk)``; general: ``W_a h`` ``(B, S, Hq)``;
            concat: ``W_a[:, Hq:] h`` ``(B, S, H)``.
        """
        if self.score == "dot":
            return keys
        if self.score == "general":
            return self.W_a(keys)
        return F.linear(keys, self.W_a.weight[:, self.query_size :])

    def energy(self, s: Tensor, projected_keys: Tensor) -> Tensor:
        """Energies ``e_tj`` for the chosen score.

        Args:
            s: queries ``(B, T, Hq)``.
            projected_keys: ``self.project_keys(keys)``, ``(B, S, ·)``.
        Returns:
            e ``(B, T, S)``.
        """
        if self.score in ("dot", "general"):
            return torch.bmm(s, projected_keys.transpose(1, 2))  # (B, T, S)
        W_s = F.linear(s, self.W_a.weight[:, : self.query_size])  # (B, T, H)
        hidden = torch.tanh(W_s.unsqueeze(2) + projected_keys.unsqueeze(1))  # (B, T, S, H)
        return self.v_a(hidden).squeeze(-1)  # (B, T, S)

    def extra_repr(self) -> str:
        return f"query_size={self.query_size}, key_size={self.key_size}, score={self.score!r}"
