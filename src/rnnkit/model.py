"""The attention encoder-decoder: Encoder, Decoder and Seq2Seq.

The encoder reads the source into states h_1..h_S. At each step t the decoder scores
every h_j against its state, turns the scores into weights α_tj (a softmax), takes the
context c_t = Σ_j α_tj h_j, and predicts y_t from its state, c_t and y_{t-1}.
Three decoder styles share one interface:

``bahdanau`` (Bahdanau et al. 2015, arXiv 1409.0473)::

    c_t, α_t = attention(s_{t-1}, h)                 query: the previous state
    s_t      = RNN(s_{t-1}, [E y_{t-1}; c_t])
    o_t      = tanh(W_o [s_t; c_t; E y_{t-1}])
    p(y_t)   = softmax(W_out o_t)

``luong`` (Luong et al. 2015, arXiv 1508.04025, with input feeding)::

    s_t      = RNN(s_{t-1}, [E y_{t-1}; h̃_{t-1}])
    c_t, α_t = attention(s_t, h)                     query: the new state
    h̃_t      = tanh(W_c [c_t; s_t])                  attentional state
    p(y_t)   = softmax(W_out h̃_t)

``none`` (Cho et al. 2014, arXiv 1406.1078): a fixed summary C of the source, fed at
every step::

    s_t      = RNN(s_{t-1}, [E y_{t-1}; C])
    o_t      = tanh(W_o [s_t; C; E y_{t-1}])
    p(y_t)   = softmax(W_out o_t)

One API (STYLE rule 7): ``encode()``, ``decode_step()``, ``forward()`` (teacher forced,
its decoder half ``teacher_forced()``); greedy, beam search and training all go through
``decode_step()``.
Shapes: B batch, S source, T target, E embedding, H hidden, V vocabulary.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from rnnkit.cells.base import Cell
from rnnkit.cells.names import CELLS, cell_options, resolve_cell
from rnnkit.cells.regularisers import check_rate
from rnnkit.decoder import Decoder, DecoderStep, EncoderOutput, State
from rnnkit.layers import GRU, LSTM, RNN
from rnnkit.loss import sequence_loss, token_loss
from rnnkit.recurrent import Recurrent

__all__ = ["EncoderOutput", "DecoderStep", "Encoder", "Decoder", "Seq2Seq", "State"]
__all__ += ["sequence_loss", "token_loss", "resolve_cell", "CELLS"]

TGT_EMBED_INITS = ("auto", "normal", "scaled")
REGULARISE = ("encoder", "decoder", "both")  # the sides that zoneout & co. regularise


class Encoder(nn.Module):
    """Embeddings and a (bidirectional, stacked) rnnkit recurrent layer."""

    def __init__(
        self,
        vocab_size: int,
        emb_size: int,
        hidden_size: int,
        cell: str | type[Cell] = "gru",
        num_layers: int = 1,
        bidirectional: bool = True,
        dropout: float = 0.0,
        emb_dropout: float = 0.0,
        engine: str = "auto",
        pad_id: int = 0,
        regularisers: dict[str, Any] | None = None,
        forget_bias: float | None = None,
        cell_kwargs: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab_size, emb_size, padding_idx=pad_id)
        kind = resolve_cell(cell)
        kw: dict[str, Any] = dict(regularisers or {}, **cell_options(kind, forget_bias))
        kw.update(cell_kwargs or {})
        kw.update(batch_first=True, bidirectional=bidirectional)
        kw["dropout"] = dropout if num_layers > 1 else 0.0
        self.rnn: nn.Module
        if isinstance(kind, str):
            layer = {"RNN": RNN, "LSTM": LSTM, "GRU": GRU}[kind]
            self.rnn = layer(emb_size, hidden_size, num_layers, engine=engine, **kw)
        else:  # no fused kernel computes a custom cell: its explicit loop, whatever the engine
            kw["engine"] = "reference" if engine == "reference" else "explicit"
            self.rnn = Recurrent(kind, emb_size, hidden_size, num_layers, **kw)
        self.emb_dropout = nn.Dropout(emb_dropout)
        self.out_dropout = nn.Dropout(dropout)
        self.num_directions = 2 if bidirectional else 1
        self.output_size = self.num_directions * hidden_size

    def forward(
        self, src: Tensor, lengths: Tensor, return_gates: bool = False
    ) -> tuple[Tensor, Tensor, Any]:
        """src ``(B, S)`` ids, lengths ``(B,)`` → states ``(B, S, D·H)``, final ``(B, D·H)``,
        gate trace or None."""
        if not isinstance(lengths, Tensor):  # (a list, as torch's packing takes)
            lengths = torch.as_tensor(lengths, dtype=torch.long)
        x = self.emb_dropout(self.embed(src))  # (B, S, E)
        out = self.rnn(x, lengths=lengths.cpu(), return_gates=return_gates)
        states, h_n = out[0], out[1]
        if isinstance(h_n, tuple):  # LSTM: (h_n, c_n)
            h_n = h_n[0]
        final = h_n[-self.num_directions :].transpose(0, 1).reshape(src.shape[0], -1)
        return self.out_dropout(states), final, (out[2] if return_gates else None)


def _check_src(src: Tensor, vocab: int) -> None:
    """src as :meth:`Seq2Seq.encode` takes it: ``(B, S)`` integer ids in the source
    vocabulary (the ids' range checked on the CPU only, where it costs no device sync,
    and not while torch.compile / export records)."""
    if src.dim() != 2:
        raise ValueError(
            f"src must be (B, S) token ids, got shape {tuple(src.shape)}"
            + (" (one sentence: src[None])" if src.dim() == 1 else "")
        )
    if src.dtype.is_floating_point or src.dtype.is_complex or src.dtype == torch.bool:
        raise ValueError(f"src must be integer token ids, got {src.dtype}")
    if src.shape[0] == 0:
        raise ValueError("encode: the batch is empty (src has 0 rows)")
    if src.device.type != "cpu" or torch.compiler.is_compiling() or torch.jit.is_tracing():
        return
    lo, hi = int(src.min()), int(src.max())
    if lo < 0 or hi >= vocab:
        raise ValueError(
            f"src holds token id {lo if lo < 0 else hi}; the source vocabulary has ids "
            f"0..{vocab - 1}"
        )


class Seq2Seq(nn.Module):
    """Encoder-decoder with attention. ``engine`` applies to every recurrent part:
    ``"auto"`` / ``"native"`` use fused kernels, ``"explicit"`` / ``"reference"`` our cells
    (the variants of :data:`CELLS` and custom cells always run our cells).

    ``cell`` names a built-in cell (:data:`CELLS`) or a custom :class:`Cell` as
    ``"module:Class"`` (or is that class); ``forget_bias`` initialises the LSTM family's
    forget biases (both sides), ``cell_kwargs`` are more keywords of the cell's
    ``__init__`` (both sides); ``zoneout``, ``recurrent_dropout``, ``weight_drop``
    regularise the recurrent layers of the side(s) that ``regularise`` names:
    ``"encoder"`` (the default), ``"decoder"`` or ``"both"``. ``tgt_embed_init``: target
    embeddings from torch's N(0, 1) (``"normal"``) or N(0, 1/E) (``"scaled"``: a tied
    model then starts near uniform, not at twice its loss); ``"auto"``: scaled when
    tied."""

    def __init__(
        self,
        src_vocab_size: int,
        tgt_vocab_size: int,
        emb_size: int = 256,
        hidden_size: int = 256,
        cell: str | type[Cell] = "gru",
        enc_layers: int = 1,
        dec_layers: int = 1,
        bidirectional: bool = True,
        attention: str = "bahdanau",
        luong_score: str = "general",
        bridge: str = "learned",
        dropout: float = 0.3,
        emb_dropout: float = 0.1,
        tie_embeddings: bool = False,
        engine: str = "auto",
        pad_id: int = 0,
        bos_id: int = 2,
        eos_id: int = 3,
        forget_bias: float | None = None,
        zoneout: float = 0.0,
        recurrent_dropout: float = 0.0,
        weight_drop: float = 0.0,
        tgt_embed_init: str = "auto",
        regularise: str = "encoder",
        cell_kwargs: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        resolve_cell(cell)  # a clear error before anything is built
        _check_sizes(src_vocab_size, tgt_vocab_size, enc_layers, dec_layers, pad_id, bos_id, eos_id)
        _check_widths(emb_size=emb_size, hidden_size=hidden_size)
        _check_options(dropout, emb_dropout, tgt_embed_init, regularise)
        regularisers = dict(
            zoneout=zoneout, recurrent_dropout=recurrent_dropout, weight_drop=weight_drop
        )
        self.pad_id, self.bos_id, self.eos_id = pad_id, bos_id, eos_id
        self.engine = engine
        self.encoder = Encoder(
            src_vocab_size,
            emb_size,
            hidden_size,
            cell,
            enc_layers,
            bidirectional,
            dropout,
            emb_dropout,
            engine,
            pad_id,
            regularisers if regularise != "decoder" else None,
            forget_bias,
            cell_kwargs,
        )
        self.decoder = Decoder(
            tgt_vocab_size,
            emb_size,
            hidden_size,
            self.encoder.output_size,
            cell,
            dec_layers,
            attention,
            luong_score,
            bridge,
            dropout,
            emb_dropout,
            emb_size if tie_embeddings else hidden_size,
            pad_id,
            forget_bias,
            regularisers if regularise != "encoder" else None,
            cell_kwargs,
        )
        self.W_out = nn.Linear(self.decoder.out_size, tgt_vocab_size)
        if tie_embeddings:  # Press & Wolf 2017: output projection = target embeddings
            self.W_out.weight = self.decoder.embed.weight
        if tgt_embed_init == "scaled" or (tgt_embed_init == "auto" and tie_embeddings):
            with torch.no_grad():  # N(0, 1/E): tied, the first logits are near uniform
                nn.init.normal_(self.decoder.embed.weight, 0.0, emb_size**-0.5)
                self.decoder.embed.weight[pad_id].zero_()

    @property
    def fused(self) -> bool:
        return self.engine in ("auto", "native")

    def encode(
        self, src: Tensor, src_lengths: Tensor | Sequence[int], return_gates: bool = False
    ) -> EncoderOutput:
        """src ``(B, S)``, src_lengths ``(B,)`` (a tensor, or a list as torch's packing
        takes) → :class:`EncoderOutput`."""
        _check_src(src, self.encoder.embed.num_embeddings)
        if not isinstance(src_lengths, Tensor):
            src_lengths = torch.as_tensor(src_lengths, dtype=torch.long)
        states, final, gates = self.encoder(src, src_lengths, return_gates)
        lengths = src_lengths.to(src.device, non_blocking=True)  # no host sync
        mask = torch.arange(src.shape[1], device=src.device) < lengths[:, None]
        att = self.decoder.attention
        keys = att.project_keys(states) if att is not None else None
        return EncoderOutput(states, mask, final, keys, gates)

    def init_state(self, enc: EncoderOutput) -> State:
        return self.decoder.init_state(enc)

    def decode_step(
        self,
        y_prev: Tensor,
        state: State,
        enc: EncoderOutput,
        project: bool = True,
        record: bool = False,
    ) -> DecoderStep:
        """One decoder step: y_{t-1} ``(B,)`` → logits ``(B, V)`` of y_t (``project=False``:
        the pre-output ``(B, O)``), the new state, α_t ``(B, S)`` and recorded gates."""
        step = self.decoder.step(y_prev, state, enc, fused=self.fused and not record, record=record)
        return step._replace(logits=self.W_out(step.logits)) if project else step

    def forward(
        self,
        src: Tensor,
        src_lengths: Tensor | Sequence[int],
        tgt_in: Tensor,
        teacher_forcing: float = 1.0,
    ) -> tuple[Tensor, Tensor | None]:
        """Teacher-forced pass. tgt_in ``(B, T)`` = BOS y_1 .. y_{T-1}.

        With ``teacher_forcing < 1`` each step feeds, with probability 1 - ratio, the
        model's own prediction instead of the reference token (Williams & Zipser 1989).
        Returns logits ``(B, T, V)`` and attention ``(B, T, S)`` (None without attention).
        """
        enc = self.encode(src, src_lengths)  # (src checked before tgt_in is blamed)
        if tgt_in.dim() != 2 or tgt_in.shape[0] != src.shape[0] or tgt_in.shape[1] == 0:
            raise ValueError(
                f"tgt_in must be (B, T) with the B = {src.shape[0]} of src and T ≥ 1, "
                f"got {tuple(tgt_in.shape)}"
            )
        return self.teacher_forced(enc, tgt_in, teacher_forcing)

    def teacher_forced(
        self, enc: EncoderOutput, tgt_in: Tensor, teacher_forcing: float = 1.0
    ) -> tuple[Tensor, Tensor | None]:
        """The decoder's part of :meth:`forward`, from the encoder's output ``enc``."""
        if not 0.0 <= teacher_forcing <= 1.0:
            raise ValueError(f"teacher_forcing must lie in [0, 1], got {teacher_forcing}")
        return _decode_all(self, enc, tgt_in, teacher_forcing)


def _decode_all(
    model: Seq2Seq, enc: EncoderOutput, tgt_in: Tensor, teacher_forcing: float
) -> tuple[Tensor, Tensor | None]:
    """The loop of :meth:`Seq2Seq.teacher_forced`: one decoder step per target position,
    fed the reference token (or, with probability 1 - ``teacher_forcing``, its own)."""
    state = model.init_state(enc)
    outs, alphas = [], []
    y = tgt_in[:, 0]
    for t in range(tgt_in.shape[1]):
        if teacher_forcing < 1.0:
            step = model.decode_step(y, state, enc)
            outs.append(step.logits)
            if t + 1 < tgt_in.shape[1]:
                own = torch.rand(()) >= teacher_forcing
                y = step.logits.argmax(-1) if bool(own) else tgt_in[:, t + 1]
        else:
            step = model.decode_step(y, state, enc, project=False)
            outs.append(step.logits)
            if t + 1 < tgt_in.shape[1]:
                y = tgt_in[:, t + 1]
        state = step.state
        if step.attention is not None:
            alphas.append(step.attention)
    out = torch.stack(outs, 1)  # (B, T, O or V)
    logits = out if teacher_forcing < 1.0 else model.W_out(out)  # one product for all T
    return logits, (torch.stack(alphas, 1) if alphas else None)


def _check_sizes(
    src_vocab: int, tgt_vocab: int, enc_layers: int, dec_layers: int, pad: int, bos: int, eos: int
) -> None:
    """Sizes and special ids a model can be built and decoded with (a bad one failed deep
    inside torch, or made every output run to its length limit)."""
    for name, n in (("enc_layers", enc_layers), ("dec_layers", dec_layers)):
        if n < 1:
            raise ValueError(f"{name} must be at least 1, got {n}")
    for name, v in (("src_vocab_size", src_vocab), ("tgt_vocab_size", tgt_vocab)):
        if v < 1:
            raise ValueError(f"{name} must be at least 1, got {v}")
    for name, i in (("pad_id", pad), ("bos_id", bos), ("eos_id", eos)):
        if not 0 <= i < tgt_vocab:
            raise ValueError(
                f"{name} {i} is not an id of the target vocabulary (0..{tgt_vocab - 1})"
            )
    if eos in (pad, bos) or pad == bos:
        raise ValueError(f"pad_id {pad}, bos_id {bos} and eos_id {eos} must be three ids")


def _check_options(
    dropout: float, emb_dropout: float, tgt_embed_init: str, regularise: str
) -> None:
    check_rate(dropout, "dropout", "Seq2Seq")
    check_rate(emb_dropout, "emb_dropout", "Seq2Seq")
    if tgt_embed_init not in TGT_EMBED_INITS:
        raise ValueError(
            f"tgt_embed_init must be one of {', '.join(TGT_EMBED_INITS)}; got {tgt_embed_init!r}"
        )
    if regularise not in REGULARISE:
        raise ValueError(f"regularise must be one of {', '.join(REGULARISE)}; got {regularise!r}")


def _check_widths(**sizes: int) -> None:
    for name, n in sizes.items():
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ValueError(f"{name} must be a whole number ≥ 1, got {n!r}")
