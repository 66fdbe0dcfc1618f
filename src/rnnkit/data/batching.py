"""Length-bucketed, padded batches of id sequences.

Conventions shared with the model:

- a source is ``vocab.encode(tokens)``: the token ids followed by EOS;
- an :class:`Example` target holds the bare token ids; :class:`Batch` adds BOS and
  EOS, so the decoder reads ``tgt[:, :-1]`` and predicts ``tgt[:, 1:]``;
- padding uses the pad id, and every batch keeps the original ``indices`` of its
  examples so outputs can be put back in input order (:func:`restore_order`).

A token budget bounds the padded size of a batch, not its real token count:
``n_sentences × width ≤ batch_tokens`` with ``width`` the widest padded row
(``max(len(src), len(tgt) + 2)``), so similar lengths are batched together (sorted by
``(src len, tgt len)``) and little compute goes to padding.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TypeVar

import torch

from .errors import DataError
from .tokenizers import Tokenizer
from .vocab import BOS_ID, EOS_ID, Vocab

T_ = TypeVar("T_")


@dataclass(frozen=True)
class Example:
    """An encoded pair: ``src`` ids (ending in EOS), bare ``tgt`` ids, corpus ``index``."""

    src: list[int]
    tgt: list[int]
    index: int


@dataclass
class SrcBatch:
    """Padded sources only, for translation.

    Attributes:
        src: (B, S) long, padded with the pad id.
        src_lengths: (B,) long, real lengths.
        indices: (B,) long, position of each row in the caller's input list.
    """

    src: torch.Tensor
    src_lengths: torch.Tensor
    indices: torch.Tensor

    def __len__(self) -> int:
        return int(self.src.shape[0])

    def to(self, device: torch.device | str) -> SrcBatch:
        """The same batch with its tensors on ``device``."""
        return SrcBatch(self.src.to(device), self.src_lengths.to(device), self.indices.to(device))


@dataclass
class Batch:
    """Padded sources and targets, for training and scoring.

    Attributes:
        src: (B, S) long, padded with the pad id.
        src_lengths: (B,) long.
        tgt: (B, T) long, BOS + target ids + EOS, padded with the pad id.
        indices: (B,) long, example indices.
        ntokens: number of tokens to predict, the non-pad entries of ``tgt[:, 1:]``.
    """

    src: torch.Tensor
    src_lengths: torch.Tensor
    tgt: torch.Tensor
    indices: torch.Tensor
    ntokens: int

    def __len__(self) -> int:
        return int(self.src.shape[0])

    def to(self, device: torch.device | str) -> Batch:
        """The same batch with ``src`` and ``tgt`` on ``device`` (copies that do not make
        the host wait for a GPU); the lengths and indices stay on the CPU, where they are
        read (packing, length checks, search limits, output order)."""
        return Batch(
            self.src.to(device, non_blocking=True),
            self.src_lengths,
            self.tgt.to(device, non_blocking=True),
            self.indices,
            self.ntokens,
        )


def pad_sequences(seqs: Sequence[Sequence[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Stack id lists into a right-padded (B, L) long tensor and (B,) lengths."""
    lengths = torch.tensor([len(s) for s in seqs], dtype=torch.long)
    out = torch.full((len(seqs), int(lengths.max()) if len(seqs) else 0), pad_id, dtype=torch.long)
    for row, seq in enumerate(seqs):
        out[row, : len(seq)] = torch.tensor(seq, dtype=torch.long)
    return out, lengths


def encode_pairs(
    pairs: Sequence[tuple[str, str]],
    src_tok: Tokenizer,
    tgt_tok: Tokenizer,
    src_vocab: Vocab,
    tgt_vocab: Vocab,
    dropout: float = 0.0,
    rng: random.Random | None = None,
) -> list[Example]:
    """Tokenise and number sentence pairs; ``index`` is the position in ``pairs``.

    ``dropout > 0``: a random segmentation of each side (BPE-dropout, see
    :meth:`SentencePieceTokenizer.sample`) drawn from ``rng``, source before target."""
    draw = rng or random.Random(0)

    def pieces(tok: Tokenizer, text: str) -> list[str]:
        return tok.sample(text, dropout, draw) if dropout else tok.encode(text)

    return [
        Example(
            src=src_vocab.encode(pieces(src_tok, s), add_eos=True),
            tgt=tgt_vocab.encode(pieces(tgt_tok, t), add_eos=False),
            index=i,
        )
        for i, (s, t) in enumerate(pairs)
    ]


def _width(ex: Example) -> int:
    return max(len(ex.src), len(ex.tgt) + 2)


def _greedy_groups(
    widths: Sequence[int], batch_tokens: int | None, batch_size: int | None
) -> list[list[int]]:
    """Cut an ordered list into consecutive groups that respect both limits."""
    if batch_tokens is None and batch_size is None:
        raise DataError("batching: give batch_tokens, batch_size or both")
    groups: list[list[int]] = []
    current: list[int] = []
    widest = 0
    for pos, w in enumerate(widths):
        new_widest = max(widest, w)
        too_many = batch_size is not None and len(current) + 1 > batch_size
        too_big = batch_tokens is not None and new_widest * (len(current) + 1) > batch_tokens
        if current and (too_many or too_big):
            groups.append(current)
            current, new_widest = [], w
        current.append(pos)
        widest = new_widest
    if current:
        groups.append(current)
    return groups


def make_batches(
    examples: Sequence[Example],
    batch_tokens: int | None,
    batch_size: int | None,
    shuffle: bool,
    seed: int,
    pad_id: int,
) -> list[Batch]:
    """Bucket examples by length and pad them into batches.

    Args:
        examples: encoded pairs; each source must be non-empty.
        batch_tokens: bound on ``n_sentences × width`` of a batch (width: widest padded
            row of src or tgt); an example wider than the budget gets a batch alone.
        batch_size: bound on sentences per batch.
        shuffle: shuffle the order of the batches (and which of equally long examples
            share a batch) with ``random.Random(seed)``; pass ``seed + epoch`` for a
            new order each epoch.
        seed: shuffle seed.
        pad_id: padding id.

    Returns:
        batches; every example occurs in exactly one.

    Raises:
        DataError: neither limit given, or an empty source.
    """
    order = list(range(len(examples)))
    rng = random.Random(seed)
    if shuffle:
        rng.shuffle(order)
    # Stable sort: without shuffle ties stay in corpus order, with it they mix per seed.
    order.sort(key=lambda i: (len(examples[i].src), len(examples[i].tgt)))
    for i in order:
        if not examples[i].src:
            raise DataError(f"batching: example {examples[i].index} has an empty source")
    groups = _greedy_groups([_width(examples[i]) for i in order], batch_tokens, batch_size)
    batches = [_collate([examples[order[p]] for p in g], pad_id) for g in groups]
    if shuffle:
        rng.shuffle(batches)
    return batches


def _collate(group: Sequence[Example], pad_id: int) -> Batch:
    src, src_lengths = pad_sequences([ex.src for ex in group], pad_id)
    tgt, _ = pad_sequences([[BOS_ID, *ex.tgt, EOS_ID] for ex in group], pad_id)
    return Batch(
        src=src,
        src_lengths=src_lengths,
        tgt=tgt,
        indices=torch.tensor([ex.index for ex in group], dtype=torch.long),
        ntokens=int((tgt[:, 1:] != pad_id).sum()),
    )


# Padded tokens a batch of a search or of scoring holds at most, beside its sentence
# count: one very long line then no longer pads a whole batch of short ones to its width
# (one 5,000-character line among 199 short dates took 10x the time, 2.8 GB).
DECODE_TOKENS = 65_536


def make_src_batches(
    src_id_lists: Sequence[Sequence[int]],
    batch_size: int,
    pad_id: int,
    batch_tokens: int | None = None,
) -> list[SrcBatch]:
    """Batches of sources for inference, longest first within and across batches.

    Sorting by decreasing length keeps padding low and suits
    ``pack_padded_sequence(enforce_sorted=True)``; ``indices`` tell where each row
    came from, and :func:`restore_order` undoes the sort.

    Raises:
        DataError: an empty source (encode with ``add_eos=True`` so none is empty).
    """
    for i, ids in enumerate(src_id_lists):
        if not ids:
            raise DataError(f"batching: source {i} is empty")
    order = sorted(range(len(src_id_lists)), key=lambda i: -len(src_id_lists[i]))
    widths = [len(src_id_lists[i]) for i in order]
    batches = []
    for g in _greedy_groups(widths, batch_tokens, batch_size):
        rows = [order[p] for p in g]
        src, lengths = pad_sequences([src_id_lists[i] for i in rows], pad_id)
        batches.append(SrcBatch(src, lengths, torch.tensor(rows, dtype=torch.long)))
    return batches


def restore_order(batches: Sequence[SrcBatch | Batch], outputs: Sequence[Sequence[T_]]) -> list[T_]:
    """Put per-batch outputs back in input order.

    Args:
        batches: the batches, as made.
        outputs: for each batch, one output per row, in row order.

    Returns:
        a list whose item ``indices[r]`` is row ``r``'s output.

    Raises:
        DataError: the indices of all batches are not a permutation of ``0..n-1``.
    """
    n = sum(len(b) for b in batches)
    slots: dict[int, T_] = {}
    for batch, outs in zip(batches, outputs, strict=True):
        for idx, out in zip(batch.indices.tolist(), outs, strict=True):
            if not 0 <= idx < n or idx in slots:
                raise DataError(f"restore_order: batch indices are not a permutation of 0..{n - 1}")
            slots[idx] = out
    return [slots[i] for i in range(n)]
