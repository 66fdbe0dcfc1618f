"""The decoder of :class:`rnnkit.model.Seq2Seq` (its three styles: see
:mod:`rnnkit.model`), and what flows between encoder, decoder and the searches:
:class:`EncoderOutput`, :class:`DecoderStep`, ``State``. All are importable from
:mod:`rnnkit.model` too."""

from __future__ import annotations

from typing import Any, NamedTuple

import torch
from torch import Tensor, nn

from rnnkit.attention import BahdanauAttention, LuongAttention
from rnnkit.cells import Cell, StackedCell
from rnnkit.cells.names import cell_options, resolve_cell
from rnnkit.cells.regularisers import Regularisers

__all__ = ["Decoder", "DecoderStep", "EncoderOutput", "State"]

ATTENTIONS = ("bahdanau", "luong", "none")

State = dict[str, Tensor]  # every tensor batch first, so beam search reorders with index_select


class EncoderOutput(NamedTuple):
    """What the decoder reads. All tensors batch first."""

    states: Tensor  # (B, S, D·H) h_1..h_S
    mask: Tensor  # (B, S) bool, True on real tokens
    final: Tensor  # (B, D·H) last layer's final states, directions concatenated
    keys: Tensor | None  # (B, S, ·) the attention's key projection, computed once
    gates: Any = None  # the encoder's gate trace, when asked for

    def index_select(self, index: Tensor) -> EncoderOutput:
        """Rows ``index`` of the batch (beam search repeats each sentence K times)."""
        keys = None if self.keys is None else self.keys.index_select(0, index)
        return EncoderOutput(
            self.states.index_select(0, index),
            self.mask.index_select(0, index),
            self.final.index_select(0, index),
            keys,
            None,
        )


class DecoderStep(NamedTuple):
    logits: Tensor  # (B, V), or the pre-output (B, O) when not projected
    state: State
    attention: Tensor | None  # (B, S) α_t, None without attention
    gates: list[Any]  # per decoder layer, when recorded


class Decoder(nn.Module):
    """Attentional (or not) decoder; one token per :meth:`step`. See module docstring."""

    def __init__(
        self,
        vocab_size: int,
        emb_size: int,
        hidden_size: int,
        enc_size: int,
        cell: str | type[Cell] = "gru",
        num_layers: int = 1,
        attention: str = "bahdanau",
        luong_score: str = "general",
        bridge: str = "learned",
        dropout: float = 0.0,
        emb_dropout: float = 0.0,
        out_size: int | None = None,
        pad_id: int = 0,
        forget_bias: float | None = None,
        regularisers: dict[str, Any] | None = None,
        cell_kwargs: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        if attention not in ATTENTIONS:
            raise ValueError(f"attention must be one of {', '.join(ATTENTIONS)}; got {attention!r}")
        if bridge not in ("learned", "zeros"):
            raise ValueError(f"bridge must be 'learned' or 'zeros'; got {bridge!r}")
        kind = resolve_cell(cell)
        self.style, self.hidden_size = attention, hidden_size
        self.kind = kind if isinstance(kind, str) else kind.__name__.removesuffix("Cell")
        self.num_layers, self.out_size = num_layers, out_size or hidden_size
        self.embed = nn.Embedding(vocab_size, emb_size, padding_idx=pad_id)
        self.emb_dropout = nn.Dropout(emb_dropout)
        self.dropout = nn.Dropout(dropout)
        self.attention: BahdanauAttention | LuongAttention | None = None
        if attention == "luong":
            if luong_score == "dot" and hidden_size != enc_size:
                raise ValueError(
                    f"luong_score 'dot' needs the decoder's hidden size ({hidden_size}) equal "
                    f"to the encoder's output size ({enc_size}: 2·hidden_size when "
                    "bidirectional); use 'general' or 'concat', or bidirectional=False"
                )
            self.attention = LuongAttention(hidden_size, enc_size, score=luong_score)
            rnn_in = emb_size + self.out_size  # input feeding: [E y; h̃_{t-1}]
            self.W_c = nn.Linear(enc_size + hidden_size, self.out_size, bias=False)
        else:
            if attention == "bahdanau":
                self.attention = BahdanauAttention(hidden_size, enc_size, hidden_size)
            rnn_in = emb_size + enc_size  # [E y; c_t] or [E y; C]
            self.W_o = nn.Linear(hidden_size + enc_size + emb_size, self.out_size)
        opts = {**cell_options(kind, forget_bias), **(cell_kwargs or {})}
        opts["regularisers"] = Regularisers.make(**(regularisers or {}), owner="decoder")
        self.rnn = StackedCell(kind, rnn_in, hidden_size, num_layers, dropout, **opts)
        self.bridge = nn.Linear(enc_size, hidden_size) if bridge == "learned" else None

    def init_state(self, enc: EncoderOutput) -> State:
        """s_0 = tanh(W_b [h→_S; h←_1]) in every layer (``bridge="learned"``), or zeros."""
        B = enc.final.shape[0]
        if self.bridge is None:
            h = enc.final.new_zeros(B, self.num_layers, self.hidden_size)
        else:
            h = torch.tanh(self.bridge(enc.final)).unsqueeze(1).expand(-1, self.num_layers, -1)
            h = h.contiguous()
        state = {"h": h}
        if self.rnn.has_cell_state:
            state["c"] = h
        if self.style == "luong":
            state["feed"] = enc.final.new_zeros(B, self.out_size)
        return self._begin(state)

    def _begin(self, state: State) -> State:
        """Start a sequence batch: in training, this batch's weight-drop copies and
        recurrent-dropout mask (``rnn.draw``), and a ``(B, 0)`` mark ``drawn`` saying
        that ``state`` holds them (a state made by hand lacks it)."""
        h = state["h"]
        mask = self.rnn.draw(h)
        if mask is not None:
            state["drop"] = mask
        if self._regularised():
            state["drawn"] = h.new_zeros(h.shape[0], 0)
        return state

    def _regularised(self) -> bool:
        reg = self.rnn.reg
        return self.training and bool(reg.weight_drop or reg.recurrent_dropout)

    def step(
        self,
        y_prev: Tensor,
        state: State,
        enc: EncoderOutput,
        fused: bool = True,
        record: bool = False,
    ) -> DecoderStep:
        """y_prev ``(B,)`` → pre-output o_t ``(B, O)`` (before W_out), new state, α_t."""
        e = self.emb_dropout(self.embed(y_prev))  # (B, E)
        if "drawn" not in state and self._regularised():  # made by hand: a new sequence
            state = self._begin(dict(state))
        h, c, drop = state["h"], state.get("c"), state.get("drop")
        alpha = None
        if self.style == "luong":
            inp = torch.cat([e, state["feed"]], 1)
            s, h, c, gates = self.rnn.step(inp, h, c, fused, record, drop)
            assert self.attention is not None
            context, alpha = self.attention(
                s, enc.states, enc.mask, projected_keys=enc.keys, mask_checked=True
            )
            o = torch.tanh(self.W_c(torch.cat([context, s], 1)))  # h̃_t
            new = {"h": h, "feed": o}
        else:
            if self.attention is not None:
                context, alpha = self.attention(  # (the mask: from checked lengths)
                    h[:, -1], enc.states, enc.mask, projected_keys=enc.keys, mask_checked=True
                )
            else:
                context = enc.final  # C: the summary of the whole source
            inp = torch.cat([e, context], 1)
            s, h, c, gates = self.rnn.step(inp, h, c, fused, record, drop)
            o = torch.tanh(self.W_o(torch.cat([s, context, e], 1)))
            new = {"h": h}
        if c is not None:
            new["c"] = c
        new.update({k: state[k] for k in ("drop", "drawn") if k in state})  # the sequence's
        return DecoderStep(self.dropout(o), new, alpha, gates)
