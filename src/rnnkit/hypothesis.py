"""What the searches of :mod:`rnnkit.search` share: the model they drive
(:class:`Decoding`), an output (:class:`Hypothesis`), GNMT's length and coverage
penalties, and the sources' lengths and output limits."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import torch
from torch import Tensor

from rnnkit.decoder import DecoderStep, State

__all__ = [
    "Decoding",
    "Hypothesis",
    "as_lengths",
    "coverage_penalty",
    "length_penalty",
    "max_lengths",
]


class Decoding(Protocol):
    """What the searches drive: a :class:`Seq2Seq` or an :class:`rnnkit.ensemble.Ensemble`
    (``encode`` returns what ``init_state`` and ``decode_step`` read, with an
    ``index_select`` of rows)."""

    pad_id: int
    bos_id: int
    eos_id: int

    def encode(self, src: Tensor, src_lengths: Tensor) -> Any: ...
    def init_state(self, enc: Any) -> State: ...
    def decode_step(self, y_prev: Tensor, state: State, enc: Any) -> DecoderStep: ...
    def parameters(self, recurse: bool = True) -> Iterator[torch.nn.Parameter]: ...


@dataclass
class Hypothesis:
    """One output: token ids (EOS excluded), its score and attention ``(len + 1, S)``
    when it ended with EOS (the EOS step's row last), ``(len, S)`` when cut at the
    length limit."""

    tokens: list[int]
    score: float
    attention: Tensor | None


def length_penalty(length: int | Tensor, alpha: float) -> float | Tensor:
    """GNMT length penalty ((5 + |Y|) / 6)^α."""
    return ((5 + length) / 6) ** alpha


def coverage_penalty(attention: Tensor, beta: float) -> float:
    """GNMT coverage penalty β Σ_i log(min(Σ_t α_{t,i}, 1)) of one hypothesis' attention
    ``(len, S)`` (its own source tokens only)."""
    if beta == 0:
        return 0.0
    cover = attention.double().sum(0).clamp(1e-10, 1.0)  # clamp: no -inf for an unread token
    return beta * float(cover.log().sum())


def as_lengths(src_lengths: Tensor | Sequence[int]) -> Tensor:
    """Source lengths as a tensor: a list is taken too, as :meth:`Seq2Seq.encode` takes."""
    if isinstance(src_lengths, Tensor):
        return src_lengths
    return torch.as_tensor(src_lengths, dtype=torch.long)


def max_lengths(src_lengths: Tensor, a: float, b: int) -> list[int]:
    """Each sentence's output limit, a·|x| + b tokens (at least 1)."""
    return [max(1, int(a * n + b)) for n in src_lengths.tolist()]
