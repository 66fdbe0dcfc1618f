"""Record what a model does on a sentence: every gate, every step, and where it looks.

:func:`record` greedily translates one sentence through ``decode_step(record=True)``
and keeps the encoder's gate trace (``encode(return_gates=True)``), the decoder's gates
at every output step and the attention weights α. :func:`saturation` runs a whole
corpus and counts, for each unit of each sigmoid gate, how often it is nearly shut
(< 0.1, "left-saturated") or nearly open (> 0.9, "right-saturated"), the statistic of
Karpathy, Johnson & Fei-Fei 2015, "Visualizing and understanding recurrent networks"
(arXiv 1506.02078, Fig. 3).

Gate traces are keyed by a :data:`Part` ``(part, layer, direction)``: ``("encoder", 0,
"forward")``, ``("encoder", 0, "backward")``, ``("decoder", 0, "forward")``; layers
count from 0 as in torch's parameter names (``weight_ih_l0``).
Shapes: S source tokens (EOS included), T output tokens, H hidden units.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from rnnkit.checkpoint import Bundle
from rnnkit.data import DataError, make_src_batches
from rnnkit.data.batching import DECODE_TOKENS
from rnnkit.loss import output_log_probs
from rnnkit.model import EncoderOutput
from rnnkit.translate import Translation, translate_lines

__all__ = [
    "Part",
    "SatKey",
    "SIGMOID_GATES",
    "sigmoid_gates",
    "Recording",
    "record",
    "saturation",
    "saturation_fractions",
    "source_ids",
]

Part = tuple[str, int, str]  # (part, layer, direction): ("encoder", 0, "backward")
SatKey = tuple[str, int, str, str]  # (part, layer, direction, gate)

# The gates squashed by σ into (0, 1), whose saturation means something (Karpathy et al.).
SIGMOID_GATES: dict[str, tuple[str, ...]] = {
    "LSTM": ("input", "forget", "output"),
    "GRU": ("reset", "update"),
    "RNN": (),
}
_SIGMOID_NAMES = ("input", "forget", "output", "reset", "update")
DIRECTIONS = ("forward", "backward")


def sigmoid_gates(model: Any) -> tuple[str, ...]:
    """The σ gates of ``model``'s cell: the stock table, else what the cell declares as
    ``sigmoid``, else its gates named as σ gates are (input, forget, output, reset,
    update; a custom cell's other gates are not assumed to be)."""
    kind = model.decoder.kind
    if kind in SIGMOID_GATES:
        return SIGMOID_GATES[kind]
    cls = type(model.decoder.rnn.cells[0])
    if getattr(cls, "sigmoid", None) is not None:
        return tuple(cls.sigmoid)
    return tuple(n for n in cls.Gates._fields if n in _SIGMOID_NAMES)


@dataclass
class Recording:
    """One sentence through the model, every gate kept.

    Attributes:
        src_tokens: the S tokens the encoder read, ``</s>`` included.
        out_tokens: the T tokens the decoder wrote, ``</s>`` included when it ended.
        translation: the detokenised output.
        attention: α ``(T, S)``, rows summing to 1; None for a model without attention.
        gates: ``Part`` → gate name → ``(S, H)`` (encoder) or ``(T, H)`` (decoder),
            one entry per field of the cell's trace (LSTM: input, forget, candidate,
            output, cell, hidden; GRU: reset, update, candidate, hidden; RNN: hidden).
        cell: ``"LSTM"``, ``"GRU"``, ``"RNN"``, or a variant's or custom cell's class name
            without ``Cell`` (``"LayerNormLSTM"``); its traces hold the declared gates.
        decoding: ``"greedy"``, or ``"beam K"`` when the output is beam search's (the
            decoder then read that output, as in training).
        sigmoid: the gates in (0, 1) (:func:`sigmoid_gates`).
    """

    src_tokens: list[str]
    out_tokens: list[str]
    translation: str
    attention: Tensor | None
    gates: dict[Part, dict[str, Tensor]] = field(default_factory=dict)
    cell: str = "GRU"
    decoding: str = "greedy"  # how out_tokens were chosen: "greedy" or "beam K"
    sigmoid: tuple[str, ...] = ()

    def tokens(self, part: Part) -> list[str]:
        """The tokens on the time axis of ``part``: source for the encoder, output for the
        decoder (decoder step t reads y_{t-1} and writes y_t; it is labelled y_t)."""
        return self.src_tokens if part[0] == "encoder" else self.out_tokens


def source_ids(bundle: Bundle, sentence: str) -> tuple[list[str], list[int]]:
    """Tokens (``</s>`` appended) and ids the encoder reads for ``sentence``, as
    ``translate_lines`` makes them. Raises :class:`DataError` for a sentence with no token."""
    text = sentence.lower() if bundle.config.data.lowercase else sentence
    tokens = bundle.src_tokenizer.encode(text) if text.strip() else []
    if not tokens:
        raise DataError("inspect: the sentence is empty (no token to read)")
    return tokens + ["</s>"], bundle.src_vocab.encode(tokens, add_eos=True)


def max_output_len(bundle: Bundle, n_src: int) -> int:
    """At most a·|x| + b output tokens, as greedy search allows."""
    dec = bundle.config.decode
    return max(1, int(dec.max_len_a * n_src + dec.max_len_b))


@torch.no_grad()
def record(
    bundle: Bundle,
    sentence: str,
    max_len: int | None = None,
    output: Sequence[int] | None = None,
    decoding: str = "given",
) -> Recording:
    """Greedy-translate ``sentence`` (or read ``output``) and keep every gate of every step.

    Args:
        bundle: a loaded model, engine ``auto`` or ``explicit`` (``native`` cannot
            record gates); ``load_bundle(path, engine="explicit")``.
        sentence: raw source text.
        max_len: at most this many output tokens (``</s>`` included); default a·|x| + b
            of the checkpoint's ``decode`` section, as ``translate`` uses.
        output: target ids to decode instead of greedy choices (e.g. beam search's best
            hypothesis, ``</s>`` included when it ended): the decoder reads them as in
            training, so gates and attention are those of that translation.
        decoding: how ``output`` was found, for :attr:`Recording.decoding` (``"beam K"``;
            default ``"given"``).
    Returns:
        A :class:`Recording`; its output equals greedy search's, or ``output``.
    Raises:
        DataError: the sentence has no token.
    """
    model = bundle.model
    src_tokens, ids = source_ids(bundle, sentence)
    device = next(model.parameters()).device
    src = torch.tensor([ids], device=device)  # (1, S)
    lengths = torch.tensor([len(ids)])
    enc = model.encode(src, lengths, return_gates=True)
    gates: dict[Part, dict[str, Tensor]] = {}
    D = model.encoder.num_directions
    trace = enc.gates
    for ld in range(trace[0].shape[0]):
        layer, d = divmod(ld, D)
        gates[("encoder", layer, DIRECTIONS[d])] = {
            name: f[ld, 0].float().cpu() for name, f in zip(trace._fields, trace)
        }  # (S, H)

    limit = max_output_len(bundle, len(ids)) if max_len is None else max(1, max_len)
    state = model.init_state(enc)
    y = torch.tensor([model.bos_id], device=device)
    out_ids: list[int] = []
    alphas: list[Tensor] = []
    steps: list[list[tuple[Tensor, ...]]] = []  # per step, per decoder layer
    forced = None if output is None else list(output)
    if forced is not None:
        if not forced:
            raise ValueError("record: output is empty (give at least </s>)")
        limit = len(forced)
    for t in range(limit):
        step = model.decode_step(y, state, enc, record=True)
        if forced is None:  # greedy search's choice (never <pad> or <s>)
            y = output_log_probs(step.logits, model.pad_id, model.bos_id).argmax(-1)
        else:
            y = y.new_tensor([forced[t]])
        out_ids.append(int(y))
        steps.append(step.gates)
        if step.attention is not None:
            alphas.append(step.attention[0].float().cpu())
        state = step.state
        if out_ids[-1] == model.eos_id:
            break
    for layer in range(len(steps[0])):
        fields = steps[0][layer]._fields  # type: ignore[attr-defined]
        gates[("decoder", layer, "forward")] = {
            name: torch.stack([s[layer][k][0] for s in steps]).float().cpu()  # (T, H)
            for k, name in enumerate(fields)
        }
    vocab = bundle.tgt_vocab
    return Recording(
        src_tokens=src_tokens,
        out_tokens=[vocab.token(i) for i in out_ids],
        translation=bundle.tgt_tokenizer.decode(vocab.decode(out_ids)),
        attention=torch.stack(alphas) if alphas else None,  # (T, S)
        gates=gates,
        cell=model.decoder.kind,
        decoding="greedy" if forced is None else decoding,
        sigmoid=sigmoid_gates(model),
    )


def record_translation(
    bundle: Bundle,
    sentence: str,
    beam: int,
    max_len: int | None = None,
    best: Translation | None = None,
) -> Recording:
    """:func:`record` of the translation ``translate`` gives with beam size ``beam``:
    greedy search's for 1, else beam search's best hypothesis (``best`` when the caller
    has it), which the decoder then reads (cut at ``max_len`` tokens)."""
    if beam <= 1:
        return record(bundle, sentence, max_len)
    if best is None:
        best = translate_lines(bundle, [sentence], beam)[0][0]
    ids = [bundle.tgt_vocab[token] for token in best.out_tokens]
    if max_len is not None:
        ids = ids[: max(1, max_len)]
    return record(bundle, sentence, output=ids, decoding=f"beam {beam}")


def _counts(values: Tensor, left: float, right: float) -> tuple[Tensor, Tensor, int]:
    """Per unit: steps below ``left``, steps above ``right``, and the number of steps."""
    v = values.detach().float()
    return (v < left).sum(0).double(), (v > right).sum(0).double(), int(v.shape[0])


def saturation_fractions(
    values: Tensor, left: float = 0.1, right: float = 0.9
) -> tuple[Tensor, Tensor]:
    """Fraction of steps each unit spends left- and right-saturated.

    Args:
        values: ``(N, H)`` gate activations, one row per time step (real tokens only).
        left, right: thresholds; a value < ``left`` is left-saturated, > ``right``
            right-saturated (Karpathy et al. 2015 use 0.1 and 0.9).
    Returns:
        ``(left_frac, right_frac)``, each ``(H,)`` in [0, 1].
    """
    if values.dim() != 2 or values.shape[0] == 0:
        raise ValueError(f"values must be (N, H) with N ≥ 1, got {tuple(values.shape)}")
    lo, hi, n = _counts(values, left, right)
    return (lo / n).float(), (hi / n).float()


class _Tally:
    """Saturation counts summed over batches, so a corpus never has to sit in memory."""

    def __init__(self, left: float, right: float) -> None:
        self.left, self.right = left, right
        self.sums: dict[SatKey, list] = {}

    def add(self, key: SatKey, values: Tensor) -> None:
        if values.shape[0] == 0:
            return
        lo, hi, n = _counts(values, self.left, self.right)
        if key in self.sums:
            acc = self.sums[key]
            acc[0], acc[1], acc[2] = acc[0] + lo, acc[1] + hi, acc[2] + n
        else:
            self.sums[key] = [lo, hi, n]

    def fractions(self) -> dict[SatKey, tuple[Tensor, Tensor]]:
        return {k: ((lo / n).float(), (hi / n).float()) for k, (lo, hi, n) in self.sums.items()}


@torch.no_grad()
def saturation(
    bundle: Bundle,
    sentences: Sequence[str],
    left: float = 0.1,
    right: float = 0.9,
    batch_size: int = 64,
) -> dict[SatKey, tuple[Tensor, Tensor]]:
    """Gate saturation over a corpus (Karpathy, Johnson & Fei-Fei 2015, Fig. 3).

    Every sigmoid gate (LSTM input / forget / output, GRU reset / update) of every layer
    and direction; the encoder over the real source steps (EOS included, padding
    excluded), the decoder over the steps of its greedy output (EOS included).

    Args:
        sentences: raw source lines; blank lines are skipped.
    Returns:
        ``(part, layer, direction, gate)`` → ``(left_frac, right_frac)``, each ``(H,)``:
        the fraction of steps the unit spends < ``left`` and > ``right``. Empty for a
        vanilla RNN, which has no sigmoid gate.
    Raises:
        DataError: no sentence has a token.
    """
    ids = [source_ids(bundle, s)[1] for s in sentences if s.strip()]
    if not ids:
        raise DataError("inspect: the corpus has no non-empty sentence")
    model = bundle.model
    names = sigmoid_gates(model)
    if not names:
        return {}
    tally = _Tally(left, right)
    device = next(model.parameters()).device
    D = model.encoder.num_directions
    for batch in make_src_batches(ids, batch_size, bundle.src_vocab.pad_id, DECODE_TOKENS):
        src, lengths = batch.src.to(device), batch.src_lengths
        enc = model.encode(src, lengths, return_gates=True)
        for ld in range(enc.gates[0].shape[0]):
            layer, d = divmod(ld, D)
            for name in names:
                # (B, S, H)[mask] → (N, H): the zeros past each length are not steps
                values = getattr(enc.gates, name)[ld][enc.mask]
                tally.add(("encoder", layer, DIRECTIONS[d], name), values)
        _decoder_saturation(bundle, enc, lengths, names, tally)
    return tally.fractions()


def _decoder_saturation(
    bundle: Bundle, enc: EncoderOutput, lengths: Tensor, names: Sequence[str], tally: _Tally
) -> None:
    """Greedy-decode a batch with recording; rows count until (and with) their EOS."""
    model = bundle.model
    B = lengths.shape[0]
    device = enc.states.device
    limits = torch.tensor([max_output_len(bundle, int(n)) for n in lengths.tolist()], device=device)
    state = model.init_state(enc)
    y = torch.full((B,), model.bos_id, dtype=torch.long, device=device)
    done = torch.zeros(B, dtype=torch.bool, device=device)
    for t in range(int(limits.max())):
        step = model.decode_step(y, state, enc, record=True)
        live = ~done  # rows still writing: this step is one of their output steps
        for layer, g in enumerate(step.gates):
            for name in names:
                tally.add(("decoder", layer, "forward", name), getattr(g, name)[live])
        y = output_log_probs(step.logits, model.pad_id, model.bos_id).argmax(-1)
        state = step.state
        done = done | (y == model.eos_id) | (t + 1 >= limits)
        if bool(done.all()):
            break
