"""BPE-dropout (Provilkov, Emelianenko & Voita 2020, arXiv 1910.13267) on a sentencepiece
BPE model, written out so that a seed fixes the draws.

BPE segments a word by merging, again and again, the adjacent pair of symbols whose
merge the model learnt first (the highest piece score), until no adjacent pair forms a
piece. BPE-dropout removes each candidate merge with probability p at every step: the
word then stays in smaller pieces, a new segmentation each time the sentence is seen,
which regularises the model (and teaches it the pieces words are made of). p = 0 is
plain BPE and gives exactly sentencepiece's segmentation (checked by
:meth:`BPEDropout.disagrees`).

sentencepiece samples a variant itself (``enable_sampling=True``: a skipped merge is
never offered again, so words fall apart further: +40% pieces on Multi30k's English at
p = 0.1 against +21% here), and its random generator gives other draws in another
process for the same seed, so a resumed run or another rank would see other
segmentations; this one draws from a ``random.Random``.
"""

from __future__ import annotations

import random
import re
from collections.abc import Iterable
from typing import Any

__all__ = ["BPEDropout"]

SPACE = "▁"
_WORDS = re.compile(f"{SPACE}?[^{SPACE}]+|{SPACE}")  # each word with its leading ▁


class BPEDropout:
    """Random BPE segmentations with a sentencepiece BPE model's merges.

    ``sp`` is a ``SentencePieceProcessor``; ``encode(text)`` its deterministic pieces
    (they give the normalised text; pieces never span a ▁, so words are segmented one
    by one).
    """

    def __init__(self, sp: Any) -> None:
        self._sp = sp
        self.rank: dict[str, float] = {  # the order of merges: higher score merges first
            sp.id_to_piece(i): -sp.get_score(i)
            for i in range(sp.get_piece_size())
            if not (sp.is_control(i) or sp.is_unknown(i) or sp.is_byte(i))
        }

    def sample(self, text: str, p: float, rng: random.Random) -> list[str]:
        """The pieces of ``text`` with each merge skipped with probability ``p``."""
        joined = "".join(self._sp.encode(text, out_type=str))
        return [piece for word in _WORDS.findall(joined) for piece in self.word(word, p, rng)]

    def word(self, word: str, p: float, rng: random.Random) -> list[str]:
        """BPE on one word's characters, as the paper's algorithm: at each step every
        adjacent pair that forms a piece is dropped with probability p, the best of the
        others (highest score, leftmost on ties) merges; no pair left: done."""
        syms = list(word)
        rank, draw = self.rank.get, rng.random
        while len(syms) > 1:
            best, at = None, -1
            for i in range(len(syms) - 1):
                r = rank(syms[i] + syms[i + 1])
                if r is not None and (best is None or r < best) and not (p and draw() < p):
                    best, at = r, i
            if best is None:
                break
            syms[at : at + 2] = [syms[at] + syms[at + 1]]
        return syms

    def disagrees(self, lines: Iterable[str]) -> int | None:
        """The index of the first line that plain BPE (p = 0) segments otherwise than
        sentencepiece, or None: a unigram model, or one with options BPE-dropout does
        not follow."""
        rng = random.Random(0)
        for k, line in enumerate(lines):
            if self.sample(line, 0.0, rng) != list(self._sp.encode(line, out_type=str)):
                return k
        return None
