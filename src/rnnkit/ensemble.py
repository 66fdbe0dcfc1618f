"""Ensembles: several trained models translating together.

At every step each model reads the same prefix and proposes its distribution over the
next token; the ensemble's distribution is their mean (fairseq's and Marian's ensembles;
Sutskever et al. 2014 ensembled five LSTMs this way)::

    p(y_t | y_<t, x) = 1/M Σ_m p_m(y_t | y_<t, x)

so greedy and beam search (:mod:`rnnkit.search`) run unchanged on an :class:`Ensemble`:
it answers ``encode``, ``init_state`` and ``decode_step`` as a :class:`Seq2Seq` does, its
``logits`` being the log of that mean (already normalised). The attention it reports is
the mean of its members' (members without attention are left out of it).

The members must read and write the same tokens: the same vocabularies and tokenizers
(models of several runs of one config qualify: their tokenizers are trained on the same
data and come out identical). Architectures may differ: an LSTM and a GRU, other sizes,
other attention. Unlike checkpoint averaging (one run, one model's cost), an ensemble of
M models costs M models' time at every step.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

import torch
from torch import Tensor, nn

from rnnkit.checkpoint import Bundle, CheckpointError, load_bundle
from rnnkit.model import DecoderStep, EncoderOutput, Seq2Seq, State

__all__ = ["Ensemble", "EnsembleEncoding", "load_ensemble"]


class EnsembleEncoding(NamedTuple):
    """Each member's :class:`EncoderOutput` of the same batch."""

    parts: tuple[EncoderOutput, ...]

    def index_select(self, index: Tensor) -> EnsembleEncoding:
        """Rows ``index`` of the batch, in every member's encoding."""
        return EnsembleEncoding(tuple(p.index_select(index) for p in self.parts))


class Ensemble(nn.Module):
    """Models that share vocabularies, decoding as one (see the module docstring).

    Args:
        models: the members, each a :class:`Seq2Seq` with the same target vocabulary
            (its special ids must agree: checked) on the same device.
        steps: each member's training step, when known (:func:`load_ensemble` gives
            its checkpoints'; ``rnnkit serve``'s ``/info`` tells them).
    """

    def __init__(self, models: Sequence[Seq2Seq], steps: Sequence[int] | None = None) -> None:
        super().__init__()
        if steps is not None and len(steps) != len(models):
            raise ValueError(f"{len(steps)} steps for {len(models)} models")
        self.steps = None if steps is None else tuple(steps)
        if not models:
            raise ValueError("an ensemble needs at least one model")
        first = models[0]
        for i, m in enumerate(models[1:], 1):
            if (m.pad_id, m.bos_id, m.eos_id) != (first.pad_id, first.bos_id, first.eos_id):
                raise ValueError(f"model {i}: other special token ids than model 0's")
            if m.W_out.out_features != first.W_out.out_features:
                raise ValueError(
                    f"model {i}: {m.W_out.out_features} target tokens, model 0 has "
                    f"{first.W_out.out_features}"
                )
        self.members = nn.ModuleList(models)
        self._models = tuple(models)  # the same modules, typed
        self.pad_id, self.bos_id, self.eos_id = first.pad_id, first.bos_id, first.eos_id

    def encode(self, src: Tensor, src_lengths: Tensor) -> EnsembleEncoding:
        """Every member encodes ``src``."""
        return EnsembleEncoding(tuple(m.encode(src, src_lengths) for m in self._models))

    def init_state(self, enc: EnsembleEncoding) -> State:
        """The members' decoder states in one dict (keys ``"m/key"``: beam search reorders
        every tensor of it by rows, as it does a single model's)."""
        state: State = {}
        for i, (m, e) in enumerate(zip(self._models, enc.parts)):
            state.update({f"{i}/{k}": v for k, v in m.init_state(e).items()})
        return state

    def decode_step(self, y_prev: Tensor, state: State, enc: EnsembleEncoding) -> DecoderStep:
        """One step of every member: ``logits`` = log of the mean of their probabilities
        ``(B, V)``, their new states, their mean attention ``(B, S)`` (or None)."""
        logps, atts, new = [], [], {}
        for i, (m, e) in enumerate(zip(self._models, enc.parts)):
            prefix = f"{i}/"
            own = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
            step = m.decode_step(y_prev, own, e)
            logps.append(torch.log_softmax(step.logits.float(), -1))
            if step.attention is not None:
                atts.append(step.attention)
            new.update({prefix + k: v for k, v in step.state.items()})
        if len(logps) == 1:
            mean = logps[0]
        else:
            mean = torch.logsumexp(torch.stack(logps), 0) - math.log(len(logps))
        att = None if not atts else atts[0] if len(atts) == 1 else torch.stack(atts).mean(0)
        return DecoderStep(mean, new, att, [])


def load_ensemble(
    paths: Sequence[str | Path], device: str | torch.device = "cpu"
) -> tuple[Bundle, Ensemble]:
    """Load the checkpoints at ``paths`` as one :class:`Ensemble` on ``device``.

    Returns the first checkpoint's bundle (its tokenizers, vocabularies and ``decode``
    settings serve the whole ensemble) and the ensemble.

    Raises:
        CheckpointError: a checkpoint whose vocabularies, tokenizers or lowercasing
            differ from the first's (named in the message), or one that cannot be read.
    """
    if isinstance(paths, str | Path):  # (a string's characters are no paths)
        raise TypeError(f"paths must be a list of checkpoint paths: [{str(paths)!r}]")
    if not paths:
        raise CheckpointError("no checkpoints to ensemble")
    bundles = [load_bundle(p, device=device) for p in paths]
    first = bundles[0]
    for path, b in zip(paths[1:], bundles[1:]):
        for what, mine, theirs in (
            ("source vocabulary", b.src_vocab.to_state(), first.src_vocab.to_state()),
            ("target vocabulary", b.tgt_vocab.to_state(), first.tgt_vocab.to_state()),
            ("source tokenizer", b.src_tokenizer.to_state(), first.src_tokenizer.to_state()),
            ("target tokenizer", b.tgt_tokenizer.to_state(), first.tgt_tokenizer.to_state()),
            ("data.lowercase", b.config.data.lowercase, first.config.data.lowercase),
        ):
            if mine != theirs:
                raise CheckpointError(
                    f"{path}: its {what} differs from {paths[0]}'s; the models of an "
                    "ensemble must read and write the same tokens"
                )
    return first, Ensemble([b.model for b in bundles], [b.step for b in bundles]).eval()
