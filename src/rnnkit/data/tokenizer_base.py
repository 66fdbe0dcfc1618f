"""What every tokenizer is (:class:`Tokenizer`), and the visible space symbol ``▁``;
the kinds are in :mod:`rnnkit.data.tokenizers` (subwords) and
:mod:`rnnkit.data.words` (words, characters)."""

from __future__ import annotations

import random
from collections.abc import Iterable
from typing import Any, ClassVar

from .errors import DataError

__all__ = ["SPACE", "Tokenizer"]

SPACE = "▁"  # U+2581, the same visible space symbol sentencepiece uses


class Tokenizer:
    """Base class: ``encode`` text into pieces, ``decode`` pieces into plain text."""

    kind: ClassVar[str] = ""

    def encode(self, text: str) -> list[str]:
        """Split one line of raw text into pieces."""
        raise NotImplementedError

    def decode(self, pieces: list[str]) -> str:
        """Join pieces back into plain, detokenised text."""
        raise NotImplementedError

    def sample(self, text: str, p: float, rng: random.Random) -> list[str]:
        """A random segmentation of one line (BPE-dropout); only BPE models have several."""
        raise DataError(f"{type(self).__name__}: no random segmentations (BPE models only)")

    def pieces_within(self, lines: Iterable[str]) -> set[str]:
        """Every piece that a (random) segmentation of ``lines`` can use."""
        return {p for line in lines for p in self.encode(line)}

    def bpe_mismatch(self, lines: Iterable[str]) -> int | None:
        """The index of the first of ``lines`` that plain BPE segments otherwise than this
        tokenizer, or None: 0 here, no BPE merges at all."""
        return 0

    def to_state(self) -> dict[str, Any]:
        """Picklable description (plain Python types / bytes) that rebuilds this tokenizer."""
        raise NotImplementedError

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> Tokenizer:
        """Rebuild from :meth:`to_state` output."""
        raise NotImplementedError
